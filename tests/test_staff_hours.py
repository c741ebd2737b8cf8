"""Staff hours said in plain words, in both languages, with every word from prompts/<lang>/hours.yaml."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from ivr.content import PROMPTS_DIR, ContentError, load_content
from ivr.hours import StaffHours, describe
from ivr.services import staff_hours_text
from tests.conftest import loaded_content
from tests.helpers.staff_support import EVENING, make_app

CONTENT = loaded_content()
TODAY = dt.date(2026, 11, 1)


def said(spec: str, lang: str, holidays: tuple[str, ...] = ()) -> str:
    hours = StaffHours.parse(spec, "America/Los_Angeles", holidays)
    words = CONTENT.language(lang).hours
    assert words is not None
    return describe(hours, words, TODAY)


@pytest.mark.parametrize(
    ("spec", "english", "spanish"),
    [
        (
            "Mon-Fri 08:30-17:00",
            "Monday to Friday, 8:30 in the morning to 5 in the evening",
            "de lunes a viernes, de 8:30 de la mañana a 5 de la tarde",
        ),
        (
            "Mon-Fri 08:30-17:00; Sat 09:00-12:00",
            "Monday to Friday, 8:30 in the morning to 5 in the evening, and on Saturdays, 9 in the morning to noon",
            "de lunes a viernes, de 8:30 de la mañana a 5 de la tarde, y los sábados, de 9 de la mañana a mediodía",
        ),
        ("Mon-Sun 00:00-24:00", "any time, day or night", "a cualquier hora, de día y de noche"),
        (
            "Sat-Sun 10:00-14:00",
            "on Saturdays and Sundays, 10 in the morning to 2 in the afternoon",
            "los sábados y domingos, de 10 de la mañana a 2 de la tarde",
        ),
        (
            "Mon-Thu 08:00-12:00; Mon-Thu 13:00-20:30",
            "Monday to Thursday, 8 in the morning to noon, and 1 in the afternoon to 8:30 in the evening",
            "de lunes a jueves, de 8 de la mañana a mediodía, y de 1 de la tarde a 8:30 de la noche",
        ),
        (
            "Fri-Mon 18:00-24:00",
            "Friday to Monday, 6 in the evening to midnight",
            "de viernes a lunes, de 6 de la tarde a medianoche",
        ),
        ("Wed 00:00-24:00", "on Wednesdays, all day and all night", "los miércoles, todo el día y toda la noche"),
        (
            "Mon-Sun 07:05-19:00",
            "every day, 7:05 in the morning to 7 in the evening",
            "todos los días, de 7:05 de la mañana a 7 de la tarde",
        ),
        ("closed", "", ""),
    ],
)
def test_hours_are_said_naturally(spec: str, english: str, spanish: str) -> None:
    assert said(spec, "en") == english
    assert said(spec, "es") == spanish


def test_holidays_are_mentioned_only_while_one_is_ahead() -> None:
    assert said("Mon-Fri 09:00-17:00", "en", ("2026-12-25",)).endswith(", except on holidays")
    assert said("Mon-Fri 09:00-17:00", "es", ("2026-12-25",)).endswith(", menos los días festivos")
    assert "holidays" not in said("Mon-Fri 09:00-17:00", "en", ("2026-01-01",))


def test_holidays_close_the_whole_day() -> None:
    hours = StaffHours.parse("Mon-Fri 08:30-17:00", "America/Los_Angeles", ("2026-11-26",))
    thanksgiving_morning = dt.datetime(2026, 11, 26, 18, 0, tzinfo=dt.UTC)  # 10:00 in Los Angeles
    assert not hours.is_open(thanksgiving_morning)
    assert hours.is_open(thanksgiving_morning - dt.timedelta(days=1))


def test_the_plain_text_description_serves_texts_too(tmp_path: Path) -> None:
    app = make_app(tmp_path, NOW=EVENING)
    with app.test_request_context():
        assert staff_hours_text("en") == "Monday to Friday, 8:30 in the morning to 5 in the evening, except on holidays"
        assert staff_hours_text("es").startswith("de lunes a viernes")


def copy_prompts(tmp_path: Path) -> Path:
    target = tmp_path / "prompts"
    shutil.copytree(PROMPTS_DIR, target)
    return target


def test_every_language_must_have_its_hours_words(tmp_path: Path) -> None:
    prompts = copy_prompts(tmp_path)
    (prompts / "es" / "hours.yaml").unlink()
    with pytest.raises(ContentError, match=r"es/hours\.yaml: missing"):
        load_content(prompts)


@pytest.mark.parametrize(
    ("find", "replace", "problem"),
    [
        ("days: [Monday, Tuesday,", "days: [Tuesday,", "must name the 7 days"),
        ('morning: "{time} in the morning"', 'morning: "{clock} in the morning"', "unknown placeholders"),
        ('evening_from: "17:00"', 'evening_from: "five"', "evening_from must be a time"),
        ("noon: noon", "lunch: noon", "missing prompts"),
    ],
)
def test_broken_hours_words_stop_start_up_naming_the_file(
    tmp_path: Path, find: str, replace: str, problem: str
) -> None:
    prompts = copy_prompts(tmp_path)
    path = prompts / "en" / "hours.yaml"
    text = path.read_text(encoding="utf-8")
    assert find in text
    path.write_text(text.replace(find, replace), encoding="utf-8")
    with pytest.raises(ContentError, match=problem) as error:
        load_content(prompts)
    assert "hours.yaml" in str(error.value)
