"""Content as data: the prompts load, and a broken prompt file stops start-up naming the file."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from ivr import create_app
from ivr.content import MAX_WORDS_PER_SPOKEN_PART, PROMPTS_DIR, ContentError, load_content
from tests.conftest import app_config, loaded_content

CONTENT = loaded_content()


def test_every_topic_is_reachable_by_key_and_by_name_in_every_language() -> None:
    assert set(CONTENT.topic_keys.values()) == set(CONTENT.section_ids)
    assert 1 <= len(CONTENT.section_ids) <= 6
    for language in CONTENT.languages.values():
        assert set(language.sections) == set(CONTENT.section_ids)
        for section in language.sections.values():
            assert language.vocabulary.match(section.title) == f"section:{section.id}"
            for synonym in section.synonyms:
                assert language.vocabulary.match(synonym) == f"section:{section.id}", synonym


def test_keys_are_unique_across_topics_and_global_keys() -> None:
    topic_keys = set(CONTENT.topic_keys)
    assert not topic_keys & set(CONTENT.global_keys)
    assert set(CONTENT.global_keys.values()) == {"staff", "repeat", "main_menu", "slower", "language"}
    assert {"0": "staff", "*": "repeat", "#": "main_menu"}.items() <= CONTENT.global_keys.items()


@pytest.mark.parametrize("lang", sorted(CONTENT.languages))
def test_spoken_parts_fit_in_a_minute(lang: str) -> None:
    for section in CONTENT.language(lang).sections.values():
        for part in section.voice:
            assert len(part.split()) <= MAX_WORDS_PER_SPOKEN_PART, (section.id, part[:40])


def test_every_section_points_to_the_care_team() -> None:
    for section in CONTENT.language("en").sections.values():
        assert "care team" in section.voice[-1].lower(), section.id
        assert "care team" in section.sms[-1].lower(), section.id


def broken_copy(tmp_path: Path, change: Callable[[Path], None]) -> Path:
    root = tmp_path / "prompts"
    shutil.copytree(PROMPTS_DIR, root)
    change(root)
    return root


def edit_yaml(path: Path, change: Callable[[dict], None]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


BREAKAGES: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "missing section file": (lambda r: (r / "en/sections/hospice.yaml").unlink(), "hospice.yaml", "missing"),
    "section not in the menu": (
        lambda r: shutil.copy(r / "en/sections/hospice.yaml", r / "en/sections/extra.yaml"),
        "sections",
        "no caller can reach them",
    ),
    "duplicate topic key": (
        lambda r: edit_yaml(r / "menu.yaml", lambda d: d["sections"][1].update(key="1")),
        "menu.yaml",
        "already used",
    ),
    "topic key clashes with a global key": (
        lambda r: edit_yaml(r / "menu.yaml", lambda d: d["sections"][0].update(key="0")),
        "menu.yaml",
        "already used",
    ),
    "too many topics": (
        lambda r: edit_yaml(r / "menu.yaml", lambda d: d["sections"].append({"id": "more_topic", "key": "7"})),
        "menu.yaml",
        "1 to 6 topics",
    ),
    "invalid YAML": (
        lambda r: (r / "en/voice.yaml").write_text("greeting: [unclosed\n"),
        "voice.yaml",
        "not valid YAML",
    ),
    "unknown placeholder": (
        lambda r: edit_yaml(r / "en/voice.yaml", lambda d: d.update(menu_option="For {topic}, press {key}.")),
        "voice.yaml",
        "unknown placeholders",
    ),
    "prompt missing": (
        lambda r: edit_yaml(r / "en/voice.yaml", lambda d: d.pop("goodbye")),
        "voice.yaml",
        "goodbye",
    ),
    "Spanish prompt missing": (
        lambda r: edit_yaml(r / "es/voice.yaml", lambda d: d.pop("record_saved")),
        "es/voice.yaml",
        "record_saved",
    ),
    "spoken part too long": (
        lambda r: edit_yaml(r / "en/sections/coping.yaml", lambda d: d["voice"].append("word " * 151)),
        "coping.yaml",
        "60 seconds",
    ),
    "synonym names two topics": (
        lambda r: edit_yaml(r / "en/sections/coping.yaml", lambda d: d["synonyms"].append("hospice")),
        "coping.yaml",
        "already belongs",
    ),
    "bad keyword": (
        lambda r: edit_yaml(r / "en/sections/coping.yaml", lambda d: d.update(keyword="cope 2")),
        "coping.yaml",
        "capital letters",
    ),
    "no review date": (
        lambda r: edit_yaml(r / "en/sections/coping.yaml", lambda d: d.pop("reviewed_on")),
        "coping.yaml",
        "reviewed_on",
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_prompt_file_is_named_at_start_up(tmp_path: Path, breakage: str) -> None:
    change, file_part, problem = BREAKAGES[breakage]
    root = broken_copy(tmp_path, change)
    with pytest.raises(ContentError) as raised:
        load_content(root)
    message = str(raised.value)
    assert file_part in message and problem in message, message
    with pytest.raises(ContentError):
        create_app(app_config(tmp_path, PROMPTS_DIR=str(root)))
