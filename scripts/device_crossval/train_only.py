"""Run an `nnUNetv2_sam_benchmark` command, training only the named runs; every other run must already be
finished in -o (e.g. unpacked from a device machine whose nnU-Net results folder is gone, where the same
command would retrain them all). The report step then reads every finished run, as the command does.

    PYTHONPATH=. python scripts/device_crossval/train_only.py nnunet_2d/fold_2/seed_1 ours/fold_2/seed_1 -- \
        -d 502 --folds 0 1 2 --methods ours_plus nnunet_2d ours --seeds 2 ... -device cpu -o /tmp/gpu128/bench

Run names as the benchmark prints them: METHOD/fold_F, with /seed_K for seeds K >= 1.
"""
import sys

from nnunet_sam_adapter.benchmark import pipeline
from nnunet_sam_adapter.cli import benchmark


def main(argv: list[str]) -> None:
    if "--" not in argv:
        sys.exit(__doc__)
    split = argv.index("--")
    wanted, benchmark_args = set(argv[:split]), argv[split + 1:]
    run_specs = pipeline.run_specs

    def only_wanted(specs, options, layout):
        unknown = wanted - {spec.name for spec in specs}
        if unknown:
            sys.exit(f"train_only: {', '.join(sorted(unknown))} not among the command's runs")
        print("training only:", sorted(wanted), flush=True)
        return run_specs([spec for spec in specs if spec.name in wanted], options, layout)

    pipeline.run_specs = only_wanted
    benchmark.main(benchmark_args)


if __name__ == "__main__":
    main(sys.argv[1:])
