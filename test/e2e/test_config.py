"""Configuration of the real process: the gateway token, and refused values at start-up."""

import asyncio
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from e2e_support import (
    HOST,
    HTTP_TIMEOUT,
    ROOT,
    STARTUP_SECONDS,
    Caller,
    MakeServer,
    ServerProcess,
    assert_problem,
    free_port,
    server_command,
    server_env,
)
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.e2e

TOKEN = 'e2e-gateway-token-7Qx'


@pytest.fixture(scope='module')
def gated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server with a gateway token for the module's tests."""
    root = tmp_path_factory.mktemp('gated')
    with ServerProcess(root / 'data', root, extra_env={'STORAGE_GATEWAY_TOKEN': TOKEN}) as process:
        yield process


@pytest.fixture
def http(gated: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=gated.base_url,
        headers={'X-User-Id': str(uuid.uuid4())},
        timeout=HTTP_TIMEOUT,
    ) as client:
        yield client


@pytest.mark.parametrize(
    'authorization',
    [
        None,
        '',
        'Bearer',
        'Bearer wrong-token',
        f'Bearer {TOKEN}x',
        f'Bearer {TOKEN[:-1]}',
        f'Basic {TOKEN}',
        TOKEN,
    ],
)
def test_v1_without_the_right_gateway_token_is_401(
    http: httpx.Client, authorization: str | None
) -> None:
    headers = {} if authorization is None else {'Authorization': authorization}

    response = http.put('/v1/workspace', headers=headers)

    body = assert_problem(response, 401, 'unauthenticated')
    assert TOKEN not in response.text
    assert TOKEN not in str(body)


def test_v1_with_the_right_gateway_token_succeeds(http: httpx.Client) -> None:
    auth = {'Authorization': f'Bearer {TOKEN}'}

    created = http.put('/v1/workspace', headers=auth)
    chat = http.post('/v1/chats', headers=auth, json={'title': 'gated'})

    assert created.status_code == 201
    assert chat.status_code == 201
    assert http.get('/v1/workspace', headers=auth).status_code == 200


def test_refused_token_writes_nothing(http: httpx.Client) -> None:
    auth = {'Authorization': f'Bearer {TOKEN}'}

    refused = http.put('/v1/workspace', headers={'Authorization': 'Bearer wrong'})

    assert_problem(refused, 401, 'unauthenticated')
    assert_problem(http.get('/v1/workspace', headers=auth), 404, 'workspace_not_found')


def test_right_token_without_a_user_id_is_still_401(http: httpx.Client) -> None:
    response = http.get(
        '/v1/workspace', headers={'Authorization': f'Bearer {TOKEN}', 'X-User-Id': ''}
    )

    assert_problem(response, 401, 'unauthenticated')


@pytest.mark.parametrize('path', ['/healthz', '/readyz'])
def test_health_endpoints_need_no_token(gated: ServerProcess, path: str) -> None:
    response = httpx.get(f'{gated.base_url}{path}', timeout=HTTP_TIMEOUT)

    assert response.status_code == 200


def test_readyz_is_200_without_a_token_on_the_shared_server(server: ServerProcess) -> None:
    response = httpx.get(f'{server.base_url}/readyz', timeout=HTTP_TIMEOUT)

    assert response.status_code == 200


# --- bad configuration stops start-up with one line naming the variable ---------------------


BAD_VALUES = {
    'port not a number': ('STORAGE_PORT', 'abc'),
    'port out of range': ('STORAGE_PORT', '70000'),
    'unknown backend': ('STORAGE_METADATA_BACKEND', 'oracle'),
    'negative quota': ('STORAGE_DEFAULT_QUOTA_BYTES', '-1'),
    'quota not a number': ('STORAGE_DEFAULT_QUOTA_BYTES', 'lots'),
    'max file bytes zero': ('STORAGE_MAX_FILE_BYTES', '0'),
    'postgres without dsn': ('STORAGE_METADATA_BACKEND', 'postgres'),
    # no caller could send an empty token; taking it for unset would open the service
    'empty gateway token': ('STORAGE_GATEWAY_TOKEN', ''),
    'gateway token with a space at its end': ('STORAGE_GATEWAY_TOKEN', 'secret '),
    'data dir that cannot be made': ('STORAGE_DATA_DIR', '/proc/chat-storage-data'),
    'data dir that is a file': ('STORAGE_DATA_DIR', '/dev/null'),
    # empty must not mean Path('.'): the data written wherever the service started
    'empty data dir': ('STORAGE_DATA_DIR', ''),
    'empty sqlite path': ('STORAGE_SQLITE_PATH', ''),
    # Granian binds IP literals only: a host name must be one line, not a traceback
    'host name instead of an address': ('STORAGE_HOST', 'localhost'),
    'host that is no address': ('STORAGE_HOST', 'not an address'),
    'host that is no address of this machine': ('STORAGE_HOST', '192.0.2.1'),
}


