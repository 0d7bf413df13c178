"""`nnUNetv2_sam_predict`: nnU-Net's `nnUNetv2_predict` (same arguments, same outputs) with our
`BatchedTilePredictor`, i.e. several sliding-window tiles per network forward (docs/inference.md).

One option of ours, read and removed before nnU-Net parses the rest:
  --tiles-per-batch N   tiles per network forward (whole number >= 1; default: DEFAULT_TILES_PER_BATCH)
"""
from __future__ import annotations

import argparse
import sys

from nnunetv2.inference import predict_from_raw_data

from nnunet_sam_adapter.inference.batched_predictor import (DEFAULT_TILES_PER_BATCH, BatchedTilePredictor,
                                                            check_tiles_per_batch)

PROG = "nnUNetv2_sam_predict"
OPTION = "--tiles-per-batch"
OPTION_HELP = (f"{PROG}: nnUNetv2_predict's options (below) plus\n  {OPTION} N  tiles per network forward "
               f"(whole number >= 1, default {DEFAULT_TILES_PER_BATCH}); mirrored copies go in the same forward\n")


def split_tiles_per_batch(argv: list[str]) -> tuple[int, list[str]]:
    """(tiles per batch, argv without `--tiles-per-batch N` / `--tiles-per-batch=N`); ValueError on a bad value."""
    rest, value = [], None
    args = iter(argv)
    for arg in args:
        if arg == OPTION:
            value = next(args, None)
            if value is None:
                raise ValueError(f"{OPTION} expects a value (a whole number >= 1)")
        elif arg.startswith(OPTION + "="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    if value is None:
        return DEFAULT_TILES_PER_BATCH, rest
    try:
        return check_tiles_per_batch(value), rest
    except ValueError:
        raise ValueError(f"{OPTION} expects a whole number >= 1, got {value!r}") from None


class CommandLinePredictor(BatchedTilePredictor):
    """BatchedTilePredictor whose constructor defaults to the command's --tiles-per-batch (nnU-Net's entry point
    constructs the predictor with nnUNetPredictor's arguments only). Module level, so it pickles like nnU-Net's."""

    tiles_per_batch_from_command = DEFAULT_TILES_PER_BATCH

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("tiles_per_batch", type(self).tiles_per_batch_from_command)
        super().__init__(*args, **kwargs)


def _inputs(argv: list[str]) -> tuple[str | None, str | None]:
    """(-i, -d) as nnU-Net's argparse reads them (`-d 501`, `-d501`, `-d=501`); `-device` is declared so that it
    is not read as `-d evice`, every other option is left to nnU-Net."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    for flag in ("-i", "-d", "-device"):
        parser.add_argument(flag)
    try:
        known, _ = parser.parse_known_args(argv)
    except argparse.ArgumentError:
        return None, None  # e.g. `-d` without a value: nnU-Net's own parser names it
    return known.i, known.d


def refuse_bad_inputs(argv: list[str]) -> None:
    """Checks nnU-Net's `-i` folder against `-d`'s dataset.json first (`nnUNetv2_sam_check_inputs`): nnU-Net's reader
    predicts on a truncated .nii.gz without a word (measured on a real case: exit 0). One line per problem, exit 1."""
    folder, dataset = _inputs(argv)
    if folder is None or dataset is None:
        return  # nnU-Net's argparse names what is missing
    from nnunet_sam_adapter.cli.check_inputs import check_or_exit

    check_or_exit(PROG, folder, dataset)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        tiles_per_batch, rest = split_tiles_per_batch(argv)
    except ValueError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        sys.exit(2)
    if "-h" in rest or "--help" in rest:
        print(OPTION_HELP)
    else:
        refuse_bad_inputs(rest)

    # nnU-Net's predict_entry_point has no option for the predictor class: it builds the one its module global
    # `nnUNetPredictor` names when it runs. Substituting that attribute (for this call, in this process; restored
    # after) makes it build ours while its argparse, checks, model-folder loading and export stay nnU-Net's, so
    # the command cannot drift from nnUNetv2_predict. Prediction runs in this process (nnU-Net's workers only
    # preprocess and export), so no other process needs the substitution.
    stock_class, stock_argv = predict_from_raw_data.nnUNetPredictor, sys.argv
    CommandLinePredictor.tiles_per_batch_from_command = tiles_per_batch
    predict_from_raw_data.nnUNetPredictor = CommandLinePredictor
    sys.argv = [PROG, *rest]  # nnU-Net's entry point parses sys.argv
    try:
        predict_from_raw_data.predict_entry_point()
    finally:
        predict_from_raw_data.nnUNetPredictor, sys.argv = stock_class, stock_argv


if __name__ == "__main__":
    main()
