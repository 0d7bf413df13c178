"""The benchmark's preflight (issue 19 class 4, issue 22): a split naming a case that does not exist, a
configuration that is planned but not preprocessed, a SAM checkpoint that does not load or an `--only` run
the command does not have stops `nnUNetv2_sam_benchmark` before anything trains, one line per problem; and
SIGTERM to a running benchmark leaves none of its child processes alive.

The preflight tests stop before any training, on a copy of the session's planned dataset's preprocessed
folder (their edits never reach the shared one).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from planned_dataset import DATASET_ID, DATASET_NAME

PROG = "nnUNetv2_sam_benchmark"
TYPO = "BraTS2021_0000l"  # a typo: no such case


def _benchmark(env: dict, *arguments) -> subprocess.CompletedProcess:
    command = [PROG, "-d", DATASET_ID, "-f", "0", "--epochs", "1", "--iterations", "1", "-device", "cpu",
               "--overlay-cases", "0", *arguments]
    return subprocess.run([str(c) for c in command], env=env, capture_output=True, text=True, timeout=900)


def _assert_stopped_before_training(result: subprocess.CompletedProcess, env: dict, out: Path) -> list[str]:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-3000:]
    assert lines and all(line.startswith(f"{PROG}: error: ") for line in lines), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert not out.exists(), "the benchmark made its output folder before the preflight stopped it"
    results = Path(env["nnUNet_results"])
    assert not list(results.rglob("*.pth")) and not list(results.rglob("fold_0")), list(results.rglob("*"))
    return lines


@pytest.fixture()
def own_copy(planned_dataset, tmp_path):
    """The planned dataset's env with a private copy of its preprocessed folder and an empty results folder."""
    source = Path(planned_dataset.env["nnUNet_preprocessed"])
    preprocessed = tmp_path / "nnUNet_preprocessed"
    shutil.copytree(source / DATASET_NAME, preprocessed / DATASET_NAME)
    (tmp_path / "nnUNet_results").mkdir()
    env = {**planned_dataset.env, "nnUNet_preprocessed": str(preprocessed),
           "nnUNet_results": str(tmp_path / "nnUNet_results")}
    return env, preprocessed / DATASET_NAME


def _cases(dataset: Path) -> list[str]:
    return sorted(p.name[: -len(".nii.gz")] for p in (dataset / "gt_segmentations").glob("*.nii.gz"))


def _write_split(dataset: Path, train: list[str], val: list[str]) -> None:
    (dataset / "splits_final.json").write_text(json.dumps([{"train": train, "val": val}] * 2))


def test_split_naming_a_missing_case_stops_before_training(own_copy, tmp_path):
    """Was: training started, then nnU-Net's 'One or more background workers are no longer alive'."""
    env, dataset = own_copy
    cases = _cases(dataset)
    _write_split(dataset, [*cases[:3], TYPO], cases[3:])
    split_before = (dataset / "splits_final.json").read_bytes()
    out = tmp_path / "out"
    lines = _assert_stopped_before_training(_benchmark(env, "--methods", "nnunet_2d", "T1", "-o", out), env, out)
    named = [line for line in lines if TYPO in line]
    assert len(named) == 1 and "fold 0 train" in named[0] and "does not exist" in named[0], lines
    assert "splits_final.json" in named[0] and "nnunet_2d" in " ".join(lines), lines
    assert lines[-1].endswith("nothing was trained"), lines
    assert (dataset / "splits_final.json").read_bytes() == split_before  # inputs are only read


def test_configuration_not_preprocessed_stops_with_the_command(own_copy, tmp_path):
    """Was: FileNotFoundError .../nnUNetPlans_3d_fullres after the other methods had trained."""
    env, dataset = own_copy
    plans = json.loads((dataset / "nnUNetPlans.json").read_text())
    assert "3d_fullres" in plans["configurations"] and not (dataset / "nnUNetPlans_3d_fullres").exists()
    out = tmp_path / "out"
    lines = _assert_stopped_before_training(
        _benchmark(env, "--methods", "nnunet_2d", "nnunet_3d_fullres", "-o", out), env, out)
    problem = next(line for line in lines if "3d_fullres" in line)
    assert "nnunet_3d_fullres" in problem and "not preprocessed" in problem, lines
    assert f"nnUNetv2_preprocess -d {DATASET_ID} -c 3d_fullres -plans_name nnUNetPlans" in problem, lines
    assert not any("nnunet_2d " in line for line in lines[:-1]), lines  # the good one is not blamed


def test_a_case_missing_from_the_data_folder_is_named(own_copy):
    """A case of the dataset whose preprocessed files are gone (an interrupted preprocessing)."""
    from nnunet_sam_adapter.benchmark.preflight import PreflightError, preflight

    env, dataset = own_copy
    cases = _cases(dataset)
    _write_split(dataset, cases[:4], cases[4:])
    for path in (dataset / "nnUNetPlans_2d").glob(f"{cases[4]}.*"):
        path.unlink()
    dataset_json = json.loads((dataset / "dataset.json").read_text())
    with pytest.raises(PreflightError) as raised:
        preflight(DATASET_ID, dataset, dataset_json, ["nnunet_2d", "ours"], [0])
    assert len(raised.value.problems) == 1, raised.value.problems
    problem = raised.value.problems[0]
    assert cases[4] in problem and "fold 0 val" in problem and "nnunet_2d" in problem, problem
    assert "nnUNetv2_preprocess" in problem


