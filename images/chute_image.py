"""A custom chute's own image, ready to run behind chutebox.

First the chute's `Image` as the Chutes SDK renders it (its base and its steps, unchanged), or
the prebuilt image its `image` string names; then what running behind chutebox adds: pip
without a cache (set before the chute's steps), chutebox in a virtual environment of its own
(the chute's interpreter keeps only what it had: the SDK and the chute's packages), the chute
file, the data folder, a non-root user, the readiness probe, and `chutebox serve FILE:ATTR`
with the chute's interpreter as the entrypoint.
"""

from __future__ import annotations

from images.image import DEFAULT_UID, Image, ImageError, ensure_user
from images.recipes import PROBE

CHUTEBOX_VENV = "/opt/chutebox/venv"
APP = "/app"
# The chute's interpreter in the image: the one the SDK's base puts on PATH.
CHUTE_PYTHON = "python3"


def chute_dockerfile(
    *, sdk_dockerfile: str | None, prebuilt: str | None, module: str, attr: str
) -> str:
    """The Dockerfile: the SDK's rendering (or `FROM prebuilt`) and chutebox's part."""
    if sdk_dockerfile:
        first, _, steps = sdk_dockerfile.strip().partition("\n")
        if not first.startswith("FROM "):
            raise ImageError("the chute's Image renders no FROM line first")
    elif prebuilt:
        first, steps = f"FROM {prebuilt}", ""
    else:
        raise ImageError("the chute names no image")
    head = [first, "ENV PIP_NO_CACHE_DIR=1", *filter(None, steps.splitlines())]
    return "\n".join(head) + "\n" + _chutebox_part(module, attr)


def _chutebox_part(module: str, attr: str) -> str:
    part = (
        # Rendered by chutebox's own builder, so its directives are checked; the FROM it
        # needs to render is the chute's, above.
        Image("chutebox", "chute", "latest").from_base("chutebox/placeholder:0")
        .set_user("0")  # the chute's steps may have switched user: installing needs root
        .add(".", "/opt/chutebox/src")
        .run_command(f"{CHUTE_PYTHON} -m venv {CHUTEBOX_VENV} && "
                     f"{CHUTEBOX_VENV}/bin/pip install --no-cache-dir /opt/chutebox/src")
        .add(f"chute/{module}.py", f"{APP}/{module}.py")
        .run_command(f"({ensure_user()}) && mkdir -p /data && chown {DEFAULT_UID} /data")
        .with_env("HF_HOME", "/data/huggingface")
        .with_env("CHUTEBOX_CACHE_DIR", "/data/chutebox")
        .with_env("CHUTEBOX_HOST", "0.0.0.0")
        .set_workdir(APP)
        .set_user(str(DEFAULT_UID))
        .expose(8000)
        .with_healthcheck([CHUTE_PYTHON, "-c", PROBE])
        .with_entrypoint([f"{CHUTEBOX_VENV}/bin/chutebox", "serve", f"{module}:{attr}",
                          "--python", CHUTE_PYTHON])
    )  # fmt: skip
    return part.render().split("\n", 1)[1]
