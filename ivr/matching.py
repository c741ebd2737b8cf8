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
#: Apostrophes join a word ("can't" is "cant"), so people who type either are understood alike.
_APOSTROPHES = re.compile(r"['’‘`´]")


def normalize(text: str) -> str:
    """Lowercase `text`, fold accents (keeping ñ), drop apostrophes, and turn all but letters and digits into spaces."""
    decomposed = unicodedata.normalize("NFKD", text.lower().replace("ñ", "\0"))
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).replace("\0", "ñ")
    return " ".join(_NON_WORD.sub(" ", _APOSTROPHES.sub("", plain)).split())


def words(text: str) -> tuple[str, ...]:
    """The normalized words of `text`."""
    return tuple(normalize(text).split())


def typo_distance(a: str, b: str, limit: int) -> int:
    """Edit distance between `a` and `b` counting a swap of neighbours as one edit; stops past `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    # Each edit adds or removes at most two letters from the set of letters used: a cheap way to
    # rule out most pairs before the quadratic count (a 1600-character text meets every phrase).
    if len(set(a) ^ set(b)) > 2 * limit:
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
    """How many typos a word of this length may carry and still count: none for short words.

    Five-letter words get none: "dying" would otherwise match "doing", "tumor" "humor".
    """
    if not word.isalpha():
        return 0
    if len(word) >= 9:
        return 2
    if len(word) >= 6:
        return 1
    return 0


class Said:
    """One text's words, prepared once for matching against any number of vocabularies.

    Remembers, for each vocabulary word met, which words of the text are that word give or take
    the typos it allows, so a long text costs one comparison per pair of distinct words at most.
    """

    def __init__(self, text: str) -> None:
        self.words = words(text)
        self.present = frozenset(self.words)
        self._by_length: dict[int, list[str]] = {}
        for word in self.present:
            self._by_length.setdefault(len(word), []).append(word)
        self._close: dict[str, frozenset[str]] = {}

    def close_to(self, wanted: str) -> frozenset[str]:
        """The words of the text that are `wanted` or within the typos `wanted` allows."""
        found = self._close.get(wanted)
        if found is None:
            allowed = typos_allowed(wanted)
            candidates = (
                word
                for size in range(len(wanted) - allowed, len(wanted) + allowed + 1)
                for word in self._by_length.get(size, ())
            )
            found = frozenset(w for w in candidates if w == wanted or typo_distance(w, wanted, allowed) <= allowed)
            self._close[wanted] = found
        return found


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

    def match(self, text: str | Said, fuzzy: bool = False) -> str | None:
        """The meaning of the longest phrase found in `text`, trying exact words before typos.

        Pass a `Said` to match one text against several vocabularies without preparing it again.
        """
        said = text if isinstance(text, Said) else Said(text)
        if not said.words:
            return None
        for allow_typos in (False, True) if fuzzy else (False,):
            for phrase_words, meaning in self.entries:
                if _contains(said, phrase_words, allow_typos):
                    return meaning
        return None


def _contains(said: Said, phrase: tuple[str, ...], fuzzy: bool) -> bool:
    if fuzzy:
        options = [said.close_to(word) for word in phrase]
    else:
        options = [frozenset((word,)) & said.present for word in phrase]
    if not all(options):
        return False  # some word of the phrase is nowhere in the text
    size = len(phrase)
    for start in range(len(said.words) - size + 1):
        if all(said.words[start + k] in options[k] for k in range(size)):
            return True
    return False
