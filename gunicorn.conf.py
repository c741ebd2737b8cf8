"""gunicorn settings for CareLine (`make serve`, or `gunicorn -c gunicorn.conf.py 'ivr:create_app()'`).

Environment: HOST (default 127.0.0.1), PORT (default 5000), WEB_CONCURRENCY (default 2 x CPUs + 1);
the line's own settings (docs/configuration.md) are read by the app itself.

Decisions, and why:
- Preloaded app: the master process reads the configuration, loads and checks every prompt file and
  checks the database schema ONCE (upgrading it is a release step: `flask --app ivr db upgrade`), then
  forks the workers. Start-up is one load instead of one per worker,
  workers share the loaded content's memory, and a broken prompt file stops the start with a message
  instead of a loop of crashing workers. Each worker drops the database connections it inherited,
  and gc.freeze() keeps the garbage collector from copying the shared pages into every worker.
- Sync workers: every request is short CPU work (check the signature, one dialog step, TwiML) plus
  at most one small database statement, so a process per request in flight is simplest and fastest.
- timeout 10 s: Twilio gives up on a webhook after 15 s; a worker stuck for 10 s is killed and
  replaced, so the caller's next request still finds a worker. graceful_timeout: in-flight requests
  get as long to finish on reload or shutdown.
- Access log: time, method, path WITHOUT query string, status, bytes, milliseconds. Never the form
  body (phone numbers, texts, speech) and never headers. The query only carries menu state, but it
  is left out too: nothing there is needed to run the line.
  LOG_FORMAT=json makes every log line (gunicorn's, the access log, the line's own) one JSON object
  (ivr/logs.py), with the same fields and the same privacy.
- SIGHUP reloads gracefully: gunicorn re-reads this file, the master builds the app again (so edited
  prompts/ files and new settings in this file take effect), and new workers replace old ones once
  their in-flight requests are done. If the new prompts fail their checks, the error is logged and
  the running content stays in service: a typo never takes the line down. New Python code or new
  environment variables need a restart (or gunicorn's USR2 + QUIT upgrade).
- Metrics from every worker (/metrics, ivr/metrics.py): prometheus_client's multiprocess mode, where each
  process keeps its counts in files in PROMETHEUS_MULTIPROC_DIR and a scrape adds them up. The folder is
  emptied when the master starts (counts left by a run before would be added in), or made afresh in the
  temporary folder when the variable is not set (and removed on exit); `child_exit` drops a dead worker's
  live values. It must be set before anything imports prometheus_client, so before the line is imported.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

#: The master that prepared the metrics folder: a reload (SIGHUP) reads this file again, and must not
#: empty the folder its running workers count in.
_METRICS_MASTER = "CARELINE_METRICS_MASTER"
#: Set when this file made the folder itself: removed when the master exits.
_METRICS_OWN_FOLDER = "CARELINE_METRICS_OWN_FOLDER"


def _prepare_metrics_folder() -> None:
    """PROMETHEUS_MULTIPROC_DIR set, and emptied of any earlier run's counts, once per master."""
    if os.environ.get(_METRICS_MASTER) == str(os.getpid()):
        return
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if folder:
        Path(folder).mkdir(mode=0o700, parents=True, exist_ok=True)
        for stale in Path(folder).glob("*.db"):
            stale.unlink()
    else:
        folder = tempfile.mkdtemp(prefix="careline-metrics-")
        os.environ[_METRICS_OWN_FOLDER] = folder
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    os.environ[_METRICS_MASTER] = str(os.getpid())


_prepare_metrics_folder()

from ivr.config import parse_settings, serving_settings  # noqa: E402  (after the metrics folder is set)
from ivr.logs import gunicorn_logconfig  # noqa: E402

_serving = serving_settings()
_log_format = parse_settings({"LOG_FORMAT": os.environ.get("LOG_FORMAT") or "text"})["LOG_FORMAT"]

wsgi_app = "ivr:create_app()"
_host = f"[{_serving['host']}]" if ":" in _serving["host"] else _serving["host"]  # an IPv6 address needs brackets
bind = [f"{_host}:{_serving['port']}"]
workers = _serving["workers"]
worker_class = "sync"
preload_app = True
timeout = 10
graceful_timeout = 10
proc_name = "careline"
# gunicorn's runtime control socket is not used here; without it, several masters on one machine
# never compete for its one default path.
control_socket_disable = True
# Heartbeat files on a RAM disk where there is one: a slow disk must not make a worker look stuck.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

accesslog = "-"
errorlog = "-"
loglevel = "info"
access_log_format = "%(t)s %(m)s %(U)s %(s)s %(B)s %(M)sms"
if _log_format == "json":  # LOG_FORMAT=json: every log one JSON object a line, the time in its own field
    logconfig_dict = gunicorn_logconfig()
    access_log_format = "%(m)s %(U)s %(s)s %(B)s %(M)sms"


def pre_fork(server: Any, worker: Any) -> None:
    """In the master, before each fork: move the loaded app out of the garbage collector's sight.

    The content, the modules and the app never die; without this, every collection in a worker
    would walk them and write to their pages, copying the master's memory into each worker.
    """
    gc.freeze()


def post_fork(server: Any, worker: Any) -> None:
    """In each new worker: never share the master's database connections."""
    # .get: bench/ceiling.py runs with these same settings and has no database.
    careline = getattr(server.app.wsgi(), "extensions", {}).get("careline")
    if careline is not None:
        careline.storage.after_fork()


def worker_exit(server: Any, worker: Any) -> None:
    """In a worker on its way out (shutdown, reload, max requests): add its waiting usage counts."""
    careline = getattr(server.app.wsgi(), "extensions", {}).get("careline")
    if careline is not None:
        careline.usage.close()


def on_reload(server: Any) -> None:
    """SIGHUP: build the app again in the master, so new workers get the edited content; keep the old on error."""
    running = server.app.callable
    server.app.callable = None
    try:
        server.app.wsgi()
    except Exception as error:  # a bad prompt file, setting or database: keep serving what runs
        server.app.callable = running
        server.log.error("Reload refused, still serving the running ones: %s: %s", type(error).__name__, error)
        return
    server.log.info("Reload: settings and prompts loaded again; new workers will use them")


def child_exit(server: Any, worker: Any) -> None:
    """In the master, after a worker ended: drop its live values from the metrics (its counts stay)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    """The master is leaving: remove the metrics folder if this file made it."""
    folder = os.environ.get(_METRICS_OWN_FOLDER, "")
    if folder and folder == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(folder, ignore_errors=True)
