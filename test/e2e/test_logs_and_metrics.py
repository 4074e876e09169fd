"""The real server's log output and `/metrics`: one JSON access line a request, nothing private."""

import itertools
import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from e2e_support import HTTP_SERVER, Caller, ServerProcess
from prometheus_client.parser import text_string_to_metric_families

GATEWAY_TOKEN = 'gateway-token-e2e-0b7c'
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
UPLOAD_ROUTE = '/v1/chats/{chat_id}/files/by-name/{name}'
CONTENT_ROUTE = '/v1/chats/{chat_id}/files/{file_id}/content'
# the logger of each server's own start-up lines
SERVER_LOGGERS = {'granian': '_granian', 'uvicorn': 'uvicorn.error'}


def metric_values(server: ServerProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = httpx.get(f'{server.base_url}/metrics', timeout=10)  # no caller id, no token
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line the server wrote to stderr, each of which must be one JSON object."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, 'the server logged nothing'
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(entry, dict) for entry in parsed)
    return parsed


@dataclass(frozen=True)
class Run:
    """What one scripted session against a real server left behind."""

    sent_ids: list[str]
    metrics: dict[tuple[str, frozenset[tuple[str, str]]], float]
    log_text: str
    private: tuple[str, ...]
    content_bytes: int

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope='module')
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Upload, download, a 404 and a 413 with our own request ids; then scrape and stop."""
    root = tmp_path_factory.mktemp('observed')
    server = ServerProcess(root / 'data', root, extra_env={'STORAGE_GATEWAY_TOKEN': GATEWAY_TOKEN})
    server.start()
    caller = Caller(server, extra_headers={'Authorization': f'Bearer {GATEWAY_TOKEN}'})
    numbers = itertools.count(1)
    sent_ids: list[str] = []

    def tag(request: httpx.Request) -> None:
        sent_ids.append(f'e2e-obs-{next(numbers):04d}')
        request.headers['X-Request-Id'] = sent_ids[-1]

    caller.http.event_hooks['request'] = [tag]
    title, name = 'Merger talks (private)', 'confidential-plan.csv'
    # over 64 KiB: Granian sends it by `http.response.pathsend`, which counts as well
    content = b'CONFIDENTIAL,figures\n' * 5000
    try:
        caller.workspace()
        chat_id = caller.http.post('/v1/chats', json={'title': title}).json()['chat_id']
        file_id = caller.stored_file(chat_id, name, content)['file_id']
        assert caller.content(chat_id, file_id) == content
        missing = caller.http.get('/v1/nowhere', params={'password': 'hunter2-query'})
        assert missing.status_code == 404
        assert missing.headers['x-request-id'] == sent_ids[-1]
        # last: a refusal before the body is read may end the connection
        refused = caller.put_file(chat_id, 'huge.bin', b'x' * 200_001)
        assert refused.status_code == 413
        assert refused.headers['x-request-id'] == sent_ids[-1]
        metrics = metric_values(server)
    finally:
        caller.close()
        server.stop()  # the log is complete once the process has exited
    private = (str(caller.user_id), GATEWAY_TOKEN, title, name, 'CONFIDENTIAL', chat_id, file_id)
    return Run(
        sent_ids=sent_ids,
        metrics=metrics,
        log_text=server.stderr(),
        private=(*private, 'hunter2-query', 'nowhere'),
        content_bytes=len(content),
    )


def test_metrics_count_requests_bytes_and_refusals(run: Run) -> None:
    requests = 'chat_storage_http_requests_total'
    assert run.metric(requests, method='PUT', route=UPLOAD_ROUTE, status='201') == 1
    assert run.metric(requests, method='PUT', route=UPLOAD_ROUTE, status='413') == 1
    assert run.metric(requests, method='GET', route=CONTENT_ROUTE, status='200') == 1
    assert run.metric(requests, method='GET', route='<unmatched>', status='404') == 1
    sent = run.metric('chat_storage_http_sent_bytes_total', method='GET', route=CONTENT_ROUTE)
    assert sent == run.content_bytes
    received = run.metric(
        'chat_storage_http_received_bytes_total', method='PUT', route=UPLOAD_ROUTE
    )
    assert received >= run.content_bytes
    assert run.metric('chat_storage_problems_total', status='413', code='file_too_large') == 1
    assert run.metric('chat_storage_active_sandbox_sessions') == 0


def test_one_json_access_line_a_request(run: Run) -> None:
    entries = json_lines(run.log_text)
    access = [entry for entry in entries if entry['logger'] == 'chat_storage.access']
    by_id = {entry['request_id']: entry for entry in access}
    assert len(by_id) == len(access), 'a request id logged twice'
    assert set(run.sent_ids) <= set(by_id)  # one line for each of ours (and /healthz polls)
    for entry in access:
        assert set(entry) - {'problem_code'} == ACCESS_FIELDS
    upload = by_id[run.sent_ids[2]]
    assert (upload['method'], upload['route'], upload['status']) == ('PUT', UPLOAD_ROUTE, 201)
    assert upload['bytes_received'] == run.content_bytes
    download = by_id[run.sent_ids[3]]
    assert (download['route'], download['bytes_sent']) == (CONTENT_ROUTE, run.content_bytes)
    assert by_id[run.sent_ids[4]]['route'] == '<unmatched>'
    assert by_id[run.sent_ids[5]]['problem_code'] == 'file_too_large'
    # the server's own lines are JSON too, and its access log gives way to ours
    loggers = {entry['logger'] for entry in entries}
    assert SERVER_LOGGERS[HTTP_SERVER] in loggers  # and so the server this run meant
    assert not loggers & {'granian.access', 'uvicorn.access'}


def test_the_log_holds_no_user_content_ids_or_secrets(run: Run) -> None:
    for leak in run.private:
        assert leak not in run.log_text
