"""Each peer's own optimizer, learning rate and schedule, with the source of every value, in one table.

A profile's ``peer_settings`` says how the studies train the peers of Table 1:

* ``"authors"`` (the ``paper`` profile): each peer with the optimizer, learning rate, momentum,
  weight decay and learning-rate schedule of its authors' public code (:data:`PEER_SETTINGS`);
  the profile's batch size and epoch budget stay, so every row of Table 1 sees the same data for
  the same number of epochs;
* ``"shared"`` (the ``default`` profile): every method with the profile's own settings, as concat
  and ours. The default profile trains 8 epochs of a tiny model: at the authors' learning rates
  (1e-4 to 2e-3, set for 100 epochs of a full ResNet-18) no peer would leave its first plateau.

Values were read from each public repository (as facts, nothing copied); a schedule the trainer
does not have (Greedy's reduce-on-plateau) is replaced by the nearest one it has, and the table says so.
Epoch-counted values (StepLR's step size) are the authors', not rescaled: on the paper profile's 70
epochs, a step of 70 never decays, as in the first 70 of the authors' 100.

:data:`DEFAULT_PEER_OPTIONS` is the other half of running peers on a short budget: the default
profile's scaling of the peers' epoch-counted *method* options.
"""
from __future__ import annotations

from dataclasses import dataclass, field

#: the profile fields a peer's own settings replace
SETTING_FIELDS = ("optimizer", "lr", "momentum", "weight_decay", "lr_schedule", "lr_step_size", "lr_gamma")

PEER_SETTING_CHOICES = ("authors", "shared")


@dataclass(frozen=True)
class PeerSettings:
    """One row of the table: the authors' training settings, their run length and batch (for reference), the sources."""

    optimizer: str | None            # None: no public code to take it from; the profile's settings are used
    lr: float | None = None
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    lr_step_size: int = 30
    lr_gamma: float = 0.1
    epochs: int | None = None        # the authors' run length (not applied: the profile's budget is kept)
    batch_size: int | None = None    # the authors' batch (not applied)
    source: str = ""
    notes: str = ""
    #: where gapkit's trainer cannot do what the authors do, what it does instead
    deviations: tuple = field(default_factory=tuple)

    def overrides(self) -> dict:
        """Profile fields for a run with these settings (empty when the authors' settings are unknown)."""
        if self.optimizer is None:
            return {}
        return {"optimizer": self.optimizer, "lr": self.lr, "momentum": self.momentum,
                "weight_decay": self.weight_decay, "lr_schedule": self.lr_schedule,
                "lr_step_size": self.lr_step_size, "lr_gamma": self.lr_gamma}


_SGD_STEP70 = dict(optimizer="sgd", lr=1e-3, momentum=0.9, weight_decay=1e-4, lr_schedule="step", lr_step_size=70,
                   lr_gamma=0.1)
_BML = dict(optimizer="adamw", lr=5e-5, momentum=0.0, weight_decay=0.01, lr_schedule="step", lr_step_size=40,
            lr_gamma=0.1, epochs=100, batch_size=32,
            source="GeWu-Lab/BML_TPAMI2024: code/main.py (AdamW, weight decay 0.01; StepLR stepped every epoch), "
                   "code/config.py (lr 5e-5, lr_decay_step 40, lr_decay_ratio 0.1, batch 32, 100 epochs)",
            notes="the released configuration is the Kinetics-Sounds one; the scripts set no other learning rate")

