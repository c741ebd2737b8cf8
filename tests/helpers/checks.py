"""Many cases in one test: every case checked, every failure reported at once.

The phrase walks (every urgent phrase in every place and language, every topic word in every spelling)
run thousands of cases. As one pytest test each they cost more in pytest's own bookkeeping (~1.6 ms a
test) than in the checks themselves; as one test per language or place, with the failures collected,
`make test-fast` stays fast and a failure still names every phrase that failed, not only the first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def failures(cases: Iterable[tuple[Any, ...]], check: Callable[..., object]) -> list[str]:
    """Run `check(*case)` for every case; one line per case whose check failed: the case, then why.
    No cases at all is a failure too: a walk over nothing checks nothing."""
    cases = list(cases)
    if not cases:
        return ["no cases to check"]
    found = []
    for case in cases:
        try:
            check(*case)
        except AssertionError as error:
            why = " ".join(str(error).split()) or "assertion failed"
            found.append(f"{case!r}: {why}")
    return found


def report(found: list[str]) -> str:
    """The failures, one a line, for an assert's message."""
    return f"{len(found)} case(s) failed:\n" + "\n".join(found)
