from datetime import UTC, datetime


class SystemClock:
    """The `Clock` of production: the system's time in UTC, to the microsecond."""

    def now(self) -> datetime:
        return datetime.now(UTC)
