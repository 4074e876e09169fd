"""A user's journey through the v1 routes, over real HTTP against a real server."""

import re
import time
from datetime import datetime
from urllib.parse import quote, unquote
from uuid import UUID, uuid4

import pytest
from e2e_support import (
    QUOTA_BYTES,
    Caller,
    assert_problem,
    assert_timestamp,
    ids_of,
    order_key,
    sha256,
)

pytestmark = pytest.mark.e2e


# --- workspace ---------------------------------------------------------------------------


def test_put_workspace_creates_it_then_is_idempotent(caller: Caller) -> None:
    first = caller.http.put('/v1/workspace')
    second = caller.http.put('/v1/workspace')

    assert first.status_code == 201
    assert second.status_code == 200
    assert first.json() == second.json()
    workspace = first.json()
    assert workspace['user_id'] == str(caller.user_id)
    assert workspace['quota_bytes'] == QUOTA_BYTES
    assert workspace['used_bytes'] == 0
    assert_timestamp(workspace['created_at'])
    UUID(workspace['workspace_id'])


def test_get_workspace_returns_what_put_created(caller: Caller) -> None:
    created = caller.workspace()

    response = caller.http.get('/v1/workspace')

    assert response.status_code == 200
    assert response.json() == created


def test_workspace_usage_reports_used_and_quota(caller: Caller) -> None:
    workspace = caller.workspace()

    response = caller.http.get('/v1/workspace/usage')

    assert response.status_code == 200
    assert response.json() == {
        'workspace_id': workspace['workspace_id'],
        'used_bytes': 0,
        'quota_bytes': QUOTA_BYTES,
    }


def test_usage_counts_history_and_attachments(caller: Caller) -> None:
    chat = caller.workspace_and_chat()
    caller.http.put(f'/v1/chats/{chat["chat_id"]}/history', content=b'# hello\n')
    caller.stored_file(chat['chat_id'], 'a.bin', b'x' * 1_000)

    assert caller.used_bytes() == 8 + 1_000
    assert caller.http.get('/v1/workspace').json()['used_bytes'] == 8 + 1_000


def test_workspace_routes_before_put_are_workspace_not_found(caller: Caller) -> None:
    assert_problem(caller.http.get('/v1/workspace'), 404, 'workspace_not_found')
    assert_problem(caller.http.get('/v1/workspace/usage'), 404, 'workspace_not_found')
    assert_problem(caller.http.post('/v1/chats', json={}), 404, 'workspace_not_found')


# --- chats ---------------------------------------------------------------------------------


def test_create_chat_answers_201_with_a_location_that_serves_it(caller: Caller) -> None:
    workspace = caller.workspace()

    response = caller.http.post('/v1/chats', json={'title': 'Plans'})

    assert response.status_code == 201
    chat = response.json()
    assert response.headers['location'] == f'/v1/chats/{chat["chat_id"]}'
    assert chat['title'] == 'Plans'
    assert chat['workspace_id'] == workspace['workspace_id']
    assert chat['history_bytes'] == 0
    assert chat['file_count'] == 0
    assert_timestamp(chat['created_at'])
    assert_timestamp(chat['updated_at'])
    assert caller.http.get(response.headers['location']).json() == chat


def test_create_chat_with_an_empty_body_has_no_title(caller: Caller) -> None:
    caller.workspace()

    response = caller.http.post('/v1/chats')

    assert response.status_code == 201
    assert response.json()['title'] is None


def test_new_chat_has_a_directory_with_an_empty_history(caller: Caller) -> None:
    chat = caller.workspace_and_chat()

    chat_dir = caller.chat_dir(chat)

    assert sorted(p.name for p in chat_dir.iterdir()) == ['history.md']
    assert (chat_dir / 'history.md').read_bytes() == b''


