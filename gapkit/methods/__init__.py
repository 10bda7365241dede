"""Registry of training methods, selectable by name (``--method NAME``).

Besides the paper's method (``adaptive``) and its baseline (``concat``), the peers of the paper's Table 1, one module each: ``ogm-ge``, ``g-blending``, ``pmr``, ``agm``,
``mla``, ``greedy``, ``d-and-r``, and the two strategies of OPM & OGM, ``opm`` and ``ogm``, run separately as their
authors run them; and the controls ``warmup-only`` and ``warmup-reset`` (see :mod:`gapkit.methods.controls`).
Each peer's own optimizer, learning rate and schedule: :mod:`gapkit.methods.peer_settings`.
"""
from __future__ import annotations

import math

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


__all__ = ["METHODS", "PEERS", "Context", "Method", "StepOutput", "check_method_options", "make_method"]


def check_method_options(method: str, options: dict) -> None:
    """A known method, options it knows, each of its default's type: ``ValueError`` naming the option otherwise.

    A number option takes a finite number (an integer where the default is one), a
    true/false option a bool, a text option a string; an option whose default is
    ``None`` takes any value. The method's own constructor checks the rest.
    """
    cls = type(make_method(method, **options))  # unknown method or option names fail here
    for key, value in options.items():
        default = cls.defaults[key]
        if default is None:
            continue
        if isinstance(default, bool):
            ok, allowed = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, allowed = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            allowed = "a finite number"
        else:
            ok, allowed = isinstance(value, type(default)), f"a {type(default).__name__}"
        if not ok:
            raise ValueError(f"option {key} = {value!r} of method {method!r}: expected {allowed} "
                             f"(default {default!r})")
