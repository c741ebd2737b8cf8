"""A number that sends many requests is one card on the staff page, not a flood (issue 15, item 6).

The red-team test sent 1000 texts from one number and made 1000 open requests (500 urgent). The
requests are all kept; the page shows one card per number, with how many there are, the newest
words, the urgent words if any, and every voice message; urgent stays urgent. "Mark done" on a card
marks done the requests it showed, never one that arrived after the page was loaded.
"""

from __future__ import annotations

import re
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from ivr.storage import Storage
from tests.helpers.staff_support import add_staff, csrf_token, make_app, recording_sid, recording_url, sign_in
from tests.helpers.support import Phone

PATIENT = "+15551230001"
OTHER = "+15551230002"


def staff_page(client: FlaskClient) -> str:
    response = client.get("/staff/")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def open_requests(storage: Storage, phone: str) -> list[dict[str, object]]:
    return [row for row in storage.callback_requests("open") if row["phone"] == phone]


def cards(html: str) -> list[str]:
    """Each card's HTML, in the order the page lists them."""
    queue = html.split('<ol class="requests">', 1)[1].split('<section id="send"', 1)[0]
    return re.findall(r'<li class="request[^"]*"[^>]*>.*?</article>', queue, flags=re.S)


def test_many_requests_from_one_number_are_one_card_with_a_count(tmp_path: Path, database_url: str) -> None:
    app: Flask = make_app(tmp_path, DATABASE_URL=database_url)
    add_staff(app)
    storage: Storage = app.extensions["careline"].storage
    patient, other = Phone(app.test_client(), number=PATIENT), Phone(app.test_client(), number=OTHER)
    assert other.text("call me please")
    for _ in range(10):
        assert patient.text("call me please")
    assert patient.text("I want to die")
    for number in (1, 2):
        storage.open_voice_message(f"CA{number:032x}", PATIENT, "hospice", "en")
        assert storage.attach_recording(f"CA{number:032x}", recording_sid(number), recording_url(number), 7 + number)
    assert patient.text("call me about the hospice papers")
    kept = open_requests(storage, PATIENT)
    assert len(kept) == 14, "every request is kept"

    staff = app.test_client()
    assert sign_in(staff).status_code == 303
    html = staff_page(staff)
    first, second = cards(html)  # one card per number
    assert OTHER in second and PATIENT in first, "urgent stays first"
    assert "Urgent" in first and "Urgent" not in second
    assert "14 requests from" in first
    assert "call me about the hospice papers" in first, "the newest words"
    assert "I want to die" in first, "the urgent words, though not the newest"
    for row in kept:
        if row["recording_sid"]:
            assert f"/staff/requests/{row['id']}/recording" in first, "every voice message"
    assert first.count("<audio") == 2

    token = csrf_token(html)
    action = re.search(r'<form method="post" action="(/staff/requests/\d+/done)">(.*?)</form>', first, re.S)
    assert action is not None
    through = re.search(r'name="through" value="(\d+)"', action.group(2))
    assert through is not None
    assert patient.text("please call me, one more after the page was loaded")
    response = staff.post(action.group(1), data={"csrf_token": token, "through": through.group(1)})
    assert response.status_code == 303
    left = open_requests(storage, PATIENT)
    assert (
        len(left) == 1 and storage.unseal(str(left[0]["words"])) == "please call me, one more after the page was loaded"
    )
    assert len(open_requests(storage, OTHER)) == 1, "another number's request stays"
    assert len([row for row in storage.callback_requests("done") if row["phone"] == PATIENT]) == 14
    assert "(2 open)" in staff_page(staff)
