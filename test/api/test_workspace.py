import httpx


async def test_put_workspace_creates_then_is_idempotent(client: httpx.AsyncClient) -> None:
    first = await client.put('/v1/workspace')
    second = await client.put('/v1/workspace')
    assert first.status_code == 201
    assert second.status_code == 200
    assert first.json() == second.json()
    assert first.json()['quota_bytes'] == 10_000
    assert first.json()['used_bytes'] == 0


async def test_get_workspace_before_creation_is_a_problem(client: httpx.AsyncClient) -> None:
    response = await client.get('/v1/workspace')
    assert response.status_code == 404
    assert response.headers['content-type'] == 'application/problem+json'
    body = response.json()
    assert body['code'] == 'workspace_not_found'
    assert body['type'] == '/problems/workspace-not-found'
    assert body['instance'] == '/v1/workspace'


async def test_missing_user_id_is_unauthenticated(client: httpx.AsyncClient) -> None:
    response = await client.get('/v1/workspace', headers={'X-User-Id': ''})
    assert response.status_code == 401
    assert response.json()['code'] == 'unauthenticated'


async def test_user_id_that_is_not_a_uuid_is_unauthenticated(client: httpx.AsyncClient) -> None:
    response = await client.get('/v1/workspace', headers={'X-User-Id': 'alice'})
    assert response.status_code == 401
    assert response.json()['code'] == 'unauthenticated'


async def test_usage_counts_history_and_files(client: httpx.AsyncClient, chat_id: str) -> None:
    await client.put(f'/v1/chats/{chat_id}/history', content=b'hello')
    await client.put(f'/v1/chats/{chat_id}/files/by-name/a.txt', content=b'123')
    usage = (await client.get('/v1/workspace/usage')).json()
    assert usage['used_bytes'] == 8
    assert usage['quota_bytes'] == 10_000


async def test_delete_workspace_removes_everything(client: httpx.AsyncClient, chat_id: str) -> None:
    await client.put(f'/v1/chats/{chat_id}/files/by-name/a.txt', content=b'123')
    assert (await client.delete('/v1/workspace')).status_code == 204
    assert (await client.get('/v1/workspace')).status_code == 404
    recreated = await client.put('/v1/workspace')
    assert recreated.status_code == 201
    assert recreated.json()['used_bytes'] == 0
    assert (await client.get(f'/v1/chats/{chat_id}')).status_code == 404


async def test_workspaces_are_per_user(
    client: httpx.AsyncClient, other_user: dict[str, str]
) -> None:
    mine = (await client.put('/v1/workspace')).json()
    theirs = (await client.put('/v1/workspace', headers=other_user)).json()
    assert mine['workspace_id'] != theirs['workspace_id']
    assert theirs['user_id'] == other_user['X-User-Id']
