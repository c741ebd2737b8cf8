"""Real line processes for tests: gunicorn with the repository's gunicorn.conf.py, on loopback ports.

`LineServer` starts one (its output kept in a log file to inspect), waits until it answers, and
stops it. `HttpClient` posts to one or several such servers with the same interface as Flask's test
client, so `tests.helpers.support.Call` can drive a call over real HTTP.
"""

from __future__ import annotations

import http.client
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from ivr import phone
from tests.helpers.databases import upgraded
from tests.helpers.support import AUTH_TOKEN, PUBLIC_BASE_URL

REPO = Path(__file__).resolve().parents[2]
#: Production serving: gunicorn with gunicorn.conf.py (HOST, PORT, WEB_CONCURRENCY from the environment).
GUNICORN = (str(Path(sys.executable).with_name("gunicorn")), "-c", "gunicorn.conf.py")
#: Local serving, as `make run` does.
PYTHON_M_IVR = (sys.executable, "-m", "ivr")
#: Generous: a loaded 2-core machine may take a few seconds to import and migrate.
START_TIMEOUT_SECONDS = 60.0


def line_environment(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a line process: signed requests required, staff never in, no Twilio account."""
    settings = {
        "DATABASE_URL": database_url,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "SECRET_KEY": "test-secret-key",
        "STAFF_HOURS": "closed",
        "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "1",
    }
    return phone.line_environment({**settings, **extra})


@dataclass
class Answer:
    """An HTTP response, shaped like the parts of Flask's test response that tests read."""

    status_code: int
    mimetype: str
    data: bytes


def http_post(port: int, path: str, form: Mapping[str, str], headers: Mapping[str, str]) -> Answer:
    """POST a form to 127.0.0.1:`port`."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body = urlencode(form)
        all_headers = {"Content-Type": "application/x-www-form-urlencoded", **headers}
        connection.request("POST", path, body=body, headers=all_headers)
        response = connection.getresponse()
        data = response.read()
        mimetype = (response.getheader("Content-Type") or "").split(";")[0].strip()
        return Answer(response.status, mimetype, data)
    finally:
        connection.close()


def run_phone(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m ivr.phone ARGS` as a person runs it, with a bare environment; its output as text."""
    return subprocess.run(
        [sys.executable, "-m", "ivr.phone", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONIOENCODING": "utf-8"},
    )


class HttpClient:
    """Posts like Flask's test client, to real servers: each request goes to the next port in turn."""

    def __init__(self, ports: Sequence[int]) -> None:
        self.ports = list(ports)
        self.served_by: list[int] = []

    def post(self, path: str, data: Mapping[str, str], headers: Mapping[str, str]) -> Answer:
        port = self.ports[len(self.served_by) % len(self.ports)]
        self.served_by.append(port)
        return http_post(port, path, data, headers)


def local_line(folder: Path, settings: Mapping[str, str]) -> LineServer:
    """`python -m ivr` with its own SQLite file in `folder` and only the settings given (ready to answer).

    Nothing leaks in from the environment of whoever runs the tests: every setting the line knows
    is taken out of it first.
    """
    folder.mkdir(parents=True, exist_ok=True)
    own = {
        "DATABASE_URL": f"sqlite:///{folder / 'careline.sqlite3'}",
        "SECRET_KEY": "phone-test-secret",
        # As `make run`: local mode unless the test gives a token (then it gives PUBLIC_BASE_URL too).
        "LOCAL_MODE": "0" if settings.get("TWILIO_AUTH_TOKEN") else "1",
    }
    environ = phone.line_environment({**own, **settings, "PYTHONUNBUFFERED": "1"})
    if environ["LOCAL_MODE"] != "1":  # local mode upgrades itself; otherwise it is a release step
        upgraded(environ["DATABASE_URL"])
    server = LineServer(environ, folder / "server.log", PYTHON_M_IVR)
    try:
        server.wait_until_ready()
    except AssertionError:
        server.stop()
        raise
    return server


class LineServer:
    """One line process (by default a gunicorn master with WEB_CONCURRENCY workers) on a free loopback port."""

    def __init__(self, environ: Mapping[str, str], log_path: Path, command: Sequence[str] = GUNICORN) -> None:
        self.port = phone.free_port()
        self.environ = dict(environ)
        self.log_path = log_path
        self._log = log_path.open("wb")
        self._stopping = False
        self.process = subprocess.Popen(
            list(command),
            cwd=REPO,
            env={**self.environ, "PORT": str(self.port)},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def wait_until_ready(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Wait for GET /healthz to answer 200; fail with the server's log if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the line exited with {self.process.returncode}:\n{self.log()}")
            if phone.answers(self.port, "GET", "/healthz"):
                return
            time.sleep(0.05)
        raise AssertionError(f"the line did not answer within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        """Everything the server printed so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, number: int) -> None:
        """Send a signal to the gunicorn master."""
        self.process.send_signal(number)

    def begin_stop(self) -> None:
        """Ask for a graceful shutdown (SIGTERM) without waiting for it: stop several servers at once."""
        if self.process.poll() is None and not self._stopping:
            self._stopping = True
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM); killed if it takes too long."""
        if self.process.poll() is None:
            self.begin_stop()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def __enter__(self) -> LineServer:
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.stop()
