"""A real `chat-storage serve` process and small helpers to talk to it over HTTP.

Black-box on purpose: nothing here imports the service's packages.
"""

import contextlib
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from uuid import UUID, uuid4

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
HOST = '127.0.0.1'
QUOTA_BYTES = 1_000_000
MAX_FILE_BYTES = 200_000
STARTUP_SECONDS = 30.0  # importing the app takes seconds on a loaded CI machine
SHUTDOWN_SECONDS = 10.0
HTTP_TIMEOUT = httpx.Timeout(30.0)
# the HTTP server `chat-storage serve` runs: its own default (Granian) unless the run sets
# CHAT_STORAGE_SERVER; `make test` runs the e2e tests once more under uvicorn
HTTP_SERVER = os.environ.get('CHAT_STORAGE_SERVER', 'granian')

PROBLEM_MEDIA_TYPE = 'application/problem+json'
PROBLEM_MEMBERS = ('type', 'title', 'status', 'code', 'instance')
# what a problem `detail` must never carry
LEAK_MARKERS = ('Traceback', 'File "', '.py', '/tmp/', str(ROOT), 'SELECT ', 'sqlite')  # noqa: S108
TIMESTAMP = re.compile(r'^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|\+00:00)$')

Json = dict[str, Any]


def server_command() -> list[str]:
    """`chat-storage serve`; `python -m api.cli serve` when the script is not installed."""
    script = ROOT / '.venv' / 'bin' / 'chat-storage'
    if script.exists():
        return [str(script), 'serve']
    return [sys.executable, '-m', 'api.cli', 'serve']


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def server_env(overrides: Mapping[str, str]) -> dict[str, str]:
    """The test process's environment without any `STORAGE_*`, plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('STORAGE_')}
    env.update(overrides)
    return env


class ServerProcess:
    """One `chat-storage serve` on a data directory; restartable on the same directory."""

    def __init__(
        self,
        data_dir: Path,
        log_dir: Path,
        *,
        backend: str = 'sqlite',
        extra_env: Mapping[str, str] | None = None,
        extra_args: Iterable[str] = (),
    ) -> None:
        self.data_dir = data_dir
        self.extra_args = list(extra_args)
        self.log_dir = log_dir
        self.backend = backend
        self.port = free_port()
        self.env = server_env(
            {
                'STORAGE_DATA_DIR': str(data_dir),
                'STORAGE_METADATA_BACKEND': backend,
                'STORAGE_DEFAULT_QUOTA_BYTES': str(QUOTA_BYTES),
                'STORAGE_MAX_FILE_BYTES': str(MAX_FILE_BYTES),
                'STORAGE_HOST': HOST,
                'STORAGE_PORT': str(self.port),
                **(extra_env or {}),
            }
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.stderr_path = log_dir / 'stderr-0.log'

    @property
    def base_url(self) -> str:
        return f'http://{HOST}:{self.port}'

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors='replace') if self.stderr_path.exists() else ''

    def start(self) -> None:
        assert self.process is None, 'already running'
        self.starts += 1
        self.stderr_path = self.log_dir / f'stderr-{self.starts}.log'
        with self.stderr_path.open('wb') as stderr:
            self.process = subprocess.Popen(
                [*server_command(), *self.extra_args],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self._wait_until_healthy()

    def _wait_until_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                pytest.fail(f'server exited with {code} on start-up:\n{self.stderr()}')
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f'{self.base_url}/healthz', timeout=1.0).status_code == 200:
                    return
            time.sleep(0.1)
        self.stop()
        pytest.fail(f'server not healthy within {STARTUP_SECONDS} s:\n{self.stderr()}')

    def stop(self) -> None:
        """SIGTERM, then wait; SIGKILL only if it does not stop in time."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=SHUTDOWN_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


MakeServer = Callable[..., ServerProcess]
"""`make_server(backend='sqlite', extra_env=None)`: a started server of the test's own."""


def user_headers(user_id: UUID) -> dict[str, str]:
    return {'X-User-Id': str(user_id)}


