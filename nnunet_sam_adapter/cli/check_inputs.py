"""`nnUNetv2_sam_check_inputs`: check a folder of nnU-Net inputs before `nnUNetv2_predict` (data/input_check.py)."""
from __future__ import annotations

import argparse
import sys

PROG = "nnUNetv2_sam_check_inputs"


def check_or_exit(prog: str, folder: str, dataset: str | None,
                  dataset_json_file: str | None = None) -> tuple[list, dict]:
    """(case IDs, dataset.json) of a good input folder; else one `prog: error:` line per problem and exit 1."""
    from nnunet_sam_adapter.cli.errors import one_line_errors
    from nnunet_sam_adapter.data.input_check import check_input_folder, load_dataset_json

    with one_line_errors(prog):
        dataset_json, _ = load_dataset_json(dataset, dataset_json_file)
        cases, problems = check_input_folder(folder, dataset_json)
    for problem in problems:
        print(f"{prog}: error: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    return cases, dataset_json


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Check every case of an nnU-Net input folder (CASE_0000..000N per dataset.json's channel_names "
                    "and file_ending) before nnUNetv2_predict: every channel present, readable completely and on the "
                    "same grid. One line per problem naming the case and the file; exit 1 when there is any.")
    parser.add_argument("-i", dest="input", required=True, help="input folder of nnUNetv2_predict")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("-d", dest="dataset", help="dataset ID or name (its dataset.json in $nnUNet_raw, "
                                                   "$nnUNet_preprocessed or $nnUNet_results)")
    source.add_argument("-djfile", help="a dataset.json (e.g. the one next to a trained model's fold folders)")
    args = parser.parse_args(argv)

    cases, dataset_json = check_or_exit(PROG, args.input, args.dataset, args.djfile)
    print(f"{len(cases)} case(s) in {args.input}: {len(dataset_json['channel_names'])} channels each, complete and on "
          f"one grid")


if __name__ == "__main__":
    main()
