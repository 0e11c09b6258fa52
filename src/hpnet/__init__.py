"""hpnet: human-predictable neural networks.

The network (``HPNet``), its two operations (semantic channel pruning, attention mask
transformation) and the analyses of the paper, as library functions; :mod:`hpnet.commands` holds
every command of the ``hpnet`` command line as a function. Importing this package loads neither the
trainer nor the commands.
"""
from .analysis.correlation import channel_correlation, contribution_correlation
from .core.tone import mask_transform
from .errors import HPNetError
from .model import HPNet, ModelConfig

__version__ = "0.1.0"
__all__ = ["HPNet", "HPNetError", "ModelConfig", "channel_correlation", "contribution_correlation",
           "mask_transform"]
