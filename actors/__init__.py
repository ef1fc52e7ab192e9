"""Running jobs: `job_loop/` is the Ray-free loop of one job, `ray_runtime/` the actors that run it on Ray."""
