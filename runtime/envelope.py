"""The one error envelope as an HTTP reply (`runtime.errors` itself stays free of Starlette)."""

from __future__ import annotations

from starlette.responses import JSONResponse

from runtime.errors import ChuteboxError, envelope


def error_response(exc: ChuteboxError) -> JSONResponse:
    return JSONResponse(envelope(exc), status_code=exc.status_code, headers=exc.headers)
