"""Crash safety: SIGKILL a real server under concurrent writers, restart, check everything.

Writer threads (one user each) upload through both routes, replace files, put and append
history, delete files, clear chats and delete chats. The server is killed with SIGKILL at
random moments (`CRASH_SEED`, `CRASH_KILLS`) and restarted on the same data directory;
the rows are the only commit point (ADR 027), and start-up must leave a store where:

- every acknowledged write reads back byte for byte, every acknowledged delete stayed;
- an operation in flight at the kill is all or nothing;
- every record's blob is there, each chat directory is the view of its rows (attachments
  hard links of their blobs, `history.md` the committed history), `used_bytes` is the sum
  of the stored bytes;
- once the last server is stopped and the garbage collected, the blob area holds the
  records' blobs and at most one history blob per chat, and nothing staged.

Each server is `chat-storage serve`. By default it is forked from a parent that has
imported the service once (`CRASH_FORK=1`), so that a restart costs a fraction of a
second instead of the seconds of Python imports; `CRASH_FORK=0` execs the console
script every time, as `ServerProcess` always does.
"""

import functools
import os
import random
import signal
import string
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

import httpx
import pytest
from e2e_support import (
    ROOT,
    Caller,
    Json,
    ServerProcess,
    blob_area,
    blob_path,
    sha256,
    staging_entries,
)

pytestmark = pytest.mark.e2e

SEED = int(os.environ.get('CRASH_SEED', '20261123'))
KILLS = int(os.environ.get('CRASH_KILLS', '50'))
FORK = os.environ.get('CRASH_FORK', '1') != '0'
WRITERS = 3
CHATS_PER_WRITER = 2
NAMES = ('a.bin', 'b.txt', 'c d.dat')
MAX_FILE_BYTES = 4 * 1024 * 1024
QUOTA_BYTES = 1 << 30
KIB = 1024

# what a name or a history may hold after an operation of unknown outcome
Versions = set[bytes | None]


@dataclass
class ChatModel:
    """What a chat must hold; an entry of several versions is settled at the next check."""

    history: set[bytes]
    files: dict[str, Versions] = field(default_factory=dict)
    may_be_deleted: bool = False
    # names cleared together by an unsettled `DELETE …/files`: all gone or all kept
    cleared_together: set[str] = field(default_factory=set)


@dataclass
class Writer:
    caller: Caller
    rng: random.Random
    chats: dict[str, ChatModel] = field(default_factory=dict)
    file_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    may_have_new_chat: bool = False
    operations: int = 0
    uncertain: int = 0


