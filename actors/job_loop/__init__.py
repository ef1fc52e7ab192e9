"""The Ray-free job loop: one job driven through its DAG (`JobRunner`), its one writer, its nodes' tasks and a
map's items run in process. Nothing below this package imports ray (tests/test_layout.py checks), so it runs
and is tested in any process; actors/ray_runtime/ puts it inside Ray actors."""