class Caller:
    """One user (a fresh uuid4) talking to the server through a sync httpx client."""

    def __init__(
        self, server: ServerProcess, extra_headers: Mapping[str, str] | None = None
    ) -> None:
        self.server = server
        self.user_id = uuid4()
        self.http = httpx.Client(
            base_url=server.base_url,
            headers={**user_headers(self.user_id), **(extra_headers or {})},
            timeout=HTTP_TIMEOUT,
        )

    def close(self) -> None:
        self.http.close()

    def workspace(self) -> Json:
        response = self.http.put('/v1/workspace')
        assert response.status_code in {200, 201}, response.text
        return dict(response.json())

    def chat(self, title: str | None = 'chat') -> Json:
        response = self.http.post('/v1/chats', json={'title': title})
        assert response.status_code == 201, response.text
        return dict(response.json())

    def workspace_and_chat(self) -> Json:
        self.workspace()
        return self.chat()

    def used_bytes(self) -> int:
        response = self.http.get('/v1/workspace/usage')
        assert response.status_code == 200, response.text
        return int(response.json()['used_bytes'])

    def put_file(
        self, chat_id: str, name: str, content: bytes, content_type: str | None = None
    ) -> httpx.Response:
        headers = {'Content-Type': content_type} if content_type else {}
        return self.http.put(
            f'/v1/chats/{chat_id}/files/by-name/{name}', content=content, headers=headers
        )

    def stored_file(self, chat_id: str, name: str, content: bytes) -> Json:
        response = self.put_file(chat_id, name, content)
        assert response.status_code in {200, 201}, response.text
        return dict(response.json())

    def history(self, chat_id: str) -> bytes:
        response = self.http.get(f'/v1/chats/{chat_id}/history')
        assert response.status_code == 200, response.text
        return response.content

    def content(self, chat_id: str, file_id: str) -> bytes:
        response = self.http.get(f'/v1/chats/{chat_id}/files/{file_id}/content')
        assert response.status_code == 200, response.text
        return response.content

    def files(self, chat_id: str) -> list[Json]:
        response = self.http.get(f'/v1/chats/{chat_id}/files', params={'limit': 200})
        assert response.status_code == 200, response.text
        return list(response.json()['items'])

    def chat_dir(self, chat: Json) -> Path:
        return (
            self.server.data_dir
            / 'workspaces'
            / str(chat['workspace_id'])
            / 'chats'
            / str(chat['chat_id'])
        )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dir_snapshot(path: Path) -> dict[str, str]:
    """Name -> sha256 of every entry of a directory (directories and links marked)."""
    snapshot: dict[str, str] = {}
    for entry in path.iterdir():
        if entry.is_symlink() or not entry.is_file():
            snapshot[entry.name] = 'not-a-regular-file'
        else:
            snapshot[entry.name] = sha256(entry.read_bytes())
    return snapshot


def blob_area(data_dir: Path) -> set[str]:
    """Every file in the blob area (blobs and staging names), relative to it: a refused or
    failed write leaves it as it was."""
    area = data_dir / '.blobs'
    if not area.exists():
        return set()
    marks = {'views-swept-at'}
    return {
        str(path.relative_to(area))
        for path in area.rglob('*')
        if not path.is_dir() and path.name not in marks
    }


def blob_path(data_dir: Path, blob_id: str) -> Path:
    """Where the blob `blob_id` (a file's `file_id`) is kept."""
    hex_id = blob_id.replace('-', '').lower()
    return data_dir / '.blobs' / hex_id[:2] / hex_id


def staging_entries(data_dir: Path) -> set[str]:
    """Staging names left in the blob area (`.blobs/tmp`): none once a write is over."""
    tmp = data_dir / '.blobs' / 'tmp'
    return {entry.name for entry in tmp.iterdir()} if tmp.exists() else set()


def assert_problem(response: httpx.Response, status: int, code: str) -> Json:
    """An RFC 9457 problem of that status and code that leaks nothing."""
    assert response.status_code == status, response.text
    assert response.headers['content-type'] == PROBLEM_MEDIA_TYPE, response.headers
    body = dict(response.json())
    for member in PROBLEM_MEMBERS:
        assert member in body, f'{member} missing from {body}'
    assert body['status'] == status
    assert body['code'] == code, body
    assert isinstance(body['title'], str)
    assert body['title']
    assert isinstance(body['type'], str)
    assert body['type']
    assert body['instance'] == response.request.url.path
    detail = str(body.get('detail', ''))
    for marker in LEAK_MARKERS:
        assert marker not in detail, f'{marker!r} leaked in {detail!r}'
    if code == 'validation_error':
        assert isinstance(body.get('errors'), list)
        assert body['errors']
    return body


def assert_timestamp(value: object) -> datetime:
    """RFC 3339 in UTC with microseconds."""
    assert isinstance(value, str)
    assert TIMESTAMP.match(value), value
    return datetime.fromisoformat(value)


def order_key(item: Json, id_member: str) -> tuple[datetime, str]:
    return (datetime.fromisoformat(str(item['created_at'])), str(item[id_member]))


def multipart_body(
    boundary: str,
    file_content: bytes,
    *,
    filename: bytes | None = b'upload.bin',
    name_field: bytes | None = None,
    content_type: bytes | None = b'application/octet-stream',
) -> bytes:
    """A `multipart/form-data` body built by hand (exact bytes, e.g. a NUL in `name`)."""
    b = boundary.encode()
    parts = []
    if name_field is not None:
        parts.append(
            b'--' + b + b'\r\nContent-Disposition: form-data; name="name"\r\n\r\n' + name_field
        )
    disposition = b'Content-Disposition: form-data; name="file"'
    if filename is not None:
        disposition += b'; filename="' + filename + b'"'
    headers = disposition + b'\r\n'
    if content_type is not None:
        headers += b'Content-Type: ' + content_type + b'\r\n'
    parts.append(b'--' + b + b'\r\n' + headers + b'\r\n' + file_content)
    return b'\r\n'.join(parts) + b'\r\n--' + b + b'--\r\n'


def chunked(data: bytes, size: int = 16_384) -> Iterator[bytes]:
    """A generator body: httpx sends it with `Transfer-Encoding: chunked`, no length."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def ids_of(items: Iterable[Json], member: str) -> list[str]:
    return [str(item[member]) for item in items]
