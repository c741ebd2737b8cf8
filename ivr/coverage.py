"""The coverage map (prompts/coverage.yaml): every point of the source page, the section parts that carry
it in each language, and the words that prove it.

`coverage_problems` lists each point with no spoken part or no text message in a language, each carrier
naming a part that does not exist, and each carrier that lost one of its words. The tests fail on any;
content-report prints them. A reviewer reads the map to check the line against its source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ivr.content import Content

COVERAGE_FILE = "coverage.yaml"
_PART = re.compile(r"^([a-z_]+) (voice|sms) ([1-9][0-9]?)$")


@dataclass(frozen=True)
class Carrier:
    """A section part that carries a point, and the words that must stay in it."""

    lang: str
    part: str
    words: tuple[str, ...]


@dataclass(frozen=True)
class Point:
    """One point of the source page and its carriers in every language."""

    id: str
    about: str
    carriers: tuple[Carrier, ...]


def load_coverage(root: Path | str) -> tuple[Point, ...]:
    """The points of `root`/coverage.yaml, in file order."""
    path = Path(root) / COVERAGE_FILE
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    points = []
    for point_id, entry in (raw.get("points") or {}).items():
        carriers = []
        for lang, listed in entry.items():
            if lang == "about":
                continue
            for carrier in listed or []:
                words = tuple(str(word) for word in carrier.get("words") or [])
                carriers.append(Carrier(lang, str(carrier.get("part", "")), words))
        points.append(Point(str(point_id), str(entry.get("about", "")), tuple(carriers)))
    return tuple(points)


def part_text(content: Content, lang: str, part: str) -> str | None:
    """The words of "<section> voice|sms <n>" in `lang`, or None when there is no such part."""
    match = _PART.match(part)
    if not match or lang not in content.languages:
        return None
    section = content.languages[lang].sections.get(match.group(1))
    if section is None:
        return None
    parts = section.voice if match.group(2) == "voice" else section.sms
    number = int(match.group(3))
    return parts[number - 1] if number <= len(parts) else None


def coverage_problems(content: Content, points: tuple[Point, ...]) -> list[str]:
    """What the map finds wrong with `content`: points without carriers, missing parts, lost words."""
    problems = []
    for point in points:
        for lang in content.languages:
            mine = [c for c in point.carriers if c.lang == lang]
            for kind in ("voice", "sms"):
                if not any(f" {kind} " in c.part for c in mine):
                    problems.append(f"{point.id}: no {kind} part carries it in {lang}")
        for carrier in point.carriers:
            text = part_text(content, carrier.lang, carrier.part)
            if text is None:
                problems.append(f"{point.id}: {carrier.lang} {carrier.part!r} is not a section part")
                continue
            if not carrier.words:
                problems.append(f"{point.id}: {carrier.lang} {carrier.part} names no words that prove it")
            folded = text.casefold()
            lost = [word for word in carrier.words if word.casefold() not in folded]
            if lost:
                problems.append(f"{point.id}: {carrier.lang} {carrier.part} lost {lost}")
    return problems
