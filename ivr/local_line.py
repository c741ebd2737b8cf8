"""`make run` with no Twilio account: a stand-in for Twilio's REST API and a local staff phone.

With LOCAL_MODE=1 and no Twilio account of the person's own (neither TWILIO_ACCOUNT_SID nor
TWILIO_API_BASE_URL set), `python -m ivr` serves the stand-in (ivr/phone/twilio_standin.py) on a free
127.0.0.1 port in its own process, and fills in, where the environment leaves them empty:
- TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN: the local phone's account and a local token, so the line's real
  `twilio` client reaches the stand-in (TWILIO_API_BASE_URL): "text me", staff sends and staff alerts are
  "sent" there, and voice messages the local phone leaves play back on the staff page (the stand-in's MP3);
- LINE_NUMBER: the number the local phone calls;
- STAFF_NUMBERS: one local staff phone (LOCAL_STAFF_PHONE), rung when a caller presses 0; the local phone
  plays the staff member's side (hears the whisper, presses 1; `dial:accept` in a script), and
  STAFF_HOURS: always, so 0 rings it whatever the hour (unless STAFF_HOURS is set).
What the stand-in receives is printed in the terminal (numbers masked) and listed on the staff page
(/staff/local). Nothing here runs outside local mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: The local staff phone's number: what 0 rings in `make run` (the local phone answers it).
LOCAL_STAFF_PHONE = "+15555550123"
#: The token the line and the stand-in share in local mode (nothing real: the stand-in is on loopback).
LOCAL_AUTH_TOKEN = "local-standin-token"
#: Staff hours in local mode unless STAFF_HOURS is set: round the clock, so 0 always rings the local staff phone.
ALWAYS = "Mon-Sun 00:00-24:00"
#: How much of a text the terminal shows.
SHOWN_CHARACTERS = 72


def wants_standin(environ: Mapping[str, str]) -> bool:
    """Whether `make run` should serve the stand-in: local mode, and no Twilio account given."""
    if environ.get("LOCAL_MODE", "0").strip() != "1":
        return False
    return not (environ.get("TWILIO_ACCOUNT_SID") or environ.get("TWILIO_API_BASE_URL"))


def local_settings(environ: Mapping[str, str], standin_url: str) -> dict[str, str]:
    """The settings that point the line at the stand-in and the local staff phone (the environment's win)."""
    # Here, not at import: the staff page imports this module, and the app has no use for the phone package.
    from ivr.phone.transport import DEFAULT_ACCOUNT_SID, DEFAULT_LINE_NUMBER

    settings = {
        "TWILIO_ACCOUNT_SID": DEFAULT_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": environ.get("TWILIO_AUTH_TOKEN") or LOCAL_AUTH_TOKEN,
        "TWILIO_API_BASE_URL": standin_url,
    }
    if not environ.get("LINE_NUMBER"):
        settings["LINE_NUMBER"] = DEFAULT_LINE_NUMBER
    if not environ.get("STAFF_NUMBERS"):
        settings["STAFF_NUMBERS"] = LOCAL_STAFF_PHONE
        if not environ.get("STAFF_HOURS"):
            settings["STAFF_HOURS"] = ALWAYS
    return settings


def masked(number: str) -> str:
    """A phone number as local mode shows it: its first two characters and last four ("+1...0100")."""
    number = number.strip()
    if len(number) <= 6:
        return "..." if number else ""
    return f"{number[:2]}...{number[-4:]}"


def shown(record: Mapping[str, Any]) -> dict[str, str]:
    """A text the stand-in received, as the terminal and the staff page show it: masked numbers, the start of
    its words, and what the stand-in answered."""
    form = record.get("form", {})
    body = " ".join(str(form.get("Body", "")).split())
    refused = str(record.get("refused", ""))
    return {
        "to": masked(str(form.get("To", ""))),
        "from": masked(str(form.get("From", "") or form.get("MessagingServiceSid", ""))),
        "words": body if len(body) <= SHOWN_CHARACTERS else body[: SHOWN_CHARACTERS - 3] + "...",
        "answer": f"refused ({refused})" if refused else "sent",
    }


def report(kind: str, record: Mapping[str, Any]) -> None:
    """Print what the stand-in received, one line each (`make run`'s terminal)."""
    if kind == "message":
        text = shown(record)
        print(f"[Twilio stand-in] text {text['answer']} to {text['to']}: {text['words']}", flush=True)
    elif kind == "recording":
        sid = str(record.get("sid", ""))[:8]
        print(
            f"[Twilio stand-in] voice message {sid}... played (silence: the local phone types its messages)", flush=True
        )
