"""What `nnUNetv2_sam_convert_brats` and `nnUNetv2_sam_register` share: the per-case options, running the
conversion with one-line errors, and the summary they print."""
from __future__ import annotations

import argparse
import os
import sys

from nnunet_sam_adapter.cli.errors import one_line_errors


def default_processes() -> int:
    """nnU-Net's default_num_processes, at most the CPU count."""
    from nnunetv2.configuration import default_num_processes

    return max(1, min(default_num_processes, os.cpu_count() or 1))


def add_case_options(parser: argparse.ArgumentParser, register_help: str, skip_bad_help: str) -> None:
    """--register, -np and --skip-bad."""
    parser.add_argument("--register", choices=("auto", "always", "never"), default="auto", help=register_help)
    parser.add_argument("-np", dest="num_processes", type=int, default=None,
                        help="parallel cases (default: nnU-Net's default_num_processes, at most the CPU count)")
    parser.add_argument("--skip-bad", action="store_true", help=skip_bad_help)
    parser.add_argument("--keep-poor-registration", action="store_true",
                        help="keep a modality that matches T2 poorly after resampling or registration (alignment "
                             "NMI below the calibrated threshold: wrong orientation header, another patient, failed "
                             "registration) and flag it in its report; default: refuse the case")


def print_summary(summary, verb: str, prog: str = "") -> None:
    print(f"{summary.output_dir}: {len(summary.converted)} {verb}, {len(summary.up_to_date)} already up to date, "
          f"{len(summary.skipped)} skipped")
    for error in summary.skipped:
        print(f"  skipped {error}")
    if summary.skipped_file:
        print(f"skipped cases listed in {summary.skipped_file}")
    for case, modality, alignment in getattr(summary, "flagged", None) or []:
        print(f"{prog}: warning: case {case}: {modality} kept with --keep-poor-registration: alignment NMI "
              f"{alignment['nmi']:.4f} < threshold {alignment['threshold']:.3f} (flagged in its report)", file=sys.stderr)
    if getattr(summary, "removed", None):
        print(f"removed {len(summary.removed)} case(s) no longer in the input: {', '.join(summary.removed)}")


def run_case_command(prog: str, verb: str, function, args: argparse.Namespace, **kwargs) -> None:
    """``function(..., register=, num_processes=, skip_bad=)`` with one-line errors, then the summary."""
    with one_line_errors(prog):
        summary = function(**kwargs, register=args.register, skip_bad=args.skip_bad,
                           num_processes=args.num_processes or default_processes(),
                           keep_poor_registration=args.keep_poor_registration,
                           warn=lambda warning: print(f"{prog}: warning: {warning}", file=sys.stderr))
    print_summary(summary, verb, prog)
