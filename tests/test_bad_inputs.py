"""The bad-input matrix (docs/reliability.md): one test per class of hostile or careless input.

Each test runs the real command (its ``main``, in process, except where a process must die) and asserts
the exit code, that the one-line message names the file and the problem, that the inputs are
byte-identical afterwards and that no partial output is left. The last test checks that the matrix in
docs/reliability.md and these tests name each other.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_sam_adapter.cli import convert_brats as convert_cli
from nnunet_sam_adapter.cli import evaluate as evaluate_cli
from nnunet_sam_adapter.cli import plan_and_preprocess as plan_cli
from nnunet_sam_adapter.cli import register as register_cli
from nnunet_sam_adapter.data import case_pipeline, conversion, worker_pool
from nnunet_sam_adapter.data.brats import CHANNELS, find_cases
from nnunet_sam_adapter.data.synthetic import flip_direction_xy, write_brats_dataset
from console import fails, tree_hashes
from real_data import real_folder

ROOT = Path(__file__).resolve().parents[1]
# aligned phantoms: the commands run with --register never, and a misaligned modality is refused by the
# registration quality gate (a phantom moved by 4-8 degrees / 3-6 mm has alignment NMI ~1.015-1.2)
SHAPE = {"shape_zyx": (16, 32, 32), "misalign": False}



@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_inputs") / "brats"
    write_brats_dataset(folder, 2, seed=5, naming="2021", **SHAPE)
    return folder


@pytest.fixture
def brats(pristine, tmp_path):
    shutil.copytree(pristine, tmp_path / "brats")
    return tmp_path / "brats"


def first_case(brats: Path) -> tuple[str, Path]:
    case_id = sorted(p.name for p in brats.iterdir())[0]
    return case_id, brats / case_id


def convert(raw: Path, brats: Path, *extra):
    return ["-i", brats, "-d", 801, "--register", "never", "-np", 1, *extra], raw / "Dataset801_BraTS"


@pytest.fixture
def raw(tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    import nnunetv2.paths

    monkeypatch.setattr(nnunetv2.paths, "nnUNet_raw", str(tmp_path / "raw"))
    return tmp_path / "raw"


# ---------------------------------------------------------------- damaged files

def _truncate(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def _break_crc(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # gzip trailer: CRC-32 of the payload, then its length
    path.write_bytes(bytes(data))


def _random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())


def _rewrite(path: Path, change) -> None:
    image = sitk.ReadImage(str(path))
    image = change(image) or image
    sitk.WriteImage(image, str(path), useCompression=True)


def _four_d(path: Path) -> None:
    image = sitk.ReadImage(str(path))
    sitk.WriteImage(sitk.JoinSeries([image, image]), str(path), useCompression=True)


def _inf(path: Path) -> None:
    image = sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(image)
    array[2, 3, 4] = np.inf
    broken = sitk.GetImageFromArray(array)
    broken.CopyInformation(image)
    sitk.WriteImage(broken, str(path), useCompression=True)


def _flip_direction(image: sitk.Image) -> None:
    image.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))


DAMAGE = {  # kind -> (file suffix, damage, text the message must hold)
    "truncated image": ("_flair", lambda p: _truncate(p, 0.6), "flair is truncated or corrupt"),
    "truncated seg": ("_seg", lambda p: _truncate(p, 0.5), "seg is truncated or corrupt"),
    "crc failure": ("_t1", _break_crc, "t1 is truncated or corrupt"),
    "random bytes": ("_t1ce", _random_bytes, "unreadable t1ce"),
    "4D image": ("_t1", _four_d, "t1 is 4D"),
    "inf voxels": ("_t2", _inf, "NaN/inf voxels"),
    "seg direction": ("_seg", lambda p: _rewrite(p, _flip_direction), "seg geometry differs from T2: direction"),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_file_is_refused(kind, brats, raw, capsys):
    suffix, damage, expected = DAMAGE[kind]
    case_id, case_dir = first_case(brats)
    damaged = case_dir / f"{case_id}{suffix}.nii.gz"
    damage(damaged)
    before = tree_hashes(brats)
    argv, dataset = convert(raw, brats)
    message = fails(capsys, convert_cli.main, *argv)
    assert f"case {case_id}: {damaged}: " in message and expected in message, message
    assert tree_hashes(brats) == before
    assert not dataset.exists()  # nothing left behind: not even the dataset folder


def test_truncated_image_with_skip_bad_lists_it_and_converts_the_others(brats, raw, capsys):
    case_id, case_dir = first_case(brats)
    _truncate(case_dir / f"{case_id}_flair.nii.gz", 0.6)
    argv, dataset = convert(raw, brats, "--skip-bad")
    convert_cli.main([str(a) for a in argv])
    assert "1 converted" in capsys.readouterr().out
    skipped = json.loads((dataset / "skipped_cases.json").read_text())
    assert [s["case"] for s in skipped] == [case_id] and "truncated or corrupt" in skipped[0]["reason"]
    assert json.loads((dataset / "dataset.json").read_text())["numTraining"] == 1
    assert not list(dataset.glob(f"*/{case_id}*"))


def test_truncated_input_to_register_is_refused(brats, tmp_path, capsys):
    case_id, case_dir = first_case(brats)
    _truncate(case_dir / f"{case_id}_t2.nii.gz", 0.7)
    before = tree_hashes(brats)
    message = fails(capsys, register_cli.main, "-i", brats, "-o", tmp_path / "out", "--register", "never", "-np", 1)
    assert f"case {case_id}: {case_dir / f'{case_id}_t2.nii.gz'}: t2 is truncated or corrupt" in message
    assert tree_hashes(brats) == before and not (tmp_path / "out").exists()


def test_truncated_prediction_is_refused_by_evaluate(pristine, tmp_path, capsys):
    case_id, case_dir = first_case(pristine)
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    ref.mkdir(), pred.mkdir()
    shutil.copy(case_dir / f"{case_id}_seg.nii.gz", ref / f"{case_id}.nii.gz")
    shutil.copy(case_dir / f"{case_id}_seg.nii.gz", pred / f"{case_id}.nii.gz")
    _truncate(pred / f"{case_id}.nii.gz", 0.5)
    before = tree_hashes(tmp_path)
    message = fails(capsys, evaluate_cli.main, "-ref", ref, "-pred", pred, code=2)
    assert f"case {case_id}: cannot read prediction file {pred / f'{case_id}.nii.gz'}" in message
    assert "truncated or corrupt" in message
    assert tree_hashes(tmp_path) == before and not (pred / "sam_evaluation").exists()


# ---------------------------------------------------------------- case-level problems (also in test_conversion)

def _missing_modality(case_dir: Path, case_id: str) -> tuple[Path, str]:
    path = case_dir / f"{case_id}_flair.nii.gz"
    path.unlink()
    return path, "missing modality flair"


def _two_d(case_dir: Path, case_id: str) -> tuple[Path, str]:
    path = case_dir / f"{case_id}_t1.nii.gz"
    _rewrite(path, lambda image: image[:, :, 3])
    return path, "t1 is 2D"


def _empty(case_dir: Path, case_id: str) -> tuple[Path, str]:
    path = case_dir / f"{case_id}_t1ce.nii.gz"
    _rewrite(path, lambda image: image * 0)
    return path, "t1ce is empty"


def _bad_labels(case_dir: Path, case_id: str) -> tuple[Path, str]:
    path = case_dir / f"{case_id}_seg.nii.gz"

    def add_label(image):
        array = sitk.GetArrayFromImage(image)
        array[0, 0, 0] = 7
        out = sitk.GetImageFromArray(array)
        out.CopyInformation(image)
        return out

    _rewrite(path, add_label)
    return path, "label values [7] outside the expected set [0, 1, 2, 4]"


def _duplicate(case_dir: Path, case_id: str) -> tuple[Path, str]:
    shutil.copytree(case_dir, case_dir.parent / "again" / case_id)
    return case_dir.parent / "again" / case_id, "duplicate case ID"


CASE_PROBLEMS = {"missing modality": _missing_modality, "2D image": _two_d, "empty image": _empty,
                 "unexpected labels": _bad_labels, "duplicate ID": _duplicate}


@pytest.mark.parametrize("kind", sorted(CASE_PROBLEMS))
def test_bad_case_is_refused(kind, brats, raw, capsys):
    case_id, case_dir = first_case(brats)
    path, expected = CASE_PROBLEMS[kind](case_dir, case_id)
    before = tree_hashes(brats)
    argv, dataset = convert(raw, brats)
    message = fails(capsys, convert_cli.main, *argv)
    assert f"case {case_id}: {path}" in message and expected in message, message
    assert tree_hashes(brats) == before and not dataset.exists()


# ---------------------------------------------------------------- registration

def _move_origin(path: Path, shift_mm: float) -> None:
    _rewrite(path, lambda image: image.SetOrigin(tuple(o + shift_mm for o in image.GetOrigin())))


def test_register_never_refuses_a_modality_that_misses_t2(brats, raw, capsys):
    case_id, case_dir = first_case(brats)
    flair = case_dir / f"{case_id}_flair.nii.gz"
    _move_origin(flair, 1000.0)
    before = tree_hashes(brats)
    argv, dataset = convert(raw, brats)
    message = fails(capsys, convert_cli.main, *argv)
    assert f"case {case_id}: {flair}: flair does not overlap T2 with --register never" in message, message
    assert "use --register auto" in message
    assert tree_hashes(brats) == before and not dataset.exists()


def test_register_auto_names_the_modality_when_itk_finds_no_overlap(brats, monkeypatch):
    case_id, case_dir = first_case(brats)
    case = find_cases(brats)[0][0]
    t2 = sitk.ReadImage(str(case.images["t2"]))

    def no_overlap(fixed, moving):
        raise case_pipeline.registration.RegistrationError("identity start: All samples map outside moving image buffer")

    monkeypatch.setattr(case_pipeline.registration, "register_rigid", no_overlap)
    with pytest.raises(conversion.InputError) as error:
        case_pipeline.align_modality(case, "t1ce", sitk.ReadImage(str(case.images["t1ce"])), t2, "always")
    assert error.value.file == str(case.images["t1ce"])
    assert "t1ce could not be registered to T2" in str(error.value) and "All samples map outside" in str(error.value)


def test_register_auto_recovers_a_far_origin_from_another_start(pristine, tmp_path):
    """ITK's 'All samples map outside' on the identity start: the grid-centre start still registers it."""
    from nnunet_sam_adapter.data import registration

    case_dir = sorted(pristine.iterdir())[0]
    t2 = sitk.ReadImage(str(next(case_dir.glob("*_t2.nii.gz"))))
    moved = sitk.Image(sitk.ReadImage(str(next(case_dir.glob("*_flair.nii.gz")))))
    moved.SetOrigin(tuple(o + 1000.0 for o in moved.GetOrigin()))
    transform, report = registration.register_rigid(t2, moved)
    assert "identity" not in report["coarse_metrics"]
    assert abs(np.linalg.norm(report["translation_mm"]) - 1000.0 * np.sqrt(3)) < 5.0


