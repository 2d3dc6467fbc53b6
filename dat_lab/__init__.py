"""dat-lab: the ablation and research framework for the Deformable Attention Transformer."""

__version__ = "0.1.0"
