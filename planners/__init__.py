"""nnU-Net experiment planners for the SAM 2D configuration (installed as nnunet_sam_adapter.planners)."""
