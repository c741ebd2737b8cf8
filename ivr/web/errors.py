"""Never let Twilio play its own "application error" to a caller.

Any unexpected failure inside a webhook is answered with valid TwiML: a short apology and the main
menu (where 0 reaches a person), which needs no database. The error is logged by type and place
only: never the form, which holds phone numbers and words people said or typed, nor the error's
message, which may quote them. `/voice/fallback` is for Twilio's "fallback URL" setting: it works
with no database at all (the text line's is `/sms/fallback`, in ivr/web/texts.py).

The staff member's leg of a transfer is not a caller: a failure while whispering to them answers
with an empty document, which connects them to the caller rather than playing them the menu.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

from flask import Blueprint, Flask, Response, request, url_for
from werkzeug.exceptions import HTTPException

from ivr import call_dialog
from ivr.call_dialog import CallState, Line, Listen, Reply
from ivr.security import twilio_only
from ivr.services import services
from ivr.twiml import Renderer
from ivr.web.calls import links

log = logging.getLogger(__name__)

bp = Blueprint("fallback", __name__)


def apology_menu(lang: str) -> str:
    """TwiML: sorry, then the main menu in `lang` (no database needed)."""
    svc = services()
    content = svc.content
    state = CallState(lang=lang if lang in content.languages else content.default_language)
    menu = call_dialog.step(content, state, call_dialog.Heard(digits="#"))
    apology = Line(content.language(state.lang).say("error_apology"), state.lang)
    if not isinstance(menu.next, Listen):  # pragma: no cover - the main menu always listens
        raise TypeError("the main menu must listen")
    reply = Reply((apology, *menu.lines), menu.slow, menu.next)
    return svc.renderer.voice(reply, links())


@bp.post("/voice/fallback")
@twilio_only
def voice_fallback() -> Response:
    """Twilio's fallback URL for calls: apologise and read the main menu, with no database."""
    return Response(apology_menu(request.args.get("l", "")), mimetype="text/xml")


def answer_unexpected_error(error: Exception) -> Response | HTTPException:
    """The app-wide handler: webhooks still answer with TwiML; HTTP errors (403, 405) stay as they are."""
    if isinstance(error, HTTPException):
        return error
    log.error("Unexpected %s in %s at %s", type(error).__name__, request.endpoint, where(error))
    if request.endpoint in CONNECT_ON_ERROR:
        return Response(Renderer.empty(), mimetype="text/xml")
    if request.path.startswith("/voice"):
        try:
            return Response(apology_menu(request.args.get("l", "")), mimetype="text/xml")
        except Exception:  # the menu itself failed: hand the call to the fallback URL
            log.error("The apology menu failed too")
            return Response(Renderer.redirect(url_for("fallback.voice_fallback")), mimetype="text/xml")
    return Response("Internal error", status=500, mimetype="text/plain")


#: Webhooks where an empty answer is the kind one: the staff whisper (empty = connect the staff
#: member to the caller) and Twilio's recording status callback (whose answer Twilio ignores).
CONNECT_ON_ERROR = frozenset({"voice.whisper", "voice.whisper_answer", "voice.recording_status"})


def where(error: BaseException) -> str:
    """File, line and function where `error` was raised: enough to find it, with no data in it.

    The innermost place in the line's own code, and the innermost place of all when that is elsewhere
    (a library). Exception messages are left out on purpose: a database error's message can quote
    the row it failed to write, phone number included.
    """
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "unknown place"

    def place(frame: traceback.FrameSummary) -> str:
        return f"{frame.filename.rsplit('/', 2)[-1]}:{frame.lineno} in {frame.name}"

    ours = [frame for frame in frames if f"{PACKAGE_DIR}/" in frame.filename]
    if ours and ours[-1] is not frames[-1]:
        return f"{place(ours[-1])} (raised in {place(frames[-1])})"
    return place(frames[-1])


#: Frames in the package folder (ivr/, above this one) are the line's own code.
PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)


def init_app(app: Flask) -> None:
    """Register the fallback routes and the catch-all error handler."""
    app.register_blueprint(bp)
    app.register_error_handler(Exception, answer_unexpected_error)
