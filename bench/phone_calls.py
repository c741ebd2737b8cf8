"""How fast the line answers a phone call's webhooks, measured through the local phone.

Run by hand (never as a timed test):

    .venv/bin/python bench/phone_calls.py            # 30 calls in-process on a temporary SQLite file
    .venv/bin/python bench/phone_calls.py --url http://127.0.0.1:5000 --calls 50   # against `make run`

Each call greets, plays a section, repeats it, goes to the main menu, stays silent twice, and hangs
up. Target: median webhook answer under 50 ms and 95th percentile under 150 ms on SQLite (Twilio
waits up to 15 s, but every millisecond is dead air for the caller).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ivr import create_app  # after the path set-up, so the script runs from anywhere
from ivr.phone import (
    Answer,
    AppTransport,
    HttpTransport,
    PhoneSetup,
    ScriptedCaller,
    Transport,
    parse_actions,
    place_call,
)

SCRIPT = "5 * # silence silence hangup"
MEDIAN_TARGET_MS = 50
P95_TARGET_MS = 150


class Timed:
    """A transport that times every request it passes on."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.base_url = inner.base_url
        self.seconds: list[float] = []

    def send(self, method: str, url: str, form: Mapping[str, str], headers: Mapping[str, str]) -> Answer:
        started = time.perf_counter()
        answer = self.inner.send(method, url, form, headers)
        self.seconds.append(time.perf_counter() - started)
        return answer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--url", help="a running line (default: build one in this process)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.url:
            inner: Transport = HttpTransport(args.url)
        else:
            folder = stack.enter_context(tempfile.TemporaryDirectory())
            app = create_app(
                {"LOCAL_MODE": "1", "DATABASE_URL": f"sqlite:///{folder}/bench.sqlite3", "SECRET_KEY": "bench"}
            )
            inner = AppTransport(app)
        timed = Timed(inner)
        for _ in range(args.calls):
            result = place_call(PhoneSetup(timed), ScriptedCaller(parse_actions(SCRIPT)))
            if not result.ok:
                print(result.transcript.text())
                return 1
    milliseconds = sorted(seconds * 1000 for seconds in timed.seconds)
    median = statistics.median(milliseconds)
    p95 = milliseconds[int(len(milliseconds) * 0.95) - 1]
    print(f"{args.calls} calls, {len(milliseconds)} webhook requests")
    print(f"median {median:.1f} ms (target < {MEDIAN_TARGET_MS}), p95 {p95:.1f} ms (target < {P95_TARGET_MS})")
    return 0 if median < MEDIAN_TARGET_MS and p95 < P95_TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
