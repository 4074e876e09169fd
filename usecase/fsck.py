"""`chat-storage fsck`: check the store's rows against its blobs and views (ADR 027).

The rows are the truth. A row naming a blob that is gone, or one of another size or
hash, is damage nothing can repair without guessing; a chat directory out of step with
its rows, a directory without a chat, `file_count` and `used_bytes` off and old garbage
are repaired by `--repair`, which never loses a committed byte.
"""

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from uuid import UUID

from domain.chat import HISTORY_FILE_NAME, Chat, ChatAttachmentName, ChatFile, HistorySegment
from domain.error import DomainError, StoredContentMissingError
from domain.page import PageKey
from domain.workspace import Workspace
from usecase.collect_garbage import CollectGarbage
from usecase.convert_legacy import ConvertLegacy, lock_workspace
from usecase.interface import UnitOfWorkFactory
from usecase.publish import Publisher, history_chunks
from usecase.store_ports import BlobInventory, BlobStore, ChatViews

logger = logging.getLogger('chat_storage.fsck')

Progress = Callable[[int, int], None]
"""`progress(done, total)`, called as the workspaces are checked."""

PAGE = 500


class FindingKind(Enum):
    """What `fsck` can find; `damage` says whether it makes the exit status non-zero."""

    LEGACY_LAYOUT = ('legacy_layout', True)
    BLOB_MISSING = ('blob_missing', True)
    BLOB_SIZE_MISMATCH = ('blob_size_mismatch', True)
    BLOB_SHA256_MISMATCH = ('blob_sha256_mismatch', True)
    BLOB_WRITABLE = ('blob_writable', True)
    HISTORY_SIZE_MISMATCH = ('history_size_mismatch', True)
    FILE_COUNT_MISMATCH = ('file_count_mismatch', True)
    USAGE_MISMATCH = ('usage_mismatch', True)
    VIEW_OUT_OF_STEP = ('view_out_of_step', True)
    ORPHAN_DIRECTORY = ('orphan_directory', True)
    # blobs no row names, older than the grace period: they cost disk, never data
    GARBAGE = ('garbage', False)

    def __init__(self, code: str, damage: bool) -> None:
        self.code = code
        self.damage = damage


# found by reading blobs whole; the check after a repair does not read them again, and
# no repair changes a blob: they stand as found
_HASHED = frozenset(
    {
        FindingKind.BLOB_SIZE_MISMATCH,
        FindingKind.BLOB_SHA256_MISMATCH,
        FindingKind.BLOB_WRITABLE,
    }
)


@dataclass(frozen=True, slots=True)
class Finding:
    kind: FindingKind
    detail: str
    workspace_id: UUID | None = None
    chat_id: UUID | None = None
    name: str | None = None
    repaired: bool = False

    @property
    def key(self) -> tuple[FindingKind, UUID | None, UUID | None, str | None]:
        return (self.kind, self.workspace_id, self.chat_id, self.name)


@dataclass(frozen=True, slots=True)
class WorkspaceTotals:
    workspace_id: UUID
    used_bytes: int
    stored_bytes: int


@dataclass(frozen=True, slots=True)
class FsckReport:
    findings: list[Finding]
    totals: list[WorkspaceTotals]
    chats: int = 0
    files: int = 0
    bytes_hashed: int = 0
    repaired: bool = False

    @property
    def damage_left(self) -> bool:
        return any(f.kind.damage and not f.repaired for f in self.findings)


@dataclass(slots=True)
class _Scan:
    hash_blobs: bool
    findings: list[Finding] = field(default_factory=list)
    totals: list[WorkspaceTotals] = field(default_factory=list)
    chats: int = 0
    files: int = 0
    bytes_hashed: int = 0


@dataclass(frozen=True, slots=True)
class _ChatRows:
    chat: Chat
    files: list[ChatFile]
    segments: list[HistorySegment]


