"""The staff page, /staff: sign in, work the call-back queue, play voice messages, text a topic, see usage.

Server-rendered (templates/staff/), no JavaScript. Security, in short:
- accounts are made with `flask --app ivr create-staff NAME`; passwords are hashed with scrypt
  (werkzeug.security) and never stored or logged in the clear;
- the session cookie is HttpOnly, SameSite=Lax, and Secure outside local mode; it lasts 8 hours and
  stops working when the account's password changes or the staff member signs out (on any device: the
  account's session generation, in the database);
- every form carries a CSRF token (Flask-WTF's CSRFProtect). The check runs for every POST in the
  app except views marked `@twilio_only`, which Twilio signs instead;
- failed sign-ins are counted in the database (so every app process sees them), never in memory.
  They slow an attacker without locking the real staff member out: after 5 failures for one user name
  from one address in 15 minutes, that name from that address waits 1 minute, doubling with each
  further failure (up to 15); 20 failures from one address in 15 minutes stop every sign-in from it.
  Nothing stops a user name alone: the right password from an address that is not limited works;
- staff pages send a strict Content-Security-Policy and are never framed or cached.
Voice messages are played through the app (`/staff/requests/<id>/recording`), which fetches the
recording from Twilio with the account's credentials: Twilio's media URLs need HTTP auth, and staff
browsers never see those credentials or the raw recording URL.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import math
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import click
import phonenumbers
import requests
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)
from flask.cli import with_appcontext
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.security import check_password_hash, generate_password_hash

from ivr import approval, outbound_texts
from ivr.config import E164
from ivr.security import local_mode
from ivr.services import now, services
from ivr.storage import as_utc, from_db

log = logging.getLogger(__name__)

# The staff page's stylesheet and icon are in ivr/static, beside ivr/templates.
bp = Blueprint("staff", __name__, url_prefix="/staff", static_folder="../static", static_url_path="/static")
csrf = CSRFProtect()

#: Failed sign-ins for one user name from one address, within FAILURE_WINDOW, before each further try
#: waits: FIRST_WAIT, doubling with every failure, never more than FAILURE_WINDOW.
FREE_FAILURES_PER_NAME_AND_ADDRESS = 5
FIRST_WAIT = dt.timedelta(minutes=1)
#: Failed sign-ins from one address, for any names, within FAILURE_WINDOW, that stop every sign-in from it.
MAX_FAILURES_PER_ADDRESS = 20
FAILURE_WINDOW = dt.timedelta(minutes=15)
SESSION_HOURS = 8
MIN_PASSWORD_LENGTH = 12
USAGE_DAYS = 14
#: Open requests listed at once; the rest wait below the fold of the queue (the count says how many).
QUEUE_SHOWN = 200
#: Staff actions listed under Recent staff activity.
RECENT_ACTIONS = 30
#: How a call attempt went, and how a request is closed (the page words them; the audit keeps the code).
OUTCOMES = ("reached", "left_message", "no_answer", "wrong_number")
#: A staff note's most characters: a short note, not a chart.
NOTE_MAX = 500

_USERNAME = re.compile(r"^[A-Za-z0-9._@-]{2,64}$")
_RECORDING_PATH = re.compile(r"^/2010-04-01/Accounts/AC[0-9a-fA-F]{32}/Recordings/RE[0-9a-fA-F]{32}$")
#: Endpoints reachable without signing in.
_PUBLIC_ENDPOINTS = frozenset({"staff.login", "staff.static"})

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; media-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def init_app(app: Flask) -> None:
    """Register the staff page, its CSRF protection, session cookie settings and the create-staff command."""
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_SECURE"] = not local_mode(app.config)
    app.config["SESSION_COOKIE_NAME"] = "careline_session"
    app.config["PERMANENT_SESSION_LIFETIME"] = dt.timedelta(hours=SESSION_HOURS)
    # The app-wide hook below decides which requests are checked; tokens live as long as the session.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    app.config["WTF_CSRF_TIME_LIMIT"] = None
    csrf.init_app(app)
    app.before_request(_csrf_unless_signed_by_twilio)
    app.register_error_handler(CSRFError, _csrf_failed)
    app.register_blueprint(bp)
    app.cli.add_command(create_staff_command)


def _csrf_unless_signed_by_twilio() -> None:
    """Check the CSRF token of every form post, except webhooks that carry Twilio's signature instead."""
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None or getattr(view, "twilio_signed", False):
        return
    if current_app.config.get("WTF_CSRF_ENABLED", True):
        csrf.protect()


