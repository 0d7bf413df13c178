"""Whole-volume prediction time (issue #21): what a user waits for with `nnUNetv2_predict` on one volume.

Each row is a method on a planned dataset (`METHOD:DATASET`, e.g. `ours:601` with vit_b plans and
`ours:602` with LiteMedSAM plans of the same case). A row gets a model folder with untrained weights
(`volume_child.write_untrained_model`), then nnU-Net's own `nnUNetv2_predict` predicts the case in a process
of its own, without and with mirroring: wall seconds and the peak resident memory of its largest process.
One more run of nnU-Net's sequential predictor per row (no mirroring) splits the time: preprocessing,
encoder, decoder, sliding window, export (`volume_child.profile_prediction`).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from nnunet_sam_adapter.atomic_io import atomic_write_json, atomic_write_text
from nnunet_sam_adapter.data.input_check import check_input_folder
from nnunet_sam_adapter.methods import METHODS
from nnunet_sam_adapter.paths import load_json, trainer_dir
from nnunet_sam_adapter.speed.measurement import load_average

# a child's wall time and the peak RSS of its largest descendant (ru_maxrss is in KiB on Linux)
_TIMED_CHILD = ("import json, resource, subprocess, sys, time; start = time.perf_counter(); "
                "code = subprocess.run(sys.argv[1:]).returncode; "
                "print(json.dumps({'code': code, 'wall_s': time.perf_counter() - start, "
                "'peak_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))")


class WholeVolumeError(RuntimeError):
    """A row could not be measured; the message names the row and the log."""


PREDICT_COMMANDS = ("nnUNetv2_predict", "nnUNetv2_sam_predict")  # nnU-Net's; ours with batched tiles


@dataclass(frozen=True)
class VolumeRow:
    method: str
    dataset: str
    command: str = "nnUNetv2_predict"

    @property
    def key(self) -> str:
        return f"{self.method}@{self.dataset}" + ("" if self.command == "nnUNetv2_predict" else f"@{self.command}")


def parse_row(text: str) -> VolumeRow:
    """`METHOD:DATASET[:COMMAND]` -> VolumeRow (COMMAND: nnUNetv2_predict, the default, or nnUNetv2_sam_predict);
    an unknown method or command is refused with the known ones."""
    method, _, rest = text.partition(":")
    dataset, _, command = rest.partition(":")
    if not dataset.strip():
        raise ValueError(f"row {text!r}: expected METHOD:DATASET[:COMMAND], e.g. ours:601")
    if method not in METHODS:
        raise ValueError(f"row {text!r}: unknown method {method!r} (known: {', '.join(sorted(METHODS))})")
    command = command.strip() or "nnUNetv2_predict"
    if command not in PREDICT_COMMANDS:
        raise ValueError(f"row {text!r}: unknown command {command!r} (known: {', '.join(PREDICT_COMMANDS)})")
    return VolumeRow(method, dataset.strip(), command)


def _run_logged(argv: list[str], env: dict, log: Path) -> str:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        done = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=f, text=True)
        f.write(done.stdout)
    if done.returncode != 0:
        lines = log.read_text(errors="replace").strip().splitlines()
        errors = [line for line in lines if re.match(r"^[\w.]*(Error|Exception)\b", line)]  # the traceback's last line
        tail = (errors[-1] if errors else " | ".join(lines[-2:]))[-300:]
        raise WholeVolumeError(f"{' '.join(map(str, argv[:4]))} ... failed (exit {done.returncode}); log {log}: {tail}")
    return done.stdout


def _last_json(stdout: str) -> dict:
    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])


def _dataset_facts(dataset: str, env: dict) -> tuple[str, Path, dict]:
    """(nnU-Net name, raw folder, dataset.json) of `dataset` under env's nnUNet_raw."""
    raw = Path(env["nnUNet_raw"])
    found = sorted(raw.glob(f"Dataset{int(dataset):03d}_*")) if dataset.isdigit() else [raw / dataset]
    if not found or not (found[0] / "dataset.json").is_file():
        raise WholeVolumeError(f"dataset {dataset}: no {raw}/DatasetXXX_*/dataset.json (convert and plan it first)")
    return found[0].name, found[0], load_json(found[0] / "dataset.json")


