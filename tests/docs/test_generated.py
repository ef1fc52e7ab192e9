"""The generated parts of the guides match their sources (the node schemas the API serves, the example
plugin's files, the bench results), and the example plugin really loads through its entry point."""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from docs.generate import Sources, builtin_node_schemas, generated_parts, main, update
from engine.records import LogLevel
from engine.templating import TemplateContext
from nodes.base import NodeContext
from nodes.registry import BUILTIN_NODE_TYPES, ENTRY_POINT_GROUP, NodeRegistry, load_plugins
from tests.docs.conftest import DOCS, REPO
from tests.docs.runner import DocService
from tests.support.node_services import standalone_services

PLUGIN_DIR = DOCS / "examples" / "sentiment_plugin"


def test_the_generated_parts_of_every_guide_are_up_to_date(capsys):
    assert main(["--check"]) == 0, f"{capsys.readouterr().out}: run `python -m docs.generate`"


def test_every_builtin_node_type_has_a_generated_section_in_the_reference():
    parts = generated_parts((DOCS / "node-types.md").read_text(encoding="utf-8"))
    documented = [part.removeprefix("node ") for part in parts if part.startswith("node ")]
    assert sorted(documented) == sorted(node_type.type_name for node_type in BUILTIN_NODE_TYPES)


def test_a_stale_part_is_rendered_again_from_its_source():
    text = "<!-- BEGIN generated: node start -->\nsomething old\n<!-- END generated -->\n"
    fresh = update(text, Sources(builtin_node_schemas()))
    assert "something old" not in fresh
    assert "Entry point of a workflow" in fresh
    assert update(fresh, Sources(builtin_node_schemas())) == fresh


@pytest.mark.slow
async def test_the_node_reference_matches_the_schemas_get_nodes_serves(
    docs_service: DocService, docs_http: httpx.AsyncClient
):
    response = await docs_http.get("/api/v1/nodes", headers={"Authorization": f"Bearer {docs_service.token}"})
    assert response.status_code == 200, response.text
    served = {info["type"]: info for info in response.json()}
    builtin = {node_type.type_name for node_type in BUILTIN_NODE_TYPES}
    assert builtin <= set(served)
    text = (DOCS / "node-types.md").read_text(encoding="utf-8")
    live = Sources({name: info for name, info in served.items() if name in builtin}, REPO)
    assert update(text, live) == text, "run `python -m docs.generate`"


@pytest.fixture
def installed_plugin(tmp_path: Path) -> Iterator[Path]:
    """The example plugin as pip would install it: its module importable and a dist-info directory
    with the entry points its pyproject.toml declares."""
    project = tomllib.loads((PLUGIN_DIR / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    dist_info = tmp_path / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n", encoding="utf-8"
    )
    lines = [
        f"[{group}]" + "".join(f"\n{name} = {target}" for name, target in entries.items())
        for group, entries in project["entry-points"].items()
    ]
    (dist_info / "entry_points.txt").write_text("\n\n".join(lines) + "\n", encoding="utf-8")
    sys.path[:0] = [str(tmp_path), str(PLUGIN_DIR)]
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        sys.path.remove(str(PLUGIN_DIR))
        sys.modules.pop("sentiment_plugin", None)


async def test_the_example_plugin_registers_through_its_entry_point_and_runs(installed_plugin):
    registry = NodeRegistry(BUILTIN_NODE_TYPES)
    load_plugins(registry, ENTRY_POINT_GROUP)
    node = registry.get("sentiment")
    assert type(node).__module__ == "sentiment_plugin"
    assert registry.config_problems("sentiment", {"txt": "typo"}) == [
        ("config.text", "Field required"),
        ("config.txt", "Extra inputs are not permitted"),
    ]
    logs: list[tuple[LogLevel, str]] = []
    ctx = NodeContext(
        job_id="job",
        workflow_id="workflow",
        node_id="mood",
        attempt=1,
        scope=TemplateContext(input={"review": "great lamp, slow delivery, bad box"}),
        services=standalone_services(),
        log=lambda level, message, data: logs.append((level, message)),
    )
    config = node.render_config({"text": "{{input.review}}"}, ctx.scope, "mood")
    result = await node.execute(config, ctx)
    assert result.output == {"score": -0.33, "label": "negative", "words": 6}
    assert logs == [(LogLevel.INFO, "6 words, 1 positive, 2 negative")]
