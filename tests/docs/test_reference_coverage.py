"""The API reference covers every route the service serves, each with an example that runs; the deployment
guide lists every setting with its real default."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from starlette.routing import BaseRoute, WebSocketRoute

from config.settings import Settings
from docs.generate import GUIDES
from gateway.main import create_app
from tests.docs.blocks import RUNNABLE_ROLES, parse_blocks
from tests.docs.conftest import DOCS, JWT_SECRET

HEADING = re.compile(r"^(?P<level>#{1,6}) (?P<title>.+)$")
SETTING_ROW = re.compile(r"^\| `(?P<name>[A-Z][A-Z0-9_]*)` \| (?P<default>`[^`]*`|-) \|")
UNSET = "-"


def _sections(path: Path) -> dict[str, tuple[int, int]]:
    """Each heading's title and the lines (1-based, end excluded) its section spans."""
    lines = path.read_text(encoding="utf-8").splitlines()
    headings = [
        (number, len(match["level"]), match["title"].strip())
        for number, line in enumerate(lines, start=1)
        if (match := HEADING.match(line))
    ]
    sections = {}
    for index, (start, level, title) in enumerate(headings):
        end = next((line for line, other, _ in headings[index + 1 :] if other <= level), len(lines) + 1)
        sections[title] = (start, end)
    return sections


@pytest.fixture(scope="module")
def app_routes() -> list[str]:
    """`METHOD /path` for every OpenAPI operation, `WebSocket /path` for every WebSocket route."""
    app = create_app(Settings(_env_file=None, JWT_SECRET=JWT_SECRET), configure_logs=False)
    routes = [
        f"{method.upper()} {path}"
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    ]
    routes += [f"WebSocket {path}" for path in _websocket_paths(app.routes)]
    return routes


def _websocket_paths(routes: list[BaseRoute]) -> list[str]:
    """WebSocket routes are not in the OpenAPI document; FastAPI nests included routers' routes."""
    paths = []
    for route in routes:
        if isinstance(route, WebSocketRoute):
            paths.append(route.path)
        nested = getattr(route, "original_router", None)
        if nested is not None:
            paths.extend(_websocket_paths(nested.routes))
    return paths


def test_every_route_has_a_section_in_the_api_reference_with_an_example_that_runs(app_routes):
    path = DOCS / "api-reference.md"
    sections = _sections(path)
    runnable = [block.line for block in parse_blocks(path) if block.role in RUNNABLE_ROLES]
    missing, without_example = [], []
    for route in app_routes:
        method, _, route_path = route.partition(" ")
        title = f"`{route}`" if method != "WebSocket" else f"WebSocket `{route_path}`"
        span = sections.get(title)
        if span is None:
            missing.append(f"### {title}")
        elif not any(span[0] < line < span[1] for line in runnable):
            without_example.append(title)
    assert not missing, f"routes without a section in api-reference.md: {missing}"
    assert not without_example, f"sections without a curl or client example: {without_example}"
    assert sum(route.startswith("WebSocket ") for route in app_routes) >= 2, "no WebSocket route found"


def _shown_default(value: Any) -> str:
    """A default as the settings tables show it."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None or value == "":
        return UNSET
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Enum):
        return f"`{value.value}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def _settings_defaults() -> dict[str, str]:
    for section in Settings.sections().values():
        for name, field in section.model_fields.items():
            assert field.alias, f"{section.__name__}.{name} has no environment name"
    return {
        name: _shown_default(field.get_default(call_default_factory=True))
        for name, field in Settings.environment_names().items()
    }


def test_the_deployment_guide_lists_every_setting_with_its_default():
    text = (DOCS / "deployment.md").read_text(encoding="utf-8")
    start, end = _sections(DOCS / "deployment.md")["Settings"]
    rows = [match for line in text.splitlines()[start : end - 1] if (match := SETTING_ROW.match(line))]
    documented = {match["name"]: match["default"] for match in rows}
    assert len(documented) == len(rows), "a setting is listed twice"
    actual = _settings_defaults()
    assert sorted(set(actual) - set(documented)) == [], "settings missing from deployment.md"
    assert sorted(set(documented) - set(actual)) == [], "deployment.md lists settings that do not exist"
    wrong = {name: (documented[name], actual[name]) for name in actual if documented[name] != actual[name]}
    assert wrong == {}, "defaults in deployment.md (shown, actual)"


def test_env_example_and_the_deployment_guide_name_the_same_settings():
    names = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", (DOCS.parent / ".env.example").read_text(), re.M))
    assert names == set(_settings_defaults())


LINK = re.compile(r"\]\((?P<file>[a-z-]+\.md)?(?:#(?P<anchor>[a-z0-9_-]+))?\)")


def _slug(title: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^a-z0-9 _-]", "", title.lower()).replace(" ", "-")


@pytest.mark.parametrize("guide", GUIDES)
def test_every_link_between_the_guides_points_at_a_heading_that_exists(guide):
    broken = []
    for match in LINK.finditer((DOCS / guide).read_text(encoding="utf-8")):
        target = DOCS / (match["file"] or guide)
        anchors = {_slug(title) for title in _sections(target)} if target.exists() else set()
        if not target.exists() or (match["anchor"] and match["anchor"] not in anchors):
            broken.append(match.group())
    assert broken == []