def test_patch_chat_renames_it(caller: Caller) -> None:
    chat = caller.workspace_and_chat()

    response = caller.http.patch(f'/v1/chats/{chat["chat_id"]}', json={'title': 'Renamed'})

    assert response.status_code == 200
    renamed = response.json()
    assert renamed['title'] == 'Renamed'
    assert renamed['chat_id'] == chat['chat_id']
    assert renamed['created_at'] == chat['created_at']
    assert datetime.fromisoformat(renamed['updated_at']) >= datetime.fromisoformat(
        chat['updated_at']
    )
    assert caller.http.get(f'/v1/chats/{chat["chat_id"]}').json() == renamed


def test_list_chats_returns_the_callers_chats_in_order(caller: Caller) -> None:
    caller.workspace()
    created = [caller.chat(f'chat {i}') for i in range(3)]

    response = caller.http.get('/v1/chats')

    assert response.status_code == 200
    page = response.json()
    assert page['next_cursor'] is None
    assert page['items'] == sorted(created, key=lambda c: order_key(c, 'chat_id'))


def test_delete_chat_removes_it_and_its_directory(caller: Caller) -> None:
    chat = caller.workspace_and_chat()
    caller.http.put(f'/v1/chats/{chat["chat_id"]}/history', content=b'bye')
    caller.stored_file(chat['chat_id'], 'a.txt', b'abc')

    response = caller.http.delete(f'/v1/chats/{chat["chat_id"]}')

    assert response.status_code == 204
    assert response.content == b''
    assert_problem(caller.http.get(f'/v1/chats/{chat["chat_id"]}'), 404, 'chat_not_found')
    assert not caller.chat_dir(chat).exists()
    assert caller.used_bytes() == 0
    assert caller.http.get('/v1/chats').json()['items'] == []


# --- history -------------------------------------------------------------------------------


def test_history_of_a_new_chat_is_empty_markdown_with_a_strong_etag(caller: Caller) -> None:
    chat = caller.workspace_and_chat()

    response = caller.http.get(f'/v1/chats/{chat["chat_id"]}/history')

    assert response.status_code == 200
    assert response.headers['content-type'] == 'text/markdown; charset=utf-8'
    assert response.headers['content-length'] == '0'
    assert response.content == b''
    etag = response.headers['etag']
    assert etag.startswith('"')
    assert etag.endswith('"')


def test_put_history_replaces_it_and_answers_the_new_etag(caller: Caller) -> None:
    chat = caller.workspace_and_chat()
    text = '# Plans\n\n**user:** héllo\n'.encode()

    response = caller.http.put(f'/v1/chats/{chat["chat_id"]}/history', content=text)

    assert response.status_code == 200
    assert response.json() == {'etag': response.headers['etag'], 'size_bytes': len(text)}
    read = caller.http.get(f'/v1/chats/{chat["chat_id"]}/history')
    assert read.content == text
    assert read.headers['content-length'] == str(len(text))
    assert read.headers['etag'] == response.headers['etag']
    assert caller.http.get(f'/v1/chats/{chat["chat_id"]}').json()['history_bytes'] == len(text)
    assert (caller.chat_dir(chat) / 'history.md').read_bytes() == text


def test_post_history_appends_to_it(caller: Caller) -> None:
    chat = caller.workspace_and_chat()
    caller.http.put(f'/v1/chats/{chat["chat_id"]}/history', content=b'one\n')

    response = caller.http.post(f'/v1/chats/{chat["chat_id"]}/history', content=b'two\n')

    assert response.status_code == 200
    assert response.json() == {'etag': response.headers['etag'], 'size_bytes': 8}
    assert caller.history(chat['chat_id']) == b'one\ntwo\n'
    assert caller.used_bytes() == 8


def test_history_with_the_current_etag_in_if_none_match_is_304(caller: Caller) -> None:
    chat = caller.workspace_and_chat()
    etag = caller.http.put(f'/v1/chats/{chat["chat_id"]}/history', content=b'v1').headers['etag']

    response = caller.http.get(
        f'/v1/chats/{chat["chat_id"]}/history', headers={'If-None-Match': etag}
    )

    assert response.status_code == 304
    assert response.content == b''
    assert response.headers['etag'] == etag


