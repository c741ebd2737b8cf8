"""The line's settings: every environment variable, parsed and checked in one place.

`settings_from_environment` turns os.environ into Flask config keys; `create_app` lets a test
override any of them. A bad value stops start-up with a message naming the variable.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import phonenumbers

#: Defaults for every setting; docs/configuration.md documents each one (tests/test_configuration_docs.py).
DEFAULTS: dict[str, Any] = {
    "LOCAL_MODE": 0,  # 1: serve this machine only, unsigned (`make run`); 0: Twilio's signed requests only
    "TWILIO_AUTH_TOKEN": "",
    "TWILIO_ACCOUNT_SID": "",
    "PUBLIC_BASE_URL": "",
    "DATABASE_URL": "",  # empty: SQLite file under the instance folder
    "VOICE_EN": "Polly.Joanna-Neural",
    "VOICE_ES": "Polly.Lupe-Neural",
    "SPEECH_RATE": "90%",
    "SLOW_SPEECH_RATE": "70%",
    "GATHER_TIMEOUT": 8,
    "STAFF_NUMBERS": (),
    "STAFF_HOURS": "Mon-Fri 08:30-17:00",
    "STAFF_TIMEZONE": "America/Los_Angeles",
    "STAFF_HOLIDAYS": (),
    "STAFF_RING_SECONDS": 20,
    # The staff page's "due by": callers are told "most often within one business day" (record_saved,
    # callback_saved); counted in staff hours only. Urgent requests are due much sooner.
    "CALLBACK_DUE_HOURS": 8,
    "URGENT_DUE_HOURS": 1,
    "STAFF_REFRESH_SECONDS": 60,  # the staff queue reloads itself this often (no scripts), so new requests show
    "VOICEMAIL_MAX_SECONDS": 120,
    "SECRET_KEY": "",
    "PROMPTS_DIR": "",  # empty: the prompts/ folder beside the package
    "STAFF_PHONE": "",  # empty: the line's own number (the `To` of each request)
    "LINE_NUMBER": "",  # empty: the number the caller dialled
    "TWILIO_API_BASE_URL": "",  # empty: Twilio's own API; a loopback URL only, for tests and local runs
    # Reliability and privacy (docs/reliability-and-security.md).
    "TRUSTED_PROXY_HOPS": 0,  # X-Forwarded-* headers believed from this many proxies; 0: none
    "RETENTION_DAYS": 90,  # `flask --app ivr purge` removes what is older by default
    "AUDIT_RETENTION_DAYS": 2190,  # the staff audit (no health data) is kept six years, like HIPAA's records
    "DATABASE_RETRY_SECONDS": 10,  # after a database failure, how long to spool before trying it again
    "SPOOL_DIR": "",  # empty: <instance folder>/spool
    "USAGE_FLUSH_SECONDS": 1,  # usage counts are added to the database in batches this often; 0: at once
    # The outbound-text policy (ivr/outbound_texts.py): who may be texted, and how much.
    "TEXT_DAILY_LIMIT": 10,  # texts (message parts) a day to one number, from calls and the staff page together
    "TEXT_COUNTRIES": ("US", "CA"),  # texts go only to numbers of these regions (ISO 3166 codes)
    "STAFF_TEXT_DAILY_LIMIT": 60,  # texts a day one staff member may send from the staff page
    # Safety (README "Emergency, crisis and distress").
    "CRISIS_LINE_NUMBER": "+18002738255",  # the 988 Lifeline's 10-digit number: "connect me now" rings it
    "STAFF_ALERT_NUMBERS": (),  # each gets a text (no patient words) when an urgent request comes in
    # 1 in production: refuse to start on prompt files that are draft, changed since approval, or due (docs/content.md).
    "CONTENT_MUST_BE_APPROVED": 0,
    "LOG_FORMAT": "text",  # json: one JSON object a line, for log shipping (ivr/logs.py)
    # Monitoring (docs/deploying.md "Health and monitoring"): /metrics answers this machine, or this bearer token.
    "METRICS_TOKEN": "",  # secret; empty: this machine only
}

_RATE = re.compile(r"^(\d{2,3})%$")
#: An E.164 phone number, bounded as ITU E.164 and the phonenumbers library bound it: + and a country code
#: that does not start with 0, at most 15 digits in all. The line's one pattern for a number (config, staff
#: page, caller IDs); anything stricter (hidden caller IDs, US shorthand) is said where it is used.
E164 = re.compile(r"^\+[1-9]\d{1,14}$")


#: Twilio's limit on <Number>/<Sip> nouns in one <Dial>.
MAX_STAFF_NUMBERS = 10


class ConfigError(ValueError):
    """An environment variable has a value the line cannot use."""


def settings_from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read every known variable from `environ` (default os.environ) into checked config values."""
    environ = os.environ if environ is None else environ
    raw = {name: environ[name] for name in DEFAULTS if environ.get(name, "") != ""}
    return parse_settings(raw)


