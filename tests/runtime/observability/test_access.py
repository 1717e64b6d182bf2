"""The access log: what each request's record says, in both formats."""

from __future__ import annotations

import json
import logging

from runtime.observability.access import AccessEntry, AccessLog
from runtime.observability.logs import JsonFormatter
from runtime.observability.usage import Usage


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def logger_with(handler: logging.Handler, name: str, level: int = logging.INFO) -> logging.Logger:
    logger = logging.getLogger(f"test.access.{name}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(level)
    return logger


def entry(path: str = "/v1/chat/completions", usage: Usage | None = None) -> AccessEntry:
    return AccessEntry(client=("127.0.0.1", 5123), method="POST", path=path, status=200,
                       elapsed=0.0125, chute="tiny", invocation_id="abc", usage=usage)  # fmt: skip


def test_a_line_names_the_request_its_chute_status_time_and_tokens() -> None:
    collect = Collect()
    AccessLog(logger_with(collect, "line")).add(entry(usage=Usage(7, 3)))
    [record] = collect.records
    assert record.getMessage() == (
        '127.0.0.1:5123 "POST /v1/chat/completions" 200 12.5ms chute=tiny tokens=7+3 id=abc'
    )
    line = json.loads(JsonFormatter().format(record))
    assert (line["path"], line["status"]) == ("/v1/chat/completions", 200)
    assert line["duration_ms"] == 12.5
    assert (line["prompt_tokens"], line["completion_tokens"], line["chute"]) == (7, 3, "tiny")


def test_a_percent_sign_in_a_path_is_logged_as_it_is() -> None:
    collect = Collect()
    AccessLog(logger_with(collect, "percent")).add(entry(path="/v1/%s%d"))
    assert '"POST /v1/%s%d"' in collect.records[0].getMessage()


def test_a_logger_above_info_logs_nothing() -> None:
    collect = Collect()
    AccessLog(logger_with(collect, "quiet", logging.WARNING)).add(entry())
    assert collect.records == []
