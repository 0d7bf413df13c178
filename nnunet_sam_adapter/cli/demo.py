"""`nnUNetv2_sam_demo` (`make demo`): synthetic BraTS-like cases -> registration -> plans -> training of
ours and baselines -> validation -> Tables 1-3 and figures, on a CPU in minutes."""

from __future__ import annotations

import argparse
import time

from nnunet_sam_adapter.cli.errors import one_line_errors


def main(argv: list[str] | None = None) -> None:
    from nnunet_sam_adapter.apps.demo import DemoSettings

    defaults = DemoSettings()
    parser = argparse.ArgumentParser(prog="nnUNetv2_sam_demo", description=__doc__.split(": ", 1)[1])
    parser.add_argument("-o", default=defaults.work_dir,
                        help=f"work folder (default ./{defaults.work_dir}); nnU-Net's folders are created inside it")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help=f"default {defaults.epochs}")
    parser.add_argument("--iterations", type=int, default=defaults.iterations, help=f"default {defaults.iterations}")
    parser.add_argument("--methods", nargs="+", default=list(defaults.methods),
                        help=f"default: {' '.join(defaults.methods)} (any of nnUNetv2_sam_benchmark's)")
    parser.add_argument("-device", default=defaults.device, choices=("cpu", "cuda"))
    args = parser.parse_args(argv)

    from nnunet_sam_adapter.apps.demo import run_demo

    settings = DemoSettings(work_dir=args.o, epochs=args.epochs, iterations=args.iterations,
                            methods=tuple(args.methods), device=args.device)
    start = time.perf_counter()
    with one_line_errors(parser.prog):
        report = run_demo(settings)
    minutes = (time.perf_counter() - start) / 60
    print()
    print(report.tables_md)
    print(f"Encoder: {report.backbone} (pretrained LiteMedSAM weights: {report.weights}), frozen; input "
          f"{settings.input_size}x{settings.input_size}. Budget: {settings.epochs} epochs x {settings.iterations} "
          f"iterations per method on synthetic phantoms: the numbers show the pipeline works, they are not "
          f"the paper's results." if report.weights != "RANDOM" else
          f"Encoder: {report.backbone} with RANDOM weights: the numbers mean nothing.")
    print("Steps (s):", ", ".join(f"{k} {v}" for k, v in report.seconds.items()))
    print("Files:", *report.files.values(), sep="\n  ")
    print(f"Wall time: {minutes:.1f} min")


if __name__ == "__main__":
    main()
