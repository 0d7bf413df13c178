"""BraTS -> nnU-Net conversion and the register command, through the real console commands."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_sam_adapter.data import case_pipeline, conversion
from nnunet_sam_adapter.data.brats import CHANNELS
from nnunet_sam_adapter.data.synthetic import make_phantom_case, write_brats_dataset
from real_data import real_folder

BIN = Path(sys.executable).parent
SMALL = {"shape_zyx": (32, 64, 64)}


def run_command(name, *args, raw=None, check=True):
    env = {**os.environ, "nnUNet_raw": str(raw) if raw else os.environ.get("nnUNet_raw", "/nonexistent")}
    result = subprocess.run([str(BIN / name), *map(str, args)], env=env, capture_output=True, text=True)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def tree_hashes(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def read(path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def verify(dataset: Path):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
    verify_dataset_integrity(str(dataset), num_processes=1)


def test_convert_2021_whole_tumor_registered_idempotent(tmp_path):
    ids = write_brats_dataset(tmp_path / "brats", 3, seed=0, naming="2021", n_without_seg=1, **SMALL)
    before = tree_hashes(tmp_path / "brats")
    raw = tmp_path / "raw"
    run_command("nnUNetv2_sam_convert_brats", "-i", tmp_path / "brats", "-d", 501, "-np", 2, raw=raw)
    dataset = raw / "Dataset501_BraTS"
    info = json.loads((dataset / "dataset.json").read_text())
    assert info["channel_names"] == {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}
    assert info["labels"] == {"background": 0, "tumor": 1} and info["numTraining"] == 2
    assert info["file_ending"] == ".nii.gz"
    assert sorted(p.name for p in (dataset / "imagesTs").iterdir()) == [f"{ids[2]}_{i:04d}.nii.gz" for i in range(4)]
    verify(dataset)
    label = read(dataset / "labelsTr" / f"{ids[0]}.nii.gz")
    seg = read(tmp_path / "brats" / ids[0] / f"{ids[0]}_seg.nii.gz")
    assert np.array_equal(label, (seg > 0).astype(np.uint8))
    # registration report: recovered the phantom's known misalignment
    report = json.loads((dataset / "registration_reports" / f"{ids[0]}.json").read_text())
    truth = make_phantom_case(0, **SMALL)["transforms"]
    for modality in ("t1", "t1ce", "flair"):
        entry = report["modalities"][modality]
        assert entry["registered"] and abs(entry["rotation_deg"] - truth[modality]["rotation_deg"]) < 1.0
        assert {"final_metric", "translation_mm", "seconds"} <= set(entry)
    assert report["modalities"]["t2"]["registered"] is False
    # registered T1 now matches T2's anatomy: head masks agree
    from nnunet_sam_adapter.data.registration import alignment_check
    t2 = sitk.ReadImage(str(dataset / "imagesTr" / f"{ids[0]}_0002.nii.gz"))
    t1 = sitk.ReadImage(str(dataset / "imagesTr" / f"{ids[0]}_0000.nii.gz"))
    assert alignment_check(t2, t1)["centroid_shift_mm"] < 0.5
    assert tree_hashes(tmp_path / "brats") == before  # input untouched

    outputs = tree_hashes(dataset)
    mtimes = {p: p.stat().st_mtime_ns for p in dataset.rglob("*.nii.gz")}
    again = run_command("nnUNetv2_sam_convert_brats", "-i", tmp_path / "brats", "-d", 501, raw=raw)
    assert "0 converted, 3 already up to date" in again.stdout
    assert tree_hashes(dataset) == outputs and {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert not (dataset / ".nnsam_tmp").exists()


def test_convert_2023_regions_and_label_mapping(tmp_path):
    # aligned phantoms: --register never keeps a misaligned modality out (registration quality gate)
    ids23 = write_brats_dataset(tmp_path / "b23", 2, seed=7, naming="2023", misalign=False, **SMALL)
    ids21 = write_brats_dataset(tmp_path / "b21", 2, seed=7, naming="2021", misalign=False, **SMALL)
    raw = tmp_path / "raw"
    run_command("nnUNetv2_sam_convert_brats", "-i", tmp_path / "b23", "-d", 502, "-n", "Regions23",
                "--labels", "regions", "--register", "never", "-np", 1, raw=raw)
    run_command("nnUNetv2_sam_convert_brats", "-i", tmp_path / "b21", "-d", 503, "-n", "Regions21",
                "--labels", "regions", "--register", "never", "-np", 1, raw=raw)
    for dataset_name in ("Dataset502_Regions23", "Dataset503_Regions21"):
        info = json.loads((raw / dataset_name / "dataset.json").read_text())
        assert info["labels"] == {"background": 0, "whole_tumor": [1, 2, 3], "tumor_core": [2, 3],
                                  "enhancing_tumor": [3]}
        assert info["regions_class_order"] == [1, 2, 3]
        verify(raw / dataset_name)
    seg23 = read(tmp_path / "b23" / ids23[0] / f"{ids23[0]}-seg.nii.gz")
    label23 = read(raw / "Dataset502_Regions23" / "labelsTr" / f"{ids23[0]}.nii.gz")
    label21 = read(raw / "Dataset503_Regions21" / "labelsTr" / f"{ids21[0]}.nii.gz")
    assert np.array_equal(label23, label21)  # 2018-21 labels 1/2/4 and 2023 labels 1/2/3 map alike
    assert np.array_equal(label23 == 1, seg23 == 2) and np.array_equal(label23 == 2, seg23 == 1)
    assert np.array_equal(label23 == 3, seg23 == 3)
    report = json.loads((raw / "Dataset502_Regions23" / "registration_reports" / f"{ids23[0]}.json").read_text())
    t1 = report["modalities"]["t1"]
    assert {k: t1[k] for k in ("registered", "reason")} == {"registered": False, "reason": "--register never"}
    assert t1["alignment"]["nmi"] >= t1["alignment"]["threshold"] and not t1["alignment"]["poor"]


def _corrupt(kind: str, case_dir: Path, case_id: str, brats_dir: Path) -> str:
    """Break one case of a 2021-named folder; return the text the error must contain."""
    t1 = case_dir / f"{case_id}_t1.nii.gz"
    seg_path = case_dir / f"{case_id}_seg.nii.gz"
    reference = sitk.ReadImage(str(t1))
    if kind == "missing modality":
        (case_dir / f"{case_id}_flair.nii.gz").unlink()
        return f"{case_id}_flair.nii.gz: missing modality flair"
    if kind == "unreadable":
        t1.write_bytes(b"not a nifti file")
        return f"{case_id}_t1.nii.gz: unreadable t1"
    if kind == "not 3D":
        sitk.WriteImage(reference[:, :, 5], str(t1))
        return "is 2D"
    if kind == "empty":
        sitk.WriteImage(reference * 0, str(t1))
        return "t1 is empty"
    if kind == "nan":
        image = sitk.Cast(reference, sitk.sitkFloat32)
        array = sitk.GetArrayFromImage(image)
        array[3, 4, 5] = np.nan
        broken = sitk.GetImageFromArray(array)
        broken.CopyInformation(reference)
        sitk.WriteImage(broken, str(t1))
        return "NaN/inf voxels"
    if kind == "bad labels":
        seg = sitk.ReadImage(str(seg_path))
        array = sitk.GetArrayFromImage(seg)
        array[0, 0, 0] = 3
        broken = sitk.GetImageFromArray(array)
        broken.CopyInformation(seg)
        sitk.WriteImage(broken, str(seg_path))
        return "label values [3] outside the expected set [0, 1, 2, 4]"
    if kind == "duplicate":
        shutil.copytree(case_dir, brats_dir / "copy" / case_id)
        return "duplicate case ID"
    if kind == "seg geometry":
        seg = sitk.ReadImage(str(seg_path))
        seg.SetSpacing([2.0, 2.0, 2.0])
        sitk.WriteImage(seg, str(seg_path))
        return "seg geometry"
    raise ValueError(kind)


BAD_KINDS = ["missing modality", "unreadable", "not 3D", "empty", "nan", "bad labels", "duplicate", "seg geometry"]


@pytest.fixture(scope="module")
def small_brats(tmp_path_factory):
    folder = tmp_path_factory.mktemp("small") / "brats"
    write_brats_dataset(folder, 2, seed=3, naming="2021", shape_zyx=(16, 32, 32), misalign=False)
    return folder


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_gets_clear_error(kind, small_brats, tmp_path):
    brats = tmp_path / "brats"
    shutil.copytree(small_brats, brats)
    case_id = sorted(p.name for p in brats.iterdir())[0]
    expected = _corrupt(kind, brats / case_id, case_id, brats)
    before = tree_hashes(brats)
    result = run_command("nnUNetv2_sam_convert_brats", "-i", brats, "-d", 504, "--register", "never", "-np", 1,
                         raw=tmp_path / "raw", check=False)
    assert result.returncode != 0
    assert "error: case " + case_id in result.stderr and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "raw" / "Dataset504_BraTS" / "dataset.json").exists()
    assert tree_hashes(brats) == before


def test_skip_bad_converts_the_good_cases(small_brats, tmp_path):
    brats = tmp_path / "brats"
    shutil.copytree(small_brats, brats)
    write_brats_dataset(tmp_path / "more", 4, seed=10, naming="2021", shape_zyx=(16, 32, 32), misalign=False)
    for index, kind in ((2, "nan"), (3, "bad labels")):
        case_id = f"BraTS2021_{index:05d}"
        shutil.copytree(tmp_path / "more" / case_id, brats / case_id)
        _corrupt(kind, brats / case_id, case_id, brats)
    raw = tmp_path / "raw"
    result = run_command("nnUNetv2_sam_convert_brats", "-i", brats, "-d", 505, "--register", "never", "--skip-bad",
                         "-np", 2, raw=raw)
    dataset = raw / "Dataset505_BraTS"
    assert "2 converted" in result.stdout and "2 skipped" in result.stdout
    skipped = json.loads((dataset / "skipped_cases.json").read_text())
    assert [s["case"] for s in skipped] == ["BraTS2021_00002", "BraTS2021_00003"]
    assert "NaN" in skipped[0]["reason"] and "label values" in skipped[1]["reason"]
    assert json.loads((dataset / "dataset.json").read_text())["numTraining"] == 2
    verify(dataset)


def test_interrupted_case_leaves_nothing_and_stale_temp_is_cleaned(small_brats, tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    dataset = raw / "Dataset506_BraTS"
    stale = dataset / ".nnsam_tmp" / "run-999999999-deadbeef"
    stale.mkdir(parents=True)
    (stale / "junk_0000.nii.gz").write_bytes(b"half written")
    real_write = sitk.WriteImage
    calls = []

    def write_then_interrupt(*args, **kwargs):
        calls.append(args)
        real_write(*args, **kwargs)
        raise KeyboardInterrupt  # Ctrl-C in the middle of a case

    monkeypatch.setattr(case_pipeline.sitk, "WriteImage", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        conversion.convert_brats(small_brats, 506, register="never", num_processes=1, raw_root=raw)
    assert calls
    assert not list(dataset.glob("imagesTr/*")) and not list(dataset.glob("labelsTr/*"))
    assert not (dataset / "dataset.json").exists()
    monkeypatch.undo()
    summary = conversion.convert_brats(small_brats, 506, register="never", num_processes=1, raw_root=raw)
    assert len(summary.converted) == 2 and not (dataset / ".nnsam_tmp").exists()
    verify(dataset)


def test_register_command_both_namings(tmp_path):
    write_brats_dataset(tmp_path / "brats23", 1, seed=21, naming="2023", **SMALL)
    flat = tmp_path / "flat"
    flat.mkdir()
    case = make_phantom_case(22, **SMALL)
    for index, modality in enumerate(CHANNELS):
        sitk.WriteImage(case[modality], str(flat / f"NEW_{index:04d}.nii.gz"))
    before = tree_hashes(flat)
    for source, out, case_id in ((tmp_path / "brats23", tmp_path / "out23", "BraTS-GLI-00000-000"),
                                 (flat, tmp_path / "outflat", "NEW")):
        run_command("nnUNetv2_sam_register", "-i", source, "-o", out, "-np", 1)
        assert sorted(p.name for p in out.glob("*.nii.gz")) == [f"{case_id}_{i:04d}.nii.gz" for i in range(4)]
        t2 = sitk.ReadImage(str(out / f"{case_id}_0002.nii.gz"))
        for i in (0, 1, 3):
            image = sitk.ReadImage(str(out / f"{case_id}_{i:04d}.nii.gz"))
            assert image.GetSize() == t2.GetSize() and image.GetOrigin() == t2.GetOrigin()
        report = json.loads((out / "registration_reports" / f"{case_id}.json").read_text())
        assert all(report["modalities"][m]["registered"] for m in ("t1", "t1ce", "flair"))
    assert tree_hashes(flat) == before
    (flat / "NEW_0001.nii.gz").unlink()
    result = run_command("nnUNetv2_sam_register", "-i", flat, "-o", tmp_path / "out2", check=False)
    assert result.returncode != 0 and "case NEW" in result.stderr and "NEW_0001.nii.gz: missing modality t1ce" in result.stderr


def test_real_brats_case_converts(tmp_path):
    folder = real_folder("btsgp_brats2021")
    case_dir = sorted(p for p in folder.iterdir() if p.is_dir())[0]
    brats = tmp_path / "brats"
    shutil.copytree(case_dir, brats / case_dir.name)
    summary = conversion.convert_brats(brats, 507, register="auto", num_processes=1, raw_root=tmp_path / "raw")
    dataset = summary.output_dir
    verify(dataset)
    report = json.loads((dataset / "registration_reports" / f"{case_dir.name}.json").read_text())
    # BraTS cases are already co-registered on one grid: auto leaves them as they are
    assert not any(report["modalities"][m]["registered"] for m in CHANNELS), report["modalities"]
    seg = read(case_dir / f"{case_dir.name}_seg.nii.gz")
    assert np.array_equal(read(dataset / "labelsTr" / f"{case_dir.name}.nii.gz"), (seg > 0).astype(np.uint8))


def test_real_tcia_raw_case_registers(tmp_path):
    folder = real_folder("brainlesion_tcia_raw")
    sources = {"t1": "*_t1.nii.gz", "t1ce": "*_t1c.nii.gz", "t2": "*_t2.nii.gz", "flair": "*_fla.nii.gz"}
    flat = tmp_path / "in"
    flat.mkdir()
    for index, modality in enumerate(CHANNELS):
        shutil.copyfile(next(folder.glob(sources[modality])), flat / f"TCGA-FG-6692_{index:04d}.nii.gz")
    summary = conversion.register_cases(flat, tmp_path / "out", num_processes=1)
    assert summary.converted == ["TCGA-FG-6692"]
    t2 = sitk.ReadImage(str(tmp_path / "out" / "TCGA-FG-6692_0002.nii.gz"))
    assert t2.GetSize() == (224, 256, 26)
    report = json.loads((tmp_path / "out" / "registration_reports" / "TCGA-FG-6692.json").read_text())
    for modality in ("t1", "t1ce", "flair"):
        entry = report["modalities"][modality]
        assert entry["registered"] and entry["reason"] == "geometry differs from T2"
        image = sitk.ReadImage(str(tmp_path / "out" / f"TCGA-FG-6692_{CHANNELS.index(modality):04d}.nii.gz"))
        assert image.GetSize() == t2.GetSize() and np.allclose(image.GetDirection(), t2.GetDirection())
        assert entry["rotation_deg"] < 25 and np.linalg.norm(entry["translation_mm"]) < 30
