"""The access log's batches: when entries become records, and what each record says."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from runtime.api.record import RequestRecord
from runtime.observability.access import AccessLog
from runtime.observability.usage import Usage


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.flushes = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def flush(self) -> None:
        self.flushes += 1


def logger_with(handler: logging.Handler, name: str, level: int = logging.INFO) -> logging.Logger:
    logger = logging.getLogger(f"test.access.{name}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(level)
    return logger


def record(chute: str = "", invocation_id: str = "-", usage: Usage | None = None) -> RequestRecord:
    return RequestRecord(None, None, invocation_id, 0.0, chute=chute, usage=usage)


def scope(path: str = "/v1/chat/completions") -> dict[str, Any]:
    return {"client": ("127.0.0.1", 5123), "method": "POST", "path": path}


def test_a_full_batch_is_logged_at_once_each_record_with_its_own_request() -> None:
    async def scenario() -> tuple[list[int], Collect]:
        handler = Collect()
        log = AccessLog(logger_with(handler, "full"), capacity=3, interval=60)
        seen = []
        for i in range(3):
            log.add(scope(), record("tiny", f"id-{i}", Usage(i, 2 * i)), 200 + i, 0.0015)
            seen.append(len(handler.records))
        return seen, handler

    seen, handler = asyncio.run(scenario())
    assert seen == [0, 0, 3]
    assert handler.flushes == 1  # one write for the batch where the handler batches
    first, _, last = handler.records
    assert first.getMessage() == (
        '127.0.0.1:5123 "POST /v1/chat/completions" 200 1.5ms chute=tiny tokens=0+0 id=id-0'
    )
    fields: dict[str, Any] = last.fields  # type: ignore[attr-defined]
    assert fields == {
        "client": "127.0.0.1:5123", "method": "POST", "path": "/v1/chat/completions",
        "status": 202, "duration_ms": 1.5, "chute": "tiny", "invocation_id": "id-2",
        "prompt_tokens": 2, "completion_tokens": 4,
    }  # fmt: skip


def test_a_lone_entry_is_logged_when_the_interval_ends_with_the_time_its_request_ended() -> None:
    async def scenario() -> tuple[float, list[logging.LogRecord], list[logging.LogRecord]]:
        handler = Collect()
        log = AccessLog(logger_with(handler, "timer"), capacity=64, interval=0.05)
        wall = time.time()
        log.add(scope(), record(), 404, 0.01)
        before = list(handler.records)
        for _ in range(200):
            if handler.records:
                break
            await asyncio.sleep(0.01)
        return wall, before, handler.records

    wall, before, after = asyncio.run(scenario())
    assert before == [] and len(after) == 1
    logged = after[0]
    assert logged.getMessage() == (
        '127.0.0.1:5123 "POST /v1/chat/completions" 404 10.0ms chute=- id=-'
    )
    assert abs(logged.created - wall) < 0.04  # the request's time, not the batch's (≥ 50 ms on)
    assert logged.msecs == (logged.created - int(logged.created)) * 1000


def test_a_percent_sign_in_a_path_is_logged_as_it_is() -> None:
    handler = Collect()
    log = AccessLog(logger_with(handler, "percent"), capacity=1)
    asyncio.run(_add(log, scope("/v1/%s%d%(x)s")))
    assert '"POST /v1/%s%d%(x)s" 200' in handler.records[0].getMessage()


def test_nothing_is_kept_when_the_logger_does_not_log_info() -> None:
    handler = Collect()
    log = AccessLog(logger_with(handler, "quiet", logging.WARNING), capacity=1)
    asyncio.run(_add(log, scope()))
    log.flush()
    assert handler.records == [] and handler.flushes == 0


async def _add(log: AccessLog, request: dict[str, Any]) -> None:
    log.add(request, record(), 200, 0.001)


class Lines:
    """A stream that keeps what is written."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def test_with_chuteboxs_own_handler_each_line_is_what_a_record_would_have_made() -> None:
    """The batch skips making records when `configure_logging`'s handler is the only one;
    the lines must be the same as through a record, in both formats."""
    from runtime.observability.logs import BatchingHandler, JsonFormatter, TextFormatter

    for formatter in (TextFormatter(), JsonFormatter()):
        fast, slow = Lines(), Lines()
        own = BatchingHandler(fast)
        own.setFormatter(formatter)
        through_records = BatchingHandler(slow)
        through_records.setFormatter(formatter)
        through_records.addFilter(lambda r: True)  # a filter: records must be made
        logs = [
            AccessLog(logger_with(h, f"lines.{i}")) for i, h in enumerate((own, through_records))
        ]

        async def add(log: AccessLog) -> None:
            log.add(scope("/v1/x%20y"), record("tiny", "abc", Usage(12, 5)), 200, 0.0123)
            log.add(scope(), record("", "def"), 401, 0.0004)
            log._pending = [(1795990000.25 + i, *e[1:]) for i, e in enumerate(log._pending)]
            log.close()

        for log in logs:
            asyncio.run(add(log))
        # The two loggers differ only in their names.
        slow_text = slow.text.replace("test.access.lines.1", "test.access.lines.0")
        assert fast.text == slow_text and fast.text.count("\n") == 2


def test_a_logger_above_info_logs_nothing_and_keeps_nothing() -> None:
    async def scenario() -> tuple[Collect, AccessLog]:
        handler = Collect()
        log = AccessLog(logger_with(handler, "quiet", logging.WARNING), capacity=2, interval=60)
        for _ in range(3):
            log.add(scope(), record(), 200, 0.001)
        log.close()
        return handler, log

    handler, log = asyncio.run(scenario())
    assert handler.records == [] and log._pending == []
