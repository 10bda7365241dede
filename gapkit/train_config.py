"""One training run's settings: :class:`TrainConfig`, its checks, and what follows from it alone (the learning
rate of each epoch, the optimizer).

The trainer (:mod:`gapkit.training`) runs a config; a profile (:mod:`gapkit.profiles`) holds one, without the
run's own method, options and seed, and fills them for each run.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from .methods import check_method_options


#: the values of ``TrainConfig.precision``
PRECISIONS = ("auto", "float32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of one training run (the profile fills them; each can be overridden with
    ``dataclasses.replace``, which checks the new values: a config is never changed in place)."""

    method: str = "adaptive"
    method_options: dict = field(default_factory=dict)
    warmup_epochs: int = 10          # E_warmup
    adaptive_steps: int = 4          # S_adaptive
    adaptive_epochs: int = 5         # E_adaptive
    batch_size: int = 64
    optimizer: str = "sgd"           # "sgd", "adam" or "adamw" (decoupled weight decay)
    lr: float = 2e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    reset_optimizer: bool = True     # reset the optimizer's state when adaptive training starts (Table 3)
    lr_schedule: str = "constant"    # "constant", "cosine" (over the whole budget) or "step" (StepLR)
    lr_step_size: int = 30           # "step": epochs between decays
    lr_gamma: float = 0.1            # "step": the decay factor
    augment: bool = False
    seed: int = 0
    threads: int = 1                 # torch's CPU threads: floating-point results depend on it
    #: "auto" (bf16 on CUDA, float32 on the CPU), "float32" or "bf16": the dtype of the forward pass (autocast); the
    #: losses and the gaps are computed in float32 whatever it is (:func:`resolve_precision`)
    precision: str = "auto"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every field's type and range, checked before any data is read; the message names the setting."""
        def need(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                raise ValueError(f"{name} = {getattr(self, name)!r}: expected {allowed}")
        ints = ("warmup_epochs", "adaptive_steps", "adaptive_epochs", "batch_size", "lr_step_size", "seed", "threads")
        for name in ints:
            need(isinstance(getattr(self, name), int) and not isinstance(getattr(self, name), bool), name,
                 "an integer")
        for name in ("lr", "momentum", "weight_decay", "lr_gamma"):
            value = getattr(self, name)
            need(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), name,
                 "a finite number")
        need(self.warmup_epochs >= 0, "warmup_epochs", "an integer >= 0")
        need(self.adaptive_steps >= 0, "adaptive_steps", "an integer >= 0")
        need(self.adaptive_epochs >= 1 or self.adaptive_steps == 0, "adaptive_epochs", "an integer >= 1")
        need(self.total_epochs >= 1, "warmup_epochs",
             "at least one epoch in all (warmup_epochs + adaptive_steps * adaptive_epochs >= 1)")
        need(self.batch_size >= 2, "batch_size", "an integer >= 2 (batch norm needs two samples)")
        need(self.lr > 0, "lr", "a number > 0")
        need(0 <= self.momentum < 1, "momentum", "a number in [0, 1)")
        need(self.weight_decay >= 0, "weight_decay", "a number >= 0")
        need(self.optimizer in ("sgd", "adam", "adamw"), "optimizer", "'sgd', 'adam' or 'adamw'")
        need(self.lr_schedule in ("constant", "cosine", "step"), "lr_schedule", "'constant', 'cosine' or 'step'")
        need(self.lr_step_size >= 1, "lr_step_size", "an integer >= 1")
        need(0 < self.lr_gamma <= 1, "lr_gamma", "a number in (0, 1]")
        need(self.threads >= 1, "threads", "an integer >= 1")
        need(self.precision in PRECISIONS, "precision", "'auto', 'float32' or 'bf16'")
        need(isinstance(self.method_options, dict), "method_options", "a dict")
        check_method_options(self.method, self.method_options)

    @property
    def total_epochs(self) -> int:
        """The epoch budget, the same for every method: E_warmup + S_adaptive * E_adaptive."""
        return self.warmup_epochs + self.adaptive_steps * self.adaptive_epochs

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """The learning rate of global epoch ``epoch`` (0-based) under the config's schedule.

    ``constant``: ``lr``. ``cosine``: ``lr * (1 + cos(pi * epoch / total_epochs)) / 2``, one decay over the
    whole budget whatever the stages, so every method of a comparison sees the same rates at the same
    epochs (an optimizer reset restarts the momentum, not the schedule). ``step``: StepLR,
    ``lr * lr_gamma ** (epoch // lr_step_size)``.
    """
    if config.lr_schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / config.total_epochs))
    if config.lr_schedule == "step":
        return config.lr * config.lr_gamma ** (epoch // config.lr_step_size)
    return config.lr


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's), Adam or AdamW, with the config's learning rate and weight decay."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":  # some peers' own optimizer (gapkit.methods.peer_settings)
        return torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; use 'sgd', 'adam' or 'adamw'")


def resolve_precision(precision: str, device) -> str:
    """``"float32"`` or ``"bf16"``: what ``precision`` means on ``device`` (``"auto"``: bf16 autocast on CUDA, float32
    elsewhere, so that a CPU run's numbers stay those of the code before the option existed)."""
    if precision != "auto":
        return precision
    return "bf16" if torch.device(device).type == "cuda" else "float32"


def recorded_config(config: dict | None, device: str | None) -> dict | None:
    """A config as a run folder or checkpoint recorded it, with the settings added since filled with what the run did.

    ``precision`` came after the first runs: those trained in float32, which is what ``"auto"`` gives on the CPU,
    so a run recorded without it counts as ``"auto"`` when it trained on the CPU (``device``), else as
    ``"float32"``. Every run made on the CPU before the option existed is thus the run its settings give today.
    """
    if not isinstance(config, dict) or "precision" in config:
        return config
    cpu = device is None or torch.device(device).type == "cpu"
    return {**config, "precision": "auto" if cpu else "float32"}
