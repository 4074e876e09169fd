from typing import Protocol

import httpx


class StepClockLike(Protocol):
    def advance(self, seconds: float) -> None: ...


async def test_start_conflict_renew_end(client: httpx.AsyncClient, chat_id: str) -> None:
    url = f'/v1/chats/{chat_id}/sandbox'
    started = await client.put(url, json={'ttl_seconds': 60})
    assert started.status_code == 201
    session = started.json()
    conflict = await client.put(url, json={})
    assert conflict.status_code == 409
    assert conflict.json()['code'] == 'sandbox_already_active'
    renewed = await client.put(
        url, json={'ttl_seconds': 120, 'sandbox_session_id': session['sandbox_session_id']}
    )
    assert renewed.status_code == 200
    assert renewed.json()['sandbox_session_id'] == session['sandbox_session_id']
    assert renewed.json()['expires_at'] > session['expires_at']
    assert (await client.get(url)).json() == renewed.json()
    assert (await client.delete(url)).status_code == 204
    missing = await client.get(url)
    assert missing.status_code == 404
    assert missing.json()['code'] == 'sandbox_session_not_found'


async def test_deletes_refused_while_a_sandbox_is_active(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    await client.put(f'/v1/chats/{chat_id}/sandbox')
    chat = await client.delete(f'/v1/chats/{chat_id}')
    workspace = await client.delete('/v1/workspace')
    assert chat.status_code == workspace.status_code == 409
    assert chat.json()['code'] == workspace.json()['code'] == 'chat_has_active_sandbox'
    assert (await client.get(f'/v1/chats/{chat_id}')).status_code == 200


async def test_expired_session_no_longer_blocks(
    client: httpx.AsyncClient, chat_id: str, clock: StepClockLike
) -> None:
    await client.put(f'/v1/chats/{chat_id}/sandbox', json={'ttl_seconds': 5})
    clock.advance(6)
    assert (await client.get(f'/v1/chats/{chat_id}/sandbox')).status_code == 404
    assert (await client.put(f'/v1/chats/{chat_id}/sandbox', json={})).status_code == 201


async def test_ttl_out_of_range_is_a_validation_error(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    # out of range, or not a JSON integer (`true` was one second, `"60"` sixty)
    for ttl in (0, 86_401, True, '60', 60.5):
        response = await client.put(f'/v1/chats/{chat_id}/sandbox', json={'ttl_seconds': ttl})
        assert response.status_code == 422
        assert response.json()['errors'][0]['loc'][-1] == 'ttl_seconds'
    assert (await client.get(f'/v1/chats/{chat_id}/sandbox')).status_code == 404


async def test_ttl_may_be_a_whole_number_written_with_a_fraction(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    # JSON Schema's `integer`, the type the document publishes, is any number whose
    # fraction is zero
    started = await client.put(f'/v1/chats/{chat_id}/sandbox', json={'ttl_seconds': 933.0})
    assert started.status_code == 201
    session = started.json()
    assert session['expires_at'][11:19] == '12:15:33'
