"""A small server speaking the model hub's file API, enough for huggingface_hub downloads.

Routes: the repo tree listing (`/api/models/{org}/{name}/tree/{rev}`), repo info
(`/api/models/{org}/{name}/revision/{rev}`) and file resolution (`HEAD`/`GET
/{org}/{name}/resolve/{rev}/{path}`) with the `X-Repo-Commit` and `ETag` headers the client reads.
"""

from __future__ import annotations

import hashlib

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


class FakeHub:
    """One repo at one commit; counts file downloads so tests can see the cache work."""

    def __init__(self, repo: str, commit: str, files: dict[str, bytes]) -> None:
        self.repo, self.commit, self.files = repo, commit, files
        self.downloads: list[str] = []

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/models/{org}/{name}/tree/{rev}", self.tree),
                Route("/api/models/{org}/{name}/revision/{rev}", self.info),
                Route("/{org}/{name}/resolve/{rev}/{path:path}", self.resolve,
                      methods=["GET", "HEAD"]),
            ]
        )  # fmt: skip

    def _known(self, request: Request) -> bool:
        params = request.path_params
        return f"{params['org']}/{params['name']}" == self.repo and params["rev"] == self.commit

    async def tree(self, request: Request) -> Response:
        if not self._known(request):
            return JSONResponse({"error": "Repository not found"}, status_code=404)
        entries = [
            {"type": "file", "path": path, "size": len(data),
             "oid": hashlib.sha1(data).hexdigest()}
            for path, data in self.files.items()
        ]  # fmt: skip
        return JSONResponse(entries)

    async def info(self, request: Request) -> Response:
        if not self._known(request):
            return JSONResponse({"error": "Repository not found"}, status_code=404)
        siblings = [{"rfilename": path} for path in self.files]
        return JSONResponse({"id": self.repo, "sha": self.commit, "siblings": siblings})

    async def resolve(self, request: Request) -> Response:
        path = request.path_params["path"]
        if not self._known(request) or path not in self.files:
            return JSONResponse({"error": "Entry not found"}, status_code=404,
                                headers={"X-Error-Code": "EntryNotFound"})  # fmt: skip
        data = self.files[path]
        headers = {
            "X-Repo-Commit": self.commit,
            "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
            "Content-Length": str(len(data)),
        }
        if request.method == "HEAD":
            return Response(status_code=200, headers=headers)
        self.downloads.append(path)
        return Response(data, headers=headers, media_type="application/octet-stream")
