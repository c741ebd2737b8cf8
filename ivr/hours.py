"""Staff opening hours: parse STAFF_HOURS and tell whether staff can take a call right now.

Format: `Mon-Fri 08:30-17:00; Sat 09:00-12:00`, `Mon-Sun 00:00-24:00` for always, `closed` for never.
Times are in STAFF_TIMEZONE; dates in STAFF_HOLIDAYS are closed all day.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RULE = re.compile(r"^(?P<first>[a-z]{3})(?:-(?P<last>[a-z]{3}))?\s+(?P<open>\d{2}:\d{2})-(?P<close>\d{2}:\d{2})$")


class HoursError(ValueError):
    """STAFF_HOURS, STAFF_TIMEZONE or STAFF_HOLIDAYS cannot be understood."""


@dataclass(frozen=True)
class Opening:
    """Staff are in from `opens` to `closes` (minutes after midnight) on each weekday in `days` (0 = Monday)."""

    days: tuple[int, ...]
    opens: int
    closes: int


@dataclass(frozen=True)
class StaffHours:
    """When staff answer calls."""

    openings: tuple[Opening, ...]
    timezone: ZoneInfo
    holidays: frozenset[dt.date]

    @classmethod
    def parse(cls, spec: str, timezone: str, holidays: tuple[str, ...] | list[str] = ()) -> StaffHours:
        """Read the STAFF_HOURS text; raise HoursError with the part that could not be read."""
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise HoursError(f"STAFF_TIMEZONE {timezone!r} is not an IANA time zone like America/Los_Angeles") from None
        try:
            closed_days = frozenset(dt.date.fromisoformat(day) for day in holidays)
        except ValueError:
            raise HoursError(f"STAFF_HOLIDAYS {list(holidays)!r} must be dates like 2026-12-25") from None
        text = spec.strip().lower()
        if text in ("", "closed"):
            return cls((), zone, closed_days)
        openings = []
        for rule in text.split(";"):
            match = _RULE.match(" ".join(rule.split()))
            if not match or match["first"] not in DAYS or (match["last"] and match["last"] not in DAYS):
                raise HoursError(f"STAFF_HOURS: cannot read {rule.strip()!r}; write it like 'Mon-Fri 08:30-17:00'")
            first = DAYS.index(match["first"])
            last = DAYS.index(match["last"] or match["first"])
            days = tuple(range(first, last + 1)) if first <= last else (*range(first, 7), *range(0, last + 1))
            opens, closes = _minutes(match["open"]), _minutes(match["close"])
            if opens >= closes:
                raise HoursError(f"STAFF_HOURS: {rule.strip()!r} closes before it opens")
            openings.append(Opening(days, opens, closes))
        return cls(tuple(openings), zone, closed_days)

    def is_open(self, now: dt.datetime) -> bool:
        """Whether staff are in at the moment `now` (an aware datetime)."""
        local = now.astimezone(self.timezone)
        if local.date() in self.holidays:
            return False
        minute = local.hour * 60 + local.minute
        return any(local.weekday() in o.days and o.opens <= minute < o.closes for o in self.openings)


def _minutes(clock: str) -> int:
    hours, minutes = (int(part) for part in clock.split(":"))
    if hours > 24 or minutes > 59 or (hours == 24 and minutes):
        raise HoursError(f"STAFF_HOURS: {clock} is not a time of day")
    return hours * 60 + minutes


# -- describing the hours in words -------------------------------------------------------------------


@dataclass(frozen=True)
class HourWords:
    """The words one language uses to write staff hours (from prompts/<lang>/sms.yaml `hours`).

    `days` are seven short day names from Monday; `day_range` joins two of them ({first}, {last});
    `opening` writes one rule ({days}, {opens}, {closes}) and `all_day` one from 00:00 to 24:00 ({days});
    `separator` joins rules; `clock` is "12h" (8:30am, 5pm, with `am`/`pm`) or "24h" (8:30, 17:00);
    `always` and `closed` stand for round-the-clock and no hours at all.
    """

    days: tuple[str, ...]
    day_range: str
    opening: str
    separator: str
    clock: str
    am: str
    pm: str
    always: str
    closed: str
    all_day: str


def describe_hours(hours: StaffHours, words: HourWords) -> str:
    """STAFF_HOURS written out for a text message, e.g. "Mon-Fri 8:30am-5pm" or "lun a vie de 8:30 a 17:00"."""
    if not hours.openings:
        return words.closed
    if len(hours.openings) == 1:
        only = hours.openings[0]
        if len(only.days) == 7 and only.opens == 0 and only.closes == 24 * 60:
            return words.always
    parts = []
    for opening in hours.openings:
        first, last = opening.days[0], opening.days[-1]
        days = words.days[first] if first == last else words.day_range.format(
            first=words.days[first], last=words.days[last]
        )
        if opening.opens == 0 and opening.closes == 24 * 60:
            parts.append(words.all_day.format(days=days))
            continue
        opens, closes = _clock(opening.opens, words), _clock(opening.closes, words)
        parts.append(words.opening.format(days=days, opens=opens, closes=closes))
    return words.separator.join(parts)


def _clock(minute_of_day: int, words: HourWords) -> str:
    hour, minute = divmod(minute_of_day, 60)
    if words.clock == "24h":
        return f"{hour}:{minute:02d}"
    suffix = words.am if hour % 24 < 12 else words.pm
    twelve = hour % 12 or 12
    return f"{twelve}{suffix}" if minute == 0 else f"{twelve}:{minute:02d}{suffix}"
