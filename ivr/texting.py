"""Send texts through Twilio's REST API (used when a caller asks for a section by text)."""

from __future__ import annotations

import logging
from typing import Literal

from flask import current_app
from twilio.base.exceptions import TwilioException
from twilio.rest import Client

from ivr.services import Services

log = logging.getLogger(__name__)

SendResult = Literal["sent", "failed", "opted_out", "no_number"]


def twilio_client() -> Client | None:
    """A REST client for the configured account, or None when the line has no Twilio credentials."""
    config = current_app.config
    if not (config.get("TWILIO_ACCOUNT_SID") and config.get("TWILIO_AUTH_TOKEN")):
        return None
    return Client(config["TWILIO_ACCOUNT_SID"], config["TWILIO_AUTH_TOKEN"])


def send_section(svc: Services, to: str, from_: str, section: str, lang: str) -> SendResult:
    """Text `section`'s messages to `to`, unless that number opted out; say how it went."""
    if not to.startswith("+") or not from_:
        return "no_number"
    if svc.storage.is_opted_out(to):
        return "opted_out"
    client = twilio_client()
    if client is None:
        return "failed"
    messages = svc.content.language(lang).sections[section].sms
    try:
        for body in messages:
            client.messages.create(to=to, from_=from_, body=body)
    except TwilioException as error:
        # The error names neither the number nor the text.
        log.warning("Could not send a section by text: %s", type(error).__name__)
        return "failed"
    svc.storage.count_use("sms", section)
    return "sent"
