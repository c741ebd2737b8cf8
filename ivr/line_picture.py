"""The picture of the line: the numbers of the staff page's charts (/staff/line), and the charts' shapes.

Pure: no Flask, no database. `LineNumbers` is what storage counted; `picture` lays it out as bar
charts that the template (templates/staff/line.html) draws as inline SVG (no scripts) and, beside
each chart, as a table of the same numbers for screen readers. Words are the template's.

Four charts, over the last DAYS days in the staff time zone (today included):
- calls and texts received per day;
- urgent call-back requests per day;
- call-back requests per section (any kind, open or done);
- where calls ended: each ended call's last place in the menu (ivr/web/calls.py `place_after`).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

DAYS = 30

#: The order places are listed in, as a call goes through the line; "" is a call that ended before the
#: line answered it a step (or whose steps went unrecorded).
PLACE_ORDER = ("main", "section", "choices", "offer", "staff", "record", "urgent", "urgent_dial", "goodbye", "")

# The drawing's size in SVG user units (the SVG scales to the page's width; see staff/line.css).
WIDTH = 720
DAY_CHART_HEIGHT = 220
MARGIN_LEFT = 44
MARGIN_RIGHT = 8
MARGIN_TOP = 12
MARGIN_BOTTOM = 36
ROW_HEIGHT = 30
LABEL_WIDTH = 250


@dataclass(frozen=True)
class LineNumbers:
    """What storage counted for the picture (see ivr/storage/places.py)."""

    today: dt.date
    timezone: dt.tzinfo
    call_starts: Sequence[dt.datetime]
    texts_received: Mapping[dt.date, int]
    #: Each call-back request: when (aware), its section ("" none), urgent or not.
    requests: Sequence[tuple[dt.datetime, str, bool]]
    call_endings: Mapping[str, int]
    section_order: Sequence[str]


@dataclass(frozen=True)
class Bar:
    """One bar: what it counts (`key`: a day, section or place), its number, and where it is drawn."""

    key: str
    value: int
    x: float
    y: float
    width: float
    height: float
    series: str = ""


@dataclass(frozen=True)
class Tick:
    """A labelled line on a chart's number axis."""

    value: int
    y: float


@dataclass(frozen=True)
class DayLabel:
    day: dt.date
    x: float


@dataclass(frozen=True)
class DayChart:
    """Columns per day, one per series side by side."""

    days: tuple[dt.date, ...]
    series: tuple[str, ...]
    values: Mapping[str, tuple[int, ...]]
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    labels: tuple[DayLabel, ...]
    width: int
    height: int
    baseline: float

    @property
    def rows(self) -> list[tuple[dt.date, list[int]]]:
        """The table view: each day, newest first, with each series' number."""
        return [(day, [self.values[name][index] for name in self.series]) for index, day in enumerate(self.days)][::-1]

    def total(self, name: str) -> int:
        return sum(self.values[name])


@dataclass(frozen=True)
class BarList:
    """Horizontal bars, one per row (a section, a place), labelled at the left by the template."""

    rows: tuple[tuple[str, int], ...]
    bars: tuple[Bar, ...]
    width: int
    height: int
    label_width: int

    @property
    def total(self) -> int:
        return sum(value for _, value in self.rows)


@dataclass(frozen=True)
class Picture:
    first_day: dt.date
    today: dt.date
    traffic: DayChart
    urgent: DayChart
    requests_by_section: BarList
    endings: BarList


def picture(numbers: LineNumbers) -> Picture:
    """Lay out the four charts of the picture of the line."""
    days = tuple(numbers.today - dt.timedelta(days=back) for back in range(DAYS - 1, -1, -1))
    zone = numbers.timezone
    calls = Counter(start.astimezone(zone).date() for start in numbers.call_starts)
    urgent = Counter(at.astimezone(zone).date() for at, _, is_urgent in numbers.requests if is_urgent)
    in_window = [section for at, section, _ in numbers.requests if days[0] <= at.astimezone(zone).date() <= days[-1]]
    by_section = Counter(in_window)
    section_rows = [(section, by_section[section]) for section in numbers.section_order]
    section_rows += sorted(
        (section, count) for section, count in by_section.items() if section not in numbers.section_order
    )
    place_rows = [(place, numbers.call_endings[place]) for place in PLACE_ORDER if numbers.call_endings.get(place)]
    place_rows += sorted(
        (place, count) for place, count in numbers.call_endings.items() if place not in PLACE_ORDER and count
    )
    return Picture(
        first_day=days[0],
        today=numbers.today,
        traffic=day_chart(
            days,
            {
                "calls": [calls[day] for day in days],
                "texts": [numbers.texts_received.get(day, 0) for day in days],
            },
        ),
        urgent=day_chart(days, {"urgent": [urgent[day] for day in days]}),
        requests_by_section=bar_list([(section, count) for section, count in section_rows if count or section]),
        endings=bar_list(place_rows),
    )


def nice_top(largest: int) -> int:
    """The top of a number axis: at least `largest`, 4 times 1, 2 or 5 times a power of ten (4, 8, 20, 40, ...),
    so the axis has 4 whole-number steps."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if 4 * step * factor >= largest:
                return 4 * step * factor
        step *= 10


def day_chart(days: Sequence[dt.date], series: Mapping[str, Sequence[int]]) -> DayChart:
    """Columns for each day, the series side by side, on one number axis from 0."""
    names = tuple(series)
    top = nice_top(max((value for values in series.values() for value in values), default=0))
    plot_width = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_height = DAY_CHART_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    baseline = MARGIN_TOP + plot_height
    slot = plot_width / len(days)
    bar_width = slot * 0.8 / len(names)
    bars = []
    for index, day in enumerate(days):
        for position, name in enumerate(names):
            value = int(series[name][index])
            height = plot_height * value / top
            x = MARGIN_LEFT + index * slot + slot * 0.1 + position * bar_width
            bars.append(
                Bar(
                    day.isoformat(),
                    value,
                    round(x, 1),
                    round(baseline - height, 1),
                    round(bar_width, 1),
                    round(height, 1),
                    name,
                )
            )
    ticks = tuple(Tick(top * step // 4, round(baseline - plot_height * step / 4, 1)) for step in range(5))
    # A label each week, ending with today.
    labels = tuple(
        DayLabel(day, round(MARGIN_LEFT + index * slot + slot / 2, 1))
        for index, day in enumerate(days)
        if (len(days) - 1 - index) % 7 == 0
    )
    return DayChart(
        days=tuple(days),
        series=names,
        values={name: tuple(int(value) for value in series[name]) for name in names},
        bars=tuple(bars),
        ticks=ticks,
        labels=labels,
        width=WIDTH,
        height=DAY_CHART_HEIGHT,
        baseline=baseline,
    )


def bar_list(rows: Iterable[tuple[str, int]]) -> BarList:
    """A horizontal bar per row, scaled to the largest, after a label column."""
    rows = tuple(rows)
    largest = max((value for _, value in rows), default=0) or 1
    room = WIDTH - LABEL_WIDTH - MARGIN_RIGHT - 48  # space for the number after the bar
    bars = tuple(
        Bar(key, value, LABEL_WIDTH, index * ROW_HEIGHT + 6, round(room * value / largest, 1), ROW_HEIGHT - 12)
        for index, (key, value) in enumerate(rows)
    )
    return BarList(rows=rows, bars=bars, width=WIDTH, height=max(1, len(rows)) * ROW_HEIGHT, label_width=LABEL_WIDTH)
