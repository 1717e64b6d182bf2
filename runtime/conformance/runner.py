"""Run the checks against a target and collect the results."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import anthropic
import httpx
import openai

from runtime.conformance.check import Check, Failed, Result, Session, Skipped, Target

Validator = Callable[[Session], list[str]]


def select(checks: Sequence[Check], only: Sequence[str], skip: Sequence[str]) -> list[Check]:
    groups = {c.group for c in checks}
    unknown = sorted((set(only) | set(skip)) - groups)
    if unknown:
        raise ValueError(
            f"unknown group(s) {', '.join(unknown)}; groups: {', '.join(sorted(groups))}"
        )
    return [c for c in checks if (not only or c.group in only) and c.group not in skip]


def run_check(check: Check, session: Session, validate: Validator | None) -> Result:
    session.sent.clear()
    session.exchanges.clear()
    started = time.monotonic()
    result = Result(check.group, check.name, "pass", expected=check.expected)
    try:
        result.got = check.run(session)
        problems = validate(session) if validate else []
        if problems:
            raise Failed("responses valid against the OpenAPI document", "; ".join(problems))
    except Failed as exc:
        result.status, result.expected, result.got = "fail", exc.expected, exc.got
    except Skipped as exc:
        result.status, result.got = "skip", str(exc)
    except (httpx.HTTPError, openai.APIError, anthropic.APIError, ValueError, KeyError,
            IndexError, TypeError) as exc:  # fmt: skip
        result.status, result.got = "fail", f"{type(exc).__name__}: {exc}"
    result.sent = " | ".join(session.sent)[:600]
    result.seconds = round(time.monotonic() - started, 3)
    return result


def run(checks: Sequence[Check], target: Target, validate: Validator | None = None) -> list[Result]:
    session = Session(target)
    try:
        return [run_check(check, session, validate) for check in checks]
    finally:
        session.close()
