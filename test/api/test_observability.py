"""Request ids, the access log, `/metrics` and tracing, on the app in-process."""

import contextvars
import errno
import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from asgi_lifespan import LifespanManager
from data_layout import blob_name
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import Message, Receive, Scope, Send

from adapter.blob_store import BlobStore
from adapter.id_generator import UuidGenerator
from adapter.otel_tracing import OtelTracer
from adapter.tracing import NoopTracer
from api.app import create_app
from api.logs import (
    ACCESS_LOGGER,
    REQUEST_ID,
    RESPONSE_CUT_SHORT,
    CutShortFilter,
    JsonFormatter,
    TextFormatter,
    logging_config,
)
from api.observability import HttpMetrics, RequestObservability, build_tracer
from api.routing import UNMATCHED_ROUTE
from api.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]
USER_A = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa'  # the `client` fixture's caller
HEX_ID = re.compile(r'^[0-9a-f]{32}$')
ACCESS_FIELDS = {
    'ts',
    'level',
    'logger',
    'message',
    'request_id',
    'method',
    'route',
    'status',
    'duration_ms',
    'bytes_received',
    'bytes_sent',
}


class StepClock(Protocol):
    def now(self) -> datetime: ...

    def advance(self, seconds: float) -> None: ...


@pytest.fixture
def backend_name() -> str:
    """Observability does not depend on the metadata store: SQLite only."""
    return 'sqlite'


@pytest.fixture(autouse=True)
def _capture_access_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)


