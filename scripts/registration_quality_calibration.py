"""Calibrate the registration quality gate (registration.QUALITY_THRESHOLD) on the real cases.

    .venv/bin/python scripts/registration_quality_calibration.py [--registered-cases 2] [--out /tmp/cal.jsonl]

For every modality (T1, T1ce, FLAIR) of every BraTS case of ../shared/data/real, the alignment figure
(registration.alignment_quality: NMI inside T2's head mask) of
- good: the modality as it is (BraTS volumes are co-registered on T2's grid: what --register auto keeps);
- flipped, never: the same voxels with the direction flipped in x and y (grid centre kept), resampled
  onto T2's grid in scanner space (what --register never writes);
- other patient, never: the next case's same modality resampled onto T2's grid;
- flipped / other patient, registered (the first --registered-cases cases): the same after the rigid
  registration --register auto runs (it registers a modality whose header differs from T2's);
- the raw TCIA case registered (--register always: good) and its flipped modalities registered (bad).
Prints one JSON line per figure and a summary (min good, max bad). Writes nothing else; real data:
never commit the output.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_sam_adapter.data import registration
from nnunet_sam_adapter.data.synthetic import flip_direction_xy

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
MOVING = ("t1", "t1ce", "flair")
TCIA = {"t1": "*_t1.nii.gz", "t1ce": "*_t1c.nii.gz", "t2": "*_t2.nii.gz", "flair": "*_fla.nii.gz"}


def brats_cases():
    cases = []
    for dataset in ("deepbrainseg_brats2018", "bioexp_brats2018", "btsgp_brats2021"):
        for folder in sorted((REAL / dataset).iterdir()):
            if folder.is_dir():
                cases.append({m: folder / f"{folder.name}_{m}.nii.gz" for m in (*MOVING, "t2")} | {"id": folder.name})
    return cases


MASKS = {}


def figure(t2, aligned):
    key = id(t2)
    if key not in MASKS:
        MASKS.clear()
        MASKS[key] = sitk.GetArrayFromImage(registration.head_mask(t2)).astype(bool)
    return registration.alignment_quality(t2, aligned, MASKS[key])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--registered-cases", type=int, default=2)
    parser.add_argument("--skip-tcia", action="store_true")
    parser.add_argument("--only-tcia", action="store_true")
    parser.add_argument("--only-registered", action="store_true",
                        help="only the registered figures of the first --registered-cases cases")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = open(args.out, "a") if args.out else None
    rows = []

    def emit(**row):
        rows.append(row)
        line = json.dumps(row)
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()

    cases = [] if args.only_tcia else brats_cases()
    read = lambda p: sitk.ReadImage(str(p), sitk.sitkFloat32)
    for index, case in enumerate(cases):
        if args.only_registered and index >= args.registered_cases:
            break
        t2 = read(case["t2"])
        other = cases[(index + 1) % len(cases)]
        for modality in MOVING:
            image = read(case[modality])
            flipped = flip_direction_xy(image)
            stranger = read(other[modality])
            if not args.only_registered:
                start = time.perf_counter()
                q = figure(t2, registration.resample_to(t2, image))
                emit(case=case["id"], modality=modality, kind="good", mode="never",
                     seconds=time.perf_counter() - start, **q)
                emit(case=case["id"], modality=modality, kind="flipped", mode="never",
                     **figure(t2, registration.resample_to(t2, flipped)))
                emit(case=case["id"], modality=modality, kind=f"other patient ({other['id']})", mode="never",
                     **figure(t2, registration.resample_to(t2, stranger)))
            if index < args.registered_cases:
                for kind, moving in (("flipped", flipped), (f"other patient ({other['id']})", stranger)):
                    transform, report = registration.register_rigid(t2, moving)
                    emit(case=case["id"], modality=modality, kind=kind, mode="registered",
                         final_metric=report["final_metric"], rotation_deg=report["rotation_deg"],
                         **figure(t2, registration.resample_to(t2, moving, transform)))
    if not args.skip_tcia:
        MASKS.clear()
        folder = REAL / "brainlesion_tcia_raw"
        images = {m: read(next(folder.glob(pattern))) for m, pattern in TCIA.items()}
        t2 = images["t2"]
        for modality in MOVING:
            for kind, moving in (("good", images[modality]), ("flipped", flip_direction_xy(images[modality]))):
                transform, report = registration.register_rigid(t2, moving)
                emit(case="TCGA-FG-6692", modality=modality, kind=kind, mode="registered",
                     final_metric=report["final_metric"], rotation_deg=report["rotation_deg"],
                     **figure(t2, registration.resample_to(t2, moving, transform)))
    for key in ("nmi", "mi", "ncc"):
        good = [r[key] for r in rows if r["kind"] == "good"] or [float("nan")]
        bad = [r[key] for r in rows if r["kind"] != "good"] or [float("nan")]
        print(f"{key}: good {len(good)} min {min(good):.4f} max {max(good):.4f}; "
              f"bad {len(bad)} min {min(bad):.4f} max {max(bad):.4f}", file=sys.stderr)


if __name__ == "__main__":
    main()