# ---------------------------------------------------------------- data safety

def test_hand_made_dataset_folder_is_never_touched(brats, raw, capsys):
    mine = raw / "Dataset801_BraTS"
    for folder in ("imagesTr", "labelsTr", "imagesTs"):
        (mine / folder).mkdir(parents=True)
        (mine / folder / "MINE_0000.nii.gz").write_bytes(b"the user's own data")
    (mine / "dataset.json").write_text('{"name": "mine"}')
    before = tree_hashes(mine)
    argv, _ = convert(raw, brats)
    message = fails(capsys, convert_cli.main, *argv)
    assert str(mine) in message and "not created by nnUNetv2_sam_convert_brats; nothing was changed" in message
    assert tree_hashes(mine) == before


def test_adding_cases_keeps_the_earlier_ones_and_removal_is_explicit(pristine, tmp_path, raw, capsys):
    batch1, batch2 = tmp_path / "batch1", tmp_path / "batch2"
    first, second = sorted(p.name for p in pristine.iterdir())
    shutil.copytree(pristine / first, batch1 / first)
    shutil.copytree(pristine / second, batch2 / second)
    argv1, dataset = convert(raw, batch1)
    argv2, _ = convert(raw, batch2)
    convert_cli.main([str(a) for a in argv1])
    convert_cli.main([str(a) for a in argv2])
    assert json.loads((dataset / "dataset.json").read_text())["numTraining"] == 2
    assert {p.name for p in (dataset / "labelsTr").iterdir()} == {f"{first}.nii.gz", f"{second}.nii.gz"}
    hashes = tree_hashes(dataset)
    convert_cli.main([str(a) for a in argv2])  # the same input again: idempotent
    assert "0 converted, 1 already up to date" in capsys.readouterr().out
    assert tree_hashes(dataset) == hashes
    message = fails(capsys, convert_cli.main, *argv1, "--labels", "regions")  # would mix label sets
    assert f"case {second}" in message and "expected the same --labels" in message
    assert tree_hashes(dataset) == hashes
    convert_cli.main([str(a) for a in argv2] + ["--remove-missing"])
    assert f"removed 1 case(s) no longer in the input: {first}" in capsys.readouterr().out
    assert {p.name for p in (dataset / "labelsTr").iterdir()} == {f"{second}.nii.gz"}
    assert json.loads((dataset / "dataset.json").read_text())["numTraining"] == 1


