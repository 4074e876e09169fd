"""Run the image's command outside Docker: the Dockerfile's CMD with its ENV, then stop it.

    .venv/bin/python -m scripts.run_image_entrypoint [--dockerfile Dockerfile] [--root DIR]

Reads the final stage of the Dockerfile; runs ENTRYPOINT + CMD with the stage's ENV in a
temporary directory, where each VOLUME and the WORKDIR become directories of their own and
the image's virtual environment (`VIRTUAL_ENV`) is this interpreter's; waits for
`/healthz` and `/readyz`, runs the HEALTHCHECK command against it, stops it with SIGTERM
and expects a clean exit. The port is a free one of 127.0.0.1 rather than the image's.
Exit status 0 when every step passed; the server's log is shown when one did not.
"""

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from scripts import dockerfile

ROOT = Path(__file__).resolve().parents[1]
HOST = '127.0.0.1'
STOP_SECONDS = 20.0
HEALTHCHECK_SECONDS = 30.0
CLEAN_EXITS = frozenset({0, -signal.SIGTERM})


class RunError(Exception):
    """A step failed; the message says which."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def remap(value: str, paths: Mapping[str, str]) -> str:
    """Replace each image path (a whole path component prefix) by its local directory."""
    for image_path, local_path in paths.items():
        parts = value.split(':')  # PATH-like lists as well as single paths
        value = ':'.join(
            local_path + part[len(image_path) :]
            if part == image_path or part.startswith(image_path + '/')
            else part
            for part in parts
        )
    return value


def image_environment(
    stage: dockerfile.Stage, root: Path, port: int
) -> tuple[dict[str, str], Path]:
    """The stage's ENV made runnable here, and the directory standing for its WORKDIR."""
    image_env = stage.env({'PATH': os.environ.get('PATH', '')})
    paths: dict[str, str] = {}
    virtual_env = image_env.get('VIRTUAL_ENV')
    if virtual_env:
        paths[virtual_env] = sys.prefix
    for volume in stage.volumes():
        local = root / 'volumes' / volume.strip('/')
        local.mkdir(parents=True, exist_ok=True)
        paths[volume] = str(local)
    workdir = root / 'workdir' / (stage.workdir() or '/').strip('/')
    workdir.mkdir(parents=True, exist_ok=True)
    # the host's own STORAGE_* settings must not leak into the image's
    env = {k: v for k, v in os.environ.items() if not k.startswith('STORAGE_')}
    env.update({key: remap(value, paths) for key, value in image_env.items()})
    image_port = image_env.get('STORAGE_PORT')
    if image_port is not None and int(image_port) not in stage.exposed_ports():
        raise RunError(f'STORAGE_PORT={image_port} is not EXPOSEd ({stage.exposed_ports()})')
    env['STORAGE_PORT'] = str(port)
    env['STORAGE_HOST'] = HOST  # the image listens on 0.0.0.0; here only on loopback
    return env, workdir


def resolve(argv: list[str], env: Mapping[str, str]) -> list[str]:
    program = shutil.which(argv[0], path=env.get('PATH'))
    if program is None:
        raise RunError(f'{argv[0]!r} is not on the image PATH {env.get("PATH")!r}')
    return [program, *argv[1:]]


def wait_for(url: str, process: subprocess.Popen[bytes], deadline: float) -> float:
    """Seconds until `url` answers 200; fails when the process exits or time runs out."""
    started = time.monotonic()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RunError(f'the command exited with {process.returncode} before {url} answered')
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(url, timeout=2) as response,  # noqa: S310 - http://127.0.0.1
        ):
            if response.status == 200:  # noqa: PLR2004
                return time.monotonic() - started
        time.sleep(0.2)
    raise RunError(f'{url} did not answer 200 in time')


def run(dockerfile_path: Path, root: Path, timeout: float) -> list[str]:
    """Every step, or `RunError`; returns the report lines."""
    stage = dockerfile.read(dockerfile_path)[-1]
    command = stage.command()
    if not command:
        raise RunError('the final stage has neither ENTRYPOINT nor CMD')
    port = free_port()
    env, workdir = image_environment(stage, root, port)
    argv = resolve(command, env)
    report = [f'command: {" ".join(command)} (port {port}, root {root})']
    log_path = root / 'server.log'
    with log_path.open('wb') as log:
        process = subprocess.Popen(  # noqa: S603 - the Dockerfile's own command
            argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + timeout
        base = f'http://{HOST}:{port}'
        report.append(f'healthz: 200 after {wait_for(f"{base}/healthz", process, deadline):.1f} s')
        wait_for(f'{base}/readyz', process, deadline)
        report.append('readyz: 200')
        healthcheck = stage.healthcheck()
        if healthcheck is None:
            raise RunError('the final stage has no HEALTHCHECK')
        probe = subprocess.run(  # noqa: S603 - the Dockerfile's own HEALTHCHECK
            resolve(healthcheck.command, env),
            cwd=workdir,
            env=env,
            capture_output=True,
            timeout=HEALTHCHECK_SECONDS,
            check=False,
        )
        if probe.returncode != 0:
            raise RunError(f'HEALTHCHECK exited with {probe.returncode}: {probe.stderr!r}')
        report.append('healthcheck: exit 0')
    finally:
        code = stop(process)
    # a server may re-raise the SIGTERM it handled, so that its parent sees how it ended
    if code not in CLEAN_EXITS:
        raise RunError(f'the command exited with {code} on SIGTERM')
    report.append(f'stopped: exit {code} on SIGTERM')
    return report


def stop(process: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM and the exit status; None when it had to be killed."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return None
    return process.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--dockerfile', type=Path, default=ROOT / 'Dockerfile')
    parser.add_argument('--root', type=Path, help='a directory to run in (default: a new one)')
    parser.add_argument('--timeout', type=float, default=60.0, help='seconds to become ready')
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        root = args.root or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        root.mkdir(parents=True, exist_ok=True)
        try:
            report = run(args.dockerfile, root, args.timeout)
        except (RunError, dockerfile.DockerfileError) as error:
            log = root / 'server.log'
            tail = log.read_text(errors='replace')[-4000:] if log.exists() else ''
            sys.stderr.write(f'run-image-entrypoint: {error}\n{tail}')
            return 1
    sys.stdout.write(''.join(f'{line}\n' for line in report))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
