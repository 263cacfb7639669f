"""The one way vaekit writes a file, the one way it reads a text or JSON file, and the lock a run directory
is trained under.

Every file goes to a hidden temporary name in the same folder, is flushed to disk, then renamed over the
old one: a crash or a full disk mid-write leaves the previous version whole, and an OS error is one line
naming the file. Temporary files follow the umask like any other, and those a killed process left behind
are removed when a run directory is next opened for training.
"""
from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Any, Callable

from .errors import VaekitError

# Tests set this to see (and interrupt) each write: called as hook("written", path) once the temporary file is
# complete and as hook("renamed", path) once it has replaced ``path``.
fault_hook: Callable[[str, Path], None] | None = None

_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")
LOCK = ".lock"


def write_atomic(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)``, flush it to disk, then rename the temporary file over ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_temporary(path)
        mode = tmp.stat().st_mode  # what the umask made of 0o666
    except OSError as e:
        raise VaekitError(f"{path}: cannot write ({_reason(e)})") from None
    try:
        write(str(tmp))
        os.chmod(tmp, mode)  # some writers (safetensors) create the file anew, as private
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _hook("written", path)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise VaekitError(f"{path}: cannot write ({_reason(e)}); the previous version, if any, is unchanged") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)
    _hook("renamed", path)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, as UTF-8."""
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def read_text(path: Path, what: str = "file") -> str:
    """A UTF-8 text file's contents (a byte-order mark dropped), or one line naming the file and what is wrong."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise VaekitError(f"{path}: cannot read {what} ({_reason(e)})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise VaekitError(f"{path}: the {what} is not UTF-8 text (byte {e.start} is {data[e.start]:#04x})") from None


def read_json(path: Path, what: str = "file") -> Any:
    """A JSON file's value; a key given twice in one object is refused, since JSON would keep the last silently."""
    text = read_text(path, what)
    try:
        return json.loads(text, object_pairs_hook=lambda pairs: _unique(pairs, path))
    except json.JSONDecodeError as e:
        raise VaekitError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise VaekitError(f"{path}: not valid JSON (nested too deeply)") from None


def _unique(pairs: list[tuple[str, Any]], path: Path) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for k, v in pairs:
        if k in d:
            raise VaekitError(f"{path}: the key {k!r} is given twice in one table; keep one")
        d[k] = v
    return d


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files an interrupted write left in ``folder``; returns what was removed."""
    removed = []
    for p in Path(folder).iterdir() if Path(folder).is_dir() else ():
        if _TEMPORARY.match(p.name) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


class RunLock:
    """An exclusive lock on a run directory while one process trains in it, holding that process's PID.

    A second trainer is refused with one line; a lock left by a process that died is taken over, since the
    operating system releases the underlying ``flock`` with the process. The file stays (emptied) on release:
    removing it would let two processes hold locks on two different files of that name.
    """

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # no flock on this platform: the run directory is not locked
            return self
        if self.path.parent.exists() and not self.path.parent.is_dir():
            raise VaekitError(f"{self.path.parent}: a file, not a run directory; choose another --out")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise VaekitError(f"{self.path.parent}: cannot write the run directory ({_reason(e)})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise VaekitError(f"{self.path.parent}: another vaekit process (PID {holder}) is training in this run directory; "
                              "wait for it or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _create_temporary(path: Path) -> Path:
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:  # os.open with 0o666 lets the umask decide the mode, as for any file the user writes
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def _sync_folder(folder: Path) -> None:
    """Flush the folder's entry for the renamed file, where the file system allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _hook(event: str, path: Path) -> None:
    if fault_hook is not None:
        fault_hook(event, path)


def _reason(e: OSError) -> str:
    return e.strerror or type(e).__name__