def _content(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.7:
        size = rng.randint(KIB, 32 * KIB)
    elif roll < 0.95:
        size = rng.randint(32 * KIB, 256 * KIB)
    else:
        size = rng.randint(256 * KIB, 2 * 1024 * KIB)
    return rng.randbytes(size)


def _text(rng: random.Random) -> bytes:
    return ''.join(rng.choices(string.ascii_letters + ' \n', k=rng.randint(10, 3000))).encode()


def _settled(versions: Versions) -> bytes | None:
    [only] = versions
    return only


# --- the writers ----------------------------------------------------------------------------


def _operation(writer: Writer) -> Callable[[], None]:  # noqa: PLR0911 - one per kind
    """One random operation; raises `httpx.TransportError` when the server dies under it."""
    rng = writer.rng
    if len(writer.chats) < CHATS_PER_WRITER:
        return lambda: _create_chat(writer)
    chat_id = rng.choice(sorted(writer.chats))
    chat = writer.chats[chat_id]
    roll = rng.random()
    if roll < 0.25:
        name = rng.choice(NAMES)
        return lambda: _upload(writer, chat_id, name, _content(rng), multipart=False)
    if roll < 0.45:
        name = rng.choice(NAMES)
        return lambda: _upload(writer, chat_id, name, _content(rng), multipart=True)
    if roll < 0.55:
        return lambda: _history(writer, chat_id, _text(rng), append=False)
    if roll < 0.72:
        return lambda: _history(writer, chat_id, _text(rng), append=True)
    present = [n for n, v in chat.files.items() if _settled(v) is not None]
    if roll < 0.88 and present:
        name = rng.choice(present)
        return lambda: _delete_file(writer, chat_id, name)
    if roll < 0.95:
        return lambda: _clear(writer, chat_id)
    return lambda: _delete_chat(writer, chat_id)


def _create_chat(writer: Writer) -> None:
    writer.may_have_new_chat = True
    response = writer.caller.http.post('/v1/chats', json={'title': 'crash'})
    assert response.status_code == 201, response.text
    writer.chats[response.json()['chat_id']] = ChatModel(history={b''})
    writer.may_have_new_chat = False


def _upload(writer: Writer, chat_id: str, name: str, data: bytes, *, multipart: bool) -> None:
    chat = writer.chats[chat_id]
    before = chat.files.get(name, {None})
    chat.files[name] = {*before, data}
    if multipart:
        response = writer.caller.http.post(
            f'/v1/chats/{chat_id}/files', data={'name': name}, files={'file': ('x', data)}
        )
    else:
        response = writer.caller.put_file(chat_id, name, data)
    assert response.status_code in {200, 201}, response.text
    assert response.json()['sha256'] == sha256(data)
    chat.files[name] = {data}
    writer.file_ids[chat_id, name] = response.json()['file_id']


def _history(writer: Writer, chat_id: str, block: bytes, *, append: bool) -> None:
    chat = writer.chats[chat_id]
    [old] = chat.history
    new = old + block if append else block
    chat.history = {old, new}
    path = f'/v1/chats/{chat_id}/history'
    http = writer.caller.http
    response = http.post(path, content=block) if append else http.put(path, content=block)
    assert response.status_code in {200, 201}, response.text
    chat.history = {new}


def _delete_file(writer: Writer, chat_id: str, name: str) -> None:
    chat = writer.chats[chat_id]
    chat.files[name] = {*chat.files[name], None}
    file_id = writer.file_ids[chat_id, name]
    response = writer.caller.http.delete(f'/v1/chats/{chat_id}/files/{file_id}')
    assert response.status_code == 204, response.text
    chat.files[name] = {None}


def _clear(writer: Writer, chat_id: str) -> None:
    chat = writer.chats[chat_id]
    present = {n for n, v in chat.files.items() if _settled(v) is not None}
    chat.cleared_together = present
    for name in present:
        chat.files[name] = {*chat.files[name], None}
    response = writer.caller.http.delete(f'/v1/chats/{chat_id}/files')
    assert response.status_code == 204, response.text
    for name in present:
        chat.files[name] = {None}
    chat.cleared_together = set()


def _delete_chat(writer: Writer, chat_id: str) -> None:
    writer.chats[chat_id].may_be_deleted = True
    response = writer.caller.http.delete(f'/v1/chats/{chat_id}')
    assert response.status_code == 204, response.text
    del writer.chats[chat_id]


def _work(writer: Writer, errors: list[BaseException]) -> None:
    """Operations one after another until the server goes away under one of them."""
    try:
        while True:
            operation = _operation(writer)
            try:
                operation()
            except httpx.TransportError:
                writer.uncertain += 1
                return
            writer.operations += 1
    except BaseException as error:  # noqa: BLE001 - handed to the main thread
        errors.append(error)


# --- the checks after a restart -----------------------------------------------------------


def _check_writer(writer: Writer, data_dir: Path) -> None:
    """Compare the server with the model, settle every open version, check the disk."""
    http = writer.caller.http
    workspace = writer.caller.workspace()
    listed = http.get('/v1/chats', params={'limit': 200}).json()['items']
    on_server = {item['chat_id'] for item in listed}
    for chat_id in sorted(set(writer.chats) - on_server):
        assert writer.chats[chat_id].may_be_deleted, f'acknowledged chat {chat_id} is gone'
        del writer.chats[chat_id]
    for chat_id in sorted(on_server - set(writer.chats)):
        # a create in flight at the kill: all or nothing, so empty
        assert writer.may_have_new_chat, f'unknown chat {chat_id}'
        writer.chats[chat_id] = ChatModel(history={b''})
    writer.may_have_new_chat = False
    stored = 0
    for chat_id, chat in writer.chats.items():
        stored += _check_chat(writer, chat_id, chat, data_dir)
    workspace_dir = data_dir / 'workspaces' / workspace['workspace_id'] / 'chats'

    def on_disk() -> set[str]:
        return {p.name for p in workspace_dir.iterdir()} if workspace_dir.exists() else set()

    # the sweep of a restarted process removes directories no chat row names while it serves
    deadline = time.monotonic() + VIEW_SECONDS
    while on_disk() != set(writer.chats) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert on_disk() == set(writer.chats), 'chat directories and chats differ'
    assert writer.caller.used_bytes() == stored


def _check_chat(writer: Writer, chat_id: str, chat: ChatModel, data_dir: Path) -> int:
    """Check one chat against its model and the disk; the bytes it stores."""
    history = writer.caller.history(chat_id)
    assert history in chat.history, f'history of {chat_id} is no version written'
    chat.history = {history}
    chat.may_be_deleted = False
    records = {r['name']: r for r in writer.caller.files(chat_id)}
    for name in sorted(set(records) - set(chat.files)):
        pytest.fail(f'{chat_id}/{name} was never uploaded')
    kept: set[str] = set()
    for name, versions in chat.files.items():
        record = records.get(name)
        if record is None:
            assert None in versions, f'acknowledged {chat_id}/{name} is gone'
            chat.files[name] = {None}
            continue
        data = writer.caller.content(chat_id, record['file_id'])
        assert sha256(data) == record['sha256']
        assert data in versions, f'{chat_id}/{name} holds bytes never acknowledged'
        chat.files[name] = {data}
        writer.file_ids[chat_id, name] = record['file_id']
        kept.add(name)
    if chat.cleared_together:
        assert kept & chat.cleared_together in (set(), chat.cleared_together), 'half cleared'
        chat.cleared_together = set()
    for name, record in records.items():
        assert blob_path(data_dir, record['file_id']).is_file(), f'{chat_id}/{name} has no blob'
    chat_dir = writer.caller.chat_dir({'workspace_id': _workspace_id(writer), 'chat_id': chat_id})
    # the sweep of a restarted process brings the directory to the rows while it serves
    deadline = time.monotonic() + VIEW_SECONDS
    while (wrong := _view_differs(chat_dir, data_dir, history, records)) is not None:
        assert time.monotonic() < deadline, f'{chat_id}: {wrong}'
        time.sleep(0.05)
    return len(history) + sum(int(r['size_bytes']) for r in records.values())


def _view_differs(
    chat_dir: Path, data_dir: Path, history: bytes, records: dict[str, Json]
) -> str | None:
    """How the chat directory is not the rows' view; None when it is."""
    entries = {p.name: p for p in chat_dir.iterdir()} if chat_dir.is_dir() else {}
    if set(entries) != {'history.md', *records}:
        return 'chat directory and rows differ'
    if entries['history.md'].read_bytes() != history:
        return 'history.md is not the history'
    for name, record in records.items():
        entry = entries[name]
        if entry.is_symlink() or not entry.samefile(blob_path(data_dir, record['file_id'])):
            return f'{name} is not its blob'
    return None


# how long a restarted process may take to bring a chat directory to its rows
VIEW_SECONDS = 10.0
_WORKSPACE_IDS: dict[str, str] = {}


def _workspace_id(writer: Writer) -> str:
    key = str(writer.caller.user_id)
    if key not in _WORKSPACE_IDS:
        _WORKSPACE_IDS[key] = writer.caller.workspace()['workspace_id']
    return _WORKSPACE_IDS[key]


# the parent: imports what `chat-storage serve` imports, then forks one server per line
# (the line names the child's stderr log) and answers with the child's pid
LAUNCHER = """
import os, signal, sys
import api.app, api.cli
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        log = os.open(line.strip(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.dup2(log, 2)
        os._exit(api.cli.main(['serve']))
    print(pid, flush=True)
"""


class _ForkedChild:
    """The part of `subprocess.Popen` that `ServerProcess` uses, for a forked pid."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                self.returncode = -1
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired('server', timeout or 0)
            time.sleep(0.01)
        return -1


class ForkedServer(ServerProcess):
    """`ServerProcess` whose servers are forked by `LAUNCHER` instead of exec'd."""

    def __init__(
        self, data_dir: Path, log_dir: Path, backend: str, extra_env: dict[str, str]
    ) -> None:
        super().__init__(data_dir, log_dir, backend=backend, extra_env=extra_env)
        self.launcher = subprocess.Popen(
            [str(ROOT / '.venv' / 'bin' / 'python'), '-c', LAUNCHER],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def start(self) -> None:
        assert self.process is None, 'already running'
        self.process = cast('subprocess.Popen[bytes]', self._fork())
        self._wait_until_healthy()

    def _fork(self) -> _ForkedChild:
        self.starts += 1
        self.stderr_path = self.log_dir / f'stderr-{self.starts}.log'
        stdin = cast('IO[str]', self.launcher.stdin)
        stdin.write(f'{self.stderr_path}\n')
        stdin.flush()
        return _ForkedChild(int(cast('IO[str]', self.launcher.stdout).readline()))

    def start_and_kill(self, delay: float) -> None:
        """Start a server and SIGKILL it after `delay` seconds, healthy or not."""
        child = self._fork()
        time.sleep(delay)
        workers = _descendants(child.pid)
        child.kill()
        child.wait()
        _wait_for_workers_to_die(workers)

    def close(self) -> None:
        self.stop()
        self.launcher.kill()
        self.launcher.wait()


def _in_threads(calls: list[Callable[[], None]]) -> None:
    """Run the calls at once (each writer's check is its own user's); re-raise a failure."""
    failures: list[BaseException] = []

    def run(call: Callable[[], None]) -> None:
        try:
            call()
        except BaseException as failure:  # noqa: BLE001 - handed to the main thread
            failures.append(failure)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def _descendants(pid: int) -> set[int]:
    """The processes `pid` started (its workers), and theirs, as /proc has them now."""
    children: dict[int, set[int]] = {}
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            fields = stat.read_text().rsplit(')', 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), set()).add(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), set()) - found:
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except OSError:
        return False
    return state not in {'Z', 'X'}


