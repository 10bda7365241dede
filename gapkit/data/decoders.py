"""What every decoder shares: the errors, the checks of a file before and after decoding, and the decoding
packages (PyAV, soundfile), imported on first use.

Every failure to read a file raises :class:`MediaError`, whose message names the file:
whatever the decoder raises (PyAV, libsndfile, PIL, its ``DecompressionBombError``
included) is turned into one (:func:`media_failure`). A package that is not installed
raises :class:`MissingDecoderError` instead, naming it: ``import gapkit`` and training
from a cache need neither package, only decoding media does.
"""
from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

#: a stream decoding to less than its stated duration by more than this many seconds, and by more than
#: SHORTFALL_FRACTION of it, is cut short (a few frames' difference between container and stream is normal)
SHORTFALL_SECONDS = 0.5
SHORTFALL_FRACTION = 0.2

#: the decoding packages imported on first use, and what installs them: training from a cache needs neither
DECODERS = {"av": "PyAV (pip install av)", "soundfile": "soundfile (pip install soundfile)"}


class MissingDecoderError(ImportError):
    """A media file needs a decoding package (PyAV, soundfile) that is not installed on this machine.

    Not a :class:`MediaError`: the file is fine, and ``on_error="skip"`` must not drop
    every clip for it.
    """

    def __init__(self, package: str, path=None):
        self.package = package
        where = f" {path}" if path is not None else ""
        super().__init__(f"decoding the media file{where} needs the Python package {package!r}, "
                         f"{DECODERS[package]}, which is not installed here. Install it, or train from a cache "
                         f"built where it is (training reads only the cached tensors)", name=package)


def decoder(package: str, path=None):
    """The decoding package ``package`` (``"av"`` or ``"soundfile"``), imported on first use.

    Imported lazily so that ``import gapkit`` and training from a cache or from the
    synthetic corpus's cache work without them; raises :class:`MissingDecoderError`
    naming the package (and ``path``) where it is not installed.
    """
    try:
        return importlib.import_module(package)
    except ImportError:
        raise MissingDecoderError(package, path) from None


class MediaError(ValueError):
    """A media file that cannot be used: missing, empty, truncated, corrupt or without frames."""

    def __init__(self, path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ListingError(ValueError):
    """A bad line in a file that lists clips (split file, manifest, annotations)."""

    def __init__(self, path, line: int | None, reason: str):
        self.path = Path(path)
        self.line = line
        self.reason = reason
        where = f"{path}, line {line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {reason}")


def media_failure(path, what: str, exc: Exception) -> MediaError:
    """A decoder's exception as a :class:`MediaError` naming ``path`` (a MediaError passes unchanged)."""
    if isinstance(exc, (MediaError, MissingDecoderError)):
        return exc
    detail = str(exc) or type(exc).__name__
    av = sys.modules.get("av")
    ffmpeg = getattr(av, "FFmpegError", ()) if av is not None else ()
    if not isinstance(exc, ffmpeg) and type(exc).__name__ not in detail:  # FFmpeg's say what they are
        detail = f"{type(exc).__name__}: {detail}"
    return MediaError(path, f"cannot decode {what} ({detail})")


def check_duration(path, decoded: float, stated: float | None, what: str = "video") -> None:
    """Raise :class:`MediaError` when ``decoded`` seconds fall far short of the ``stated`` duration.

    A file cut short keeps its header, so the container still states the whole
    duration while the decoder stops where the bytes do (an FLV cut in half decodes
    half its frames without an error). "Far short": more than ``SHORTFALL_SECONDS``
    and more than ``SHORTFALL_FRACTION`` of the stated duration missing.
    """
    if stated is None or not math.isfinite(stated) or stated <= 0:
        return
    missing = stated - decoded
    if missing > SHORTFALL_SECONDS and missing > SHORTFALL_FRACTION * stated:
        raise MediaError(path, f"truncated: the {what} decodes to {decoded:.2f} s of the {stated:.2f} s its "
                               f"container states")


def stated_seconds(container, stream, use_container: bool = True) -> float | None:
    """A stream's duration from its own header, else (``use_container``) from the container's."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if use_container and container.duration is not None:
        return container.duration / decoder("av").time_base
    return None



def check_file(path: Path) -> None:
    """Raise :class:`MediaError` for a missing or empty file."""
    if not path.is_file():
        raise MediaError(path, "file not found")
    if path.stat().st_size == 0:
        raise MediaError(path, "empty file (0 bytes)")

