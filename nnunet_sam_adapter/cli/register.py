"""`nnUNetv2_sam_register`: register new cases to T2 and write them in nnU-Net naming for nnUNetv2_predict."""
import argparse

from nnunet_sam_adapter.cli.case_commands import add_case_options, run_case_command


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_sam_register",
        description="Rigidly register T1, T1ce and FLAIR of new cases to their T2 and write CASE_0000..0003.nii.gz "
                    "(T1, T1ce, T2, FLAIR on the T2 grid) into OUT, ready for nnUNetv2_predict. Input: BraTS case "
                    "folders or a flat folder in nnU-Net naming.")
    parser.add_argument("-i", dest="input", required=True, help="input folder")
    parser.add_argument("-o", dest="output", required=True,
                        help="output folder (flat, nnU-Net naming; new, empty, or made by this command)")
    add_case_options(parser, register_help="auto (default): register when a modality's grid or head mask differs "
                                           "from T2's",
                     skip_bad_help="register the good cases and list the bad ones")
    parser.add_argument("--allow-missing", action="store_true",
                        help="predict cases that lack modalities: each missing one is written as zeros on the "
                             "reference grid (T2's; without T2 the first present of FLAIR, T1ce, T1) and listed in "
                             "OUT/registration_reports/CASE.json. Models trained with modality dropout "
                             "(e.g. -tr SAMCrossModalMissingModalityTrainer) are made for this; others still predict")
    args = parser.parse_args(argv)

    from nnunet_sam_adapter.data.conversion import register_cases

    run_case_command("nnUNetv2_sam_register", "registered", register_cases, args, in_dir=args.input,
                     out_dir=args.output, allow_missing=args.allow_missing)


if __name__ == "__main__":
    main()
