"""One network of a workbench: the features of the evaluation subset cached, and its view.

Every measurement is the heads-only function of a perturbation (``op.heads`` or the heads under the
composed operation state) run once over the cached features z; what a person is shown is the
network's :class:`~hpnet.operations.View` (read on other images than those measured).
"""
from __future__ import annotations

import torch

from ..core.stream import inference, stream
from ..data.base import MultiLabelDataset
from ..model import HPNet
from ..operations import HeadsFn, read_view
from ..run import Run


class Network:
    """A network named ``name`` (``Run.network_name``), its cached features and logits, and its view."""

    def __init__(self, name: str, model: HPNet, data: MultiLabelDataset, views: MultiLabelDataset,
                 images: int, usage_images: int, batch_size: int, run: Run | None = None):
        self.name, self.model, self.run = name, model.eval(), run
        zs, contexts = [], []
        with inference(model):
            for x, _ in stream(data, batch_size, torch.device("cpu"), images):
                z, context = model.encode(x)
                zs.append(z.contiguous())
                contexts.append(context)
        self.z = torch.cat(zs)
        self.context = torch.cat(contexts) if contexts[0] is not None else None
        self.logits = self.heads_on_cache(lambda z, context: model.heads(z, context)[0])   # as every measurement
        self.view = read_view(model, views, name, usage_images, batch_size)
        self.own = model.operation_state()
        K = model.config.num_attributes
        std = self.logits.std(0) if self.logits.shape[0] > 1 else torch.ones(K, dtype=torch.float64)
        self.logit_std = torch.where(std > 0, std, torch.ones_like(std))

    @property
    def has_masks(self) -> bool:
        return self.model.has_masks

    def heads_on_cache(self, heads: HeadsFn) -> torch.Tensor:
        """Logits (N, K) of the cached images under ``heads`` (a heads-only function): one pass."""
        with inference(self.model):
            return heads(self.z, self.context).double()

    def top_channels(self, k: int, count: int = 8) -> list[int]:
        """The ``count`` channels carrying most of attribute k's evidence (|w| x what is seen), strongest first."""
        return torch.argsort(self.view.evidence().abs()[k], descending=True)[:count].tolist()
