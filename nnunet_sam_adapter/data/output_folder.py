"""Ownership of an output folder: a command writes only into a new folder, or one it created before (marked
with OWNER_FILE); a foreign folder is refused with nothing changed, and a first run that fails leaves no
empty folder behind."""
from __future__ import annotations

import json
from pathlib import Path

from nnunet_sam_adapter.atomic_io import atomic_write_json
from nnunet_sam_adapter.data.images import InputError

REPORTS_DIR = "registration_reports"  # per-case reports, written last when a case is published
OWNER_FILE = ".nnunet_sam_adapter.json"  # marks an output folder this tool created


def _created_by_this_tool(out: Path) -> bool:
    if (out / OWNER_FILE).is_file() or (out / REPORTS_DIR).is_dir():  # reports: runs before the owner file
        return True
    try:  # datasets converted before the owner file existed
        return str(json.loads((out / "dataset.json").read_text()).get("converted_by", "")).startswith(
            "nnunet_sam_adapter")
    except (OSError, ValueError, AttributeError):
        return False


def _has_foreign_entries(out: Path) -> bool:
    """Anything visible (our staging folders and temp files are hidden)."""
    return any(not p.name.startswith(".") for p in out.iterdir())


def claim_output_folder(out: Path, command: str) -> bool:
    """Refuse an existing, non-empty folder this tool did not create (nothing is changed in it); create
    and mark a new one. Returns whether the folder was created now."""
    if out.exists() and not out.is_dir():
        raise InputError("-", out, "output path is a file: expected a folder (or a path that does not exist)")
    created = not out.exists()
    if out.is_dir() and not _created_by_this_tool(out) and _has_foreign_entries(out):
        raise InputError("-", out, f"output folder exists and was not created by {command}; nothing was changed: "
                                   "expected a new or empty folder (choose another output, or move this one away)")
    out.mkdir(parents=True, exist_ok=True)
    if not (out / OWNER_FILE).is_file():
        atomic_write_json(out / OWNER_FILE, {"created_by": command})
    return created


def unclaim_if_empty(out: Path) -> None:
    """After a failed first run: remove the folder again when it holds nothing but our marks (never rmtree)."""
    (out / OWNER_FILE).unlink(missing_ok=True)
    for folder in sorted((p for p in out.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    if not any(out.iterdir()):
        out.rmdir()
    else:  # something was published after all: keep the folder ours
        atomic_write_json(out / OWNER_FILE, {"created_by": "nnunet_sam_adapter"})