def _csrf_failed(error: CSRFError) -> tuple[str, int]:
    log.info("Staff form refused: %s", error.description)
    return render_template("staff/error.html", problem="csrf"), 400


# -- accounts -------------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    """A salted scrypt hash of `password`, as stored in staff_users."""
    return generate_password_hash(password, method="scrypt")


@functools.cache
def _decoy_hash() -> str:
    # Checked when the user name is unknown, so a wrong name takes as long as a wrong password.
    return hash_password("decoy password that matches nothing")


def _fingerprint(account: dict[str, Any]) -> str:
    """Ties a session to the password it was opened with and the account's session generation: a new
    password, or a sign-out (which adds one to the generation), ends the sessions opened before."""
    tie = f"{account['password_hash']}\0{account['session_generation']}"
    return hashlib.sha256(tie.encode()).hexdigest()[:24]


def _signed_in_user() -> str | None:
    username = session.get("staff_user")
    if not isinstance(username, str):
        return None
    account = services().storage.staff_user(username)
    if account is None or session.get("staff_key") != _fingerprint(account):
        return None
    return username


@bp.before_request
def _require_sign_in() -> ResponseReturnValue | None:
    if request.endpoint in _PUBLIC_ENDPOINTS:
        return None
    user = _signed_in_user()
    if user is None:
        session.pop("staff_user", None)
        return redirect(url_for("staff.login", next=request.full_path.rstrip("?")), code=303)
    g.staff_user = user
    return None


@bp.after_request
def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "same-origin"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if request.endpoint != "staff.static":
        # Call-back requests are health data: never keep a copy in a browser or proxy cache.
        headers["Cache-Control"] = "no-store"
    if not local_mode(current_app.config):
        headers["Strict-Transport-Security"] = "max-age=31536000"
    return response