#: method -> the authors' training settings. Table 1's order.
PEER_SETTINGS: dict[str, PeerSettings] = {
    "g-blending": PeerSettings(
        None,
        source="no public code of the authors for audio-visual classification",
        notes="BalanceBenchmark's G-Blending runs under that benchmark's common settings (AdamW), which are "
              "its own, not the authors'; gapkit keeps the profile's settings"),
    "ogm-ge": PeerSettings(
        **_SGD_STEP70, epochs=100, batch_size=64,
        source="GeWu-Lab/OGM-GE_CVPR2022: main.py (SGD momentum 0.9, weight decay 1e-4, StepLR; argument "
               "defaults lr 1e-3, lr_decay_step 70, lr_decay_ratio 0.1, batch 64, 100 epochs)"),
    "greedy": PeerSettings(
        "sgd", lr=0.1, momentum=0.0, weight_decay=0.0, lr_schedule="constant", epochs=300, batch_size=8,
        source="nyukat/greedy_multimodal_learning: configs/training_guided.gin (train.lr 0.1, momentum 0, wd 0, "
               "batch 8, n_epochs 300 with early stopping, ReduceLROnPlateau_PyTorch on the loss); "
               "src/callbacks.py (factor 0.3, patience 10)",
        notes="set for two views of ModelNet40, not for audio-visual data",
        deviations=("reduce-on-plateau (factor 0.3 after 10 epochs without a lower training loss) is not "
                    "reproduced: the rate stays constant, which it also does in the authors' runs until the "
                    "first plateau",)),
    "pmr": PeerSettings(
        **_SGD_STEP70, epochs=130, batch_size=64,
        source="fanyunfeng-bit/Modal-Imbalance-PMR: main_Prototype_grad.py (SGD momentum 0.9, weight decay 1e-4, "
               "StepLR with lr_decay_step 70, lr_decay_ratio 0.1, batch 64); bash.sh (CREMA-D concat: lr 1e-3, "
               "130 epochs)"),
    "agm": PeerSettings(
        "sgd", lr=1e-4, momentum=0.9, weight_decay=1e-4, lr_schedule="step", lr_step_size=70, lr_gamma=0.1,
        epochs=100, batch_size=64,
        source="lihong2303/AGM_ICCV2023: tasks/CREMAD_task.py (SGD momentum 0.9, weight decay 1e-4, StepLR); "
               "utils/config.py (lr_decay_step 70, lr_decay_ratio 0.1); README.md (the one published command: "
               "lr 1e-4, batch 64, 100 epochs)",
        notes="the published command is for AV-MNIST; no CREMA-D learning rate is published "
              "(the argument default is 1e-5)"),
    "mla": PeerSettings(
        **_SGD_STEP70, epochs=100, batch_size=64,
        source="Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation: main.py (SGD momentum 0.9, "
               "weight decay 1e-4, StepLR; argument defaults lr 1e-3, lr_decay_step 70, lr_decay_ratio 0.1); "
               "README.md (CREMA-D: batch 64, 100 epochs)"),
    "d-and-r": PeerSettings(
        "sgd", lr=2e-3, momentum=0.9, weight_decay=1e-4, lr_schedule="constant", epochs=90, batch_size=64,
        source="GeWu-Lab/Diagnosing_Relearning_ECCV2024: code/ours.py (SGD momentum 0.9, weight decay 1e-4, "
               "lr 2e-3, batch 64; no scheduler: lr_decay_step is parsed but never used); code/script/ours.sh "
               "(90 epochs)"),
    "opm": PeerSettings(**_BML),
    "ogm": PeerSettings(**_BML),
}

#: The peers' epoch-counted *method* options scaled to the default profile's 8 epochs. Their authors' values assume
#: 50-100 epochs: D&R's first re-initialisation at epoch 20 and G-Blending's first weight estimate after 10
#: epochs would never happen, OPM's drop and OGM's modulation would start in the last quarter. About a tenth of each.
DEFAULT_PEER_OPTIONS = {
    "d-and-r": {"reinit_epoch": 2},        # 20 (re-initialise after epochs 2, 4, 6)
    "g-blending": {"super_epoch": 2},      # 10
    "opm": {"modulation_starts": 1},       # 6 (their warm-up, epochs 0-5)
    "ogm": {"modulation_starts": 1},       # 6
    "pmr": {"entropy_epochs": 1},          # 10
}


def peer_overrides(method: str, peer_settings: str) -> dict:
    """The profile fields a run of ``method`` replaces under ``peer_settings`` (``{}`` for ``shared`` or a non-peer)."""
    if peer_settings not in PEER_SETTING_CHOICES:
        raise ValueError(f"peer_settings = {peer_settings!r}: expected one of {PEER_SETTING_CHOICES}")
    if peer_settings == "shared" or method not in PEER_SETTINGS:
        return {}
    return PEER_SETTINGS[method].overrides()


def settings_table():
    """The table as a DataFrame (one row per peer), for the README and the notebooks."""
    import pandas as pd

    rows = []
    for method, s in PEER_SETTINGS.items():
        rows.append({"method": method, "optimizer": s.optimizer or "(profile's)", "lr": s.lr,
                     "momentum": s.momentum if s.optimizer else None,
                     "weight_decay": s.weight_decay if s.optimizer else None,
                     "schedule": (f"StepLR({s.lr_step_size}, {s.lr_gamma})" if s.lr_schedule == "step"
                                  else s.lr_schedule) if s.optimizer else None,
                     "authors_epochs": s.epochs, "authors_batch": s.batch_size,
                     "default_profile_options": DEFAULT_PEER_OPTIONS.get(method, {}),
                     "source": s.source, "notes": "; ".join(x for x in (s.notes, *s.deviations) if x)})
    return pd.DataFrame(rows)
