"""Resolving the time expressions of a message against the moment it was sent."""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

WEEKDAYS = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
]
MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
_NUMBERS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "a couple of": 2,
    "a few": 3,
}
_UNIT = r"(day|week|month|year)s?"
_COUNT = (
    r"(\d+|a couple of|a few|an|a|one|two|three|four|five|six|seven|eight|nine|ten)"
)
_MONTH = "|".join(MONTHS)
_PATTERNS = [
    ("iso", re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")),
    (
        "month_day",
        re.compile(
            rf"\b(?:on\s+)?({_MONTH})\s+(\d{{1,2}})(?:st|nd|rd|th)?(?:,?\s+(\d{{4}}))?\b",
            re.I,
        ),
    ),
    (
        "day_month",
        re.compile(
            rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH})(?:,?\s+(\d{{4}}))?\b",
            re.I,
        ),
    ),
    ("ago", re.compile(rf"\b{_COUNT}\s+{_UNIT}\s+ago\b", re.I)),
    ("in", re.compile(rf"\bin\s+{_COUNT}\s+{_UNIT}\b", re.I)),
    ("yesterday", re.compile(r"\b(yesterday|last night)\b", re.I)),
    ("today", re.compile(r"\b(today|tonight|this morning|this afternoon)\b", re.I)),
    ("tomorrow", re.compile(r"\btomorrow\b", re.I)),
    ("last_unit", re.compile(r"\blast\s+(week|month|year|weekend)\b", re.I)),
    ("next_unit", re.compile(r"\bnext\s+(week|month|year|weekend)\b", re.I)),
    ("last_weekday", re.compile(rf"\blast\s+({'|'.join(WEEKDAYS)})\b", re.I)),
    ("next_weekday", re.compile(rf"\bnext\s+({'|'.join(WEEKDAYS)})\b", re.I)),
    ("in_month", re.compile(rf"\bin\s+({_MONTH})(?:\s+(\d{{4}}))?\b", re.I)),
    ("in_year", re.compile(r"\bin\s+((?:19|20)\d{2})\b", re.I)),
]


@dataclass(frozen=True)
class ResolvedTime:
    """A point in time a message refers to, and how precise it is."""

    when: datetime
    granularity: str  # "day", "week", "month" or "year"
    expression: str


def _count(text: str) -> int:
    text = text.lower()
    return int(text) if text.isdigit() else _NUMBERS[text]


def _shift_months(moment: datetime, months: int) -> datetime:
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=1)


def _shift(moment: datetime, count: int, unit: str) -> tuple[datetime, str]:
    unit = unit.lower()
    if unit == "day":
        return moment + timedelta(days=count), "day"
    if unit == "week":
        return moment + timedelta(weeks=count), "week"
    if unit == "month":
        return _shift_months(moment, count), "month"
    return moment.replace(year=moment.year + count, month=1, day=1), "year"


def _start_of_day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def resolve_time(text: str, *, now: datetime) -> ResolvedTime | None:
    """The first time expression in `text`, resolved against `now`, or None."""
    today = _start_of_day(now)
    matches = []
    for kind, pattern in _PATTERNS:
        match = pattern.search(text)
        if match:
            matches.append((match.start(), kind, match))
    for _, kind, match in sorted(matches, key=lambda item: item[0]):
        resolved = _resolve(kind, match, today)
        if resolved is not None:
            return ResolvedTime(
                when=resolved[0], granularity=resolved[1], expression=match.group(0)
            )
    return None


def _resolve(kind: str, match: re.Match, today: datetime):  # noqa: C901, PLR0911
    groups = match.groups()
    try:
        if kind == "iso":
            year, month, day = (int(g) for g in groups)
            return today.replace(year=year, month=month, day=day), "day"
        if kind in ("month_day", "day_month"):
            if kind == "month_day":
                month_name, day, year = groups
            else:
                day, month_name, year = groups
            month = MONTHS.index(month_name.lower()) + 1
            return (
                today.replace(
                    year=int(year) if year else today.year, month=month, day=int(day)
                ),
                "day",
            )
        if kind == "ago":
            return _shift(today, -_count(groups[0]), groups[1])
        if kind == "in":
            return _shift(today, _count(groups[0]), groups[1])
        if kind == "yesterday":
            return today - timedelta(days=1), "day"
        if kind == "today":
            return today, "day"
        if kind == "tomorrow":
            return today + timedelta(days=1), "day"
        if kind in ("last_unit", "next_unit"):
            sign = -1 if kind == "last_unit" else 1
            unit = groups[0].lower()
            if unit == "weekend":
                saturday = today + timedelta(days=(5 - today.weekday()) % 7)
                return saturday + timedelta(weeks=-1 if sign < 0 else 0), "day"
            return _shift(today, sign, unit)
        if kind in ("last_weekday", "next_weekday"):
            target = WEEKDAYS.index(groups[0].lower())
            if kind == "last_weekday":
                delta = (today.weekday() - target) % 7 or 7
                return today - timedelta(days=delta), "day"
            delta = (target - today.weekday()) % 7 or 7
            return today + timedelta(days=delta), "day"
        if kind == "in_month":
            month = MONTHS.index(groups[0].lower()) + 1
            year = int(groups[1]) if groups[1] else today.year
            return today.replace(year=year, month=month, day=1), "month"
        if kind == "in_year":
            return today.replace(year=int(groups[0]), month=1, day=1), "year"
    except (ValueError, OverflowError):
        # An impossible date (February 30) or one beyond the calendar's years
        # 1-9999 ("in 99999999 days", "yesterday" on 1 January of year 1) is
        # no time at all: the text is kept, undated.
        return None
    return None


def describe_time(when: datetime, granularity: str) -> str:
    """A short human form of a resolved time."""
    if granularity == "year":
        return f"{when:%Y}"
    if granularity == "month":
        return f"{when:%B %Y}"
    if granularity == "week":
        return f"the week of {when:%d %B %Y}".replace(" 0", " ")
    return f"{when:%d %B %Y}".lstrip("0")
