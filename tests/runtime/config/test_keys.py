from pathlib import Path

import pytest

from runtime.config.settings import load_settings
from runtime.errors import ConfigError

CHUTE = '[[chutes]]\nmodel = "m"\nname = "tiny"\nengine = "fake"\n'


def settings_from(tmp_path: Path, text: str) -> object:
    config = tmp_path / "chutebox.toml"
    config.write_text(text)
    return load_settings({}, {}, config)


def test_keys_in_the_config_file(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        CHUTE + '[[keys]]\nname = "ann"\nkey = "sk"\nrpm = 3\nquotas = { tiny = 2, "*" = 5 }\n',
    )
    (key,) = settings.keys  # type: ignore[attr-defined]
    assert key.name == "ann" and key.rpm == 3 and key.quotas == {"tiny": 2, "*": 5}
    assert settings.usage_db == settings.cache_dir / "usage.db"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ('name = "a"\nkey = "k"\nchutes = ["nope"]', "not a chute served"),
        ('name = "a"\nkey = "k"\nquotas = { nope = 1 }', "not a chute served"),
        ('name = "a"\nkey = "k"\nrpm = 0', "rpm"),
        ('name = "a"\nkey_sha256 = "abc"', "64 lower-case hex"),
        ('name = "a b"\nkey = "k"', "letters, digits"),
        ('name = "a"\nkey = "k"\nkey_sha256 = "' + "0" * 64 + '"', "one of them"),
        ('name = "a"\nkey = "k"\nquotas = { tiny = -1 }', "0 or more"),
    ],
)
def test_bad_keys_are_refused_naming_the_fault(tmp_path: Path, entry: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        settings_from(tmp_path, CHUTE + "[[keys]]\n" + entry + "\n")


def test_a_keys_file_is_checked_at_start(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text('[[keys]]\nname = "a"\nkey = "k"\n[[keys]]\nname = "a"\nkey = "j"\n')
    with pytest.raises(ConfigError, match="share the name"):
        settings_from(tmp_path, f'keys_file = "{keys}"\n' + CHUTE)
