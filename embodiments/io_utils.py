"""File helpers: atomic writes, and reading the YAML files users edit.

Atomic writes: files and folders users keep are built under a temporary name beside the target, then renamed, so a
reader (or a crash) never sees a half-written file or folder: either the old one or the complete new one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import yaml


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_yaml(path: str | os.PathLike, what: str) -> Any:
    """Parse a YAML file; a missing file or bad syntax raises an error naming ``what`` (e.g. "hand spec") and path."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no {what} at {path}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{what} {path} is not valid YAML: {e}") from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, on failure delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.is_file():  # mkstemp makes 0600 files; give the result the permissions a plain open() would
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces ``path`` (old contents removed), else it is deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / "x")
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def confined_path(base: str | os.PathLike, rel: str, what: str, follow_links: bool = True) -> Path:
    """``base / rel`` for a relative path read from a data file, refusing one that leaves ``base``.

    Refused with a ``ValueError`` naming ``what`` (e.g. the file and field): an empty or absolute path, a ``..``
    part, a NUL byte, or (``follow_links``, for paths on disk) one that resolves outside ``base`` through a
    symbolic link.
    """
    base = Path(base)
    text = str(rel)
    parts = PurePosixPath(text.replace("\\", "/"))
    if not text or "\0" in text or parts.is_absolute() or ".." in parts.parts or (len(text) > 1 and text[1] == ":"):
        raise ValueError(f"{what}: {text!r} must be a relative path inside {base} (no '..', not absolute)")
    path = base / parts
    if follow_links and not path.resolve().is_relative_to(base.resolve()):
        raise ValueError(f"{what}: {text!r} leads outside {base} through a symbolic link")
    return path


def plain_name(name: str, what: str) -> str:
    """``name`` if it is a single file-name component (no separators, not ``.``/``..``); else a ``ValueError``."""
    text = str(name)
    if not text or text in (".", "..") or any(c in text for c in "/\\\0"):
        raise ValueError(f"{what}: {text!r} must be a plain name (no '/', '\\' or '..')")
    return text


def clean_atomic_leftovers(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Remove what a killed :func:`atomic_path` / :func:`atomic_dir` left in ``folder`` for targets matching the
    globs ``names`` (their hidden ``.<name>.*`` temporaries); returns the removed paths.

    A previous version that a killed :func:`atomic_dir` swap had set aside (``.<name>.old-*``) is put back when the
    target itself is missing, so nothing that was complete is lost.
    """
    folder = Path(folder)
    removed = []
    for pattern in names:
        for p in sorted(folder.glob(f".{pattern}.*")):
            name, old, _ = p.name[1:].rpartition(".old-")
            if old and p.is_dir() and (p / "x").exists() and not (folder / name).exists():
                os.replace(p / "x", folder / name)
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
    return removed