def test_output_path_that_is_a_file(brats, tmp_path, capsys):
    target = tmp_path / "out.nii.gz"
    target.write_bytes(b"keep me")
    message = fails(capsys, register_cli.main, "-i", brats, "-o", target, "-np", 1)
    assert str(target) in message and "output path is a file" in message
    assert target.read_bytes() == b"keep me"


def test_output_under_a_file(brats, tmp_path, capsys, monkeypatch):
    raw_file = tmp_path / "raw_is_a_file"
    raw_file.write_bytes(b"not a folder")
    import nnunetv2.paths

    monkeypatch.setattr(nnunetv2.paths, "nnUNet_raw", str(raw_file))
    message = fails(capsys, convert_cli.main, "-i", brats, "-d", 802, "-np", 1)
    assert "cannot access" in message and str(raw_file) in message and "Not a directory" in message
    assert raw_file.read_bytes() == b"not a folder"


def test_read_only_output_folder(brats, tmp_path, capsys, monkeypatch):
    out = tmp_path / "readonly"
    out.mkdir(mode=0o555)
    if os.geteuid() == 0:  # root may write anyway: the kernel's answer to anyone else, for paths under `out`
        real_mkdir = Path.mkdir

        def mkdir(self, *args, **kwargs):
            if out in self.parents:
                raise PermissionError(13, "Permission denied", str(self))
            return real_mkdir(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", mkdir)
    message = fails(capsys, register_cli.main, "-i", brats, "-o", out / "new", "-np", 1)
    assert f"cannot access {out / 'new'}: Permission denied (expected a folder you can write to)" in message
    assert not list(out.iterdir())


def test_paths_with_spaces_and_unicode(pristine, tmp_path, monkeypatch, capsys):
    source = tmp_path / "mes données BraTS"
    shutil.copytree(pristine, source)
    raw = tmp_path / "raw ß folder"
    import nnunetv2.paths

    monkeypatch.setattr(nnunetv2.paths, "nnUNet_raw", str(raw))
    convert_cli.main(["-i", str(source), "-d", "803", "--register", "never", "-np", "1"])
    assert "2 converted" in capsys.readouterr().out
    assert json.loads((raw / "Dataset803_BraTS" / "dataset.json").read_text())["numTraining"] == 2


# ---------------------------------------------------------------- checkpoints at planning time

def _checkpoint(kind: str, tmp_path: Path) -> tuple[Path, str, str]:
    """(path, backbone, expected text) of a bad checkpoint."""
    path = tmp_path / f"{kind.replace(' ', '_')}.pth"
    if kind == "missing":
        return path, "tiny", "does not exist"
    if kind == "empty":
        path.write_bytes(b"")
        return path, "tiny", "truncated or corrupt"
    from sam_checkpoint_factory import write_tiny_sam_checkpoint

    write_tiny_sam_checkpoint(path)
    return path, "vit_b", "holds a tiny model, but the backbone is vit_b"


@pytest.mark.parametrize("kind", ["missing", "empty", "wrong model"])
def test_bad_checkpoint_is_refused_before_planning(kind, tmp_path, capsys, monkeypatch):
    import nnunetv2.experiment_planning.plan_and_preprocess_api as api

    calls = []
    monkeypatch.setattr(api, "extract_fingerprint_dataset", lambda *a, **k: calls.append(a))
    monkeypatch.delenv("nnUNet_sam_checkpoint", raising=False)
    path, backbone, expected = _checkpoint(kind, tmp_path)
    before = tree_hashes(tmp_path)
    message = fails(capsys, plan_cli.main, "-d", 901, "--backbone", backbone, "--adapter-depth", 2, "--checkpoint", path)
    assert str(path) in message and expected in message, message
    assert not calls  # nothing was fingerprinted, planned or written
    assert tree_hashes(tmp_path) == before


# ---------------------------------------------------------------- worker processes

_ORPHAN_SCRIPT = """
import multiprocessing, os, sys, time
from nnunet_sam_adapter.data import worker_pool

def busy(marker):
    open(marker, "w").write(str(os.getpid()))
    time.sleep(120)

if __name__ == "__main__":
    marker = sys.argv[1]
    pool = multiprocessing.get_context("spawn").Pool(1, worker_pool._init_pool_process, (1, os.getpid()))
    pool.apply_async(busy, (marker,))
    while not os.path.exists(marker) or not open(marker).read():
        time.sleep(0.05)
    print(open(marker).read(), flush=True)  # the worker is busy in a task, not waiting on the parent's pipe
    time.sleep(120)
"""


def test_workers_exit_when_the_parent_dies(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(_ORPHAN_SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path / "worker.pid")], stdout=subprocess.PIPE,
                              text=True, cwd=ROOT)
    worker = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(worker):
        time.sleep(0.2)
    assert not _alive(worker), "the pool worker outlived its parent"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; only its (dead) parent could reap it


