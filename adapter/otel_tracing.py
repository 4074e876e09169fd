"""A `Tracer` on OpenTelemetry; imported only when tracing is switched on.

Needs `opentelemetry-sdk`; `otlp_tracer()` also needs the OTLP/HTTP exporter
(`pip install 'chat-storage[tracing]'`), which reads the standard `OTEL_EXPORTER_OTLP_*`
and `OTEL_SERVICE_NAME` variables.
"""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from usecase.interface import Span, Tracer, TraceValue

SERVICE = 'chat-storage'


class OtelSpan(Span):
    def __init__(self, span: trace.Span) -> None:
        self._span = span

    def set_attribute(self, key: str, value: TraceValue) -> None:
        self._span.set_attribute(key, value)

    def update_name(self, name: str) -> None:
        self._span.update_name(name)


class OtelTracer(Tracer):
    """Server spans on a provider of our own (the global provider is left alone)."""

    def __init__(self, processor: SpanProcessor) -> None:
        resource = Resource.create({SERVICE_NAME: SERVICE})
        self.provider = TracerProvider(resource=resource)
        self.provider.add_span_processor(processor)
        self._tracer = self.provider.get_tracer('chat_storage')

    @contextmanager
    def span(self, name: str, *, carrier: Mapping[str, str] | None = None) -> Iterator[Span]:
        context = propagate.extract(carrier) if carrier else None
        with self._tracer.start_as_current_span(
            name, context=context, kind=trace.SpanKind.SERVER
        ) as span:
            yield OtelSpan(span)

    def shutdown(self) -> None:
        """Flush and stop the exporter."""
        self.provider.shutdown()


def otlp_tracer() -> OtelTracer:
    """Spans batched to the OTLP/HTTP endpoint of `OTEL_EXPORTER_OTLP_ENDPOINT`."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )

    return OtelTracer(BatchSpanProcessor(OTLPSpanExporter()))
