"""`nnUNetv2_sam_gpu_check` (`make gpu-check`): on a CUDA machine, the speed benchmark at the paper's settings
and short trainings on the real BraTS cases -> docs/performance.md (GPU section), docs/gpu_check.md."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROG = "nnUNetv2_sam_gpu_check"


def build_parser() -> argparse.ArgumentParser:
    from nnunet_sam_adapter.apps.gpu_check import REAL_DATA_DEFAULT, REAL_DATA_ENV

    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split(": ", 1)[1])
    parser.add_argument("--data", default=None,
                        help=f"folder of the real BraTS case sets (default: ${REAL_DATA_ENV}, else {REAL_DATA_DEFAULT} "
                             f"relative to the current folder)")
    parser.add_argument("--work", default="gpu_check_output", help="work folder (nnU-Net folders, logs)")
    parser.add_argument("--docs", default="docs", help="where performance.md and gpu_check.md are written")
    parser.add_argument("-d", "--dataset-id", type=int, default=501)
    parser.add_argument("--sam-checkpoint", default=None, help="sam_vit_b_01ec64.pth: also train ours with vit_b")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the plan and check its inputs, run nothing")
    mode.add_argument("--cpu-smoke", action="store_true", help="run the plan on the CPU with a tiny budget")
    return parser


def main(argv: list[str] | None = None) -> int:
    from nnunet_sam_adapter.apps.gpu_check import (GpuCheckError, GpuCheckSettings, dry_run_lines, find_real_data,
                                                   run_gpu_check)

    args = build_parser().parse_args(argv)
    try:
        settings = GpuCheckSettings(find_real_data(args.data), Path(args.work), Path(args.docs), args.dataset_id,
                                    args.sam_checkpoint, args.cpu_smoke)
        if args.sam_checkpoint and not Path(args.sam_checkpoint).is_file():
            raise GpuCheckError(f"--sam-checkpoint {args.sam_checkpoint}: no such file")
        if args.dry_run:
            print("\n".join(dry_run_lines(settings)))
            return 0
        print(f"written: {run_gpu_check(settings)}")
        return 0
    except GpuCheckError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
