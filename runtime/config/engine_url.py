"""An engine's URL, as a chute's `url` gives it: checked once, when the settings are read."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

SCHEMES = ("http", "https")


def check_url(url: str) -> None:
    """ValueError naming what is wrong with an engine URL (pydantic reports it)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"{url!r}: write https://host:port (or http://host:port on a private "
                         "network)")  # fmt: skip
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r}: the port is not a number from 1 to 65535") from None
    if not parts.hostname or port == 0:
        raise ValueError(f"{url!r}: write {parts.scheme}://host:port")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ValueError(f"{url!r}: give the server's root, without a path (chutebox adds /v1/...)")


def engine_address(url: str) -> str:
    """The address the engine client dials: scheme, host and port only."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def in_clear_over_a_network(url: str) -> bool:
    """Whether requests to `url` (and the key they carry) cross a network unencrypted: plain
    http to a host that is not this machine's loopback."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname in (None, "localhost"):
        return False
    try:
        return not ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return True
