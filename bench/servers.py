"""What the bench starts on 127.0.0.1 and always stops: the service, nginx, a PostgreSQL database.

The service is started only through its console script `chat-storage serve`, so the
server it runs (and its worker model) is what gets measured. The bare route of
`bench/bare_app.py` (the service's app plus the bare route) is what that command serves,
through its `--app` option (`ServiceLaunch`, the one place that knows how).
"""

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from bench import BARE_PATH

ROOT = Path(__file__).resolve().parents[1]
HOST = '127.0.0.1'
BARE_FACTORY = 'bench.bare_app:create_app'
STARTUP_SECONDS = 60.0
SHUTDOWN_SECONDS = 15.0


class BenchError(Exception):
    """The bench cannot go on (a tool is missing, a server did not start, ...)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def require_tool(name: str) -> str:
    path = shutil.which(name) or (
        f'/usr/sbin/{name}' if Path(f'/usr/sbin/{name}').exists() else None
    )
    if path is None:
        raise BenchError(f'{name} is not installed (apt-get install -y nginx-light wrk)')
    return path


# --- resident memory of a process tree ----------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f'/proc/{pid}/task').iterdir():
            with contextlib.suppress(OSError):
                found.extend(int(child) for child in (task / 'children').read_text().split())
    return found


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (uvicorn's or granian's worker processes)."""
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(_children(current))
    return tree


def _status_kib(pid: int, field: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f'/proc/{pid}/status').read_text().splitlines():
            if line.startswith(f'{field}:'):
                return int(line.split()[1])
    return 0


def tree_rss_bytes(pid: int) -> list[int]:
    """Resident memory (VmRSS) of `pid` and of each of its descendants now."""
    return [_status_kib(member, 'VmRSS') * 1024 for member in process_tree(pid)]


def _pss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f'/proc/{pid}/smaps_rollup').read_text().splitlines():
            if line.startswith('Pss:'):
                return int(line.split()[1])
    return 0


def tree_pss_bytes(pid: int) -> int:
    """Proportional set size of `pid` and its descendants now: each shared page (the
    server's libraries, mapped by the parent and every worker) counted once in all, where
    the sum of VmRSS counts it in every process that maps it."""
    return sum(_pss_kib(member) * 1024 for member in process_tree(pid))


# --- a child process that is always stopped -------------------------------------------


