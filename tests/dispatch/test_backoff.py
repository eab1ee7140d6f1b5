"""The retry schedule and ``Retry-After`` parsing, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given, strategies as st

from staterelay.core.sinks import parse_retry_after
from staterelay.dispatch import retry_delay

SCHEDULE = {"base": 2.0, "factor": 3.0, "cap": 6 * 3600.0}


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 2.0), (2, 6.0), (3, 18.0), (4, 54.0), (8, 4374.0), (9, 13122.0), (10, 21600.0)],
)
def test_ceiling_grows_by_the_factor_up_to_the_cap(attempt: int, ceiling: float) -> None:
    """Lowest and highest draws bound the delay to the upper half of the ceiling."""
    assert retry_delay(attempt, **SCHEDULE, rand=lambda: 0.0) == pytest.approx(ceiling / 2)
    assert retry_delay(attempt, **SCHEDULE, rand=lambda: 1.0) == pytest.approx(ceiling)


@given(attempt=st.integers(min_value=1, max_value=10_000), draw=st.floats(0.0, 1.0))
def test_delay_stays_within_half_ceiling_and_cap(attempt: int, draw: float) -> None:
    """Any attempt number, however large, gives a finite delay within the cap."""
    delay = retry_delay(attempt, **SCHEDULE, rand=lambda: draw)
    ceiling = min(SCHEDULE["cap"], SCHEDULE["base"] * SCHEDULE["factor"] ** min(attempt - 1, 64))
    assert ceiling / 2 <= delay <= ceiling <= SCHEDULE["cap"]


def test_the_smallest_next_delay_is_never_below_the_previous_largest_while_growing() -> None:
    """With factor >= 2 every retry waits at least as long as any earlier one could."""
    for attempt in range(1, 9):
        longest = retry_delay(attempt, **SCHEDULE, rand=lambda: 1.0)
        shortest_next = retry_delay(attempt + 1, **SCHEDULE, rand=lambda: 0.0)
        assert shortest_next >= longest


def test_default_jitter_spreads_delays() -> None:
    """Without a fixed draw the delays differ, so retries of a burst do not stampede."""
    delays = {retry_delay(5, base=2.0, factor=3.0, cap=6 * 3600.0) for _ in range(50)}
    assert len(delays) > 40
    assert all(81.0 <= d <= 162.0 for d in delays)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("١٢", None),  # Arabic-Indic digits are digits to Python, not to HTTP
    ],
)
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    """Delta-seconds are read as whole seconds; anything else is ignored."""
    assert parse_retry_after(header, now=1_000_000.0) == expected


def test_retry_after_http_date() -> None:
    """An HTTP-date counts from now; a date in the past means now."""
    now = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC).timestamp()
    later = format_datetime(datetime(2026, 11, 25, 12, 1, 30, tzinfo=UTC), usegmt=True)
    earlier = format_datetime(datetime(2026, 11, 25, 11, 0, 0, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(later, now) == pytest.approx(90.0)
    assert parse_retry_after(earlier, now) == 0.0
