"""How fast a chute has been: moving averages of its prompt and output tokens per second,
as the gateway measured them, for model lists that ask for the fastest (`:latency`,
`:throughput`)."""

from __future__ import annotations

from dataclasses import dataclass

# Each new measure's weight: about the last ten requests count.
WEIGHT = 0.2


@dataclass
class Speed:
    """Prompt tokens per second (prefill: a stream's prompt over its time to first token) and
    output tokens per second (after the first token; a whole reply's over its whole time);
    None until measured."""

    prompt_tps: float | None = None
    output_tps: float | None = None

    def observe(
        self, prompt_tokens: int, output_tokens: int, seconds: float, first: float | None
    ) -> None:
        """One request: its usage, its engine time, and (streams) its time to first token."""
        if first is not None and first > 0 and prompt_tokens > 0:
            self.prompt_tps = _mean(self.prompt_tps, prompt_tokens / first)
        decoding = seconds - first if first is not None else seconds
        produced = output_tokens - 1 if first is not None else output_tokens
        if decoding > 0 and produced > 0:
            self.output_tps = _mean(self.output_tps, produced / decoding)


def _mean(average: float | None, value: float) -> float:
    return value if average is None else average + WEIGHT * (value - average)