#: A page of the staff site: /staff, or below it, in printable ASCII (no space, no control character).
_STAFF_PAGE = re.compile(r"/staff(?:[/?#][!-~]*)?")


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: only a path on the staff page, never another site.

    Anything else (another site, a backslash, a `..` segment, a control character that would split
    the Location header) falls back to the staff page.
    """
    if target and _STAFF_PAGE.fullmatch(target) and "\\" not in target:
        segments = urlsplit(target).path.split("/")
        if "." not in segments and ".." not in segments:
            return target
    return url_for("staff.index")


def _sign_in_wait(pair_key: str, address_key: str, moment: dt.datetime) -> int:
    """Seconds before a sign-in from this name and address may be tried; 0 when it may be now."""
    storage = services().storage
    since = moment - FAILURE_WINDOW
    failures, latest = storage.recent_login_failures(address_key, since)
    if failures >= MAX_FAILURES_PER_ADDRESS and latest is not None:
        until = latest + FAILURE_WINDOW
    else:
        failures, latest = storage.recent_login_failures(pair_key, since)
        if failures < FREE_FAILURES_PER_NAME_AND_ADDRESS or latest is None:
            return 0
        doublings = failures - FREE_FAILURES_PER_NAME_AND_ADDRESS
        until = latest + min(FIRST_WAIT * 2 ** min(doublings, 10), FAILURE_WINDOW)
    return max(0, math.ceil((until - moment).total_seconds()))


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """The sign-in form; signs a staff member in after checking the rate limit and the password."""
    next_page = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if _signed_in_user():
            return redirect(next_page, code=303)
        return render_template("staff/login.html", next_page=next_page, problem=None, username="")

    storage = services().storage
    username = request.form.get("username", "").strip()[:64]
    password = request.form.get("password", "")[:1024]
    moment = now()
    address = request.remote_addr or ""
    pair_key = storage.key_hash("login-name-address", f"{username.lower()}\0{address}")
    address_key = storage.key_hash("login-address", address)
    wait = _sign_in_wait(pair_key, address_key, moment)
    if wait:
        log.warning("Staff sign-in refused: too many failed attempts")
        page = render_template("staff/login.html", next_page=next_page, problem="too_many", username=username)
        return page, 429, {"Retry-After": str(wait)}

    account = storage.staff_user(username) if username else None
    password_ok = check_password_hash(account["password_hash"] if account else _decoy_hash(), password)
    if account is None or not password_ok:
        storage.record_login_failure([pair_key, address_key], moment)
        log.info("Staff sign-in failed")
        page = render_template("staff/login.html", next_page=next_page, problem="wrong", username=username)
        return page, 401

    storage.clear_login_failures(pair_key)
    session.clear()  # a fresh session at sign-in: nothing set before it carries over
    session.permanent = True
    session["staff_user"] = account["username"]
    session["staff_key"] = _fingerprint(account)
    storage.record_staff_action(account["username"], "sign_in", at=moment)
    log.info("Staff member %s signed in", account["username"])
    return redirect(next_page, code=303)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Sign out: end the session on the server too (a copy of its cookie no longer works), and forget it."""
    storage = services().storage
    storage.end_staff_sessions(g.staff_user)  # signed in: _require_sign_in let the request through
    storage.record_staff_action(g.staff_user, "sign_out", at=now())
    session.clear()
    flash("signed_out", "message")
    return redirect(url_for("staff.login"), code=303)


# -- the page ---------------------------------------------------------------------------------------


@bp.get("")
@bp.get("/")
def index() -> str:
    """The queue of call-back requests, the send-a-topic form, recent work and the usage panel."""
    return _render_index()


def _render_index(send_form: dict[str, str] | None = None, send_problem: str | None = None, status: int = 200) -> Any:
    svc = services()
    content = svc.content
    staff_language = content.language(content.default_language)
    today = now().astimezone(svc.hours.timezone).date()
    open_requests = svc.storage.callback_requests("open")
    cards = queue_cards(open_requests)
    page = render_template(
        "staff/index.html",
        user=g.staff_user,
        queue=cards[:QUEUE_SHOWN],
        card_count=len(cards),
        open_count=len(open_requests),
        urgent_count=sum(1 for card in cards if card["urgent"]),
        overdue_count=sum(1 for card in cards if card["overdue"]),
        # A meta refresh (no scripts), on the queue only: notes are written on a request's own page,
        # which never reloads under the nurse's hands (STAFF_REFRESH_SECONDS).
        # Not after a refused send: the reload would lose the number typed and the reason.
        refresh_seconds=None if send_problem else current_app.config["STAFF_REFRESH_SECONDS"],
        outcomes=OUTCOMES,
        done=[_request_view(row) for row in svc.storage.done_requests()],
        activity=[{**step, "at": _local(step["at"])} for step in svc.storage.recent_staff_actions(RECENT_ACTIONS)],
        sections=[(sid, _sentence(staff_language.sections[sid].title)) for sid in content.section_ids],
        languages=list(content.languages),
        texting_ready=_texting_ready(),
        send_form=send_form or {"phone": "", "section": content.section_ids[0], "lang": content.default_language},
        send_problem=send_problem,
        usage=_usage_rows(today - dt.timedelta(days=USAGE_DAYS - 1)),
        usage_days=USAGE_DAYS,
        timezone_name=str(svc.hours.timezone).replace("_", " "),
        content_review=approval.unapproved(content, today),
        content_files=len(content.reviews),
    )
    return page if status == 200 else (page, status)


