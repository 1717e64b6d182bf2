"""`chutebox image render|build`: find the image, write its Dockerfile, run docker or podman."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from images.image import Image, ImageError
from images.recipes import RECIPES, render_cuda

ROOT = Path(__file__).resolve().parent.parent
# What a standard recipe's `COPY .` needs of chutebox itself.
SOURCE = ("pyproject.toml", "README.md", "runtime", "engines", "images")


def load_image(target: str) -> Image:
    """A standard recipe by name, or `module:attr` naming an Image (or a function making one)."""
    if target in RECIPES:
        return RECIPES[target]()
    module_name, sep, attr = target.partition(":")
    if not sep or not attr:
        known = ", ".join([*RECIPES, "cuda"])
        raise ImageError(f"{target!r}: give a recipe ({known}) or module:attr")
    sys.path.insert(0, str(Path.cwd()))
    try:
        value = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ImageError(f"{target}: {exc}") from None
    finally:
        sys.path.pop(0)
    image = value() if callable(value) and not isinstance(value, Image) else value
    if not isinstance(image, Image):
        raise ImageError(f"{target} is a {type(image).__name__}, not an images.Image")
    return image


def render(target: str) -> str:
    return render_cuda() if target == "cuda" else load_image(target).render()


def engine() -> str | None:
    return shutil.which("docker") or shutil.which("podman")


def build(target: str, tag: str | None, platform: str, context: Path | None = None) -> int:
    """Render into a build context and build it; returns the engine's exit status."""
    if target == "cuda":
        raise ImageError("build one of its recipes (vllm, sglang, diffusion) by name instead")
    image = load_image(target)
    if context is not None:
        return run_build(_folder(image.render(), context), tag or image.uid, platform)
    return build_context(image.render(), tag or image.uid, platform)


def build_context(dockerfile: str, tag: str, platform: str,
                  extra: Mapping[str, Path] | None = None) -> int:  # fmt: skip
    """Build `dockerfile` in a context of chutebox's own source plus `extra` files (their
    paths in the context → where they are now)."""
    folder = _folder(dockerfile)
    for name in SOURCE:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, folder / name,
                            ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        elif source.exists():
            shutil.copy2(source, folder / name)
    for relative, source in (extra or {}).items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, folder / relative)
    return run_build(folder, tag, platform)


def _folder(dockerfile: str, context: Path | None = None) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="chutebox-image-"))
    if context is not None:
        shutil.copytree(context, folder, dirs_exist_ok=True)
    (folder / "Dockerfile").write_text(dockerfile)
    return folder


def run_build(folder: Path, tag: str, platform: str) -> int:
    """docker (or podman) build of `folder`; the context left ready when neither is here."""
    tool = engine()
    if tool is None:
        hint = f"docker build --platform={platform} -t {tag} {folder}"
        print(f"chutebox: neither docker nor podman is installed; the build context is ready: "
              f"{hint}", file=sys.stderr)  # fmt: skip
        return 3
    argv = [tool, "build", f"--platform={platform}", "-t", tag, str(folder)]
    print("chutebox: " + " ".join(argv), file=sys.stderr)
    return subprocess.run(argv).returncode