def input_folder(dataset: str, case: str | None, env: dict, work_dir: Path) -> tuple[Path, str, tuple]:
    """WORK/input/DATASET with the case's channel files copied from imagesTr -> (folder, case, image shape)."""
    import SimpleITK as sitk

    name, raw, dataset_json = _dataset_facts(dataset, env)
    ending = dataset_json["file_ending"]
    cases = sorted({p.name[: -len(ending) - 5] for p in (raw / "imagesTr").glob(f"*_0000{ending}")})
    if not cases:
        raise WholeVolumeError(f"dataset {name}: no *_0000{ending} images in {raw / 'imagesTr'}")
    case = case or cases[0]
    if case not in cases:
        raise WholeVolumeError(f"dataset {name}: case {case} not in imagesTr (cases: {', '.join(cases[:5])} ...)")
    folder = work_dir / "input" / name
    folder.mkdir(parents=True, exist_ok=True)
    for channel in sorted(dataset_json["channel_names"], key=int):
        source = raw / "imagesTr" / f"{case}_{int(channel):04d}{ending}"
        shutil.copyfile(source, folder / source.name)
    # nnU-Net's reader predicts on a truncated file without a word (measured: a cut .nii.gz gave a "prediction")
    _, problems = check_input_folder(folder, dataset_json)
    if problems:
        raise WholeVolumeError(f"dataset {name}: {str(problems[0]).replace(str(folder), str(raw / 'imagesTr'))}")
    shape = sitk.ReadImage(str(folder / f"{case}_0000{ending}")).GetSize()
    return folder, case, tuple(int(s) for s in shape)


def measure_row(row: VolumeRow, env: dict, work_dir: Path, case: str | None, mirroring_modes: tuple[bool, ...],
                profile: bool, progress=print) -> dict:
    """Model folder, nnUNetv2_predict per mirroring mode, and the profile of one row -> its result."""
    method = METHODS[row.method]
    logs = work_dir / "logs" / row.key.replace("@", "_")
    folder, case, shape = input_folder(row.dataset, case, env, work_dir)
    model = _last_json(_run_logged([sys.executable, "-m", "nnunet_sam_adapter.speed.volume_child", "model",
                                    row.method, row.dataset], env, logs / "model.log"))["model_folder"]
    configuration = load_json(Path(model) / "plans.json")["configurations"][method.configuration]
    result = {"row": row.key, "method": row.method, "label": method.label, "dataset": row.dataset,
              "command": row.command, "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "load_average_at_start": load_average(),
              "configuration": method.configuration, "trainer": method.trainer_name, "plans": method.plans,
              "backbone": configuration.get("sam", {}).get("backbone"), "case": case, "image_size_xyz": list(shape),
              "patch_size": configuration["patch_size"]}
    predict = shutil.which(row.command, path=str(Path(sys.executable).parent) + os.pathsep + env["PATH"])
    for mirroring in mirroring_modes:
        tag = "mirroring" if mirroring else "no_mirroring"
        out = work_dir / "predictions" / row.key.replace("@", "_") / tag
        shutil.rmtree(out, ignore_errors=True)
        argv = [predict, "-i", str(folder), "-o", str(out), "-d", row.dataset, "-c", method.configuration,
                "-tr", method.trainer_name, "-p", method.plans, "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1",
                "--disable_progress_bar", *([] if mirroring else ["--disable_tta"])]
        progress(f"  {row.command} {row.key} ({tag}) ...")
        timed = _last_json(_run_logged([sys.executable, "-c", _TIMED_CHILD, *argv], env, logs / f"predict_{tag}.log"))
        if timed["code"] != 0 or not list(out.glob(f"{case}*")):
            raise WholeVolumeError(f"row {row.key}: {row.command} ({tag}) failed (exit {timed['code']}); "
                                   f"log {logs / f'predict_{tag}.log'}")
        result[tag] = {"wall_s": timed["wall_s"], "peak_mb": timed["peak_mb"]}
        progress(f"    {timed['wall_s']:.1f} s, peak {timed['peak_mb']:.0f} MB")
    if profile:
        out = work_dir / "predictions" / row.key.replace("@", "_") / "profile"
        shutil.rmtree(out, ignore_errors=True)
        result["profile"] = _last_json(_run_logged(
            [sys.executable, "-m", "nnunet_sam_adapter.speed.volume_child", "profile", model, str(folder), str(out),
             "no_mirroring", "batched" if row.command == "nnUNetv2_sam_predict" else "nnunet"], env,
            logs / "profile.log"))
    result["load_average_at_end"] = load_average()
    return result


