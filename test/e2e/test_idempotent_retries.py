"""`Idempotency-Key` on a real server: kept across a restart.

Concurrent retries across two replicas on PostgreSQL are in test_replicas.py.
"""

import httpx
import pytest
from e2e_support import Caller, MakeServer, staging_entries

pytestmark = pytest.mark.e2e

KEY = {'Idempotency-Key': 'retry-after-restart'}


def assert_same_answer(first: httpx.Response, again: httpx.Response) -> None:
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert again.headers['location'] == first.headers['location']


def test_a_retry_after_a_restart_gets_the_first_answer(make_server: MakeServer) -> None:
    server = make_server('sqlite')
    caller = Caller(server)
    try:
        caller.workspace()
        chat = caller.http.post('/v1/chats', json={'title': 'kept'}, headers=KEY)
        assert chat.status_code == 201, chat.text
        chat_id = chat.json()['chat_id']
        upload_key = {'Idempotency-Key': 'upload-1'}
        url = f'/v1/chats/{chat_id}/files/by-name/data.bin'
        upload = caller.http.put(url, content=b'\x00payload' * 1000, headers=upload_key)
        assert upload.status_code == 201, upload.text
        append_key = {'Idempotency-Key': 'append-1'}
        history = f'/v1/chats/{chat_id}/history'
        append = caller.http.post(history, content=b'# said once\n', headers=append_key)
        assert append.status_code == 200, append.text
        used = caller.used_bytes()

        server.restart()

        assert_same_answer(chat, caller.http.post('/v1/chats', json={'title': 'kept'}, headers=KEY))
        again = caller.http.put(url, content=b'\x00payload' * 1000, headers=upload_key)
        assert_same_answer(upload, again)
        append_again = caller.http.post(history, content=b'# said once\n', headers=append_key)
        assert (append_again.status_code, append_again.content) == (200, append.content)
        assert append_again.headers['etag'] == append.headers['etag']
        assert caller.http.get(history).content == b'# said once\n'
        other = caller.http.put(url, content=b'changed', headers=upload_key)
        assert other.status_code == 422
        assert other.json()['code'] == 'idempotency_key_reused'
        chats = caller.http.get('/v1/chats').json()['items']
        assert [c['chat_id'] for c in chats] == [chat_id]
        assert [f['file_id'] for f in caller.files(chat_id)] == [upload.json()['file_id']]
        assert caller.used_bytes() == used
        assert staging_entries(server.data_dir) == set()
    finally:
        caller.close()
