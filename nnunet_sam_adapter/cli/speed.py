"""`nnUNetv2_sam_speed`: training / inference throughput and peak memory of the SAM networks against
stock nnU-Net 2d (issue 5); writes a Markdown table and JSON, optionally docs/performance.md."""
from __future__ import annotations

import argparse

from nnunet_sam_adapter.cli.errors import one_line_errors
from nnunet_sam_adapter.model.backbones import BACKBONE_NAMES
from nnunet_sam_adapter.paths import load_json
from nnunet_sam_adapter.speed.report import render_saved_report
from nnunet_sam_adapter.speed.runner import run_speed_benchmark
from nnunet_sam_adapter.speed.variants import SpeedSettings
from nnunet_sam_adapter.speed.whole_volume import (WholeVolumeError, parse_row, run_whole_volume_benchmark,
                                                    write_whole_volume_outputs)


def main(argv: list[str] | None = None) -> None:
    defaults = SpeedSettings()
    parser = argparse.ArgumentParser(prog="nnUNetv2_sam_speed", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    parser.add_argument("--backbone", default=defaults.backbone, choices=BACKBONE_NAMES)
    parser.add_argument("--input-size", type=int, default=defaults.input_size)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--adapter-depth", type=int, default=defaults.adapter_depth)
    parser.add_argument("--slices", type=int, default=defaults.slices,
                        help="ours_3d row: slices per stack (stacks = max(1, batch // slices))")
    parser.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps)
    parser.add_argument("--train-steps", type=int, default=defaults.train_steps, help="timed training steps")
    parser.add_argument("--infer-steps", type=int, default=defaults.infer_steps, help="timed inference steps")
    parser.add_argument("--device", default=defaults.device, help="auto (cuda if available, else cpu), cpu, cuda, cuda:1")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    compile_group = parser.add_mutually_exclusive_group()
    compile_group.add_argument("--compile", dest="include_compile", action="store_true", default=None,
                               help="include the torch.compile row (default: on CUDA only; minutes on CPU)")
    compile_group.add_argument("--no-compile", dest="include_compile", action="store_false")
    parser.add_argument("--only", nargs="+", default=None, metavar="KEY",
                        help="run only these variants (two_passes batched sdpa folded low_precision low_precision_alt "
                        "checkpointing compiled early_fusion nnunet ours_3d); the first is the reference of the ratios")
    parser.add_argument("--variant-timeout", type=int, default=defaults.variant_timeout_s, help="seconds per variant")
    parser.add_argument("-o", "--output", default="speed_results", help="folder for speed.json and speed.md")
    parser.add_argument("--docs", default=None, help="also save the report beside this page as its device's section "
                        "(performance.json / performance_gpu.json) and re-render the page (docs/performance.md)")
    parser.add_argument("--from-json", default=None, metavar="SPEED_JSON",
                        help="do not measure: re-render the tables (and --docs) from a saved speed.json")
    parser.add_argument("--whole-volume", nargs="+", default=None, metavar="METHOD:DATASET",
                        help="instead of the throughput table: nnUNetv2_predict on one whole volume of each planned "
                        "dataset (e.g. ours:601 ours_plus:601 nnunet_2d:601 nnunet_3d_fullres:601 ours:602; "
                        "ours:601:nnUNetv2_sam_predict: with our batched-tile predictor), "
                        "with untrained weights, nnU-Net's folders from the environment")
    parser.add_argument("--case", default=None, help="--whole-volume: the case of imagesTr to predict (default: the first)")
    parser.add_argument("--no-mirroring-run", action="store_true",
                        help="--whole-volume: skip the runs with mirroring (test-time augmentation)")
    parser.add_argument("--no-profile", action="store_true", help="--whole-volume: skip the time split")
    parser.add_argument("--append", action="store_true",
                        help="--whole-volume: keep the other rows of OUTPUT/whole_volume.json (a row measured again "
                        "replaces its old result)")
    parser.add_argument("--note", action="append", default=[],
                        help="--whole-volume: a sentence printed under the table (e.g. what else ran)")
    args = parser.parse_args(argv)
    if args.whole_volume:
        with one_line_errors(parser.prog, extra=(ValueError, WholeVolumeError)):
            rows = [parse_row(text) for text in args.whole_volume]
            earlier = None
            if args.append:
                earlier = load_json(f"{args.output}/whole_volume.json")
                if earlier is None:
                    raise WholeVolumeError(f"--append: no readable {args.output}/whole_volume.json to add rows to")
            report = run_whole_volume_benchmark(rows, args.output, args.case,
                                                (False,) if args.no_mirroring_run else (False, True),
                                                not args.no_profile, earlier=earlier)
            report["notes"] = (earlier or {}).get("notes", []) + args.note
            write_whole_volume_outputs(report, args.output, args.docs)
        print(open(f"{args.output}/whole_volume.md").read())
        print(f"written: {args.output}/whole_volume.json, {args.output}/whole_volume.md"
              + (f", {args.docs}" if args.docs else ""))
        return
    with one_line_errors(parser.prog, extra=(ValueError,)):  # SpeedSettings refuses bad values with ValueError
        settings = SpeedSettings(
            backbone=args.backbone, input_size=args.input_size, batch_size=args.batch_size, slices=args.slices,
            adapter_depth=args.adapter_depth, warmup_steps=args.warmup_steps, train_steps=args.train_steps,
            infer_steps=args.infer_steps, device=args.device, include_compile=args.include_compile,
            variant_timeout_s=args.variant_timeout, threads=args.threads,
            only=tuple(args.only) if args.only else None)
        if args.from_json:
            render_saved_report(args.from_json, args.output, args.docs)
        else:
            run_speed_benchmark(settings, args.output, args.docs)
        print(open(f"{args.output}/speed.md").read())
        print(f"written: {args.output}/speed.json, {args.output}/speed.md" + (f", {args.docs}" if args.docs else ""))


if __name__ == "__main__":
    main()
