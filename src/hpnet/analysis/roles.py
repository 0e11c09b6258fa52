"""Channel roles against the attributes: where each attribute's evidence lies, and whether the
channels that carry it have that part as their role.

:data:`ATTRIBUTE_PARTS` gives, for each CelebA attribute (the synthetic faces use the same names), the
face parts where its evidence is drawn or seen: for the synthetic faces these are the parts of its
evidence region (:mod:`hpnet.data.synthetic.features`; ``tests/test_dissect.py`` checks that the
parts hold the region), for real faces where a person would look. Attributes of the whole face
(Attractive, Blurry, Chubby, Male, Oval_Face, Young) have no part and are left out.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

ATTRIBUTE_PARTS: dict[str, tuple[str, ...]] = {
    "5_o_Clock_Shadow": ("chin",), "Arched_Eyebrows": ("brows",), "Bags_Under_Eyes": ("eyes",),
    "Bald": ("hair",), "Bangs": ("hair", "forehead"), "Big_Lips": ("mouth",), "Big_Nose": ("nose",),
    "Black_Hair": ("hair",), "Blond_Hair": ("hair",), "Brown_Hair": ("hair",), "Gray_Hair": ("hair",),
    "Bushy_Eyebrows": ("brows",), "Double_Chin": ("chin", "neck"), "Eyeglasses": ("glasses", "eyes"),
    "Goatee": ("chin",), "Heavy_Makeup": ("eyes", "cheeks"), "High_Cheekbones": ("cheeks",),
    "Mouth_Slightly_Open": ("mouth",), "Mustache": ("mouth",), "Narrow_Eyes": ("eyes",), "No_Beard": ("chin",),
    "Pale_Skin": ("face", "forehead", "cheeks", "chin", "nose", "neck"), "Pointy_Nose": ("nose",),
    "Receding_Hairline": ("forehead", "hair"),
    "Rosy_Cheeks": ("cheeks",), "Sideburns": ("hair", "face"), "Smiling": ("mouth",), "Straight_Hair": ("hair",),
    "Wavy_Hair": ("hair",), "Wearing_Earrings": ("ears",), "Wearing_Hat": ("hat",), "Wearing_Lipstick": ("mouth",),
    "Wearing_Necklace": ("neck",), "Wearing_Necktie": ("neck",),
}
FIG4_PAIR = ("Smiling", "Mouth_Slightly_Open")


def attribute_parts(names: Sequence[str], parts: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The attributes of ``names`` whose evidence lies in some of ``parts``, and those parts."""
    out = {}
    for name in names:
        kept = tuple(p for p in ATTRIBUTE_PARTS.get(name, ()) if p in parts)
        if kept:
            out[name] = kept
    return out


def consistency(evidence: torch.Tensor, roles: Sequence[str], names: Sequence[str], parts: Sequence[str],
                n_perm: int = 1000, seed: int = 0) -> dict:
    """How much of each attribute's evidence sits on channels whose role is a part of its evidence region.

    ``evidence`` (K, C) >= 0 (|w_kc| x mean mask_kc); ``roles`` (C,) a part or "none". For each
    attribute with parts (:func:`attribute_parts`), share_k = sum of e_kc over channels whose role
    is one of them / sum_c e_kc; the score is the mean share. Chance is its expectation when the
    roles are dealt to the channels at random (each share's expectation is then the share of
    channels with such a role); ``p_value`` the share of ``n_perm`` random deals scoring at least as
    much. Returns ``{"score", "chance", "p_value", "attributes", "left_out", "per_attribute": [...]}``.
    """
    evidence = torch.as_tensor(evidence, dtype=torch.float64)
    mapped = attribute_parts(names, parts)
    left_out = [n for n in names if n not in mapped]
    if not mapped:
        return {"score": None, "chance": None, "p_value": None, "attributes": 0, "left_out": left_out,
                "per_attribute": []}
    rows = [list(names).index(n) for n in mapped]
    share = evidence[rows] / evidence[rows].sum(1, keepdim=True).clamp(min=1e-300)          # (A, C)
    index = {p: i for i, p in enumerate(parts)}
    role_ids = torch.tensor([index.get(r, -1) for r in roles])                               # -1: none
    member = torch.zeros(len(rows), len(parts) + 1, dtype=torch.float64)                     # last: none
    for a, n in enumerate(mapped):
        member[a, [index[p] for p in mapped[n]]] = 1.0
    hits = member[:, role_ids]                                                               # (A, C)
    per = (share * hits).sum(1)
    chance_per = hits.mean(1)
    rng = np.random.default_rng(seed)
    perms = torch.from_numpy(np.argsort(rng.random((n_perm, len(roles))), axis=1))           # (n_perm, C)
    dealt = member[:, role_ids[perms]]                                                       # (A, n_perm, C)
    scores = (share[:, None, :] * dealt).sum(-1).mean(0)                                     # (n_perm,)
    score = float(per.mean())
    return {"score": score, "chance": float(chance_per.mean()),
            "p_value": float(((scores >= score - 1e-12).sum() + 1) / (n_perm + 1)),
            "attributes": len(rows), "left_out": left_out,
            "per_attribute": [{"attribute": n, "parts": list(mapped[n]), "share": float(per[a]),
                               "chance": float(chance_per[a])} for a, n in enumerate(mapped)]}


def fig4_roles(evidence: torch.Tensor, channels: Sequence[dict], names: Sequence[str], top: int) -> dict:
    """The paper's Fig. 4 argument as numbers: the ``top`` channels of Smiling and of Mouth_Slightly_Open
    by evidence, the channels they share, and each one's part. ``{"skipped": why}`` without both."""
    missing = [a for a in FIG4_PAIR if a not in names]
    if missing:
        return {"skipped": f"the run has no {' and no '.join(missing)}"}
    evidence = torch.as_tensor(evidence, dtype=torch.float64)

    def entry(c: int, k: int) -> dict:
        share = float(evidence[k, c] / evidence[k].sum().clamp(min=1e-300))
        return {"channel": c, "part": channels[c]["part"], "iou": channels[c]["iou"], "evidence_share": share}

    tops = {}
    for a in FIG4_PAIR:
        k = list(names).index(a)
        order = torch.argsort(evidence[k], descending=True, stable=True)[:top].tolist()
        tops[a] = [entry(c, k) for c in order]
    shared = sorted(set(e["channel"] for e in tops[FIG4_PAIR[0]]) & set(e["channel"] for e in tops[FIG4_PAIR[1]]))
    return {"attributes": list(FIG4_PAIR), "top": tops, "k": top,
            "shared": [{"channel": c, "part": channels[c]["part"], "iou": channels[c]["iou"]} for c in shared],
            "mouth": {a: sum(e["part"] == "mouth" for e in tops[a]) for a in FIG4_PAIR}}
