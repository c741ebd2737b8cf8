"""Tell staff at once when an urgent request comes in: a short text to every STAFF_ALERT_NUMBERS number.

The alert holds no patient words ("CareLine: urgent request waiting, open the staff page", from
prompts/<lang>/sms.yaml `staff_alert`, with the staff page's address when PUBLIC_BASE_URL is set). Storage
queues it (staff_alerts) in the same transaction as the urgent request, so it is never lost: it is sent
from a background thread right after the request is stored (the caller or texter never waits on
Twilio's API), and whatever could not be sent (API down, process restarted) is tried again at start-up
and every ALERT_RETRY_SECONDS while the app serves requests. A failure is logged by error type only,
never with a number. An alert whose sending failed for some numbers is sent again to all of them:
a duplicate alert costs less than a missed one.

Alerts are sent from LINE_NUMBER, else from the line's number as the last request reached it (in this
process): set LINE_NUMBER so alerts retried after a restart have a number to come from.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import partial

import requests
from flask import Flask
from twilio.base.exceptions import TwilioException

from ivr import metrics, outbound_texts, resilience
from ivr.services import services

log = logging.getLogger(__name__)

#: How often a serving process tries again the alerts that could not be sent.
ALERT_RETRY_SECONDS = 30.0


def alert_text(app: Flask) -> str:
    """The alert, in the staff's (default) language, with the staff page's address when one is known."""
    content = services(app).content
    base = app.config.get("PUBLIC_BASE_URL", "")
    link = f"{base}/staff/" if base else ""
    return content.language(content.default_language).text("staff_alert", link=link).strip()


def note_line_number(app: Flask, line_number: str) -> None:
    """Remember the line's own number as a request reached it: alerts come from it without LINE_NUMBER."""
    if line_number:
        app.extensions["careline.alert_from"] = line_number


def send_waiting(app: Flask) -> int:
    """Send every alert waiting (claimed first, so no two processes send one); the number sent."""
    numbers = app.config.get("STAFF_ALERT_NUMBERS") or ()
    storage = services(app).storage
    database = resilience.guard(app)
    empty: list[int] = []
    claimed = database.read(partial(storage.claim_alerts, None), empty, "claiming staff alerts")
    if not claimed:
        return 0
    sent = 0
    with app.app_context():
        from_ = app.config.get("LINE_NUMBER") or app.extensions.get("careline.alert_from", "")
        client = outbound_texts.twilio_client() if numbers else None
        body = alert_text(app)
        for alert_id in claimed:
            ok = True
            if numbers:  # with no alert numbers set, the staff page is the only alert: nothing to send
                ok = client is not None and bool(from_)
                if not ok:
                    log.warning("Could not send a staff alert: no Twilio credentials or no LINE_NUMBER")
                    metrics.staff_alert_failed("not_configured")
                try:
                    for number in numbers if ok else ():
                        client.messages.create(to=number, from_=from_, body=body)  # type: ignore[union-attr]
                        metrics.texts_sent("api")
                except (TwilioException, requests.RequestException) as error:
                    log.warning("Could not send a staff alert (will retry): %s", type(error).__name__)
                    metrics.staff_alert_failed("api_error")
                    ok = False
            database.try_write(partial(storage.settle_alert, alert_id, ok), "settling a staff alert")
            sent += ok
    return sent


def send_soon(app: Flask) -> threading.Thread:
    """Send the waiting alerts from a background thread: the caller or texter is answered meanwhile.
    Until one round sends them all, this process tries again every ALERT_RETRY_SECONDS."""
    app.extensions["careline.alerts_waiting"] = True
    thread = threading.Thread(target=_send_quietly, args=(app,), name="careline-alerts", daemon=True)
    thread.start()
    return thread


def _send_quietly(app: Flask) -> None:
    try:
        send_waiting(app)
        storage = services(app).storage
        unsent = resilience.guard(app).read(storage.unsent_alerts, 1, "counting staff alerts")
        app.extensions["careline.alerts_waiting"] = bool(unsent)
    except Exception as error:  # a thread's error would otherwise only go to stderr
        log.error("Sending staff alerts failed: %s", type(error).__name__)


def init_app(app: Flask) -> None:
    """Send what waits now (an earlier run's failures, looked for with one count at start-up), and,
    while this process knows of alerts not yet sent, try again every ALERT_RETRY_SECONDS. A request
    pays nothing for this otherwise: no database work unless an alert is waiting."""
    storage = services(app).storage
    # With the database away, assume something waits: the first retry finds out.
    waiting = resilience.guard(app).read(storage.unsent_alerts, 1, "counting staff alerts")
    app.extensions["careline.alerts_waiting"] = bool(waiting)
    app.extensions["careline.alerts_next"] = time.monotonic() + ALERT_RETRY_SECONDS
    if waiting:
        send_soon(app)

    @app.before_request
    def _retry_alerts() -> None:
        if not app.extensions["careline.alerts_waiting"]:
            return
        clock = time.monotonic()
        if clock >= app.extensions["careline.alerts_next"]:
            app.extensions["careline.alerts_next"] = clock + ALERT_RETRY_SECONDS
            send_soon(app)
