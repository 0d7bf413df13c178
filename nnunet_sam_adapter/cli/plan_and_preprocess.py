"""`nnUNetv2_sam_plan_and_preprocess`: fingerprint, SAM plans (2d and 3d_sam) and preprocessing for a raw dataset."""

from __future__ import annotations

import argparse

from nnunet_sam_adapter.cli.errors import one_line_errors
from nnunet_sam_adapter.model.backbones import BACKBONE_NAMES
from nnunet_sam_adapter.model.checkpoints import CHECKPOINT_ENV_VAR


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_sam_plan_and_preprocess",
        description="Plan and preprocess an nnU-Net raw dataset for the SAM networks (plans nnUNetSAMPlans, "
                    "configuration 2d, and for 3D datasets 3d_sam: stacks of D slices, beyond the paper). Train with: "
                    "nnUNetv2_train ID 2d FOLD -tr SAMCrossModalTrainer -p nnUNetSAMPlans (3D: ID 3d_sam FOLD "
                    "-tr SAMCrossModal3DTrainer)")
    parser.add_argument("-d", type=int, nargs="+", required=True, help="dataset id(s)")
    parser.add_argument("--backbone", default="vit_b", choices=BACKBONE_NAMES)
    parser.add_argument("--checkpoint", default=None,
                        help=f"SAM checkpoint for training (e.g. sam_vit_b_01ec64.pth); default ${CHECKPOINT_ENV_VAR}, "
                             f"or the bundled weights for litemedsam. Not needed to predict.")
    parser.add_argument("--allow-random-encoder", action="store_true",
                        help="train without pretrained weights on purpose (a warning is printed)")
    parser.add_argument("--input-size", type=int, default=256, help="SAM input = 2d patch size (paper: 256)")
    parser.add_argument("--batch-size", type=int, default=24, help="paper: 24")
    parser.add_argument("--adapter-depth", type=int, default=6, help="adapters after the first n blocks (paper: 6)")
    parser.add_argument("--slices", type=int, default=None,
                        help="3d_sam: slices per stack D (default: about 16 mm of context, 8-16 slices, at most "
                             "the batch size; the 3d batch is then batch-size // D)")
    parser.add_argument("--no-3d", action="store_true",
                        help="plan and preprocess the 2d configuration only (no 3d_sam)")
    parser.add_argument("--stock", nargs="*", default=[], metavar="CONFIG",
                        help="also plan nnU-Net's stock nnUNetPlans and preprocess these configurations "
                             "(e.g. --stock 2d 3d_fullres) for the stock baselines")
    parser.add_argument("-np", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--no-verify", action="store_true", help="skip nnU-Net's dataset integrity check")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    from nnunet_sam_adapter.planning import SAMPlanSettings, plan_and_preprocess

    prog = parser.prog
    with one_line_errors(prog, extra=(ValueError,)):  # SAMPlanSettings refuses bad values with ValueError
        settings = SAMPlanSettings(backbone=args.backbone, checkpoint=args.checkpoint, input_size=args.input_size,
                                   batch_size=args.batch_size, adapter_depth=args.adapter_depth,
                                   allow_random_encoder=args.allow_random_encoder, slices=args.slices)
    for dataset_id in args.d:
        with one_line_errors(prog):
            written = plan_and_preprocess(dataset_id, settings, args.np, tuple(args.stock), not args.no_verify,
                                          args.verbose, with_3d=not args.no_3d)
        print(f"Dataset {dataset_id}: plans {', '.join(written)} written and preprocessed")


if __name__ == "__main__":
    main()