def queue_cards(open_requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The open requests as the queue shows them: one card per number, in the queue's order (urgent
    first, then newest), so one number sending a thousand texts is one card, not a flood.

    A card is its number's newest request, with: how many requests it stands for, every voice message,
    the newest words and (if different) the newest urgent words, and urgent when any request is.
    A request with no number is a card of its own. Nothing is merged in the database.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    ordered: list[list[dict[str, Any]]] = []
    for row in open_requests:
        if not row["phone"]:
            ordered.append([row])
        elif row["phone"] in groups:
            groups[row["phone"]].append(row)
        else:
            groups[row["phone"]] = [row]
            ordered.append(groups[row["phone"]])
    cards = [_card(group) for group in ordered]
    _add_histories(cards)
    return cards


def _add_histories(cards: list[dict[str, Any]]) -> None:
    """Give each card its history (from the staff audit) and staff notes (unsealed), in two queries."""
    storage = services().storage
    owner = {rid: card for card in cards for rid in card["ids"]}
    for card in cards:
        card["history"] = []
        card["staff_notes"] = []
    for step in storage.request_history(owner):
        step["at"] = _local(step["at"])
        owner[step["request_id"]]["history"].append(step)
    for note in storage.request_notes(list(owner)):
        owner[note["request_id"]]["staff_notes"].append(
            {"at": _local(note["at"]), "staff": note["staff"], "words": storage.unseal(note["words"])}
        )


def _card(group: list[dict[str, Any]]) -> dict[str, Any]:
    by_time = sorted(group, key=lambda row: (from_db(row["created_at"]), row["id"]))
    card = _request_view(by_time[-1])
    urgent = [row for row in reversed(by_time) if row["urgent"]]
    worded = [row for row in reversed(by_time) if row.get("words")]
    svc = services()
    storage = svc.storage
    words = storage.unseal(worded[0]["words"]) if worded else ""
    # The person has waited since their oldest open request; the promise runs from then, in staff hours.
    first = from_db(by_time[0]["created_at"])
    hours_due = current_app.config["URGENT_DUE_HOURS" if urgent else "CALLBACK_DUE_HOURS"]
    due = svc.hours.after_open_time(first, dt.timedelta(hours=hours_due)) if first else None
    claimed = [row for row in by_time if row.get("claimed_by")]
    latest_claim = max(claimed, key=lambda row: as_utc(from_db(row["claimed_at"]))) if claimed else None
    urgent_words = storage.unseal(urgent[0].get("words")) if urgent else ""
    notes = [note for row in by_time for note in (row["note"] or "").split(",") if note]
    card.update(
        ids=[row["id"] for row in by_time],
        count=len(group),
        through=max(row["id"] for row in group),
        urgent=bool(urgent),
        urgent_kind=(urgent[0].get("urgent_kind") or "") if urgent else "",
        words=words,
        urgent_words=urgent_words if urgent_words != words else "",
        notes=list(dict.fromkeys(notes)),
        recordings=[_recording_view(row) for row in by_time if row["recording_sid"]],
        waiting_since=_local(first),
        waited_seconds=int((now() - first).total_seconds()) if first else 0,
        due_by=_local(due),
        overdue=bool(due and now() > due),
        closed=by_time[-1]["status"] != "open",
        claimed_by=latest_claim["claimed_by"] if latest_claim else "",
        claimed_at=_local(latest_claim["claimed_at"]) if latest_claim else None,
    )
    return card


def _recording_view(row: dict[str, Any]) -> dict[str, Any]:
    """A voice message as a card lists it: its length, and its transcript (unsealed for this page) or
    why there is none (Twilio writes out English messages only; it may also fail or not be back yet)."""
    transcript = services().storage.unseal(row.get("transcript"))
    if transcript:
        state = "completed"
    elif row.get("transcript_state") == "failed":
        state = "failed"
    elif row["lang"] != "en":
        state = "not_english"
    else:
        state = "waiting"
    seconds = row["recording_seconds"] or 0
    return {"id": row["id"], "seconds": seconds, "transcript": transcript, "transcript_state": state}


