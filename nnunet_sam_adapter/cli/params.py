"""`nnUNetv2_sam_params`: parameter counts of the cross-modality network, its 3D variant (ours_3d, beyond
the paper) and the SAM baselines (paper Table 3), with a per-part breakdown; built on the meta device, so it takes a second."""
from __future__ import annotations

import argparse
import json

from nnunet_sam_adapter.cli.errors import one_line_errors
from nnunet_sam_adapter.model.backbones import BACKBONE_NAMES
from nnunet_sam_adapter.model.parameters import millions
from nnunet_sam_adapter.reporting.parameters import method_parameter_reports

PARTS = ("image encoder", "stems", "adapters", "cross-slice adapters", "mask decoder", "prompt embedding")
PAPER_NOTE = (
    "Paper Table 3: ours 98M total / 10.80M trainable (11%); SAM (early fusion) 91M / 3.64M (4%).\n"
    "Our mask decoder has no IoU head (unused without prompts) and one mask token + hypernetwork MLP per "
    "output,\nso it has {decoder:.2f}M parameters with {k} outputs where SAM's full mask decoder has 4.06M; "
    "the rest matches\n(one frozen encoder shared by both streams, adapters 2c -> c after the first n blocks)."
)


def format_table(reports: dict[str, dict]) -> str:
    header = ["model", "total", "trainable", "%", *PARTS]
    rows = []
    for name, entry in reports.items():
        report, parts = entry["report"], entry["parts"]
        cells = [name, millions(report["total"]), millions(report["trainable"]), f"{report['percent']:.1f}"]
        for part in PARTS:
            count = parts[part]
            if count["total"] == 0:
                cells.append("-")
            else:
                cells.append(millions(count["total"]) + ("" if count["trainable"] else " (frozen)"))
        rows.append(cells)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nnUNetv2_sam_params", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="vit_b", choices=BACKBONE_NAMES)
    parser.add_argument("--input-size", type=int, default=256, help="SAM input resolution (paper: 256)")
    parser.add_argument("--adapter-depth", type=int, default=6, help="adapters after the first n blocks (paper: 6)")
    parser.add_argument("--num-classes", type=int, default=2,
                        help="segmentation outputs = mask tokens (default 2: background + tumour)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    with one_line_errors(parser.prog, extra=(ValueError,)):  # e.g. an input size the backbone cannot take
        reports = method_parameter_reports(args.backbone, args.input_size, args.adapter_depth, args.num_classes)
    decoder = next(iter(reports.values()))["parts"]["mask decoder"]["total"] / 1e6
    note = PAPER_NOTE.format(decoder=decoder, k=args.num_classes)
    if args.json:
        print(json.dumps({"backbone": args.backbone, "input_size": args.input_size,
                          "adapter_depth": args.adapter_depth, "num_classes": args.num_classes,
                          "models": reports, "note": note}, indent=2))
        return
    print(f"Parameters: backbone {args.backbone}, input {args.input_size}x{args.input_size}, "
          f"{args.adapter_depth} adapters, {args.num_classes} outputs\n")
    print(format_table(reports))
    print()
    print(note)


if __name__ == "__main__":
    main()
