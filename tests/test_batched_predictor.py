"""BatchedTilePredictor (issue #21): the same sliding-window logits as nnU-Net's nnUNetPredictor with several
tiles (and their mirrored copies) per forward, and the `nnUNetv2_sam_predict` command's own option.

Precision is pinned: the networks run in fp32 on the CPU (SAM's autocast off); the only rounding that can
differ is nnU-Net's half-precision accumulation, hence the tolerance."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from nnunetv2.inference import predict_from_raw_data
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

from nnunet_sam_adapter.cli import predict as predict_cli
from nnunet_sam_adapter.inference import batched_predictor
from nnunet_sam_adapter.inference.batched_predictor import DEFAULT_TILES_PER_BATCH, BatchedTilePredictor

ROOT = Path(__file__).resolve().parents[1]
DATASET_JSON = {"labels": {"background": 0, "tumour": 1}, "channel_names": {"0": "T1", "1": "T2"},
                "file_ending": ".nii.gz", "numTraining": 1}
# (patch size, volume (C, Z, Y, X), mirror axes): 2d = 3 slices x 4 x 3 tiles = 36 tiles; 3d = 3 x 3 x 2 = 18
CASES = {"2d": ((16, 16), (2, 3, 37, 29), (0, 1)), "3d": ((8, 12, 12), (2, 13, 21, 18), (0, 1, 2))}
NUM_TILES = {"2d": 36, "3d": 18}


class CountingNet(torch.nn.Module):
    """Small conv net (2 classes, not mirror-symmetric) recording the batch size of every forward."""

    def __init__(self, dim: int, channels: int = 2):
        super().__init__()
        conv, norm = (torch.nn.Conv2d, torch.nn.InstanceNorm2d) if dim == 2 else (torch.nn.Conv3d, torch.nn.InstanceNorm3d)
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(conv(channels, 6, 3, padding=1), norm(6, affine=True), torch.nn.LeakyReLU(),
                                        conv(6, 2, 3, padding=1))
        self.batches: list[int] = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        return self.body(x)


def make_predictor(cls, network, patch_size, mirror_axes, use_mirroring, **kwargs):
    configuration = {"patch_size": list(patch_size), "architecture": {"network_class_name": "tiny", "arch_kwargs": {},
                                                                      "_kw_requires_import": []}}
    plans = PlansManager({"plans_name": "tinyPlans", "dataset_name": "Dataset001_Tiny",
                          "configurations": {"c": configuration}})
    predictor = cls(tile_step_size=0.5, use_gaussian=True, use_mirroring=use_mirroring,
                    perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False, **kwargs)
    predictor.manual_initialization(network, plans, ConfigurationManager(configuration), None, DATASET_JSON,
                                    "tinyTrainer", mirror_axes)
    return predictor


def assert_same_logits(ours: torch.Tensor, stock: torch.Tensor):
    """nnU-Net accumulates in torch.half: values O(1) agree to ~1e-3; the argmax wherever it is not a near-tie."""
    assert ours.shape == stock.shape and ours.dtype == stock.dtype == torch.half
    torch.testing.assert_close(ours.float(), stock.float(), atol=1e-2, rtol=1e-2)
    margin = (stock[1] - stock[0]).float().abs()
    decided = margin > 2e-2
    assert decided.float().mean() > 0.9
    assert torch.equal(ours.argmax(0)[decided], stock.argmax(0)[decided])


@pytest.mark.parametrize("use_mirroring", [False, True], ids=["no-mirror", "mirror"])
@pytest.mark.parametrize("tiles_per_batch", [1, 3, 64])
@pytest.mark.parametrize("configuration", ["2d", "3d"])
def test_batched_logits_equal_nnunets(configuration, tiles_per_batch, use_mirroring):
    patch_size, shape, mirror_axes = CASES[configuration]
    volume = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    stock_net, our_net = CountingNet(len(patch_size)), CountingNet(len(patch_size))
    stock = make_predictor(nnUNetPredictor, stock_net, patch_size, mirror_axes, use_mirroring)
    ours = make_predictor(BatchedTilePredictor, our_net, patch_size, mirror_axes, use_mirroring,
                          tiles_per_batch=tiles_per_batch)
    expected = stock.predict_sliding_window_return_logits(volume)
    got = ours.predict_sliding_window_return_logits(volume)
    assert got.shape == (2, *shape[1:])
    assert_same_logits(got, expected)

    # the batching itself: ceil(tiles / tiles_per_batch) forwards, each with the mirrored copies inside
    copies = 2 ** len(mirror_axes) if use_mirroring else 1
    tiles = NUM_TILES[configuration]
    assert len(stock_net.batches) == tiles * copies and set(stock_net.batches) == {1}
    sizes = [min(tiles_per_batch, tiles - start) * copies for start in range(0, tiles, tiles_per_batch)]
    assert our_net.batches == sizes


def test_our_sam_network_batched_equals_nnunets():
    """The network the predictor is for (tiny backbone, fp32): 2d configuration, mirroring, 3 tiles per batch."""
    from nnunet_sam_adapter.model.network import SAMCrossModalNetwork

    torch.manual_seed(0)
    net = SAMCrossModalNetwork(4, 2, "tiny", 32, adapter_depth=2, autocast="off", attention="sam").eval()
    with torch.no_grad():  # zero-initialised adapters would hide the cross-modal path; logits O(1)
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    volume = torch.randn((4, 2, 48, 40), generator=torch.Generator().manual_seed(2))
    stock = make_predictor(nnUNetPredictor, net, (32, 32), (0, 1), True)
    ours = make_predictor(BatchedTilePredictor, net, (32, 32), (0, 1), True, tiles_per_batch=3)
    assert_same_logits(ours.predict_sliding_window_return_logits(volume),
                       stock.predict_sliding_window_return_logits(volume))


@pytest.mark.parametrize("producer_thread", [False, True], ids=["cpu-same-thread", "gpu-style-producer-thread"])
def test_batches_made_in_this_thread_on_cpu_and_by_a_producer_elsewhere(producer_thread, monkeypatch):
    """On a CPU no second thread runs torch ops (it slowed every forward 1.8x); the GPU path's producer thread
    (forced here on the CPU) gives the same logits, and an error raised in it reaches the caller."""
    started = []
    real_thread = batched_predictor.Thread
    monkeypatch.setattr(batched_predictor, "Thread", lambda *a, **k: started.append(1) or real_thread(*a, **k))
    monkeypatch.setattr(batched_predictor, "batches_in_producer_thread", lambda device: producer_thread)
    patch_size, shape, mirror_axes = CASES["2d"]
    volume = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    stock = make_predictor(nnUNetPredictor, CountingNet(2), patch_size, mirror_axes, False)
    ours = make_predictor(BatchedTilePredictor, CountingNet(2), patch_size, mirror_axes, False, tiles_per_batch=5)
    assert_same_logits(ours.predict_sliding_window_return_logits(volume),
                       stock.predict_sliding_window_return_logits(volume))
    assert len(started) == int(producer_thread)


def test_producer_thread_yields_in_order_and_passes_on_its_error():
    assert list(batched_predictor._from_producer_thread(iter(range(7)))) == list(range(7))

    def failing():
        yield 1
        raise OSError("tile 2 unreadable")

    with pytest.raises(OSError, match="tile 2 unreadable"):
        list(batched_predictor._from_producer_thread(failing()))


def test_cpu_networks_get_no_producer_thread():
    assert not batched_predictor.batches_in_producer_thread(torch.device("cpu"))
    assert batched_predictor.batches_in_producer_thread(torch.device("cuda"))


@pytest.mark.parametrize("bad", [0, -1, "x", 2.5])
def test_predictor_rejects_a_bad_tiles_per_batch(bad):
    with pytest.raises(ValueError, match="tiles_per_batch must be a whole number >= 1"):
        BatchedTilePredictor(device=torch.device("cpu"), tiles_per_batch=bad)


# ---------------------------------------------------------------- nnUNetv2_sam_predict


NNUNET_ARGS = ["-i", "in", "-o", "out", "-d", "Dataset001_Tiny", "-c", "2d", "-device", "cpu", "--disable_tta"]


class Stop(Exception):
    pass


def run_command_until_initialization(argv, monkeypatch, tmp_path):
    """main(argv) through nnU-Net's real predict_entry_point (its argparse and predictor construction), stopped
    where it would load the model folder; returns the predictor it built."""
    monkeypatch.setattr(predict_cli, "refuse_bad_inputs", lambda argv: None)  # "in" is no folder: not what is tested
    built = {}

    def initialize(self, model_folder, use_folds, checkpoint_name="checkpoint_final.pth"):
        built.update(predictor=self, argv=list(sys.argv))
        raise Stop

    monkeypatch.setattr(BatchedTilePredictor, "initialize_from_trained_model_folder", initialize)
    monkeypatch.setattr(predict_from_raw_data, "get_output_folder", lambda *args, **kwargs: str(tmp_path / "model"))
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    try:
        with pytest.raises(Stop):
            predict_cli.main(argv)
    finally:
        torch.set_num_threads(threads)  # nnU-Net's entry point sets it for -device cpu
    return built


@pytest.mark.parametrize("option,expected", [([], DEFAULT_TILES_PER_BATCH), (["--tiles-per-batch", "4"], 4),
                                             (["--tiles-per-batch=6"], 6)])
def test_command_passes_tiles_per_batch_to_the_predictor(option, expected, monkeypatch, tmp_path):
    built = run_command_until_initialization([*NNUNET_ARGS[:4], *option, *NNUNET_ARGS[4:]], monkeypatch, tmp_path)
    predictor = built["predictor"]
    assert isinstance(predictor, BatchedTilePredictor) and predictor.tiles_per_batch == expected
    assert predictor.use_mirroring is False and predictor.device.type == "cpu"  # nnU-Net's own options arrived
    assert built["argv"] == ["nnUNetv2_sam_predict", *NNUNET_ARGS]  # ours stripped before nnU-Net parsed
    assert predict_from_raw_data.nnUNetPredictor is nnUNetPredictor  # substitution undone


@pytest.mark.parametrize("value", ["0", "-1", "x"])
def test_command_bad_tiles_per_batch_is_one_line(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        predict_cli.main([*NNUNET_ARGS, "--tiles-per-batch", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"nnUNetv2_sam_predict: error: --tiles-per-batch expects a whole number >= 1, got {value!r}"
    assert predict_from_raw_data.nnUNetPredictor is nnUNetPredictor


def test_command_as_a_module_missing_value():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "nnunet_sam_adapter.cli.predict", *NNUNET_ARGS, "--tiles-per-batch"],
                            capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "nnUNetv2_sam_predict: error: --tiles-per-batch expects a value (a whole number >= 1)"]


@pytest.mark.parametrize("form", ["separate", "attached", "equals"])
def test_command_refuses_a_truncated_input_before_predicting(form, tmp_path, monkeypatch, capsys):
    """nnU-Net's reader predicts on a cut .nii.gz without a word; the command names the file and exits 1 first,
    whichever way argparse accepts `-i` and `-d` (`-d 1`, `-d1`, `-d=1`), with `-device` beside them."""
    import numpy as np
    import SimpleITK as sitk

    for channel in range(2):
        sitk.WriteImage(sitk.GetImageFromArray(np.random.rand(6, 8, 8).astype(np.float32)),
                        str(tmp_path / f"CASE_{channel:04d}.nii.gz"))
    flair = tmp_path / "CASE_0001.nii.gz"
    flair.write_bytes(flair.read_bytes()[: flair.stat().st_size // 2])
    def dataset_1(dataset, dataset_json=None):
        assert str(dataset) == "1", f"-d read as {dataset!r}"
        return DATASET_JSON, tmp_path / "dataset.json"

    monkeypatch.setattr("nnunet_sam_adapter.data.input_check.load_dataset_json", dataset_1)
    monkeypatch.setattr(predict_from_raw_data, "predict_entry_point", lambda: pytest.fail("predicted on a bad input"))
    with pytest.raises(SystemExit) as exit_info:
        given = {"separate": ["-i", str(tmp_path), "-d", "1"], "attached": [f"-i{tmp_path}", "-d1"],
                 "equals": [f"-i={tmp_path}", "-d=1"]}[form]
        predict_cli.main([*given, "-o", str(tmp_path / "out"), "-c", "2d", "-device", "cpu"])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "CASE_0001.nii.gz" in error and "truncated" in error
