"""PostgreSQL goes away under a running server and comes back: 503s, then recovery."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from e2e_support import ServerProcess
from sqlalchemy.engine import make_url

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


class TcpProxy:
    """Forwards a local port to PostgreSQL; `cut()` drops every connection and the port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

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
                    sink.write(data)
                    await sink.drain()
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
    (tmp_path / 'logs').mkdir()
    env = {
        'STORAGE_POSTGRES_DSN': dsn,
        'STORAGE_POSTGRES_CONNECT_TIMEOUT_SECONDS': '1',
        'STORAGE_POSTGRES_STATEMENT_TIMEOUT_SECONDS': '5',
    }
    server = ServerProcess(tmp_path / 'data', tmp_path / 'logs', backend='postgres', extra_env=env)
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
