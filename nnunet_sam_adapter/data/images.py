"""Reading one input image completely (or refusing it) and comparing image geometries: one place for both.

SimpleITK's NIfTI reader does not fail on a short gzip stream: it fills the missing voxels with zeros.
So a NIfTI file is first checked byte-complete: the whole gzip stream is decompressed (which also
verifies gzip's end-of-stream marker, CRC-32 and length) and the payload must hold the header's
``vox_offset + prod(shape) * itemsize`` bytes. Only then is it read with SimpleITK and validated
(dimension, scalar voxels, not empty, finite values: ITK also turns NaN into 0, so float files are
re-read with nibabel).

Geometry tolerances (absolute) are the ones every stage uses: nnU-Net itself compares channel
geometries with ``np.allclose`` (rtol 1e-5, atol 1e-8); these are looser than a header round-off and far
tighter than any real misalignment.
"""
from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

SPACING_TOLERANCE_MM = 1e-3
ORIGIN_TOLERANCE_MM = 1e-2
DIRECTION_TOLERANCE = 1e-4  # direction-cosine units
_CHUNK = 1 << 22


class InputError(ValueError):
    """Bad input: names the case, the file and what was expected (``case``, ``file``, ``problem``)."""

    def __init__(self, case: str, file, problem: str):
        self.case, self.file, self.problem = case, str(file), problem
        super().__init__(f"case {case}: {file}: {problem}")

    def __reduce__(self):  # picklable across worker processes
        return type(self), (self.case, self.file, self.problem)


def _is_nifti(path: Path) -> bool:
    return str(path).endswith((".nii", ".nii.gz"))


def _payload_bytes(path: Path) -> int:
    """Decompressed size of a .nii.gz (whole stream: raises on a short stream or a bad CRC), else file size."""
    if not str(path).endswith(".gz"):
        return os.path.getsize(path)
    total = 0
    with gzip.open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            total += len(chunk)
    return total


def check_complete(case: str, path: Path, what: str) -> None:
    """Refuse a NIfTI file whose bytes do not hold the whole volume its header announces."""
    import nibabel

    try:
        header = nibabel.load(str(path)).header
        expected = int(header.get_data_offset()) + int(np.prod(header.get_data_shape(), dtype=np.int64)) \
            * header.get_data_dtype().itemsize
        found = _payload_bytes(path)
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise InputError(case, path, f"{what} is truncated or corrupt ({error}): expected a complete NIfTI "
                                     "file (download or copy it again)") from None
    except (nibabel.filebasedimages.ImageFileError, ValueError, OSError) as error:
        if isinstance(error, (FileNotFoundError, PermissionError)):
            raise InputError(case, path, f"cannot read {what}: {error.strerror}") from None
        raise InputError(case, path, f"unreadable {what} (expected a NIfTI image): truncated or corrupt "
                                     f"header ({str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__})") from None
    if found < expected:
        raise InputError(case, path, f"{what} is truncated or corrupt: {found} of the {expected} bytes its header "
                                     "announces: expected a complete NIfTI file (download or copy it again)")


def read_image(case: str, path, what: str, *, label_map: bool = False, dimensions=(3,)) -> sitk.Image:
    """Read a scalar image completely and check it: readable, byte-complete, ``dimensions``-D, not empty,
    finite voxels; an MRI (``label_map`` False) must not be constant. Raises InputError."""
    path = Path(path)
    if _is_nifti(path):
        check_complete(case, path, what)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise InputError(case, path, f"unreadable {what} (expected a NIfTI image): "
                                     f"{str(error).strip().splitlines()[-1] if str(error).strip() else 'unknown error'}"
                         ) from None
    size = tuple(int(n) for n in image.GetSize())
    if image.GetDimension() not in dimensions:
        expected = " or ".join(f"{d}D" for d in dimensions)
        raise InputError(case, path, f"{what} is {image.GetDimension()}D with size {size}: expected a {expected} volume")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(case, path, f"{what} has {image.GetNumberOfComponentsPerPixel()} components per voxel: "
                                     "expected a scalar image")
    array = sitk.GetArrayViewFromImage(image)
    if array.size == 0:
        raise InputError(case, path, f"{what} is empty (size {size}): expected voxels")
    non_finite = _count_non_finite(path, array)
    if non_finite:
        raise InputError(case, path, f"{what} has {non_finite} NaN/inf voxels: expected finite values")
    if not label_map and array.min() == array.max():
        raise InputError(case, path, f"{what} is empty (every voxel is {array.flat[0].item()}): "
                                     "expected an MRI volume")
    return image


def _count_non_finite(path: Path, array: np.ndarray) -> int:
    """NaN/inf voxels. ITK's NIfTI reader silently turns them into 0, so float NIfTI files are also read
    with nibabel (integer files cannot hold NaN)."""
    count = int((~np.isfinite(array)).sum()) if np.issubdtype(array.dtype, np.floating) else 0
    if _is_nifti(path):
        import nibabel

        nifti = nibabel.load(str(path))
        if nifti.get_data_dtype().kind == "f":
            count = max(count, int((~np.isfinite(np.asanyarray(nifti.dataobj))).sum()))
    return count


def rounded(values, digits: int = 4) -> tuple:
    """Plain-float tuple for messages (no numpy reprs)."""
    return tuple(round(float(v), digits) for v in values)


def geometry_differences(a: sitk.Image, b: sitk.Image) -> list[tuple[str, tuple, tuple, float]]:
    """Properties where ``a`` and ``b`` differ beyond tolerance: [(name, a value, b value, tolerance)] for
    size, spacing (mm), origin (mm) and direction (cosines); empty when the grids match."""
    checks = [("size", a.GetSize(), b.GetSize(), 0),
              ("spacing", a.GetSpacing(), b.GetSpacing(), SPACING_TOLERANCE_MM),
              ("origin", a.GetOrigin(), b.GetOrigin(), ORIGIN_TOLERANCE_MM),
              ("direction", a.GetDirection(), b.GetDirection(), DIRECTION_TOLERANCE)]
    differences = []
    for name, value_a, value_b, tolerance in checks:
        if len(value_a) != len(value_b) or not np.allclose(value_a, value_b, rtol=0, atol=tolerance):
            as_tuple = (lambda v: tuple(int(x) for x in v)) if name == "size" else rounded
            differences.append((name, as_tuple(value_a), as_tuple(value_b), tolerance))
    return differences


def same_geometry(a: sitk.Image, b: sitk.Image) -> bool:
    """True when both images have the same size and, within tolerance, spacing, origin and direction."""
    return not geometry_differences(a, b)


def describe_differences(differences, other: str) -> str:
    """'direction (1.0, 0.0, ...) vs T2 (0.0, 1.0, ...); origin ...' for messages."""
    return "; ".join(f"{prop} {value_a} vs {other} {value_b}" for prop, value_a, value_b, _ in differences)
