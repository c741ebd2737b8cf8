"""deploy/: the environment file template and the systemd units, checked against the code and by systemd itself."""

from __future__ import annotations

import getpass
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ivr.config import DEFAULTS, parse_settings, serving_settings
from ivr.twilio_setup import number_settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
TEMPLATE = DEPLOY / "careline.env.example"
UNITS = sorted((DEPLOY / "systemd").iterdir())
SERVING = ("HOST", "PORT", "WEB_CONCURRENCY")  # ivr.config.serving_settings
#: Read by gunicorn.conf.py itself (docs/configuration.md, "Serving").
GUNICORN_ONLY = ("PROMETHEUS_MULTIPROC_DIR",)
#: Settings that hold a secret (DATABASE_URL when it has a password in it).
SECRETS = {"TWILIO_AUTH_TOKEN", "SECRET_KEY", "DATABASE_URL", "METRICS_TOKEN"}
SETTING = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]+)=(.*)$")


def template_lines() -> list[tuple[bool, str, str, str]]:
    """Each setting line: (set, not commented), name, value, and the comment lines just above it."""
    found = []
    comment: list[str] = []
    for line in TEMPLATE.read_text(encoding="utf-8").splitlines():
        match = SETTING.match(line)
        if match:
            found.append((match.group(1) is None, match.group(2), match.group(3), "\n".join(comment)))
            comment = []
        elif line.startswith("#"):
            comment.append(line)
        else:
            comment = []
    return found


def test_the_template_lists_exactly_the_settings_the_line_reads() -> None:
    names = [name for _, name, _, _ in template_lines()]
    assert len(names) == len(set(names)), "a setting is listed twice"
    assert set(names) == set(DEFAULTS) | set(SERVING) | set(GUNICORN_ONLY)


def test_secrets_are_marked_and_left_empty() -> None:
    for is_set, name, value, comment in template_lines():
        if name in SECRETS:
            assert "SECRET" in comment, f"{name} is not marked SECRET"
        if name in SECRETS - {"DATABASE_URL"}:
            assert is_set and value == "", f"{name} must be there to fill in, and empty"
    database_url = next(value for _, name, value, _ in template_lines() if name == "DATABASE_URL")
    assert ":" not in database_url.split("://", 1)[1].split("@", 1)[0], "no password in the template"


def test_the_templates_values_are_valid_settings() -> None:
    values = {name: value.strip('"') for is_set, name, value, _ in template_lines() if is_set and value}
    settings = parse_settings({name: value for name, value in values.items() if name in DEFAULTS})
    assert settings["LOCAL_MODE"] == 0 and settings["TRUSTED_PROXY_HOPS"] == 1
    assert settings["PUBLIC_BASE_URL"].startswith("https://")
    assert settings["CONTENT_MUST_BE_APPROVED"] == 1
    assert serving_settings({name: values[name] for name in SERVING if name in values})["host"] == "127.0.0.1"


def unit(name: str) -> str:
    return (DEPLOY / "systemd" / name).read_text(encoding="utf-8")


def test_the_units_use_the_template_the_state_directory_and_the_wsgi_entry() -> None:
    service, purge = unit("careline.service"), unit("careline-purge.service")
    for text in (service, purge):
        assert "EnvironmentFile=/etc/careline/careline.env" in text
        assert "User=careline" in text and "StateDirectory=careline" in text
        for hardening in ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "ProtectHome=yes"):
            assert hardening in text
    assert "SPOOL_DIR=/var/lib/careline/spool" in TEMPLATE.read_text(encoding="utf-8")
    assert re.search(r"^ExecStart=\S+/gunicorn -c gunicorn\.conf\.py ivr:create_app\(\)$", service, re.MULTILINE)
    assert re.search(r"^ExecStart=\S+/flask --app ivr purge$", purge, re.MULTILINE)
    timer = unit("careline-purge.timer")
    assert "Unit=careline-purge.service" in timer and "OnCalendar=*-*-* 03:30:00" in timer


