"""Chutes' E2EE wire format (what the published `chutes-e2ee` client speaks), both ways.

A request is `ML-KEM-768 ciphertext (1088) + nonce (12) + ChaCha20-Poly1305 ciphertext + tag
(16)`: the client encapsulates a secret to the instance's public key, derives the key with
HKDF-SHA256 (salt: the ciphertext's first 16 bytes, info `e2e-req-v1`) and seals the gzipped
JSON request, which carries the client's own one-time public key (`e2e_response_pk`). A whole
reply comes back the same way to that key (info `e2e-resp-v1`); a stream starts with an
`e2e_init` event holding a ciphertext (info `e2e-stream-v1`), then each event is sealed on
its own as base64 `nonce + ciphertext + tag`.

pqcrypto and cryptography are the `e2ee` extra, imported when first used.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import zlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

MLKEM_CT_SIZE = 1088
NONCE_SIZE = 12
TAG_SIZE = 16
INFO_REQ = b"e2e-req-v1"
INFO_RESP = b"e2e-resp-v1"
INFO_STREAM = b"e2e-stream-v1"
RESPONSE_KEY = "e2e_response_pk"
INSTALL_HINT = "end-to-end encryption needs pip install 'chutebox[e2ee]'"


class E2EEMissing(RuntimeError):
    """The `e2ee` extra (pqcrypto, cryptography) is not installed."""


class SealError(ValueError):
    """A blob that does not open: tampered, truncated, for another key, or not a request."""


def _mlkem() -> ModuleType:
    try:
        from pqcrypto.kem import ml_kem_768
    except ImportError as exc:
        raise E2EEMissing(INSTALL_HINT) from exc
    module: ModuleType = ml_kem_768
    return module


def available() -> bool:
    try:
        _mlkem()
        import cryptography  # noqa: F401
    except (E2EEMissing, ImportError):
        return False
    return True


@dataclass(frozen=True)
class KeyPair:
    """An ML-KEM-768 key pair; the secret half never leaves the process."""

    public: bytes
    secret: bytes = b""

    def __repr__(self) -> str:  # never the secret, not even in a traceback's locals
        return f"KeyPair(public={base64.b64encode(self.public[:8]).decode()}…)"


def new_keypair() -> KeyPair:
    public, secret = _mlkem().generate_keypair()
    return KeyPair(bytes(public), bytes(secret))


def _derive(shared: bytes, ciphertext: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ciphertext[:16], info=info).derive(
        shared
    )


def _seal(key: bytes, plaintext: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    nonce = os.urandom(NONCE_SIZE)
    return nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, None)


def _open(key: bytes, sealed: bytes) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    if len(sealed) < NONCE_SIZE + TAG_SIZE:
        raise SealError("too short to hold a nonce and a tag")
    try:
        return ChaCha20Poly1305(key).decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], None)
    except InvalidTag as exc:
        raise SealError("it does not authenticate under this instance's key") from exc


def _encapsulate(public: bytes) -> tuple[bytes, bytes]:
    try:
        ciphertext, shared = _mlkem().encrypt(public)
    except (ValueError, TypeError) as exc:
        raise SealError(f"not an ML-KEM-768 public key: {exc}") from exc
    return bytes(ciphertext), bytes(shared)


def _gunzip(data: bytes, limit: int) -> bytes:
    inflate = zlib.decompressobj(wbits=31)
    try:
        out = inflate.decompress(data, limit)
    except zlib.error as exc:
        raise SealError(f"its plaintext is not gzip: {exc}") from exc
    if inflate.unconsumed_tail:
        raise SealError(f"its plaintext is over the {limit}-byte limit")
    return out


# The instance's side.


def open_request(secret: bytes, blob: bytes, limit: int) -> tuple[dict[str, Any], bytes]:
    """The request's JSON (its response key taken out) and the client's response key."""
    if len(blob) < MLKEM_CT_SIZE + NONCE_SIZE + TAG_SIZE:
        raise SealError(f"{len(blob)} bytes is too short for a sealed request")
    ciphertext = blob[:MLKEM_CT_SIZE]
    shared = bytes(_mlkem().decrypt(secret, ciphertext))
    plaintext = _gunzip(_open(_derive(shared, ciphertext, INFO_REQ), blob[MLKEM_CT_SIZE:]), limit)
    try:
        payload = json.loads(plaintext)
    except ValueError as exc:
        raise SealError("its plaintext is not JSON") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get(RESPONSE_KEY), str):
        raise SealError(f"its JSON has no {RESPONSE_KEY}")
    try:
        response_key = base64.b64decode(payload.pop(RESPONSE_KEY), validate=True)
    except ValueError as exc:
        raise SealError(f"{RESPONSE_KEY} is not base64") from exc
    return payload, response_key


def seal_reply(response_key: bytes, body: bytes) -> bytes:
    """A whole reply (JSON bytes) sealed to the client's response key."""
    ciphertext, shared = _encapsulate(response_key)
    return ciphertext + _seal(_derive(shared, ciphertext, INFO_RESP), gzip.compress(body))


class StreamSeal:
    """A stream's key, encapsulated once to the client's response key."""

    def __init__(self, response_key: bytes) -> None:
        ciphertext, shared = _encapsulate(response_key)
        self.init = base64.b64encode(ciphertext).decode()
        self._key = _derive(shared, ciphertext, INFO_STREAM)

    def seal(self, event: bytes) -> str:
        return base64.b64encode(_seal(self._key, event)).decode()


# The client's side (the conformance kit's e2ee group, and tests).


def seal_request(public: bytes, payload: dict[str, Any]) -> tuple[bytes, KeyPair]:
    """The sealed request and the key pair its reply comes back to."""
    reply_keys = new_keypair()
    ciphertext, shared = _encapsulate(public)
    body = {**payload, RESPONSE_KEY: base64.b64encode(reply_keys.public).decode()}
    sealed = _seal(_derive(shared, ciphertext, INFO_REQ), gzip.compress(json.dumps(body).encode()))
    return ciphertext + sealed, reply_keys


def open_reply(keys: KeyPair, blob: bytes) -> Any:
    ciphertext = blob[:MLKEM_CT_SIZE]
    shared = bytes(_mlkem().decrypt(keys.secret, ciphertext))
    plaintext = _open(_derive(shared, ciphertext, INFO_RESP), blob[MLKEM_CT_SIZE:])
    return json.loads(gzip.decompress(plaintext))


def stream_key(keys: KeyPair, init: str) -> bytes:
    ciphertext = base64.b64decode(init)
    return _derive(bytes(_mlkem().decrypt(keys.secret, ciphertext)), ciphertext, INFO_STREAM)


def open_event(key: bytes, sealed: str) -> str:
    return _open(key, base64.b64decode(sealed)).decode()
