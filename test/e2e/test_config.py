"""Configuration of the real process: the gateway token, and refused values at start-up."""

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e_support import (
    HOST,
    HTTP_TIMEOUT,
    ROOT,
    STARTUP_SECONDS,
    ServerProcess,
    assert_problem,
    free_port,
    server_command,
    server_env,
)

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
}


@pytest.mark.parametrize(('variable', 'value'), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_a_bad_value_stops_start_up_with_one_line_naming_the_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    env = server_env(
        {
            'STORAGE_DATA_DIR': str(tmp_path / 'data'),
            'STORAGE_HOST': HOST,
            'STORAGE_PORT': str(free_port()),
            variable: value,
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
        pytest.fail(f'{variable}={value!r} did not stop start-up')

    stderr = completed.stderr.decode(errors='replace')
    lines = stderr.strip().splitlines()
    assert completed.returncode != 0
    assert len(lines) == 1, stderr
    expected = 'STORAGE_POSTGRES_DSN' if value == 'postgres' else variable
    assert expected in lines[0]
    assert 'Traceback' not in stderr


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
