"""The image builder: every method's rendering and every validation error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from images.image import Image, ImageError, render_stages


def base() -> Image:
    return Image("me", "app", "1.0").from_base("python:3.12-slim")


def test_every_method_renders_one_directive() -> None:
    image = (
        base()
        .with_python("3.12")
        .run_command("echo hi")
        .run_command(["echo", "exec form"])
        .apt_install(["curl", "ca-certificates=20240203"])
        .apt_remove("curl")
        .with_env("MODE", "fast path")
        .set_workdir("/app")
        .add("src", "/app/src", chown="1000:1000")
        .set_user("1000")
        .expose(8000)
        .with_healthcheck(["true"], interval=10, start_period=5)
        .with_cmd(["--verbose"])
        .with_entrypoint(["python", "-m", "app"])
    )
    assert str(image).splitlines() == [
        "FROM python:3.12-slim",
        "RUN apt-get update && apt-get -y install --no-install-recommends python3.12 "
        "python3.12-venv && rm -rf /var/lib/apt/lists/*",
        "RUN python3.12 -m venv /opt/venv",
        'ENV PATH="/opt/venv/bin:$PATH"',
        "RUN echo hi",
        'RUN ["echo", "exec form"]',
        "RUN apt-get update && apt-get -y install --no-install-recommends curl "
        "ca-certificates=20240203 && rm -rf /var/lib/apt/lists/*",
        "RUN apt-get -y remove --purge curl && apt-get -y autoremove",
        'ENV MODE="fast path"',
        "WORKDIR /app",
        'COPY --chown=1000:1000 ["src", "/app/src"]',
        "USER 1000",
        "EXPOSE 8000",
        'HEALTHCHECK --interval=10s --timeout=10s --start-period=5s --retries=3 CMD ["true"]',
        'CMD ["--verbose"]',
        'ENTRYPOINT ["python", "-m", "app"]',
    ]


def test_an_image_never_ends_as_root() -> None:
    lines = str(base().run_command("make").with_entrypoint(["app"])).splitlines()
    assert lines[-3:] == [
        "RUN getent passwd 1000 >/dev/null || useradd --create-home --uid 1000 chutes",
        "USER 1000",
        'ENTRYPOINT ["app"]',
    ]
    lines = str(base().set_user("1000").set_user("root")).splitlines()
    assert lines[-1] == "USER 1000"


def test_stages_make_build_targets() -> None:
    text = render_stages({"one": base(), "two": base()}, header="# generated")
    assert text.startswith("# generated\n")
    assert "FROM python:3.12-slim AS one" in text and "FROM python:3.12-slim AS two" in text


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: Image("Me", "app", "1"), "username 'Me'"),
        (lambda: Image("me", "my app", "1"), "name 'my app'"),
        (lambda: Image("me", "app", "-x"), "tag '-x'"),
        (lambda: Image("me", "app", "1").render(), "call from_base first"),
        (lambda: base().from_base("python:3.11"), "already has a base"),
        (lambda: Image("me", "app", "1").from_base("Python 3"), "not an image reference"),
        (lambda: Image("me", "app", "1").from_base("python"), "pin a tag or digest"),
        (lambda: base().with_python("3"), "not a Python version"),
        (lambda: base().run_command("  "), "command is empty"),
        (lambda: base().run_command([]), "non-empty strings"),
        (lambda: base().apt_install([]), "no packages given"),
        (lambda: base().apt_install(["curl; rm -rf /"]), "not a Debian package name"),
        (lambda: base().apt_remove("Bad_Name"), "not a Debian package name"),
        (lambda: base().with_env("1X", "v"), "not a valid variable name"),
        (lambda: base().with_env("X", "a\nb"), "spans lines"),
        (lambda: base().set_workdir("app"), "absolute path"),
        (lambda: base().set_user("Bob Smith"), "not a user name"),
        (lambda: base().add("/etc/passwd", "/x"), "inside the build context"),
        (lambda: base().add("../secret", "/x"), "inside the build context"),
        (lambda: base().add("a", ""), "dest is empty"),
        (lambda: base().add("a", "/b", chown="x y"), "chown"),
        (lambda: base().with_entrypoint([]), "non-empty list"),
        (lambda: base().with_healthcheck([]), "command is empty"),
        (lambda: base().expose(70000), "not a port"),
    ],
)
def test_validation_errors_say_what_is_wrong(call: Callable[[], Any], message: str) -> None:
    with pytest.raises(ImageError, match=message):
        call()


def test_the_public_api_imports_as_readme_shows() -> None:
    from images import Image as PublicImage
    from images import ImageError as PublicError
    from images import recipes

    assert PublicImage is Image and PublicError is ImageError
    assert "vllm" in recipes.RECIPES
