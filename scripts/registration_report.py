"""Conversion + registration results on the real cases of ../shared/data/real, printed as Markdown.

    .venv/bin/python scripts/registration_report.py [--misaligned-cases 2] [--baseline] [--png /tmp/tcia.png]
                                                    [--out /tmp/registration_results.md]

1. every BraTS case -> convert_brats (--register auto): seconds per case and the auto decisions;
2. known misalignment on BraTS cases: T1/T1ce/FLAIR moved by a 6-10 degree rotation about a random
   axis and a 5-8 mm shift, registered back: error against the known transform and against the
   registration of the unmoved modality (BraTS's own alignment is not the MI optimum), seconds;
   --baseline also runs DESIGN.md section 4's reference setup on the same moved images;
3. the raw TCIA case (different grids and orientations, 5.5 mm slices) -> register_cases.
Writes nothing but temp folders (deleted) and, if asked, the Markdown and a PNG overlay (real data:
never commit the PNG).
"""
import argparse
import glob
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_sam_adapter.data import conversion
from nnunet_sam_adapter.data.brats import CHANNELS
from nnunet_sam_adapter.data import registration as reg

REAL = Path(os.environ.get("NNSAM_REAL_DATA") or Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real")


def head_box_corners(image):
    index = np.argwhere(sitk.GetArrayFromImage(reg.head_mask(image)))
    lo, hi = index.min(0), index.max(0)
    return np.array([image.TransformIndexToPhysicalPoint([int(x), int(y), int(z)])
                     for x in (lo[2], hi[2]) for y in (lo[1], hi[1]) for z in (lo[0], hi[0])])


def baseline_register(fixed, moving):
    """DESIGN.md section 4: versor rigid, MOMENTS, ITK pyramid 8,4,2,1 / 3,2,1,0 mm, Mattes 32 bins, 20% samples."""
    start = time.perf_counter()
    fixed, moving = sitk.Cast(fixed, sitk.sitkFloat32), sitk.Cast(moving, sitk.sitkFloat32)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.2, reg.RANDOM_SEED)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-4, numberOfIterations=200,
                                                    relaxationFactor=0.5)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([8, 4, 2, 1])
    method.SetSmoothingSigmasPerLevel([3, 2, 1, 0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(sitk.CenteredTransformInitializer(
        fixed, moving, sitk.VersorRigid3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS), inPlace=False)
    result = method.Execute(fixed, moving)
    return reg._as_rigid(result), time.perf_counter() - start


def brats_cases():
    return sorted(Path(p) for p in glob.glob(str(REAL / "*brats*" / "*")) if Path(p).is_dir())


def conversion_table(lines):
    lines += ["### BraTS cases through `convert_brats` (--register auto, -np 1)", "",
              "| case | seconds | T1 | T1ce | FLAIR |", "|---|---|---|---|---|"]
    for case_dir in brats_cases():
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copytree(case_dir, Path(tmp) / "in" / case_dir.name)
            start = time.perf_counter()
            summary = conversion.convert_brats(Path(tmp) / "in", 999, "Report", num_processes=1,
                                               raw_root=Path(tmp) / "raw")
            seconds = time.perf_counter() - start
            report = json.loads((summary.output_dir / "registration_reports" / f"{case_dir.name}.json").read_text())
        cells = []
        for m in ("t1", "t1ce", "flair"):
            entry = report["modalities"][m]
            cells.append(f"registered: {entry['rotation_deg']:.2f} deg, shift {np.linalg.norm(entry['translation_mm']):.2f} mm, "
                         f"MI {entry['final_metric']:.3f} ({entry['reason']})" if entry["registered"]
                         else f"kept {entry['reason'].replace('same grid as T2 and aligned ', '')}")
        lines.append(f"| {case_dir.name} | {seconds:.1f} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    lines.append("")


def misalignment_table(lines, n_cases, baseline):
    rng = np.random.default_rng(2024)
    header = "| case | modality | applied rot (deg) | applied shift (mm) | ours: rot err vs known (deg) | max disp vs known (mm) | rot / disp vs unmoved reg. | seconds |"
    lines += ["### Known misalignment, full-resolution BraTS volumes (240x240x155, 1 mm)", "", header,
              "|---|---|---|---|---|---|---|---|"]
    if baseline:
        lines[-2] = header + " baseline: rot / disp vs unmoved reg. | baseline seconds |"
        lines[-1] = "|---|---|---|---|---|---|---|---|---|---|"
    for case_dir in brats_cases()[:n_cases]:
        t2 = sitk.ReadImage(glob.glob(str(case_dir / "*_t2.nii.gz"))[0], sitk.sitkFloat32)
        corners = head_box_corners(t2)
        for m in ("t1", "t1ce", "flair"):
            image = sitk.ReadImage(glob.glob(str(case_dir / f"*_{m}.nii.gz"))[0], sitk.sitkFloat32)
            true = reg.random_rigid_transform(rng, reg.geometric_centre(t2))
            angle = float(np.rad2deg(2 * np.arccos(min(1.0, abs(true.GetVersor()[3])))))
            shift = np.asarray(true.GetTranslation())
            moved = sitk.Resample(image, t2, true.GetInverse(), sitk.sitkLinear, 0.0)
            transform, report = reg.register_rigid(t2, moved)
            unmoved, _ = reg.register_rigid(t2, image)
            known = reg.transform_error(transform, true, corners)
            consistent = reg.transform_error(transform, reg.compose(true, unmoved), corners)
            row = (f"| {case_dir.name} | {m} | {angle:.1f} | {np.linalg.norm(shift):.1f} | "
                   f"{known['rotation_error_deg']:.2f} | {known['max_displacement_mm']:.2f} | "
                   f"{consistent['rotation_error_deg']:.2f} / {consistent['max_displacement_mm']:.2f} | {report['seconds']:.1f} |")
            if baseline:
                base, base_seconds = baseline_register(t2, moved)
                base_error = reg.transform_error(base, reg.compose(true, unmoved), corners)
                row += f" {base_error['rotation_error_deg']:.2f} / {base_error['max_displacement_mm']:.2f} | {base_seconds:.1f} |"
            lines.append(row)
            print(row, flush=True)
    lines.append("")


def tcia_table(lines, png):
    folder = REAL / "brainlesion_tcia_raw"
    sources = {"t1": "*_t1.nii.gz", "t1ce": "*_t1c.nii.gz", "t2": "*_t2.nii.gz", "flair": "*_fla.nii.gz"}
    lines += ["### Raw TCIA case TCGA-FG-6692 through `register_cases` (T2 grid 224x256x26, 0.9x0.9x5.5 mm)", "",
              "| modality | start | final MI | rotation (deg) | rotation x/y/z (deg) | translation (mm) | seconds |",
              "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        flat = Path(tmp) / "in"
        flat.mkdir()
        for index, modality in enumerate(CHANNELS):
            shutil.copyfile(next(folder.glob(sources[modality])), flat / f"TCGA-FG-6692_{index:04d}.nii.gz")
        conversion.register_cases(flat, Path(tmp) / "out", num_processes=1)
        report = json.loads((Path(tmp) / "out" / "registration_reports" / "TCGA-FG-6692.json").read_text())
        for m in ("t1", "t1ce", "flair"):
            e = report["modalities"][m]
            lines.append(f"| {m} | {e['initialisation']} | {e['final_metric']:.3f} | {e['rotation_deg']:.2f} | "
                         + " / ".join(f"{a:.2f}" for a in e["rotation_xyz_deg"]) + " | "
                         + ", ".join(f"{t:.2f}" for t in e["translation_mm"]) + f" | {e['seconds']:.1f} |")
            print(lines[-1], flush=True)
        if png:
            overlay(Path(tmp) / "out", flat, png)
    lines.append("")


def overlay(out, flat, png):
    """T2 (red) against each modality (green), scanner-space resampling vs registered, one mid slice."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t2 = sitk.ReadImage(str(out / "TCGA-FG-6692_0002.nii.gz"), sitk.sitkFloat32)
    fixed = sitk.GetArrayFromImage(t2)
    z = fixed.shape[0] // 2
    norm = lambda a: np.clip(a / np.percentile(a, 99), 0, 1)
    fig, axes = plt.subplots(2, 3, figsize=(12, 8))
    for column, (index, name) in enumerate(((0, "T1"), (1, "T1ce"), (3, "FLAIR"))):
        raw = sitk.ReadImage(str(flat / f"TCGA-FG-6692_{index:04d}.nii.gz"), sitk.sitkFloat32)
        for row, moving in enumerate((sitk.GetArrayFromImage(reg.resample_to(t2, raw)),
                                      sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"TCGA-FG-6692_{index:04d}.nii.gz"),
                                                                           sitk.sitkFloat32)))):
            axes[row, column].imshow(np.dstack([norm(fixed[z]), norm(moving[z]), np.zeros_like(fixed[z])]))
            axes[row, column].set_title(f"{name}: {'scanner space' if row == 0 else 'registered'} (red T2, green {name})")
            axes[row, column].axis("off")
    fig.tight_layout()
    fig.savefig(png, dpi=70)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--misaligned-cases", type=int, default=2)
    parser.add_argument("--baseline", action="store_true")
    parser.add_argument("--png", default=None, help="overlay PNG of the TCIA case (real data: do not commit)")
    parser.add_argument("--out", default=None, help="write the Markdown here too")
    args = parser.parse_args()
    if not REAL.is_dir():
        raise SystemExit(f"real data not found at {REAL} (set NNSAM_REAL_DATA)")
    lines = [f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, SimpleITK {sitk.Version.VersionString()}, "
             f"{sitk.ProcessObject_GetGlobalDefaultNumberOfThreads()} ITK threads, load average at start "
             f"{os.getloadavg()[0]:.1f}.", ""]
    conversion_table(lines)
    misalignment_table(lines, args.misaligned_cases, args.baseline)
    tcia_table(lines, args.png)
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
