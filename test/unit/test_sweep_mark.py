"""`FileSweepMarks` on a real directory."""

from datetime import UTC, datetime
from pathlib import Path

from adapter.sweep_mark import FileSweepMarks


async def test_a_mark_survives_a_new_instance_and_leaves_no_temporary(tmp_path: Path) -> None:
    marks = FileSweepMarks(tmp_path)
    assert await marks.last() is None
    started = datetime(2026, 4, 1, 12, 0, 0, 123456, tzinfo=UTC)

    await marks.record(started)

    assert await FileSweepMarks(tmp_path).last() == started
    assert [p.name for p in (tmp_path / '.blobs').iterdir()] == ['views-swept-at']


async def test_an_unreadable_mark_counts_as_none(tmp_path: Path) -> None:
    marks = FileSweepMarks(tmp_path)
    marks.path.parent.mkdir()
    marks.path.write_text('not a time')
    assert await marks.last() is None
    marks.path.write_text('2026-04-01T12:00:00')
    assert await marks.last() is None
