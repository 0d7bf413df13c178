"""Atomic output writing: one-file writes (text, JSON, CSV, figures), whole folders, staging folders
nnU-Net cannot see, signal-safe commits, stale-temp cleanup.

nnU-Net lists a dataset's files by suffix (``subfiles(folder, suffix=".nii.gz")``) inside imagesTr,
labelsTr and imagesTs only, so outputs are first written into ``<root>/.nnsam_tmp/run-<pid>-<hex>/``
and then moved into place with ``os.replace`` (atomic per file, same file system).
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
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


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """A temp path next to ``path`` (same folder, hidden); moved into place with ``os.replace`` when the
    block succeeds, removed when it raises. Readers see the old file or the new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}{_TEMP_MARK}{os.getpid()}{path.suffix}")
    try:
        yield temp
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """A hidden staging folder next to ``path``: when the block succeeds it replaces ``path`` whole (the old
    folder removed, the staging folder renamed with ``os.replace``), when it raises it is removed. Readers
    never see a half-written folder at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield staging
        if path.exists():
            shutil.rmtree(path)
        os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (flushed to disk before the rename)."""
    with atomic_output(path) as temp:
        with open(temp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def csv_text(rows: Sequence[Mapping], columns: Sequence[str], float_digits: int | None = None) -> str:
    """CSV with a header of ``columns``; keys outside ``columns`` are ignored, floats optionally rounded."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        if float_digits is not None:
            row = {k: (f"{v:.{float_digits}f}" if isinstance(v, float) else v) for k, v in row.items()}
        writer.writerow(row)
    return buffer.getvalue()


def atomic_write_csv(path: str | os.PathLike, rows: Sequence[Mapping], columns: Sequence[str],
                     float_digits: int | None = None) -> None:
    """``csv_text`` written to ``path`` atomically."""
    atomic_write_text(path, csv_text(rows, columns, float_digits))


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
