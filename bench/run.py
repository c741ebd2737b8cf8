"""Benchmark: the line under gunicorn against the ceiling of its stack, with the same load, in one run.

Run by hand, never in CI: `make bench` (it starts a throwaway PostgreSQL server with default
durability for the PostgreSQL figures), or `.venv/bin/python -m bench.run --help`.

What it does:
- starts the line with gunicorn.conf.py (the settings of `make serve`) on a new SQLite file, a bare
  Flask app answering a constant TwiML menu with the same settings (the ceiling), and, when
  CARELINE_TEST_POSTGRES_URL names a server, the line on a new PostgreSQL database;
- times each start, from process start to the first 200 answer to a signed POST /voice;
- drives each with `wrk` (Debian's package), the same connections and duration, replaying
  precomputed requests signed with the twilio library's RequestValidator: the /voice greeting,
  main-menu key presses and speech, sections, /sms keywords when the line has /sms, and a mix;
- as real traffic is: every request has its own CallSid or MessageSid and Twilio's
  I-Twilio-Idempotency-Token, never sent again (each run starts where the last one of that server
  and kind stopped), and most callers are new (NEW_CALLER_SHARE of requests come from a number
  never seen before, the rest from a few hundred returning numbers);
- prints requests per second, p50 and p99 latency, the ratio to the ceiling, the resident memory
  of each worker, and every target with PASS or MISS (exit status 1 when any is missed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from twilio.request_validator import RequestValidator

from ivr import create_app, phone
from ivr.call_dialog import CallState
from ivr.twiml import state_to_query

ROOT = Path(__file__).resolve().parent.parent
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk.lua"
GUNICORN = Path(sys.executable).with_name("gunicorn")

AUTH_TOKEN = "bench-auth-token"
PUBLIC_BASE_URL = "https://line.example.org"
LINE_NUMBER = "+15559870000"

#: Targets on the 2-core reference machine (issue 18: realistic traffic, 2 workers, 16 connections).
MENU_RATIO_TARGET = 0.40
SMS_RATIO_TARGET = 0.35
P99_TARGET_MS = 25.0
STARTUP_TARGET_S = 1.0
WORKER_RSS_TARGET_MB = 80.0
POSTGRES_SMS_TARGET = 0.8
#: Workers per server: the figures of issue 18 are for 2 (WEB_CONCURRENCY).
WORKERS = 2
#: The share of requests from a number the line has never seen; the rest from RETURNING_CALLERS numbers.
NEW_CALLER_SHARE = 0.8
RETURNING_CALLERS = 500

Request = tuple[str, str, str, str]  # path, form body, signature, idempotency token


# -- requests ------------------------------------------------------------------------------------


class RequestMaker:
    """Webhook requests as Twilio sends them, signed for PUBLIC_BASE_URL."""

    def __init__(self, seed: int = 7) -> None:
        self.validator = RequestValidator(AUTH_TOKEN)
        self.random = random.Random(seed)
        self.callers = [f"+1555{self.random.randrange(10**7):07d}" for _ in range(RETURNING_CALLERS)]

    def signed(self, path: str, form: dict[str, str]) -> Request:
        signature = self.validator.compute_signature(PUBLIC_BASE_URL + path, form)
        return path, urlencode(form), signature, self.new_id("")

    def new_id(self, prefix: str) -> str:
        """A new random id (a CallSid, MessageSid or idempotency token after `prefix`)."""
        return prefix + uuid.UUID(int=self.random.getrandbits(128)).hex

    def caller(self) -> str:
        """A caller's number: most often one never seen before, else one of the returning callers."""
        if self.random.random() < NEW_CALLER_SHARE:
            return f"+1{self.random.randrange(200, 1000)}{self.random.randrange(10**7):07d}"
        return self.random.choice(self.callers)

    def voice_form(self, **extra: str) -> dict[str, str]:
        form = {
            "CallSid": self.new_id("CA"),
            "AccountSid": "AC" + "0" * 32,
            "From": self.caller(),
            "To": LINE_NUMBER,
            "CallStatus": "in-progress",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
        }
        form.update(extra)
        return form

    @staticmethod
    def step_path(state: CallState) -> str:
        return "/voice/step?" + urlencode(state_to_query(state))

    def greetings(self, count: int) -> list[Request]:
        return [self.signed("/voice", self.voice_form(CallStatus="ringing")) for _ in range(count)]

    def menu_steps(self, count: int) -> list[Request]:
        """Key presses and speech on the main menu: repeat, main menu, slower, language, a wrong key, silence."""
        choices = [
            ("en", {"Digits": "*"}),
            ("en", {"Digits": "#"}),
            ("en", {"Digits": "8"}),
            ("en", {"Digits": "9"}),
            ("es", {"Digits": "9"}),
            ("en", {"Digits": "7"}),
            ("en", {}),
            ("en", {"SpeechResult": "main menu", "Confidence": "0.9"}),
        ]
        requests = []
        for index in range(count):
            lang, extra = choices[index % len(choices)]
            requests.append(self.signed(self.step_path(CallState(lang=lang)), self.voice_form(**extra)))
        return requests

    def sections(self, count: int, keys: list[str]) -> list[Request]:
        """A topic key on the main menu: the section's first part (and one usage count)."""
        path = self.step_path(CallState())
        return [self.signed(path, self.voice_form(Digits=keys[i % len(keys)])) for i in range(count)]

    def texts(self, count: int, keywords: list[str]) -> list[Request]:
        """Texts from many people: MENU, a topic keyword, MORE; each with its own MessageSid."""
        words = ["MENU", *keywords, "MORE"]
        requests = []
        for index in range(count):
            form = {
                "MessageSid": self.new_id("SM"),
                "SmsSid": "",
                "AccountSid": "AC" + "0" * 32,
                "MessagingServiceSid": "",
                "From": self.caller(),
                "To": LINE_NUMBER,
                "Body": words[index % len(words)],
                "NumMedia": "0",
                "NumSegments": "1",
                "ApiVersion": "2010-04-01",
            }
            form["SmsSid"] = form["MessageSid"]
            requests.append(self.signed("/sms", form))
        return requests