def access_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The access-log lines of the test, as the JSON formatter writes them."""
    formatter = JsonFormatter()
    return [
        json.loads(formatter.format(record))
        for record in caplog.records
        if record.name == ACCESS_LOGGER
    ]


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await client.get('/metrics', headers={'X-User-Id': ''})
    assert response.status_code == 200
    assert response.headers['content-type'].startswith('text/plain')
    return samples(response.text)


def value(
    scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


# --- request ids -----------------------------------------------------------------------------


async def test_a_request_id_is_made_when_none_is_given(client: httpx.AsyncClient) -> None:
    first = await client.get('/healthz')
    second = await client.get('/healthz')
    assert HEX_ID.match(first.headers['x-request-id'])
    assert first.headers['x-request-id'] != second.headers['x-request-id']


async def test_a_sane_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    given = 'gw-2026.11.23_' + 'a' * 100
    response = await client.get('/v1/workspace', headers={'X-Request-Id': given})
    assert response.headers['x-request-id'] == given


@pytest.mark.parametrize(
    'given', ['', 'a' * 129, 'has space', 'semi;colon', 'ünïcode', '../../etc/passwd']
)
async def test_an_unfit_request_id_is_replaced(client: httpx.AsyncClient, given: str) -> None:
    response = await client.get('/healthz', headers={b'X-Request-Id': given.encode()})
    assert HEX_ID.match(response.headers['x-request-id'])


async def test_problem_responses_carry_the_request_id(client: httpx.AsyncClient) -> None:
    unauthenticated = await client.get('/v1/workspace', headers={'X-User-Id': ''})
    missing = await client.get('/no/such/route')
    not_allowed = await client.post('/healthz')
    for response, status in ((unauthenticated, 401), (missing, 404), (not_allowed, 405)):
        assert response.status_code == status
        assert response.headers['content-type'] == 'application/problem+json'
        assert HEX_ID.match(response.headers['x-request-id'])


async def test_an_unexpected_error_answers_500_with_the_request_id(
    settings: Settings, clock: StepClock, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings, clock=clock)

    async def explode() -> None:
        raise RuntimeError('boom')

    app.add_api_route('/explode', explode)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url='http://testserver') as http:
            response = await http.get('/explode', headers={'X-Request-Id': 'trace-500'})
    assert response.status_code == 500
    assert response.json()['code'] == 'internal_error'
    assert response.headers['x-request-id'] == 'trace-500'
    [line] = access_records(caplog)
    assert (line['route'], line['status'], line['request_id']) == ('/explode', 500, 'trace-500')
    # the traceback is logged once, tagged with the request it belongs to
    [error] = [r for r in caplog.records if r.name == 'chat_storage.errors']
    assert json.loads(JsonFormatter().format(error))['exc_info'].endswith('RuntimeError: boom')


# --- the access log --------------------------------------------------------------------------


async def test_one_access_line_a_request_with_the_route_template(
    client: httpx.AsyncClient, chat_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret_name = 'private-plans.csv'
    content = b'secret,content\n' * 20
    uploaded = await client.put(
        f'/v1/chats/{chat_id}/files/by-name/{secret_name}',
        content=content,
        headers={'Content-Type': 'text/csv', 'X-Request-Id': 'upload-1'},
    )
    assert uploaded.status_code == 201
    file_id = uploaded.json()['file_id']
    caplog.clear()
    downloaded = await client.get(
        f'/v1/chats/{chat_id}/files/{file_id}/content?token=query-secret',
        headers={'X-Request-Id': 'download-1'},
    )
    assert downloaded.content == content

    [line] = access_records(caplog)
    assert set(line) == ACCESS_FIELDS
    assert line['logger'] == ACCESS_LOGGER
    assert line['request_id'] == 'download-1'
    assert line['method'] == 'GET'
    assert line['route'] == '/v1/chats/{chat_id}/files/{file_id}/content'
    assert line['status'] == 200
    assert line['bytes_received'] == 0
    assert line['bytes_sent'] == len(content)
    assert isinstance(line['duration_ms'], float)
    assert line['duration_ms'] >= 0
    text = json.dumps(line)
    for leak in (chat_id, file_id, USER_A, 'query-secret', 'secret,content', secret_name):
        assert leak not in text


async def test_the_access_line_counts_upload_bytes_and_names_a_problem(
    client: httpx.AsyncClient, chat_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.clear()
    stored = await client.put(f'/v1/chats/{chat_id}/files/by-name/a.bin', content=b'x' * 500)
    too_large = await client.put(f'/v1/chats/{chat_id}/files/by-name/b.bin', content=b'x' * 4001)
    assert (stored.status_code, too_large.status_code) == (201, 413)
    [stored_line, refused_line] = access_records(caplog)
    route = '/v1/chats/{chat_id}/files/by-name/{name}'
    assert stored_line['route'] == refused_line['route'] == route
    assert (stored_line['status'], stored_line['bytes_received']) == (201, 500)
    assert 'problem_code' not in stored_line
    assert refused_line['status'] == 413
    assert refused_line['problem_code'] == 'file_too_large'
    assert refused_line['request_id'] == too_large.headers['x-request-id']


async def test_an_unmatched_path_is_logged_as_a_placeholder(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await client.request('BREW', '/v1/users/alice@example.com/secrets')
    [line] = access_records(caplog)
    assert line['route'] == UNMATCHED_ROUTE
    assert line['method'] == 'OTHER'
    assert 'alice' not in json.dumps(line)


async def test_a_method_not_allowed_keeps_its_route_template(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await client.post('/healthz')
    [line] = access_records(caplog)
    assert (line['route'], line['status']) == ('/healthz', 405)


def test_json_lines_carry_the_request_id_of_the_running_request() -> None:
    record = logging.LogRecord('chat_storage.x', logging.WARNING, __file__, 1, 'n=%d', (3,), None)
    token = REQUEST_ID.set('req-7')
    try:
        line = json.loads(JsonFormatter().format(record))
        text = TextFormatter().format(record)
    finally:
        REQUEST_ID.reset(token)
    assert line['request_id'] == 'req-7'
    assert (line['level'], line['logger'], line['message']) == ('WARNING', 'chat_storage.x', 'n=3')
    assert line['ts'].endswith('Z')
    assert text.endswith('WARNING chat_storage.x n=3 request_id=req-7')


def test_logging_config_turns_the_servers_access_log_off() -> None:
    config = logging_config('warning', 'text')
    assert config['root'] == {'level': 'WARNING', 'handlers': ['stderr']}
    assert config['loggers']['uvicorn.access']['propagate'] is False
    assert config['loggers']['uvicorn.access']['level'] == 'CRITICAL'
    assert config['formatters']['chat_storage']['()'] == 'api.logs.TextFormatter'


# --- metrics ---------------------------------------------------------------------------------


async def test_metrics_need_no_caller_and_no_gateway_token(
    make_settings: Callable[..., Settings], clock: StepClock
) -> None:
    app = create_app(make_settings(gateway_token='gateway-secret'), clock=clock)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url='http://testserver') as http:
            response = await http.get('/metrics')
    assert response.status_code == 200
    assert '# TYPE chat_storage_http_requests_total counter' in response.text


async def test_metrics_count_requests_bytes_and_refusals(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    upload_route = '/v1/chats/{chat_id}/files/by-name/{name}'
    before = await scrape(client)
    content = b'0123456789' * 300
    assert (
        await client.put(f'/v1/chats/{chat_id}/files/by-name/a.bin', content=content)
    ).status_code == 201
    file_id = (await client.get(f'/v1/chats/{chat_id}/files')).json()['items'][0]['file_id']
    content_route = '/v1/chats/{chat_id}/files/{file_id}/content'
    assert (await client.get(f'/v1/chats/{chat_id}/files/{file_id}/content')).content == content
    too_large = await client.put(f'/v1/chats/{chat_id}/files/by-name/b.bin', content=b'x' * 4001)
    assert too_large.json()['code'] == 'file_too_large'
    for name in ('c.bin', 'd.bin', 'e.bin'):  # the fourth 3000 bytes pass the quota of 10000
        await client.put(f'/v1/chats/{chat_id}/files/by-name/{name}', content=content)
    after = await scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = 'chat_storage_http_requests_total'
    assert grew(requests, method='PUT', route=upload_route, status='201') == 3
    assert grew(requests, method='PUT', route=upload_route, status='413') == 2
    assert grew(requests, method='GET', route=content_route, status='200') == 1
    histogram = 'chat_storage_http_request_duration_seconds_count'
    assert grew(histogram, method='GET', route=content_route, status='200') == 1
    assert grew('chat_storage_http_sent_bytes_total', method='GET', route=content_route) == 3000
    received = grew('chat_storage_http_received_bytes_total', method='PUT', route=upload_route)
    assert received >= 3 * 3000
    problems = 'chat_storage_problems_total'
    assert grew(problems, status='413', code='file_too_large') == 1
    assert grew(problems, status='413', code='workspace_quota_exceeded') == 1
    assert value(after, requests, method='GET', route='/metrics', status='200') >= 1


async def test_metrics_gauge_active_sandbox_sessions(
    client: httpx.AsyncClient, chat_id: str, clock: StepClock
) -> None:
    gauge = 'chat_storage_active_sandbox_sessions'
    assert value(await scrape(client), gauge) == 0
    await client.put(f'/v1/chats/{chat_id}/sandbox', json={'ttl_seconds': 60})
    assert value(await scrape(client), gauge) == 1
    clock.advance(61)
    assert value(await scrape(client), gauge) == 0


async def test_metrics_show_process_figures(client: httpx.AsyncClient) -> None:
    scraped = await scrape(client)
    assert value(scraped, 'process_resident_memory_bytes') > 0


# --- tracing ---------------------------------------------------------------------------------


async def test_spans_name_the_route_and_continue_the_callers_trace(
    settings: Settings, clock: StepClock
) -> None:
    exporter = InMemorySpanExporter()
    tracer = OtelTracer(SimpleSpanProcessor(exporter))
    app = create_app(settings, clock=clock, tracer=tracer)
    trace_id = '4bf92f3577b34da6a3ce929d0e0e4736'
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url='http://testserver', headers={'X-User-Id': USER_A}
        ) as http:
            await http.put('/v1/workspace')
            chat = (await http.post('/v1/chats', json={'title': 't'})).json()
            exporter.clear()
            await http.get(
                f'/v1/chats/{chat["chat_id"]}',
                headers={
                    'traceparent': f'00-{trace_id}-00f067aa0ba902b7-01',
                    'X-Request-Id': 'span-1',
                },
            )
    tracer.shutdown()
    [span] = exporter.get_finished_spans()
    assert span.name == 'GET /v1/chats/{chat_id}'
    assert span.attributes is not None
    assert dict(span.attributes) == {
        'http.request.method': 'GET',
        'http.route': '/v1/chats/{chat_id}',
        'http.response.status_code': 200,
        'chat_storage.request_id': 'span-1',
    }
    assert span.context is not None
    assert format(span.context.trace_id, '032x') == trace_id


def test_tracing_off_imports_no_tracing_sdk(tmp_path: Path) -> None:
    """A fresh interpreter: serving a request with tracing off loads no OpenTelemetry SDK."""
    script = """
