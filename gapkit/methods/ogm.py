"""OGM: on-the-fly gradient modulation as run in OPM & OGM (Wei, Hu, Du and Wen, TPAMI 2024), the back-propagation half.

The journal extension of OGM-GE (:mod:`gapkit.methods.ogm_ge`) proposes two separate strategies:
OPM in the feed-forward stage (:mod:`gapkit.methods.opm`) and OGM in the back-propagation stage,
this one. Per mini-batch, rho^u = s^u / s^{u'} with s^u = sum_i softmax(l^u_i)_{y_i} from the
unimodal logits (Eq. 3 of our paper); the dominant modality's encoder gradients are multiplied
by 1 - tanh(alpha * rho^u) and receive the generalization-enhancement noise N(0, std(g)^2), exactly
the mechanism of OGM-GE (same functions). The loss is L_MM alone.

What differs from the CVPR 2022 release is how the authors run it (GeWu-Lab/BML_TPAMI2024,
``code/scripts/train_ogm.sh`` and ``code/main.py``, as facts): ``--use_modulation`` without
``--use_adam_drop``, so the drop of OPM is off; alpha = 0.8; modulation on epochs 0-60 but never
during their warm-up, the epochs 0-5 (``warm_up = 1 if epoch <= 5``), so the window is epochs 6-60
(``modulation_starts`` = 6, ``modulation_ends`` = 60); GE on (``--modulation`` defaults to
``OGM_GE``); AdamW (lr 5e-5, weight decay 0.01) with StepLR(40, 0.1) for 100 epochs at batch 32
(:mod:`gapkit.methods.peer_settings`). No public script combines the two strategies, so gapkit has
``opm`` and ``ogm`` and no combined method.
"""
from __future__ import annotations

from .ogm_ge import OGMGE


class OGM(OGMGE):
    """OGM-GE's mechanism with the TPAMI release's window and alpha; see the module docstring."""

    name = "ogm"
    defaults = {"alpha": 0.8, "modulation_starts": 6, "modulation_ends": 60, "ratio_offset": 0.0, "ge": True}
