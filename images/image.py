"""An image builder with the Chutes SDK's vocabulary, validated as it is built.

`Image(username, name, tag).from_base(...).apt_install([...]).with_env(...)` and so on, the
SDK's method names and meaning; `str(image)` is the Dockerfile. Where the SDK lets a known trap
through, this one does not: `apt_install` updates the package lists and cleans them in the same
layer, and an image always ends as a non-root user.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

_REFERENCE = re.compile(
    r"^(?:[a-z0-9.-]+(?::\d+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]*(?:=[A-Za-z0-9.+:~-]+)?$")
_USER = re.compile(r"^(?:[a-z_][a-z0-9_-]{0,31}|\d+)(?::(?:[a-z_][a-z0-9_-]{0,31}|\d+))?$")
_PYTHON = re.compile(r"^3\.\d{1,2}$")
DEFAULT_USER = "chutes"
DEFAULT_UID = 1000


class ImageError(ValueError):
    """A builder call with a value Docker would reject or that would break the image."""


@dataclass(frozen=True)
class Directive:
    instruction: str
    value: str

    def render(self) -> str:
        return f"{self.instruction} {self.value}"


@dataclass
class Image:
    """A Dockerfile, built up directive by directive (SDK method names)."""

    username: str
    name: str
    tag: str
    readme: str = ""
    directives: list[Directive] = field(default_factory=list)
    _user: str = "root"
    _workdir: str = "/"

    def __post_init__(self) -> None:
        checks = (("username", self.username, _NAME), ("name", self.name, _NAME),
                  ("tag", self.tag, _TAG))  # fmt: skip
        for label, value, pattern in checks:
            if not pattern.match(value):
                raise ImageError(f"{label} {value!r}: use lowercase letters, digits, '.', '_', '-'")

    @property
    def uid(self) -> str:
        return f"{self.username}/{self.name}:{self.tag}"

    def _add(self, instruction: str, value: str) -> Image:
        self.directives.append(Directive(instruction, value))
        return self

    def from_base(self, reference: str) -> Image:
        if not _REFERENCE.match(reference):
            raise ImageError(f"from_base: {reference!r} is not an image reference")
        if ":" not in reference.rsplit("/", 1)[-1] and "@" not in reference:
            raise ImageError(f"from_base: pin a tag or digest in {reference!r}, not 'latest'")
        if any(d.instruction == "FROM" for d in self.directives):
            raise ImageError("from_base: the image already has a base")
        self.directives.insert(0, Directive("FROM", reference))
        self._user = "root"
        return self

    def with_python(self, version: str = "3.12") -> Image:
        """Python `version` from the distribution, in a venv at /opt/venv, first on PATH."""
        if not _PYTHON.match(version):
            raise ImageError(f"with_python: {version!r} is not a Python version such as 3.12")
        self.apt_install([f"python{version}", f"python{version}-venv"])
        self.run_command(f"python{version} -m venv /opt/venv")
        return self.with_env("PATH", "/opt/venv/bin:$PATH")

    def run_command(self, command: str | list[str]) -> Image:
        if isinstance(command, list):
            if not command or not all(isinstance(c, str) and c for c in command):
                raise ImageError("run_command: a command list needs non-empty strings")
            return self._add("RUN", json.dumps(command))
        if not command.strip():
            raise ImageError("run_command: the command is empty")
        return self._add("RUN", command.strip())

    def apt_install(self, packages: str | list[str]) -> Image:
        names = _packages("apt_install", packages)
        # The SDK installs without updating the lists (stale or missing on most bases) and
        # leaves the lists in the layer; both are fixed here, in one layer.
        return self._add(
            "RUN",
            "apt-get update && apt-get -y install --no-install-recommends "
            + " ".join(names) + " && rm -rf /var/lib/apt/lists/*",
        )  # fmt: skip

    def apt_remove(self, packages: str | list[str]) -> Image:
        names = _packages("apt_remove", packages)
        return self._add(
            "RUN", "apt-get -y remove --purge " + " ".join(names) + " && apt-get -y autoremove"
        )

    def with_env(self, key: str, value: str) -> Image:
        if not _ENV_KEY.match(key):
            raise ImageError(f"with_env: {key!r} is not a valid variable name")
        if "\n" in value:
            raise ImageError(f"with_env: the value of {key} spans lines")
        return self._add("ENV", f"{key}={json.dumps(value)}")

    def set_workdir(self, directory: str) -> Image:
        if not directory.startswith("/"):
            raise ImageError(f"set_workdir: {directory!r} must be an absolute path")
        self._workdir = directory
        return self._add("WORKDIR", directory)

    def set_user(self, user: str) -> Image:
        if not _USER.match(user):
            raise ImageError(f"set_user: {user!r} is not a user name or uid[:gid]")
        self._user = user
        return self._add("USER", user)

    def add(self, source: str, dest: str, *, chown: str | None = None) -> Image:
        if source.startswith("/") or ".." in source.split("/"):
            raise ImageError(f"add: source {source!r} must stay inside the build context")
        if not dest:
            raise ImageError("add: dest is empty")
        if chown is not None and not _USER.match(chown):
            raise ImageError(f"add: chown {chown!r} is not a user[:group]")
        flag = f"--chown={chown} " if chown else ""
        return self._add("COPY", f"{flag}{json.dumps([source, dest])}")

    def with_entrypoint(self, args: list[str]) -> Image:
        if not args or not all(isinstance(a, str) and a for a in args):
            raise ImageError("with_entrypoint: give the command as a non-empty list of strings")
        return self._add("ENTRYPOINT", json.dumps(args))

    def with_cmd(self, args: list[str]) -> Image:
        if not all(isinstance(a, str) for a in args):
            raise ImageError("with_cmd: give the arguments as a list of strings")
        return self._add("CMD", json.dumps(args))

    def with_healthcheck(
        self, command: list[str], interval: int = 30, start_period: int = 600
    ) -> Image:
        if not command:
            raise ImageError("with_healthcheck: the command is empty")
        options = f"--interval={interval}s --timeout=10s --start-period={start_period}s --retries=3"
        return self._add("HEALTHCHECK", f"{options} CMD {json.dumps(command)}")

    def expose(self, port: int) -> Image:
        if not 0 < port < 65536:
            raise ImageError(f"expose: {port} is not a port")
        return self._add("EXPOSE", str(port))

    def render(self, stage: str | None = None) -> str:
        if not self.directives or self.directives[0].instruction != "FROM":
            raise ImageError(f"{self.uid}: call from_base first")
        lines = [d.render() for d in self.directives]
        if stage:
            lines[0] += f" AS {stage}"
        if self._user in ("root", "0", "0:0"):
            # Never end as root: create the SDK's user and switch to it before any ENTRYPOINT.
            tail = [f"RUN {ensure_user()}", f"USER {DEFAULT_UID}"]
            final = ("ENTRYPOINT", "CMD", "HEALTHCHECK")
            cut = next((i for i, d in enumerate(self.directives) if d.instruction in final),
                       len(lines))  # fmt: skip
            lines[cut:cut] = tail
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.render()


def ensure_user(uid: int = DEFAULT_UID, name: str = DEFAULT_USER) -> str:
    """A shell command that leaves the image with an account of `uid`: the one the base
    already has (Ubuntu 24.04 and the CUDA images on it ship `ubuntu` as uid 1000, where
    `useradd --uid 1000` fails), or a new one called `name`."""
    return f"getent passwd {uid} >/dev/null || useradd --create-home --uid {uid} {name}"


def _packages(method: str, packages: str | list[str]) -> list[str]:
    names = shlex.split(packages) if isinstance(packages, str) else list(packages)
    if not names:
        raise ImageError(f"{method}: no packages given")
    for name in names:
        if not isinstance(name, str) or not _PACKAGE.match(name):
            raise ImageError(f"{method}: {name!r} is not a Debian package name")
    return names


def render_stages(stages: dict[str, Image], header: str = "") -> str:
    """One Dockerfile with a build target per image (`docker build --target NAME`)."""
    parts = [header.rstrip() + "\n"] if header else []
    parts += [image.render(stage=name) for name, image in stages.items()]
    return "\n".join(parts)
