"""The check groups; `all_checks()` lists them in the order they run."""

from __future__ import annotations

from runtime.conformance.check import Check
from runtime.conformance.groups import basics, chat, media, tools


def all_checks() -> list[Check]:
    return [*basics.CHECKS, *chat.CHECKS, *tools.CHECKS, *media.CHECKS]