def test_worker_publishes_nothing_once_orphaned(brats, tmp_path, monkeypatch):
    """The check before publishing (for systems without PR_SET_PDEATHSIG)."""
    case = find_cases(brats)[0][0]
    staging = tmp_path / "staging"
    job = case_pipeline.CaseJob(case, {m: tmp_path / "out" / f"{case.case_id}_{i:04d}.nii.gz"
                                    for i, m in enumerate(CHANNELS)}, None,
                             tmp_path / "out" / "report.json", [], staging, "never", None, {})
    exits = []
    monkeypatch.setattr(worker_pool, "_PARENT_PID", os.getppid() + 1)  # as if the parent were gone
    monkeypatch.setattr(worker_pool.os, "_exit", lambda code: (exits.append(code), sys.exit(code)))
    with pytest.raises(SystemExit):
        case_pipeline.process_case(job)
    assert exits == [1] and not (tmp_path / "out").exists()


# ---------------------------------------------------------------- registration quality gate (issue 19)

# a full-resolution (1 mm) crop of a real BraTS case around the brain's centre: 120 x 120 x 48 voxels
CROP_INDEX, CROP_SIZE = (60, 60, 50), (120, 120, 48)


@pytest.fixture(scope="module")
def real_crop(tmp_path_factory):
    source = sorted(p for p in real_folder("btsgp_brats2021").iterdir() if p.is_dir())[0]
    out = tmp_path_factory.mktemp("real_crop") / "brats"
    (out / source.name).mkdir(parents=True)
    for path in sorted(source.glob("*.nii.gz")):
        cropped = sitk.RegionOfInterest(sitk.ReadImage(str(path)), CROP_SIZE, CROP_INDEX)
        sitk.WriteImage(cropped, str(out / source.name / path.name), useCompression=True)
    return out


