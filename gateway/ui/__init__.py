"""The run viewer: the browser page's static files (in `static/`, plain JavaScript modules, nothing to
build), served at /ui from the same origin as the API under a strict Content-Security-Policy.

The policy allows only this origin's own scripts, styles and connections: no inline script or style, no
`eval`, no plugins, no framing, and Trusted Types with no policy, so the page cannot turn a string into
HTML through `innerHTML` or the like even by mistake (every API value is shown with textContent).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).resolve().parent / "static"
UI_PATH = "/ui"
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
"""`no-cache` revalidates every file (ETag): an upgraded service never runs with a stale module."""


class UiFiles(StaticFiles):
    """Static files with the page's security headers on every file served."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def mount_ui(app: FastAPI) -> None:
    app.mount(UI_PATH, UiFiles(directory=STATIC_DIR, html=True), name="ui")
