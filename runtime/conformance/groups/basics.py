"""auth, models, errors and Chutes headers."""

from __future__ import annotations

from runtime.conformance.check import Check, Session, Skipped, conforms, expect
from runtime.protocol.responses import ListModelsResponse

HELLO = [{"role": "user", "content": "Hello"}]


def _chat(session: Session, headers: dict[str, str] | None) -> int:
    body = {"model": session.model(), "messages": HELLO, "max_tokens": 1}
    return session.request("POST", "/v1/chat/completions", body, headers=headers).status_code


def _key(session: Session) -> str:
    if not session.target.api_key:
        raise Skipped("no --api-key given: the server is assumed open")
    return session.target.api_key


def bearer(session: Session) -> str:
    status = _chat(session, {"Authorization": f"Bearer {_key(session)}"})
    expect(status == 200, "200 with Authorization: Bearer <key>", status)
    return str(status)


def x_api_key(session: Session) -> str:
    status = _chat(session, {"X-API-Key": _key(session)})
    expect(status == 200, "200 with X-API-Key: <key> (Chutes' documented header)", status)
    return str(status)


def bare_authorization(session: Session) -> str:
    status = _chat(session, {"Authorization": _key(session)})
    expect(status == 200, "200 with a bare Authorization: <key>, as the platform accepts", status)
    return str(status)


def _refused(session: Session, headers: dict[str, str]) -> str:
    _key(session)
    body = {"model": session.model(), "messages": HELLO, "max_tokens": 1}
    reply = session.request("POST", "/v1/chat/completions", body, headers=headers)
    expect(reply.status_code == 401, "401", reply.status_code)
    try:
        data = reply.json()
    except ValueError:
        data = None
    expect(isinstance(data, dict) and ("error" in data or "detail" in data),
           "a JSON body with `error` or `detail`", reply.text)  # fmt: skip
    return f"{reply.status_code} {reply.text[:120]}"


def missing_key(session: Session) -> str:
    return _refused(session, {})


def wrong_key(session: Session) -> str:
    return _refused(session, {"Authorization": "Bearer wrong-key-for-conformance"})


def models_list(session: Session) -> str:
    reply = session.request("GET", "/v1/models")
    expect(reply.status_code == 200, "200", reply.status_code)
    listing = conforms(ListModelsResponse, reply.json(), "the model list")
    ids = [m.id for m in listing.data]
    for model in filter(None, (session.target.model, session.target.embedding_model,
                               session.target.image_model)):  # fmt: skip
        expect(model in ids, f"{model!r} listed", ids)
    return ", ".join(ids)


def _error_reply(session: Session, body: object, content: bytes | None = None) -> tuple[int, str]:
    headers = {**session.auth(), "Content-Type": "application/json"}
    reply = session.request("POST", "/v1/chat/completions", None if content else body,
                            content=content, headers=headers)  # fmt: skip
    return reply.status_code, reply.text


def bad_input_is_4xx(session: Session) -> str:
    body = {"model": session.model(), "messages": HELLO, "temperature": 5}
    status, text = _error_reply(session, body)
    expect(400 <= status < 500, "a 4xx for temperature 5 (the range is 0–2)", f"{status} {text}")
    expect("error" in text or "detail" in text, "an error message", text)
    return f"{status}"


def malformed_json_is_4xx(session: Session) -> str:
    session.model()
    status, text = _error_reply(session, None, content=b"{not json")
    expect(400 <= status < 500, "a 4xx for a body that is not JSON", f"{status} {text}")
    return f"{status}"


def unknown_model_is_404(session: Session) -> str:
    body = {"model": "no-such-model-for-conformance", "messages": HELLO, "max_tokens": 1}
    status, text = _error_reply(session, body)
    expect(status == 404, "404 for an unknown model", f"{status} {text}")
    return text[:160]


def error_envelope(session: Session) -> str:
    body = {"model": session.model(), "messages": HELLO, "max_tokens": 0}
    status, text = _error_reply(session, body)
    reply = session.exchanges[-1].body
    expect(isinstance(reply, dict) and isinstance(reply.get("error"), dict),
           'OpenAI\'s {"error": {...}}', text)  # fmt: skip
    expect(isinstance(reply.get("detail"), str), 'Chutes\' {"detail": "..."} beside it', text)
    code = reply["error"].get("code")
    expect(code is None or isinstance(code, str), "error.code a string or null", code)
    return text[:160]


def invocation_header(session: Session) -> str:
    body = {"model": session.model(), "messages": HELLO, "max_tokens": 1}
    reply = session.request("POST", "/v1/chat/completions", body)
    value = reply.headers.get("x-chutes-invocationid")
    expect(bool(value), "an X-Chutes-InvocationID header", dict(reply.headers))
    return str(value)


def connection_headers(session: Session) -> str:
    body = {"model": session.model(), "messages": HELLO, "max_tokens": 1}
    reply = session.request("POST", "/v1/chat/completions", body)
    names = ("x-chutes-conn-used", "x-chutes-conn-available", "x-chutes-conn-utilization")
    missing = [n for n in names if n not in reply.headers]
    expect(not missing, "X-Chutes-Conn-Used/Available/Utilization", f"missing {missing}")
    return ", ".join(f"{n}={reply.headers[n]}" for n in names)


CHECKS = [
    Check("auth", "bearer", bearer, "Authorization: Bearer <key> is accepted"),
    Check("auth", "x-api-key", x_api_key, "X-API-Key: <key> is accepted"),
    Check("auth", "bare-authorization", bare_authorization, "a bare Authorization is accepted"),
    Check("auth", "missing-key", missing_key, "no key → 401 with a parseable body"),
    Check("auth", "wrong-key", wrong_key, "a wrong key → 401 with a parseable body"),
    Check("models", "list", models_list, "GET /v1/models lists the models, OpenAI-shaped"),
    Check("errors", "bad-input", bad_input_is_4xx, "out-of-range input → 4xx, never 5xx"),
    Check("errors", "malformed-json", malformed_json_is_4xx, "a non-JSON body → 4xx"),
    Check("errors", "unknown-model", unknown_model_is_404, "an unknown model → 404"),
    Check("errors", "envelope", error_envelope, "errors readable by OpenAI and Chutes clients"),
    Check("headers", "invocation-id", invocation_header, "X-Chutes-InvocationID on replies"),
    Check("headers", "connections", connection_headers, "X-Chutes-Conn-* on replies"),
]
