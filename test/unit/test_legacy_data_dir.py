"""The previous release's data directory (test/contract/data) through `LegacyLayout` and
`ConvertLegacy`, its rows read from its SQLite file into the in-memory backend."""

import base64
import hashlib
import json
import sqlite3
import tarfile
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from adapter.legacy_layout import LEGACY_AREAS, LegacyLayout, blob_path
from domain.chat import Chat, ChatAttachmentName, ChatFile
from domain.workspace import Workspace
from usecase.convert_legacy import ConvertLegacy

from .fakes import RecordingBackend, RecordingBlobStore

TARBALL = Path(__file__).parents[1] / 'contract' / 'data' / 'legacy-data-dir.tar.gz'


async def _load(meta: RecordingBackend, database: Path) -> None:
    rows = sqlite3.connect(database)
    rows.row_factory = sqlite3.Row
    when = datetime.fromisoformat
    await meta.seed(
        *(
            Workspace(
                UUID(r['workspace_id']),
                UUID(r['user_id']),
                when(r['created_at']),
                r['quota_bytes'],
                r['used_bytes'],
            )
            for r in rows.execute('select * from workspaces')
        ),
        *(
            Chat(
                UUID(r['chat_id']),
                UUID(r['workspace_id']),
                when(r['created_at']),
                when(r['updated_at']),
                history_bytes=r['history_bytes'],
                history_revision=r['history_revision'],
                file_count=r['file_count'],
            )
            for r in rows.execute('select * from chats')
        ),
        *(
            ChatFile(
                UUID(r['file_id']),
                UUID(r['chat_id']),
                ChatAttachmentName(r['name']),
                r['content_type'],
                r['size_bytes'],
                when(r['created_at']),
                r['sha256'],
            )
            for r in rows.execute('select * from chat_files')
        ),
    )
    rows.close()


async def test_the_previous_releases_directory_converts_every_committed_byte(
    tmp_path: Path,
) -> None:
    with tarfile.open(TARBALL) as archive:
        archive.extractall(tmp_path, filter='tar')
    data = tmp_path / 'data'
    expected: dict[str, Any] = json.loads((tmp_path / 'expected.json').read_text())
    log: list[str] = []
    meta = RecordingBackend(log)
    await _load(meta, data / 'metadata.db')
    blobs = RecordingBlobStore(log)
    convert = ConvertLegacy(meta.unit_of_work, blobs, LegacyLayout(data))

    result = await convert()

    assert result is not None
    assert (result.histories, result.files, result.missing) == (2, 3, 0)
    for chat_id, encoded in expected['histories'].items():
        chat = meta.rows.chats[UUID(chat_id)]
        assert chat.history_blob_id is not None
        assert blobs.blobs[chat.history_blob_id] == base64.b64decode(encoded)
    for file_id, row in expected['files'].items():
        content = blob_path(data, UUID(file_id)).read_bytes()
        assert hashlib.sha256(content).hexdigest() == row['sha256']
        assert len(content) == row['size_bytes']
    assert not any((data / area).exists() for area in LEGACY_AREAS)
    assert await convert() is None
