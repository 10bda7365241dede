"""The one place that publishes to disk: atomic files, atomic folders, run-folder locks.

Every writer in gapkit goes through here, so that a killed process never leaves a
half-written file that a later reader takes for complete:

- :func:`atomic_write_text`, :func:`atomic_write_bytes`, :func:`atomic_save` (``torch.save``),
  :func:`atomic_savez` (``numpy.savez_compressed``) write to a uniquely named temporary
  file in the destination folder, then rename it over the destination in one step;
- :func:`publish_folder` renames a folder built under :func:`staging_folder` into place;
  :func:`remove_stale_staging` removes the staging folders of processes that are gone;
- :func:`run_folder_lock` makes one process at a time the owner of a run folder.
"""
from __future__ import annotations

import io
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

LOCK_NAME = ".lock"


def atomic_write_bytes(data: bytes, path) -> None:
    """Write ``data`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(text: str, path) -> None:
    """Write UTF-8 text atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(text.encode("utf-8"), path)


def atomic_save(obj, path) -> None:
    """``torch.save`` atomically."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(buffer.getvalue(), path)


def atomic_savez(path, **arrays) -> None:
    """``numpy.savez_compressed`` atomically."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(buffer.getvalue(), path)


# --------------------------------------------------------------------------- folders

def pid_alive(pid) -> bool:
    """Whether process ``pid`` still runs (POSIX); a name that is no pid, or another OS: no."""
    pid = str(pid)
    if os.name != "posix" or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def staging_folder(final: Path) -> Path:
    """A fresh, empty sibling ``<final>.tmp-<pid>`` to build ``final`` in."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(final)
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def remove_stale_staging(final: Path) -> None:
    """Remove ``<final>.tmp-<pid>`` folders left by processes that no longer run."""
    final = Path(final)
    for leftover in final.parent.glob(f"{final.name}.tmp-*"):
        if not pid_alive(leftover.name.rsplit("-", 1)[-1]):
            shutil.rmtree(leftover, ignore_errors=True)


def discard_folder(folder: Path) -> None:
    """Remove ``folder``: first renamed out of its place in one step, so that no reader sees it half-deleted."""
    folder = Path(folder)
    doomed = folder.with_name(f"{folder.name}.tmp-{os.getpid()}-discarded")
    try:
        os.replace(folder, doomed)
    except FileNotFoundError:
        return
    shutil.rmtree(doomed, ignore_errors=True)


def publish_folder(tmp: Path, final: Path, is_complete) -> None:
    """Rename the finished ``tmp`` to ``final`` in one step.

    ``is_complete(folder)`` says whether a folder is a finished product: one that
    another process published meanwhile is kept (and ``tmp`` dropped); an incomplete
    one in the way is replaced.
    """
    tmp, final = Path(tmp), Path(final)
    if final.exists() and not is_complete(final):
        shutil.rmtree(final)
    try:
        os.replace(tmp, final)
    except OSError:
        if not is_complete(final):
            raise
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- run folders

class RunFolderBusy(RuntimeError):
    """Another process owns the run folder."""


@contextmanager
def run_folder_lock(folder):
    """Own ``folder`` for the duration of the block: a second process fails at once, naming the owner.

    The lock is an exclusive ``filelock`` on ``<folder>/.lock``; the owner's pid is written beside it
    (``.lock.pid``) for the message. The operating system releases the lock of a killed process, so a
    rerun after a kill takes the folder over.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK_NAME, timeout=0)
    owner = folder / (LOCK_NAME + ".pid")
    try:
        lock.acquire()
    except Timeout:
        try:
            pid = owner.read_text().strip()
        except OSError:
            pid = "unknown"
        raise RunFolderBusy(f"run folder {folder} in use by pid {pid}; wait for it to finish, or pass another "
                            f"out_dir") from None
    try:
        atomic_write_text(str(os.getpid()), owner)
        yield folder
    finally:
        lock.release()
