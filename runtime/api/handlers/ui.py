"""The status page and playground at `/`: static files shipped in the package (`runtime/ui/`).

Nothing is fetched from anywhere else: the Content-Security-Policy lets the page load only its
own files and talk only to this gateway, so no script from elsewhere can run in it and read the
key a user types into the playground.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from runtime.errors import NotFoundError

FOLDER = Path(__file__).resolve().parents[2] / "ui"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8"}  # fmt: skip
HEADERS = {
    # blob: for a cord's image or audio reply, shown from the bytes the page fetched itself.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "media-src blob:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _file(name: str) -> Response:
    path = FOLDER / name
    if not path.is_file():  # an installation without its data files
        raise NotFoundError(f"the status page's {name} is not installed", code="not_found")
    return Response(path.read_bytes(), media_type=TYPES[path.suffix], headers=HEADERS)


async def page(request: Request) -> Response:
    return _file("index.html")


async def script(request: Request) -> Response:
    return _file("app.js")


async def style(request: Request) -> Response:
    return _file("style.css")
