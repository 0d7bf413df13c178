"""`nnUNetv2_sam_register`: register new cases to T2 and write them in nnU-Net naming for nnUNetv2_predict."""
import argparse
import sys

from nnunet_sam_adapter.cli.convert_brats import _default_processes, print_summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_sam_register",
        description="Rigidly register T1, T1ce and FLAIR of new cases to their T2 and write CASE_0000..0003.nii.gz "
                    "(T1, T1ce, T2, FLAIR on the T2 grid) into OUT, ready for nnUNetv2_predict. Input: BraTS case "
                    "folders or a flat folder in nnU-Net naming.")
    parser.add_argument("-i", dest="input", required=True, help="input folder")
    parser.add_argument("-o", dest="output", required=True, help="output folder (flat, nnU-Net naming)")
    parser.add_argument("--register", choices=("auto", "always", "never"), default="auto",
                        help="auto (default): register when a modality's grid or head mask differs from T2's")
    parser.add_argument("-np", dest="num_processes", type=int, default=None,
                        help="parallel cases (default: nnU-Net's default_num_processes, at most the CPU count)")
    parser.add_argument("--skip-bad", action="store_true", help="register the good cases and list the bad ones")
    args = parser.parse_args(argv)

    from nnunet_sam_adapter.data.conversion import ConversionError, register_cases

    try:
        summary = register_cases(args.input, args.output, register=args.register,
                                 num_processes=args.num_processes or _default_processes(), skip_bad=args.skip_bad)
    except ConversionError as error:
        sys.exit(f"nnUNetv2_sam_register: error: {error}")
    print_summary(summary, "registered")


if __name__ == "__main__":
    main()
