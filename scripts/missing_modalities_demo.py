"""Missing modalities on the demo phantoms: ours trained plainly vs ours trained with modality dropout,
each evaluated on all 15 non-empty subsets of T1/T1ce/T2/FLAIR (docs/missing_modalities.md).

    .venv/bin/python scripts/missing_modalities_demo.py -o /tmp/mm_demo [--epochs 20 --iterations 10]
        [--backbone tiny]

Same synthetic cases, registration and plans as `make demo` (nnunet_sam_adapter.apps.demo), its
own nnU-Net folders inside the work folder. `--backbone tiny` plans the test-sized SAM encoder with
random frozen weights instead of LiteMedSAM (about 10x cheaper on a CPU; the numbers then show the effect
of modality dropout on the trainable parts, not what pretrained SAM features give). Training goes through nnU-Net's trainer API with the budget
set on the instance (as the benchmark does); a finished run (checkpoint_final.pth + validation) is reused.
Writes WORK/missing_modalities/missing_modalities.{md,csv,png}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from dataclasses import replace
from pathlib import Path


def train(method_name: str, dataset_id: int, epochs: int, iterations: int, log_dir: Path) -> float | None:
    """Train + validate fold 0 (no test-time mirroring, as the demo); seconds, or None when reused."""
    import pydoc

    import torch
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_results
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    from nnunet_sam_adapter.methods import METHODS

    method = METHODS[method_name]
    name = maybe_convert_to_dataset_name(dataset_id)
    run_dir = Path(nnUNet_results) / name / method.folder_name / "fold_0"
    if (run_dir / "checkpoint_final.pth").is_file() and (run_dir / "validation" / "summary.json").is_file():
        return None
    preprocessed = Path(nnUNet_preprocessed) / name
    plans = {**json.loads((preprocessed / f"{method.plans}.json").read_text()), "continue_training": False}
    dataset_json = json.loads((preprocessed / "dataset.json").read_text())
    trainer = pydoc.locate(method.trainer)(plans=plans, configuration=method.configuration, fold=0,
                                           dataset_json=dataset_json, device=torch.device("cpu"))
    trainer.num_epochs, trainer.num_iterations_per_epoch = epochs, iterations
    trainer.num_val_iterations_per_epoch = max(1, round(iterations / 5))
    log_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log_dir / f"{method_name}.log", "w") as log, contextlib.redirect_stdout(log):
        trainer.run_training()
        trainer.inference_allowed_mirroring_axes = None
        trainer.perform_actual_validation(False)
    return time.perf_counter() - start


def main(argv=None) -> None:
    from nnunet_sam_adapter.apps.demo import DemoSettings, make_cases, plan, use_demo_folders

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", default="demo_missing_modalities", help="work folder")
    parser.add_argument("--epochs", type=int, default=DemoSettings.epochs)
    parser.add_argument("--iterations", type=int, default=DemoSettings.iterations)
    parser.add_argument("--methods", nargs="+", default=["ours", "ours_missing"])
    parser.add_argument("--backbone", default=DemoSettings.backbone, choices=("litemedsam", "tiny"))
    parser.add_argument("--subsets", nargs="+", default=None, metavar="SUBSET",
                        help="evaluate only these subsets, e.g. T1+T1ce+T2+FLAIR T1+T2+FLAIR (default: all 15)")
    parser.add_argument("--train-only", action="store_true")
    args = parser.parse_args(argv)

    work = Path(args.o).resolve()
    settings = replace(DemoSettings(), work_dir=str(work), epochs=args.epochs, iterations=args.iterations,
                       backbone=args.backbone)
    use_demo_folders(work)
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    from nnunet_sam_adapter.data.conversion import convert_brats

    seconds = {}
    start = time.perf_counter()
    brats = make_cases(settings, work)
    convert_brats(brats, settings.dataset_id, settings.dataset_name, labels="whole_tumor", register="always",
                  num_processes=settings.num_processes)
    if args.backbone == "tiny":
        from nnunet_sam_adapter.planning import SAMPlanSettings, plan_and_preprocess

        if not (work / "nnUNet_preprocessed" / f"Dataset{settings.dataset_id}_{settings.dataset_name}" /
                "nnUNetSAMPlans.json").is_file():
            with open(work / "plan.log", "w") as f, contextlib.redirect_stdout(f):
                plan_and_preprocess(settings.dataset_id, SAMPlanSettings(
                    backbone="tiny", input_size=settings.input_size, batch_size=settings.batch_size,
                    adapter_depth=2, allow_random_encoder=True), settings.num_processes)
    else:
        plan(settings, work)
    seconds["data + plans"] = round(time.perf_counter() - start, 1)
    os.environ["nnUNet_n_proc_DA"] = "0"  # after planning (0 breaks the planner); augmentation in-process
    for method in args.methods:
        took = train(method, settings.dataset_id, args.epochs, args.iterations, work / "logs")
        seconds[f"train {method}"] = "reused" if took is None else round(took, 1)
        print(f"{method}: {seconds[f'train {method}']}", flush=True)
    if args.train_only:
        return
    from nnunet_sam_adapter.evaluation.missing_modalities import SUBSETS, evaluate_missing_modalities, subset_name

    subsets = SUBSETS if not args.subsets else [s for s in SUBSETS if subset_name(s) in args.subsets]
    if args.subsets and len(subsets) != len(args.subsets):
        parser.error(f"--subsets: expected names like {', '.join(subset_name(s) for s in SUBSETS[-3:])}")

    start = time.perf_counter()
    result = evaluate_missing_modalities(settings.dataset_id, args.methods, folds=(0,),
                                         output_dir=work / "missing_modalities", mirroring=False,
                                         subsets=subsets)
    seconds["15-subset evaluation"] = round(time.perf_counter() - start, 1)
    print(Path(result["files"]["missing_modalities.md"]).read_text())
    print("Seconds:", json.dumps(seconds))


if __name__ == "__main__":
    main()
