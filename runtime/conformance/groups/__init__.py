"""The check groups; `all_checks()` lists them in the order they run."""

from __future__ import annotations

from runtime.conformance.check import Check
from runtime.conformance.groups import (
    agentic,
    basics,
    chat,
    cords,
    e2ee,
    media,
    model_lists,
    rerank,
    tools,
)


def all_checks() -> list[Check]:
    return [
        *basics.CHECKS,
        *chat.CHECKS,
        *model_lists.CHECKS,
        *tools.CHECKS,
        *agentic.CHECKS,
        *media.CHECKS,
        *rerank.CHECKS,
        *cords.CHECKS,
        *e2ee.CHECKS,
    ]