def test_history_with_an_old_etag_in_if_none_match_is_200(caller: Caller) -> None:
    chat = caller.workspace_and_chat()
    old = caller.http.put(f'/v1/chats/{chat["chat_id"]}/history', content=b'v1').headers['etag']
    caller.http.put(f'/v1/chats/{chat["chat_id"]}/history', content=b'v2')

    response = caller.http.get(
        f'/v1/chats/{chat["chat_id"]}/history', headers={'If-None-Match': old}
    )

    assert response.status_code == 200
    assert response.content == b'v2'
    assert response.headers['etag'] != old


@pytest.mark.parametrize('method', ['PUT', 'POST'])
def test_history_write_with_a_stale_if_match_is_412_and_changes_nothing(
    caller: Caller, method: str
) -> None:
    chat = caller.workspace_and_chat()
    path = f'/v1/chats/{chat["chat_id"]}/history'
    stale = caller.http.put(path, content=b'v1').headers['etag']
    current = caller.http.put(path, content=b'v2').headers['etag']

    response = caller.http.request(method, path, content=b'lost', headers={'If-Match': stale})

    assert_problem(response, 412, 'precondition_failed')
    read = caller.http.get(path)
    assert read.content == b'v2'
    assert read.headers['etag'] == current
    assert caller.used_bytes() == 2


@pytest.mark.parametrize(('method', 'expected'), [('PUT', b'new'), ('POST', b'v1new')])
def test_history_write_with_the_current_if_match_applies(
    caller: Caller, method: str, expected: bytes
) -> None:
    chat = caller.workspace_and_chat()
    path = f'/v1/chats/{chat["chat_id"]}/history'
    current = caller.http.put(path, content=b'v1').headers['etag']

    response = caller.http.request(method, path, content=b'new', headers={'If-Match': current})

    assert response.status_code == 200
    assert caller.history(chat['chat_id']) == expected


# --- attachments -----------------------------------------------------------------------------


def test_raw_put_creates_a_file_with_its_record(caller: Caller) -> None:
    chat = caller.workspace_and_chat()
    data = b'col1,col2\n1,2\n'

    response = caller.put_file(chat['chat_id'], 'table.csv', data, 'text/csv')

    assert response.status_code == 201
    record = response.json()
    assert response.headers['location'] == (
        f'/v1/chats/{chat["chat_id"]}/files/{record["file_id"]}'
    )
    assert record['chat_id'] == chat['chat_id']
    assert record['name'] == 'table.csv'
    assert record['content_type'] == 'text/csv'
    assert record['size_bytes'] == len(data)
    assert record['sha256'] == sha256(data)
    assert_timestamp(record['created_at'])
    assert caller.http.get(response.headers['location']).json() == record
    assert caller.http.get(f'/v1/chats/{chat["chat_id"]}').json()['file_count'] == 1
    assert (caller.chat_dir(chat) / 'table.csv').read_bytes() == data


def test_raw_put_of_an_existing_name_replaces_it_with_a_new_file_id(caller: Caller) -> None:
    chat = caller.workspace_and_chat()
    old = caller.put_file(chat['chat_id'], 'notes.txt', b'old content').json()

    response = caller.put_file(chat['chat_id'], 'notes.txt', b'new')

    assert response.status_code == 200
    new = response.json()
    assert new['file_id'] != old['file_id']
    assert new['name'] == 'notes.txt'
    assert new['size_bytes'] == 3
    old_path = f'/v1/chats/{chat["chat_id"]}/files/{old["file_id"]}'
    assert_problem(caller.http.get(old_path), 404, 'chat_file_not_found')
    assert_problem(caller.http.get(f'{old_path}/content'), 404, 'chat_file_not_found')
    assert ids_of(caller.files(chat['chat_id']), 'file_id') == [new['file_id']]
    assert caller.content(chat['chat_id'], new['file_id']) == b'new'
    assert caller.used_bytes() == 3
    assert caller.http.get(f'/v1/chats/{chat["chat_id"]}').json()['file_count'] == 1


