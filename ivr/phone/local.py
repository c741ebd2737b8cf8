"""A line served on this machine: a free loopback port, its process's environment, and whether it answers yet.

Shared by the tests' LineServer (tests/helpers/servers.py) and the benchmark (bench/run.py), which
both start real line processes; bench/ does not import the tests, so the shared part lives here.
"""

from __future__ import annotations

import http.client
import os
import socket
from collections.abc import Mapping

from ivr.config import DEFAULTS


def line_environment(settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment less every setting the line knows, plus `settings`: nothing leaks in."""
    environ = {name: value for name, value in os.environ.items() if name not in DEFAULTS}
    environ.update(settings)
    return environ


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for a line served on this machine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(
    port: int, method: str, path: str, body: str | None = None, headers: Mapping[str, str] | None = None
) -> bool:
    """Whether a line starting on 127.0.0.1:`port` answers this request with 200 yet (False while it cannot)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()
