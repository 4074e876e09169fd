"""`chat-storage fsck [--repair]`: runs `CheckStorage` and prints its report (ADR 027).

Exit status: 0 when no damage is left, 1 when damage is left (or was found and not
repaired), 2 on a usage or configuration error.
"""

import asyncio
import sys
from typing import TextIO

from adapter.blob_store import BlobStore
from adapter.chat_view import ChatViews
from adapter.legacy_layout import LegacyLayout
from api.settings import Settings, metadata_config
from domain.error import DomainError, ServiceUnavailableError
from repository.factory import create_metadata_backend
from usecase.collect_garbage import CollectGarbage
from usecase.convert_legacy import ConvertLegacy
from usecase.fsck import CheckStorage, FsckReport
from usecase.publish import Publisher

EXIT_CLEAN = 0
EXIT_DAMAGE = 1
EXIT_USAGE = 2
BAR_WIDTH = 30


class ProgressBar:
    """A one-line bar redrawn in place on a terminal stream (stderr)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        filled = BAR_WIDTH * done // total if total else BAR_WIDTH
        bar = '#' * filled + '.' * (BAR_WIDTH - filled)
        self._stream.write(f'\rchecking [{bar}] {done}/{total}')
        self._stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn:
            self._stream.write('\n')
            self._stream.flush()


async def _check(settings: Settings, *, repair: bool, progress: ProgressBar) -> FsckReport:
    backend = create_metadata_backend(metadata_config(settings))
    await backend.connect()
    try:
        await backend.migrate()
        uow = backend.unit_of_work
        blobs = BlobStore(settings.data_dir)
        views = ChatViews(settings.data_dir)
        check = CheckStorage(
            uow,
            blobs,
            blobs,
            views,
            Publisher(uow, blobs, views),
            ConvertLegacy(uow, blobs, LegacyLayout(settings.data_dir)),
            CollectGarbage(uow, blobs, settings.garbage_grace_seconds),
        )
        return await check(repair=repair, progress=progress)
    finally:
        await backend.close()


def _print_report(report: FsckReport, out: TextIO) -> None:
    out.write(
        f'checked {len(report.totals)} workspaces, {report.chats} chats, '
        f'{report.files} files, {report.bytes_hashed} bytes hashed\n'
    )
    for finding in report.findings:
        level = 'DAMAGE' if finding.kind.damage else 'NOTICE'
        where = ' '.join(
            f'{label}={value}'
            for label, value in (
                ('workspace', finding.workspace_id),
                ('chat', finding.chat_id),
                ('name', finding.name),
            )
            if value is not None
        )
        state = ' [repaired]' if finding.repaired else ''
        head = ' '.join(part for part in (level, finding.kind.code, where) if part)
        out.write(f'{head}: {finding.detail}{state}\n')
    out.write('usage per workspace:\n')
    for totals in report.totals:
        state = 'ok' if totals.used_bytes == totals.stored_bytes else 'MISMATCH'
        out.write(
            f'  {totals.workspace_id} used_bytes={totals.used_bytes} '
            f'stored={totals.stored_bytes} {state}\n'
        )
    damage = [f for f in report.findings if f.kind.damage]
    repaired = sum(f.repaired for f in damage)
    if not damage:
        out.write('result: clean\n')
    else:
        out.write(
            f'result: {len(damage)} damage finding(s), {repaired} repaired, '
            f'{len(damage) - repaired} left\n'
        )


def run_fsck(
    settings: Settings,
    *,
    repair: bool,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Check (and with `repair` fix) the store the settings name; the exit status."""
    if settings.metadata_backend == 'memory':
        err.write('chat-storage fsck: the memory metadata backend keeps nothing to check\n')
        return EXIT_USAGE
    if not settings.data_dir.is_dir():
        err.write(f'chat-storage fsck: no data directory at {settings.data_dir}\n')
        return EXIT_USAGE
    if settings.metadata_backend == 'sqlite' and not settings.resolved_sqlite_path.is_file():
        err.write(f'chat-storage fsck: no SQLite file at {settings.resolved_sqlite_path}\n')
        return EXIT_USAGE
    progress = ProgressBar(err)
    try:
        report = asyncio.run(_check(settings, repair=repair, progress=progress))
    except (DomainError, OSError) as error:
        progress.finish()
        # the store's own reason (connection refused, no such database, ...), no secret
        reason = error.reason if isinstance(error, ServiceUnavailableError) else None
        detail = f'{type(error).__name__} {error}' + (f': {reason}' if reason else '')
        err.write(f'chat-storage fsck: cannot check: {detail}\n')
        return EXIT_USAGE
    progress.finish()
    _print_report(report, out)
    return EXIT_DAMAGE if report.damage_left else EXIT_CLEAN
