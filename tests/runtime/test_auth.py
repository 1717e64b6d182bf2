from runtime.auth import key_matches, presented_keys, public_routes


def test_every_header_form_is_read() -> None:
    headers = [
        (b"authorization", b"Bearer k1"),
        (b"x-api-key", b" k2 "),
    ]
    assert presented_keys(headers) == [b"k1", b"k2"]
    assert presented_keys([(b"authorization", b"k3")]) == [b"k3"]
    assert presented_keys([(b"authorization", b"")]) == []


def test_key_matching() -> None:
    keys = (b"alpha", b"beta")
    assert key_matches(b"beta", keys)
    assert not key_matches(b"bet", keys)
    assert not key_matches(b"", keys)


def test_public_routes() -> None:
    public = public_routes(public_models=True)
    assert public("GET", "/health") and public("GET", "/ready")
    assert public("GET", "/v1/models") and public("GET", "/v1/models/org/name")
    assert not public("POST", "/v1/chat/completions")
    private = public_routes(public_models=False)
    assert not private("GET", "/v1/models") and private("GET", "/ready")