def _flipped_flair(real_crop: Path, tmp_path: Path) -> tuple[Path, str, Path]:
    brats = tmp_path / "brats"
    shutil.copytree(real_crop, brats)
    case_id, case_dir = first_case(brats)
    flair = case_dir / f"{case_id}_flair.nii.gz"
    _rewrite(flair, flip_direction_xy)  # same voxels, direction flipped in x and y
    return brats, case_id, flair


@pytest.mark.parametrize("mode, command", [
    ("never", "convert"), pytest.param("auto", "register", marks=pytest.mark.slow),
    pytest.param("always", "convert", marks=pytest.mark.slow)])
def test_flipped_orientation_header_is_refused(mode, command, real_crop, tmp_path, raw, capsys):
    """Was: exit 0 and a mirrored (never) or mis-registered (auto: 180 degrees is out of the optimiser's
    reach) FLAIR in the dataset."""
    brats, case_id, flair = _flipped_flair(real_crop, tmp_path)
    before = tree_hashes(brats)
    if command == "convert":
        argv, out = ["-i", brats, "-d", 801, "--register", mode, "-np", 1], raw / "Dataset801_BraTS"
        message = fails(capsys, convert_cli.main, *argv)
    else:
        out = tmp_path / "out"
        message = fails(capsys, register_cli.main, "-i", brats, "-o", out, "--register", mode, "-np", 1)
    assert f"case {case_id}: {flair}: flair does not match T2 after it was " in message, message
    figure = float(re.search(r"alignment NMI (\d\.\d+) < threshold", message)[1])
    assert figure < case_pipeline.registration.QUALITY_THRESHOLD
    assert "wrong orientation header" in message and "--keep-poor-registration" in message
    assert tree_hashes(brats) == before and not out.exists()


