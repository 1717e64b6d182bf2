"""Machine instructions per relayed request, counted by valgrind: chutebox against the relay.

    python bench/instructions.py [--requests 800] [--set FIELD=VALUE …] [--no-auth]

Each server (bench/floor.py, bench/relay.py) runs under valgrind's callgrind with counting
off; after a warm-up, counting is switched on (`callgrind_control -i on`) for `--requests`
chat requests sent over 8 keep-alive connections, then off. Instructions are counted in
user space, C included (pydantic, orjson, the regular-expression engine, the interpreter
itself), which `bench/bytecodes.py` cannot see; they are the same from run to run (±0.5%)
where timings here vary by ±10%. The functions that ran the most are listed from
callgrind's own output (`callgrind_annotate`), and the objects CPython's allocator made per
request (callgrind's call counts: every object made is one to free, much of what py-spy
shows as the event loop's share). Not a timing: an instruction in a tight C
loop costs a fraction of one in the interpreter, so read a change here beside
bench/proxy.py's rates. Needs valgrind (`apt-get install valgrind`). `--set` and
`--no-auth` pass to bench/relay.py, for ablations.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proxy import CHAT, KEY, fake_upstream  # noqa: E402
from tests.support.servers import free_port, stop_group  # noqa: E402

CONNECTIONS = 8


def request(port: int) -> bytes:
    body = json.dumps({**CHAT, "model": "bench"}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")  # fmt: skip
    return head.encode() + body


async def send(port: int, total: int) -> None:
    """`total` requests over CONNECTIONS keep-alive connections, each reply read whole."""
    raw = request(port)

    async def one_connection(count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(count):
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"not a 200: {head[:200]!r}")
            length = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
            if length is not None:
                await reader.readexactly(int(length.group(1)))
            else:  # chunked, as the minimal relay replies
                await reader.readuntil(b"\r\n0\r\n\r\n")
        writer.close()

    await asyncio.gather(*(one_connection(total // CONNECTIONS) for _ in range(CONNECTIONS)))


# CPython's constructors worth counting per request, as callgrind names them.
ALLOCATORS = {"_PyObject_Malloc": "small blocks (pymalloc)", "tuple_alloc": "tuples",
              "PyFloat_FromDouble": "floats", "PyDict_New": "dicts (empty)",
              "_PyDict_FromItems": "dicts (literals)", "PyList_New": "lists",
              "PyBytes_FromStringAndSize": "bytes", "PyUnicode_New": "str"}  # fmt: skip


def calls(dump: Path) -> dict[str, int]:
    """How many times each function of ALLOCATORS was called, over the dump."""
    names: dict[str, str] = {}
    totals = dict.fromkeys(ALLOCATORS, 0)
    callee = None
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith(("cfn=", "fn=")):
            ref, _, name = line.split("=", 1)[1].partition(" ")
            if name:
                names[ref] = name
            if line.startswith("cfn="):
                callee = names.get(ref)
        elif line.startswith("calls=") and callee in totals:
            totals[callee] += int(line[6:].split()[0])
    return totals


def count(name: str, argv: list[str], requests: int, top: int) -> int:
    """Instructions per request of one server, printing its busiest functions."""
    out = Path(tempfile.mkdtemp(prefix="chutebox-callgrind-")) / "callgrind.out"
    port = free_port()
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
               f"--callgrind-out-file={out}", sys.executable,
               *[a.format(port=port) for a in argv]]  # fmt: skip
    log = (ROOT / "bench" / "results" / f"instructions-{name.replace(' ', '-')}.log").open("w")
    server = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                asyncio.run(send(port, CONNECTIONS))
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"{name} did not start; see {log.name}") from None
                time.sleep(1)
        asyncio.run(send(port, 400))  # warm: connections, caches, specialised bytecode
        subprocess.run(["callgrind_control", "-i", "on", str(server.pid)], check=True,
                       capture_output=True)  # fmt: skip
        asyncio.run(send(port, requests))
        subprocess.run(["callgrind_control", "-i", "off", str(server.pid)], check=True,
                       capture_output=True)  # fmt: skip
        subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True,
                       capture_output=True)  # fmt: skip
    finally:
        stop_group(server)
        log.close()
    dumps = sorted(out.parent.glob("callgrind.out*"), key=lambda p: p.stat().st_size)
    total = 0
    for line in dumps[-1].read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            total = max(total, int(line.split()[1]))
    print(f"\n{name}: {total / requests:,.0f} instructions per request ({requests} requests)")
    annotated = subprocess.run(["callgrind_annotate", str(dumps[-1])], capture_output=True,
                               text=True).stdout.splitlines()  # fmt: skip
    rows = [line for line in annotated if re.match(r"\s*[\d,]+ \(\s*[\d.]+%\)\s+\S", line)]
    for line in rows[1 : top + 1]:  # the first row is the program's total
        number, _, where = line.strip().partition(" ")
        where = re.sub(r"^\(\s*[\d.]+%\)\s+", "", where).split(" [")[0]
        print(f"  {int(number.replace(',', '')) / requests:10,.0f}  {where.rsplit('/', 1)[-1]}")
    made = calls(dumps[-1])
    print("  made per request: " + ", ".join(
        f"{made[fn] / requests:.0f} {what}" for fn, what in ALLOCATORS.items()))  # fmt: skip
    shutil.rmtree(out.parent, ignore_errors=True)
    return total // requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--top", type=int, default=20, help="functions listed per server")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--no-auth", action="store_true")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("needs valgrind: apt-get install valgrind")
    upstream = fake_upstream("instructions-upstream", cpu="0")
    try:
        url = upstream.base_url
        floor = ["bench/floor.py", "--port", "{port}", "--upstream", url]
        relay = ["bench/relay.py", "--port", "{port}", "--upstream", url,
                 "--upstream-key", "none", "--model", "bench",
                 *[f"--set={item}" for item in args.set],
                 *(["--no-auth"] if args.no_auth else [])]  # fmt: skip
        totals = {name: count(name, argv, args.requests, args.top)
                  for name, argv in (("minimal relay", floor), ("chutebox", relay))}  # fmt: skip
        print(f"\nchutebox / minimal relay: {totals['chutebox'] / totals['minimal relay']:.2f}x")
    finally:
        stop_group(upstream.proc)


if __name__ == "__main__":
    main()
