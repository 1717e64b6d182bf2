import pytest

from runtime.access.identity import Identity
from runtime.access.window import RateWindow
from runtime.errors import RateLimitedError


def test_requests_per_minute_slide() -> None:
    who, window = Identity("a", rpm=2), RateWindow()
    window.admit(who, 1, now=0.0)
    window.admit(who, 1, now=10.0)
    with pytest.raises(RateLimitedError) as refused:
        window.admit(who, 1, now=30.0)
    assert refused.value.headers["Retry-After"] == "30"  # the first one leaves at 60
    window.admit(who, 1, now=60.5)


def test_tokens_reserve_then_settle_to_what_was_used() -> None:
    who, window = Identity("a", tpm=100), RateWindow()
    first = window.admit(who, 40, now=0.0)
    window.admit(who, 40, now=1.0)
    with pytest.raises(RateLimitedError):
        window.admit(who, 40, now=2.0)
    window.settle(first, 10, now=3.0)  # the engine said 10
    window.admit(who, 40, now=4.0)
    assert window.tokens == 90


def test_a_cancelled_place_is_given_back_and_waits_are_computed() -> None:
    who, window = Identity("a", rpm=1, tpm=50), RateWindow()
    spend = window.admit(who, 30, now=0.0)
    window.cancel(spend)
    assert window.tokens == 0 and not window.spends
    window.admit(who, 30, now=5.0)
    with pytest.raises(RateLimitedError) as refused:
        window.admit(who, 30, now=20.0)
    assert refused.value.headers["Retry-After"] == "45"
    with pytest.raises(RateLimitedError, match="by itself"):
        RateWindow().admit(who, 51, now=0.0)


def test_tokens_wait_for_enough_to_leave() -> None:
    who, window = Identity("a", tpm=100), RateWindow()
    for at in (0.0, 10.0, 20.0):
        window.admit(who, 30, now=at)
    with pytest.raises(RateLimitedError) as refused:
        window.admit(who, 50, now=30.0)
    # 90 held; 50 more fit once 40 left: the first two, at 60 and 70.
    assert refused.value.headers["Retry-After"] == "40"