import asyncio, sys
import httpx
from asgi_lifespan import LifespanManager
from api.app import create_app
from api.settings import Settings

async def main():
    app = create_app(Settings(data_dir=sys.argv[1], metadata_backend='memory'))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url='http://t') as http:
            assert (await http.get('/healthz')).status_code == 200
    loaded = sorted(m for m in sys.modules
                    if m.startswith(('opentelemetry.sdk', 'adapter.otel_tracing')))
    print(','.join(loaded) or 'none')

asyncio.run(main())
"""
    result = subprocess.run(
        [sys.executable, '-c', script, str(tmp_path / 'data')],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'none'


def test_tracing_on_needs_the_exporter(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(tracing='otel')
    try:
        exporter_installed = importlib.util.find_spec('opentelemetry.exporter.otlp') is not None
    except ModuleNotFoundError:  # not even the `opentelemetry.exporter` namespace
        exporter_installed = False
    if not exporter_installed:
        with pytest.raises(SystemExit, match='STORAGE_TRACING: otel needs'):
            build_tracer(settings)
    else:
        tracer = build_tracer(settings)
        assert isinstance(tracer, OtelTracer)
        tracer.shutdown()


# --- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('variable', 'bad'),
    [('STORAGE_LOG_LEVEL', 'loud'), ('STORAGE_LOG_FORMAT', 'xml'), ('STORAGE_TRACING', 'on')],
)
def test_a_bad_observability_setting_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, bad: str
) -> None:
    monkeypatch.setenv(variable, bad)
    with pytest.raises(SettingsError, match=f'^invalid configuration: {variable}: ') as raised:
        load_settings()
    assert '\n' not in str(raised.value)


@pytest.fixture
async def bare_client(settings: Settings, clock: StepClock) -> AsyncIterator[httpx.AsyncClient]:
    """No default headers: the gateway's caller id is not sent."""
    app = create_app(settings, clock=clock)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url='http://testserver') as http:
            yield http


