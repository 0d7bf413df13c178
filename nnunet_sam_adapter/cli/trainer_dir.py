"""`nnUNetv2_sam_trainer_dir`: print the folder to put in nnU-Net's `nnUNet_extTrainer` env var."""
import os


def trainer_dir() -> str:
    """Folder holding SAMCrossModalTrainer and the baseline trainers."""
    import nnunet_sam_adapter.trainers as trainers

    return os.path.dirname(os.path.abspath(trainers.__file__))


def main() -> None:
    print(trainer_dir())
