"""The default `Tracer`: spans that record nothing, so tracing off costs nothing."""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from usecase.interface import Span, Tracer, TraceValue


class NoopSpan(Span):
    def set_attribute(self, key: str, value: TraceValue) -> None:
        pass

    def update_name(self, name: str) -> None:
        pass


_NOOP_SPAN = NoopSpan()


class NoopTracer(Tracer):
    @contextmanager
    def span(
        self,
        name: str,  # noqa: ARG002 - nothing is recorded
        *,
        carrier: Mapping[str, str] | None = None,  # noqa: ARG002
    ) -> Iterator[Span]:
        yield _NOOP_SPAN
