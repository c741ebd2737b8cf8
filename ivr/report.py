"""`flask --app ivr content-report`: how long, how plain and how fresh every word of the line is.

For each language it lists the opening as heard, every section's spoken parts and text messages, every
spoken and texted prompt: words, seconds at 150 words a minute, a readability score (Flesch-Kincaid
grade for English, Fernández-Huerta ease for Spanish), text-message segments and encoding (against the
language's limit in menu.yaml). Then every prompt file's clinical sign-off (status, reviewer, next review,
approval) and the coverage map's findings. It flags what breaks the line's rules; the tests enforce the same.
"""

from __future__ import annotations

import datetime as dt
import string
from dataclasses import dataclass, field
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from ivr import approval, call_dialog, coverage, readability, sms_segments
from ivr.content import Content, Language, TextLimit

#: Longest a spoken section part may take, and the opening (the greeting up to the first topic), in seconds.
MAX_PART_SECONDS = 60.0
MAX_OPENING_SECONDS = 15.0
#: Most words a new caller hears before the line waits for them (issue 14: it was about 140).
MAX_FIRST_TURN_WORDS = 120


# -- the report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One measured text: where it is (`item`), its numbers, and what is wrong with it (`problems`)."""

    lang: str
    kind: str  # opening | voice | sms | prompt | sms-prompt
    item: str
    text: str
    words: int
    seconds: float
    score: readability.Score
    segments: int = 0
    encoding: str = ""
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    """Every measured text, every prompt file's sign-off, and the problems found.

    `problems` are what breaks the rules (--strict fails on them), a review past its date among them;
    `files` shows each file's approval, which a draft simply lacks until a clinician signs it off.
    """

    today: dt.date
    rows: tuple[Row, ...]
    files: tuple[approval.FileState, ...]
    problems: tuple[str, ...] = field(default=())
    #: (language, list name, how many phrases): every phrase list people's words are matched against.
    phrase_lists: tuple[tuple[str, str, int], ...] = field(default=())


def opening_text(content: Content, lang: str) -> str:
    """The opening a caller hears in `lang`, up to the first topic (greeting, other language, 911 and 988, 0)."""
    return " ".join(line.text for line in call_dialog.opening(content, lang))


def first_turn_text(content: Content, lang: str) -> str:
    """Everything a new caller hears in `lang` before the line waits for them."""
    return " ".join(line.text for line in call_dialog.first_turn(content, lang))


def sample_values(language: Language) -> dict[str, str]:
    """Placeholder values for measuring a prompt: the longest real title and a key; hours come from config."""
    titles = [section.title for section in language.sections.values()]
    return {"title": max(titles, key=len), "key": "1", "hours": ""}


def filled(template: str, values: dict[str, str]) -> str:
    """`template` with its placeholders replaced by `values` (missing ones left empty), spaces tidied."""
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    return " ".join(template.format_map({name: values.get(name, "") for name in names}).split())


def _spoken_row(lang: str, kind: str, item: str, text: str, score_required: bool) -> Row:
    seconds = readability.spoken_seconds(text)
    score = readability.readability(text, lang)
    problems = []
    if kind == "voice" and seconds > MAX_PART_SECONDS:
        problems.append(f"{seconds:.0f} s is over {MAX_PART_SECONDS:.0f} s")
    if kind == "opening" and seconds > MAX_OPENING_SECONDS:
        problems.append(f"{seconds:.1f} s is over {MAX_OPENING_SECONDS:.0f} s")
    if kind == "first-turn" and readability.word_count(text) > MAX_FIRST_TURN_WORDS:
        problems.append(f"{readability.word_count(text)} words is over {MAX_FIRST_TURN_WORDS}")
    if score_required and not score.passes:
        problems.append(f"{score} is not plain enough")
    return Row(lang, kind, item, text, readability.word_count(text), seconds, score, problems=tuple(problems))


def _sms_row(lang: str, kind: str, item: str, text: str, score_required: bool, limit: TextLimit) -> Row:
    length = sms_segments.measure(text)
    segments, encoding = length.segments, length.encoding
    score = readability.readability(text, lang)
    problems = []
    too_long = limit.problem(text)
    if too_long:
        problems.append(too_long)
    if score_required and not score.passes:
        problems.append(f"{score} is not plain enough")
    words = readability.word_count(text)
    return Row(lang, kind, item, text, words, 0.0, score, segments, encoding, tuple(problems))


