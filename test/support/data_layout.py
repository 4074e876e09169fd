"""Where the service keeps things in a data directory, for tests that look at it."""

from pathlib import Path

BLOBS = '.blobs'
# marks the maintenance tasks keep in the blob area; not blobs
_MARKS = frozenset({'views-swept-at'})


def chat_dirs(data_dir: Path) -> list[Path]:
    """The chat directories `<data>/workspaces/<workspace_id>/chats/<chat_id>/`."""
    return sorted(data_dir.glob('workspaces/*/chats/*'))


def chat_dir(data_dir: Path) -> Path:
    """The one chat directory of the data directory."""
    dirs = chat_dirs(data_dir)
    assert len(dirs) == 1, dirs
    return dirs[0]


def blob_area(data_dir: Path) -> set[str]:
    """Every file in the blob area (blobs and staging names), relative to it: a refused or
    failed write leaves it as it was."""
    area = data_dir / BLOBS
    if not area.exists():
        return set()
    return {
        str(path.relative_to(area))
        for path in area.rglob('*')
        if not path.is_dir() and path.name not in _MARKS
    }


def staging_entries(data_dir: Path) -> set[str]:
    """Staging names left in the blob area (`.blobs/tmp`): none once a write is over."""
    tmp = data_dir / BLOBS / 'tmp'
    return {entry.name for entry in tmp.iterdir()} if tmp.exists() else set()


def blob_name(blob_id: str) -> str:
    """Where the blob `blob_id` (a file's `file_id`) is in the blob area."""
    hex_id = blob_id.replace('-', '').lower()
    return f'{hex_id[:2]}/{hex_id}'