def _wait_for_workers_to_die(workers: set[int]) -> None:
    """Until the workers of a killed server are gone: they die with it (SIGKILL on their
    parent's death), a moment after it; one still running could commit after the check."""
    deadline = time.monotonic() + 10.0
    while alive := {pid for pid in workers if _alive(pid)}:
        assert time.monotonic() < deadline, f'workers {sorted(alive)} are still running'
        time.sleep(0.01)


def _kill(server: ServerProcess) -> None:
    process, server.process = server.process, None
    assert process is not None
    workers = _descendants(process.pid)
    process.kill()
    process.wait()
    _wait_for_workers_to_die(workers)


def _fsck(data_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / '.venv' / 'bin' / 'python'), '-m', 'api.cli', 'fsck'],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _check_garbage_is_collected(server: ServerProcess, writers: list[Writer]) -> None:
    """A start-up with a short grace period, once every blob is older than it, leaves the
    records' blobs and at most one history blob per chat: a kill leaks nothing for good."""
    grace = 1.0
    time.sleep(grace + 0.5)
    log_dir = server.log_dir / 'collected'
    log_dir.mkdir()
    final = ServerProcess(server.data_dir, log_dir, backend=server.backend)
    final.env = {
        **server.env,
        'STORAGE_PORT': str(final.port),
        'STORAGE_GARBAGE_GRACE_SECONDS': str(grace),
    }
    named = {
        str(
            blob_path(server.data_dir, w.file_ids[chat_id, name]).relative_to(
                server.data_dir / '.blobs'
            )
        )
        for w in writers
        for chat_id, chat in w.chats.items()
        for name, versions in chat.files.items()
        if _settled(versions) is not None
    }
    chats = sum(len(w.chats) for w in writers)

    def collected() -> bool:
        left = blob_area(server.data_dir) - named
        return not staging_entries(server.data_dir) and len(left) <= chats

    with final:
        # the collection runs as soon as the process serves
        deadline = time.monotonic() + VIEW_SECONDS
        while not collected() and time.monotonic() < deadline:
            time.sleep(0.1)
    assert staging_entries(server.data_dir) == set(), 'staged blobs survive the collection'
    blobs = blob_area(server.data_dir)
    assert named <= blobs, 'a record lost its blob'
    assert len(blobs - named) <= chats, f'{len(blobs - named)} blobs for {chats} histories'


