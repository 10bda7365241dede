"""Registry of training methods, selectable by name (``--method NAME``)."""
from __future__ import annotations

from .adaptive import Adaptive
from .base import Context, Method, StepOutput
from .concat import Concat

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (Concat, Adaptive)}


def make_method(name: str, **options) -> Method:
    """The method registered under ``name``, with its options; an unknown name is an error."""
    try:
        cls = METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(METHODS)}") from None
    return cls(**options)


__all__ = ["METHODS", "Context", "Method", "StepOutput", "make_method"]