def _request_view(row: dict[str, Any]) -> dict[str, Any]:
    """A call-back request as the page shows it: local times, the topic's title, the number as people read
    it, no raw recording URL."""
    content = services().content
    titles = content.language(content.default_language).sections
    return {
        "id": row["id"],
        "created_at": _local(row["created_at"]),
        "channel": row["channel"],
        "kind": row["kind"],
        "phone": row["phone"] or "",
        # Formatted once here, not in the template: phonenumbers takes about a millisecond a number.
        "phone_shown": phone_display(row["phone"] or ""),
        "outcome": row.get("outcome") or "",
        "topic": _sentence(titles[row["topic"]].title) if row["topic"] in titles else "",
        "lang": row["lang"],
        "urgent": bool(row["urgent"]),
        "urgent_kind": row.get("urgent_kind") or "",
        # The words a person texted with an urgent or call-back request, unsealed only for this page.
        "words": services().storage.unseal(row.get("words")),
        "has_recording": bool(row["recording_sid"]),
        "recording_seconds": row["recording_seconds"] or 0,
        # Notes are codes (comma-separated) set by the phone and text lines; the page words them.
        "notes": [note for note in (row["note"] or "").split(",") if note],
        "done_by": row["done_by"] or "",
        "done_at": _local(row["done_at"]),
    }


def _local(moment: dt.datetime | None) -> dt.datetime | None:
    """A stored time in the staff's time zone (STAFF_TIMEZONE)."""
    aware = from_db(moment)
    return aware.astimezone(services().hours.timezone) if aware else None


@bp.app_template_filter("staff_time")
def staff_time(moment: dt.datetime | None) -> str:
    """A time as staff read it, in STAFF_TIMEZONE: "Thu Nov 26, 9:05 AM"."""
    local = _local(moment)
    return local.strftime("%a %b %-d, %-I:%M %p") if local else ""


def phone_display(number: str) -> str:
    """A phone number as people read it: national format for the line's own country ("(555) 123-0001"),
    international for any other ("+44 20 7946 0000"); what cannot be read is shown as stored."""
    if not number:
        return ""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return number
    national = parsed.country_code == _line_country_code()
    style = phonenumbers.PhoneNumberFormat.NATIONAL if national else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    return phonenumbers.format_number(parsed, style)


def _line_country_code() -> int:
    """The country calling code of the line's own number (LINE_NUMBER); 1 (US, Canada) when it is not set.
    Read once per request (in `g`): a page formats hundreds of numbers."""
    if "line_country" not in g:
        try:
            parsed = phonenumbers.parse(current_app.config.get("LINE_NUMBER") or "+1", None)
            g.line_country = int(parsed.country_code or 1)
        except phonenumbers.NumberParseException:
            g.line_country = 1
    return int(g.line_country)


@bp.app_template_filter("waited")
def waited(seconds: int) -> str:
    """How long someone has waited, as a nurse says it: "45 minutes", "3 hours 10 minutes", "2 days 4 hours"."""
    minutes = max(int(seconds), 0) // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)

    def unit(count: int, name: str) -> str:
        return f"{count} {name}{'s' if count != 1 else ''}"

    if days:
        return unit(days, "day") + (f" {unit(hours, 'hour')}" if hours else "")
    if hours:
        return unit(hours, "hour") + (f" {unit(minutes, 'minute')}" if minutes else "")
    return unit(minutes, "minute") if minutes else "less than a minute"


