"""The child processes of the whole-volume timing (`speed.whole_volume`); nnU-Net reads its folders from the
environment when it is imported, so each runs in a process started with them.

`model`: a fold_0 model folder with untrained weights, written by the method's own trainer as nnU-Net's
training writes it (checkpoint_final.pth, plans.json, dataset.json, dataset_fingerprint.json): prediction
time does not depend on the weights.
`profile`: nnU-Net's sequential predictor (`predict_from_files_sequential`, no worker processes; or our
batched one, nnUNetv2_sam_predict's) on the
input folder with timers around its steps: preprocessing, the network (encoder and decoder), the
sliding-window bookkeeping around the network and the export. Prints one JSON line.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path


def write_untrained_model(method_name: str, dataset: str) -> str:
    """RESULTS/DATASET/Trainer__Plans__configuration/fold_0 with an untrained checkpoint_final.pth -> its path."""
    import torch
    from batchgenerators.utilities.file_and_folder_operations import save_json

    from nnunet_sam_adapter.methods import METHODS
    from nnunet_sam_adapter.paths import load_json, nnunet_dirs
    from nnunet_sam_adapter.training.trainer_factory import build_trainer

    method = METHODS[method_name]
    _, preprocessed, _ = nnunet_dirs(dataset)
    plans = load_json(preprocessed / f"{method.plans}.json")
    if not plans or method.configuration not in plans.get("configurations", {}):
        raise SystemExit(f"{preprocessed / (method.plans + '.json')}: no configuration {method.configuration} "
                         f"(run nnUNetv2_sam_plan_and_preprocess -d {dataset} ... --stock {method.configuration})")
    trainer = build_trainer(method.trainer_class(), plans, method.configuration, 0, preprocessed, torch.device("cpu"))
    trainer.initialize()
    # nnU-Net sets the mirror axes the checkpoint hands to the predictor when its data loaders are built;
    # without this call the checkpoint would say "no mirroring" and nnUNetv2_predict would not mirror
    trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    base = Path(trainer.output_folder_base)
    Path(trainer.output_folder).mkdir(parents=True, exist_ok=True)
    # what nnU-Net's on_train_start copies next to the folds (the predictor reads them from there)
    save_json(trainer.plans_manager.plans, str(base / "plans.json"), sort_keys=False)
    save_json(trainer.dataset_json, str(base / "dataset.json"), sort_keys=False)
    shutil.copy(preprocessed / "dataset_fingerprint.json", base / "dataset_fingerprint.json")
    trainer.save_checkpoint(str(Path(trainer.output_folder) / "checkpoint_final.pth"))
    return str(base)


def _decoder_units(network) -> list:
    """The modules whose forward is the decoder: SAM's mask decoder (and our refinement head), nnU-Net's
    UNet decoder. The rest of the network's time is the encoder with its stems and adapters (our networks
    run the encoder's blocks one by one, so the encoder has no single forward to time)."""
    import torch.nn as nn

    sam = getattr(network, "sam", None)
    units = [sam.mask_decoder, getattr(network, "refine", None)] if sam is not None else \
        [getattr(network, "decoder", None)]
    return [unit for unit in units if isinstance(unit, nn.Module)]


def _timed_forward(module, totals: dict, key: str) -> None:
    start = {}

    def before(_module, _inputs):
        start[id(_module)] = time.perf_counter()

    def after(_module, _inputs, _output):
        totals[key] += time.perf_counter() - start.pop(id(_module))
        totals[f"{key}_calls"] += 1

    module.register_forward_pre_hook(before)
    module.register_forward_hook(after)


def profile_prediction(model_folder: str, input_folder: str, output_folder: str, mirroring: bool,
                       batched: bool = False) -> dict:
    """Where nnU-Net's predictor (`batched`: our BatchedTilePredictor, nnUNetv2_sam_predict's) spends the time
    of the cases in `input_folder` (seconds)."""
    import torch
    from nnunetv2.inference import predict_from_raw_data as nnunet_predict

    from nnunet_sam_adapter.inference.batched_predictor import BatchedTilePredictor

    predictor_class = BatchedTilePredictor if batched else nnunet_predict.nnUNetPredictor
    predictor = predictor_class(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                                               perform_everything_on_device=False, device=torch.device("cpu"),
                                               verbose=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(model_folder, (0,), "checkpoint_final.pth")
    totals = {k: 0.0 for k in ("network", "network_calls", "decoder", "decoder_calls", "logits", "logits_calls",
                               "export", "export_calls")}
    _timed_forward(predictor.network, totals, "network")
    for unit in _decoder_units(predictor.network):
        _timed_forward(unit, totals, "decoder")

    predict_logits = predictor.predict_logits_from_preprocessed_data

    def timed_logits(data):
        start = time.perf_counter()
        try:
            return predict_logits(data)
        finally:
            totals["logits"] += time.perf_counter() - start
            totals["logits_calls"] += 1

    predictor.predict_logits_from_preprocessed_data = timed_logits
    export = nnunet_predict.export_prediction_from_logits

    def timed_export(*args, **kwargs):  # measurement only: the module's name is wrapped in this child process
        start = time.perf_counter()
        try:
            return export(*args, **kwargs)
        finally:
            totals["export"] += time.perf_counter() - start
            totals["export_calls"] += 1

    nnunet_predict.export_prediction_from_logits = timed_export
    Path(output_folder).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    predictor.predict_from_files_sequential(input_folder, output_folder, save_probabilities=False, overwrite=True)
    total = time.perf_counter() - start
    return {"total_s": total, "preprocessing_s": total - totals["logits"] - totals["export"],
            "encoder_s": totals["network"] - totals["decoder"], "decoder_s": totals["decoder"],
            "sliding_window_s": totals["logits"] - totals["network"], "export_s": totals["export"],
            "network_forwards": int(totals["network_calls"]), "cases": int(totals["logits_calls"]),
            "patch_size": list(predictor.configuration_manager.patch_size),
            "torch_threads": torch.get_num_threads()}


def main(argv: list[str]) -> None:
    if argv[0] == "model":
        print(json.dumps({"model_folder": write_untrained_model(argv[1], argv[2])}))
    elif argv[0] == "profile":
        print(json.dumps(profile_prediction(argv[1], argv[2], argv[3], argv[4] == "mirroring",
                                            len(argv) > 5 and argv[5] == "batched")))
    else:
        raise SystemExit(f"unknown step {argv[0]!r}: model METHOD DATASET | profile MODEL INPUT OUTPUT MIRRORING "
                         f"[nnunet|batched]")


if __name__ == "__main__":
    main(sys.argv[1:])
