"""Your own backbone: any ``nn.Module`` mapping images (B, 3, S, S) to features z (B, C, H, W).

``HPNet.from_backbone(module, channels, attributes, head=...)`` makes it the backbone ``module``:
:class:`ModuleExtractor` holds the module itself (not a copy) as ``extractor.module``. The config
records how to rebuild it, ``module`` = "package.module:Class" (the module's class) and
``module_kwargs`` (the JSON keywords of ``Class(**module_kwargs)``), so that a run folder reopens
(``Run.open(path).model()``, every command) wherever that class can be imported; its weights are
saved in model.safetensors as any model's. Rebuilding imports that Python module, and only calls
the name when it is an ``nn.Module`` subclass.

Physical pruning needs the module to declare the conv producing z: an attribute or property
``last_conv``, an ``nn.Conv2d`` (groups 1) with C output channels, and optionally ``last_norm``,
the ``nn.BatchNorm2d`` after it. What follows them must act on each channel alone (an activation),
as in hpnet's own backbones. Without ``last_conv``, channels are pruned by masking only
(``channel_keep``), and the L1-magnitude order, which reads that conv's filters, is skipped.
"""
from __future__ import annotations

import importlib
import json

import torch
import torch.nn as nn

from ..errors import HPNetError

MODULE = "module"


def import_path(module: nn.Module) -> str:
    """"package.module:Class" of ``module``'s class."""
    cls = type(module)
    return f"{cls.__module__}:{cls.__qualname__}"


def build_module(path: str, kwargs: dict) -> nn.Module:
    """``Class(**kwargs)`` for the class at ``path``; one line when it cannot be imported or built."""
    name, _, qualname = path.partition(":")
    try:
        cls = importlib.import_module(name)
        for part in qualname.split("."):
            cls = getattr(cls, part)
    except Exception as e:          # ImportError, AttributeError, or whatever the import raised
        raise HPNetError(f"the backbone module {path!r} cannot be imported ({type(e).__name__}: {e}); "
                         f"make its package importable (e.g. on PYTHONPATH) to rebuild this model") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise HPNetError(f"the backbone module {path!r} is not an nn.Module class")
    try:
        module = cls(**kwargs)
    except Exception as e:
        raise HPNetError(f"the backbone module {path}(**{kwargs}) could not be built "
                         f"({type(e).__name__}: {e})") from None
    return module


def check_module(config) -> None:
    """One line for a config that cannot describe a module backbone."""
    name, _, qualname = config.module.partition(":") if isinstance(config.module, str) else ("", "", "")
    if not name or not qualname:
        raise HPNetError(f"--backbone module needs the module's class as \"package.module:Class\" (model config "
                         f"\"module\", set by HPNet.from_backbone), got {config.module!r}")
    try:
        json.dumps(config.module_kwargs, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise HPNetError(f"model config: module_kwargs must be JSON (numbers, text, lists, objects): {e}") from None
    if len(config.widths) != 1:
        raise HPNetError(f"a module backbone has one width, its C feature channels; got widths {list(config.widths)}")
    if config.head == "context":
        raise HPNetError("--head context reads the features before the last block, which a module backbone "
                         "does not give; use attention, channel or linear heads")


class ModuleExtractor(nn.Module):
    """f_f: a user's module (``module``, or the one ``config`` names), checked to give C channels."""

    def __init__(self, config, module: nn.Module | None = None):
        super().__init__()
        self.module = module if module is not None else build_module(config.module, config.module_kwargs)
        self.channels = config.widths[-1]
        conv = self.last_conv
        if config.pruned_to:             # (a module given here may be a copy of a pruned one)
            self._keep_outputs(config.pruned_to)
        elif conv is not None and conv.out_channels != self.channels:
            raise HPNetError(f"the backbone module's last_conv has {conv.out_channels} output channels, "
                             f"but it was said to give {self.channels}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.module(x)
        if not isinstance(z, torch.Tensor) or z.dim() != 4 or z.shape[1] != self.channels:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise HPNetError(f"the backbone module gave {shape}; it must give (B, {self.channels}, H, W)")
        return z

    @property
    def last_conv(self) -> nn.Conv2d | None:
        conv = getattr(self.module, "last_conv", None)
        if conv is not None and not isinstance(conv, nn.Conv2d):
            raise HPNetError(f"the backbone module's last_conv must be an nn.Conv2d, got {type(conv).__name__}")
        return conv

    @property
    def last_norm(self) -> nn.BatchNorm2d | None:
        norm = getattr(self.module, "last_norm", None)
        if norm is not None and not isinstance(norm, nn.BatchNorm2d):
            raise HPNetError(f"the backbone module's last_norm must be an nn.BatchNorm2d, got {type(norm).__name__}")
        return norm

    @property
    def channel_dims(self) -> dict[str, tuple[int, ...]]:
        """Its parameters and buffers indexed by the channels of z (one line when it declares no conv
        producing them, so that they cannot be removed)."""
        conv, norm = self._prunable()
        dims = {}
        for name, m in self.named_modules(remove_duplicate=False):
            if m is conv or m is norm:
                dims.update({f"{name}.{key}": (0,) for key, _ in m.named_parameters(recurse=False)})
                dims.update({f"{name}.{key}": (0,) for key, b in m.named_buffers(recurse=False) if b.dim() == 1})
        return dims

    def macs(self, image_size: int) -> tuple[int, int]:
        return conv_macs(self, image_size)

    def _prunable(self) -> tuple[nn.Conv2d, nn.BatchNorm2d | None]:
        conv = self.last_conv
        if conv is None:
            raise HPNetError(f"the backbone module {import_path(self.module)} declares no last_conv, so its "
                             f"channels cannot be removed physically; prune them masked (channel_keep)")
        if conv.groups != 1:
            raise HPNetError("the backbone module's last_conv is grouped (groups > 1): its channels cannot be "
                             "removed alone; prune them masked (channel_keep)")
        return conv, self.last_norm

    def _keep_outputs(self, n: int) -> None:
        """Give the last conv (and norm) ``n`` output channels (the shapes of a pruned module; its
        weights are loaded after)."""
        conv, norm = self._prunable()
        _replace(self, conv, nn.Conv2d(conv.in_channels, n, conv.kernel_size, conv.stride, conv.padding,
                                       conv.dilation, 1, conv.bias is not None, conv.padding_mode))
        if norm is not None:
            _replace(self, norm, nn.BatchNorm2d(n, norm.eps, norm.momentum, norm.affine, norm.track_running_stats))
        self.channels = n


def _replace(root: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Put ``new`` wherever ``old`` is registered under ``root``."""
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if child is old:
                setattr(parent, name, new)


def conv_macs(module: nn.Module, image_size: int) -> tuple[int, int]:
    """(multiply-accumulates of the convs and linear layers of ``module`` on one image of
    ``image_size``, the side of its output map), counted by running it once in eval mode."""
    total = [0]

    def count(m: nn.Module, inputs, out: torch.Tensor) -> None:
        per_output = (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1] \
            if isinstance(m, nn.Conv2d) else m.in_features
        total[0] += out[0].numel() * per_output

    hooks = [m.register_forward_hook(count) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    param = next(module.parameters(), None)
    x = torch.zeros(1, 3, image_size, image_size, device=param.device if param is not None else "cpu")
    training = module.training
    try:
        with torch.no_grad():
            z = module.eval()(x)
    finally:
        module.train(training)
        for hook in hooks:
            hook.remove()
    return total[0], int(z.shape[-1])
