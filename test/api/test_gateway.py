from collections.abc import AsyncIterator, Callable
from uuid import uuid4

import httpx
import pytest
from asgi_lifespan import LifespanManager

from api.app import create_app
from api.settings import Settings

TOKEN = 'gateway-s3cret'


@pytest.fixture
async def guarded(make_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(gateway_token=TOKEN))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url='http://testserver') as http:
            yield http


USER = {'X-User-Id': 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa'}


async def test_v1_needs_the_gateway_token(guarded: httpx.AsyncClient) -> None:
    for headers in (
        USER,
        {**USER, 'Authorization': 'Bearer wrong'},
        {**USER, 'Authorization': TOKEN},
        {**USER, 'Authorization': f'Basic {TOKEN}'},
        {**USER, 'Authorization': f'Bearer {TOKEN}x'},
        {**USER, 'Authorization': f'Bearer{TOKEN}'},
    ):
        response = await guarded.put('/v1/workspace', headers=headers)
        assert response.status_code == 401
        assert response.json()['code'] == 'unauthenticated'


async def test_the_right_token_is_accepted(guarded: httpx.AsyncClient) -> None:
    # a user of its own: the PostgreSQL database is shared by the session
    headers = {'X-User-Id': str(uuid4()), 'Authorization': f'Bearer {TOKEN}'}
    assert (await guarded.put('/v1/workspace', headers=headers)).status_code == 201


async def test_the_scheme_is_case_insensitive(guarded: httpx.AsyncClient) -> None:
    for scheme in ('bearer', 'BEARER'):
        headers = {'X-User-Id': str(uuid4()), 'Authorization': f'{scheme} {TOKEN}'}
        assert (await guarded.put('/v1/workspace', headers=headers)).status_code == 201


async def test_two_authorization_headers_are_refused(guarded: httpx.AsyncClient) -> None:
    """As two `X-User-Id` are: whichever came first, one of them is not the gateway's."""
    right, wrong = f'Bearer {TOKEN}', 'Bearer wrong'
    for first, second in ((right, wrong), (wrong, right), (right, right)):
        headers = httpx.Headers(
            [('X-User-Id', str(uuid4())), ('Authorization', first), ('Authorization', second)]
        )
        response = await guarded.put('/v1/workspace', headers=headers)
        assert (response.status_code, response.json()['code']) == (401, 'unauthenticated')


async def test_x_user_id_is_one_uuid_in_its_usual_form(client: httpx.AsyncClient) -> None:
    """Other spellings of one UUID would be the same user under another name; two headers
    (a gateway that appends its own to the client's) would let the first one win."""
    user = uuid4()
    for value in (f'{{{user}}}', f'urn:uuid:{user}', user.hex, f' {user}x'):
        response = await client.put('/v1/workspace', headers={'X-User-Id': value})
        assert (response.status_code, response.json()['code']) == (401, 'unauthenticated')
    two = httpx.Headers([('X-User-Id', str(user)), ('X-User-Id', str(uuid4()))])
    response = await client.put('/v1/workspace', headers=two)
    assert (response.status_code, response.json()['code']) == (401, 'unauthenticated')
    upper = await client.put('/v1/workspace', headers={'X-User-Id': str(user).upper()})
    assert upper.status_code == 201
    assert (await client.put('/v1/workspace', headers={'X-User-Id': str(user)})).status_code == 200


async def test_health_needs_no_token(guarded: httpx.AsyncClient) -> None:
    assert (await guarded.get('/healthz')).status_code == 200
    assert (await guarded.get('/readyz')).status_code == 200


def test_bad_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('STORAGE_PORT', 'eighty')
    with pytest.raises(SystemExit) as stopped:
        create_app()
    assert 'STORAGE_PORT' in str(stopped.value)
    assert '\n' not in str(stopped.value)


def test_postgres_without_dsn_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('STORAGE_METADATA_BACKEND', 'postgres')
    monkeypatch.delenv('STORAGE_POSTGRES_DSN', raising=False)
    with pytest.raises(SystemExit) as stopped:
        create_app()
    assert 'STORAGE_POSTGRES_DSN' in str(stopped.value)


async def test_identity_comes_first_under_a_root_path(
    make_settings: Callable[..., Settings],
) -> None:
    """Served under a root path (or mounted), `/storage/v1/...` is checked like `/v1/...`:
    two `X-User-Id` headers are refused, and before the body is parsed."""
    app = create_app(make_settings())
    user = str(uuid4())
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, root_path='/storage')
        async with httpx.AsyncClient(transport=transport, base_url='http://testserver') as http:
            two = httpx.Headers([('X-User-Id', user), ('X-User-Id', str(uuid4()))])
            refused = [
                await http.put('/storage/v1/workspace', headers=two),
                await http.post('/storage/v1/chats', headers=two, content=b'{"title": '),
                await http.put('/storage/v1/workspace'),
            ]
            assert [(r.status_code, r.json()['code']) for r in refused] == [
                (401, 'unauthenticated')
            ] * 3
            created = await http.put('/storage/v1/workspace', headers={'X-User-Id': user})
            assert created.status_code == 201
            # the JSON routes' limits hold there too (api/body.py picks them by path)
            form = await http.post(
                '/storage/v1/chats',
                headers={'X-User-Id': user, 'Content-Type': 'text/plain'},
                content=b'{}',
            )
            assert (form.status_code, form.json()['code']) == (415, 'unsupported_media_type')
        # a root path that the server does not put in the path (Granian's prefix)
        transport = httpx.ASGITransport(app=manager.app, root_path='/')
        async with httpx.AsyncClient(transport=transport, base_url='http://testserver') as http:
            anonymous = await http.post('/v1/chats', content=b'{"title": ')
            assert (anonymous.status_code, anonymous.json()['code']) == (401, 'unauthenticated')
