"""The picture of the line (issue 16, item 5): Twilio's call status callback, each call's last place in the
menu, and the staff page's charts (/staff/line) with tables of the same numbers, counts only."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from ivr import line_picture
from ivr.services import services
from ivr.storage import as_utc, call_places, callback_requests, metadata
from tests.helpers.staff_support import LA, OPEN_TIME, add_staff, make_app
from tests.helpers.support import CALLER, Call, Phone, parse_twiml, sign, twilio_post

FINAL = ("completed", "busy", "failed", "no-answer", "canceled")
GOING = ("queued", "initiated", "ringing", "in-progress")


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[Flask]:
    app = make_app(tmp_path, DATABASE_URL=database_url)
    add_staff(app)
    yield app
    app.extensions["careline"].storage.dispose()


def places(app: Flask) -> list[dict[str, Any]]:
    with app.app_context(), services().storage.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.select(call_places))]


def status(client: FlaskClient, call_sid: str, call_status: str, duration: str = "42") -> Any:
    form = {
        "CallSid": call_sid,
        "AccountSid": "AC00000000000000000000000000000000",
        "From": CALLER,
        "To": "+15559870000",
        "CallStatus": call_status,
        "Direction": "inbound",
    }
    if call_status in FINAL:
        form["CallDuration"] = duration
    return twilio_post(client, "/voice/status", form)


def sid(number: int) -> str:
    return f"CA{number:032x}"


# -- the call status callback ----------------------------------------------------------------------------


@pytest.mark.parametrize("call_status", FINAL + GOING)
def test_the_status_callback_answers_every_status_with_an_empty_document(app: Flask, call_status: str) -> None:
    client = app.test_client()
    response = status(client, sid(1), call_status)
    assert response.status_code == 200
    assert response.mimetype == "text/xml"
    assert list(parse_twiml(response.data)) == []  # <Response/>: Twilio reads nothing from it
    rows = places(app)
    if call_status in FINAL:
        # A call the line never answered a step of (it ended before, or its CallSid is new): a row of its own.
        (row,) = rows
        assert (row["place"], row["outcome"], row["seconds"]) == ("", call_status, 42)
    else:
        assert rows == []


def test_the_status_callback_refuses_unsigned_and_wrongly_signed_requests(app: Flask) -> None:
    client = app.test_client()
    form = {"CallSid": sid(1), "CallStatus": "completed", "CallDuration": "5"}
    assert client.post("/voice/status", data=form).status_code == 403
    wrong = sign("https://line.example.org/voice/status", form, token="another-token")
    assert client.post("/voice/status", data=form, headers={"X-Twilio-Signature": wrong}).status_code == 403
    assert places(app) == []


def test_odd_status_forms_still_get_an_empty_document(app: Flask) -> None:
    client = app.test_client()
    for form in ({}, {"CallStatus": "completed"}, {"CallSid": sid(2), "CallStatus": "completed", "CallDuration": "x"}):
        response = twilio_post(client, "/voice/status", form)
        assert response.status_code == 200 and list(parse_twiml(response.data)) == []
    ((row_sid_less_ignored),) = places(app)  # only the one with a CallSid, with 0 seconds
    assert row_sid_less_ignored["seconds"] == 0


# -- hang-up places -----------------------------------------------------------------------------------


def walk(app: Flask, number: int, *keys: str) -> Call:
    call = Call(app.test_client(), call_sid=sid(number))
    call.start()
    for key in keys:
        call.press(key)
    return call


def test_each_call_s_last_place_is_kept_until_twilio_says_it_ended(app: Flask) -> None:
    walk(app, 1)  # hangs up at the main menu
    walk(app, 2, "1")  # while listening to the first section
    walk(app, 3, "1", "*")  # at the choices after it
    walk(app, 4, "0")  # at staff: put through (staff numbers are set, in hours)
    walk(app, 5, "1", "#")  # back at the main menu after a section
    client = app.test_client()
    for number in range(1, 6):
        assert status(client, sid(number), "completed", str(10 * number)).status_code == 200
    got = {row["seconds"]: (row["place"], row["section"], row["outcome"]) for row in places(app)}
    first = services_of(app).content.section_ids[0]
    assert got == {
        10: ("main", "", "completed"),
        20: ("section", first, "completed"),
        30: ("choices", first, "completed"),
        40: ("staff", "", "completed"),
        50: ("main", "", "completed"),
    }


def test_a_call_the_line_ends_is_counted_at_goodbye(app: Flask) -> None:
    app.config["STAFF_NUMBERS"] = ()  # no one to put the caller through to
    call = walk(app, 7)
    for _ in range(3):  # silence, again and again: the line says goodbye
        call.silence()
    assert call.ended()
    status(app.test_client(), sid(7), "completed")
    (row,) = places(app)
    assert row["place"] == line_picture.PLACE_ORDER[-2] == "goodbye"


def test_places_wait_in_the_batch_and_a_call_s_end_writes_them(tmp_path: Path) -> None:
    """In production the places are batched with the usage counts: walking the menus writes nothing."""
    app = make_app(tmp_path, USAGE_FLUSH_SECONDS=60)
    statements: list[str] = []
    engine = app.extensions["careline"].storage.engine
    sa.event.listen(engine, "before_cursor_execute", lambda _c, _k, statement, *_a: statements.append(statement))
    walk(app, 8, "1", "1", "#")
    assert not [s for s in statements if "call_places" in s]
    assert app.extensions["careline"].usage.pending_places() == 1  # four steps of one call: one row to write
    status(app.test_client(), sid(8), "completed")
    (row,) = places(app)
    assert (row["place"], row["outcome"]) == ("main", "completed")


def test_a_late_batch_from_another_process_does_not_undo_a_newer_place(app: Flask) -> None:
    from ivr.storage import PlaceNote

    storage = app.extensions["careline"].storage
    newer = PlaceNote(sid(9), "record", "", "en", OPEN_TIME + dt.timedelta(seconds=30))
    older = PlaceNote(sid(9), "main", "", "en", OPEN_TIME)
    storage.add_uses([], [newer])
    storage.add_uses([], [older])
    (row,) = places(app)
    assert row["place"] == "record"
    assert row["started_at"] is not None


def test_no_phone_number_is_kept_with_a_call_or_a_count(app: Flask) -> None:
    walk(app, 10, "1")
    Phone(app.test_client()).text("hospice")
    status(app.test_client(), sid(10), "completed")
    digits = CALLER.lstrip("+")
    with app.app_context(), services().storage.engine.connect() as connection:
        for table in (call_places, metadata.tables["usage_daily"]):
            for row in connection.execute(sa.select(table)):
                assert digits not in repr(tuple(row)), table.name
                assert sid(10) not in repr(tuple(row)), table.name  # the CallSid only as a keyed hash


def test_the_purge_removes_old_call_places(app: Flask) -> None:
    walk(app, 11)
    status(app.test_client(), sid(11), "completed")
    storage = app.extensions["careline"].storage
    assert storage.purge(OPEN_TIME - dt.timedelta(days=1))["call_places"] == 0
    assert storage.purge(OPEN_TIME + dt.timedelta(days=1))["call_places"] == 1
    assert places(app) == []


def services_of(app: Flask) -> Any:
    return app.extensions["careline"]


def add_request(app: Flask, at: dt.datetime, section: str, urgent: bool = False) -> None:
    row = {"created_at": as_utc(at), "channel": "sms", "kind": "callback", "phone": "+15551230009", "topic": section}
    row.update(lang="en", urgent=urgent, note="", status="open")
    with app.app_context(), services().storage.engine.begin() as connection:
        connection.execute(callback_requests.insert().values(**row))


# -- the page ---------------------------------------------------------------------------------------------


def chart_values(html: str, section_id: str) -> dict[tuple[str, str], int]:
    """The numbers the SVG bars of one chart section draw: (day or key, series) -> value."""
    part = section_html(html, section_id)
    svg = part[part.index("<svg") : part.index("</svg>")]
    found: dict[tuple[str, str], int] = {}
    for rect in re.findall(r"<rect [^>]*>", svg):
        attributes = dict(re.findall(r'data-(\w+)="([^"]*)"', rect))
        found[(attributes.get("day") or attributes["key"], attributes.get("series", ""))] = int(attributes["value"])
    return found


def table_values(html: str, section_id: str) -> dict[tuple[str, str], int]:
    """The numbers of the table under one chart, with zeros left out as the chart leaves out empty bars."""
    part = section_html(html, section_id)
    table = part[part.index("<table") : part.index("</table>")]
    found: dict[tuple[str, str], int] = {}
    for key, row in re.findall(r'<tr data-(?:day|key)="([^"]*)">(.*?)</tr>', table):
        for series, value in re.findall(r'<td class="number"(?: data-series="(\w+)")?>(\d+)</td>', row):
            if int(value):
                found[(key, series)] = int(value)
    return found


def section_html(html: str, heading_id: str) -> str:
    start = html.index(f'aria-labelledby="{heading_id}"')
    return html[start : html.index("</section>", start)]


def test_the_page_needs_a_signed_in_staff_member(app: Flask) -> None:
    response = app.test_client().get("/staff/line")
    assert response.status_code == 303 and "/staff/login" in response.headers["Location"]


def test_the_charts_draw_the_numbers_their_tables_give(app: Flask, staff: FlaskClient) -> None:
    content = services_of(app).content
    first = content.section_ids[0]
    # Today (Wednesday, staff time): two calls and three texts; an urgent text.
    walk(app, 1, "1")
    walk(app, 2, "0")
    phone = Phone(app.test_client())
    for words in ("hospice", "MORE", "coping"):
        phone.text(words)
    add_request(app, OPEN_TIME, "hospice", urgent=True)
    add_request(app, OPEN_TIME - dt.timedelta(hours=1), "hospice")
    # Late last evening in Los Angeles (already the next day in UTC): counted on the staff day.
    app.config["NOW"] = late = dt.datetime(2026, 11, 24, 23, 30, tzinfo=LA)
    walk(app, 3, "1", "*")
    Phone(app.test_client(), number="+15551230003").text("hospice")
    status(app.test_client(), sid(3), "completed")
    add_request(app, late, "coping", urgent=True)
    add_request(app, OPEN_TIME - dt.timedelta(days=30), "coping")  # before the 30 days
    app.config["NOW"] = OPEN_TIME
    for number in (1, 2):
        status(app.test_client(), sid(number), "completed")

    response = staff.get("/staff/line")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "<script" not in html
    today, yesterday = "2026-11-25", "2026-11-24"

    traffic = chart_values(html, "traffic-heading")
    assert traffic == table_values(html, "traffic-heading")
    assert traffic == {(today, "calls"): 2, (today, "texts"): 3, (yesterday, "calls"): 1, (yesterday, "texts"): 1}

    urgent = chart_values(html, "urgent-heading")
    assert urgent == table_values(html, "urgent-heading") == {(today, "urgent"): 1, (yesterday, "urgent"): 1}

    by_section = chart_values(html, "sections-heading")
    assert by_section == table_values(html, "sections-heading") == {("hospice", ""): 2, ("coping", ""): 1}

    endings = chart_values(html, "endings-heading")
    assert endings == table_values(html, "endings-heading")
    assert endings == {("section", ""): 1, ("choices", ""): 1, ("staff", ""): 1}
    assert first  # the chart of sections lists each section of the line, even with none
    assert len(re.findall(r'<tr data-key="', section_html(html, "sections-heading"))) >= len(content.section_ids)
    # 30 days in each day table, newest first.
    days = re.findall(r'<tr data-day="([\d-]+)">', section_html(html, "traffic-heading"))
    assert len(days) == 30 and days[0] == today and days[-1] == "2026-10-27"
    assert CALLER not in html and CALLER[2:] not in html


def test_calls_with_no_end_reported_say_how_to_set_up_the_status_callback(app: Flask, staff: FlaskClient) -> None:
    walk(app, 1, "1")
    services_of(app).usage.flush()
    html = staff.get("/staff/line").get_data(as_text=True)
    assert "no end reported" not in html  # just now: the call may still be going
    app.config["NOW"] = OPEN_TIME + dt.timedelta(hours=3)
    html = staff.get("/staff/line").get_data(as_text=True)
    assert "1 call has no end reported" in html
    assert "Call status changes" in html and "https://line.example.org/voice/status" in html


def test_the_queue_page_links_to_the_picture(staff: FlaskClient) -> None:
    html = staff.get("/staff/").get_data(as_text=True)
    assert 'href="/staff/line"' in html
    line = staff.get("/staff/line").get_data(as_text=True)
    assert 'href="/staff/#queue"' in line and 'aria-current="page"' in line


# -- the layout -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("largest", "top"), [(0, 4), (3, 4), (4, 4), (5, 8), (9, 20), (21, 40), (41, 80), (900, 2000)])
def test_the_number_axis_has_round_steps(largest: int, top: int) -> None:
    assert line_picture.nice_top(largest) == top


def test_a_bar_s_height_is_its_share_of_the_axis() -> None:
    days = [dt.date(2026, 11, 1) + dt.timedelta(days=n) for n in range(30)]
    chart = line_picture.day_chart(days, {"calls": [n % 5 for n in range(30)]})
    top = chart.ticks[-1].value
    plot = chart.baseline - chart.ticks[-1].y
    for bar in chart.bars:
        assert bar.height == pytest.approx(plot * bar.value / top, abs=0.1)
        assert bar.y + bar.height == pytest.approx(chart.baseline, abs=0.1)
