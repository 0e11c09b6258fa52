"""A backbone's weights from a file: a torchvision or timm ResNet state dict, or any extractor's own.

``hpnet train --backbone-weights FILE`` (``TrainConfig.backbone_weights``) starts training from
them. The file is safetensors, or a PyTorch file read with ``torch.load(weights_only=True)``, which
rebuilds tensors and containers but never runs pickled code; a checkpoint holding the weights under
``"state_dict"`` or ``"model"`` is unwrapped. Names are the extractor's own: for the ResNets
torchvision's (``conv1.weight``, ``layer4.1.bn2.running_var``, ...), for a module backbone the
module's. ``fc.*``, the ImageNet classifier, is ignored (hpnet's heads replace it); every other key
must be a parameter or buffer of the backbone with its shape, and every one of those must be there
except BatchNorm's ``num_batches_tracked`` and the ResNet's ``identity_index`` (hpnet's own: which
residual channels the last block keeps), which keep their values. The first key or shape that does
not fit is refused in one line naming it.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ..errors import HPNetError
from ..io import load_tensors
from .custom import ModuleExtractor

IGNORED = ("fc.",)                                       # the ImageNet classifier
OPTIONAL = ("num_batches_tracked", "identity_index")     # kept as they are when absent


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors or PyTorch (weights_only) file, by name."""
    path = Path(path)
    if not path.is_file():
        raise HPNetError(f"--backbone-weights {path}: file not found")
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{":              # safetensors: a header length, then JSON
        return load_tensors(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:     # UnpicklingError (code refused), zip and EOF errors, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise HPNetError(f"--backbone-weights {path}: neither safetensors nor a PyTorch file of tensors that "
                         f"loads with weights_only=True ({first[:160]})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise HPNetError(f"--backbone-weights {path}: holds a {type(state).__name__}, not a state dict of tensors")
    bad = next((k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise HPNetError(f"--backbone-weights {path}: {bad!r} is not a tensor of a state dict")
    return state


def weights_target(extractor: nn.Module) -> nn.Module:
    """The module whose names a backbone's weights use (a module backbone's: the user's module)."""
    return extractor.module if isinstance(extractor, ModuleExtractor) else extractor


def fitted_state(state: dict[str, torch.Tensor], extractor: nn.Module, path: str | Path,
                 backbone: str) -> dict[str, torch.Tensor]:
    """The state ``extractor`` loads from ``state``: every key checked, the optional ones filled in
    from the extractor's own; one line naming the first key or shape that does not fit."""
    own = weights_target(extractor).state_dict()
    where = f"--backbone-weights {path}"
    unexpected = next((k for k in state if not k.startswith(IGNORED) and k not in own), None)
    if unexpected is not None:
        raise HPNetError(f"{where}: unexpected key {unexpected!r}: the {backbone} backbone has no such parameter "
                         f"or buffer (fc.* is ignored)")
    for key, mine in own.items():            # in the network's order: the first misfit is named
        if key not in state:
            if not key.endswith(OPTIONAL):
                raise HPNetError(f"{where}: key {key!r} of the {backbone} backbone is missing")
        elif state[key].shape != mine.shape:
            raise HPNetError(f"{where}: {key!r} has shape {tuple(state[key].shape)}, the {backbone} backbone of "
                             f"this config needs {tuple(mine.shape)}")
    return {key: state.get(key, mine) for key, mine in own.items()}


def load_backbone_weights(model: nn.Module, path: str | Path) -> None:
    """Load the backbone weights in ``path`` into ``model.extractor`` (an HPNet's), checked."""
    target = weights_target(model.extractor)
    state = fitted_state(read_state(path), model.extractor, path, model.config.backbone)
    with torch.no_grad():
        target.load_state_dict(state)
