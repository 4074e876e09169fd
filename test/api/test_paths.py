"""`http.path_in_app`: the `Location` of a created chat or file and the path of a signed
link are what `request.url_for(...).path` gives, under any root path."""

from pathlib import Path
from uuid import UUID

import pytest
from starlette.requests import Request

from api.app import create_app
from api.http import path_in_app
from api.routers import chats, files, links
from api.routing import app_path
from api.settings import Settings

CHAT = UUID('8a1d2c3b-4e5f-4a6b-8c7d-9e0f1a2b3c4d')
FILE = UUID('5f0c6a52-1d0e-4c3b-9a57-0b7c1e2d3f40')


@pytest.mark.parametrize(
    'scope_paths',
    [
        {},
        {'root_path': '/storage'},
        {'root_path': '/storage/'},
        # mounted below another app: Starlette's base URL is the app's own root path
        {'root_path': '/outer/storage', 'app_root_path': '/storage'},
    ],
)
def test_the_paths_are_those_of_url_for(tmp_path: Path, scope_paths: dict[str, str]) -> None:
    # the paths do not depend on the metadata backend: one is enough
    app = create_app(Settings(data_dir=tmp_path / 'data', metadata_backend='memory'))
    request = Request(
        {
            'type': 'http',
            'app': app,
            'scheme': 'http',
            'server': ('testserver', 80),
            'path': '/',
            'query_string': b'',
            'headers': [],
            **scope_paths,
        }
    )
    paths = [
        (
            path_in_app(request, chats.router.prefix + chats.CHAT_PATH, chat_id=CHAT),
            request.url_for('get_chat', chat_id=CHAT).path,
        ),
        (
            path_in_app(request, files.router.prefix + files.FILE_PATH, chat_id=CHAT, file_id=FILE),
            request.url_for('get_file', chat_id=CHAT, file_id=FILE).path,
        ),
        (
            path_in_app(request, links.LINK_PATH, file_id=FILE),
            request.url_for('download_by_link', file_id=FILE).path,
        ),
    ]

    for fast, slow in paths:
        assert fast == slow
    assert paths[0][0].endswith(f'/v1/chats/{CHAT}')


@pytest.mark.parametrize(
    ('root_path', 'path', 'below'),
    [
        ('', '/v1/chats', '/v1/chats'),
        ('/storage', '/storage/v1/chats', '/v1/chats'),
        ('/storage', '/storage', ''),
        # the root is cut off only where a segment ends, as Starlette's router does
        ('/storage', '/storagex/v1/chats', '/storagex/v1/chats'),
        # a server that sets a root path without putting it in the path (Granian's prefix)
        ('/', '/v1/chats', '/v1/chats'),
        ('/v1/', '/v1/chats', '/v1/chats'),
    ],
)
def test_the_middleware_see_the_path_the_routes_match(
    root_path: str, path: str, below: str
) -> None:
    assert app_path({'type': 'http', 'path': path, 'root_path': root_path}) == below