async def test_openapi_lists_metrics_under_operations(bare_client: httpx.AsyncClient) -> None:
    document = (await bare_client.get('/openapi.json')).json()
    assert document['paths']['/metrics']['get']['tags'] == ['operations']


def test_metrics_of_all_workers_come_from_the_multiprocess_directory(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR, two workers' counts add up in any worker's scrape."""
    script = """
import sys
from api.observability import Exchange, HttpMetrics

worker = HttpMetrics()
worker.observe(Exchange('r1', 'GET', '/healthz', 200, 0.01, 0, 15))
scraping = HttpMetrics()  # another worker's registry: sees the counts through the files
scraping.observe(Exchange('r2', 'GET', '/healthz', 200, 0.02, 0, 15))
sys.stdout.write(scraping.exposition(3).decode())
"""
    multiproc_dir = tmp_path / 'prometheus'
    multiproc_dir.mkdir()
    result = subprocess.run(
        [sys.executable, '-c', script],
        cwd=ROOT,
        env={**os.environ, 'PROMETHEUS_MULTIPROC_DIR': str(multiproc_dir)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    scraped = samples(result.stdout)
    labels = {'method': 'GET', 'route': '/healthz', 'status': '200'}
    assert value(scraped, 'chat_storage_http_requests_total', **labels) == 2
    assert (
        value(scraped, 'chat_storage_http_sent_bytes_total', method='GET', route='/healthz') == 30
    )
    assert value(scraped, 'chat_storage_active_sandbox_sessions') == 3
    assert any(multiproc_dir.iterdir())


async def test_a_body_sent_by_path_counts_its_content_length(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server offering `http.response.pathsend` sends the file itself (Granian does)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                'type': 'http.response.start',
                'status': 200,
                'headers': [(b'content-length', b'123456'), (b'x-request-id', b'from-the-app')],
            }
        )
        await send({'type': 'http.response.pathsend', 'path': '/somewhere/file'})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {'type': 'http.request', 'body': b'', 'more_body': False}

    middleware = RequestObservability(
        app, metrics=HttpMetrics(), tracer=NoopTracer(), ids=UuidGenerator()
    )
    scope = {'type': 'http', 'method': 'GET', 'path': '/x', 'headers': [(b'x-request-id', b'p-1')]}
    await middleware(scope, receive, send)
    assert sent[0]['headers'] == [(b'content-length', b'123456'), (b'x-request-id', b'p-1')]
    assert sent[1] == {'type': 'http.response.pathsend', 'path': '/somewhere/file'}
    [line] = access_records(caplog)
    assert (line['bytes_sent'], line['status'], line['route']) == (123456, 200, UNMATCHED_ROUTE)


# --- no names, ids or paths in error logs ----------------------------------------------------


def error_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The error records of the test, as both formatters write them."""
    records = [r for r in caplog.records if r.name == 'chat_storage.errors']
    return [
        formatter.format(r) for r in records for formatter in (JsonFormatter(), TextFormatter())
    ]


@pytest.fixture
async def server_errors_client(
    settings: Settings, clock: StepClock
) -> AsyncIterator[httpx.AsyncClient]:
    """user A's client of an app whose unexpected errors answer 500, as under a server."""
    app = create_app(settings, clock=clock)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url='http://testserver', headers={'X-User-Id': USER_A}
        ) as http:
            yield http


