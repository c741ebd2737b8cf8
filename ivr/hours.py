"""Staff opening hours: parse STAFF_HOURS, tell whether staff can take a call right now, and say when
they are in, in words ("Monday to Friday, 8:30 in the morning to 5 in the evening").

Format: `Mon-Fri 08:30-17:00; Sat 09:00-12:00`, `Mon-Sun 00:00-24:00` for always, `closed` for never.
Times are in STAFF_TIMEZONE; dates in STAFF_HOLIDAYS are closed all day. The words come from
prompts/<lang>/hours.yaml (loaded and checked by ivr/content.py); this module only assembles them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
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

    def after_open_time(self, start: dt.datetime, open_time: dt.timedelta) -> dt.datetime | None:
        """The moment staff will have been in for `open_time` since `start`, counting only staff hours
        (no nights, closed days or holidays): when a call-back promised "within N staff hours" is due.
        None when staff are never in (STAFF_HOURS=closed), or not within a year."""
        if not self.openings:
            return None
        left = open_time
        local = start.astimezone(self.timezone)
        day = local.date()
        for _ in range(370):
            if day not in self.holidays:
                spans = sorted((o.opens, o.closes) for o in self.openings if day.weekday() in o.days)
                for opens, closes in spans:
                    begin = self._at(day, opens)
                    end = self._at(day, closes)
                    begin = max(begin, local)
                    if end <= begin:
                        continue
                    if end - begin >= left:
                        return begin + left
                    left -= end - begin
            day += dt.timedelta(days=1)
        return None

    def _at(self, day: dt.date, minute_of_day: int) -> dt.datetime:
        """`minute_of_day` on `day`, in the staff's time zone (24:00 is the next midnight)."""
        midnight = dt.datetime.combine(day, dt.time(), self.timezone)
        # Wall-clock arithmetic, then normalised: a day with a clock change keeps its opening hours.
        hours, minutes = divmod(minute_of_day, 60)
        if hours == 24:
            return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), self.timezone)
        return midnight.replace(hour=hours, minute=minutes)


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
        days = (
            words.days[first]
            if first == last
            else words.day_range.format(first=words.days[first], last=words.days[last])
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


# -- saying the hours in words --------------------------------------------------------------------

#: The templates of prompts/<lang>/hours.yaml, with the placeholders each may use.
HOURS_TEMPLATES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "one_day": frozenset({"day"}),
        "two_days": frozenset({"first", "last"}),
        "day_range": frozenset({"first", "last"}),
        "every_day": frozenset(),
        "on_the_hour": frozenset({"hour"}),
        "hour_and_minutes": frozenset({"hour", "minutes"}),
        "noon": frozenset(),
        "midnight": frozenset(),
        "morning": frozenset({"time"}),
        "afternoon": frozenset({"time"}),
        "evening": frozenset({"time"}),
        "times": frozenset({"opens", "closes"}),
        "days_and_times": frozenset({"days", "times"}),
        "all_day": frozenset(),
        "always": frozenset(),
        "except_holidays": frozenset({"hours"}),
    }
)
#: Keys of hours.yaml that are seven day names, Monday first.
HOURS_DAY_LISTS = ("days", "days_plural")
#: Keys of hours.yaml that are a time of day (HH:MM) where a part of the day begins.
HOURS_CLOCKS = ("afternoon_from", "evening_from")
#: Keys of hours.yaml that join parts of a list; they may be just punctuation and spaces.
HOURS_JOINERS = ("list_separator", "list_and")


@dataclass(frozen=True)
class HoursWords:
    """One language's words for staff hours (prompts/<lang>/hours.yaml), already checked."""

    days: tuple[str, ...]
    days_plural: tuple[str, ...]
    templates: Mapping[str, str]
    afternoon_from: int
    evening_from: int
    list_separator: str
    list_and: str

    def say(self, template: str, **values: str) -> str:
        """The template `template` with its placeholders filled in."""
        return self.templates[template].format_map(values)


def minutes_of(clock: str) -> int:
    """Minutes after midnight of a clock time written HH:MM (00:00 to 24:00)."""
    if not re.match(r"^\d{2}:\d{2}$", clock):
        raise HoursError(f"{clock!r} is not a time like 08:30")
    return _minutes(clock)


def describe(hours: StaffHours, words: HoursWords, today: dt.date | None = None) -> str:
    """When staff are in, in plain words: "Monday to Friday, 8:30 in the morning to 5 in the evening".

    The same text suits speech and text messages. Empty when staff are never in. Holidays are
    mentioned while any configured holiday is `today` or later (all of them when `today` is None).
    """
    if not hours.openings:
        return ""
    if len(hours.openings) == 1 and _always(hours.openings[0]):
        text = words.say("always")
    else:
        # Openings on the same days are said together: "Monday to Friday, 8 to noon, and 1 to 5".
        groups: dict[tuple[int, ...], list[Opening]] = {}
        for opening in hours.openings:
            groups.setdefault(opening.days, []).append(opening)
        parts = []
        for days, openings in groups.items():
            spans = [_span(opening, words) for opening in openings]
            parts.append(words.say("days_and_times", days=_days(days, words), times=_join(spans, words)))
        text = _join(parts, words)
    if any(today is None or day >= today for day in hours.holidays):
        text = words.say("except_holidays", hours=text)
    return text


def _always(opening: Opening) -> bool:
    return len(set(opening.days)) == 7 and opening.opens == 0 and opening.closes == 24 * 60


def _days(days: tuple[int, ...], words: HoursWords) -> str:
    if len(set(days)) == 7:
        return words.say("every_day")
    if len(days) == 1:
        return words.say("one_day", day=words.days_plural[days[0]])
    if len(days) == 2:
        return words.say("two_days", first=words.days_plural[days[0]], last=words.days_plural[days[1]])
    return words.say("day_range", first=words.days[days[0]], last=words.days[days[-1]])


def _span(opening: Opening, words: HoursWords) -> str:
    if opening.opens == 0 and opening.closes == 24 * 60:
        return words.say("all_day")
    return words.say("times", opens=_spoken_clock(opening.opens, words), closes=_spoken_clock(opening.closes, words))


def _spoken_clock(minute: int, words: HoursWords) -> str:
    if minute in (0, 24 * 60):
        return words.say("midnight")
    if minute == 12 * 60:
        return words.say("noon")
    hour, minutes = divmod(minute, 60)
    twelve_hour = str(hour % 12 or 12)
    if minutes:
        time = words.say("hour_and_minutes", hour=twelve_hour, minutes=f"{minutes:02d}")
    else:
        time = words.say("on_the_hour", hour=twelve_hour)
    if minute < words.afternoon_from:
        return words.say("morning", time=time)
    if minute < words.evening_from:
        return words.say("afternoon", time=time)
    return words.say("evening", time=time)


def _join(items: list[str], words: HoursWords) -> str:
    if len(items) <= 1:
        return "".join(items)
    return words.list_separator.join(items[:-1]) + words.list_and + items[-1]
