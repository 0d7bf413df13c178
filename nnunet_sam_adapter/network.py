"""Old location of the network classes, kept because plans written before the move to `model/` name
`nnunet_sam_adapter.network.SAMCrossModalNetwork` as their network class (nnU-Net resolves that path
with pydoc.locate at train and predict time)."""

from nnunet_sam_adapter.model.network import SAMCrossModalNetwork, SAMSingleStreamNetwork  # noqa: F401
