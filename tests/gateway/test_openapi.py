"""/openapi.json: complete, generated from the protocol models, in line with OpenAI's spec,
and true of the running gateway (schemathesis fuzzes it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.routing import Route

from runtime.api.handlers.openapi import build_document
from runtime.api.routes import build_routes
from runtime.protocol.chat import ChatCompletionRequest
from tests.gateway.conftest import Gateway
from tests.support.servers import ROOT, chutebox_serve

OPENAI_SPEC = ROOT.parent / "shared" / "openai-openapi.yaml"
# chutebox path → OpenAI's path (its servers entry ends in /v1).
SHARED = {
    "/v1/chat/completions": "/chat/completions",
    "/v1/completions": "/completions",
    "/v1/embeddings": "/embeddings",
    "/v1/images/generations": "/images/generations",
    "/v1/responses": "/responses",
}


def test_every_route_is_described(gateway: Gateway) -> None:
    with gateway.client(key=None) as client:
        document = client.get("/openapi.json").json()
    served = {(r.path, m.lower()) for r in build_routes() if isinstance(r, Route)
              for m in r.methods or () if m != "HEAD"}  # fmt: skip
    served = {(p.replace("{model:path}", "{model}"), m) for p, m in served}
    described = {(p, m) for p, ops in document["paths"].items() for m in ops}
    assert served <= described
    assert {("/metrics", "get"), ("/openapi.json", "get")} <= described


def test_requests_are_the_schemas_requests_are_validated_with() -> None:
    document = build_document(["tiny", "mini"], metrics=True, public_models=True)
    schemas = document["components"]["schemas"]
    chat = schemas["ChatCompletionRequest"]
    generated = ChatCompletionRequest.model_json_schema()
    assert set(chat["properties"]) == set(generated["properties"])
    assert chat["required"] == generated["required"]
    assert chat["properties"]["model"] == {"type": "string", "enum": ["tiny", "mini"]}
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            assert "200" in op["responses"], (path, method)
            public = op.get("security") == []
            assert ("401" in op["responses"]) is not public or path == "/openapi.json"


def flatten(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Properties and required names of a schema, through $ref and allOf."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return flatten(spec["components"]["schemas"][name], spec)
    properties = dict(schema.get("properties", {}))
    required = set(schema.get("required", []))
    for part in schema.get("allOf", []):
        inner = flatten(part, spec)
        properties.update(inner["properties"])
        required |= inner["required"]
    return {"properties": properties, "required": required}


@pytest.mark.skipif(not OPENAI_SPEC.exists(), reason=f"{OPENAI_SPEC} is not beside the repo")
def test_shared_routes_agree_with_openais_spec() -> None:
    spec = yaml.load(OPENAI_SPEC.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    ours = build_document(["tiny"], metrics=True, public_models=True)
    for path, theirs_path in SHARED.items():
        theirs_op = spec["paths"][theirs_path]["post"]
        our_op = ours["paths"][path]["post"]
        theirs = flatten(theirs_op["requestBody"]["content"]["application/json"]["schema"], spec)
        mine = flatten(our_op["requestBody"]["content"]["application/json"]["schema"], ours)
        # Everything OpenAI requires, chutebox knows; chutebox requires nothing OpenAI does not
        # (the image routes may leave `model` out, where OpenAI's default model would apply).
        assert theirs["required"] <= set(mine["properties"]), path
        # A Responses request may leave `model` to a stored prompt on OpenAI's platform; the
        # gateway routes by it, so it is required here (a 400 naming it).
        routed = {"model"} if path == "/v1/responses" else set()
        assert mine["required"] - routed <= theirs["required"], path
        if path == "/v1/responses":  # declared field for field, so screening can judge them
            assert set(mine["properties"]) == set(theirs["properties"])
        # The reply schemas demand no field OpenAI's do not promise.
        theirs_reply = flatten(theirs_op["responses"]["200"]["content"]["application/json"]
                               ["schema"], spec)  # fmt: skip
        my_reply = flatten(our_op["responses"]["200"]["content"]["application/json"]["schema"],
                           ours)  # fmt: skip
        assert my_reply["required"] <= theirs_reply["required"], path


CHECKS = ",".join([
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_schema_conformance", "response_headers_conformance", "negative_data_rejection",
])  # fmt: skip


@pytest.mark.slow
@pytest.mark.serve
def test_schemathesis_finds_nothing_against_the_running_gateway(tmp_path: Path) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st, "schemathesis is a dev dependency: pip install -e '.[dev]'"
    args = ["--engine", "fake", "--model", str(tmp_path), "--name", "tiny", "--api-key", "k"]
    with chutebox_serve(args, tmp_path / "log") as served:
        result = subprocess.run(
            [st, "run", served.base_url + "/openapi.json", "-H", "Authorization: Bearer k",
             "--checks", CHECKS, "--max-examples", "40", "--workers", "1", "--seed", "1",
             "--no-color"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:]
    assert "passed" in result.stdout and "30 selected" in result.stdout
