"""The error envelope as an HTTP reply (`runtime.errors` itself stays free of Starlette)."""

from __future__ import annotations

from starlette.responses import JSONResponse

from runtime.errors import ChuteboxError, Dialect


def error_response(exc: ChuteboxError, dialect: Dialect = Dialect.OPENAI) -> JSONResponse:
    return JSONResponse(dialect.body(exc), status_code=exc.status_code, headers=exc.headers)
