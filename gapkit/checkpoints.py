"""A training checkpoint: what it holds, whether it belongs to a run, and restoring it.

The trainer (:mod:`gapkit.training`) writes one at the end of every epoch (``last.pt``) and at the end of
warm-up (``warmup.pt``). A run resumes from its own ``last.pt`` only if every setting agrees, and branches from
another run's ``warmup.pt`` only if the settings of the warm-up (:data:`WARMUP_FIELDS`) and the data agree.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .train_config import TrainConfig, learning_rate, recorded_config

#: config fields that must agree between a warm-up checkpoint and a run branching from it
WARMUP_FIELDS = ("seed", "warmup_epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "augment",
                 "lr_schedule", "lr_step_size", "lr_gamma", "threads", "precision")


def identity_differences(theirs, mine, prefix: str) -> dict:
    """``{"prefix.field": (theirs, mine)}`` for every leaf where two nested identity dicts differ."""
    if isinstance(theirs, dict) and isinstance(mine, dict):
        out = {}
        for key in sorted(set(theirs) | set(mine)):
            out.update(identity_differences(theirs.get(key), mine.get(key), f"{prefix}.{key}"))
        return out
    return {} if theirs == mine else {prefix: (theirs, mine)}


def checkpoint(epoch: int, config: TrainConfig, device, data_identity: dict, data_key: str, model, optimizer,
               method, history, gaps, best, generator) -> dict:
    """The state after ``epoch`` epochs: settings, data, model, optimizer, method, history and every RNG."""
    return {
        "epoch": epoch, "config": config.to_dict(), "device": str(device), "data_key": data_key,
        "data_identity": data_identity,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "history": history, "gaps": gaps, "best": best, "method_state": method.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "shuffle": generator.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
    }


def check_compatible(ckpt: dict, path: Path, fields, config: TrainConfig, data_identity: dict, data_key: str,
                     device) -> None:
    """A ``ValueError`` naming every setting in ``fields`` (and the data) where ``ckpt`` differs from this run.

    A checkpoint written before a setting existed counts as having had what its run did
    (:func:`~gapkit.train_config.recorded_config`; without a recorded device, ``device``'s).
    """
    theirs = recorded_config(ckpt["config"], ckpt.get("device", str(device)))
    mine = config.to_dict()
    diff = {k: (theirs.get(k), mine[k]) for k in fields if theirs.get(k) != mine[k]}
    if ckpt.get("data_key") != data_key:
        diff.update(identity_differences(ckpt.get("data_identity"), data_identity, "data") or
                    {"data": (ckpt.get("data_key"), data_key)})
    if "lr_schedule" in fields and "lr_schedule" in theirs and not diff:
        rates = [(learning_rate(TrainConfig(**theirs), e), learning_rate(config, e))
                 for e in range(config.warmup_epochs)]
        if any(a != b for a, b in rates):
            diff["warm-up learning rates"] = tuple(list(r) for r in zip(*rates))
    if diff:
        raise ValueError(f"checkpoint {path} was made with other settings: "
                         + ", ".join(f"{k}: {a!r} there, {b!r} here" for k, (a, b) in diff.items()))


def restore(ckpt: dict, model, optimizer, method, generator) -> None:
    """Model, optimizer, method state and every RNG as the checkpoint holds them."""
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    method.load_state_dict(ckpt.get("method_state", {}))
    torch.set_rng_state(ckpt["rng"]["torch"])
    generator.set_state(ckpt["rng"]["shuffle"])
    if ckpt["rng"].get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