def parse_settings(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Check and convert settings given as strings (from the environment) or as Python values (tests)."""
    settings: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in DEFAULTS:
            settings[name] = value
            continue
        settings[name] = _PARSERS.get(name, _text)(name, value)
    return settings


def _text(name: str, value: Any) -> str:
    return str(value).strip()


def _whole_number(low: int, high: int) -> Callable[[str, Any], int]:
    def parse(name: str, value: Any) -> int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a whole number, not {value!r}") from None
        if not low <= number <= high:
            raise ConfigError(f"{name} must be between {low} and {high}, not {number}")
        return number

    return parse


def _rate(name: str, value: Any) -> str:
    match = _RATE.match(str(value).strip())
    if not match or not 20 <= int(match.group(1)) <= 200:
        raise ConfigError(f"{name} must be a percentage such as 90%, not {value!r}")
    return str(value).strip()


def _staff_numbers(name: str, value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    numbers = tuple(str(item).strip() for item in items if str(item).strip())
    if len(numbers) > MAX_STAFF_NUMBERS:
        raise ConfigError(f"{name}: Twilio rings at most {MAX_STAFF_NUMBERS} numbers at once, not {len(numbers)}")
    for number in numbers:
        if not (E164.match(number) or number.startswith("sip:")):
            raise ConfigError(f"{name}: {number!r} is neither an E.164 number like +15551234567 nor a sip: URI")
    return numbers


def _alert_numbers(name: str, value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    numbers = tuple(str(item).strip() for item in items if str(item).strip())
    for number in numbers:
        if not E164.match(number):
            raise ConfigError(f"{name}: {number!r} is not an E.164 number like +15551234567")
    return numbers


def _required_phone(name: str, value: Any) -> str:
    number = _phone(name, value)
    if not number:
        raise ConfigError(f"{name} must be an E.164 number like +18002738255")
    return number


def _date_list(name: str, value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    dates = tuple(str(item).strip() for item in items if str(item).strip())
    for date in dates:
        if not re.match(r"^\d{4}-\d{2}-\d{2}$", date):
            raise ConfigError(f"{name}: {date!r} is not a date like 2026-12-25")
    return dates


def _regions(name: str, value: Any) -> tuple[str, ...]:
    """Region codes (ISO 3166-1 alpha-2, as the phonenumbers library names them), at least one."""
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    regions = tuple(str(item).strip().upper() for item in items if str(item).strip())
    known = phonenumbers.SUPPORTED_REGIONS
    if not regions or any(region not in known for region in regions):
        raise ConfigError(f"{name} must list region codes like US,CA (ISO 3166, two letters), not {value!r}")
    return regions


def _switch(name: str, value: Any) -> int:
    text = str(value).strip()
    if text not in ("0", "1"):
        raise ConfigError(f"{name} must be 1 (on) or 0 (off), not {value!r}")
    return int(text)


def _log_format(name: str, value: Any) -> str:
    text = str(value).strip().lower()
    if text not in ("text", "json"):
        raise ConfigError(f"{name} must be text or json, not {value!r}")
    return text


def is_loopback_ip(host: str) -> bool:
    """Whether `host` is an IP literal on this machine (127.0.0.0/8 or ::1).

    Only a literal: a name such as 127.evil.example or 127.0.0.1.nip.io resolves wherever its owner likes.
    """
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _base_url(name: str, value: Any) -> str:
    """The line's public URL (what Twilio requests): https, or http on this machine only."""
    url = str(value).strip().rstrip("/")
    if not url:
        return url
    parts = urlsplit(url)
    plain_and_local = parts.scheme == "http" and is_loopback_ip(parts.hostname or "")
    if (
        not re.match(r"^https?://[^/\s]+(/\S*)?$", url)
        or not (parts.scheme == "https" or plain_and_local)
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
    ):
        raise ConfigError(
            f"{name} must be the line's public https URL, like https://line.example.org (plain http only on "
            f"this machine, like http://127.0.0.1:5000), not {value!r}"
        )
    return url


#: A bearer token shorter than this is too easy to guess.
MIN_TOKEN_LENGTH = 24


def _token(name: str, value: Any) -> str:
    token = str(value).strip()
    if token and (len(token) < MIN_TOKEN_LENGTH or not token.isascii() or not token.isprintable() or " " in token):
        raise ConfigError(
            f"{name} must be at least {MIN_TOKEN_LENGTH} printable characters without spaces (or empty), like "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return token


def _phone(name: str, value: Any) -> str:
    number = str(value).strip()
    if number and not E164.match(number):
        raise ConfigError(f"{name} must be an E.164 number like +15551234567, not {value!r}")
    return number


def _loopback_url(name: str, value: Any) -> str:
    """A URL on this machine: the REST client sends the Twilio credentials there, so nowhere else."""
    url = str(value).strip().rstrip("/")
    if not url:
        return url
    parts = urlsplit(url)
    loopback = is_loopback_ip(parts.hostname or "") and "@" not in parts.netloc
    if parts.scheme not in ("http", "https") or not loopback or parts.query or parts.fragment:
        raise ConfigError(
            f"{name} is for tests and local runs: it must be a loopback address written as numbers, like "
            f"http://127.0.0.1:8099 or http://[::1]:8099 (no host name), not {value!r}"
        )
    return url


_PARSERS = {
    "LOCAL_MODE": _switch,
    "GATHER_TIMEOUT": _whole_number(6, 30),
    "STAFF_RING_SECONDS": _whole_number(5, 60),
    "CALLBACK_DUE_HOURS": _whole_number(1, 200),
    "URGENT_DUE_HOURS": _whole_number(1, 200),
    "STAFF_REFRESH_SECONDS": _whole_number(2, 600),
    "VOICEMAIL_MAX_SECONDS": _whole_number(10, 600),
    "SPEECH_RATE": _rate,
    "SLOW_SPEECH_RATE": _rate,
    "STAFF_NUMBERS": _staff_numbers,
    "STAFF_HOLIDAYS": _date_list,
    "PUBLIC_BASE_URL": _base_url,
    "STAFF_PHONE": _phone,
    "TWILIO_API_BASE_URL": _loopback_url,
    "LINE_NUMBER": _phone,
    "CRISIS_LINE_NUMBER": _required_phone,
    "STAFF_ALERT_NUMBERS": _alert_numbers,
    "TRUSTED_PROXY_HOPS": _whole_number(0, 5),
    "RETENTION_DAYS": _whole_number(1, 3650),
    "AUDIT_RETENTION_DAYS": _whole_number(1, 3650),
    "DATABASE_RETRY_SECONDS": _whole_number(1, 300),
    "USAGE_FLUSH_SECONDS": _whole_number(0, 60),
    "CONTENT_MUST_BE_APPROVED": _switch,
    "LOG_FORMAT": _log_format,
    "TEXT_DAILY_LIMIT": _whole_number(1, 1000),
    "TEXT_COUNTRIES": _regions,
    "STAFF_TEXT_DAILY_LIMIT": _whole_number(1, 10000),
    "METRICS_TOKEN": _token,
}


def check_mode(settings: Mapping[str, Any]) -> None:
    """Refuse a combination of settings that would leave the line open: local mode only when asked for.

    Without LOCAL_MODE=1 the line takes only Twilio's signed requests, so it needs the token to check
    them with, the public URL Twilio signs (never the client's Host header) and a secret key.
    """
    if settings.get("LOCAL_MODE"):
        if settings.get("TRUSTED_PROXY_HOPS"):
            raise ConfigError(
                "LOCAL_MODE=1 answers this machine only and refuses proxied requests: TRUSTED_PROXY_HOPS must be 0"
            )
        return
    if not settings.get("TWILIO_AUTH_TOKEN"):
        raise ConfigError(
            "TWILIO_AUTH_TOKEN is not set. Set it to the Twilio account's auth token, or set LOCAL_MODE=1 to "
            "serve only this machine without signatures (make run does)."
        )
    if not settings.get("PUBLIC_BASE_URL"):
        raise ConfigError(
            "PUBLIC_BASE_URL must be set outside local mode: the line's URL as Twilio requests it, like "
            "https://line.example.org (signatures are checked against it, never against the Host header)"
        )
    if not settings.get("SECRET_KEY"):
        raise ConfigError("SECRET_KEY must be set outside local mode (LOCAL_MODE=1): a long random string")


def default_database_url(instance_path: str) -> str:
    """The SQLite file `make run` uses when DATABASE_URL is not set."""
    return f"sqlite:///{Path(instance_path) / 'careline.sqlite3'}"


# -- serving (gunicorn.conf.py) ----------------------------------------------------------------


def serving_settings(environ: Mapping[str, str] | None = None, cpu_count: int | None = None) -> dict[str, Any]:
    """HOST, PORT and WEB_CONCURRENCY for `make serve`, checked like every other setting.

    Workers default to 2 x CPUs + 1: a request spends part of its time waiting on the database or
    the network, so a few more workers than cores keep every core busy.
    """
    environ = os.environ if environ is None else environ
    cpus = cpu_count or os.cpu_count() or 1
    host = environ.get("HOST", "").strip() or "127.0.0.1"
    port = _whole_number(1, 65535)("PORT", environ.get("PORT", "").strip() or "5000")
    workers = _whole_number(1, 64)("WEB_CONCURRENCY", environ.get("WEB_CONCURRENCY", "").strip() or 2 * cpus + 1)
    return {"host": host, "port": port, "workers": workers}