def refused_start(tmp_path: Path, overrides: dict[str, str]) -> tuple[int, list[str], str]:
    """`chat-storage serve` with `overrides` that must stop it: exit code, stderr lines."""
    env = server_env(
        {
            'STORAGE_DATA_DIR': str(tmp_path / 'data'),
            'STORAGE_HOST': HOST,
            'STORAGE_PORT': str(free_port()),
            **overrides,
        }
    )
    try:
        completed = subprocess.run(
            server_command(),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=STARTUP_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f'{overrides} did not stop start-up')
    stderr = completed.stderr.decode(errors='replace')
    return completed.returncode, stderr.strip().splitlines(), stderr


@pytest.mark.parametrize(('variable', 'value'), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_a_bad_value_stops_start_up_with_one_line_naming_the_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    code, lines, stderr = refused_start(tmp_path, {variable: value})

    assert code != 0
    assert len(lines) == 1, stderr
    expected = 'STORAGE_POSTGRES_DSN' if value == 'postgres' else variable
    assert expected in lines[0]
    assert 'Traceback' not in stderr


def test_an_empty_data_dir_writes_nothing_where_the_service_starts(tmp_path: Path) -> None:
    before = sorted(path.name for path in ROOT.iterdir())

    code, lines, stderr = refused_start(tmp_path, {'STORAGE_DATA_DIR': ''})

    assert code == 2
    expected = 'chat-storage: invalid configuration: STORAGE_DATA_DIR: must not be empty'
    assert lines == [f'{expected} (unset it for the default)'], stderr
    assert sorted(path.name for path in ROOT.iterdir()) == before


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another socket of this machine listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind((HOST, 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_a_port_in_use_stops_start_up_with_one_line(tmp_path: Path, taken_port: int) -> None:
    # one line, not Granian's 71 lines of Python and Rust traceback
    code, lines, stderr = refused_start(tmp_path, {'STORAGE_PORT': str(taken_port)})

    assert code == 2
    refused = f'cannot listen on {HOST}:{taken_port}: Address already in use'
    assert lines == [f'chat-storage: invalid configuration: STORAGE_PORT: {refused}'], stderr


def test_a_port_taken_after_the_check_is_one_line_from_granian(taken_port: int) -> None:
    """The port taken between the check and Granian's own bind (the check skipped)."""
    script = (
        'from api.server import ServerOptions, run; '
        f"run('granian', ServerOptions(app='api.app:create_app', host='{HOST}', "
        f"port={taken_port}, workers=1, log_level='info', log_config={{'version': 1}}))"
    )

    completed = subprocess.run(
        [sys.executable, '-c', script],
        cwd=ROOT,
        env=server_env({}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=STARTUP_SECONDS,
        check=False,
    )

    stderr = completed.stderr.decode(errors='replace')
    assert completed.returncode != 0
    assert 'Traceback' not in stderr
    assert stderr.strip().splitlines()[-1] == (
        f'chat-storage: cannot listen on {HOST}:{taken_port}: Address already in use (os error 98)'
    ), stderr


def test_tracing_without_its_packages_stops_start_up_before_the_server_listens(
    tmp_path: Path,
) -> None:
    # the OTLP exporter made unimportable whether or not it is installed here
    shadow = tmp_path / 'shadow' / 'opentelemetry' / 'exporter'
    shadow.mkdir(parents=True)
    (shadow / '__init__.py').write_text("raise ImportError('hidden by the test')\n")

    code, lines, stderr = refused_start(
        tmp_path, {'STORAGE_TRACING': 'otel', 'PYTHONPATH': str(tmp_path / 'shadow')}
    )

    assert code == 2
    needs = (
        "otel needs opentelemetry-sdk and its OTLP exporter: pip install 'chat-storage[tracing]'"
    )
    assert lines == [f'chat-storage: invalid configuration: STORAGE_TRACING: {needs}'], stderr


def test_a_secret_value_is_not_echoed_when_refused(tmp_path: Path) -> None:
    secret = 'postgresql://user:hunter2-secret@db/chat'
    env = server_env(
        {
            'STORAGE_DATA_DIR': str(tmp_path / 'data'),
            'STORAGE_PORT': 'not-a-port',
            'STORAGE_METADATA_BACKEND': 'postgres',
            'STORAGE_POSTGRES_DSN': secret,
        }
    )

    completed = subprocess.run(
        server_command(),
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=STARTUP_SECONDS,
        check=False,
    )

    assert completed.returncode != 0
    assert b'hunter2' not in completed.stderr
    assert b'STORAGE_PORT' in completed.stderr


# --- the metadata store, checked before the server listens ----------------------------------

POSTGRES = {'STORAGE_METADATA_BACKEND': 'postgres'}
BAD_STORES = {
    # each one line before any worker starts, not every worker's traceback
    'dsn of another database': {**POSTGRES, 'STORAGE_POSTGRES_DSN': 'mysql://u:hunter2@h/db'},
    'dsn with an unknown option': {
        **POSTGRES,
        'STORAGE_POSTGRES_DSN': 'postgresql://u:hunter2@127.0.0.1/db?frobnicate=1',
    },
    'dsn with an unknown sslmode': {
        **POSTGRES,
        'STORAGE_POSTGRES_DSN': 'postgresql://u:hunter2@127.0.0.1/db?sslmode=maybe',
    },
    'postgres refusing connections': {
        **POSTGRES,
        'STORAGE_POSTGRES_DSN': 'postgresql://u:hunter2@127.0.0.1:1/db',
    },
    'postgres host that does not resolve': {
        **POSTGRES,
        'STORAGE_POSTGRES_DSN': 'postgresql://u:hunter2@no-such-host.invalid/db',
    },
    'sqlite file that cannot be made': {'STORAGE_SQLITE_PATH': '/proc/chat-storage.db'},
    'sqlite file that is a directory': {'STORAGE_SQLITE_PATH': '/'},
}


@pytest.mark.parametrize('overrides', BAD_STORES.values(), ids=BAD_STORES.keys())
def test_a_store_that_cannot_be_used_stops_start_up_with_one_line(
    tmp_path: Path, overrides: dict[str, str]
) -> None:
    code, lines, stderr = refused_start(tmp_path, overrides)

    assert code != 0
    assert len(lines) == 1, stderr
    variable = next(name for name in overrides if name != 'STORAGE_METADATA_BACKEND')
    assert variable in lines[0]
    assert 'hunter2' not in stderr
    assert 'Listening' not in stderr


def test_an_unreachable_postgres_is_named_by_address_and_cause(tmp_path: Path) -> None:
    dsn = 'postgresql://chat:hunter2@127.0.0.1:1/chat'

    code, lines, stderr = refused_start(tmp_path, {**POSTGRES, 'STORAGE_POSTGRES_DSN': dsn})

    assert code == 1
    expected = (
        'chat-storage: cannot start: STORAGE_POSTGRES_DSN: PostgreSQL at 127.0.0.1:1 '
        'cannot be used: connection refused'
    )
    assert lines == [expected], stderr


@pytest.mark.postgres
@pytest.mark.parametrize('database', ['no-such-database', 'no-such-role'])
def test_a_postgres_refusing_the_log_in_stops_start_up_with_its_reason(
    tmp_path: Path, postgres_server_dsn: str, database: str
) -> None:
    url = make_url(postgres_server_dsn)
    if database == 'no-such-role':
        url = url.set(username='chat_storage_no_such_role')
    else:
        url = url.set(database='chat_storage_no_such_database')
    dsn = url.render_as_string(hide_password=False)

    code, lines, stderr = refused_start(tmp_path, {**POSTGRES, 'STORAGE_POSTGRES_DSN': dsn})

    assert code == 1
    assert len(lines) == 1, stderr
    assert 'STORAGE_POSTGRES_DSN' in lines[0]
    assert 'does not exist' in lines[0]


@pytest.mark.postgres
def test_sslmode_require_on_a_server_without_tls_stops_start_up_with_one_line(
    tmp_path: Path, make_postgres_database: Callable[[], str]
) -> None:
    dsn = make_postgres_database() + '?sslmode=require'

    code, lines, stderr = refused_start(tmp_path, {**POSTGRES, 'STORAGE_POSTGRES_DSN': dsn})

    assert code == 1
    assert len(lines) == 1, stderr
    assert 'STORAGE_POSTGRES_DSN' in lines[0]
    assert 'SSL' in lines[0]


async def _application_names(dsn: str) -> set[str]:
    url = make_url(dsn)
    connection = await asyncpg.connect(
        url.set(database='postgres').render_as_string(hide_password=False), timeout=5
    )
    try:
        rows = await connection.fetch(
            'SELECT application_name FROM pg_stat_activity WHERE datname = $1', url.database
        )
    finally:
        await connection.close()
    return {str(row['application_name']) for row in rows}


@pytest.mark.postgres
@pytest.mark.parametrize('sslmode', ['disable', 'prefer'])
def test_libpq_options_in_the_dsn_are_understood(
    make_server: MakeServer, make_postgres_database: Callable[[], str], sslmode: str
) -> None:
    database = make_postgres_database()
    options = f'?sslmode={sslmode}&connect_timeout=7&application_name=chat-e2e-{sslmode}'

    server = make_server('postgres', {'STORAGE_POSTGRES_DSN': database + options})
    caller = Caller(server)
    try:
        caller.workspace_and_chat()
        listed = caller.http.get('/v1/chats')  # a one-statement read: its own connections
    finally:
        caller.close()

    assert listed.status_code == 200
    assert httpx.get(f'{server.base_url}/readyz', timeout=HTTP_TIMEOUT).status_code == 200
    assert asyncio.run(_application_names(database)) == {f'chat-e2e-{sslmode}'}