def run_whole_volume_benchmark(rows: list[VolumeRow], work_dir: str | os.PathLike, case: str | None = None,
                               mirroring_modes: tuple[bool, ...] = (False, True), profile: bool = True,
                               progress=print, earlier: dict | None = None) -> dict:
    """Every row measured (nnU-Net's folders from the environment, our trainers findable) -> the report;
    `earlier`: a saved report whose other rows are kept (a row measured again replaces its old result)."""
    import torch

    from nnunet_sam_adapter.speed.measurement import describe_environment
    from nnunet_sam_adapter.speed.variants import SpeedSettings

    env = dict(os.environ)
    missing = [name for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results") if not env.get(name)]
    if missing:
        raise WholeVolumeError(f"set nnU-Net's folders first ({', '.join(missing)} unset)")
    env.update(nnUNet_extTrainer=trainer_dir(), nnUNet_compile=env.get("nnUNet_compile", "false"))
    work_dir = Path(work_dir)
    start = time.perf_counter()
    environment = describe_environment(torch.device("cpu"), SpeedSettings())
    results = []

    def report() -> dict:
        measured = {r["row"] for r in results}
        kept = [r for r in (earlier or {}).get("rows", []) if r["row"] not in measured]
        return {"environment": (earlier or {}).get("environment", environment), "rows": kept + results,
                "reference": _reference(kept + results),
                "total_wall_s": (earlier or {}).get("total_wall_s", 0.0) + time.perf_counter() - start}

    for i, row in enumerate(rows, 1):
        progress(f"[{i}/{len(rows)}] {row.key} ({METHODS[row.method].label})")
        try:
            results.append(measure_row(row, env, work_dir, case, mirroring_modes, profile, progress))
        except WholeVolumeError as error:
            if results:
                raise WholeVolumeError(f"{error} (rows measured before it kept in {work_dir / 'whole_volume.json'}: "
                                       f"add the others with --append)") from None
            raise
        # after every row, so a run that fails, is stopped or killed keeps what it measured (--append adds the rest)
        atomic_write_json(work_dir / "whole_volume.json", report())
    environment["load_average_at_end"] = load_average()
    return report()


def _reference(results: list[dict]) -> str | None:
    """The row the ratios are against: stock nnU-Net 2d (the issue's yardstick), else none."""
    return next((r["row"] for r in results if r["method"] == "nnunet_2d"), None)


def _seconds(value) -> str:
    return "" if value is None else f"{value:.1f}"


def _row_label(row: dict) -> str:
    command = row.get("command", "nnUNetv2_predict")
    return row["label"] + ("" if command == "nnUNetv2_predict" else f", `{command}`")


def whole_volume_markdown(report: dict) -> str:
    env, rows = report["environment"], report["rows"]
    reference = next((r for r in rows if r["row"] == report.get("reference")), None)
    shape = rows[0]["image_size_xyz"] if rows else []
    lines = [f"Machine: {env.get('cpu')} ({env.get('cpu_cores')} CPU cores). torch {env.get('torch')}, nnunetv2 "
             f"{env.get('nnunetv2')}. {env.get('date')}. Case {rows[0]['case'] if rows else '?'} "
             f"({' x '.join(map(str, shape))} voxels, 4 modalities); `nnUNetv2_predict -device cpu -npp 1 -nps 1`, "
             f"untrained weights (timing does not depend on them), default tile step 0.5. Total "
             f"{report['total_wall_s'] / 60:.1f} min.", "",
             "| method | plans (backbone) | configuration, patch | s / volume | x nnU-Net 2d | peak MB | "
             "s / volume, mirroring | x nnU-Net 2d | peak MB |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        cells = []
        for tag in ("no_mirroring", "mirroring"):
            m = r.get(tag)
            ref = (reference or {}).get(tag)
            ratio = f"{m['wall_s'] / ref['wall_s']:.2f}" if m and ref else ""
            cells += [_seconds(m["wall_s"]) if m else "not run", ratio, f"{m['peak_mb']:.0f}" if m else ""]
        plans = f"{r['plans']}" + (f" ({r['backbone']})" if r.get("backbone") else "")
        patch = "x".join(map(str, r["patch_size"]))
        lines.append(f"| {_row_label(r)} | {plans} | {r['configuration']}, {patch} | " + " | ".join(cells) + " |")
    profiled = [r for r in rows if r.get("profile")]
    if profiled:
        lines += ["", "Where the time goes (nnU-Net's sequential predictor in-process, no mirroring; seconds):", "",
                  "| method | total | preprocessing | encoder (+ stems, adapters) | decoder | sliding window | export | "
                  "network forwards |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in profiled:
            p = r["profile"]
            backbone = f" ({r['backbone']})" if r.get("backbone") else ""
            lines.append(f"| {_row_label(r)}{backbone} | {_seconds(p['total_s'])} | {_seconds(p['preprocessing_s'])} | "
                         f"{_seconds(p['encoder_s'])} | {_seconds(p['decoder_s'])} | "
                         f"{_seconds(p['sliding_window_s'])} | {_seconds(p['export_s'])} | {p['network_forwards']} |")
    loads = [(r["row"], r.get("load_average_at_start"), r.get("load_average_at_end")) for r in rows
             if r.get("load_average_at_start")]
    if loads:
        lines += ["", "1-minute load average at the start / end of each row (2 idle cores: about 0 at the start): "
                  + "; ".join(f"{key} {start[0]:.1f} / {end[0]:.1f}" for key, start, end in loads if end) + "."]
    for note in report.get("notes", []):
        lines += ["", f"Note: {note}"]
    return "\n".join(lines) + "\n"


def write_whole_volume_outputs(report: dict, output_dir: str | os.PathLike,
                               docs_path: str | os.PathLike | None = None) -> None:
    """OUTPUT/whole_volume.json and .md; with `docs_path`, saved beside the page and the page re-rendered."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output_dir / "whole_volume.json", report)
    atomic_write_text(output_dir / "whole_volume.md", whole_volume_markdown(report))
    if docs_path:
        from nnunet_sam_adapter.speed.report import render_page, volume_report_path

        atomic_write_json(volume_report_path(docs_path), report)
        render_page(docs_path)
