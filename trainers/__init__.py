"""nnUNet_extTrainer folder: SAM trainers (also installed as nnunet_sam_adapter.trainers)."""
