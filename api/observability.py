"""Request ids, one access-log line a request, Prometheus metrics and optional tracing.

`RequestObservability` is a pure ASGI middleware: it wraps `receive` and `send` to count
bytes and to add `X-Request-Id`, and never holds a body, so streamed uploads and
downloads of any size pass through untouched. It sits outside Starlette's error
middleware, so the generic 500 problem carries the request id and is counted too.

Only the route template (`/v1/chats/{chat_id}`), never the raw path, query string,
header values or bodies, reaches a log line, a metric label or a span.
"""

import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapter.id_generator import UuidGenerator
from adapter.tracing import NoopTracer
from api.dependencies import ServicesDep
from api.logs import ACCESS_LOGGER, REQUEST_ID, RESPONSE_CUT_SHORT
from api.problems import PROBLEM_CODE_SCOPE_KEY, problem_responses
from api.routing import UNMATCHED_ROUTE, method_label, route_template
from api.settings import TRACING_PACKAGES_MISSING, Settings
from domain.error import ServiceUnavailableError
from usecase.interface import IdGenerator, Span, Tracer

access_logger = logging.getLogger(ACCESS_LOGGER)
logger = logging.getLogger('chat_storage.observability')

REQUEST_ID_HEADER = b'x-request-id'
# where a response the app cut short on purpose after its head (an export whose file
# changed: api/routers/export.py) leaves the code of the reason
CUT_SHORT_SCOPE_KEY = 'chat_storage.cut_short'
# a caller's id is echoed only when it is short and plain; anything else gets a new one
SANE_REQUEST_ID = re.compile(r'[A-Za-z0-9._-]{1,128}')
TRACE_HEADERS = frozenset({b'traceparent', b'tracestate'})
PATHSEND = 'http.response.pathsend'
MULTIPROCESS_ENV = 'PROMETHEUS_MULTIPROC_DIR'
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class HttpMetrics:
    """The service's Prometheus metrics, in a registry of this app's own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # with PROMETHEUS_MULTIPROC_DIR set, prometheus_client keeps every value in files
        # there and a scrape of any worker sums all workers' files
        self.multiprocess = bool(os.environ.get(MULTIPROCESS_ENV))
        by_request = ['method', 'route', 'status']
        self.requests = Counter(
            'chat_storage_http_requests',
            'HTTP requests answered, by method, route template and status.',
            by_request,
            registry=self.registry,
        )
        self.duration = Histogram(
            'chat_storage_http_request_duration_seconds',
            'Time from the request to the last byte of the response.',
            by_request,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.received = Counter(
            'chat_storage_http_received_bytes',
            'Request body bytes received (uploads), by method and route template.',
            ['method', 'route'],
            registry=self.registry,
        )
        self.sent = Counter(
            'chat_storage_http_sent_bytes',
            'Response body bytes sent (downloads), by method and route template.',
            ['method', 'route'],
            registry=self.registry,
        )
        self.problems = Counter(
            'chat_storage_problems',
            'Problem responses by status and code (413: quota and size refusals).',
            ['status', 'code'],
            registry=self.registry,
        )
        self.cut_short = Counter(
            'chat_storage_http_cut_short',
            'Responses cut short on purpose after their status was sent, by method, route '
            'template and reason (an export whose file changed): the client retries.',
            ['method', 'route', 'code'],
            registry=self.registry,
        )
        if not self.multiprocess:
            ProcessCollector(registry=self.registry)

    def observe(self, exchange: 'Exchange') -> None:
        status = str(exchange.status)
        self.requests.labels(exchange.method, exchange.route, status).inc()
        self.duration.labels(exchange.method, exchange.route, status).observe(exchange.seconds)
        if exchange.bytes_received:
            self.received.labels(exchange.method, exchange.route).inc(exchange.bytes_received)
        if exchange.bytes_sent:
            self.sent.labels(exchange.method, exchange.route).inc(exchange.bytes_sent)
        if exchange.problem_code is not None:
            self.problems.labels(status, exchange.problem_code).inc()
        if exchange.cut_short is not None:
            self.cut_short.labels(exchange.method, exchange.route, exchange.cut_short).inc()

    def exposition(self, active_sandbox_sessions: int | None) -> bytes:
        """The text format of every metric, plus the gauges read at scrape time."""
        scrape = CollectorRegistry()
        if self.multiprocess:
            MultiProcessCollector(scrape)  # type: ignore[no-untyped-call]
        else:
            scrape.register(_Forward(self.registry))
        if active_sandbox_sessions is not None:
            scrape.register(_ActiveSandboxSessions(active_sandbox_sessions))
        return generate_latest(scrape)


class _Forward(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()


class _ActiveSandboxSessions(Collector):
    """Counted in the metadata store at scrape time: right across replicas and restarts."""

    def __init__(self, value: int) -> None:
        self._value = value

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            'chat_storage_active_sandbox_sessions',
            'Sandbox sessions not yet expired, in all workspaces.',
            value=self._value,
        )


@dataclass(slots=True)
class Exchange:
    """What one request did, as far as logs, metrics and spans may tell."""

    request_id: str
    method: str
    route: str = UNMATCHED_ROUTE
    status: int | None = None
    seconds: float = 0.0
    bytes_received: int = 0
    bytes_sent: int = 0
    problem_code: str | None = None
    cut_short: str | None = None
    content_length: int = 0  # of the response, for bodies the server sends by path

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            'request_id': self.request_id,
            'method': self.method,
            'route': self.route,
            'status': self.status,
            'duration_ms': round(self.seconds * 1000, 3),
            'bytes_received': self.bytes_received,
            'bytes_sent': self.bytes_sent,
        }
        if self.problem_code is not None:
            fields['problem_code'] = self.problem_code
        if self.cut_short is not None:
            fields['cut_short'] = self.cut_short
        return fields


class RequestObservability:
    """Pure ASGI middleware: request id, access log, metrics and a span per HTTP request."""

    def __init__(
        self, app: ASGIApp, *, metrics: HttpMetrics, tracer: Tracer, ids: IdGenerator
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.tracer = tracer
        self.ids = ids

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope['type'] != 'http':
            await self.app(scope, receive, send)
            return
        exchange = Exchange(request_id=self._request_id(scope), method=method_label(scope))

        async def counting_receive() -> Message:
            message = await receive()
            if message['type'] == 'http.request':
                exchange.bytes_received += len(message.get('body', b''))
            return message

        async def observing_send(message: Message) -> None:
            if message['type'] == 'http.response.start':
                message = _started(message, exchange)
            elif message['type'] == 'http.response.body':
                exchange.bytes_sent += len(message.get('body', b''))
            elif message['type'] == PATHSEND:
                # the server sends the whole file itself; its size is the Content-Length
                exchange.bytes_sent += exchange.content_length
            await send(message)

        token = REQUEST_ID.set(exchange.request_id)
        started = time.perf_counter()
        try:
            with self.tracer.span(exchange.method, carrier=_trace_carrier(scope)) as span:
                try:
                    await self.app(scope, counting_receive, observing_send)
                finally:
                    _settle(exchange, scope, time.perf_counter() - started, span)
        finally:
            self.metrics.observe(exchange)
            access_logger.info(
                '%s %s %s',
                exchange.method,
                exchange.route,
                exchange.status,
                extra={'fields': exchange.fields()},
            )
            REQUEST_ID.reset(token)

    def _request_id(self, scope: Scope) -> str:
        for name, value in scope['headers']:
            if name == REQUEST_ID_HEADER:
                given: str = value.decode('latin-1')
                if SANE_REQUEST_ID.fullmatch(given):
                    return given
                break
        return self.ids.new().hex


def _started(message: Message, exchange: Exchange) -> Message:
    """`http.response.start` with our `X-Request-Id` (replacing any the app set)."""
    exchange.status = int(message['status'])
    headers = []
    for name, value in message.get('headers', []):
        lowered = name.lower()
        if lowered == b'content-length' and value.isdigit():
            exchange.content_length = int(value)
        if lowered != REQUEST_ID_HEADER:
            headers.append((name, value))
    headers.append((REQUEST_ID_HEADER, exchange.request_id.encode('ascii')))
    return {**message, 'headers': headers}


def _settle(exchange: Exchange, scope: Scope, seconds: float, span: Span) -> None:
    """What the request came to, once the app has returned or raised."""
    exchange.seconds = seconds
    exchange.route = route_template(scope)
    # no response at all means the app failed before answering
    exchange.status = exchange.status or 500
    code = scope.get(PROBLEM_CODE_SCOPE_KEY)
    exchange.problem_code = code if isinstance(code, str) else None
    cut_short = scope.get(CUT_SHORT_SCOPE_KEY)
    if isinstance(cut_short, str):
        exchange.cut_short = cut_short
        # left set for the rest of the server's task, whose own line about the unfinished
        # response api/logs.py then drops
        RESPONSE_CUT_SHORT.set(cut_short)
    span.update_name(f'{exchange.method} {exchange.route}')
    span.set_attribute('http.request.method', exchange.method)
    span.set_attribute('http.route', exchange.route)
    span.set_attribute('http.response.status_code', exchange.status)
    span.set_attribute('chat_storage.request_id', exchange.request_id)


def _trace_carrier(scope: Scope) -> dict[str, str] | None:
    carrier = {
        name.decode('latin-1'): value.decode('latin-1')
        for name, value in scope['headers']
        if name in TRACE_HEADERS
    }
    return carrier or None


def build_tracer(settings: Settings) -> Tracer:
    """`NoopTracer` unless `STORAGE_TRACING=otel`; OpenTelemetry is imported only then."""
    if settings.tracing == 'off':
        return NoopTracer()
    try:
        from adapter.otel_tracing import otlp_tracer  # noqa: PLC0415 - only when switched on

        return otlp_tracer()
    except ImportError:
        raise SystemExit(
            f'chat-storage: invalid configuration: {TRACING_PACKAGES_MISSING}'
        ) from None


def metrics_router(metrics: HttpMetrics) -> APIRouter:
    router = APIRouter(tags=['operations'])

    @router.get(
        '/metrics',
        summary='Prometheus metrics (text format); needs no caller id',
        description='Request counts and latency histograms by route and status, bytes '
        'uploaded and downloaded, quota rejections, active sandbox sessions.',
        response_class=Response,
        responses={
            200: {
                'description': 'Prometheus text exposition format',
                'content': {CONTENT_TYPE_LATEST: {'schema': {'type': 'string'}}},
            },
            **problem_responses(500),
        },
    )
    async def prometheus_metrics(services: ServicesDep) -> Response:
        try:
            active: int | None = await services.count_active_sandbox_sessions()
        except ServiceUnavailableError:
            # the request metrics are worth having even while the metadata store is away
            logger.warning('metrics: metadata store unavailable, sandbox gauge left out')
            active = None
        return Response(metrics.exposition(active), media_type=CONTENT_TYPE_LATEST)

    return router


def install_observability(
    app: FastAPI, *, tracer: Tracer | None = None, settings: Settings
) -> HttpMetrics:
    """Serve `/metrics` and wrap the whole app (error middleware included) in our middleware."""
    metrics = HttpMetrics()
    app.include_router(metrics_router(metrics))
    resolved_tracer = tracer or build_tracer(settings)
    build_stack = app.build_middleware_stack

    def build_observed_stack() -> ASGIApp:
        return RequestObservability(
            build_stack(), metrics=metrics, tracer=resolved_tracer, ids=UuidGenerator()
        )

    app.build_middleware_stack = build_observed_stack  # type: ignore[method-assign]
    return metrics
