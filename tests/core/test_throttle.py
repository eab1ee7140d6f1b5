"""LoginThrottle: limits per account and per address, growth, cap, memory and forgetting."""

from __future__ import annotations

import pytest

from staterelay.core.throttle import LoginThrottle, LoginThrottled, account_key
from tests.web.support import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """Time for the throttle."""
    return FakeClock(1_800_000_000.0)


def fail(throttle: LoginThrottle, times: int, account: str, ip: str) -> None:
    """Record ``times`` failures."""
    for _ in range(times):
        throttle.record_failure(account, ip)


def test_delays_are_capped(clock: FakeClock) -> None:
    """However many failures, the wait never exceeds max_delay."""
    throttle = LoginThrottle(clock, max_failures=2, max_delay=60.0)
    fail(throttle, 40, "a", "ip")
    assert throttle.retry_after("a", "other") == 60


def test_success_clears_the_account_but_not_the_address(clock: FakeClock) -> None:
    """A correct password resets the account's count; the address keeps its record."""
    throttle = LoginThrottle(clock, max_failures=2, ip_max_failures=3)
    fail(throttle, 2, "a", "ip")
    assert throttle.retry_after("a", "elsewhere") == 2
    throttle.record_success("a")
    assert throttle.retry_after("a", "elsewhere") == 0
    throttle.record_failure("b", "ip")
    assert throttle.retry_after("c", "ip") == 2
    with pytest.raises(LoginThrottled):
        throttle.check("c", "ip")


def test_failures_are_forgotten_after_a_quiet_day(clock: FakeClock) -> None:
    """A day without failures starts the count again."""
    throttle = LoginThrottle(clock, max_failures=2)
    fail(throttle, 1, "a", "ip")
    clock.advance(86400)
    fail(throttle, 1, "a", "ip")
    assert throttle.retry_after("a", "ip") == 0
    fail(throttle, 1, "a", "ip")
    assert throttle.retry_after("a", "ip") == 2


def test_memory_is_bounded(clock: FakeClock) -> None:
    """The oldest keys are dropped beyond the capacity."""
    throttle = LoginThrottle(clock, max_failures=1, capacity=10)
    for n in range(20):
        throttle.record_failure(f"acct{n}", f"ip{n}")
    assert throttle.retry_after("acct0", "none") == 0
    assert throttle.retry_after("acct19", "none") == 2


def test_account_keys_ignore_case_width_and_blanks() -> None:
    """One account, however its email is typed."""
    assert account_key(" Alice@Example.COM ") == account_key("alice@example.com")
    fullwidth = "\uff41\uff4c\uff49\uff43\uff45@example.com"  # "alice" typed in full width
    assert account_key(fullwidth) == "alice@example.com"