@bp.app_template_filter("spoken_duration")
def spoken_duration(seconds: int) -> str:
    """A length in words: "1 minute 5 seconds"."""
    minutes, rest = divmod(max(int(seconds), 0), 60)
    parts = []
    if minutes:
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    if rest or not minutes:
        parts.append(f"{rest} second{'s' if rest != 1 else ''}")
    return " ".join(parts)


def _usage_rows(since: dt.date) -> list[dict[str, Any]]:
    """Calls and texts per section per day, newest day first: counts only, never a phone number."""
    content = services().content
    titles = content.language(content.default_language).sections
    table: dict[tuple[dt.date, str], dict[str, int]] = {}
    for row in services().storage.usage(since):
        counts = table.setdefault((row["day"], row["section"]), {"voice": 0, "sms": 0})
        counts[row["channel"]] = counts.get(row["channel"], 0) + int(row["count"])
    rows: list[dict[str, Any]] = []
    for (day, section), counts in table.items():
        rows.append({"day": day, "sid": section, "calls": counts["voice"], "texts": counts["sms"]})
    order = {sid: index for index, sid in enumerate(content.section_ids)}
    rows.sort(key=lambda r: (-r["day"].toordinal(), order.get(r["sid"], len(order)), r["sid"]))
    for row in rows:
        row["section"] = _sentence(titles[row["sid"]].title) if row["sid"] in titles else row["sid"]
    return rows


def _sentence(title: str) -> str:
    """A topic title as a label on the page: "hospice care" -> "Hospice care"."""
    return title[:1].upper() + title[1:]


def _texting_ready() -> bool:
    config = current_app.config
    return bool(config.get("LINE_NUMBER") and config.get("TWILIO_ACCOUNT_SID") and config.get("TWILIO_AUTH_TOKEN"))


# -- actions ----------------------------------------------------------------------------------------


@bp.post("/requests/<int:request_id>/done")
def mark_done(request_id: int) -> ResponseReturnValue:
    """Mark a call-back request done (closed, with an outcome when one is chosen), noting who and when;
    with `through` (a card's newest request), every open request of that number the card showed."""
    through = request.form.get("through", "")
    outcome = request.form.get("outcome", "")
    outcome = outcome if outcome in OUTCOMES else ""
    storage = services().storage
    if through.isdigit() and len(through) < 12:
        changed = storage.mark_number_done(request_id, int(through), g.staff_user, now(), outcome) > 0
    else:
        changed = storage.mark_done(request_id, g.staff_user, now(), outcome)
    if changed:
        log.info("Staff member %s marked call-back request %d done", g.staff_user, request_id)
    # The notice shows at the top of the queue, where the card was: the page opens there.
    flash(("closed" if outcome else "marked_done") if changed else "already_done", "queue")
    return redirect(url_for("staff.index") + "#queue", code=303)


@bp.post("/requests/<int:request_id>/reopen")
def reopen(request_id: int) -> ResponseReturnValue:
    """Put a request marked done by mistake back in the queue."""
    changed = services().storage.reopen(request_id, g.staff_user, now())
    if changed:
        log.info("Staff member %s reopened call-back request %d", g.staff_user, request_id)
    flash("reopened" if changed else "already_open", "queue")
    return redirect(url_for("staff.index") + "#queue", code=303)


# -- following a request through: its own page (no refresh), claim, call attempts, notes ------------------


@bp.get("/requests/<int:request_id>")
def request_page(request_id: int) -> Any:
    """One request's own page: its card in full, its history, and the forms to log a call, write a note
    and close it. It never refreshes itself, so a half-typed note is never lost."""
    storage = services().storage
    row = storage.callback_request(request_id)
    if row is None:
        abort(404)
    if row["status"] == "open" and row["phone"]:
        group = [other for other in storage.callback_requests("open") if other["phone"] == row["phone"]]
    else:
        group = [row]
    (card,) = queue_cards(group) if row["status"] == "open" else [_closed_card(row)]
    return render_template(
        "staff/request.html", user=g.staff_user, r=card, is_open=row["status"] == "open", outcomes=OUTCOMES
    )


