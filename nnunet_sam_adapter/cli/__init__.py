"""Console entry points (`nnUNetv2_sam_*`): one module per command, each parses and calls the library."""
