"""Registry of training methods, selectable by name (``--method NAME``).

Besides the paper's method (``adaptive``) and its baseline (``concat``), the peers of the paper's Table 1, one module each: ``ogm-ge``, ``g-blending``, ``pmr``, ``agm``,
``mla``, ``greedy``, ``d-and-r``, and the two strategies of OPM & OGM, ``opm`` and ``ogm``, run separately as their
authors run them; and the controls ``warmup-only`` and ``warmup-reset`` (see :mod:`gapkit.methods.controls`).
Each peer's own optimizer, learning rate and schedule: :mod:`gapkit.methods.peer_settings`.
"""
from __future__ import annotations

from .adaptive import Adaptive
from .agm import AGM
from .base import Context, Method, StepOutput
from .concat import Concat
from .controls import WarmupOnly, WarmupReset
from .d_and_r import DiagnoseRelearn
from .g_blending import GBlending
from .greedy import Greedy
from .mla import MLA
from .ogm_ge import OGMGE
from .ogm import OGM
from .opm import OPM
from .pmr import PMR

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (Concat, Adaptive, WarmupOnly, WarmupReset)}
#: the peer methods of Table 1, in the order of the table
PEERS: tuple[type[Method], ...] = (GBlending, OGMGE, Greedy, PMR, AGM, MLA, DiagnoseRelearn, OPM, OGM)
METHODS.update({cls.name: cls for cls in PEERS})


def make_method(name: str, **options) -> Method:
    """The method registered under ``name``, with its options; an unknown name is an error."""
    try:
        cls = METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(METHODS)}") from None
    return cls(**options)


__all__ = ["METHODS", "PEERS", "Context", "Method", "StepOutput", "make_method"]
