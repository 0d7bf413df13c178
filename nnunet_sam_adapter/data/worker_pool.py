"""Worker processes that never outlive the converting process: a spawn pool whose workers get SIGTERM
from the kernel when their parent dies, and check once more before publishing anything."""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import SimpleITK as sitk

_PARENT_PID: int | None = None  # set in pool workers: the converting process


def _exit_with_parent(parent_pid: int) -> None:
    """Pool initializer: the kernel sends SIGTERM to this worker when its parent dies (Linux
    prctl PR_SET_PDEATHSIG; SIGTERM rather than SIGKILL so a commit in progress finishes, see
    atomic_io.signals_deferred)."""
    global _PARENT_PID
    _PARENT_PID = parent_pid
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the check before publishing remains
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def exit_if_orphaned(staging: Path) -> None:
    """A worker whose parent is gone publishes nothing."""
    if _PARENT_PID is not None and os.getppid() != _PARENT_PID:
        shutil.rmtree(staging, ignore_errors=True)
        os._exit(1)


def _init_pool_process(threads: int, parent_pid: int) -> None:
    _exit_with_parent(parent_pid)
    sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(threads)


def map_in_workers(function, items: list, num_processes: int) -> Iterator:
    """``function(item)`` for every item, in this process (num_processes 1) or in spawned workers that exit
    with their parent (results in any order); SimpleITK's threads are shared out between the workers.
    Closing the generator terminates the pool."""
    if num_processes == 1:
        for item in items:
            yield function(item)
        return
    threads = max(1, (os.cpu_count() or 1) // num_processes)
    context = multiprocessing.get_context("spawn")
    with context.Pool(num_processes, _init_pool_process, (threads, os.getpid())) as pool:
        yield from pool.imap_unordered(function, items)
