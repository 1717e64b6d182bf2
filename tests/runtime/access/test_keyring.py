import hashlib
import logging
from pathlib import Path

import pytest

from runtime.access.keyring import KeyRing
from runtime.config.keys import KeySettings
from runtime.errors import ConfigError


def test_plain_named_and_filed_keys_each_have_their_identity(tmp_path: Path) -> None:
    filed = tmp_path / "keys.toml"
    digest = hashlib.sha256(b"sk-file").hexdigest()
    filed.write_text(f'[[keys]]\nname = "filer"\nkey_sha256 = "{digest}"\nrpm = 5\n')
    named = [KeySettings(name="named", key="sk-named", chutes=("a",))]  # type: ignore[arg-type]
    ring = KeyRing(["plain"], named, filed, ["a", "b"])
    found = [ring.identify([k]) for k in (b"plain", b"sk-named", b"sk-file", b"nope")]
    assert [f.name if f else None for f in found] == ["api-key-1", "named", "filer", None]
    assert found[1] is not None and not found[1].may_call("b")
    assert found[2] is not None and found[2].rpm == 5
    assert len(ring) == 3


def test_a_bad_file_keeps_the_keys_from_before(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    filed = tmp_path / "keys.toml"
    filed.write_text('[[keys]]\nname = "one"\nkey = "sk-1"\n')
    ring = KeyRing(keys_file=filed, chutes=["a"])
    for broken, says in [
        ('[[keys]]\nname = "two"\nkey = "sk-2"\nchutes = ["zzz"]\n', "not a chute served"),
        ('[[keys]]\nname = "two"\n', "give `key` or `key_sha256`"),
        ('[[keys]]\nname = "a"\nkey = "x"\n[[keys]]\nname = "a"\nkey = "y"\n', "share the name"),
        ('[[keys]]\nname = "a"\nkey = "x"\n[[keys]]\nname = "b"\nkey = "x"\n', "same key"),
        ("[server]\nport = 1\n", "only [[keys]]"),
    ]:
        filed.write_text(broken)
        with caplog.at_level(logging.ERROR, logger="chutebox.keys"):
            assert not ring.reload()
        assert says in caplog.text and ring.identify([b"sk-1"]) is not None
        caplog.clear()
    filed.write_text('[[keys]]\nname = "two"\nkey = "sk-2"\n')
    assert ring.changed() and ring.reload()
    assert ring.identify([b"sk-1"]) is None and ring.identify([b"sk-2"]) is not None


def test_a_keys_file_that_cannot_be_read_at_start_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        KeyRing(keys_file=tmp_path / "missing.toml")