def test_multipart_upload_takes_the_name_from_the_parts_filename(caller: Caller) -> None:
    chat = caller.workspace_and_chat()

    response = caller.http.post(
        f'/v1/chats/{chat["chat_id"]}/files',
        files={'file': ('notes.txt', b'some notes', 'text/plain')},
    )

    assert response.status_code == 201
    record = response.json()
    assert record['name'] == 'notes.txt'
    assert record['content_type'] == 'text/plain'
    assert record['size_bytes'] == 10
    assert record['sha256'] == sha256(b'some notes')
    assert response.headers['location'] == (
        f'/v1/chats/{chat["chat_id"]}/files/{record["file_id"]}'
    )
    assert caller.content(chat['chat_id'], record['file_id']) == b'some notes'


def test_multipart_upload_takes_the_name_from_the_name_field(caller: Caller) -> None:
    chat = caller.workspace_and_chat()

    response = caller.http.post(
        f'/v1/chats/{chat["chat_id"]}/files',
        data={'name': 'renamed.md'},
        files={'file': ('original.txt', b'# doc', 'text/markdown')},
    )

    assert response.status_code == 201
    assert response.json()['name'] == 'renamed.md'
    assert sorted(p.name for p in caller.chat_dir(chat).iterdir()) == ['history.md', 'renamed.md']


def test_multipart_upload_of_an_existing_name_replaces_it(caller: Caller) -> None:
    chat = caller.workspace_and_chat()
    old = caller.stored_file(chat['chat_id'], 'same.bin', b'12345')

    response = caller.http.post(
        f'/v1/chats/{chat["chat_id"]}/files', files={'file': ('same.bin', b'12')}
    )

    # the contract: the multipart route answers 201 either way (only raw PUT says 200)
    assert response.status_code == 201
    assert response.json()['file_id'] != old['file_id']
    assert caller.used_bytes() == 2