def write_requests(path: Path, requests: list[Request]) -> Path:
    with path.open("w") as handle:
        for request in requests:
            handle.write("\t".join(request) + "\n")
    return path


# -- servers -------------------------------------------------------------------------------------


@dataclass
class Server:
    """A gunicorn master started with the line's gunicorn.conf.py."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    startup_s: float

    def worker_memory_mb(self) -> list[tuple[float, float]]:
        """(RSS, PSS) in MB of each worker: RSS counts pages shared with the master, PSS shares them out."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        sizes = []
        for pid in children:
            rss = _kilobytes(Path(f"/proc/{pid}/status").read_text(), "VmRSS")
            pss = _kilobytes(Path(f"/proc/{pid}/smaps_rollup").read_text(), "Pss")
            sizes.append((rss / 1024, pss / 1024))
        return sizes

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _kilobytes(text: str, field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def start_server(name: str, app_uri: str, environ: dict[str, str], probe: Request, log: Path) -> Server:
    """Start gunicorn and wait for the first 200 to a signed `probe` request; time it."""
    port = phone.free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(GUNICORN), "-c", "gunicorn.conf.py", app_uri],
        cwd=ROOT,
        env={**environ, "PORT": str(port)},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    path, body, signature, _ = probe
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
    while True:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with {process.returncode}:\n{log.read_text()}")
        if time.perf_counter() - started > 60:
            process.kill()
            raise SystemExit(f"{name} did not answer within 60 s:\n{log.read_text()}")
        if phone.answers(port, "POST", path, body, headers):
            break
        time.sleep(0.005)
    return Server(name, process, port, time.perf_counter() - started)


# -- load ----------------------------------------------------------------------------------------


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    bad: int


def drive(server: Server, requests_file: Path, seconds: int, connections: int, threads: int, start: int = 0) -> Result:
    """Run wrk against `server` with the requests in `requests_file`, from request number `start` on
    (wrk's threads take every `threads`-th request from there)."""
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
        "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{server.port}",
    ]  # fmt: skip
    environ = {
        **os.environ, "BENCH_REQUESTS": str(requests_file), "BENCH_THREADS": str(threads), "BENCH_START": str(start)
    }  # fmt: skip
    output = subprocess.run(command, env=environ, capture_output=True, text=True, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("BENCH "))
    data = json.loads(line[len("BENCH ") :])
    return Result(
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        requests=data["requests"],
        bad=data["bad_status"] + data["socket_errors"],
    )


