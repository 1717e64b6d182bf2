"""The moving averages a model list orders by."""

from __future__ import annotations

from runtime.fleet.speed import Speed


def test_a_stream_measures_its_prompt_by_its_first_event_and_its_output_after() -> None:
    speed = Speed()
    speed.observe(prompt_tokens=100, output_tokens=11, seconds=1.5, first=0.5)
    assert speed.prompt_tps == 200 and speed.output_tps == 10
    speed.observe(prompt_tokens=100, output_tokens=11, seconds=1.5, first=0.25)
    assert speed.prompt_tps == 200 + 0.2 * (400 - 200)


def test_a_whole_reply_measures_only_its_output() -> None:
    speed = Speed()
    speed.observe(prompt_tokens=100, output_tokens=20, seconds=2.0, first=None)
    assert speed.prompt_tps is None and speed.output_tps == 10
    speed.observe(prompt_tokens=5, output_tokens=0, seconds=0.1, first=None)  # embeddings
    assert speed.output_tps == 10
