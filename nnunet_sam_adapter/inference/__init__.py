"""Whole-volume inference: `BatchedTilePredictor`, nnU-Net's predictor with several sliding-window tiles (and
their mirrored copies) per network forward (issue #21; docs/inference.md)."""

from nnunet_sam_adapter.inference.batched_predictor import DEFAULT_TILES_PER_BATCH, BatchedTilePredictor  # noqa: F401
