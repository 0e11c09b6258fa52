"""The human-predictable network (paper Tables 1-2, Eq. 8-13).

x (B, 3, S, S) in [0, 1]
  -> feature extractor f_f            z (B, C, H, W)           Table 1, a strided variant, a ResNet, yours
  -> channel keep-mask                z * keep                 semantic channel pruning
  -> K attention masks                M_k = sigmoid(A_k z + a_k) in (0, 1)^(C x H x W)
  -> mask transformation              g(M_k; n_k, beta_k)      Eq. 11-12, identity by default
  -> K binary classifiers             logit_k = w_k . GAP(g(M_k) * z) + b_k      Eq. 9, 13

The K heads are one batched matrix product over all heads, never a loop over attributes. The full
mask tensor (B, K, C, H, W) is 5.4 GB at B = 32, 64x64, K = 40, C = 128, so by default the heads are
computed in cache-sized tiles with a hand-written backward that recomputes each tile
(``head_impl="fused"``, see :mod:`hpnet.model.fused`); ``"naive"`` keeps the whole tensor and is
the reference the fused path is tested against.

Modules: :mod:`.backbones` (the feature extractors, a registry; the ResNets in :mod:`.resnet`, your
own module in :mod:`.custom`, weights from files in :mod:`.weights`), :mod:`.heads` (the head
families, a registry) and :mod:`.mask_heads` (what those with masks share), :mod:`.config` (:class:`ModelConfig`), :mod:`.network` (:class:`HPNet`,
save/load, counts), :mod:`.fused`, :mod:`.tiles` and :mod:`._kernels` (the fast heads).

What operations and analyses may use of a model
-----------------------------------------------
Operations (pruning, the mask transformation) and analyses (correlations, masks, predictability)
see a network only through this protocol, so the plain CNN, a pruned model and every head family
work with the same code:

- ``model.config`` (:class:`ModelConfig`: ``attribute_names``, ``channels`` C,
  ``num_attributes`` K, ``backbone``, ``widths``), ``model.attribute_names``;
- ``model.features(x)`` -> z (B, C, H, W), pruned channels zeroed; ``model.encode(x)`` -> (z,
  context), the context being what a head reads beside z that pruning never removes (None for
  most heads); ``model(x)`` -> ``Output`` (logits (B, K), mask_l1);
- ``model.has_masks``; when true, ``model.masks(z, transformed=False, context=None)`` ->
  (B, K, C, H, W) in (0, 1) (small batches only) and ``model.set_transform(n, beta)``;
- ``model.heads(z, context)`` -> (logits, mask sums), ``model.heads.pooled(z, context)`` ->
  (B, K, C) (logit_k = pooled[:, k] . w_k + b_k), ``model.heads.weight`` (K, C),
  ``model.heads.bias`` (K,), with masks ``model.heads.logits_under(z, n, beta, context)`` (T
  transformations at once) and ``model.heads.transform_active``; ``model.heads.channel_dims`` for
  physical pruning;
- ``model.channel_keep`` (C,) and ``model.set_channel_keep(keep)``; the state operations change as
  one value, ``model.operation_state()``, and ``with model.perturbed(keep=..., n=..., beta=...):``,
  which puts it back on leaving (nothing saves and restores it by hand);
- ``model.extractor.last_conv`` and ``model.extractor.last_norm``: the conv and BatchNorm that
  produce z (pruning scores their filters; None where a module backbone declares none), and
  ``model.extractor.channel_dims``: what physical pruning removes (see :mod:`.backbones`).
"""
from .backbones import BACKBONES, PAPER_DILATIONS, PAPER_WIDTHS, FeatureExtractor, conv_block
from .config import L1_NORMS, ModelConfig
from .heads import HEAD_IMPLS, HEADS, AttentionHeads, ChannelHeads, ContextHeads, LinearHeads, MaskHeads
from .network import HPNet, OperationState, Output, count_macs, count_parameters
from .weights import load_backbone_weights

__all__ = ["BACKBONES", "HEADS", "HEAD_IMPLS", "L1_NORMS", "PAPER_DILATIONS", "PAPER_WIDTHS", "AttentionHeads",
           "ChannelHeads", "ContextHeads", "FeatureExtractor", "HPNet", "LinearHeads", "MaskHeads", "ModelConfig",
           "OperationState", "Output", "conv_block", "count_macs", "count_parameters", "load_backbone_weights"]
