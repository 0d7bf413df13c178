"""`nnUNetv2_sam_benchmark`: train (or reuse), validate and evaluate the paper's methods and baselines on
one fold, and write Tables 1-3, metrics.png and overlays.png."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    from nnunet_sam_adapter.methods import DEFAULT_METHODS, METHODS, OPTIONAL_METHODS

    parser = argparse.ArgumentParser(
        prog="nnUNetv2_sam_benchmark", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        epilog="Needs the SAM plans (nnUNetv2_sam_plan_and_preprocess -d ID ...) and, for the stock baselines, "
               "nnUNetPlans (add --stock 2d [3d_fullres]). Runs trained with nnUNetv2_train are reused.")
    parser.add_argument("-d", required=True, help="dataset id or name")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), metavar="METHOD",
                        help=f"default: {' '.join(DEFAULT_METHODS)}; also: {' '.join(OPTIONAL_METHODS)}; "
                             f"'all' = every method")
    parser.add_argument("-f", type=int, default=0, help="fold (default 0): its validation cases are evaluated")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the trainer's, 1000)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="training iterations per epoch (default: the trainer's, 250)")
    parser.add_argument("-o", default=None, help="output folder (default: $nnUNet_results/DATASET/sam_benchmark/fold_F)")
    parser.add_argument("-device", default="cuda", choices=("cpu", "cuda"), help="default cuda (as nnUNetv2_train)")
    parser.add_argument("--retrain", action="store_true", help="retrain even where a finished run exists")
    parser.add_argument("--no-mirroring", action="store_true",
                        help="validation without test-time mirroring (4x faster in 2d, nnU-Net mirrors by default)")
    parser.add_argument("--overlay-cases", type=int, default=3, help="cases in overlays.png (default 3; 0: none)")
    parser.add_argument("-np", type=int, default=1, help="processes for the evaluation (default 1)")
    args = parser.parse_args(argv)

    methods = list(METHODS) if args.methods == ["all"] else args.methods
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)} or 'all'")

    from nnunet_sam_adapter.benchmark.runner import BenchmarkError, Budget, run_benchmark

    try:
        results = run_benchmark(args.d, methods, args.f, Budget(args.epochs, args.iterations), args.o, args.device,
                                args.retrain, not args.no_mirroring, args.overlay_cases, args.np)
    except BenchmarkError as error:
        sys.exit(f"nnUNetv2_sam_benchmark: error: {error}")
    with open(results["tables"]["tables.md"]) as f:
        print(f.read())
    print("Written:", *results["tables"].values(), *results["figures"].values(), sep="\n  ")


if __name__ == "__main__":
    main()
