"""The picture of the line, /staff/line: calls, texts, call-back requests and where calls end, as charts.

A page of the staff site (signed in, the same security headers as /staff), on a blueprint of its own
so the queue page (ivr/web/staff.py) stays as it is. The charts are inline SVG drawn by the template
from `ivr.line_picture`, each with a table of the same numbers. Counts only: no phone number is read.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, current_app, g, render_template

from ivr import line_picture
from ivr.services import now, services
from ivr.web.staff import _require_sign_in, _security_headers

bp = Blueprint("line", __name__, url_prefix="/staff")
bp.before_request(_require_sign_in)
bp.after_request(_security_headers)

#: A call still open this long after its last step has ended without Twilio saying so: the status
#: callback is not set up (or its requests do not reach the line).
NO_END_AFTER = dt.timedelta(hours=2)


@bp.get("/line")
def picture() -> str:
    """The picture of the line for the last 30 days, in the staff time zone."""
    svc = services()
    zone = svc.hours.timezone
    moment = now()
    today = moment.astimezone(zone).date()
    first_day = today - dt.timedelta(days=line_picture.DAYS - 1)
    since = dt.datetime.combine(first_day, dt.time(), zone)
    storage = svc.storage
    numbers = line_picture.LineNumbers(
        today=today,
        timezone=zone,
        call_starts=storage.call_starts(since),
        texts_received=storage.texts_received(first_day),
        requests=[(fact.created_at, fact.section, fact.urgent) for fact in storage.request_facts(since)],
        call_endings=storage.call_endings(since),
        section_order=svc.content.section_ids,
    )
    content = svc.content
    titles = content.language(content.default_language).sections
    return render_template(
        "staff/line.html",
        user=g.staff_user,
        picture=line_picture.picture(numbers),
        section_titles={sid: titles[sid].title[:1].upper() + titles[sid].title[1:] for sid in content.section_ids},
        calls_without_end=storage.calls_without_end(since, moment - NO_END_AFTER),
        public_base_url=current_app.config.get("PUBLIC_BASE_URL") or "",
        timezone_name=str(zone).replace("_", " "),
    )