class _Readable:
    """The chunks of a history up to a blob that cannot be read, counted."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self.failed = False
        self.size_bytes = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._chunks:
                self.size_bytes += len(chunk)
                yield chunk
        except DomainError:
            self.failed = True


async def _differs(
    views: ChatViews, chat: Chat, named: dict[str, UUID], history: AsyncIterator[bytes]
) -> list[str]:
    """`views.differs`, leaving out a `history.md` whose stored bytes are damaged (a
    missing or cut blob, reported on its own): its view may be the only good copy."""
    readable = _Readable(history)
    out_of_step = await views.differs(chat.workspace_id, chat.chat_id, named, readable)
    if readable.failed or readable.size_bytes != chat.history_bytes:
        return [name for name in out_of_step if name != HISTORY_FILE_NAME]
    return out_of_step


class CheckStorage:
    """Check every row against the blob area and the chat directories; `repair` fixes
    what needs no guess (views, orphan directories, garbage, counts, usage) and converts
    a previous release's data directory."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        blobs: BlobStore,
        inventory: BlobInventory,
        views: ChatViews,
        publisher: Publisher,
        convert: ConvertLegacy,
        collect: CollectGarbage,
    ) -> None:
        self._uow = uow
        self._blobs = blobs
        self._inventory = inventory
        self._views = views
        self._publisher = publisher
        self._convert = convert
        self._collect = collect

    async def __call__(
        self, *, repair: bool = False, progress: Progress | None = None
    ) -> FsckReport:
        legacy: list[Finding] = []
        if await self._convert.needed():
            detail = 'a data directory of the previous release; start-up or --repair converts it'
            legacy.append(Finding(FindingKind.LEGACY_LAYOUT, detail, repaired=repair))
            if not repair:
                return FsckReport(legacy, [])
            await self._convert()
        scan = await self._scan(hash_blobs=True, progress=progress)
        if not repair:
            return FsckReport(
                legacy + scan.findings, scan.totals, scan.chats, scan.files, scan.bytes_hashed
            )
        await self._repair(scan.findings)
        after = await self._scan(hash_blobs=False, progress=None)
        left = {f.key for f in after.findings} | {f.key for f in scan.findings if f.kind in _HASHED}
        found = [replace(f, repaired=f.key not in left) for f in scan.findings]
        known = {f.key for f in scan.findings}
        found += [f for f in after.findings if f.key not in known]
        return FsckReport(
            legacy + found, after.totals, scan.chats, scan.files, scan.bytes_hashed, repaired=True
        )

    # --- checking ----------------------------------------------------------------------

    async def _scan(self, *, hash_blobs: bool, progress: Progress | None) -> _Scan:
        scan = _Scan(hash_blobs)
        known: set[tuple[UUID, UUID]] = set()
        workspaces = await self._workspaces()
        for done, workspace in enumerate(workspaces, start=1):
            rows = await self._rows_of(workspace.workspace_id)
            stored = 0
            for chat_rows in rows:
                known.add((workspace.workspace_id, chat_rows.chat.chat_id))
                stored += chat_rows.chat.history_bytes + sum(f.size_bytes for f in chat_rows.files)
                await self._check_chat(scan, chat_rows)
            scan.totals.append(
                WorkspaceTotals(workspace.workspace_id, workspace.used_bytes, stored)
            )
            if stored != workspace.used_bytes:
                detail = f'used_bytes {workspace.used_bytes}, stored {stored}'
                scan.findings.append(
                    Finding(FindingKind.USAGE_MISMATCH, detail, workspace.workspace_id)
                )
            if progress is not None:
                progress(done, len(workspaces))
        for workspace_id, chat_id in await self._views.chats():
            if (workspace_id, chat_id) not in known:
                detail = 'a chat directory without a chat'
                scan.findings.append(
                    Finding(FindingKind.ORPHAN_DIRECTORY, detail, workspace_id, chat_id)
                )
        garbage = len(await self._collect.garbage())
        if garbage:
            detail = f'{garbage} blobs no row names, older than the grace period'
            scan.findings.append(Finding(FindingKind.GARBAGE, detail))
        return scan

    async def _workspaces(self) -> list[Workspace]:
        found: list[Workspace] = []
        async with self._uow(write=False) as uow:
            while True:
                after = PageKey(found[-1].created_at, found[-1].workspace_id) if found else None
                page = await uow.workspaces.list_all(limit=PAGE, after=after)
                found.extend(page)
                if len(page) < PAGE:
                    return found

    async def _rows_of(self, workspace_id: UUID) -> list[_ChatRows]:
        rows: list[_ChatRows] = []
        async with self._uow(write=False) as uow:
            chats: list[Chat] = []
            while True:
                after = PageKey(chats[-1].created_at, chats[-1].chat_id) if chats else None
                page = await uow.chats.list_by_workspace_id(workspace_id, limit=PAGE, after=after)
                chats.extend(page)
                if len(page) < PAGE:
                    break
            for chat in chats:
                files = await uow.chat_files.list_by_chat_id(chat.chat_id)
                segments = await uow.history_segments.list_by_chat_id(chat.chat_id)
                rows.append(_ChatRows(chat, files, segments))
        return rows

    async def _check_chat(self, scan: _Scan, rows: _ChatRows) -> None:
        chat = rows.chat
        ids = (chat.workspace_id, chat.chat_id)
        scan.chats += 1
        scan.files += len(rows.files)
        if chat.file_count != len(rows.files):
            detail = f'file_count {chat.file_count}, rows {len(rows.files)}'
            scan.findings.append(Finding(FindingKind.FILE_COUNT_MISMATCH, detail, *ids))
        for chat_file in rows.files:
            await self._check_file(scan, chat, chat_file)
        await self._check_history(scan, rows)
        named = {f.name.value: f.file_id for f in rows.files}
        history = history_chunks(self._blobs, chat, rows.segments)
        out_of_step = await _differs(self._views, chat, named, history)
        if out_of_step:
            detail = 'not the rows at: ' + ', '.join(out_of_step)
            scan.findings.append(Finding(FindingKind.VIEW_OUT_OF_STEP, detail, *ids))

    async def _check_file(self, scan: _Scan, chat: Chat, chat_file: ChatFile) -> None:
        ids = (chat.workspace_id, chat.chat_id, chat_file.name.value)
        if not scan.hash_blobs:
            try:
                await self._blobs.path(chat_file.file_id)
            except StoredContentMissingError:
                scan.findings.append(Finding(FindingKind.BLOB_MISSING, 'gone', *ids))
            return
        state = await self._inventory.inspect(chat_file.file_id)
        if state is None:
            scan.findings.append(Finding(FindingKind.BLOB_MISSING, 'gone', *ids))
            return
        scan.bytes_hashed += state.size_bytes
        if state.size_bytes != chat_file.size_bytes:
            detail = f'{state.size_bytes} bytes, recorded {chat_file.size_bytes}'
            scan.findings.append(Finding(FindingKind.BLOB_SIZE_MISMATCH, detail, *ids))
        if state.sha256 != chat_file.sha256:
            detail = f'sha256 {state.sha256}, recorded {chat_file.sha256}'
            scan.findings.append(Finding(FindingKind.BLOB_SHA256_MISMATCH, detail, *ids))
        if state.writable:
            scan.findings.append(Finding(FindingKind.BLOB_WRITABLE, 'a write bit is set', *ids))

    async def _check_history(self, scan: _Scan, rows: _ChatRows) -> None:
        chat = rows.chat
        ids = (chat.workspace_id, chat.chat_id, HISTORY_FILE_NAME)
        blob_ids = [chat.history_blob_id] + [s.blob_id for s in rows.segments]
        sizes = [s.size_bytes for s in rows.segments if s.blob_id is None]
        for segment in rows.segments:
            if segment.content is not None and len(segment.content) != segment.size_bytes:
                detail = f'a segment of {len(segment.content)} bytes, recorded {segment.size_bytes}'
                scan.findings.append(Finding(FindingKind.HISTORY_SIZE_MISMATCH, detail, *ids))
        for blob_id in blob_ids:
            if blob_id is None:
                continue
            state = await self._inventory.inspect(blob_id)
            if state is None:
                scan.findings.append(Finding(FindingKind.BLOB_MISSING, 'a history blob', *ids))
                return
            scan.bytes_hashed += state.size_bytes if scan.hash_blobs else 0
            sizes.append(state.size_bytes)
            if state.writable and scan.hash_blobs:
                detail = 'a history blob has a write bit'
                scan.findings.append(Finding(FindingKind.BLOB_WRITABLE, detail, *ids))
        if sum(sizes) != chat.history_bytes:
            detail = f'{sum(sizes)} bytes stored, history_bytes {chat.history_bytes}'
            scan.findings.append(Finding(FindingKind.HISTORY_SIZE_MISMATCH, detail, *ids))

    # --- repairing ---------------------------------------------------------------------

    async def _repair(self, findings: list[Finding]) -> None:
        kinds = {f.kind for f in findings}
        for finding in findings:
            ws, chat = finding.workspace_id, finding.chat_id
            if ws is None:
                continue
            if finding.kind is FindingKind.FILE_COUNT_MISMATCH and chat is not None:
                await self._recount(ws, chat)
            elif finding.kind is FindingKind.USAGE_MISMATCH:
                await self._reset_usage(ws)
        for finding in findings:
            ws, chat = finding.workspace_id, finding.chat_id
            if ws is None or chat is None:
                continue
            if finding.kind in {FindingKind.VIEW_OUT_OF_STEP, FindingKind.FILE_COUNT_MISMATCH}:
                await self._republish(ws, chat)
            elif finding.kind is FindingKind.ORPHAN_DIRECTORY:
                await self._remove_orphan(ws, chat)
        if FindingKind.GARBAGE in kinds:
            await self._collect()

    async def _republish(self, workspace_id: UUID, chat_id: UUID) -> None:
        """Publish the chat; when some name cannot be published (its blob is gone), every
        other name still is, and the view's file at that name is left as it is (it may be
        the only copy of the lost blob). What stays out of step is reported by the check
        that follows the repair."""
        try:
            await self._publisher.chat(workspace_id, chat_id)
        except DomainError:
            logger.warning('fsck: a chat cannot be published whole; publishing it name by name')
        else:
            return
        async with self._uow(write=False) as uow:
            chat, segments = await uow.history_segments.history(chat_id)
            files = [] if chat is None else await uow.chat_files.list_by_chat_id(chat_id)
        if chat is None or chat.workspace_id != workspace_id:
            return
        named = {f.name.value: f.file_id for f in files}
        await self._views.ensure_chat(workspace_id, chat_id)
        history = history_chunks(self._blobs, chat, segments)
        out_of_step = await _differs(self._views, chat, named, history)
        for name in out_of_step:
            if name == HISTORY_FILE_NAME:
                await self._publisher.history(workspace_id, chat)
            elif name in named:
                # logs and leaves a name whose blob cannot be shown
                await self._publisher.file(workspace_id, chat_id, ChatAttachmentName(name))
            else:
                await self._views.hide_file(workspace_id, chat_id, name)

    async def _recount(self, workspace_id: UUID, chat_id: UUID) -> None:
        async with self._uow() as uow:
            if await lock_workspace(uow, workspace_id) is None:
                return
            chat = await uow.chats.get(chat_id)
            if chat is None:
                return
            count = len(await uow.chat_files.list_by_chat_id(chat_id))
            if count != chat.file_count:
                await uow.chats.save(replace(chat, file_count=count))
                await uow.commit()

    async def _reset_usage(self, workspace_id: UUID) -> None:
        async with self._uow() as uow:
            workspace = await lock_workspace(uow, workspace_id)
            if workspace is None:
                return
            stored = await uow.inventory.workspace_stored_bytes(workspace_id)
            if stored != workspace.used_bytes:
                await uow.workspaces.save(replace(workspace, used_bytes=stored))
                await uow.commit()

    async def _remove_orphan(self, workspace_id: UUID, chat_id: UUID) -> None:
        async with self._uow(write=False) as uow:
            chat = await uow.chats.get(chat_id)
        if chat is None:
            await self._publisher.chat(workspace_id, chat_id)
        elif chat.workspace_id != workspace_id:
            await self._views.remove_chat(workspace_id, chat_id)
