"""Probes: liveness (`/health`, `/ping`) and readiness (`/ready`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from runtime.api.state import gateway_of


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> JSONResponse:
    """200 once every chute's engine answers; 503 while loading, restarting or draining."""
    chutes = gateway_of(request).chutes
    states = {
        c.name: {
            "state": c.state.value,
            **({"detail": c.detail} if c.detail else {}),
            "replicas": [r.describe() for r in c.replicas],
        }
        for c in chutes
    }
    ok = chutes.all_ready() and not chutes.draining
    status = "ready" if ok else ("draining" if chutes.draining else "not_ready")
    return JSONResponse({"status": status, "chutes": states}, status_code=200 if ok else 503)
