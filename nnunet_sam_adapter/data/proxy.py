"""A low-resolution nnU-Net dataset from BraTS case folders: the CPU proxy of the real-data benchmark.

Every NIfTI of every case folder is resampled with SimpleITK to an isotropic spacing (default 3 mm:
a 240x240x155 BraTS case becomes 80x80x52, and stock nnU-Net plans a 2d patch of [64, 48] for it),
images with linear interpolation, ``*seg.nii[.gz]`` with nearest neighbour (labels stay labels). The
resampled case folders keep their BraTS names and go through the ordinary conversion
(`data.conversion.convert_brats`), so the proxy is an nnU-Net raw dataset like any other. The input
folders are only read; the resampled copies live in a staging folder next to the dataset, removed
afterwards.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from nnunet_sam_adapter.atomic_io import atomic_output
from nnunet_sam_adapter.data.images import read_image

PROXY_SPACING_MM = 3.0


class ProxyInputError(ValueError):
    """An input folder that holds no BraTS case folder, or case folder names that repeat."""


def resample_isotropic(image: sitk.Image, spacing_mm: float, is_label: bool) -> sitk.Image:
    """`image` on a grid of `spacing_mm` covering the same physical extent (same origin and direction).

    Size per axis = round(size * spacing / spacing_mm), at least 1. Labels: nearest neighbour, same pixel type.
    """
    old_spacing = np.array(image.GetSpacing(), float)
    old_size = np.array(image.GetSize(), float)
    new_size = [max(1, int(round(s))) for s in old_size * old_spacing / spacing_mm]
    return sitk.Resample(image, new_size, sitk.Transform(), sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear,
                         image.GetOrigin(), (spacing_mm,) * image.GetDimension(), image.GetDirection(), 0.0,
                         image.GetPixelID())


def _is_label_file(path: Path) -> bool:
    return path.name.split(".nii")[0].lower().endswith("seg")


def case_folders(input_dirs) -> list[Path]:
    """Folders directly holding NIfTI files, under each of `input_dirs` (searched recursively), sorted by name."""
    found = []
    for input_dir in map(Path, input_dirs):
        if not input_dir.is_dir():
            raise ProxyInputError(f"{input_dir}: expected a folder of BraTS case folders, found no folder")
        folders = sorted({p.parent for p in input_dir.rglob("*.nii*") if not p.name.startswith(".")})
        if not folders:
            raise ProxyInputError(f"{input_dir}: expected BraTS case folders (<case>/<case>_t1.nii.gz ...), "
                                  f"found no NIfTI file")
        found.extend(folders)
    names = [f.name for f in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ProxyInputError(f"case folder name(s) {', '.join(duplicates)} found more than once in the inputs; "
                              f"expected unique case IDs")
    return sorted(found, key=lambda f: f.name)


def resample_case_folder(case_dir: Path, out_dir: Path, spacing_mm: float) -> None:
    """Every NIfTI of `case_dir` resampled into `out_dir/<case_dir name>/` (same file names)."""
    target = out_dir / case_dir.name
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(case_dir.glob("*.nii*")):
        if path.name.startswith("."):
            continue
        # Read completely or refuse (a truncated download would otherwise become a valid-looking proxy).
        image = read_image(case_dir.name, path, "segmentation" if _is_label_file(path) else "image",
                           label_map=_is_label_file(path))
        resampled = resample_isotropic(image, spacing_mm, _is_label_file(path))
        with atomic_output(target / path.name) as temp:
            sitk.WriteImage(resampled, str(temp.with_name(temp.name + ".nii.gz")), useCompression=True)
            (temp.with_name(temp.name + ".nii.gz")).replace(temp)


def make_proxy_dataset(input_dirs, dataset_id: int, dataset_name: str = "BraTSProxy",
                       spacing_mm: float = PROXY_SPACING_MM, labels: str = "whole_tumor", num_processes: int = 2,
                       raw_root=None):
    """Resample the BraTS case folders under `input_dirs` to `spacing_mm` and convert them into
    ``$nnUNet_raw/DatasetXXX_NAME`` (or `raw_root`). Returns the conversion's RunSummary.

    BraTS modalities are already co-registered, so the conversion's 'auto' registration only resamples.
    The registration quality gate is calibrated at the BraTS resolution (1 mm); resampling to 3 mm lowers the
    alignment NMI of good co-registered modalities below it (BraTS2021_00006 T1: 1.0405 at 1 mm, 1.0270 at
    3 mm), so the proxy keeps such modalities and flags them (report + one warning line each) instead of
    refusing the case.
    """
    from nnunet_sam_adapter.data.conversion import convert_brats, dataset_folder

    if not spacing_mm > 0:
        raise ProxyInputError(f"spacing must be > 0 mm, got {spacing_mm}")
    cases = case_folders(input_dirs)
    dataset_dir = dataset_folder(dataset_id, dataset_name, raw_root)
    dataset_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".proxy_{dataset_dir.name}_", dir=dataset_dir.parent))
    try:
        for case_dir in tqdm(cases, desc=f"resampling to {spacing_mm:g} mm", unit="case"):
            resample_case_folder(case_dir, staging, spacing_mm)
        return convert_brats(staging, dataset_id, dataset_name, labels=labels, register="auto",
                             num_processes=num_processes, raw_root=raw_root, keep_poor_registration=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
