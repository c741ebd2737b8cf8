"""Understand what a person said or typed: forgiving phrase matching, shared by speech and texts.

Speech results arrive as "Hospice." or "Talk to someone?", texts as "info on HOSPISE pls 🙏".
Both are folded to lowercase words without accents or punctuation, then matched against a
vocabulary of phrases; the longest phrase found wins, so "tell me more" beats "more".
Texts may also match with small typos in longer words ("paliative", "hospise").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

_NON_WORD = re.compile(r"[^a-z0-9*#ñ]+")
#: Apostrophes join a word ("can't" is "cant"), so people who type either are understood alike.
_APOSTROPHES = re.compile(r"['’‘`´]")


def normalize(text: str) -> str:
    """Lowercase `text`, fold accents (keeping ñ), drop apostrophes, and turn all but letters and digits into spaces."""
    if text.isascii():  # most texts: nothing to fold but case
        plain = text.lower()
    else:
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
        self._variants: frozenset[str] | None = None

    def deletion_variants(self) -> frozenset[str]:
        """Every word of the text with up to two letters left out (the most typos any word allows).

        Two words within k typos (swaps included) both become one same string once each has at most
        k letters left out, so these find every vocabulary word a text word may be a typo of.
        """
        if self._variants is None:
            self._variants = frozenset(v for word in self.present for v in _deletions(word, MOST_TYPOS))
        return self._variants

    def close_to(self, wanted: str) -> frozenset[str]:
        """The words of the text that are `wanted` or within the typos `wanted` allows."""
        found = self._close.get(wanted)
        if found is None:
            allowed = typos_allowed(wanted)
            if not allowed:  # most vocabulary words: present or not, no typo search
                found = frozenset((wanted,)) if wanted in self.present else frozenset()
                self._close[wanted] = found
                return found
            candidates = (
                word
                for size in range(len(wanted) - allowed, len(wanted) + allowed + 1)
                for word in self._by_length.get(size, ())
            )
            found = frozenset(w for w in candidates if w == wanted or typo_distance(w, wanted, allowed) <= allowed)
            self._close[wanted] = found
        return found


#: The most typos any word allows (see typos_allowed).
MOST_TYPOS = 2
#: Up to this many distinct words, a text finds typo'd first words through deletion variants.
SHORT_TEXT_WORDS = 6


def _deletions(word: str, most: int) -> set[str]:
    """`word` with up to `most` letters left out, in every way."""
    found = {word}
    for _ in range(most):
        found |= {w[:i] + w[i + 1 :] for w in found for i in range(len(w))}
    return found


@dataclass(frozen=True)
class Vocabulary:
    """Phrases and what each means, longest first so the most specific phrase wins."""

    entries: tuple[tuple[tuple[str, ...], str], ...]
    #: Entry numbers by their phrase's first word: a phrase can only be in a text that has (nearly)
    #: its first word, so a text is checked against those few phrases instead of all of them.
    by_first_word: Mapping[str, tuple[int, ...]] = field(default_factory=dict, compare=False, repr=False)
    #: For the typo pass, only phrases with a word that allows typos (any other phrase in the text was
    #: found by the exact pass), by first word: those whose first word allows none, and the typo-allowing
    #: first words by length (a typo changes a word's length by at most 2).
    typo_phrases_by_exact_first_word: Mapping[str, tuple[int, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )
    typo_first_words_by_length: Mapping[int, tuple[str, ...]] = field(default_factory=dict, compare=False, repr=False)
    #: The same typo-allowing first words by each of their deletion variants (see Said.deletion_variants):
    #: for a short text, a few lookups instead of a typo count per first word.
    typo_first_words_by_variant: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.by_first_word and self.entries:
            index: dict[str, list[int]] = {}
            typo_index: dict[str, list[int]] = {}
            for number, (phrase_words, _) in enumerate(self.entries):
                index.setdefault(phrase_words[0], []).append(number)
                if any(typos_allowed(word) for word in phrase_words):
                    typo_index.setdefault(phrase_words[0], []).append(number)
            object.__setattr__(self, "by_first_word", {word: tuple(numbers) for word, numbers in index.items()})
            exact_first = {w: tuple(ns) for w, ns in typo_index.items() if not typos_allowed(w)}
            object.__setattr__(self, "typo_phrases_by_exact_first_word", exact_first)
            by_length: dict[int, list[str]] = {}
            for word in index:
                if typos_allowed(word):
                    by_length.setdefault(len(word), []).append(word)
            object.__setattr__(self, "typo_first_words_by_length", {n: tuple(ws) for n, ws in by_length.items()})
            by_variant: dict[str, list[str]] = {}
            for word in (w for ws in by_length.values() for w in ws):
                for variant in _deletions(word, typos_allowed(word)):
                    by_variant.setdefault(variant, []).append(word)
            object.__setattr__(self, "typo_first_words_by_variant", {v: tuple(ws) for v, ws in by_variant.items()})

    def _candidates(self, said: Said, fuzzy: bool) -> list[int]:
        """Entry numbers whose first word is in the text (or, with `fuzzy`, close to a word of it), in order.

        With `fuzzy`, only phrases the typo pass can add: those with a word that allows typos.
        """
        if fuzzy:
            numbers = [n for word in said.present for n in self.typo_phrases_by_exact_first_word.get(word, ())]
            if len(said.present) <= SHORT_TEXT_WORDS:
                by_variant = self.typo_first_words_by_variant
                maybe = {w for v in said.deletion_variants() for w in by_variant.get(v, ())}
            else:  # a long text has too many variants: try each first word of a near length instead
                lengths = {len(word) + change for word in said.present for change in range(-2, 3)}
                maybe = {w for size in lengths for w in self.typo_first_words_by_length.get(size, ())}
            numbers += [n for word in maybe if said.close_to(word) for n in self.by_first_word[word]]
        else:
            numbers = [n for word in said.present for n in self.by_first_word.get(word, ())]
        return sorted(numbers)

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
            for number in self._candidates(said, allow_typos):
                phrase_words, meaning = self.entries[number]
                if _contains(said, phrase_words, allow_typos):
                    return meaning
        return None


def _contains(said: Said, phrase: tuple[str, ...], fuzzy: bool) -> bool:
    # Every text meets every phrase of several vocabularies: rule a phrase out at its first word
    # that is nowhere in the text, before building anything.
    options: list[frozenset[str]] = []
    for word in phrase:
        if fuzzy:
            close = said.close_to(word)
            if not close:
                return False
            options.append(close)
        elif word not in said.present:
            return False
    if not fuzzy:
        if len(phrase) == 1:
            return True
        options = [frozenset((word,)) for word in phrase]
    size = len(phrase)
    for start in range(len(said.words) - size + 1):
        if all(said.words[start + k] in options[k] for k in range(size)):
            return True
    return False
