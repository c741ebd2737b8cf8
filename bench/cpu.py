"""CPU per request in one process, by hand: `.venv/bin/python -m bench.cpu [--profile sms]`.

The benchmark's requests (bench/run.py: every id new, most callers new) through the line's WSGI app
in this process, no server and no network: CPU time per request of each kind, the best of several
runs (a shared machine only ever adds time). Unlike the throughput ratios of `make bench`, this holds
still on a loaded machine, so it tells where a request's time goes and whether a change helped.
`--profile KIND` prints cProfile's top functions for that kind.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench.run import AUTH_TOKEN, PUBLIC_BASE_URL, Request, RequestMaker
from ivr import create_app
from ivr.content import load_content
from ivr.storage import Storage

KINDS = ("greeting", "menu", "section", "sms")


def make_requests(maker: RequestMaker, kind: str, count: int) -> list[Request]:
    """`count` new requests of `kind`, as bench/run.py makes them."""
    language = load_content().language("en")
    keys = [section.key for section in language.sections.values()]
    if kind == "greeting":
        return maker.greetings(count)
    if kind == "menu":
        return maker.menu_steps(count)
    if kind == "section":
        return maker.sections(count, keys)
    return maker.texts(count, [section.keyword for section in language.sections.values()])


def environ_of(request: Request) -> dict[str, Any]:
    """The WSGI environ a server would hand the app for `request`."""
    path, body, signature, token = request
    path_info, _, query = path.partition("?")
    data = body.encode()
    return {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": str(len(data)),
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_X_TWILIO_SIGNATURE": signature,
        "HTTP_I_TWILIO_IDEMPOTENCY_TOKEN": token,
        "wsgi.input": data,  # replaced by a fresh stream for each call
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }


def run(app: Callable[..., Iterable[bytes]], requests: list[Request]) -> float:
    """CPU seconds to answer `requests` (each must answer 200)."""
    environs = [environ_of(request) for request in requests]
    status: list[str] = []

    def start_response(line: str, _headers: Any, _exc: Any = None) -> None:
        status.append(line)

    started = time.process_time()
    for environ in environs:
        environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"])
        b"".join(app(environ, start_response))
    spent = time.process_time() - started
    bad = [line for line in status if not line.startswith("200")]
    if bad:
        raise SystemExit(f"{len(bad)} requests failed, e.g. {bad[0]}")
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per kind and run (default 1000)")
    parser.add_argument("--runs", type=int, default=5, help="runs per kind, best kept (default 5)")
    parser.add_argument("--only", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--profile", choices=KINDS, help="print cProfile's top functions for this kind")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="careline-cpu-"))
    database_url = f"sqlite:///{folder / 'careline.sqlite3'}"
    Storage(database_url, "bench-secret-key").migrate()  # the release step the line expects done
    app = create_app(
        {
            "DATABASE_URL": database_url,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
            "SECRET_KEY": "bench-secret-key",
            "STAFF_NUMBERS": "+15550001111",
            "SPOOL_DIR": str(folder / "spool"),
            "LOCAL_MODE": 0,
        }
    )
    maker = RequestMaker()
    for kind in args.only:
        run(app, make_requests(maker, kind, 200))  # warm up: caches, pooled connections
        best = min(run(app, make_requests(maker, kind, args.requests)) for _ in range(args.runs))
        print(f"{kind:9} {best / args.requests * 1e6:7.0f} us CPU per request (best of {args.runs} x {args.requests})")
    if args.profile:
        requests = make_requests(maker, args.profile, args.requests)
        profile = cProfile.Profile()
        profile.runcall(run, app, requests)
        pstats.Stats(profile).sort_stats("cumulative").print_stats(90)


if __name__ == "__main__":
    main()
