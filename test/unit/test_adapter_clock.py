from datetime import UTC, timedelta

from adapter.clock import SystemClock


def test_system_clock_tells_utc() -> None:
    assert SystemClock().now().utcoffset() == timedelta(0)


def test_system_clock_is_timezone_aware_utc() -> None:
    assert SystemClock().now().tzinfo is UTC
