"""Phantom cases: contrasts, labels, recorded misalignment, BraTS folder writing."""
import numpy as np
import SimpleITK as sitk

from nnunet_sam_adapter.data.synthetic import MODALITIES, make_phantom_case, rigid_transform_from_params, write_brats_dataset


def _mean(image, mask):
    return float(sitk.GetArrayViewFromImage(image)[mask].mean())


def test_phantom_labels_and_contrasts():
    case = make_phantom_case(0, misalign=False)
    seg = sitk.GetArrayFromImage(case["seg"])
    assert case["seg"].GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(seg)) == {0, 1, 2, 4}
    edema, enhancing, necrosis = seg == 2, seg == 4, seg == 1
    t1, t1ce, t2, flair = (case[m] for m in MODALITIES)
    assert _mean(t1ce, enhancing) > 1.5 * _mean(t1, enhancing)  # enhancing rim bright after contrast
    assert _mean(flair, edema) > _mean(t1, edema) and _mean(t2, edema) > _mean(t1, edema)
    assert _mean(t1, necrosis) < _mean(t1, edema)  # T1: tumour core dark
    for m in MODALITIES:
        assert case[m].GetSize() == case["seg"].GetSize() and case[m].GetOrigin() == case["seg"].GetOrigin()
    assert case["transforms"] == {}


def test_phantom_misalignment_within_bounds_and_deterministic():
    case = make_phantom_case(3, max_rotation_deg=8.0, max_shift_mm=6.0)
    again = make_phantom_case(3, max_rotation_deg=8.0, max_shift_mm=6.0)
    assert set(case["transforms"]) == {"t1", "t1ce", "flair"}
    for modality, params in case["transforms"].items():
        assert 4.0 <= params["rotation_deg"] <= 8.0
        assert 3.0 - 1e-9 <= np.linalg.norm(params["translation_mm"]) <= 6.0 + 1e-9
        assert isinstance(rigid_transform_from_params(params), sitk.VersorRigid3DTransform)
        assert np.array_equal(sitk.GetArrayViewFromImage(case[modality]), sitk.GetArrayViewFromImage(again[modality]))
    # T2 and seg stay on the reference grid: identical to the unmoved phantom
    still = make_phantom_case(3, misalign=False)
    assert np.array_equal(sitk.GetArrayViewFromImage(case["seg"]), sitk.GetArrayViewFromImage(still["seg"]))


def test_write_brats_dataset_both_namings(tmp_path):
    ids21 = write_brats_dataset(tmp_path / "a", 2, seed=1, naming="2021", n_without_seg=1, shape_zyx=(16, 32, 32))
    assert sorted(p.name for p in (tmp_path / "a" / ids21[0]).iterdir()) == sorted(
        f"{ids21[0]}_{m}.nii.gz" for m in ("t1", "t1ce", "t2", "flair", "seg"))
    assert not (tmp_path / "a" / ids21[1] / f"{ids21[1]}_seg.nii.gz").exists()
    ids23 = write_brats_dataset(tmp_path / "b", 1, seed=1, naming="2023", shape_zyx=(16, 32, 32))
    files = sorted(p.name for p in (tmp_path / "b" / ids23[0]).iterdir())
    assert files == sorted(f"{ids23[0]}-{m}.nii.gz" for m in ("t1n", "t1c", "t2w", "t2f", "seg"))
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "b" / ids23[0] / f"{ids23[0]}-seg.nii.gz")))
    assert set(np.unique(seg)) <= {0, 1, 2, 3}
    again = write_brats_dataset(tmp_path / "c", 2, seed=1, naming="2021", n_without_seg=1, shape_zyx=(16, 32, 32))
    assert again == ids21
    for name in (f"{ids21[0]}_t1.nii.gz", f"{ids21[0]}_seg.nii.gz"):
        assert (tmp_path / "a" / ids21[0] / name).read_bytes() == (tmp_path / "c" / ids21[0] / name).read_bytes()
