"""nnU-Net v2 plugin: glioma segmentation with a frozen SAM image encoder and cross-modality adapters.

Method: Shi et al., "Cross-modality Attention Adapter: A Glioma Segmentation Fine-tuning Method for SAM
Using Multimodal Brain MR Images" (see DESIGN.md for how we read it).
"""

__version__ = "0.1.0"
