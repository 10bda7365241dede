"""Run profiles: ``smoke`` (tests and CI), ``default`` (the embedded dataset on 2 CPU cores), ``paper`` (a GPU).

A profile is plain data: the same program runs all three with different numbers.
Every field can be overridden one by one (``get_profile("default", width=8)``,
``--set width=8`` on the command line); an unknown name is an error.

The paper states ResNet-18 encoders from scratch, concat fusion, SGD with momentum
0.9 and lr 2e-3, lambda_t = 0.96^epoch, and a 9:1 train/validation split. It does not
state epochs, batch size, frames per clip, spectrogram parameters or the number of
adaptive steps (its Figure 3 shows four). The ``paper`` profile fills these with the
peer codebases' common practice (OGM-GE's audio pipeline: 22,050 Hz, 3 s tiled,
n_fft 512, hop 353; three 224 x 224 frames at 1 fps; batch 64; weight decay 1e-4) and
our choice of 30 warm-up epochs plus 4 adaptive steps of 10 epochs (70 epochs, inside
the 50-150 range the peer codebases train for).

The ``default`` profile is made so that its conclusions survive a perturbation (another seed,
another thread count, another CPU): the embedded corpus at 8 kHz and 2 frames of 48 x 48, a ResNet-18
of width 8, 4 warm-up epochs and 4 adaptive steps of one epoch, SGD from lr 1e-2 with a cosine decay
over the whole budget (at a constant rate the model's accuracy jumps by several points from epoch to
epoch, so which epoch the validation split picks, and any floating-point perturbation, moved a run by
4 points; the paper's 2e-3 leaves every model far from converged after 8 epochs), in mini-batches of
32 (twice the SGD steps of 64 for about 15% more time: at 64 every model was still climbing steeply
in its last epoch, so how fast a run happened to climb, which any floating-point perturbation
changes, set its result). 2,800 clips: 35% test (980 clips), and 30% of the rest held out for
validation (546 clips, against 140 at the paper's 9:1, which could not tell the epochs apart), 1,274
for training. Fifteen seeds for Table 1's concat, the paper's method and its controls, and Table 2's
ablations: the paired comparisons the claims are decided on (with five, one run of the paper's method
whose visual branch started late widened each of them past 3 points; with ten, Ours - Concat's 95%
half-width was 2.35 points, over the 2 points a comparison should resolve); five for Table 3 and the readings
of Algorithm 1 (``study_seeds``); three for the peers (``peer_seeds``). Two runs train at once
(``workers``), one thread each (``threads``: part of every run's settings). Its peers train with these
same settings (``peer_settings="shared"``), since their authors' rates, 1e-4 to 2e-3 set for 100 epochs, are at or below the 2e-3 that is
already too slow here; the ``paper`` profile gives each peer its authors' optimizer, lr and schedule
(``peer_settings="authors"``). Its run time on 2 CPU cores is in the README (Speed).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field

from .data.base import Preprocessing
from .methods.peer_settings import DEFAULT_PEER_OPTIONS, PEER_SETTING_CHOICES
from .train_config import TrainConfig


#: the fields of a TrainConfig that each run sets itself (:meth:`Profile.train_config`); every other one is a
#: setting of the profile
RUN_FIELDS = ("method", "method_options", "seed")

#: the preprocessing of the embedded corpus at the ``default`` profile's size: 8 kHz, 2 frames of 48 x 48
EMBEDDED_PREPROCESSING = Preprocessing(sample_rate=8000, clip_seconds=2.0, n_fft=126, hop_length=250, frames=2,
                                       frame_size=48, fps=1.0)


def _embedded_training() -> TrainConfig:
    """A profile's training settings unless it says otherwise: 4 warm-up epochs, 4 adaptive steps of one epoch,
    every other setting :class:`~gapkit.train_config.TrainConfig`'s own default."""
    return TrainConfig(warmup_epochs=4, adaptive_steps=4, adaptive_epochs=1)


