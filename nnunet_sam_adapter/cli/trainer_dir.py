"""`nnUNetv2_sam_trainer_dir`: print the folder to put in nnU-Net's `nnUNet_extTrainer` env var."""
from nnunet_sam_adapter.paths import trainer_dir


def main() -> None:
    print(trainer_dir())
