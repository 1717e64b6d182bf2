"""Results as a table for people, JSON for programs, JUnit XML for CI systems."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from xml.etree import ElementTree

from runtime.conformance.check import Result

MARK = {"pass": "PASS", "fail": "FAIL", "skip": "skip"}


def summary(results: list[Result]) -> str:
    counts = Counter(r.status for r in results)
    return f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped"


def table(results: list[Result]) -> str:
    width = max((len(f"{r.group}/{r.name}") for r in results), default=10)
    lines = []
    for r in results:
        lines.append(f"{MARK[r.status]:4}  {f'{r.group}/{r.name}':{width}}  {r.got[:100]}")
        if r.status == "fail":
            lines.append(f"      sent:     {r.sent[:300]}")
            lines.append(f"      expected: {r.expected}")
            lines.append(f"      got:      {r.got[:300]}")
    lines.append("")
    lines.append(summary(results))
    return "\n".join(lines)


def write_json(results: list[Result], path: Path) -> None:
    path.write_text(json.dumps({"summary": summary(results),
                                "results": [asdict(r) for r in results]}, indent=2))  # fmt: skip


def write_junit(results: list[Result], path: Path) -> None:
    suites = ElementTree.Element("testsuites", name="chutebox conformance")
    by_group: dict[str, list[Result]] = {}
    for r in results:
        by_group.setdefault(r.group, []).append(r)
    for group, items in by_group.items():
        suite = ElementTree.SubElement(
            suites, "testsuite", name=group, tests=str(len(items)),
            failures=str(sum(r.status == "fail" for r in items)),
            skipped=str(sum(r.status == "skip" for r in items)),
        )  # fmt: skip
        for r in items:
            case = ElementTree.SubElement(suite, "testcase", classname=group, name=r.name,
                                          time=str(r.seconds))  # fmt: skip
            if r.status == "fail":
                failure = ElementTree.SubElement(case, "failure", message=r.expected)
                failure.text = f"sent: {r.sent}\nexpected: {r.expected}\ngot: {r.got}"
            elif r.status == "skip":
                ElementTree.SubElement(case, "skipped", message=r.got)
    ElementTree.ElementTree(suites).write(path, encoding="unicode", xml_declaration=True)
