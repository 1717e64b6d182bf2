"""The wire format against the published client's own functions (chutes-e2ee 0.1.0)."""

import base64
import gzip
import json

import pytest
from chutes_e2ee import crypto as published

from runtime.protocol.e2ee import (
    SealError,
    StreamSeal,
    new_keypair,
    open_event,
    open_reply,
    open_request,
    seal_reply,
    seal_request,
    stream_key,
)

LIMIT = 1 << 20


def test_a_request_sealed_by_the_published_client_opens_here() -> None:
    keys = new_keypair()
    sealed = published.build_e2ee_request(base64.b64encode(keys.public).decode(), {"a": 1})
    payload, response_key = open_request(keys.secret, sealed.blob, LIMIT)
    assert payload == {"a": 1}
    # ...and the reply sealed here opens there, whole and as a stream.
    reply = seal_reply(response_key, b'{"ok": true}')
    assert published.decrypt_response(reply, sealed.response_sk) == {"ok": True}
    stream = StreamSeal(response_key)
    key = published.decrypt_stream_init(sealed.response_sk, stream.init)
    assert published.decrypt_stream_chunk(stream.seal(b"data: {}"), key) == "data: {}"


def test_the_client_side_here_round_trips() -> None:
    keys = new_keypair()
    blob, reply_keys = seal_request(keys.public, {"model": "m"})
    payload, response_key = open_request(keys.secret, blob, LIMIT)
    assert payload == {"model": "m"} and response_key == reply_keys.public
    assert open_reply(reply_keys, seal_reply(response_key, b"[1, 2]")) == [1, 2]
    stream = StreamSeal(response_key)
    assert open_event(stream_key(reply_keys, stream.init), stream.seal(b"x")) == "x"
    assert "secret" not in repr(keys) and repr(keys.secret[:8]) not in repr(keys)


@pytest.mark.parametrize("where", [0, 1100, -1])
def test_a_tampered_or_misdirected_blob_does_not_open(where: int) -> None:
    keys = new_keypair()
    blob = bytearray(seal_request(keys.public, {"x": 1})[0])
    blob[where] ^= 1
    with pytest.raises(SealError):
        open_request(keys.secret, bytes(blob), LIMIT)
    with pytest.raises(SealError):  # sealed to another instance's key
        open_request(new_keypair().secret, seal_request(keys.public, {})[0], LIMIT)
    with pytest.raises(SealError, match="too short"):
        open_request(keys.secret, b"\0" * 100, LIMIT)


def test_a_plaintext_past_the_limit_is_refused_before_it_is_inflated() -> None:
    keys = new_keypair()
    blob, _ = seal_request(keys.public, {"text": "a" * 5000})
    with pytest.raises(SealError, match="limit"):
        open_request(keys.secret, blob, 1000)
    assert gzip.decompress(gzip.compress(json.dumps({}).encode())) == b"{}"
