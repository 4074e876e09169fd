"""Paging through chats over real HTTP: complete, without repeats, stable under changes."""

from collections import Counter

import pytest
from e2e_support import Caller, Json, ids_of, order_key

pytestmark = pytest.mark.e2e

LIMIT = 7


def _page(caller: Caller, cursor: str | None) -> tuple[list[Json], str | None]:
    params: dict[str, str | int] = {'limit': LIMIT}
    if cursor is not None:
        params['cursor'] = cursor
    response = caller.http.get('/v1/chats', params=params)
    assert response.status_code == 200, response.text
    page = response.json()
    assert len(page['items']) <= LIMIT
    return list(page['items']), page['next_cursor']


def _walk(caller: Caller, cursor: str | None = None) -> list[Json]:
    seen: list[Json] = []
    for _ in range(1000):
        items, cursor = _page(caller, cursor)
        seen.extend(items)
        if cursor is None:
            return seen
    pytest.fail('paging did not end')


def test_paging_120_chats_returns_each_once_in_order(caller: Caller) -> None:
    caller.workspace()
    created = [caller.chat(f'chat {i:03}') for i in range(120)]

    seen = _walk(caller)

    assert len(seen) == 120
    assert set(ids_of(seen, 'chat_id')) == set(ids_of(created, 'chat_id'))
    keys = [order_key(chat, 'chat_id') for chat in seen]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    assert seen == sorted(created, key=lambda chat: order_key(chat, 'chat_id'))


def test_paging_while_chats_are_created_and_deleted_misses_and_repeats_none(
    caller: Caller,
) -> None:
    caller.workspace()
    created = [caller.chat(f'chat {i:03}') for i in range(60)]
    by_order = sorted(created, key=lambda chat: order_key(chat, 'chat_id'))
    deleted: set[str] = set()
    deleted_unseen: set[str] = set()
    seen: list[Json] = []

    def churn(page_number: int) -> None:
        """One chat already seen and two not reached yet go away; two new ones arrive."""
        already = set(ids_of(seen, 'chat_id'))
        seen_victim = next(c for c in by_order if c['chat_id'] in already - deleted)
        unseen = [c for c in by_order if c['chat_id'] not in already | deleted][-2:]
        for chat in [seen_victim, *unseen]:
            assert caller.http.delete(f'/v1/chats/{chat["chat_id"]}').status_code == 204
            deleted.add(chat['chat_id'])
        deleted_unseen.update(c['chat_id'] for c in unseen)
        for i in range(2):
            caller.chat(f'new {page_number}.{i}')

    pages = 0
    cursor: str | None = None
    while True:
        items, cursor = _page(caller, cursor)
        seen.extend(items)
        if cursor is None:
            break
        churn(pages)
        pages += 1
        assert pages < 100, 'paging did not end'

    counts = Counter(ids_of(seen, 'chat_id'))
    assert [chat_id for chat_id, n in counts.items() if n > 1] == []
    survivors = {c['chat_id'] for c in created} - deleted
    assert survivors <= set(counts), f'missing: {survivors - set(counts)}'
    assert not deleted_unseen & set(counts), 'a chat deleted before it was reached was listed'
    keys = [order_key(chat, 'chat_id') for chat in seen]
    assert keys == sorted(keys)
    assert pages >= 5


def test_paging_after_the_cursor_chat_is_deleted_continues(caller: Caller) -> None:
    caller.workspace()
    created = [caller.chat(f'chat {i}') for i in range(LIMIT * 2 + 3)]
    first, cursor = _page(caller, None)
    assert cursor is not None
    # the last chat of the page (the cursor's position) disappears before the next page
    assert caller.http.delete(f'/v1/chats/{first[-1]["chat_id"]}').status_code == 204

    rest = _walk(caller, cursor)

    expected = [c['chat_id'] for c in sorted(created, key=lambda c: order_key(c, 'chat_id'))]
    assert ids_of(first, 'chat_id') + ids_of(rest, 'chat_id') == expected


def test_paging_with_limit_200_returns_all_on_one_page(caller: Caller) -> None:
    caller.workspace()
    for i in range(3):
        caller.chat(f'chat {i}')

    response = caller.http.get('/v1/chats', params={'limit': 200})

    assert response.status_code == 200
    assert len(response.json()['items']) == 3
    assert response.json()['next_cursor'] is None