def _closed_card(row: dict[str, Any]) -> dict[str, Any]:
    """A request that is done, shown on its own page as a card (its history and notes too)."""
    card = _card([row])
    _add_histories([card])
    return card


def _back_to_request(request_id: int, place: str = "follow-up") -> ResponseReturnValue:
    return redirect(url_for("staff.request_page", request_id=request_id) + f"#{place}", code=303)


@bp.post("/requests/<int:request_id>/claim")
def claim(request_id: int) -> ResponseReturnValue:
    """ "I'm calling": show everyone that this staff member is calling the person now."""
    changed = services().storage.claim(request_id, g.staff_user, now())
    flash("claimed" if changed else "not_open", f"card-{request_id}")
    if request.form.get("from") == "request":
        return _back_to_request(request_id)
    return redirect(url_for("staff.index") + f"#card-{request_id}", code=303)


def _note_from_form() -> str:
    return request.form.get("note", "").strip()[:NOTE_MAX]


@bp.post("/requests/<int:request_id>/attempt")
def attempt(request_id: int) -> ResponseReturnValue:
    """Log a call attempt: how it went (an outcome code) and a short note, sealed (it may hold health data)."""
    outcome = request.form.get("outcome", "")
    if outcome not in OUTCOMES:
        flash("choose_outcome", "follow-up")
        return _back_to_request(request_id)
    storage = services().storage
    note = _note_from_form()
    if not storage.log_attempt(request_id, g.staff_user, outcome, storage.seal(note) if note else "", now()):
        abort(404)
    log.info("Staff member %s logged a call attempt on request %d", g.staff_user, request_id)
    flash("attempt_saved", "follow-up")
    return _back_to_request(request_id)


@bp.post("/requests/<int:request_id>/note")
def add_note(request_id: int) -> ResponseReturnValue:
    """Keep a short note on a request, sealed."""
    note = _note_from_form()
    if not note:
        flash("empty_note", "follow-up")
        return _back_to_request(request_id)
    storage = services().storage
    if not storage.add_note(request_id, g.staff_user, storage.seal(note), now()):
        abort(404)
    flash("note_saved", "follow-up")
    return _back_to_request(request_id)


def normalize_phone(text: str) -> str | None:
    """A phone number typed by staff as E.164 (+15551234567); 10-digit numbers are taken as US numbers."""
    cleaned = re.sub(r"[\s().\-]", "", text.strip())
    if E164.match(cleaned):
        return cleaned
    if re.fullmatch(r"[2-9]\d{9}", cleaned):
        return "+1" + cleaned
    if re.fullmatch(r"1[2-9]\d{9}", cleaned):
        return "+" + cleaned
    return None


@bp.post("/send")
def send_section() -> Any:
    """Text a chosen section to a number, unless that number opted out of texts."""
    svc = services()
    form = {
        "phone": request.form.get("phone", "")[:40],
        "section": request.form.get("section", ""),
        "lang": request.form.get("lang", ""),
    }
    if form["section"] not in svc.content.section_ids or form["lang"] not in svc.content.languages:
        return _render_index(form, "bad_choice", 400)
    number = normalize_phone(form["phone"])
    if number is None:
        return _render_index(form, "bad_number", 400)
    if not _texting_ready():
        return _render_index(form, "texting_off", 503)
    # The same policy as a caller's "text me", capped per number and per staff member (ivr/outbound_texts.py).
    result = outbound_texts.send_section(
        svc,
        to=number,
        from_=current_app.config["LINE_NUMBER"],
        section=form["section"],
        lang=form["lang"],
        staff_user=g.staff_user,
    )
    log.info("Staff member %s texted section %s: %s", g.staff_user, form["section"], result)
    # The topic and the result, never the number: the audit keeps no phone numbers.
    svc.storage.record_staff_action(g.staff_user, "send", detail=f"{form['section']}:{result}"[:32], at=now())
    if result != "sent":
        refused = result in ("opted_out", "over_limit", "staff_over_limit")
        return _render_index(form, f"send_{result}", 409 if refused else 502)
    flash("sent", "send")
    return redirect(url_for("staff.index") + "#send", code=303)