def prompt_score_required(lang: str) -> bool:
    """Whether a single short prompt must pass the readability rule on its own.

    Flesch-Kincaid behaves on a short English sentence, so each English prompt must pass. Fernández-Huerta
    weighs syllables per word so heavily that one required key name ("asterisco", "numeral") swings a
    five-word Spanish prompt by 20 points: Spanish prompts are checked together (the whole script, and the
    opening), and every Spanish section part and text message on its own.
    """
    return lang != "es"


def build_report(content: Content, today: dt.date) -> Report:
    """Measure every text of every language in `content`; `today` dates the review check."""
    rows: list[Row] = []
    phrase_lists: list[tuple[str, str, int]] = []
    for code, language in content.languages.items():
        limit = language.text_limit
        rows.append(_spoken_row(code, "opening", "opening to 1st topic", opening_text(content, code), True))
        rows.append(_spoken_row(code, "first-turn", "first turn, all of it", first_turn_text(content, code), True))
        values = sample_values(language)
        # Everything a caller may hear; the whispers are for staff only.
        heard = {name: text for name, text in language.voice.items() if not name.startswith("whisper")}
        script = " ".join(filled(text, values) for text in heard.values())
        rows.append(_spoken_row(code, "script", "all spoken prompts together", script, True))
        for section in language.sections.values():
            for number, part in enumerate(section.voice, start=1):
                rows.append(_spoken_row(code, "voice", f"{section.id} voice {number}", part, True))
            for number, message in enumerate(section.sms, start=1):
                rows.append(_sms_row(code, "sms", f"{section.id} sms {number}", message, True, limit))
        for name, text in language.voice.items():
            rows.append(_spoken_row(code, "prompt", name, filled(text, values), prompt_score_required(code)))
        for name, text in language.sms.items():
            rows.append(_sms_row(code, "sms-prompt", name, filled(text, values), prompt_score_required(code), limit))
        urgent = language.urgent
        if urgent is not None:
            for kind in urgent.kinds.values():
                rows.append(_spoken_row(code, "prompt", f"urgent {kind.name}", kind.say, prompt_score_required(code)))
                text = filled(kind.text, values)
                rows.append(
                    _sms_row(code, "sms-prompt", f"urgent {kind.name}", text, prompt_score_required(code), limit)
                )
        phrase_lists += _phrase_lists(code, language)
    problems = [f"{row.lang} {row.item}: {problem}" for row in rows for problem in row.problems]
    files = approval.file_states(content, today)
    problems += [f"{s.path}: review was due on {s.next_review}" for s in files if s.next_review <= today]
    problems += [f"coverage {problem}" for problem in coverage.coverage_problems(content, _coverage(content))]
    return Report(today, tuple(rows), tuple(files), tuple(problems), tuple(phrase_lists))


def _coverage(content: Content) -> tuple[coverage.Point, ...]:
    path = content.root / coverage.COVERAGE_FILE
    return coverage.load_coverage(content.root) if path.exists() else ()


def _phrase_lists(code: str, language: Language) -> list[tuple[str, str, int]]:
    """Every list of phrases the line matches people's words against, in one language, with its size."""
    lists = [(code, f"spoken command {name}", len(phrases)) for name, phrases in language.commands.items()]
    for section in language.sections.values():
        lists.append((code, f"topic {section.id} (title, keyword, synonyms)", 2 + len(section.synonyms)))
        questions = sum(len(answer.questions) for answer in section.answers)
        lists.append((code, f"questions {section.id} (answered by its parts)", questions))
    lists += [(code, f"text keywords {name}", len(words)) for name, words in language.texting.keywords.items()]
    urgent = language.urgent
    if urgent is not None:
        lists += [(code, f"urgent {kind.name}", len(kind.phrases)) for kind in urgent.kinds.values()]
        lists.append(
            (code, f"urgent end of life (offers {urgent.end_of_life_section})", len(urgent.end_of_life_phrases))
        )
        lists.append((code, "urgent near misses (must not trigger)", len(urgent.near_misses)))
    return lists


