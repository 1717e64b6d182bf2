import pytest

from runtime.access.keyring import KeyRing
from runtime.api.middleware.auth import KeyCheck, presented_keys, public_routes
from runtime.api.record import RequestRecord
from runtime.api.route_table import OPERATIONS


def test_every_header_form_is_read() -> None:
    headers = [
        (b"authorization", b"Bearer k1"),
        (b"x-api-key", b" k2 "),
    ]
    assert presented_keys(headers) == ([b"k1", b"k2"], None)
    assert presented_keys([(b"authorization", b"k3")]) == ([b"k3"], None)
    assert presented_keys([(b"authorization", b"bEaReR k4")]) == ([b"k4"], None)
    assert presented_keys([(b"authorization", b"")]) == ([], None)
    assert presented_keys([(b"x-api-key", b"k5")]) == ([b"k5"], None)


@pytest.mark.parametrize(
    "value", [b"Basic k1", b"Token k1", b"Bearer k1 extra", b"Digest username=k1, realm=x"]
)
def test_other_schemes_offer_no_key(value: bytes) -> None:
    keys, scheme = presented_keys([(b"authorization", value)])
    assert keys == [] and scheme == value.split()[0].decode()


def test_key_matching() -> None:
    keys = KeyRing(["alpha", "beta"])
    assert keys.identify([b"beta"]) is not None
    assert keys.identify([b"bet"]) is None
    assert keys.identify([b""]) is None
    found = keys.identify([b"wrong", b"alpha"])
    assert found is not None and found.name == "api-key-1" and keys.identify([]) is None


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


@pytest.mark.parametrize(
    ("headers", "passes", "says"),
    [
        ([(b"authorization", b"Bearer good")], True, None),
        ([(b"authorization", b"good")], True, None),
        ([(b"x-api-key", b"good")], True, None),
        ([(b"authorization", b"Basic good"), (b"x-api-key", b"good")], True, None),
        # A name sent twice: every value is read, not only the first.
        ([(b"authorization", b"Bearer bad"), (b"authorization", b"Bearer good")], True, None),
        ([(b"authorization", b"Bearer bad")], False, "invalid API key"),
        ([(b"authorization", b"Basic good")], False, "not the 'Basic' scheme"),
        ([(b"host", b"x")], False, "missing API key"),
    ],
)
def test_the_key_check_reads_a_request_as_its_headers_came(
    headers: list[tuple[bytes, bytes]], passes: bool, says: str | None
) -> None:
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
             "headers": [(b"host", b"x"), *headers]}  # fmt: skip
    record = RequestRecord.begin(scope, None)
    refused = KeyCheck(KeyRing(["good"]), public_routes(False)).refusal(scope, record)
    assert (refused is None) == passes and record.authenticated == passes
    if says is not None:
        assert refused is not None and says in refused.message


def test_a_key_with_whitespace_is_no_key_in_the_authorization_header() -> None:
    check = KeyCheck(KeyRing(["two words", "good"]), public_routes(False))
    for value in (b"Bearer two words", b"two words"):
        scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
                 "headers": [(b"authorization", value)]}  # fmt: skip
        record = RequestRecord.begin(scope, None)
        assert check.refusal(scope, record) is not None and not record.authenticated