@bp.get("/requests/<int:request_id>/recording")
def recording(request_id: int) -> Response:
    """Play a voice message: fetched from Twilio with the account's credentials and passed through."""
    storage = services().storage
    row = storage.callback_request(request_id)
    if row is None or not row["recording_sid"]:
        abort(404)
    if request.headers.get("Range", "bytes=0-").startswith("bytes=0-"):
        # A player fetches more ranges of one recording as it plays: the first fetch is the play.
        storage.record_staff_action(g.staff_user, "play", request_id, at=now())
    config = current_app.config
    if not (config.get("TWILIO_ACCOUNT_SID") and config.get("TWILIO_AUTH_TOKEN")):
        return Response(render_template("staff/not_set_up.html", user=g.staff_user, problem="recordings"), 503)
    headers = {"Range": request.headers["Range"]} if "Range" in request.headers else {}
    try:
        upstream = requests.get(
            _recording_media_url(row),
            auth=(config["TWILIO_ACCOUNT_SID"], config["TWILIO_AUTH_TOKEN"]),
            headers=headers,
            stream=True,
            timeout=(5, 30),
        )
    except requests.RequestException as error:
        log.warning("Could not fetch a recording from Twilio: %s", type(error).__name__)
        abort(502)
    if upstream.status_code not in (200, 206):
        upstream.close()
        log.warning("Twilio answered %d for a recording", upstream.status_code)
        abort(404 if upstream.status_code == 404 else 502)
    passed = {"Content-Type": "audio/mpeg", "Content-Disposition": "inline", "Accept-Ranges": "bytes"}
    for name in ("Content-Length", "Content-Range"):
        if name in upstream.headers:
            passed[name] = upstream.headers[name]

    def body() -> Iterator[bytes]:
        with upstream:
            yield from upstream.iter_content(64 * 1024)

    return Response(stream_with_context(body()), status=upstream.status_code, headers=passed)


def _recording_media_url(row: dict[str, Any]) -> str:
    """The MP3 of a recording on Twilio's REST API (or TWILIO_API_BASE_URL's stand-in), never any other host."""
    parts = urlsplit(row["recording_url"] or "")
    if parts.scheme == "https" and (parts.hostname or "").endswith(".twilio.com") and _RECORDING_PATH.match(parts.path):
        path = parts.path
    else:
        path = f"/2010-04-01/Accounts/{current_app.config['TWILIO_ACCOUNT_SID']}/Recordings/{row['recording_sid']}"
    return outbound_texts.twilio_api_base().rstrip("/") + path + ".mp3"


# -- the create-staff command ---------------------------------------------------------------------------


@click.command("create-staff")
@click.argument("username")
@click.option("--reset", is_flag=True, help="Give an existing account a new password.")
@with_appcontext
def create_staff_command(username: str, reset: bool) -> None:
    """Create a staff account for the staff page (asks for the password twice)."""
    if not _USERNAME.match(username):
        raise click.BadParameter("use 2 to 64 letters, digits, '.', '_', '@' or '-'", param_hint="USERNAME")
    storage = services().storage
    exists = storage.staff_user(username) is not None
    if exists and not reset:
        raise click.ClickException(f"{username!r} already exists; use --reset to give it a new password")
    if reset and not exists:
        raise click.ClickException(f"there is no account {username!r}")
    password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise click.ClickException(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if reset:
        storage.set_staff_password(username, hash_password(password))
        click.echo(f"New password set for {username!r}; their open sessions have ended.")
    else:
        storage.create_staff_user(username, hash_password(password))
        click.echo(f"Created staff account {username!r}. Sign in at /staff.")
