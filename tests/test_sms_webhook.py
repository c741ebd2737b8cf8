"""POST /sms end to end: signed like Twilio, real SQLite files, restarts, retries, opt-outs, privacy."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from ivr import create_app
from ivr.config import ConfigError
from ivr.services import Services
from ivr.storage.database import MIGRATIONS_DIR
from tests.conftest import app_config
from tests.helpers.support import CALLER, LINE_NUMBER, PUBLIC_BASE_URL, Phone, messages, sign, twilio_post


@pytest.fixture
def phone(client: FlaskClient) -> Phone:
    return Phone(client)


def storage(app: Flask) -> Services:
    return app.extensions["careline"]


def database_rows(app: Flask) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, read straight from the database (SQLite or PostgreSQL)."""
    engine = sa.create_engine(app.config["DATABASE_URL"], poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            tables = sa.inspect(connection).get_table_names()
            return {t: [tuple(r) for r in connection.exec_driver_sql(f"SELECT * FROM {t}")] for t in tables}
    finally:
        engine.dispose()


# -- the answers ---------------------------------------------------------------------------------------


def test_menu_lists_every_topic_with_its_number_and_keyword(phone: Phone) -> None:
    (menu,) = phone.text("MENU")
    lines = menu.splitlines()
    assert lines[0] == "CareLine topics. Reply a number or word:"
    assert lines[1:7] == [
        "1 RECUR: cancer that returns or spreads",
        "2 TREATMENT: treatment and trials",
        "3 PALLIATIVE: care for comfort",
        "4 DIRECTIVES: planning your care",
        "5 HOSPICE: end-of-life care",
        "6 COPING: support and family",
    ]
    assert "CALL" in lines[7] and lines[8] == "ESPAÑOL: en español"


@pytest.mark.parametrize(
    ("text", "first_words"),
    [
        ("5", "HOSPICE AND END-OF-LIFE CARE:"),
        ("hospice", "HOSPICE AND END-OF-LIFE CARE:"),
        ("Info on HOSPISE pls 🙏", "HOSPICE AND END-OF-LIFE CARE:"),
        ("living will", "ADVANCE DIRECTIVES AND PLANNING:"),
        ("paliative", "PALLIATIVE CARE FOR COMFORT:"),
        ("trials?", "A clinical trial is a research study"),
        ("come back", "CANCER THAT CAME BACK OR SPREAD:"),
        ("hospicio", "HOSPICIO Y CUIDADOS AL FINAL DE LA VIDA:"),
        ("tratamiento", "TRATAMIENTO Y ENSAYOS:"),
        ("paliativo!", "CUIDADOS PALIATIVOS:"),
    ],
)
def test_keywords_numbers_synonyms_and_typos_return_the_section(phone: Phone, text: str, first_words: str) -> None:
    (reply,) = phone.text(text)
    assert reply.startswith(first_words)
    assert reply.endswith("Reply MORE for the rest.") or reply.endswith("Responda MÁS para el resto.")


@pytest.mark.parametrize("text", ["", "hi", "HELLO", "🙂", "what is this"])
def test_empty_greeting_or_unknown_text_gets_the_menu(phone: Phone, text: str) -> None:
    (reply,) = phone.text(text)
    assert "5 HOSPICE: end-of-life care" in reply


def test_more_continues_where_the_number_left_off_and_survives_a_restart(tmp_path: Path) -> None:
    config = app_config(tmp_path)
    first = Phone(create_app(config).test_client())
    other = Phone(first.client, number="+15551230002")
    parts = storage(first.client.application).content.language("en").sections["treatment"].sms
    assert first.text("treatment") == [f"{parts[0]}\nReply MORE for the rest."]
    assert other.text("hospice")[0].startswith("HOSPICE AND END-OF-LIFE CARE:")  # another number keeps its own place
    assert first.text("MORE") == [f"{parts[1]}\nReply MORE for the rest."]

    restarted = Phone(create_app(config).test_client(), sent=first.sent)
    assert restarted.text("more") == [f"{parts[2]}\nReply MORE for the rest."]
    assert restarted.text("more") == [f"{parts[3]}\nReply MORE for the rest."]
    (last,) = restarted.text("more")
    assert last.startswith(parts[4]) and "Reply MENU for other topics" in last
    (done,) = restarted.text("MORE")
    assert done.startswith("That is all we have on treatment and trials.")
    assert other.text("more")[0].startswith("The hospice team")


def test_spanish_conversation(phone: Phone) -> None:
    (menu,) = phone.text("ESPAÑOL")
    assert menu.startswith("Bien, en español.")
    assert "5 hospicio, final de vida" in menu and menu.splitlines()[-1] == "ENGLISH: en inglés"
    (section,) = phone.text("5")
    assert section.startswith("HOSPICIO Y CUIDADOS AL FINAL DE LA VIDA:")
    assert section.endswith("Responda MÁS para el resto.")
    (more,) = phone.text("mas")
    assert more.startswith("El equipo del hospicio")
    (help_text,) = phone.text("AYUDA")
    assert "Responda STOP" in help_text and "Pueden aplicar tarifas" in help_text
    (back,) = phone.text("english")
    assert back.startswith("OK, texts in English.")


# -- HELP, STOP, START ----------------------------------------------------------------------------------


def test_help_names_the_program_offer_staff_phone_hours_stop_and_rates(phone: Phone) -> None:
    (text,) = phone.text("HELP")
    assert text.startswith("CareLine: health info for people with cancer")
    assert "Staff: 555-987-0000, Mon-Fri 8:30am-5pm." in text  # default: the line's own number
    assert "Reply STOP to opt out." in text
    assert "Msg & data rates may apply." in text
    assert "911" in text
    assert phone.text("info") == [text]


def test_help_gives_staff_phone_and_hours_from_the_settings(tmp_path: Path) -> None:
    hours = "Mon-Thu 09:00-16:30; Fri 09:00-12:00"
    app = create_app(app_config(tmp_path, STAFF_PHONE="+15552223333", STAFF_HOURS=hours))
    (text,) = Phone(app.test_client()).text("Help!")
    assert "Staff: 555-222-3333, Mon-Thu 9am-4:30pm, Fri 9am-12pm." in text


def test_staff_phone_must_be_a_phone_number(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="STAFF_PHONE"):
        create_app(app_config(tmp_path, STAFF_PHONE="call the front desk"))


#: Texts that get no reply after STOP (only START and HELP do).
NOT_START_OR_HELP = [
    "hospice",
    "5",
    "MENU",
    "more",
    "hello",
    "",
    "call me",
    "ESPAÑOL",
    "blah",
    "YES please",
]


def test_stop_then_silence_then_start_on_a_real_database_file_across_a_restart(tmp_path: Path) -> None:
    config = app_config(tmp_path)
    app = create_app(config)
    phone = Phone(app.test_client())
    neighbour = Phone(app.test_client(), number="+15551230002")
    assert phone.text("hospice")
    assert phone.text("STOP") == []  # Twilio sends its own confirmation; ours would be blocked anyway
    for text in NOT_START_OR_HELP:
        assert phone.text(text) == [], text
    # Safety before the opt-out rule (issue 13): urgent words are still answered.
    (urgent,) = phone.text("I want to die")
    assert "988" in urgent
    (help_text,) = phone.text("HELP")
    assert "Reply STOP to opt out" in help_text
    assert neighbour.text("hospice")  # one number's STOP is that number's only

    app = create_app(config)  # a new process on the same database file
    phone = Phone(app.test_client(), sent=phone.sent)
    for text in NOT_START_OR_HELP:
        assert phone.text(text) == [], text
    welcome, menu = phone.text("START")
    assert welcome.startswith("Welcome to CareLine texts") and "STOP" in welcome and "rates may apply" in welcome
    assert "5 HOSPICE: end-of-life care" in menu
    assert phone.text("5")[0].startswith("HOSPICE AND END-OF-LIFE CARE:")
    assert phone.text("Stop") == []
    assert phone.text("unstop")[1] == menu

    rows = database_rows(app)
    assert len(rows["opt_outs"]) == 1
    assert CALLER not in repr(rows["opt_outs"]) and CALLER not in repr(rows["sms_sessions"])


def test_asks_for_staff_after_stop_are_kept_and_only_urgent_words_get_a_reply(app: Flask, phone: Phone) -> None:
    phone.text("STOP")
    assert phone.text("please call me") == []
    (urgent,) = phone.text("I want to kill myself")  # safety before the opt-out rule (issue 13)
    assert urgent.startswith("Call or text 988")
    requests = storage(app).storage.callback_requests()
    assert [(r["urgent"], r["phone"], r["note"]) for r in requests] == [
        (True, CALLER, "urgent_words,texts_opted_out"),
        (False, CALLER, "texts_opted_out"),
    ]


@pytest.mark.parametrize(("word", "confirmation"), [("Stop.", "CareLine: You will not"), ("PARAR", "CareLine: Ya no")])
def test_opt_out_words_twilio_does_not_confirm_get_one_confirmation(phone: Phone, word: str, confirmation: str) -> None:
    (text,) = phone.text(word)
    assert text.startswith(confirmation) and "START" in text
    assert phone.text("hospice") == []


# -- call-back requests and urgent words ------------------------------------------------------------------


def test_call_back_request_is_stored_for_staff_and_confirmed_with_hours(app: Flask, phone: Phone) -> None:
    phone.text("hospice")
    (text,) = phone.text("CALL")
    assert text.startswith("Thank you. We saved your request.")
    assert "Staff hours: Mon-Fri 8:30am-5pm." in text
    (request,) = storage(app).storage.callback_requests()
    assert request["channel"] == "sms" and request["kind"] == "callback"
    assert request["phone"] == CALLER  # staff need the number to call back
    assert request["topic"] == "hospice" and request["lang"] == "en" and not request["urgent"]
    assert request["status"] == "open" and request["dedupe_key"] == f"sms:{phone.last_sid}"


@pytest.mark.parametrize("text", ["NURSE", "staff", "callback", "talk to someone", "Can someone call me?", "LLAMAR"])
def test_call_words(app: Flask, phone: Phone, text: str) -> None:
    (reply,) = phone.text(text)
    assert reply.startswith(("Thank you. We saved your request.", "Gracias. Guardamos su pedido."))
    assert len(storage(app).storage.callback_requests()) == 1


@pytest.mark.parametrize(
    ("text", "topic"),
    [
        ("I want to kill myself", "coping"),  # the topic being read
        ("i cant breathe!!", "coping"),
        ("Chest pain", "palliative"),  # or the topic the text names ("pain")
        ("thinking about suicide", "coping"),
        ("quiero morir", "hospice"),  # "morir" names hospice in Spanish
    ],
)
def test_urgent_words_get_911_and_988_first_and_are_flagged_for_staff(
    app: Flask, phone: Phone, text: str, topic: str
) -> None:
    phone.text("coping")
    phone.text("call me")
    replies = phone.text(text)
    assert len(replies) == 1
    kinds = ("Call or text 988", "Llame o mande un texto al 988", "If this is an emergency", "Si es una emergencia")
    assert replies[0].startswith(kinds)
    assert "911" in replies[0] and "988" in replies[0]
    first, second = storage(app).storage.callback_requests()
    assert first["urgent"] and first["phone"] == CALLER and first["note"] == "urgent_words"  # urgent first
    assert first["topic"] == topic
    assert not second["urgent"]


# -- retries of one MessageSid --------------------------------------------------------------------------


def test_a_retried_message_gets_the_same_answer_and_stores_nothing_twice(app: Flask, phone: Phone) -> None:
    answer = phone.text("call me")
    assert phone.text("call me", sid=phone.last_sid) == answer
    assert phone.text("call me", sid=phone.last_sid) == answer
    assert len(storage(app).storage.callback_requests()) == 1

    urgent = phone.text("I want to die")
    assert phone.text("I want to die", sid=phone.last_sid) == urgent
    assert len(storage(app).storage.callback_requests()) == 2


def test_a_retried_more_sends_the_same_part_not_the_next(app: Flask, phone: Phone) -> None:
    phone.text("treatment")
    second = phone.text("MORE")
    assert phone.text("MORE", sid=phone.last_sid) == second
    third = phone.text("MORE")
    assert third != second and third[0].startswith("A clinical trial is a research study")
    usage = storage(app).storage.usage(since=__import__("datetime").date(2000, 1, 1))
    assert [(u["channel"], u["section"], u["count"]) for u in usage] == [("sms", "treatment", 1)]


def test_a_retried_last_part_is_sent_again_not_that_is_all(app: Flask, phone: Phone) -> None:
    """The first answer stored a move; answered afresh, the retry would change nothing ("that is all"):
    it still gets the first answer, found with the conversation it reads."""
    phone.text("hospice")
    parts = len(app.extensions["careline"].content.language("en").sections["hospice"].sms)
    for _ in range(parts - 1):
        last = phone.text("MORE")
    assert phone.text("MORE", sid=phone.last_sid) == last
    assert phone.text("MORE")[0].startswith("That is all")


def test_a_retry_of_a_text_that_changed_nothing_gets_the_same_answer_later_too(app: Flask, phone: Phone) -> None:
    """Answered afresh after later texts, these retries would change something: they must not."""
    assert phone.text("STOP") == []
    assert phone.text("hospice") == []  # opted out: no answer, nothing changed
    ignored = phone.last_sid
    assert phone.text("START")
    assert phone.text("hospice", sid=ignored) == []  # not a section now: the first answer was silence

    first_help = phone.text("HELP")
    help_sid = phone.last_sid
    phone.text("ESPAÑOL")
    assert phone.text("HELP", sid=help_sid) == first_help
    assert storage(app).storage.text_conversation(phone.number, "")[0].lang == "es"  # not switched back to English

    phone.text("hospice")
    parts = len(app.extensions["careline"].content.language("es").sections["hospice"].sms)
    for _ in range(parts):
        that_is_all = phone.text("MAS")
    all_sid = phone.last_sid
    phone.text("dolor")
    assert phone.text("MAS", sid=all_sid) == that_is_all  # not a part of the new topic


def test_a_retried_stop_and_start(phone: Phone) -> None:
    assert phone.text("STOP") == []
    stop_sid = phone.last_sid
    welcome = phone.text("START")
    # A late retry of the STOP must not opt the number out again after START.
    assert phone.text("STOP", sid=stop_sid) == []
    assert phone.text("hospice")[0].startswith("HOSPICE AND END-OF-LIFE CARE:")
    assert phone.text("START", sid=phone.last_sid) != welcome  # a different message: answered on its own


def test_a_retried_start_after_a_later_stop_sends_no_welcome(app: Flask, phone: Phone) -> None:
    assert phone.text("PARAR")
    assert phone.text("START")
    start_sid = phone.last_sid
    assert phone.text("PARAR")
    assert phone.text("START", sid=start_sid) == [], "opted out now: no welcome, and still opted out"
    assert storage(app).storage.is_opted_out(phone.number)
    assert phone.text("hospice") == []


def test_a_retry_that_arrives_after_stop_is_not_answered(phone: Phone) -> None:
    assert phone.text("hospice")
    hospice_sid = phone.last_sid
    assert phone.text("help")
    help_sid = phone.last_sid
    assert phone.text("STOP") == []
    assert phone.text("hospice", sid=hospice_sid) == []  # the first answer was a section: not any more
    assert phone.text("help", sid=help_sid)  # HELP is always answered


def test_texts_without_a_message_sid_are_still_answered(client: FlaskClient) -> None:
    form = {"From": CALLER, "To": LINE_NUMBER, "Body": "5"}
    response = twilio_post(client, "/sms", form)
    assert messages(response.data)[0].startswith("HOSPICE AND END-OF-LIFE CARE:")


# -- signatures, bad input, privacy --------------------------------------------------------------------


def test_unsigned_or_badly_signed_texts_get_403_and_change_nothing(app: Flask, client: FlaskClient) -> None:
    form = Phone(client).form("STOP", "SM" + "1" * 32)
    assert client.post("/sms", data=form).status_code == 403
    assert client.post("/sms", data=form, headers={"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}).status_code == 403
    wrong_token = sign(PUBLIC_BASE_URL + "/sms", form, token="not-our-token")
    assert client.post("/sms", data=form, headers={"X-Twilio-Signature": wrong_token}).status_code == 403
    wrong_url = sign("https://evil.example.org/sms", form)
    assert client.post("/sms", data=form, headers={"X-Twilio-Signature": wrong_url}).status_code == 403
    tampered = dict(form, Body="START")
    good_for_stop = sign(PUBLIC_BASE_URL + "/sms", form)
    assert client.post("/sms", data=tampered, headers={"X-Twilio-Signature": good_for_stop}).status_code == 403
    assert not storage(app).storage.is_opted_out(CALLER)
    assert database_rows(app)["processed_events"] == []
    assert client.get("/sms").status_code == 405


def test_local_mode_answers_this_machine_only(tmp_path: Path) -> None:
    client = create_app(app_config(tmp_path, LOCAL_MODE="1", TWILIO_AUTH_TOKEN="")).test_client()
    form = {"From": CALLER, "To": LINE_NUMBER, "Body": "menu", "MessageSid": "SM" + "2" * 32}
    assert client.post("/sms", data=form, environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 403
    response = client.post("/sms", data=form, environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert "5 HOSPICE" in messages(response.data)[0]


@pytest.mark.parametrize(
    "form",
    [
        {},
        {"Body": "5"},
        {"From": CALLER},
        {"From": "not a number", "To": "", "Body": "call me", "MessageSid": "x"},
        {"From": CALLER, "To": LINE_NUMBER, "Body": "hospice " * 400, "MessageSid": "SM" + "3" * 32},
        {"From": CALLER, "To": LINE_NUMBER, "Body": "\x00\u202e\ufffd <Response/> ]]> &amp;", "MessageSid": "S" * 99},
    ],
)
def test_odd_requests_still_get_valid_twiml(client: FlaskClient, form: dict[str, str]) -> None:
    response = twilio_post(client, "/sms", form)
    assert response.status_code == 200
    messages(response.data)


def test_no_phone_number_or_message_in_logs_or_in_the_clear_outside_call_backs(
    app: Flask, phone: Phone, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for text in ["zebra hospice question", "more", "ESPAÑOL", "STOP", "START", "call me about zebra", "I want to die"]:
        phone.text(text)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert CALLER not in logged and CALLER[2:] not in logged and "zebra" not in logged
    rows = database_rows(app)
    for table, content in rows.items():
        if table == "alembic_version":
            continue
        assert "zebra" not in repr(content), table
        if table != "callback_requests":
            assert CALLER[2:] not in repr(content), table


def test_the_schema_is_migrated_to_the_newest_revision(app: Flask) -> None:
    newest = sorted(path.name[:4] for path in MIGRATIONS_DIR.glob("versions/0*.py"))[-1]
    assert database_rows(app)["alembic_version"] == [(newest,)]
    with storage(app).storage.engine.connect() as connection:
        columns = [column["name"] for column in sa.inspect(connection).get_columns("processed_events")]
    assert columns == ["key", "created_at", "outcome"]


def test_a_broken_database_still_answers_and_logs_no_number(
    app: Flask, phone: Phone, caplog: pytest.LogCaptureFixture
) -> None:
    """The keywords answer without the database (ivr/resilience.py); the error is logged by type only."""
    with storage(app).storage.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE sms_sessions")
    hospice = app.extensions["careline"].content.language("en").sections["hospice"].sms[0]
    assert phone.text("hospice")[0].startswith(hospice)
    assert "Database unavailable while reading a text conversation (" in caplog.text  # SQLite, PG: type only
    assert CALLER not in caplog.text and CALLER[2:] not in caplog.text
