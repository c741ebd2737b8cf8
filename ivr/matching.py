"""Understand what a person said or typed: forgiving phrase matching, shared by speech and texts.

Speech results arrive as "Hospice." or "Talk to someone?", texts as "info on HOSPISE pls 🙏".
Both are folded to lowercase words without accents or punctuation, then matched against a
vocabulary of phrases; the longest phrase found wins, so "tell me more" beats "more".
Texts may also match with small typos in longer words ("paliative", "hospise").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

_NON_WORD = re.compile(r"[^a-z0-9*#ñ]+")


def normalize(text: str) -> str:
    """Lowercase `text`, fold accents (keeping ñ), and turn everything but letters and digits into spaces."""
    decomposed = unicodedata.normalize("NFKD", text.lower().replace("ñ", "\0"))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).replace("\0", "ñ")
    return " ".join(_NON_WORD.sub(" ", plain).split())


def words(text: str) -> tuple[str, ...]:
    """The normalized words of `text`."""
    return tuple(normalize(text).split())


def typo_distance(a: str, b: str, limit: int) -> int:
    """Edit distance between `a` and `b` counting a swap of neighbours as one edit; stops past `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, start=1):
            cost = 0 if ca == cb else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]


def typos_allowed(word: str) -> int:
    """How many typos a word of this length may carry and still count: none for short words."""
    if len(word) >= 8:
        return 2
    if len(word) >= 5:
        return 1
    return 0


def _word_matches(said: str, wanted: str, fuzzy: bool) -> bool:
    if said == wanted:
        return True
    if not fuzzy:
        return False
    allowed = typos_allowed(wanted)
    return allowed > 0 and typo_distance(said, wanted, allowed) <= allowed


@dataclass(frozen=True)
class Vocabulary:
    """Phrases and what each means, longest first so the most specific phrase wins."""

    entries: tuple[tuple[tuple[str, ...], str], ...]

    @classmethod
    def build(cls, pairs: Iterable[tuple[str, str]]) -> Vocabulary:
        """Make a vocabulary from (phrase, meaning) pairs; earlier pairs win ties of equal length."""
        seen: set[tuple[str, ...]] = set()
        entries: list[tuple[tuple[str, ...], str]] = []
        for phrase, meaning in pairs:
            phrase_words = words(phrase)
            if phrase_words and phrase_words not in seen:
                seen.add(phrase_words)
                entries.append((phrase_words, meaning))
        order = {entry: index for index, entry in enumerate(entries)}
        entries.sort(key=lambda e: (-len(" ".join(e[0])), order[e]))
        return cls(tuple(entries))

    def match(self, text: str, fuzzy: bool = False) -> str | None:
        """The meaning of the longest phrase found in `text`, trying exact words before typos."""
        said = words(text)
        if not said:
            return None
        for allow_typos in (False, True) if fuzzy else (False,):
            for phrase_words, meaning in self.entries:
                if _contains(said, phrase_words, allow_typos):
                    return meaning
        return None


def _contains(said: tuple[str, ...], phrase: tuple[str, ...], fuzzy: bool) -> bool:
    size = len(phrase)
    for start in range(len(said) - size + 1):
        if all(_word_matches(said[start + k], phrase[k], fuzzy) for k in range(size)):
            return True
    return False
