"""Atomic output writing: staging folders nnU-Net cannot see, signal-safe commits, stale-temp cleanup.

nnU-Net lists a dataset's files by suffix (``subfiles(folder, suffix=".nii.gz")``) inside imagesTr,
labelsTr and imagesTs only, so outputs are first written into ``<root>/.nnsam_tmp/run-<pid>-<hex>/``
and then moved into place with ``os.replace`` (atomic per file, same file system).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import uuid
from contextlib import contextmanager
from pathlib import Path

STAGING_DIR_NAME = ".nnsam_tmp"
_TEMP_MARK = ".nnsam-tmp-"


@contextmanager
def signals_deferred():
    """Hold back Ctrl-C (SIGINT) and SIGTERM until the block is done, so a commit is never cut in half."""
    deferred = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, deferred)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def new_staging_dir(root: Path) -> Path:
    """A fresh staging folder under ``root/.nnsam_tmp`` owned by this process."""
    path = Path(root) / STAGING_DIR_NAME / f"run-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temp(root: Path) -> list[Path]:
    """Remove staging folders and temp files left by runs that died (their process is gone)."""
    removed = []
    staging_root = Path(root) / STAGING_DIR_NAME
    if staging_root.is_dir():
        for entry in staging_root.iterdir():
            parts = entry.name.split("-")
            if len(parts) == 3 and parts[1].isdigit() and _pid_alive(int(parts[1])) and int(parts[1]) != os.getpid():
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        if not any(staging_root.iterdir()):
            staging_root.rmdir()
    folders = [Path(root), *(p for p in Path(root).iterdir() if p.is_dir())] if Path(root).is_dir() else []
    for folder in folders:
        for temp in folder.glob(f"*{_TEMP_MARK}*"):
            temp.unlink(missing_ok=True)
            removed.append(temp)
    return removed


def atomic_write_json(path: Path, obj) -> None:
    """Write JSON next to ``path`` under a temp name, then ``os.replace`` it into place."""
    path = Path(path)
    temp = path.with_name(f".{path.name}{_TEMP_MARK}{os.getpid()}")
    with open(temp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)


def commit(moves: dict, remove=(), marker: tuple | None = None) -> None:
    """Publish staged files: drop the old marker and ``remove``, move ``{staged: final}``, write the marker.

    The marker (``(path, json_obj)``, e.g. a per-case report) is written last, so a case counts as done
    only once all its files are in place; signals are deferred for the few renames this takes.
    """
    with signals_deferred():
        if marker is not None:
            Path(marker[0]).unlink(missing_ok=True)
        for path in remove:
            Path(path).unlink(missing_ok=True)
        for staged, final in moves.items():
            Path(final).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, final)
        if marker is not None:
            Path(marker[0]).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(marker[0], marker[1])
