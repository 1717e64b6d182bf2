from pathlib import Path

import pytest

from runtime.config.settings import ChuteSettings, load_settings
from runtime.errors import ConfigError

SHA = "a" * 40


def default() -> list[dict[str, object]]:
    return [
        {"name": "default", "model": "/tmp", "engine": "fake"},
        {"name": "embed", "model": "/tmp", "engine": "fake"},
    ]


def test_defaults_serve_the_embedded_chute() -> None:
    settings = load_settings({}, {}, default_chutes=default)
    assert [c.served_name for c in settings.chutes] == ["default", "embed"]
    assert settings.port == 8000 and settings.auth and settings.public_models


def test_inline_flags_without_model_adjust_the_default_chute() -> None:
    settings = load_settings({"concurrency": 4}, {}, default_chutes=default)
    assert settings.chutes[0].concurrency == 4 and settings.chutes[0].served_name == "default"
    assert settings.chutes[1].concurrency is None  # the engine default applies


def test_flags_beat_env_beat_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('port = 1\nhost = "0.0.0.0"\n[[chutes]]\nmodel = "/tmp"\nname = "a"\n')
    env = {"CHUTEBOX_PORT": "2", "CHUTEBOX_LOG_LEVEL": "debug"}
    settings = load_settings({"port": 3}, env, config)
    assert (settings.port, settings.host, settings.log_level) == (3, "0.0.0.0", "debug")
    assert settings.chutes[0].served_name == "a"


def test_yaml_config_lists_chutes(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("chutes:\n  - model: /tmp\n    name: a\n  - model: /tmp\n    name: b\n")
    assert [c.name for c in load_settings({}, {}, config).chutes] == ["a", "b"]


def test_env_api_keys_are_comma_separated() -> None:
    settings = load_settings({}, {"CHUTEBOX_API_KEYS": "k1, k2"}, default_chutes=default)
    assert [k.get_secret_value() for k in settings.api_keys] == ["k1", "k2"]


def test_api_key_file_adds_keys(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# comment\nk1\n\nk2\n")
    settings = load_settings({"api_keys": ["k0"], "api_key_file": keys}, {}, default_chutes=default)
    assert [k.get_secret_value() for k in settings.api_keys] == ["k0", "k1", "k2"]


def test_hf_endpoint_comes_from_its_standard_variable() -> None:
    settings = load_settings({}, {"HF_ENDPOINT": "http://hub.local"}, default_chutes=default)
    assert settings.hf_endpoint == "http://hub.local"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"port": 70000}, "port"),
        ({"model": "/tmp", "revision": "main"}, "revision"),
        ({"model": "/tmp", "concurrency": 0}, "concurrency"),
        ({"model": "/tmp", "name": "x:THINKING"}, "name"),
        ({"bogus": 1}, r"unknown setting\(s\): bogus"),
    ],
)
def test_bad_values_name_the_setting(flags: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(flags, {}, default_chutes=default)


def test_unknown_keys_in_a_chute_entry_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[chutes]]\nmodel = "/tmp"\nnum_gpus = 2\n')
    with pytest.raises(ConfigError, match="num_gpus"):
        load_settings({}, {}, config)


def test_config_chutes_and_model_flag_are_exclusive(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[chutes]]\nmodel = "/tmp"\n')
    with pytest.raises(ConfigError, match="not both"):
        load_settings({"model": "/tmp"}, {}, config)


def test_duplicate_chute_names_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[chutes]]\nmodel = "/tmp"\n[[chutes]]\nmodel = "/tmp"\n')
    with pytest.raises(ConfigError, match="share the name"):
        load_settings({}, {}, config)


def test_served_name_defaults() -> None:
    assert ChuteSettings(model="org/model", revision=SHA).served_name == "org/model"
    assert ChuteSettings(model="/tmp").served_name == "tmp"


def test_a_chutes_name_is_resolved_once_and_never_changes(tmp_path: Path) -> None:
    gguf = tmp_path / "SmolLM2-135M.Q4_1.gguf"
    gguf.write_bytes(b"GGUF")
    folder = tmp_path / "my-model"
    folder.mkdir()
    from_file = ChuteSettings(model=str(gguf))
    from_folder = ChuteSettings(model=str(folder))
    assert (from_file.served_name, from_folder.served_name) == ("SmolLM2-135M.Q4_1", "my-model")
    # The file removed after its conversion, the folder moved: the names the engines were
    # started with stay, where reading the filesystem again would give the path itself.
    gguf.unlink()
    folder.rename(tmp_path / "elsewhere")
    assert (from_file.served_name, from_folder.served_name) == ("SmolLM2-135M.Q4_1", "my-model")
    assert ChuteSettings(model="org/model").served_name == "org/model"