@pytest.mark.slow
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    """`systemd-analyze verify` on the units, with the repository (and its .venv) where /srv/careline would be."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        missing = "systemd-analyze is not installed (.ci/run installs Debian's systemd package)"
        if os.environ.get("CI"):
            pytest.fail(missing)  # CI installs it: a skip there would hide unchecked units
        pytest.skip(missing)
    venv_bin = Path(sys.executable).parent
    home = tmp_path / "careline"
    (home / ".venv").mkdir(parents=True)
    (home / ".venv" / "bin").symlink_to(venv_bin)
    for path in UNITS:
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8").replace("/srv/careline", str(home)))
    result = subprocess.run(
        [analyze, "verify", *(str(tmp_path / path.name) for path in UNITS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr
    # The check is real: a misspelt setting is reported.
    broken = tmp_path / "careline.service"
    broken.write_text(broken.read_text().replace("ProtectSystem=strict", "ProtectSystem=stric"))
    again = subprocess.run([analyze, "verify", str(broken)], capture_output=True, text=True, timeout=120, check=False)
    assert "careline.service:" in again.stdout + again.stderr and "stric" in again.stdout + again.stderr


@pytest.mark.slow  # two new processes (~1 s of start-up each); the template's settings are checked above
def test_careline_flask_runs_a_command_with_the_env_files_settings(tmp_path: Path, sqlite_template: Path) -> None:
    """deploy/careline-flask reads the environment file as systemd does and runs the flask command."""
    shutil.copyfile(sqlite_template, tmp_path / "line.sqlite3")  # migrated, as after `db upgrade`
    template = TEMPLATE.read_text(encoding="utf-8")
    env_file = tmp_path / "careline.env"
    env_file.write_text(
        template.replace("SECRET_KEY=\n", "SECRET_KEY=from-the-env-file\n")
        .replace("TWILIO_AUTH_TOKEN=\n", "TWILIO_AUTH_TOKEN=token-from-the-env-file\n")
        .replace("SPOOL_DIR=/var/lib/careline/spool", f"SPOOL_DIR={tmp_path / 'spool'}")
        .replace("CONTENT_MUST_BE_APPROVED=1", "CONTENT_MUST_BE_APPROVED=0")
        .replace("# RETENTION_DAYS=90", "RETENTION_DAYS=30")
        .replace(
            "DATABASE_URL=postgresql+psycopg://careline@/careline?host=/run/postgresql",
            f"DATABASE_URL=sqlite:///{tmp_path / 'line.sqlite3'}",
        )
    )
    env_file.chmod(0o600)
    venv = Path(sys.executable).parent.parent
    home = tmp_path / "home"
    home.mkdir()
    (home / ".venv").symlink_to(venv)
    for name in ("ivr", "prompts", "gunicorn.conf.py"):
        (home / name).symlink_to(ROOT / name)
    environ = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "CARELINE_HOME": str(home),
        "CARELINE_ENV_FILE": str(env_file),
        "CARELINE_USER": getpass.getuser(),
    }
    upgrade = subprocess.run(  # the release step first: the line refuses an empty schema
        [str(DEPLOY / "careline-flask"), "db", "upgrade"], env=environ, capture_output=True, text=True, timeout=120
    )
    assert upgrade.returncode == 0, upgrade.stderr
    result = subprocess.run(
        [str(DEPLOY / "careline-flask"), "purge", "--dry-run"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "older than 30 days" in result.stdout  # RETENTION_DAYS from the file
    assert not (home / "instance" / "careline.sqlite3").exists()  # DATABASE_URL from the file, not the default


DEPLOYING = ROOT / "docs" / "deploying.md"


def test_the_docs_sed_command_fills_every_placeholder_of_the_nginx_site() -> None:
    site = (DEPLOY / "nginx" / "careline.conf").read_text(encoding="utf-8")
    placeholders = set(re.findall(r"__[A-Z][A-Z_]*[A-Z]__", site))
    filled = set(re.findall(r"-e 's[/#](__[A-Z_]+__)[/#]", DEPLOYING.read_text(encoding="utf-8")))
    assert placeholders and filled == placeholders


def test_the_docs_url_table_is_what_twilio_setup_sets() -> None:
    base = "https://line.example.org"
    rows = re.findall(r"^\| [^|]+ \| `(https://line\.example\.org/[a-z/]+)` \| POST \|$", DEPLOYING.read_text(), re.M)
    urls = {setting.value for setting in number_settings(base, base, True) if str(setting.value).startswith(base)}
    assert set(rows) == urls
