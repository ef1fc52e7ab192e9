"""The README's plugin example, exactly as written there, loaded by import path and run in a job."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from engine.templating import TemplateContext
from engine.validation import validate_workflow
from nodes.registry import default_registry, import_node_type
from tests.support.node_services import standalone_context

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_plugin_source() -> str:
    section = README.read_text().split("### Adding a node type", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


async def test_the_readme_plugin_loads_validates_and_runs(tmp_path, monkeypatch):
    package = tmp_path / "sentiment_plugin"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "sentiment.py").write_text(readme_plugin_source())
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        node_class = import_node_type("sentiment_plugin.sentiment:SentimentNode")
        registry = default_registry(("sentiment_plugin.sentiment:SentimentNode",))
        assert "sentiment" in registry.known_types()
        schema = registry.get("sentiment").get_schema()
        assert schema["config_schema"]["required"] == ["text"]
        definition = {
            "name": "w",
            "edges": [],
            "nodes": [{"id": "s", "type": "sentiment", "config": {"text": "{{input.message}}"}}],
        }
        assert validate_workflow(definition, registry).nodes[0].type == "sentiment"
        node = node_class()
        scope = TemplateContext(input={"message": "great service, thanks, but the app is broken"})
        ctx = standalone_context(scope, "s")
        result = await node.execute(node.render_config({"text": "{{input.message}}"}, scope, "s"), ctx)
        assert result.output == {"score": 1 / 3}
    finally:
        default_registry.cache_clear()
        sys.modules.pop("sentiment_plugin.sentiment", None)
        sys.modules.pop("sentiment_plugin", None)
