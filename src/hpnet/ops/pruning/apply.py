"""Physical pruning: a smaller model without the pruned channels, equal to the masked model.

:func:`prune_physical` cuts the channels out of what the backbone's ``channel_dims`` name (the last
conv and its BatchNorm; for a ResNet also the residual connection of the last block) and, through
the head family's ``channel_dims``, out of every head parameter that reads them; :func:`masked_model`
is the same network with the channels zeroed by ``channel_keep`` instead; :func:`physical_report`
compares a model with its pruned version (params, MACs, latency, accuracy).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from ...core.stream import correct_counts, image_count, inference, median_latency, model_device, stream
from ...data.base import MultiLabelDataset
from ...errors import HPNetError
from ...model import HPNet, count_macs, count_parameters
from ...model.custom import MODULE


def prune_physical(model: HPNet, keep: Sequence[int] | torch.Tensor) -> HPNet:
    """A new, smaller HPNet holding only the channels ``keep`` of z (kept in ascending id order).

    Removed: the last conv's output filters, their BatchNorm entries (a ResNet's last block: also
    the channels of the identity it adds), the rows and columns of every A_k, the entries of a_k
    and w_k (attention heads) or the columns of the linear head. The transformation buffers are
    copied; the new ``channel_keep`` is the old one at ``keep``. In the model's mode, the result
    equals the masked model (zeros in ``channel_keep`` elsewhere). A module backbone that declares
    no ``last_conv`` is refused in one line (it can be pruned masked only).
    """
    index = keep_index(keep, model.config.channels)
    state = _sliced_state(model, index)           # one line when the backbone's channels cannot be removed
    config = model.config.pruned(len(index))
    own = copy.deepcopy(model.extractor.module) if config.backbone == MODULE else None   # not re-imported
    small = HPNet(config, own)
    small.load_tensors(state, "prune_physical")
    param = next(model.parameters())
    return small.to(device=param.device, dtype=param.dtype).train(model.training)


def prunable(model: HPNet) -> bool:
    """Whether the backbone's channels of z can be removed physically (a module backbone declaring
    no ``last_conv`` cannot: it is pruned masked)."""
    try:
        dims = model.extractor.channel_dims
    except HPNetError:
        return False
    return bool(dims)


def keep_index(keep: Sequence[int] | torch.Tensor, channels: int) -> torch.Tensor:
    index = torch.as_tensor(keep, dtype=torch.long).flatten().unique(sorted=True)
    if index.numel() != torch.as_tensor(keep).numel():
        raise HPNetError("kept channels: a channel id is listed twice")
    if index.numel() == 0:
        raise HPNetError("kept channels: keep at least one channel")
    if index[0] < 0 or index[-1] >= channels:
        raise HPNetError(f"kept channels must be ids in 0..{channels - 1}, got {index.tolist()}")
    return index


def _sliced_state(model: HPNet, index: torch.Tensor) -> dict[str, torch.Tensor]:
    """The model's state with channel dimensions of z cut to ``index``."""
    dims = {f"extractor.{name}": d for name, d in model.extractor.channel_dims.items()}
    dims["channel_keep"] = (0,)
    dims.update({f"heads.{name}": d for name, d in model.heads.channel_dims.items()})
    state = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        for d in dims.get(key, ()):
            value = value.index_select(d, index)
        state[key] = value.clone()
    return state


def physical_report(model: HPNet, kept: Sequence[int], data: MultiLabelDataset, batch_size: int = 64,
                    max_images: int | None = None, latency_images: int = 32, repeats: int = 5,
                    small: HPNet | None = None) -> dict:
    """Params, MACs, median latency of one batch and mean accuracy, before and after pruning.

    ``small`` is the pruned model (e.g. reconstructed); by default ``model`` pruned to ``kept``."""
    small = small if small is not None else prune_physical(model, kept)
    kept = sorted(int(c) for c in kept)
    device = model_device(model)
    x = next(stream(data, latency_images, device))[0]
    report = {"kept_channels": kept, "channels_before": model.config.channels,
              "channels_after": small.config.channels, "image_size": int(x.shape[-1]),
              "latency_batch": int(x.shape[0]), "latency_repeats": repeats}
    for tag, net in (("before", model), ("after", small)):
        with inference(net):
            report[f"latency_s_{tag}"] = median_latency(lambda: net(x), repeats)
        report[f"params_{tag}"] = count_parameters(net)
        report[f"macs_{tag}"] = count_macs(net, int(x.shape[-1]))
        report[f"accuracy_{tag}"] = mean_accuracy(net, data, batch_size, max_images)
    masked = masked_model(model, kept, small)
    with inference(masked), inference(small):
        diff = (small(x).logits - masked(x).logits).abs().max()
    report["max_abs_logit_diff_vs_masked"] = float(diff) if x.shape[0] else 0.0
    return report


def masked_model(model: HPNet, kept: Sequence[int], small: HPNet | None = None) -> HPNet:
    """A copy of ``model`` with the channels outside ``kept`` masked by ``channel_keep``; with
    ``small`` (a physically pruned, e.g. reconstructed, model) it carries ``small``'s classifiers
    at the kept channels, so that it gives ``small``'s logits."""
    index = keep_index(kept, model.config.channels)
    masked = copy.deepcopy(model)
    keep = torch.zeros_like(model.channel_keep)
    keep[index] = model.channel_keep[index]
    masked.set_channel_keep(keep)
    if small is not None:
        with torch.no_grad():
            masked.heads.weight.zero_()
            masked.heads.weight[:, index.to(masked.heads.weight.device)] = small.heads.weight.detach().to(
                masked.heads.weight)
            masked.heads.bias.copy_(small.heads.bias.detach())
    return masked


def mean_accuracy(model: HPNet, data: MultiLabelDataset, batch_size: int = 64,
                  max_images: int | None = None) -> float:
    """Accuracy averaged over attributes (the model's own forward pass)."""
    total = torch.zeros(model.config.num_attributes, dtype=torch.float64)
    with inference(model):
        for x, y in stream(data, batch_size, model_device(model), max_images):
            total += correct_counts(model(x).logits, y)
    return float(total.mean() / max(image_count(data, max_images), 1))