@dataclass(frozen=True)
class Profile:
    """One profile: the preprocessing and the training settings it composes, plus its own settings.

    Every setting has one flat name, whichever part holds it (``lr`` is ``training.lr``, ``frames`` is
    ``preprocessing.frames``, ``width`` the profile's own): :meth:`replace`, :func:`get_profile`, ``--set``
    (:func:`parse_override`) and :meth:`to_dict` all speak these names.
    """

    name: str
    # embedded dataset
    synthetic_clips: int = 2000
    synthetic_test_fraction: float = 0.3
    synthetic_seed: int = 0
    #: every parameter of the cached tensors
    preprocessing: Preprocessing = EMBEDDED_PREPROCESSING
    val_fraction: float = 0.1
    split_seed: int = 0
    # model
    width: int = 8
    #: Algorithm 1's settings; the run's own method, options and seed (:data:`RUN_FIELDS`) come from
    #: :meth:`train_config`
    training: TrainConfig = field(default_factory=_embedded_training)
    seeds: tuple = (0, 1, 2)
    #: seeds of the peer methods in Table 1; empty: the same as ``seeds``
    peer_seeds: tuple = ()
    #: seeds of Table 3 (the optimizer study) and of the readings of Algorithm 1; empty: the same as ``seeds``
    study_seeds: tuple = ()
    device: str = "auto"
    #: runs trained at once by the studies, each in its own process with cores / workers threads
    workers: int = 2
    #: on GPUs, runs the studies train at once on each visible GPU (each in its own process); 0: as measured by
    #: benchmarks/bench_gpu.py on a GPU (its result file), 1 while no measurement exists
    #: (:func:`gapkit.studies.gpu_runs_per_device`)
    runs_per_gpu: int = 0
    #: options of the peer methods in Table 1 (method -> options); empty: their authors' values
    peer_options: dict = field(default_factory=dict)
    #: how the studies train the peers of Table 1: "authors", each with its authors' optimizer, lr and schedule
    #: (:data:`gapkit.methods.peer_settings.PEER_SETTINGS`), or "shared", with this profile's, as concat and ours
    peer_settings: str = "shared"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every setting's type and range, checked when a profile is made, before any data is read.

        The preprocessing settings are checked by :class:`~gapkit.data.base.Preprocessing`, the
        training settings by :class:`~gapkit.train_config.TrainConfig` (when :meth:`replace` makes them);
        the rest here. A bad value is a ``ValueError`` naming the setting and what it accepts.
        """
        def need(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                raise ValueError(f"{name} = {getattr(self, name)!r}: expected {allowed}")

        def integer(value) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        def number(value) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        need(isinstance(self.preprocessing, Preprocessing), "preprocessing", "a gapkit.data.base.Preprocessing")
        need(isinstance(self.training, TrainConfig), "training", "a gapkit.train_config.TrainConfig")
        for name in ("synthetic_clips", "synthetic_seed", "split_seed", "width", "workers", "runs_per_gpu"):
            need(integer(getattr(self, name)), name, "an integer")
        for name in ("synthetic_test_fraction", "val_fraction"):
            need(number(getattr(self, name)), name, "a finite number")
        need(self.synthetic_clips >= 12, "synthetic_clips", "an integer >= 12 (two clips per class)")
        need(0 < self.synthetic_test_fraction < 1, "synthetic_test_fraction", "a number in (0, 1)")
        need(self.synthetic_seed >= 0, "synthetic_seed", "an integer >= 0")
        need(0 < self.val_fraction < 1, "val_fraction",
             "a number in (0, 1): the share of each class's train clips held out for validation")
        need(self.split_seed >= 0, "split_seed", "an integer >= 0")
        need(self.width >= 1, "width", "an integer >= 1")
        need(self.workers >= 1, "workers", "an integer >= 1")
        need(self.runs_per_gpu >= 0, "runs_per_gpu", "an integer >= 0 (0: as measured on a GPU, else 1)")
        need(isinstance(self.seeds, tuple) and len(self.seeds) > 0
             and all(integer(s) and s >= 0 for s in self.seeds), "seeds", "one or more integers >= 0, e.g. 0,1,2")
        for name in ("peer_seeds", "study_seeds"):
            need(isinstance(getattr(self, name), tuple) and all(integer(s) and s >= 0 for s in getattr(self, name)),
                 name, "integers >= 0, e.g. 0,1,2 (none: the same as seeds)")
        need(self.device in ("auto", "cpu", "cuda") or (isinstance(self.device, str) and self.device.startswith("cuda:")
                                                        and self.device[5:].isdigit()),
             "device", "'auto', 'cpu', 'cuda' or 'cuda:N'")
        need(isinstance(self.peer_options, dict) and all(isinstance(o, dict) for o in self.peer_options.values()),
             "peer_options", "a dict of method -> options")
        need(self.peer_settings in PEER_SETTING_CHOICES, "peer_settings", "'authors' or 'shared'")

    def synthetic_spec(self):
        from .data.synthetic import SyntheticSpec
        return SyntheticSpec(seed=self.synthetic_seed, clips=self.synthetic_clips,
                             test_fraction=self.synthetic_test_fraction)

    def train_config(self, method: str = "adaptive", seed: int | None = None, **method_options) -> TrainConfig:
        """One run's :class:`~gapkit.train_config.TrainConfig`: the profile's :attr:`training` with the run's own
        method, options and seed (default: the profile's first)."""
        return dataclasses.replace(self.training, method=method, method_options=method_options,
                                   seed=self.seeds[0] if seed is None else seed)

    def replace(self, **overrides) -> "Profile":
        """A copy with some settings changed, each by its flat name (``lr``, ``frames``, ``width``), in the part
        that holds it; an unknown name is an error listing the valid ones."""
        owners = setting_owners()
        unknown = set(overrides) - set(owners)
        if unknown:
            raise ValueError(f"unknown profile setting(s) {sorted(unknown)}; valid: {', '.join(sorted(owners))}")
        for key in ("seeds", "peer_seeds", "study_seeds"):
            if key in overrides:
                overrides[key] = tuple(overrides[key])
        own = {k: v for k, v in overrides.items() if owners[k] is None}
        for part in ("preprocessing", "training"):
            changes = {k: v for k, v in overrides.items() if owners[k] == part}
            if changes:
                own[part] = dataclasses.replace(getattr(self, part), **changes)
        return dataclasses.replace(self, **own)

    def to_dict(self) -> dict:
        """Every setting by its flat name (the names :meth:`replace` takes), the name first: what a run's
        ``metrics.json`` and a notebook's results record as ``profile``."""
        out = {}
        for key, value in dataclasses.asdict(self).items():
            if key in _PARTS:
                out.update({k: v for k, v in value.items() if k not in RUN_FIELDS})
            else:
                out[key] = value
        return out

    def setting(self, name: str):
        """The value of one setting by its flat name (``profile.setting("lr")`` is ``profile.training.lr``)."""
        owners = setting_owners()
        if name not in owners:
            raise ValueError(f"unknown profile setting {name!r}; valid: {', '.join(sorted(owners))}")
        return getattr(self if owners[name] is None else getattr(self, owners[name]), name)


#: the fields of a Profile that hold a part (its settings are named flat), and the class of each part
_PARTS = {"preprocessing": Preprocessing, "training": TrainConfig}


def setting_owners() -> dict[str, str | None]:
    """Every setting's flat name -> the part of a :class:`Profile` that holds it (``"preprocessing"`` or
    ``"training"``; ``None``: the profile itself)."""
    owners: dict[str, str | None] = {}
    for f in dataclasses.fields(Profile):
        names = ([g.name for g in dataclasses.fields(_PARTS[f.name]) if g.name not in RUN_FIELDS]
                 if f.name in _PARTS else [] if f.name == "name" else [f.name])
        for name in names:
            if name in owners:
                raise TypeError(f"profile setting {name!r} is named twice, in {owners[name]} and {f.name}")
            owners[name] = f.name if f.name in _PARTS else None
    return owners


#: The default profile's scaling of the peers' epoch-counted options (about a tenth of their authors' values) lives
#: next to each peer's own optimizer settings, in :data:`gapkit.methods.peer_settings.DEFAULT_PEER_OPTIONS`.
PROFILES = {
    "smoke": Profile("smoke").replace(
        synthetic_clips=240, synthetic_test_fraction=0.1, workers=1, width=4, frames=1, frame_size=32,
        warmup_epochs=2, adaptive_steps=2, adaptive_epochs=1, batch_size=32, seeds=(0,)),
    "default": Profile("default").replace(
        lr=1e-2, lr_schedule="cosine", batch_size=32, synthetic_clips=2800, synthetic_test_fraction=0.35,
        val_fraction=0.3, seeds=tuple(range(15)), study_seeds=(0, 1, 2, 3, 4), peer_seeds=(0, 1, 2),
        peer_options=DEFAULT_PEER_OPTIONS),
    "paper": Profile("paper").replace(
        synthetic_clips=7442, sample_rate=22050, clip_seconds=3.0, n_fft=512, hop_length=353, frames=3,
        frame_size=224, width=64, warmup_epochs=30, adaptive_steps=4, adaptive_epochs=10, batch_size=64,
        augment=True, seeds=(0, 1, 2), synthetic_test_fraction=0.1, workers=1, peer_settings="authors"),
}


def get_profile(name: str, **overrides) -> Profile:
    """The named profile with ``overrides`` applied."""
    try:
        profile = PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None
    return profile.replace(**overrides) if overrides else profile


def parse_override(text: str, profile: Profile | None = None) -> tuple[str, object]:
    """``key=value`` from the command line: the one parser of ``--set`` and ``--option``.

    With ``profile`` (``--set``), ``key`` must be one of its settings and the value takes that setting's
    type. Without one (``--option``, a method option, checked later by the method itself) the value is read
    as JSON where it is JSON (``0``, ``0.5``, ``true``/``True``, ``"text"``), else kept as text.
    """
    if "=" not in text:
        raise ValueError(f"expected {'key' if profile is not None else 'name'}=value, got {text!r}")
    key, raw = text.split("=", 1)
    if profile is None:
        try:
            return key, json.loads(raw.lower() if raw.lower() in ("true", "false") else raw)
        except json.JSONDecodeError:
            return key, raw
    current = profile.setting(key)
    if isinstance(current, bool):
        if raw.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{key} expects true or false, got {raw!r}")
        return key, raw.lower() in ("true", "1")
    if isinstance(current, tuple):
        try:
            return key, tuple(int(s) for s in raw.split(","))
        except ValueError:
            raise ValueError(f"{key} expects integers separated by commas (e.g. 0,1,2), got {raw!r}") from None
    if isinstance(current, dict):
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise ValueError(f"{key} expects a JSON object such as {{\"pmr\": {{\"mu\": 0}}}}, got {raw!r}")
        return key, value
    kind = {int: "an integer", float: "a number", str: "a string"}.get(type(current), type(current).__name__)
    try:
        return key, type(current)(raw)
    except ValueError:
        raise ValueError(f"{key} expects {kind}, got {raw!r}") from None
