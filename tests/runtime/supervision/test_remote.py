import asyncio
from pathlib import Path

import pytest

from runtime.config.settings import ChuteSettings, load_settings
from runtime.errors import ConfigError
from runtime.supervision.remote import Answer, FollowTimes, follow, read_key


def test_the_key_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    assert read_key("K", None, {"K": " secret \n"}) == "secret"
    key = tmp_path / "key"
    key.write_text("from-file\n# a comment line is not read\n")
    assert read_key(None, key, {}) == "from-file"
    assert read_key(None, None, {}) == ""
    with pytest.raises(ConfigError, match="K is not set"):
        read_key("K", None, {})
    with pytest.raises(ConfigError, match="cannot read"):
        read_key(None, tmp_path / "missing", {})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"api_key_env": "K"}, "api_key_env names the key of an engine at `url`"),
        ({"url": ["http://e:1"], "api_key_env": "K", "api_key_path": "/k"}, "not both"),
        ({"url": ["http://e:1"], "engine_args": "--dtype half"}, "engine_args is for engines"),
        ({"url": ["http://e:1"], "replicas": 2}, "replicas=2 but 1 url"),
        ({"url": ["http://e:1"], "nodes": 2}, "nodes is for engines"),
        ({"nodes": 2, "replicas": 2}, "runs one replica here"),
        ({"url": ["ftp://e:1"]}, "write https://host:port"),
    ],
)
def test_remote_settings_that_cannot_work_are_refused(fields: dict[str, object],
                                                      message: str) -> None:  # fmt: skip
    with pytest.raises(ValueError, match=message):
        ChuteSettings.model_validate({"model": "m", **fields})


def test_urls_come_from_flags_env_or_file(tmp_path: Path) -> None:
    env = {"CHUTEBOX_URL": "http://a:1,http://b:2"}
    settings = load_settings({"model": "m"}, env)
    assert settings.chutes[0].url == ("http://a:1", "http://b:2")
    assert settings.chutes[0].remote
    flags = load_settings({"model": "m", "url": ["http://c:3"]}, {})
    assert flags.chutes[0].url == ("http://c:3",)


def test_follow_reports_each_probe_and_wakes_early() -> None:
    answers = [Answer(False, "refused"), Answer(True), Answer(False, "gone")]
    seen: list[str] = []

    async def run() -> None:
        wake = asyncio.Event()

        async def probe() -> Answer:
            answer = answers.pop(0)
            if not answers:
                raise asyncio.CancelledError
            return answer

        async def answered() -> None:
            seen.append("up")

        task = asyncio.create_task(follow(probe, wake, FollowTimes(60, 0.01), answered,
                                          lambda why: seen.append(why)))  # fmt: skip
        while "up" not in seen:
            await asyncio.sleep(0.01)
        wake.set()  # a request found it refusing: probe now, not in 60 s
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)

    asyncio.run(run())
    assert seen == ["refused", "up"]
