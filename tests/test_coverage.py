"""The coverage map: every point of the source page has a spoken part and a text message in each language
that carries it, and keeps the words that prove it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from ivr.content import PROMPTS_DIR, load_content
from ivr.coverage import coverage_problems, load_coverage

#: The points of the source page (issue 14), each of which must have carriers.
SOURCE_POINTS = {
    "feelings",
    "why_it_comes_back",
    "where_it_comes_back",
    "not_your_fault",
    "advanced_or_spread",
    "choices_depend_on",
    "questions_for_care_team",
    "goals_of_treatment",
    "clinical_trials",
    "palliative_treatment",
    "coping",
    "complementary_care",
    "talking_with_family",
    "deciding_to_continue_or_stop",
    "palliative_care",
    "advance_directives_and_agent",
    "copies_and_family",
    "end_of_life_care",
    "hospice_where",
    "hospice_team",
    "hospice_sign_off",
    "grief_care",
}


def test_the_map_names_every_point_of_the_source() -> None:
    points = load_coverage(PROMPTS_DIR)
    assert {point.id for point in points} == SOURCE_POINTS
    for point in points:
        assert point.about, point.id
        for lang in ("en", "es"):
            parts = [c.part for c in point.carriers if c.lang == lang]
            assert any(" voice " in p for p in parts) and any(" sms " in p for p in parts), (point.id, lang)


def test_every_carrier_still_has_its_words() -> None:
    assert coverage_problems(load_content(), load_coverage(PROMPTS_DIR)) == []


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    copy = tmp_path / "prompts"
    shutil.copytree(PROMPTS_DIR, copy)
    return copy


def test_a_carrier_that_lost_its_words_fails(prompts: Path) -> None:
    path = prompts / "es/sections/hospice.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("consejería de duelo", "apoyo", 2), "utf-8")
    problems = coverage_problems(load_content(prompts), load_coverage(prompts))
    assert "grief_care: es hospice voice 2 lost ['consejería de duelo']" in problems
    assert "grief_care: es hospice sms 3 lost ['consejería de duelo']" in problems


def test_a_point_without_a_carrier_fails(prompts: Path) -> None:
    path = prompts / "coverage.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    trials = data["points"]["clinical_trials"]
    trials["en"] = [carrier for carrier in trials["en"] if " sms " in carrier["part"]]
    data["points"]["hospice_team"]["es"][0]["part"] = "hospice voice 9"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    problems = coverage_problems(load_content(prompts), load_coverage(prompts))
    assert "clinical_trials: no voice part carries it in en" in problems
    assert "hospice_team: es 'hospice voice 9' is not a section part" in problems
