"""Time `--register always` (the path of nnUNetv2_sam_register / nnUNetv2_sam_convert_brats) on real cases.

    PYTHONPATH=. python scripts/registration_timing.py CASE_FOLDER [CASE_FOLDER ...] [--threads N]
                                                      [--no-accuracy]

Per case folder (a BraTS case: *_t1, *_t1ce, *_t2, *_flair .nii.gz): `conversion.register_cases(...,
register="always", num_processes=1)` on a temporary folder that links to the case (nothing is copied, the
outputs are deleted), and prints wall seconds, CPU seconds (this process and its children), the ITK thread
count, and per modality the registration's seconds / CPU seconds, start and final metric from the case's
report. Then the accuracy check of docs/conversion.md ("Known misalignment"): each of T1, T1ce, FLAIR moved
by a known 6-10 degree rotation and 5-8 mm shift (seeded) is registered back, and the result is compared
with the registration of the unmoved modality composed with the known transform (rotation error in
degrees, largest displacement at the head's bounding-box corners in mm). Prints numbers only: timings
depend on the machine and its load, nothing is asserted.
"""
import argparse
import glob
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunet_sam_adapter.data import conversion
from nnunet_sam_adapter.data import registration as reg


def cpu_seconds() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def head_box_corners(image):
    index = np.argwhere(sitk.GetArrayFromImage(reg.head_mask(image)))
    lo, hi = index.min(0), index.max(0)
    return np.array([image.TransformIndexToPhysicalPoint([int(x), int(y), int(z)])
                     for x in (lo[2], hi[2]) for y in (lo[1], hi[1]) for z in (lo[0], hi[0])])


def time_case(case_dir: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        in_dir = Path(tmp) / "in"
        in_dir.mkdir()
        (in_dir / case_dir.name).mkdir()
        for image in case_dir.resolve().glob("*.nii.gz"):  # links to the files: the case is not copied
            (in_dir / case_dir.name / image.name).symlink_to(image)
        wall, cpu = time.perf_counter(), cpu_seconds()
        conversion.register_cases(in_dir, Path(tmp) / "out", register="always", num_processes=1)
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        report = json.loads((Path(tmp) / "out" / "registration_reports" / f"{case_dir.name}.json").read_text())
    print(f"{case_dir.name}: register_cases --register always: wall {wall:.1f} s, CPU {cpu:.1f} s, "
          f"ITK threads {sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()}, load average {os.getloadavg()[0]:.1f}, "
          f"case report seconds {report['seconds']:.1f}")
    for modality, entry in report["modalities"].items():
        if entry.get("registered"):
            print(f"  {modality}: {entry['seconds']:.1f} s wall, {entry.get('cpu_seconds', float('nan')):.1f} s CPU, "
                  f"start {entry['initialisation']}, final metric {entry['final_metric']:.4f}, "
                  f"alignment NMI {entry['alignment']['nmi']:.4f}")


def accuracy_case(case_dir: Path, rng: np.random.Generator) -> None:
    t2 = sitk.ReadImage(glob.glob(str(case_dir / "*_t2.nii.gz"))[0], sitk.sitkFloat32)
    corners = head_box_corners(t2)
    prepared = reg.prepare_fixed(t2)
    for modality in ("t1", "t1ce", "flair"):
        image = sitk.ReadImage(glob.glob(str(case_dir / f"*_{modality}.nii.gz"))[0], sitk.sitkFloat32)
        true = reg.random_rigid_transform(rng, reg.geometric_centre(t2))
        angle = float(np.rad2deg(2 * np.arccos(min(1.0, abs(true.GetVersor()[3])))))
        shift = np.asarray(true.GetTranslation())
        moved = sitk.Resample(image, t2, true.GetInverse(), sitk.sitkLinear, 0.0)
        transform, report = reg.register_rigid(t2, moved, prepared=prepared)
        unmoved, _ = reg.register_rigid(t2, image, prepared=prepared)
        known = reg.transform_error(transform, true, corners)
        consistent = reg.transform_error(transform, reg.compose(true, unmoved), corners)
        print(f"  accuracy {modality}: applied {angle:.1f} deg / {np.linalg.norm(shift):.1f} mm; vs known "
              f"{known['rotation_error_deg']:.3f} deg / {known['max_displacement_mm']:.3f} mm; vs unmoved "
              f"registration + known {consistent['rotation_error_deg']:.3f} deg / "
              f"{consistent['max_displacement_mm']:.3f} mm; {report['seconds']:.1f} s wall, "
              f"{report['cpu_seconds']:.1f} s CPU")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cases", nargs="+", type=Path, help="BraTS case folders")
    parser.add_argument("--threads", type=int, default=None, help="ITK threads (default: ITK's, all cores)")
    parser.add_argument("--no-accuracy", action="store_true", help="timing only")
    args = parser.parse_args()
    if args.threads:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    print(f"{os.cpu_count()} CPU cores, SimpleITK {sitk.Version.VersionString()}, registration version "
          f"{reg.REGISTRATION_VERSION}, {reg.RegistrationSettings()}")
    rng = np.random.default_rng(2024)  # the seed of scripts/registration_report.py's known misalignments
    for case_dir in args.cases:
        time_case(case_dir)
        if not args.no_accuracy:
            accuracy_case(case_dir, rng)


if __name__ == "__main__":
    main()