def test_list_files_pages_in_created_at_then_file_id_order(caller: Caller) -> None:
    chat = caller.workspace_and_chat()
    created = [caller.stored_file(chat['chat_id'], f'f{i}.txt', b'x' * i) for i in range(5)]

    seen: list[dict[str, object]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {'limit': 2}
        if cursor:
            params['cursor'] = cursor
        page = caller.http.get(f'/v1/chats/{chat["chat_id"]}/files', params=params).json()
        assert len(page['items']) <= 2
        seen.extend(page['items'])
        cursor = page['next_cursor']
        if cursor is None:
            break

    assert seen == sorted(created, key=lambda f: order_key(f, 'file_id'))


def test_download_sends_the_bytes_with_its_headers(caller: Caller) -> None:
    chat = caller.workspace_and_chat()
    data = bytes(range(256)) * 3
    name = 'résumé 1.pdf'
    record = caller.put_file(chat['chat_id'], quote(name), data, 'application/pdf').json()
    assert record['name'] == name

    response = caller.http.get(f'/v1/chats/{chat["chat_id"]}/files/{record["file_id"]}/content')

    assert response.status_code == 200
    assert response.content == data
    assert response.headers['content-type'] == 'application/pdf'
    assert response.headers['content-length'] == str(len(data))
    assert response.headers['etag'] == f'"{sha256(data)}"'
    assert response.headers['accept-ranges'] == 'bytes'
    disposition = response.headers['content-disposition']
    assert disposition.startswith('attachment')
    assert f"filename*=UTF-8''{quote(name, safe='')}" in disposition
    assert response.headers['x-content-type-options'] == 'nosniff'


@pytest.mark.parametrize(
    'name', ['a"quoted".txt', 'semi;colon, comma.txt', '100% done.txt', 'emoji 😀.txt', "it's"]
)
def test_download_disposition_names_the_file_exactly(caller: Caller, name: str) -> None:
    chat = caller.workspace_and_chat()
    record = caller.put_file(chat['chat_id'], quote(name, safe=''), b'data').json()
    assert record['name'] == name

    response = caller.http.get(f'/v1/chats/{chat["chat_id"]}/files/{record["file_id"]}/content')

    disposition = response.headers['content-disposition']
    assert disposition.startswith('attachment;'), disposition
    encoded = re.search(r"(?:^|;)\s*filename\*=UTF-8''([^;\s]+)\s*(?:;|$)", disposition)
    assert encoded, disposition
    assert re.fullmatch(r'[A-Za-z0-9!#$&+.^_`|~%-]+', encoded.group(1)), 'RFC 8187 attr-chars'
    assert unquote(encoded.group(1), errors='strict') == name
    # a plain `filename=` fallback, if any, must be one well-formed quoted string
    rest = disposition.replace(encoded.group(0), ';')
    assert re.fullmatch(r'attachment;?(\s*;?\s*filename="(?:[^"\\]|\\.)*")?\s*;?', rest), rest


def test_download_without_a_stored_type_is_octet_stream(caller: Caller) -> None:
    chat = caller.workspace_and_chat()
    record = caller.put_file(chat['chat_id'], 'blob', b'\x00\x01').json()
    assert record['content_type'] is None

    response = caller.http.get(f'/v1/chats/{chat["chat_id"]}/files/{record["file_id"]}/content')

    assert response.headers['content-type'] == 'application/octet-stream'


def test_download_of_a_text_file_keeps_the_stored_content_type(caller: Caller) -> None:
    chat = caller.workspace_and_chat()
    data = 'é'.encode('latin-1')
    record = caller.put_file(chat['chat_id'], 'latin.txt', data, 'text/plain').json()

    response = caller.http.get(f'/v1/chats/{chat["chat_id"]}/files/{record["file_id"]}/content')

    # "Content-Type as stored": the server must not claim a charset the bytes do not have
    assert response.headers['content-type'] == 'text/plain'


@pytest.mark.parametrize(
    ('range_header', 'first', 'last'),
    [('bytes=2-5', 2, 5), ('bytes=7-', 7, 9), ('bytes=-3', 7, 9), ('bytes=8-100', 8, 9)],
)
def test_download_of_a_range_is_206_with_content_range(
    caller: Caller, range_header: str, first: int, last: int
) -> None:
    chat = caller.workspace_and_chat()
    data = b'0123456789'
    record = caller.stored_file(chat['chat_id'], 'digits.txt', data)

    response = caller.http.get(
        f'/v1/chats/{chat["chat_id"]}/files/{record["file_id"]}/content',
        headers={'Range': range_header},
    )

    assert response.status_code == 206
    assert response.content == data[first : last + 1]
    assert response.headers['content-range'] == f'bytes {first}-{last}/{len(data)}'
    assert response.headers['content-length'] == str(last - first + 1)


@pytest.mark.parametrize('range_header', ['bytes=10-', 'bytes=50-60', 'bytes=-0'])
def test_download_of_a_range_outside_the_file_is_416(caller: Caller, range_header: str) -> None:
    chat = caller.workspace_and_chat()
    record = caller.stored_file(chat['chat_id'], 'digits.txt', b'0123456789')

    response = caller.http.get(
        f'/v1/chats/{chat["chat_id"]}/files/{record["file_id"]}/content',
        headers={'Range': range_header},
    )

    assert_problem(response, 416, 'range_not_satisfiable')
    assert response.headers['content-range'] == 'bytes */10'


def test_download_with_the_current_etag_in_if_none_match_is_304(caller: Caller) -> None:
    chat = caller.workspace_and_chat()
    record = caller.stored_file(chat['chat_id'], 'a.txt', b'abc')

    response = caller.http.get(
        f'/v1/chats/{chat["chat_id"]}/files/{record["file_id"]}/content',
        headers={'If-None-Match': f'"{record["sha256"]}"'},
    )

    assert response.status_code == 304
    assert response.content == b''
    assert response.headers['etag'] == f'"{record["sha256"]}"'


def test_delete_file_removes_record_content_and_bytes_on_disk(caller: Caller) -> None:
    chat = caller.workspace_and_chat()
    keep = caller.stored_file(chat['chat_id'], 'keep.txt', b'keep')
    gone = caller.stored_file(chat['chat_id'], 'gone.txt', b'gone!')
    path = f'/v1/chats/{chat["chat_id"]}/files/{gone["file_id"]}'

    response = caller.http.delete(path)

    assert response.status_code == 204
    assert_problem(caller.http.get(path), 404, 'chat_file_not_found')
    assert_problem(caller.http.get(f'{path}/content'), 404, 'chat_file_not_found')
    assert_problem(caller.http.delete(path), 404, 'chat_file_not_found')
    assert ids_of(caller.files(chat['chat_id']), 'file_id') == [keep['file_id']]
    assert sorted(p.name for p in caller.chat_dir(chat).iterdir()) == ['history.md', 'keep.txt']
    assert caller.used_bytes() == 4


def test_clear_files_removes_every_attachment_and_keeps_history(caller: Caller) -> None:
    chat = caller.workspace_and_chat()
    caller.http.put(f'/v1/chats/{chat["chat_id"]}/history', content=b'# kept')
    for i in range(3):
        caller.stored_file(chat['chat_id'], f'f{i}', b'data')

    response = caller.http.delete(f'/v1/chats/{chat["chat_id"]}/files')

    assert response.status_code == 204
    assert caller.files(chat['chat_id']) == []
    assert caller.history(chat['chat_id']) == b'# kept'
    assert [p.name for p in caller.chat_dir(chat).iterdir()] == ['history.md']
    assert caller.used_bytes() == 6
    assert caller.http.get(f'/v1/chats/{chat["chat_id"]}').json()['file_count'] == 0


# --- sandbox sessions ----------------------------------------------------------------------


def test_sandbox_put_starts_a_session_and_get_returns_it(caller: Caller) -> None:
    chat = caller.workspace_and_chat()
    path = f'/v1/chats/{chat["chat_id"]}/sandbox'

    response = caller.http.put(path, json={'ttl_seconds': 600})

    assert response.status_code == 201
    session = response.json()
    assert session['chat_id'] == chat['chat_id']
    started = assert_timestamp(session['started_at'])
    expires = assert_timestamp(session['expires_at'])
    assert 599 <= (expires - started).total_seconds() <= 601
    assert caller.http.get(path).json() == session


def test_second_sandbox_put_without_the_session_id_is_409(caller: Caller) -> None:
    chat = caller.workspace_and_chat()
    path = f'/v1/chats/{chat["chat_id"]}/sandbox'
    first = caller.http.put(path, json={'ttl_seconds': 600}).json()

    response = caller.http.put(path, json={'ttl_seconds': 600})

    assert_problem(response, 409, 'sandbox_already_active')
    assert caller.http.get(path).json() == first


def test_sandbox_put_with_the_current_session_id_renews_it(caller: Caller) -> None:
    chat = caller.workspace_and_chat()
    path = f'/v1/chats/{chat["chat_id"]}/sandbox'
    first = caller.http.put(path, json={'ttl_seconds': 60}).json()

    response = caller.http.put(
        path, json={'ttl_seconds': 3600, 'sandbox_session_id': first['sandbox_session_id']}
    )

    assert response.status_code == 200
    renewed = response.json()
    assert renewed['sandbox_session_id'] == first['sandbox_session_id']
    assert datetime.fromisoformat(renewed['expires_at']) > datetime.fromisoformat(
        first['expires_at']
    )
    assert caller.http.get(path).json() == renewed


def test_sandbox_put_with_another_session_id_is_409(caller: Caller) -> None:
    chat = caller.workspace_and_chat()
    path = f'/v1/chats/{chat["chat_id"]}/sandbox'
    first = caller.http.put(path, json={'ttl_seconds': 600}).json()

    response = caller.http.put(path, json={'ttl_seconds': 600, 'sandbox_session_id': str(uuid4())})

    assert_problem(response, 409, 'sandbox_already_active')
    assert caller.http.get(path).json() == first


def test_an_expired_sandbox_session_is_no_longer_active(caller: Caller) -> None:
    chat = caller.workspace_and_chat()
    path = f'/v1/chats/{chat["chat_id"]}/sandbox'
    first = caller.http.put(path, json={'ttl_seconds': 1}).json()

    time.sleep(1.2)

    assert_problem(caller.http.get(path), 404, 'sandbox_session_not_found')
    second = caller.http.put(path, json={'ttl_seconds': 600})
    assert second.status_code == 201
    assert second.json()['sandbox_session_id'] != first['sandbox_session_id']
    assert caller.http.delete(path).status_code == 204
    assert caller.http.delete(f'/v1/chats/{chat["chat_id"]}').status_code == 204


def test_a_chat_whose_sandbox_expired_can_be_deleted(caller: Caller) -> None:
    chat = caller.workspace_and_chat()
    caller.http.put(f'/v1/chats/{chat["chat_id"]}/sandbox', json={'ttl_seconds': 1})

    time.sleep(1.2)

    assert caller.http.delete(f'/v1/chats/{chat["chat_id"]}').status_code == 204
    assert caller.http.delete('/v1/workspace').status_code == 204


def test_chat_with_an_active_sandbox_cannot_be_deleted(caller: Caller) -> None:
    chat = caller.workspace_and_chat()
    caller.http.put(f'/v1/chats/{chat["chat_id"]}/sandbox', json={'ttl_seconds': 600})

    response = caller.http.delete(f'/v1/chats/{chat["chat_id"]}')

    assert_problem(response, 409, 'chat_has_active_sandbox')
    assert caller.http.get(f'/v1/chats/{chat["chat_id"]}').status_code == 200
    assert caller.chat_dir(chat).is_dir()


def test_workspace_with_an_active_sandbox_cannot_be_deleted(caller: Caller) -> None:
    chat = caller.workspace_and_chat()
    caller.http.put(f'/v1/chats/{chat["chat_id"]}/sandbox', json={'ttl_seconds': 600})

    response = caller.http.delete('/v1/workspace')

    assert_problem(response, 409, 'chat_has_active_sandbox')
    assert caller.http.get('/v1/workspace').status_code == 200
    assert caller.http.get(f'/v1/chats/{chat["chat_id"]}').status_code == 200


def test_ending_the_sandbox_lets_the_chat_and_workspace_be_deleted(caller: Caller) -> None:
    workspace = caller.workspace()
    chat = caller.chat()
    other = caller.chat()
    sandbox = f'/v1/chats/{chat["chat_id"]}/sandbox'
    caller.http.put(sandbox, json={'ttl_seconds': 600})

    ended = caller.http.delete(sandbox)

    assert ended.status_code == 204
    assert_problem(caller.http.get(sandbox), 404, 'sandbox_session_not_found')
    assert caller.http.delete(f'/v1/chats/{chat["chat_id"]}').status_code == 204
    assert_problem(caller.http.get(f'/v1/chats/{chat["chat_id"]}'), 404, 'chat_not_found')
    assert caller.http.delete('/v1/workspace').status_code == 204
    assert_problem(caller.http.get('/v1/workspace'), 404, 'workspace_not_found')
    gone = caller.http.get(f'/v1/chats/{other["chat_id"]}')
    assert gone.status_code == 404
    assert_problem(gone, 404, gone.json()['code'])
    assert gone.json()['code'] in {'workspace_not_found', 'chat_not_found'}
    assert not (caller.server.data_dir / 'workspaces' / workspace['workspace_id']).exists()


def test_sandbox_of_a_chat_without_one_is_404(caller: Caller) -> None:
    chat = caller.workspace_and_chat()

    response = caller.http.get(f'/v1/chats/{chat["chat_id"]}/sandbox')

    assert_problem(response, 404, 'sandbox_session_not_found')


# --- workspace deletion ----------------------------------------------------------------------


def test_delete_workspace_removes_everything_and_a_new_one_starts_empty(caller: Caller) -> None:
    workspace = caller.workspace()
    chat = caller.chat()
    caller.http.put(f'/v1/chats/{chat["chat_id"]}/history', content=b'history')
    caller.stored_file(chat['chat_id'], 'a.txt', b'abc')

    response = caller.http.delete('/v1/workspace')

    assert response.status_code == 204
    assert not (caller.server.data_dir / 'workspaces' / workspace['workspace_id']).exists()
    again = caller.http.put('/v1/workspace')
    assert again.status_code == 201
    assert again.json()['used_bytes'] == 0
    assert caller.http.get('/v1/chats').json()['items'] == []