def test_keep_poor_registration_keeps_the_case_and_flags_it(real_crop, tmp_path, raw, capsys):
    brats, case_id, flair = _flipped_flair(real_crop, tmp_path)
    before = tree_hashes(brats)
    convert_cli.main([str(a) for a in ["-i", brats, "-d", 801, "--register", "never", "-np", 1,
                                       "--keep-poor-registration"]])
    err = capsys.readouterr().err
    assert f"warning: case {case_id}: flair kept with --keep-poor-registration" in err, err
    report = json.loads((raw / "Dataset801_BraTS" / "registration_reports" / f"{case_id}.json").read_text())
    assert report["poor_alignment"] == ["flair"]
    alignment = report["modalities"]["flair"]["alignment"]
    assert alignment["poor"] is True and alignment["nmi"] < alignment["threshold"]
    assert not report["modalities"]["t1"]["alignment"]["poor"]
    assert (raw / "Dataset801_BraTS" / "imagesTr" / f"{case_id}_0003.nii.gz").is_file()
    assert tree_hashes(brats) == before


def test_good_case_passes_and_its_report_holds_the_alignment_figure(real_crop, tmp_path, raw, capsys):
    brats = tmp_path / "brats"
    shutil.copytree(real_crop, brats)
    case_id, _ = first_case(brats)
    before = tree_hashes(brats)
    convert_cli.main([str(a) for a in ["-i", brats, "-d", 801, "--register", "never", "-np", 1]])
    report = json.loads((raw / "Dataset801_BraTS" / "registration_reports" / f"{case_id}.json").read_text())
    assert report["poor_alignment"] == []
    for modality in ("t1", "t1ce", "flair"):
        alignment = report["modalities"][modality]["alignment"]
        assert alignment["nmi"] >= alignment["threshold"] == case_pipeline.registration.QUALITY_THRESHOLD, alignment
        assert alignment["poor"] is False and -1.0 <= alignment["ncc"] <= 1.0
    assert tree_hashes(brats) == before


