"""Real server processes for end-to-end tests: `python -m ivr` on a free loopback port.

Each server gets its own SQLite file and only the settings a test gives it (nothing leaks in from
the environment of whoever runs the tests). Start-up is awaited by connecting to the port; the
process is stopped at the end, and its log is shown if it fails to start.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ivr.config import DEFAULTS

REPO = Path(__file__).resolve().parent.parent
#: Generous: a loaded 2-core machine may take a few seconds to import and migrate.
START_TIMEOUT_SECONDS = 60


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class LineServer:
    """One `python -m ivr` process and what a test needs to reach it."""

    folder: Path
    settings: dict[str, str]
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log_path = self.folder / "server.log"
        self.settings.setdefault("DATABASE_URL", f"sqlite:///{self.folder / 'careline.sqlite3'}")
        self.settings.setdefault("SECRET_KEY", "phone-test-secret")

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LineServer:
        """Start the process and wait until it accepts connections."""
        self.port = free_port()
        environ = {name: value for name, value in os.environ.items() if name not in DEFAULTS}
        environ.update(self.settings)
        environ.update(PORT=str(self.port), PYTHONUNBUFFERED="1")
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ivr"], cwd=REPO, env=environ, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the line exited with {self.process.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the line did not start within {START_TIMEOUT_SECONDS} s:\n{self.log()}")

    def stop(self) -> None:
        """Stop the process (politely, then not)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def log(self) -> str:
        """What the server printed."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
