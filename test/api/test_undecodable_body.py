"""A JSON body that cannot even be decoded is a 422 validation_error, as the contract says.

Found by schemathesis: FastAPI answers bytes that are not UTF-8 with its own `400`, which
no route documents.
"""

import httpx

JSON = {'Content-Type': 'application/json'}


async def test_undecodable_json_body_is_a_validation_problem(client: httpx.AsyncClient) -> None:
    assert (await client.put('/v1/workspace')).status_code == 201

    response = await client.post('/v1/chats', content=b'\x8f\xff{', headers=JSON)

    assert response.status_code == 422
    assert response.headers['content-type'] == 'application/problem+json'
    body = response.json()
    assert body['code'] == 'validation_error'
    assert body['errors'] == [
        {'loc': ['body'], 'msg': 'The body is not valid JSON', 'type': 'json_invalid'}
    ]
    listed = (await client.get('/v1/chats')).json()
    assert listed['items'] == []


async def test_undecodable_body_of_a_json_route_with_a_path(client: httpx.AsyncClient) -> None:
    assert (await client.put('/v1/workspace')).status_code == 201
    chat_id = (await client.post('/v1/chats', json={'title': 'kept'})).json()['chat_id']

    response = await client.patch(f'/v1/chats/{chat_id}', content=b'\xc3\x28', headers=JSON)

    assert response.status_code == 422
    assert response.json()['code'] == 'validation_error'
    assert (await client.get(f'/v1/chats/{chat_id}')).json()['title'] == 'kept'
