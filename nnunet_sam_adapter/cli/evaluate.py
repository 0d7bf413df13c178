"""`nnUNetv2_sam_evaluate`: Dice and HD95 (volume and slice protocols) of a prediction folder."""
from __future__ import annotations

import argparse

from nnunet_sam_adapter.cli.errors import one_line_errors
from nnunet_sam_adapter.evaluation.folders import DEFAULT_OUTPUT_SUBDIR, evaluate_folders, format_summary_table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_sam_evaluate",
        description="Dice and HD95 (mm) per case and class of CASE.nii.gz predictions against references, "
        "volume-wise (BraTS style) and slice-wise (the paper's 2D protocol).",
    )
    parser.add_argument("-ref", required=True, help="folder of reference segmentations (e.g. labelsTr)")
    parser.add_argument("-pred", required=True, help="folder of predicted segmentations")
    parser.add_argument("-o", default=None, help=f"output folder (default: PRED/{DEFAULT_OUTPUT_SUBDIR})")
    parser.add_argument(
        "-djfile",
        default=None,
        help="dataset.json with the labels/regions and file_ending (default: PRED/dataset.json if present, "
        "else every non-zero label found in the references)",
    )
    parser.add_argument("-np", type=int, default=1, help="number of worker processes (default: 1)")
    parser.add_argument(
        "--allow_missing",
        action="store_true",
        help="evaluate the cases present in both folders instead of failing on missing or extra cases",
    )
    parser.add_argument("--slice_axis", type=int, default=0, help="numpy axis of the slice protocol (default 0 = z)")
    args = parser.parse_args(argv)
    with one_line_errors("nnUNetv2_sam_evaluate", exit_code=2):
        summary = evaluate_folders(
            args.ref,
            args.pred,
            output_dir=args.o,
            dataset_json=args.djfile,
            num_processes=args.np,
            allow_missing=args.allow_missing,
            slice_axis=args.slice_axis,
        )
    print(format_summary_table(summary))
    output = args.o or f"{args.pred}/{DEFAULT_OUTPUT_SUBDIR}"
    print(f"{len(summary['cases'])} cases; per-case and per-slice CSVs and summary written to {output}")


if __name__ == "__main__":
    main()
