"""The low-resolution proxy dataset: BraTS case folders resampled to 3 mm, then the ordinary conversion."""
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_sam_adapter.data.proxy import make_proxy_dataset, resample_isotropic
from nnunet_sam_adapter.data.synthetic import write_brats_dataset
from real_data import real_folder


def _tree_bytes(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resample_keeps_extent_and_label_values():
    seg = np.zeros((30, 31, 32), np.uint8)
    seg[10:20, 10:22, 8:20] = 2
    seg[12:16, 12:16, 10:14] = 4
    image = sitk.GetImageFromArray(seg)
    image.SetOrigin((5.0, -3.0, 2.0))
    image.SetSpacing((1.3, 1.3, 1.3))  # new voxel centres fall between old ones: interpolation matters
    out = resample_isotropic(image, 3.0, is_label=True)
    assert out.GetSize() == (14, 13, 13)  # round(32 * 1.3 / 3), round(31 * 1.3 / 3), round(30 * 1.3 / 3) in (x, y, z)
    assert out.GetSpacing() == (3.0, 3.0, 3.0) and out.GetOrigin() == image.GetOrigin()
    values = set(np.unique(sitk.GetArrayFromImage(out)).tolist())
    assert values <= {0, 2, 4} and 4 in values  # nearest neighbour: no blended label values


def test_proxy_dataset_from_synthetic_brats_cases(tmp_path):
    brats = tmp_path / "brats"
    write_brats_dataset(brats, 2, seed=3, shape_zyx=(24, 48, 48), misalign=False)
    before = _tree_bytes(brats)
    summary = make_proxy_dataset([brats], 777, "Proxy", spacing_mm=3.0, num_processes=1, raw_root=tmp_path / "raw")

    out = tmp_path / "raw" / "Dataset777_Proxy"
    assert summary.output_dir.resolve() == out.resolve() and len(summary.converted) == 2
    images = sorted(p.name for p in (out / "imagesTr").glob("*.nii.gz"))
    assert len(images) == 8 and len(list((out / "labelsTr").glob("*.nii.gz"))) == 2
    for case in ("BraTS2021_00000", "BraTS2021_00001"):
        label = sitk.ReadImage(str(out / "labelsTr" / f"{case}.nii.gz"))
        assert label.GetSpacing() == pytest.approx((3.0, 3.0, 3.0))
        assert label.GetSize() == (16, 16, 8)
        t2 = sitk.ReadImage(str(out / "imagesTr" / f"{case}_0002.nii.gz"))
        assert t2.GetSize() == label.GetSize()
        # whole tumour kept: 1 mm tumour volume ~ 27x the 3 mm voxel count
        original = sitk.GetArrayFromImage(sitk.ReadImage(str(brats / case / f"{case}_seg.nii.gz"))) > 0
        resampled = sitk.GetArrayFromImage(label)
        assert set(np.unique(resampled).tolist()) == {0, 1}
        assert resampled.sum() * 27 == pytest.approx(original.sum(), rel=0.3)
    assert (out / "dataset.json").is_file()
    assert _tree_bytes(brats) == before  # inputs only read
    assert not list((tmp_path / "raw").glob(".proxy_*"))  # staging removed


def test_make_proxy_command_rejects_a_folder_without_cases(tmp_path):
    (tmp_path / "empty").mkdir()
    result = subprocess.run([sys.executable, "-m", "nnunet_sam_adapter.cli.make_proxy", "-i", str(tmp_path / "empty"),
                             "-d", "778"], capture_output=True, text=True,
                            env={"PATH": "", "nnUNet_raw": str(tmp_path / "raw")})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "found no NIfTI file" in result.stderr
    assert str(tmp_path / "empty") in result.stderr


def test_make_proxy_command_refuses_a_truncated_download(tmp_path):
    write_brats_dataset(tmp_path / "brats", n_cases=2, seed=1, shape_zyx=(16, 48, 48), misalign=False)
    flair = sorted((tmp_path / "brats").glob("*/*_flair.nii.gz"))[0]
    flair.write_bytes(flair.read_bytes()[: int(flair.stat().st_size * 0.6)])
    before = _tree_bytes(tmp_path / "brats")
    result = subprocess.run([sys.executable, "-m", "nnunet_sam_adapter.cli.make_proxy", "-i", str(tmp_path / "brats"),
                             "-d", "779"], capture_output=True, text=True,
                            env={"PATH": "", "nnUNet_raw": str(tmp_path / "raw")})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "truncated or corrupt" in result.stderr and str(flair) in result.stderr
    assert _tree_bytes(tmp_path / "brats") == before
    assert not list((tmp_path / "raw").glob("Dataset779_*/imagesTr/*.nii.gz"))


def test_proxy_of_the_real_cases_plans_a_64_by_48_patch(tmp_path):
    """The shared real cases at 3 mm: 80x80x~52 volumes (skips without the real data)."""
    folder = real_folder("btsgp_brats2021")
    summary = make_proxy_dataset([folder], 779, "RealProxy", num_processes=1, raw_root=tmp_path / "raw")
    label = sitk.ReadImage(str(summary.output_dir / "labelsTr" / "BraTS2021_00006.nii.gz"))
    assert label.GetSize() == (80, 80, 52)
