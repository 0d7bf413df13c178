"""`make install` (the set-up of `make demo` / `make test`) retries a failed `pip install`: a dropped download must
not fail the set-up (stop 40's CI did, on a 46.6 MB wheel from PyPI), and after PIP_TRIES attempts it stops with a
non-zero exit and one line. A stand-in venv python records each pip call and fails the first few."""

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _stand_in_venv(tmp_path: Path, failing_calls: int) -> Path:
    """tmp_path/venv whose bin/python logs '<PIP_RESUME_RETRIES> <args>' per call and fails the first calls."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    calls = tmp_path / "calls"
    python.write_text(f'#!/bin/sh\necho "$PIP_RESUME_RETRIES $*" >> "{calls}"\n'
                      f'[ "$(wc -l < "{calls}")" -gt {failing_calls} ]\n')
    python.chmod(0o755)
    return tmp_path / "venv"


def _make_install(venv: Path, tries: int = 3) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PIP_RESUME_RETRIES"}  # the Makefile's default, not the caller's
    return subprocess.run(["make", "-C", str(REPO), "install", f"VENV={venv}", f"PIP_TRIES={tries}",
                           "PIP_RETRY_WAIT_S=0"], capture_output=True, text=True, timeout=120, env=env)


def test_a_failed_pip_install_is_run_again(tmp_path):
    venv = _stand_in_venv(tmp_path, failing_calls=2)
    done = _make_install(venv)
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == ["20 -m pip install --upgrade pip"] * 3 + ["20 -m pip install -e .[test]"]
    assert "failed (try 1 of 3)" in done.stderr and "failed (try 2 of 3)" in done.stderr
    assert (venv / ".installed-stamp").is_file()


def test_the_set_up_stops_after_its_tries(tmp_path):
    venv = _stand_in_venv(tmp_path, failing_calls=100)
    done = _make_install(venv, tries=2)
    assert done.returncode != 0
    assert (tmp_path / "calls").read_text().splitlines() == ["20 -m pip install --upgrade pip"] * 2
    assert "make install: pip install --upgrade pip failed 2 times" in done.stderr
    assert not (venv / ".installed-stamp").exists()
