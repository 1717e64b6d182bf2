import pytest

from runtime.auth import key_matches, presented_keys, public_routes
from runtime.operations import OPERATIONS


def test_every_header_form_is_read() -> None:
    headers = [
        (b"authorization", b"Bearer k1"),
        (b"x-api-key", b" k2 "),
    ]
    assert presented_keys(headers) == ([b"k1", b"k2"], None)
    assert presented_keys([(b"authorization", b"k3")]) == ([b"k3"], None)
    assert presented_keys([(b"authorization", b"bEaReR k4")]) == ([b"k4"], None)
    assert presented_keys([(b"authorization", b"")]) == ([], None)


@pytest.mark.parametrize(
    "value", [b"Basic k1", b"Token k1", b"Bearer k1 extra", b"Digest username=k1, realm=x"]
)
def test_other_schemes_offer_no_key(value: bytes) -> None:
    keys, scheme = presented_keys([(b"authorization", value)])
    assert keys == [] and scheme == value.split()[0].decode()


def test_key_matching() -> None:
    keys = (b"alpha", b"beta")
    assert key_matches(b"beta", keys)
    assert not key_matches(b"bet", keys)
    assert not key_matches(b"", keys)


def test_public_routes() -> None:
    paths = {op.path for op in OPERATIONS if op.public}
    assert {"/health", "/ping", "/ready", "/status", "/", "/ui/app.js"} <= paths
    public = public_routes(public_models=True, public_paths=paths)
    assert public("GET", "/health") and public("GET", "/ready") and public("GET", "/status")
    assert public("GET", "/metrics") and public("GET", "/openapi.json")
    assert public("GET", "/v1/models") and public("GET", "/v1/models/org/name")
    assert not public("POST", "/v1/chat/completions")
    private = public_routes(public_models=False, public_paths=paths)
    assert not private("GET", "/v1/models") and private("GET", "/ready")