async def test_an_unexpected_error_is_logged_with_its_route_template_and_no_path(
    server_errors_client: httpx.AsyncClient,
    data_dir: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = server_errors_client
    await client.put('/v1/workspace')
    chat_id = (await client.post('/v1/chats', json={})).json()['chat_id']

    async def refused(store: BlobStore, *_: object, **__: object) -> None:
        target = store.data_dir / chat_id / 'private-plans.csv'
        raise PermissionError(errno.EACCES, 'Permission denied', str(target))

    monkeypatch.setattr(BlobStore, 'stage', refused)
    caplog.clear()
    response = await client.put(
        f'/v1/chats/{chat_id}/files/by-name/private-plans.csv', content=b'x'
    )
    assert response.status_code == 500
    [json_line, text_line] = error_lines(caplog)
    line = json.loads(json_line)
    assert line['message'] == 'unexpected error on PUT /v1/chats/{chat_id}/files/by-name/{name}'
    assert line['exc_info'].endswith("PermissionError: [Errno 13] Permission denied: '<path>'")
    for leak in ('private-plans', chat_id, str(data_dir)):
        assert leak not in json_line
        assert leak not in text_line


async def test_a_traceback_keeps_no_path_of_a_chained_os_error(
    client: httpx.AsyncClient, chat_id: str, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uploaded = await client.put(
        f'/v1/chats/{chat_id}/files/by-name/private-plans.csv', content=b'x'
    )
    file_id = uploaded.json()['file_id']
    # the record stays and names a blob that is gone: an error the service does not map
    (data_dir / '.blobs' / blob_name(file_id)).unlink()
    caplog.clear()
    response = await client.get(f'/v1/chats/{chat_id}/files/{file_id}/content')
    assert response.status_code == 500
    [json_line, text_line] = error_lines(caplog)
    trace = json.loads(json_line)['exc_info']
    assert "FileNotFoundError: [Errno 2] No such file or directory: '<path>'" in trace
    assert trace.endswith('StoredContentMissingError: stored_content_missing')
    for leak in ('private-plans', chat_id, file_id, str(data_dir)):
        assert leak not in json_line
        assert leak not in text_line


def test_a_traceback_leaves_out_both_paths_of_a_failed_rename(tmp_path: Path) -> None:
    source, target = tmp_path / 'missing-secret', tmp_path / 'other-secret'
    try:
        source.rename(target)
    except OSError:
        record = logging.LogRecord(
            'chat_storage.x', logging.ERROR, __file__, 1, 'failed', (), sys.exc_info()
        )
    for line in (JsonFormatter().format(record), TextFormatter().format(record)):
        assert "[Errno 2] No such file or directory: '<path>' -> '<path>'" in line
        assert 'secret' not in line
        assert str(tmp_path) not in line


def _uvicorn_record(message: str) -> logging.LogRecord:
    return logging.LogRecord('uvicorn.error', logging.ERROR, __file__, 1, message, None, None)


def test_uvicorns_line_for_a_response_cut_short_on_purpose_is_dropped() -> None:
    unfinished = _uvicorn_record('ASGI callable returned without completing response.')
    raised = _uvicorn_record('Exception in ASGI application\n')
    cut_short_filter = CutShortFilter()

    def in_a_request_cut_short() -> tuple[bool, bool]:
        RESPONSE_CUT_SHORT.set('chat_changed_during_export')
        return cut_short_filter.filter(unfinished), cut_short_filter.filter(raised)

    assert contextvars.copy_context().run(in_a_request_cut_short) == (False, True)
    # any other request's unfinished response is still an error worth a line
    assert cut_short_filter.filter(unfinished)
    assert logging_config()['loggers']['uvicorn.error']['filters'] == ['cut_short']
