"""hpnet: human-predictable neural networks.

The network (``HPNet``), its two operations (semantic channel pruning, attention mask
transformation) and the analyses of the paper, as library functions; ``hpnet`` is the command line.
"""
from .analysis.correlation import channel_correlation, contribution_correlation
from .errors import HPNetError
from .model import HPNet, ModelConfig
from .ops.transform import mask_transform

__version__ = "0.1.0"
__all__ = ["HPNet", "HPNetError", "ModelConfig", "channel_correlation", "contribution_correlation",
           "mask_transform"]
