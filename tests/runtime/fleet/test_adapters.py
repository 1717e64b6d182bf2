from pathlib import Path

import pytest

from engines.fake import FakeBackend
from runtime.config.settings import ChuteSettings
from runtime.errors import ConfigError
from runtime.fleet.adapters import AdapterSlots
from runtime.fleet.admission import Admission
from runtime.fleet.chutes import Chute, ChuteSet
from runtime.supervision.launching import adapter_rank


def test_the_least_recently_used_idle_adapter_goes_first() -> None:
    slots = AdapterSlots()
    for name in ("a", "b", "c"):
        slots.held[name] = None
    slots.use("a")  # a: most recent, and in use
    assert slots.evictable() == "b"
    slots.use("b")
    slots.done("b")
    assert slots.evictable() == "c"
    slots.use("c")
    assert slots.evictable() == "b"
    slots.done("a")  # now the least recently used, and free
    assert slots.evictable() == "a"


def test_chute_colon_adapter_names_one_of_its_adapters(tmp_path: Path) -> None:
    settings = ChuteSettings(model=str(tmp_path), name="tiny", engine="fake",
                             adapters={"sql": str(tmp_path)})  # fmt: skip
    chute = Chute(settings=settings, backend=FakeBackend(), admission=Admission(1))
    chutes = ChuteSet([chute])
    assert chutes.resolve("tiny:sql") == (chute, False)
    assert chute.adapter_of("tiny:sql") == "sql" and chute.adapter_of("tiny") is None
    with pytest.raises(Exception, match="model not found"):
        chutes.resolve("tiny:nope")
    with pytest.raises(ValueError, match="letters, digits"):
        ChuteSettings(model=str(tmp_path), adapters={"a b": "/x"})


def test_the_engine_rank_covers_the_largest_adapter(tmp_path: Path) -> None:
    for name, rank in (("a", 4), ("b", 12)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text(f'{{"r": {rank}}}')
    assert adapter_rank({"a": str(tmp_path / "a")}) == 8
    assert adapter_rank({"a": str(tmp_path / "a"), "b": str(tmp_path / "b")}) == 16
    with pytest.raises(ConfigError, match="adapter c: no LoRA adapter"):
        adapter_rank({"c": str(tmp_path / "c")})
