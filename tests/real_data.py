"""Location of the real MRI cases (../shared/data/real, or $NNSAM_REAL_DATA) for tests that skip without them."""
import os
from pathlib import Path

import pytest

REAL_DATA = Path(os.environ.get("NNSAM_REAL_DATA") or Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real")


def real_folder(name: str) -> Path:
    """``REAL_DATA/name``, or skip the test with the reason."""
    folder = REAL_DATA / name
    if not folder.is_dir():
        pytest.skip(f"real data not available: {folder} is missing (set NNSAM_REAL_DATA to the shared/data/real folder)")
    return folder
