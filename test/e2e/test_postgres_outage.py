"""PostgreSQL goes away under a running server and comes back: 503s, then recovery."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import cast
from uuid import uuid4

import httpx
import pytest
from e2e_support import ServerProcess
from sqlalchemy.engine import make_url

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


# the simple-query message asyncpg sends to end a unit's transaction
_COMMIT_MESSAGE = b'COMMIT\x00'
# time for the server to commit before its answer is dropped
_COMMIT_SECONDS = 0.5


class TcpProxy:
    """Forwards a local port to PostgreSQL; `cut()` drops every connection and the port.

    After `drop_next_commit()`, the next `COMMIT` reaches the server, and then its
    connection is dropped before the answer comes back: a commit of unknown outcome.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._drop_commit = False
        self.dropped_commits = 0
        self.port = 0

    def drop_next_commit(self) -> None:
        self._drop_commit = True

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, '127.0.0.1', self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await source.read(65536):
                    dropping = sink is up_writer and self._drop_commit and _COMMIT_MESSAGE in data
                    if dropping:
                        self._drop_commit = False
                        # the server commits; its answer is never read
                        cast('asyncio.Transport', up_writer.transport).pause_reading()
                    sink.write(data)
                    await sink.drain()
                    if dropping:
                        await asyncio.sleep(_COMMIT_SECONDS)
                        self.dropped_commits += 1
                        writer.transport.abort()
                        up_writer.transport.abort()
                        return
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
def outage_database(make_postgres_database: Callable[[], str]) -> str:
    return make_postgres_database()


@pytest.fixture
async def proxy(outage_database: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    url = make_url(outage_database)
    tcp = TcpProxy(url.host or '127.0.0.1', url.port or 5432)
    await tcp.start()
    yield tcp, url.set(port=tcp.port).render_as_string(hide_password=False)
    await tcp.cut()


def _server_behind(dsn: str, tmp_path: Path) -> ServerProcess:
    """A server on PostgreSQL at `dsn` (the proxy), quick to notice it gone."""
    (tmp_path / 'logs').mkdir()
    env = {
        'STORAGE_POSTGRES_DSN': dsn,
        'STORAGE_POSTGRES_CONNECT_TIMEOUT_SECONDS': '1',
        'STORAGE_POSTGRES_STATEMENT_TIMEOUT_SECONDS': '5',
    }
    return ServerProcess(tmp_path / 'data', tmp_path / 'logs', backend='postgres', extra_env=env)


async def _wait_for_status(client: httpx.AsyncClient, path: str, status: int) -> int:
    last = 0
    for _ in range(100):
        last = (await client.get(path)).status_code
        if last == status:
            return last
        await asyncio.sleep(0.1)
    return last


async def test_outage_gives_503_and_the_service_recovers_alone(
    proxy: tuple[TcpProxy, str], tmp_path: Path
) -> None:
    tcp, dsn = proxy
    server = _server_behind(dsn, tmp_path)
    # the server starts in a thread: this loop must keep serving the proxy meanwhile
    await asyncio.to_thread(server.start)
    try:
        headers = {'X-User-Id': str(uuid4())}
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=20) as http:
            assert (await http.put('/v1/workspace')).status_code == 201
            assert (await http.get('/readyz')).status_code == 200

            await tcp.cut()
            assert await _wait_for_status(http, '/readyz', 503) == 503
            during = await http.get('/v1/workspace')
            assert during.status_code == 503
            assert during.headers['content-type'] == 'application/problem+json'
            assert during.json()['code'] == 'service_unavailable'
            assert 'postgres' not in during.text.lower()
            assert (await http.get('/healthz')).status_code == 200

            await tcp.start()
            assert await _wait_for_status(http, '/readyz', 200) == 200
            after = await http.get('/v1/workspace')
            assert after.status_code == 200
            assert after.json()['user_id'] == headers['X-User-Id']
    finally:
        await asyncio.to_thread(server.stop)


async def test_a_commit_of_unknown_outcome_leaves_what_may_have_committed(
    proxy: tuple[TcpProxy, str], tmp_path: Path
) -> None:
    """The connection drops after `COMMIT` reached the server, which committed: the
    client gets `503`, and the files are left as the committed rows say, not put back."""
    tcp, dsn = proxy
    server = _server_behind(dsn, tmp_path)
    await asyncio.to_thread(server.start)
    try:
        headers = {'X-User-Id': str(uuid4())}
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=20) as http:
            assert (await http.put('/v1/workspace')).status_code == 201
            chat = (await http.post('/v1/chats', json={'title': 'doubt'})).json()['chat_id']
            history = f'/v1/chats/{chat}/history'
            markdown = {'Content-Type': 'text/markdown'}
            assert (await http.post(history, content=b'one\n', headers=markdown)).status_code == 200

            tcp.drop_next_commit()
            append = await http.post(history, content=b'two\n', headers=markdown)
            assert tcp.dropped_commits == 1
            assert append.status_code == 503
            assert append.json()['code'] == 'service_unavailable'
            # the rows committed: the history holds the block, and appends go on after it
            after = await http.get(history)
            assert after.status_code == 200
            assert after.content == b'one\ntwo\n'
            assert (
                await http.post(history, content=b'three\n', headers=markdown)
            ).status_code == 200

            tcp.drop_next_commit()
            put = await http.put(history, content=b'replaced\n', headers=markdown)
            assert tcp.dropped_commits == 2
            assert put.status_code == 503
            replaced = await http.get(history)
            assert replaced.status_code == 200
            assert replaced.content == b'replaced\n'
            assert (await http.get(f'/v1/chats/{chat}')).json()['history_bytes'] == len(
                b'replaced\n'
            )
            assert (
                await http.post(history, content=b'more\n', headers=markdown)
            ).status_code == 200
            assert (await http.get(history)).content == b'replaced\nmore\n'
    finally:
        await asyncio.to_thread(server.stop)