def test_another_patients_modality_is_refused(real_crop, tmp_path, raw, capsys):
    """The FLAIR of another real case (same BraTS atlas space, same crop) in place of the case's own."""
    brats = tmp_path / "brats"
    shutil.copytree(real_crop, brats)
    case_id, case_dir = first_case(brats)
    other = sorted(p for p in real_folder("bioexp_brats2018").iterdir() if p.is_dir())[0]
    flair = case_dir / f"{case_id}_flair.nii.gz"
    cropped = sitk.RegionOfInterest(sitk.ReadImage(str(other / f"{other.name}_flair.nii.gz")), CROP_SIZE, CROP_INDEX)
    sitk.WriteImage(cropped, str(flair), useCompression=True)
    before = tree_hashes(brats)
    message = fails(capsys, convert_cli.main, "-i", brats, "-d", 801, "--register", "never", "-np", 1)
    assert f"case {case_id}: {flair}: flair does not match T2" in message and "another patient" in message, message
    assert tree_hashes(brats) == before and not (raw / "Dataset801_BraTS").exists()


# ---------------------------------------------------------------- case discovery (issue 19 extras)

def test_hidden_case_folder_is_named_not_skipped_silently(brats, raw, capsys):
    """A case folder named like '..' (a name starting with '.') is hidden: skipped, but said in one line."""
    case_id, case_dir = first_case(brats)
    other_id = sorted(p.name for p in brats.iterdir())[1]
    hidden_folder = brats / f".{other_id}"
    (brats / other_id).rename(hidden_folder)
    dots = brats / "dots"
    dots.mkdir()
    for path in sorted(hidden_folder.glob("*.nii.gz")):
        shutil.copyfile(path, dots / path.name.replace(other_id, ".."))
    before = tree_hashes(brats)
    argv, dataset = convert(raw, brats)
    convert_cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "warning:" in line]
    assert len(warnings) == 2, captured.err
    assert f"warning: case .{other_id}: {hidden_folder}: skipped: this folder name starts with '.'" in warnings[0]
    assert f"warning: case ..: {dots / '.._flair.nii.gz'}: skipped: this file name starts with '.'" in warnings[1]
    assert "1 converted" in captured.out and (dataset / "registration_reports" / f"{case_id}.json").is_file()
    assert tree_hashes(brats) == before


def test_seg_only_case_with_allow_missing_says_no_modality_at_all(brats, tmp_path, capsys):
    case_id, case_dir = first_case(brats)
    for modality in CHANNELS:
        (case_dir / f"{case_id}_{modality}.nii.gz").unlink()
    before = tree_hashes(brats)
    message = fails(capsys, register_cli.main, "-i", brats, "-o", tmp_path / "out", "--allow-missing",
                    "--register", "never", "-np", 1)
    assert f"case {case_id}: {case_dir}: no modality at all (only {case_id}_seg.nii.gz): expected at least one of " \
           "t1, t1ce, t2, flair" in message, message
    assert "missing modality" not in message
    assert tree_hashes(brats) == before and not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the matrix in docs/reliability.md

def test_reliability_matrix_names_existing_tests():
    doc = (ROOT / "docs" / "reliability.md").read_text()
    rows = [line for line in doc.splitlines() if line.startswith("| ") and not line.startswith("| class")
            and not set(line) <= set("|- ")]
    assert len(rows) >= 20
    sources = {path.name: path.read_text() for path in (ROOT / "tests").glob("test_*.py")}  # rows name any test file
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 4, row
        tests = re.findall(r"`(test_\w+\.py)::(test_\w+)(?:\[[^\]]+\])?`", cells[3])
        if not tests:
            assert cells[3].startswith("not covered"), row
        for file, name in tests:
            assert f"def {name}(" in sources[file], (file, name)
    covered = set(re.findall(r"test_bad_inputs\.py::(test_\w+)", doc))
    defined = set(re.findall(r"^def (test_\w+)\(", sources["test_bad_inputs.py"], re.M))
    assert defined - {"test_reliability_matrix_names_existing_tests"} <= covered, defined - covered
    for kind in [*DAMAGE, *CASE_PROBLEMS]:
        assert f"[{kind}]" in doc, kind
