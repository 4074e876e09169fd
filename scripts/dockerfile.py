"""A small Dockerfile reader: stages, ENV, CMD, HEALTHCHECK, VOLUME, EXPOSE, USER.

Enough of the Dockerfile reference to check our own Dockerfile and to run its CMD outside
Docker; not a general parser (no heredocs, no `# escape=` directive, no ONBUILD).
"""

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

_VARIABLE = re.compile(
    r'\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))'
)
_FROM = re.compile(
    r'^(?:--platform=\S+\s+)?(?P<image>\S+)(?:\s+AS\s+(?P<name>\S+))?$', re.IGNORECASE
)
_HEALTHCHECK_OPTION = re.compile(r'^--(?P<key>[a-z-]+)=(?P<value>\S+)\s+')


class DockerfileError(ValueError):
    """The Dockerfile uses something this reader does not understand."""


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    arguments: str
    line: int


@dataclass(frozen=True, slots=True)
class Healthcheck:
    options: dict[str, str]
    command: list[str]


@dataclass(frozen=True, slots=True)
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword.upper()]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self, inherited: Mapping[str, str] | None = None) -> dict[str, str]:
        """`inherited` (the base image's environment) with this stage's ENV applied in order."""
        env = dict(inherited or {})
        for instruction in self.all('ENV'):
            before = dict(env)  # one ENV expands every value against the values before it
            for key, raw in _env_pairs(instruction):
                env[key] = expand(raw, before)
        return env

    def exec_form(self, keyword: str) -> list[str]:
        """CMD or ENTRYPOINT as argv: the JSON form as it is, the shell form through sh -c."""
        instruction = self.last(keyword)
        return [] if instruction is None else _argv(instruction.arguments)

    def command(self) -> list[str]:
        """What the container runs: ENTRYPOINT followed by CMD."""
        return self.exec_form('ENTRYPOINT') + self.exec_form('CMD')

    def healthcheck(self) -> Healthcheck | None:
        instruction = self.last('HEALTHCHECK')
        if instruction is None or instruction.arguments.strip().upper() == 'NONE':
            return None
        rest = instruction.arguments.strip()
        options: dict[str, str] = {}
        while match := _HEALTHCHECK_OPTION.match(rest):
            options[match['key']] = match['value']
            rest = rest[match.end() :]
        if not rest.upper().startswith('CMD'):
            raise DockerfileError(f'line {instruction.line}: HEALTHCHECK without CMD')
        return Healthcheck(options, _argv(rest[3:].strip()))

    def volumes(self) -> list[str]:
        paths: list[str] = []
        for instruction in self.all('VOLUME'):
            text = instruction.arguments.strip()
            paths.extend(json.loads(text) if text.startswith('[') else text.split())
        return paths

    def exposed_ports(self) -> list[int]:
        return [
            int(port.split('/')[0])
            for instruction in self.all('EXPOSE')
            for port in instruction.arguments.split()
        ]

    def user(self) -> str | None:
        instruction = self.last('USER')
        return None if instruction is None else instruction.arguments.strip()

    def workdir(self) -> str | None:
        instruction = self.last('WORKDIR')
        return None if instruction is None else instruction.arguments.strip()


def expand(text: str, env: Mapping[str, str]) -> str:
    """`$NAME` and `${NAME}` from `env` (unknown names expand to nothing, as in Docker)."""
    return _VARIABLE.sub(lambda m: env.get(m['braced'] or m['plain'], ''), text)


def _env_pairs(instruction: Instruction) -> list[tuple[str, str]]:
    words = shlex.split(instruction.arguments)
    if words and '=' not in words[0]:  # the old `ENV KEY value with spaces` form
        return [(words[0], instruction.arguments.strip()[len(words[0]) :].strip())]
    pairs = []
    for word in words:
        key, separator, value = word.partition('=')
        if not separator:
            raise DockerfileError(f'line {instruction.line}: ENV {word!r} has no value')
        pairs.append((key, value))
    return pairs


def _argv(text: str) -> list[str]:
    text = text.strip()
    if text.startswith('['):
        argv = json.loads(text)
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise DockerfileError(f'not a JSON array of strings: {text}')
        return list(argv)
    return ['/bin/sh', '-c', text]


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Instructions with their continuation lines joined; comments and blank lines dropped."""
    lines: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith('#'):
            continue  # a comment line inside a continuation is skipped, as by Docker
        if not pending:
            start = number
        if raw.rstrip().endswith('\\'):
            pending.append(raw.rstrip()[:-1])
            continue
        pending.append(raw)
        lines.append((start, ' '.join(part.strip() for part in pending)))
        pending = []
    if pending:
        raise DockerfileError(f'line {start}: continuation at the end of the file')
    return lines


def parse(text: str) -> list[Stage]:
    """The stages of a Dockerfile, in order (instructions before the first FROM: ARG only)."""
    stages: list[Stage] = []
    for number, line in logical_lines(text):
        keyword, _, arguments = line.partition(' ')
        keyword = keyword.upper()
        if keyword == 'FROM':
            match = _FROM.match(arguments.strip())
            if match is None:
                raise DockerfileError(f'line {number}: FROM {arguments!r}')
            stages.append(Stage(match['image'], match['name']))
        elif not stages:
            if keyword != 'ARG':
                raise DockerfileError(f'line {number}: {keyword} before the first FROM')
        else:
            stages[-1].instructions.append(Instruction(keyword, arguments, number))
    if not stages:
        raise DockerfileError('no FROM instruction')
    return stages


def read(path: Path) -> list[Stage]:
    return parse(path.read_text(encoding='utf-8'))