class ManagedProcess:
    """A child in its own session, logging to a file; `stop()` ends it and its workers."""

    def __init__(
        self, name: str, command: list[str], env: Mapping[str, str], log_dir: Path
    ) -> None:
        self.name = name
        self.command = command
        self.env = dict(env)
        self.log_path = log_dir / f'{name}.log'
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchError(f'{self.name} is not running')
        return self.process.pid

    def start(self) -> None:
        with self.log_path.open('ab') as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ''
        return '\n'.join(self.log_path.read_text(errors='replace').splitlines()[-lines:])

    def check_running(self) -> None:
        if self.process is None or self.process.poll() is not None:
            code = None if self.process is None else self.process.returncode
            raise BenchError(f'{self.name} exited ({code}):\n{self.log_tail()}')

    def stop(self) -> None:
        """SIGTERM to the child, then SIGKILL to its session (its workers) if it lingers."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=SHUTDOWN_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # workers that outlived their parent belong to the same session
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def wait_for_http(url: str, server: ManagedProcess, seconds: float = STARTUP_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        server.check_running()
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.1)
    raise BenchError(
        f'{server.name} did not answer {url} within {seconds:.0f} s:\n{server.log_tail()}'
    )


# --- the service ------------------------------------------------------------------------


def chat_storage_script() -> list[str]:
    script = ROOT / '.venv' / 'bin' / 'chat-storage'
    if script.exists():
        return [str(script)]
    found = shutil.which('chat-storage')
    if found is None:
        raise BenchError('the chat-storage console script is not installed (make install)')
    return [found]


@dataclass(frozen=True, slots=True)
class ServiceLaunch:
    """`chat-storage serve --app bench.bare_app:create_app`: the service with the bare route."""

    workers: int

    @classmethod
    def detect(cls, workers: int) -> Self:
        """Refuses a `chat-storage serve` without `--app`: the bare route must be served by
        the same server as the service, or the ratios would compare two servers."""
        help_text = subprocess.run(
            [*chat_storage_script(), 'serve', '--help'],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=ROOT,
        ).stdout
        if '--app' not in help_text:
            raise BenchError('chat-storage serve has no --app option to serve the bare route')
        return cls(workers=workers)

    def service_command(self) -> list[str]:
        return [
            *chat_storage_script(),
            'serve',
            '--workers',
            str(self.workers),
            '--app',
            BARE_FACTORY,
        ]

    def describe(self) -> str:
        return 'chat-storage ' + ' '.join(self.service_command()[1:])


def service_env(overrides: Mapping[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith('STORAGE_')}
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(ROOT), env.get('PYTHONPATH')]))
    env.update(overrides)
    return env


class ServiceServer:
    """`chat-storage serve` on one backend and data directory, until `stop()`."""

    def __init__(
        self,
        launch: ServiceLaunch,
        storage_env: Mapping[str, str],
        log_dir: Path,
        *,
        name: str = 'service',
    ) -> None:
        self.port = free_port()
        env = service_env({**storage_env, 'STORAGE_HOST': HOST, 'STORAGE_PORT': str(self.port)})
        self.process = ManagedProcess(name, launch.service_command(), env, log_dir)

    @property
    def base_url(self) -> str:
        return f'http://{HOST}:{self.port}'

    @property
    def pid(self) -> int:
        return self.process.pid

    def __enter__(self) -> Self:
        self._start()
        return self

    def _start(self) -> None:
        self.process.start()
        try:
            wait_for_http(f'{self.base_url}/readyz', self.process)
            # the bare route must answer, or its figure would count 404s
            wait_for_http(f'{self.base_url}{BARE_PATH}', self.process, seconds=5.0)
        except BaseException:
            self.process.stop()
            raise

    def restart(self) -> float:
        """Stop, start again on the same data, and return the seconds until it was ready:
        start-up, migrations and recovery (ADR 016), which reads the whole store."""
        self.process.stop()
        started = time.monotonic()
        self._start()
        return time.monotonic() - started

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.process.stop()


# --- nginx: the reference -------------------------------------------------------------

NGINX_CONF = """\
{user}worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/access.log;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    client_max_body_size 0;
    client_body_temp_path {body_dir};
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen {host}:{port};
        location /data/ {{ alias {data_dir}/; }}
        location /put/ {{
            alias {put_dir}/;
            dav_methods PUT DELETE;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
        }}
        location = /nginx/bare {{ return 200 '{{"status":"ok"}}'; }}
    }}
}}
"""


class NginxServer:
    """nginx serving `data_dir` under /data/ and taking WebDAV PUTs into `put_dir` under /put/.

    Its body buffers (`client_body_temp_path`) sit on the same file system as `put_dir`, so
    a PUT is written once and renamed into place, as the service does (without fsync).
    """

    def __init__(self, data_dir: Path, work_dir: Path, log_dir: Path, *, workers: int) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.prefix = work_dir / 'nginx'
        self.put_dir = work_dir / 'nginx-put'
        body_dir = work_dir / 'nginx-body'
        for directory in (self.prefix, self.put_dir, body_dir):
            directory.mkdir(parents=True, exist_ok=True)
        conf = self.prefix / 'nginx.conf'
        conf.write_text(
            NGINX_CONF.format(
                # root's workers would switch to `nobody`, who cannot read our 0700 dirs
                user='user root;\n' if os.geteuid() == 0 else '',
                workers=workers,
                prefix=self.prefix,
                body_dir=body_dir,
                host=HOST,
                port=self.port,
                data_dir=data_dir,
                put_dir=self.put_dir,
            )
        )
        command = [
            require_tool('nginx'),
            '-p',
            str(self.prefix),
            '-c',
            str(conf),
            '-e',
            str(self.prefix / 'error.log'),
            '-g',
            'daemon off;',
        ]
        self.process = ManagedProcess('nginx', command, os.environ, log_dir)

    @property
    def base_url(self) -> str:
        return f'http://{HOST}:{self.port}'

    def data_url(self, path: Path) -> str:
        return f'{self.base_url}/data/{path.relative_to(self.data_dir).as_posix()}'

    def __enter__(self) -> Self:
        self.process.start()
        try:
            wait_for_http(f'{self.base_url}/nginx/bare', self.process)
        except BaseException:
            self.process.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.process.stop()


# --- a throwaway PostgreSQL database -------------------------------------------------


async def _admin(server_dsn: str, statement: str) -> None:
    connection = await asyncpg.connect(server_dsn, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.contextmanager
def postgres_database(server_dsn: str) -> Iterator[str]:
    """A new, empty database on `server_dsn`'s server (its DSN); dropped afterwards."""
    name = f'chat_storage_bench_{secrets.token_hex(6)}'
    try:
        asyncio.run(_admin(server_dsn, f'CREATE DATABASE "{name}"'))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        raise BenchError(
            f'PostgreSQL at {make_url(server_dsn).render_as_string(hide_password=True)} is '
            f'unreachable ({type(error).__name__}); start it, set BENCH_POSTGRES_DSN, '
            'or run with --backends sqlite'
        ) from None
    try:
        yield make_url(server_dsn).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
