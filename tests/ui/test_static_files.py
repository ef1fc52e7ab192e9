"""The page's files as served and as shipped: a strict Content-Security-Policy on every /ui response, no
inline script or style, no HTML sinks or eval in the page's own code, vendored libraries pinned with
their licenses, and every file part of the package."""

from __future__ import annotations

import glob
import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from gateway.ui import CONTENT_SECURITY_POLICY, STATIC_DIR

REPO = Path(__file__).resolve().parents[2]
OWN_SCRIPTS = sorted((STATIC_DIR / "js").rglob("*.js"))
VENDORED = sorted((STATIC_DIR / "vendor").glob("*.js"))
HTML_SINKS = re.compile(
    r"\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|DOMParser|createContextualFragment"
    r"|\beval\s*\(|new\s+Function\b|setTimeout\(\s*[\"'`]|setAttribute\(\s*[\"'](style|on\w+)"
)


@pytest.fixture
async def http(ui_service):
    async with httpx.AsyncClient(base_url=ui_service.base_url, timeout=30) as client:
        yield client


def test_the_policy_allows_only_this_origin_and_no_inline_code():
    directives = dict(part.split(" ", 1) for part in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == directives["style-src"] == "'self'"
    assert directives["object-src"] == directives["trusted-types"] == "'none'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY


SERVED = ["/ui/", "/ui/index.html", "/ui/js/main.js", "/ui/app.css", "/ui/vendor/dagre-3.1.3.esm.min.js"]


@pytest.mark.parametrize("path", SERVED)
async def test_every_file_is_served_with_the_policy(http, path):
    response = await http.get(path)
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    if path.endswith(".js"):
        assert response.headers["content-type"].startswith(("text/javascript", "application/javascript"))


async def test_ui_without_a_slash_leads_to_the_page_and_a_missing_file_is_404(http):
    redirect = await http.get("/ui")
    assert redirect.status_code in (307, 308) and redirect.headers["location"].endswith("/ui/")
    assert (await http.get("/ui/js/nothing-here.js")).status_code == 404


class _Inline(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "style" or "style" in names or any(name.startswith("on") for name in names):
            self.problems.append(f"<{tag}> with inline style or handler")
        self._in_script = tag == "script"
        if tag == "script" and "src" not in names:
            self.problems.append("a <script> without src")

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append("script text inline")


def test_the_page_has_no_inline_script_style_or_handler():
    parser = _Inline()
    parser.feed((STATIC_DIR / "index.html").read_text(encoding="utf-8"))
    assert parser.problems == []


@pytest.mark.parametrize("script", OWN_SCRIPTS, ids=lambda path: path.name)
def test_the_pages_own_code_has_no_html_sink_or_eval(script):
    assert HTML_SINKS.findall(script.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("library", VENDORED, ids=lambda path: path.name)
def test_each_vendored_library_is_pinned_has_its_license_and_uses_no_eval(library):
    assert re.search(r"-\d+\.\d+\.\d+\.", library.name), "the file name pins the version"
    license_file = library.with_name(library.name.split("-")[0] + "-LICENSE.txt")
    assert license_file.exists() and "Permission is hereby granted" in license_file.read_text()
    text = library.read_text(encoding="utf-8")
    assert not re.search(r"\beval\s*\(|new\s+Function\b|\bFunction\(", text)
    assert "sourceMappingURL" not in text, "a source map the package does not ship"


def test_every_static_file_is_package_data():
    """As setuptools reads package-data: recursive globs from the package's directory."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["gateway.ui"]
    package = STATIC_DIR.parent
    shipped = {name for pattern in patterns for name in glob.glob(pattern, root_dir=package, recursive=True)}
    files = {path.relative_to(package).as_posix() for path in STATIC_DIR.rglob("*") if path.is_file()}
    assert "static/index.html" in files
    assert files - shipped == set()
