"""File helpers: atomic writes, and reading the YAML files users edit.

Atomic writes: files and folders users keep are built under a temporary name beside the target, then renamed, so a
reader (or a crash) never sees a half-written file or folder: either the old one or the complete new one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
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


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Parse a JSON file; a missing file or bad syntax raises a one-line error naming ``what`` and the path."""
    import json

    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no {what} at {path}") from None
    except IsADirectoryError:
        raise ValueError(f"{what} {path} is a folder; expected a JSON file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{what} {path} is not valid JSON: {e}") from None


class OutputError(OSError, ValueError):
    """A file or folder the user asked for could not be written (disk full, read-only, a path under a file, …).

    One line naming the output; a ``ValueError`` too, so the command line reports it as a user error.
    """

    @classmethod
    def of(cls, path: str | os.PathLike, e: BaseException | str) -> OutputError:
        why = e if isinstance(e, str) else (getattr(e, "strerror", None) or str(e).splitlines()[0] or type(e).__name__)
        err = cls(f"cannot write {path}: {why}; nothing was replaced")
        err.errno = getattr(e, "errno", None)
        return err


def _about(e: OSError, tmp: Path) -> bool:
    """Whether an error raised while writing concerns the temporary output (not some input the writer read)."""
    return e.filename is None or Path(e.filename) == tmp


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early, before the work, when ``path`` cannot be written (its folder cannot be made or written to)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise OutputError.of(path, e) from None
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None,
                check: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is flushed to disk, checked, and renamed over ``path``.

    The check: the file is not empty (a writer that failed quietly, e.g. ffmpeg on a full disk, leaves 0 bytes),
    then ``check(tmp)`` if given (raise to refuse). On any failure the temporary file is removed, ``path`` keeps
    its old contents, and file-system errors become one :class:`OutputError` naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise OutputError.of(path, e) from None
    tmp = Path(tmp)
    try:
        try:
            yield tmp
        except OutputError:
            raise
        except OSError as e:
            if not _about(e, tmp):
                raise
            raise OutputError.of(path, e) from None
        try:
            if tmp.is_file():
                _fsync(tmp)
                if tmp.stat().st_size == 0:
                    raise OutputError.of(path, "the writer produced an empty file (disk full?)")
                if check is not None:
                    check(tmp)
                os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the permissions open() would
            os.replace(tmp, path)
        except OutputError:
            raise
        except OSError as e:
            raise OutputError.of(path, e) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


@contextlib.contextmanager
def h5_writer(tmp: str | os.PathLike) -> Iterator[Any]:
    """An ``h5py.File`` built in memory and written to ``tmp`` (an :func:`atomic_path` temporary) when it closes.

    HDF5 writing straight to a full disk can crash the process (a segfault in its clean-up), which would leave the
    temporary file behind; one plain write of the finished bytes fails with an ``OSError`` instead.
    """
    import io

    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        yield f
    Path(tmp).write_bytes(buf.getbuffer())


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces ``path`` (old contents removed), else it is deleted.

    File-system errors (disk full, read-only) become one :class:`OutputError` naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    except OSError as e:
        raise OutputError.of(path, e) from None
    old = None
    try:
        try:
            yield tmp
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
            for f in tmp.rglob("*"):
                if f.is_file() and not f.is_symlink():
                    _fsync(f)
            if path.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
                os.replace(path, old / "x")
            os.replace(tmp, path)
        except OSError as e:
            if old is not None and not path.exists():  # the swap failed half-way: the old version goes back
                os.replace(old / "x", path)
            if isinstance(e, OutputError) or (e.filename is not None and not Path(e.filename).is_relative_to(
                    path.parent)):
                raise
            raise OutputError.of(path, e) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and path.exists():  # else it holds the only copy (clean_atomic_leftovers restores it)
            shutil.rmtree(old, ignore_errors=True)


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


def check_safetensors_file(path: str | os.PathLike, what: str = "weights file") -> None:
    """Raise a ValueError naming ``path`` unless it is a complete safetensors file (header and every tensor's bytes).

    safetensors' own reader checks the header and that the data covers every tensor; only the header is read, so
    it is cheap. A missing file raises FileNotFoundError naming ``what``.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    try:
        with safe_open(os.fspath(path), framework="numpy"):
            pass
    except (SafetensorError, OSError) as e:
        why = str(e).removeprefix("Error while deserializing header: ")
        kind = "is truncated" if "not fully covered" in why else "is not a safetensors file (empty, truncated or " \
            "another format)"
        raise ValueError(f"{what} {path} {kind}: {why} ({path.stat().st_size} bytes)") from None