def render(report: Report) -> str:
    """The report as plain text for a terminal or the README."""
    out = [
        f"CareLine content report, {report.today.isoformat()}",
        f"Seconds at {readability.WORDS_PER_MINUTE} words a minute. Plain enough: English Flesch-Kincaid grade"
        f" <= {readability.MAX_ENGLISH_GRADE:g}; Spanish Fernández-Huerta >= {readability.MIN_SPANISH_EASE:g}.",
        f"Limits: opening (to the first topic) <= {MAX_OPENING_SECONDS:g} s, first turn <= {MAX_FIRST_TURN_WORDS}"
        f" words, spoken part <= {MAX_PART_SECONDS:g} s,"
        " text message within its language's limit (menu.yaml `texts`), review before next_review.",
    ]
    for lang in dict.fromkeys(row.lang for row in report.rows):
        rows = [row for row in report.rows if row.lang == lang]
        out += ["", f"== {lang} =="]
        for row in rows:
            if row.kind in ("opening", "first-turn", "script"):
                out.append(f"{row.item:<28} {row.words:>4} words {row.seconds:>5.1f} s  {row.score}{_flag(row)}")
        out += ["", f"{'section part':<28} {'words':>5} {'secs':>7}  {'readability':<24} text message"]
        for row in rows:
            if row.kind == "voice":
                out.append(f"{row.item:<28} {row.words:>5} {row.seconds:>6.1f}s  {row.score!s:<24}{_flag(row)}")
            elif row.kind == "sms":
                sms = f"{len(row.text)} chars, {row.segments} seg {row.encoding}"
                out.append(f"{row.item:<28} {row.words:>5} {'':>7}  {row.score!s:<24} {sms}{_flag(row)}")
        out += ["", f"{'prompt':<28} {'words':>5} {'secs':>7}  readability"]
        for row in rows:
            if row.kind == "prompt":
                out.append(f"{row.item:<28} {row.words:>5} {row.seconds:>6.1f}s  {row.score}{_flag(row)}")
            elif row.kind == "sms-prompt":
                sms = f"{len(row.text)} chars, {row.segments} seg {row.encoding}"
                out.append(f"{row.item + ' (text)':<28} {row.words:>5} {'':>7}  {row.score!s:<24} {sms}{_flag(row)}")
    if report.phrase_lists:
        out += ["", f"{'phrase list':<60} phrases"]
        out += [f"{lang} {name:<57} {count:>7}" for lang, name, count in report.phrase_lists]
    out += ["", "== clinical sign-off (status, reviewer, next review, approval) =="]
    for state in report.files:
        flag = "  << REVIEW DUE" if state.next_review <= report.today else ""
        if state.approved:
            signed = f"APPROVED by {state.approved_by} on {state.approved_on}"
        else:
            signed = "NOT APPROVED: " + "; ".join(state.problems)
        out.append(f"  {state.path:<30} {state.status:<8} next review {state.next_review}  {signed}{flag}")
        out.append(f"  {'':<30} reviewed by {state.reviewed_by}")
    waiting = [state for state in report.files if not state.approved]
    out.append(f"{len(waiting)} of {len(report.files)} prompt file(s) not clinically approved.")
    out += ["", f"{len(report.problems)} problem(s)" + (":" if report.problems else ".")]
    out += [f"  {problem}" for problem in report.problems]
    return "\n".join(line.rstrip() for line in out)


def _flag(row: Row) -> str:
    return "  << " + "; ".join(row.problems) if row.problems else ""


@click.command("content-report")
@click.option("--today", "today_text", default=None, help="Date for the review check (YYYY-MM-DD); default today.")
@click.option("--strict", is_flag=True, help="Exit with status 1 when anything is flagged.")
@with_appcontext
def content_report_command(today_text: str | None, strict: bool) -> None:
    """Print words, seconds, readability, text segments and review dates for every prompt and section."""
    from ivr.services import now, services

    readability.use_local_cmudict(Path(current_app.instance_path) / "nltk_data")
    today = dt.date.fromisoformat(today_text) if today_text else now().date()
    report = build_report(services().content, today)
    click.echo(render(report))
    if strict and report.problems:
        raise SystemExit(1)
