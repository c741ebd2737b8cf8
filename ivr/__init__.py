"""CareLine: a phone and text-message information line for people living with recurring or advanced cancer.

`create_app()` is the WSGI entry (`ivr:create_app()`): it reads the configuration, loads and checks
every prompt once, opens the database (and refuses to start on a schema that is not current: see
ivr/release.py), and registers the webhooks.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask

from ivr import approval, logs, metrics, release, resilience, retention
from ivr.config import (
    DEFAULTS,
    ConfigError,
    check_mode,
    default_database_url,
    parse_settings,
    settings_from_environment,
)
from ivr.content import PROMPTS_DIR, Content, load_content
from ivr.hours import StaffHours
from ivr.security import WebhookFreeSessionInterface, local_mode, refuse_unless_from_this_machine, trust_proxies
from ivr.services import LineCache, Services, now
from ivr.storage import Storage
from ivr.twiml import Renderer, VoiceSettings
from ivr.usage import UsageCounter

log = logging.getLogger("ivr")

#: Twilio's webhook bodies are a few kilobytes; anything far larger is not Twilio.
MAX_REQUEST_BYTES = 64 * 1024


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the line: configuration from defaults, then the environment, then `test_config`.

    `test_config` may also give CONTENT: prompts `load_content` has already read and checked (Content is
    frozen, so apps can share it), used instead of reading PROMPTS_DIR again. The tests load the prompts
    once per session this way (about 30 ms of every start; tests/conftest.py).
    """
    settings = dict(test_config or {})
    preloaded: Content | None = settings.pop("CONTENT", None)
    if preloaded is not None and settings.get("PROMPTS_DIR"):
        raise ConfigError("give CONTENT or PROMPTS_DIR, not both")
    app = Flask(__name__, instance_relative_config=True)
    release.init_app(app)  # first: it takes over app.cli
    metrics.init_app(app)  # first: a request's time includes every other hook
    app.config.update(DEFAULTS)
    app.config.update(settings_from_environment())
    if settings:
        app.config.update(parse_settings(settings))
    check_mode(app.config)  # before anything is written: a line that must not start leaves no trace
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    quiet_chatty_loggers()
    logs.configure(app.config["LOG_FORMAT"])
    # The instance folder may hold the SQLite database, the spool and the local secret: the line's alone.
    Path(app.instance_path).mkdir(mode=0o700, parents=True, exist_ok=True)

    if not app.config["SECRET_KEY"]:  # local mode only (check_mode)
        app.config["SECRET_KEY"] = _local_secret(Path(app.instance_path))
    if not app.config["DATABASE_URL"]:
        app.config["DATABASE_URL"] = default_database_url(app.instance_path)

    content = preloaded if preloaded is not None else load_content(app.config["PROMPTS_DIR"] or PROMPTS_DIR)
    # Clinical sign-off (ivr/approval.py): refuse to start, or warn once, naming each file and why.
    content_warning = approval.check_at_start(content, now(app.config).date(), app.config["CONTENT_MUST_BE_APPROVED"])
    if content_warning:
        log.warning(content_warning)
    renderer = Renderer(
        content,
        VoiceSettings(
            voices={"en": app.config["VOICE_EN"], "es": app.config["VOICE_ES"]},
            speech_rate=app.config["SPEECH_RATE"],
            slow_speech_rate=app.config["SLOW_SPEECH_RATE"],
            gather_timeout=app.config["GATHER_TIMEOUT"],
            crisis_line=app.config["CRISIS_LINE_NUMBER"],
        ),
    )
    hours = StaffHours.parse(app.config["STAFF_HOURS"], app.config["STAFF_TIMEZONE"], app.config["STAFF_HOLIDAYS"])
    storage = Storage(app.config["DATABASE_URL"], app.config["SECRET_KEY"])
    # Checks the schema and moves any spooled records in; with the database down the line starts anyway.
    try:
        resilience.init_app(app, storage)
    except release.SchemaNotCurrent as problem:
        if not release.under_flask_command():
            storage.dispose()
            raise
        release.defer_refusal(app, str(problem))  # `flask --app ivr db upgrade` must still run
    usage = UsageCounter(storage, app.config["USAGE_FLUSH_SECONDS"], hours.timezone)
    cache = LineCache(content, renderer, hours)
    app.extensions["careline"] = Services(
        content=content, renderer=renderer, storage=storage, hours=hours, usage=usage, cache=cache
    )
    trust_proxies(app, app.config["TRUSTED_PROXY_HOPS"])
    if local_mode(app.config):
        app.before_request(refuse_unless_from_this_machine)
    app.cli.add_command(retention.purge_command)

    from ivr.web import calls, errors

    app.register_blueprint(calls.bp)
    errors.init_app(app)

    from ivr import report

    app.cli.add_command(report.content_report_command)
    app.cli.add_command(approval.content_approve_command)

    from ivr import twilio_setup

    app.cli.add_command(twilio_setup.twilio_setup_command)

    from ivr.web import texts

    app.register_blueprint(texts.bp)

    from ivr.web import staff

    staff.init_app(app)

    from ivr.web import line, local

    app.register_blueprint(line.bp)
    app.register_blueprint(local.bp)

    from ivr import alerts
    from ivr.web import health, monitoring

    alerts.init_app(app)

    app.register_blueprint(health.bp)
    app.register_blueprint(monitoring.bp)
    app.session_interface = WebhookFreeSessionInterface()

    if local_mode(app.config):
        log.warning(
            "Local mode (LOCAL_MODE=1): signatures are not checked; only requests from this machine, "
            "with no X-Forwarded-* or Forwarded header, are answered."
        )
    return app


#: Loggers that print what passes through them at DEBUG: SQLAlchemy the rows it reads (phone numbers
#: in call-back requests), urllib3 every URL it fetches (a recording's). Unless the operator set their
#: level, they stay above DEBUG, so even a root logger at DEBUG logs no personal data.
CHATTY_LOGGERS = {"sqlalchemy.engine": logging.WARNING, "sqlalchemy.pool": logging.WARNING, "urllib3": logging.INFO}


def quiet_chatty_loggers() -> None:
    """Keep the libraries that would log personal data at DEBUG from doing so (see CHATTY_LOGGERS)."""
    for name, level in CHATTY_LOGGERS.items():
        chatty = logging.getLogger(name)
        if chatty.level == logging.NOTSET:
            chatty.setLevel(level)


def _local_secret(instance: Path) -> str:
    """A secret kept in the instance folder, so local phone-number hashes survive a restart."""
    path = instance / "secret_key"
    try:  # created 0600 from the start: never readable by others, not even for a moment
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_hex(32))
    return path.read_text().strip()