def combine(parts: list[Result]) -> Result:
    """Rounds of one server and kind: the median round's throughput and percentiles, all requests counted."""
    rps = statistics.median(part.rps for part in parts)
    middle = sorted(parts, key=lambda part: part.p99_ms)[len(parts) // 2]
    requests = sum(part.requests for part in parts)
    return Result(rps, middle.p50_ms, middle.p99_ms, requests, sum(part.bad for part in parts))


def ratio(rounds: dict[tuple[str, str], list[Result]], name: str, base: str, category: str) -> float:
    """Median over rounds of `name`'s throughput over `base`'s, each pair measured back to back.

    Other work on the machine comes and goes; within a round both ran under about the same load.
    """
    pairs = zip(rounds[(name, category)], rounds[(base, category)], strict=True)
    return statistics.median(mine.rps / theirs.rps for mine, theirs in pairs)


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A new database on the PostgreSQL server at `admin_url`, dropped afterwards."""
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    name = f"careline_bench_{os.getpid()}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def upgrade_schema(environ: dict[str, str]) -> None:
    """The release step before a line starts on a new database: `flask --app ivr db upgrade`."""
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "ivr", "db", "upgrade"],
        env=environ, cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def line_environment(database_url: str) -> dict[str, str]:
    return phone.line_environment(
        {
            "DATABASE_URL": database_url,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
            "SECRET_KEY": "bench-secret-key",
            "STAFF_NUMBERS": "+15550001111",  # as in production: staff hours are worked out for every call
            "HOST": "127.0.0.1",
            "WEB_CONCURRENCY": str(WORKERS),
        }
    )


# -- the run -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description="CareLine benchmark (see bench/run.py)")
    parser.add_argument("--seconds", type=int, default=2, help="length of each wrk run (default 2)")
    parser.add_argument("--rounds", type=int, default=5, help="runs per server and kind, taking turns (default 5)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections (default 16)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument(
        "--requests", type=int, default=60000, help="distinct requests per kind (default 60000: ids never repeat)"
    )
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL figures")
    parser.add_argument("--only", nargs="+", metavar="KIND", help="only these: greeting menu section sms mix")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("The benchmark needs wrk: apt-get install -y wrk (make bench installs it when run as root).")
        return 2

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="careline-bench-")))
        sqlite_url = f"sqlite:///{work / 'line.sqlite3'}"

        # What the line offers, from the line itself: topic keys, text keywords, whether /sms exists,
        # and its real main menu for the ceiling to answer with.
        probe_app = create_app(
            {"LOCAL_MODE": "1", "DATABASE_URL": f"sqlite:///{work / 'probe.sqlite3'}", "SECRET_KEY": "probe"}
        )
        content = probe_app.extensions["careline"].content
        has_sms = any(rule.rule == "/sms" for rule in probe_app.url_map.iter_rules())
        maker = RequestMaker()
        greeting = maker.greetings(1)[0]
        with probe_app.test_request_context():
            menu_document = probe_app.test_client().post("/voice", data=dict(maker.voice_form())).data
        (work / "menu.xml").write_bytes(menu_document)
        topic_keys = list(content.topic_keys)
        keywords = [section.keyword for section in content.language(content.default_language).sections.values()]

        # Enough for every run of one server and kind without sending an id twice (see Turns).
        size = args.requests
        categories: dict[str, list[Request]] = {
            "greeting": maker.greetings(size),
            "menu": maker.menu_steps(size),
            "section": maker.sections(size, topic_keys),
        }
        if has_sms:
            categories["sms"] = maker.texts(size, keywords)
        mix = (
            maker.greetings(size * 3 // 20) + maker.menu_steps(size * 9 // 20) + maker.sections(size // 4, topic_keys)
            + (maker.texts(size * 3 // 20, keywords) if has_sms else [])
        )  # fmt: skip
        maker.random.shuffle(mix)
        categories["mix"] = mix
        files = {name: write_requests(work / f"{name}.txt", reqs) for name, reqs in categories.items()}
        chosen = [name for name in files if not args.only or name in args.only]

        servers: list[Server] = []
        stack.callback(lambda: [server.stop() for server in servers])
        ceiling_env = {**line_environment(sqlite_url), "BENCH_CEILING_BODY": str(work / "menu.xml")}
        servers.append(start_server("ceiling", "bench.ceiling:app", ceiling_env, greeting, work / "ceiling.log"))
        upgrade_schema(line_environment(sqlite_url))
        servers.append(
            start_server("sqlite", "ivr:create_app()", line_environment(sqlite_url), greeting, work / "s.log")
        )
        admin_url = os.environ.get("CARELINE_TEST_POSTGRES_URL", "")
        if admin_url and not args.no_postgres:
            pg_url = stack.enter_context(postgres_database(admin_url))
            upgrade_schema(line_environment(pg_url))
            servers.append(
                start_server("postgresql", "ivr:create_app()", line_environment(pg_url), greeting, work / "p.log")
            )
        by_name = {server.name: server for server in servers}

        starts = Turns({name: len(requests) for name, requests in categories.items()}, args.threads)
        for server in servers:  # warm up: first requests fill caches and open database connections
            starts.drive(server, files, "mix", 1, args.connections)
        print(
            f"CareLine benchmark: {os.cpu_count()} CPUs, wrk -t{args.threads} -c{args.connections} "
            f"-d{args.seconds}s x {args.rounds} rounds, workers per server: {len(by_name['sqlite'].worker_memory_mb())}"
        )
        print(f"/sms {'included' if has_sms else 'not on this branch: no SMS figures'}")

        # Rounds, taking turns: a load change on the machine during the run hits every server alike.
        rounds: dict[tuple[str, str], list[Result]] = {}
        for _ in range(args.rounds):
            for category in chosen:
                for server in servers:
                    if server.name == "postgresql" and category not in ("section", "sms", "mix"):
                        continue
                    result = starts.drive(server, files, category, args.seconds, args.connections)
                    rounds.setdefault((server.name, category), []).append(result)
        misses = report(rounds, by_name, has_sms)
        for name, category in starts.wrapped:
            print(f"  NOTE  {name} {category}: more requests than --requests, so some ids were sent twice")
        return 1 if misses else 0


class Turns:
    """Where each server's next run of each kind starts in its requests, so no id is sent to it twice."""

    def __init__(self, sizes: dict[str, int], threads: int) -> None:
        self.sizes = sizes
        self.threads = threads
        self.next: dict[tuple[str, str], int] = {}
        self.wrapped: set[tuple[str, str]] = set()

    def drive(self, server: Server, files: dict[str, Path], category: str, seconds: int, connections: int) -> Result:
        """One wrk run of `category` against `server`, starting after that server's previous run of it."""
        key = (server.name, category)
        start = self.next.get(key, 0)
        result = drive(server, files[category], seconds, connections, self.threads, start)
        # wrk's threads share the requests out one by one; allow for one thread sending more than another.
        end = start + result.requests + 64 * self.threads
        if end > self.sizes[category] and server.name != "ceiling":  # the ceiling answers every id alike
            self.wrapped.add(key)
        self.next[key] = end % self.sizes[category]
        return result


def report(rounds: dict[tuple[str, str], list[Result]], servers: dict[str, Server], has_sms: bool) -> int:
    """Print the figures and the targets; return how many targets were missed."""
    misses = 0
    results = {key: combine(parts) for key, parts in rounds.items()}

    def check(label: str, ok: bool, figure: str) -> None:
        nonlocal misses
        misses += 0 if ok else 1
        print(f"  {'PASS' if ok else 'MISS'}  {label}: {figure}")

    print()
    print(f"{'server':<11} {'requests':<9} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'ratio':>6} {'non-2xx':>8}")
    for (name, category), result in results.items():
        shown = f"{ratio(rounds, name, 'ceiling', category):.2f}" if name != "ceiling" else ""
        print(
            f"{name:<11} {category:<9} {result.rps:>8.0f} {result.p50_ms:>7.1f} {result.p99_ms:>7.1f} "
            f"{shown:>6} {result.bad:>8}"
        )
    print()
    for server in servers.values():
        memory = server.worker_memory_mb()
        rss = ", ".join(f"{r:.0f}" for r, _ in memory)
        pss = ", ".join(f"{p:.0f}" for _, p in memory)
        print(f"{server.name:<11} start-up {server.startup_s:.2f} s; per worker RSS MB [{rss}], PSS MB [{pss}]")

    print("\nTargets:")
    for (name, category), result in results.items():
        if result.bad:
            check(f"{name} {category} answered every request with 2xx", False, f"{result.bad} did not")
    for category in ("greeting", "menu", "section"):
        if ("sqlite", category) not in results:
            continue
        share = ratio(rounds, "sqlite", "ceiling", category)
        check(
            f"line {category} throughput >= {MENU_RATIO_TARGET} x ceiling", share >= MENU_RATIO_TARGET, f"{share:.2f}"
        )
    if ("sqlite", "sms") in results:
        share = ratio(rounds, "sqlite", "ceiling", "sms")
        check(f"line sms throughput >= {SMS_RATIO_TARGET} x ceiling", share >= SMS_RATIO_TARGET, f"{share:.2f}")
    for (name, category), result in results.items():
        if name != "ceiling":
            check(
                f"{name} {category} p99 <= {P99_TARGET_MS:.0f} ms",
                result.p99_ms <= P99_TARGET_MS,
                f"{result.p99_ms:.1f} ms",
            )
    for name in ("sqlite", "postgresql"):
        if name in servers:
            server = servers[name]
            check(
                f"{name} start-up <= {STARTUP_TARGET_S} s",
                server.startup_s <= STARTUP_TARGET_S,
                f"{server.startup_s:.2f} s",
            )
            largest = max(rss for rss, _ in server.worker_memory_mb())
            check(
                f"{name} worker RSS <= {WORKER_RSS_TARGET_MB:.0f} MB",
                largest <= WORKER_RSS_TARGET_MB,
                f"{largest:.0f} MB",
            )
    category = "sms" if has_sms else "section"
    if ("postgresql", category) in results:
        share = ratio(rounds, "postgresql", "sqlite", category)
        check(f"PostgreSQL {category} >= {POSTGRES_SMS_TARGET} x SQLite", share >= POSTGRES_SMS_TARGET, f"{share:.2f}")
    return misses


if __name__ == "__main__":
    sys.exit(main())