@pytest.fixture(params=['sqlite', pytest.param('postgres', marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, str], int]:
    """The metadata backend, its settings and the number of kills (fewer on PostgreSQL)."""
    if request.param == 'sqlite':
        return 'sqlite', {}, KILLS
    make_database: Callable[[], str] = request.getfixturevalue('make_postgres_database')
    return 'postgres', {'STORAGE_POSTGRES_DSN': make_database()}, max(1, KILLS // 5)


def test_sigkill_under_concurrent_writers_loses_nothing_acknowledged(
    tmp_path: Path, backend: tuple[str, dict[str, str], int]
) -> None:
    backend_name, backend_env, kills = backend
    print(  # noqa: T201
        f'\ncrash test on {backend_name}: CRASH_SEED={SEED} kills={kills} CRASH_FORK={int(FORK)}'
    )
    rng = random.Random(SEED)  # noqa: S311 - a reproducible schedule, not a secret
    env = {
        'STORAGE_MAX_FILE_BYTES': str(MAX_FILE_BYTES),
        'STORAGE_DEFAULT_QUOTA_BYTES': str(QUOTA_BYTES),
        **backend_env,
    }
    server = (
        ForkedServer(tmp_path / 'data', tmp_path, backend_name, env)
        if FORK
        else ServerProcess(tmp_path / 'data', tmp_path, backend=backend_name, extra_env=env)
    )
    server.start()
    seeds = [rng.getrandbits(64) for _ in range(WRITERS)]
    writers = [Writer(Caller(server), random.Random(seed)) for seed in seeds]  # noqa: S311
    started = time.monotonic()
    early_kills = 0
    try:
        for writer in writers:
            writer.caller.workspace()
        for kill in range(kills):
            errors: list[BaseException] = []
            threads = [
                threading.Thread(target=_work, args=(writer, errors), daemon=True)
                for writer in writers
            ]
            for thread in threads:
                thread.start()
            time.sleep(rng.uniform(0.02, 0.6))
            _kill(server)
            for thread in threads:
                thread.join(timeout=60)
                assert not thread.is_alive()
            assert not errors, f'kill {kill}: {errors[0]!r}'
            if isinstance(server, ForkedServer) and rng.random() < 0.15:
                # a crash during start-up recovery: the next recovery must finish its work
                server.start_and_kill(rng.uniform(0.0, 0.8))
                early_kills += 1
            server.start()
            _in_threads([functools.partial(_check_writer, w, server.data_dir) for w in writers])
        server.stop()
        _check_garbage_is_collected(server, writers)
        checked = _fsck(server.data_dir, server.env)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert 'result: clean' in checked.stdout
    finally:
        if isinstance(server, ForkedServer):
            server.close()
        server.stop()
        for writer in writers:
            writer.caller.close()
    operations = sum(w.operations for w in writers)
    uncertain = sum(w.uncertain for w in writers)
    print(  # noqa: T201
        f'crash test: {kills} kills (+{early_kills} during start-up), '
        f'{operations} acknowledged operations, '
        f'{uncertain} cut by a kill, {time.monotonic() - started:.1f} s'
    )
    assert operations > kills