def test_checkpoint_named_by_the_plans_must_load(own_copy):
    from nnunet_sam_adapter.benchmark.preflight import PreflightError, preflight

    env, dataset = own_copy
    cases = _cases(dataset)
    _write_split(dataset, cases[:4], cases[4:])
    broken = dataset.parent / "broken_sam.pth"
    broken.write_bytes(b"")
    plans_file = dataset / "nnUNetSAMPlans.json"
    plans = json.loads(plans_file.read_text())
    plans["configurations"]["2d"]["sam"]["checkpoint"] = str(broken)
    plans_file.write_text(json.dumps(plans))
    dataset_json = json.loads((dataset / "dataset.json").read_text())
    with pytest.raises(PreflightError) as raised:
        preflight(DATASET_ID, dataset, dataset_json, ["ours", "T1", "nnunet_2d"], [0])
    problems = raised.value.problems
    assert len(problems) == 2 and all(str(broken) in p and "truncated or corrupt" in p for p in problems), problems
    assert problems[0].startswith("method ours (nnUNetSAMPlans 2d)"), problems


def test_a_truncated_plans_file_is_named_and_the_parameters_report_leaves_its_rows_out(own_copy, monkeypatch):
    """A plans file cut short (a copy interrupted mid-write): the preflight names it and says what to run; the
    Table 3 report (reporting/parameters.py, called after a benchmark's training) drops its rows, never raises."""
    from nnunet_sam_adapter.benchmark.preflight import PreflightError, preflight
    from nnunet_sam_adapter.methods import METHODS
    from nnunet_sam_adapter.reporting.parameters import _plans, sam_description

    env, dataset = own_copy
    for name, value in env.items():  # nnU-Net 2.8 reads its folder variables when used, not at import
        monkeypatch.setenv(name, value)
    assert sam_description(DATASET_ID)["backbone"]
    cases = _cases(dataset)
    _write_split(dataset, cases[:4], cases[4:])
    plans_file = dataset / "nnUNetSAMPlans.json"
    text = plans_file.read_text()
    plans_file.write_text(text[: len(text) // 2])
    dataset_json = json.loads((dataset / "dataset.json").read_text())
    with pytest.raises(PreflightError) as raised:
        preflight(DATASET_ID, dataset, dataset_json, ["ours", "nnunet_2d"], [0])
    problems = raised.value.problems
    assert len(problems) == 1 and str(plans_file) in problems[0], problems
    assert "nnUNetv2_sam_plan_and_preprocess" in problems[0], problems
    assert _plans(dataset, METHODS["ours"]) is None
    assert sam_description(DATASET_ID) is None  # a stock-only benchmark's report step: no SAM row, no raise
    assert _plans(dataset, METHODS["nnunet_2d"])["configurations"]["2d"]
    plans_file.write_text("[]")  # JSON, but not nnU-Net plans: the same one line, not a TypeError
    with pytest.raises(PreflightError) as raised:
        preflight(DATASET_ID, dataset, dataset_json, ["ours", "nnunet_2d"], [0])
    assert len(raised.value.problems) == 1 and str(plans_file) in raised.value.problems[0], raised.value.problems
    assert _plans(dataset, METHODS["ours"]) is None
    assert sam_description(DATASET_ID) is None
    plans_file.write_text('{"configurations": {"3d_fullres": {}}}')  # plans, but without the SAM 2d configuration
    assert sam_description(DATASET_ID) is None


def test_a_good_configuration_passes(own_copy):
    from nnunet_sam_adapter.benchmark.layout import ensure_splits
    from nnunet_sam_adapter.benchmark.preflight import preflight

    env, dataset = own_copy
    dataset_json = json.loads((dataset / "dataset.json").read_text())
    splits = ensure_splits(dataset, dataset_json)  # nnU-Net's default split, as the benchmark writes it
    preflight(DATASET_ID, dataset, dataset_json, ["ours", "early_fusion", "T1", "nnunet_2d"],
              list(range(len(splits))))


def test_only_names_a_run_the_command_does_not_have_and_stops_before_training(own_copy, tmp_path):
    """--only with a seed the command's --seeds does not train: one line listing the command's runs."""
    env, dataset = own_copy
    cases = _cases(dataset)
    _write_split(dataset, cases[:4], cases[4:])
    out = tmp_path / "out"
    lines = _assert_stopped_before_training(
        _benchmark(env, "--methods", "nnunet_2d", "T1", "--only", "T1/fold_0/seed_1", "-o", out), env, out)
    assert len(lines) == 1 and "--only T1/fold_0/seed_1: not among this command's runs" in lines[0], lines
    assert "(nnunet_2d/fold_0, T1/fold_0)" in lines[0], lines


def test_only_dispatches_just_the_named_runs(own_copy, tmp_path, monkeypatch):
    from nnunet_sam_adapter.benchmark import pipeline

    env, dataset = own_copy
    cases = _cases(dataset)
    _write_split(dataset, cases[:4], cases[4:])
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(name, env[name])
    dispatched = []

    class Dispatched(Exception):
        pass

    def record(specs, options, layout):
        dispatched.extend(spec.name for spec in specs)
        raise Dispatched

    monkeypatch.setattr(pipeline, "run_specs", record)
    settings = pipeline.BenchmarkSettings(DATASET_ID, ("nnunet_2d", "T1"), folds=(0, 1), seeds=2,
                                          output_dir=tmp_path / "out", only=("T1/fold_1/seed_1", "nnunet_2d/fold_0"))
    with pytest.raises(Dispatched):
        pipeline.run_benchmark(settings)
    assert dispatched == ["nnunet_2d/fold_0", "T1/fold_1/seed_1"]  # the command's order, nothing else
    dispatched.clear()
    with pytest.raises(Dispatched):  # without --only: every run of the command
        pipeline.run_benchmark(pipeline.BenchmarkSettings(DATASET_ID, ("nnunet_2d", "T1"), folds=(0, 1), seeds=2,
                                                          output_dir=tmp_path / "out"))
    assert len(dispatched) == 8


def test_a_cross_validation_on_part_of_the_split_is_noted():
    """--folds 0 1 2 of nnU-Net's default 5-fold split validates 12 of 18 cases: the benchmark says so."""
    from nnunet_sam_adapter.benchmark.layout import fold_coverage_note

    cases = [f"case_{i:02d}" for i in range(18)]
    five = [{"train": [c for c in cases if c not in cases[i::5]], "val": cases[i::5]} for i in range(5)]
    three = [{"train": [c for c in cases if c not in cases[i::3]], "val": cases[i::3]} for i in range(3)]
    assert fold_coverage_note(five, [0, 1, 2]) == (
        "note: folds 0, 1, 2 of splits_final.json (5 folds) validate 12 of 18 cases; --folds all validates every "
        "case once, or write a splits_final.json with 3 folds")
    assert fold_coverage_note(five, [0, 1, 2, 3, 4]) is None and fold_coverage_note(three, [0, 1, 2]) is None
    assert fold_coverage_note(five, [2]) is None  # one fold is not a cross-validation


def test_a_3d_budget_is_reported_in_patches_and_slices():
    """nnunet_3d_fullres beside the 2d methods: one of its 'images' is a [D, H, W] patch."""
    from nnunet_sam_adapter.reporting.tables import budget_cell
    from nnunet_sam_adapter.training.budget import describe_budget

    budget_3d = {"epochs": 2, "iterations": 4, "batch_size": 2, "patch_size": [12, 64, 48]}
    assert budget_cell(budget_3d) == "2x4x2 = 16 3d patches of [12, 64, 48] (192 slices)"
    assert describe_budget(budget_3d).endswith("batch 2 = 16 3d patches of [12, 64, 48] (192 slices)")
    budget_2d = {"epochs": 2, "iterations": 4, "batch_size": 24, "patch_size": [64, 48]}
    assert budget_cell(budget_2d) == "2x4x24 = 192" and describe_budget(budget_2d).endswith("= 192 images")


# ------------------------------------------------------------------ SIGTERM


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def descendant_pids(pid: int) -> list[int]:
    """Every process below `pid` (from /proc; the test's own copy, independent of the code it checks)."""
    parents = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
    found, queue = [], [pid]
    while queue:
        current = queue.pop(0)
        children = [child for child, parent in parents.items() if parent == current]
        found += children
        queue += children
    return found


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["inline", "local"])
def test_sigterm_ends_every_child_process(planned_dataset, tmp_path, executor):
    """Was: after SIGTERM nnU-Net's data-loader workers stayed alive indefinitely."""
    env = {**planned_dataset.env_with_results(f"sigterm_{executor}"), "nnUNet_n_proc_DA": "2"}
    out = tmp_path / "out"
    command = [PROG, "-d", DATASET_ID, "--methods", "nnunet_2d", "-f", "0", "--epochs", "1000", "--iterations",
               "1000", "-device", "cpu", "-o", str(out), "--executor", executor]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    children: list[int] = []
    wanted = 2 if executor == "inline" else 3  # data-loader workers (+ the local job's process)
    try:
        deadline, steady = time.monotonic() + 600, 0
        while time.monotonic() < deadline and process.poll() is None and steady < 5:
            found = descendant_pids(process.pid)
            steady = steady + 1 if len(found) >= wanted and found == children else 0
            children = found
            time.sleep(1)
        assert process.poll() is None, process.communicate()[1][-3000:]
        children = descendant_pids(process.pid)
        assert children, "no child process to end"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
        assert process.returncode != 0
        assert f"{PROG}: error: interrupted by SIGTERM" in stderr, stderr[-3000:]
        time.sleep(1)
        survivors = [pid for pid in children if _alive(pid)]
        assert not survivors, f"child processes still alive after SIGTERM: {survivors}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in children:  # never leave a survivor behind, whatever the outcome
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
