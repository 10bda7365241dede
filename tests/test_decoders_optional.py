"""Without PyAV and soundfile, as on a GPU compute node: gapkit imports and trains from a cache, and decoding media
says which package is missing (a subprocess in which both are blocked)."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fixtures_media import tone, write_video, write_wav
from gapkit.profiles import get_profile
from gapkit.runs import load_data

ROOT = Path(__file__).resolve().parents[1]
BLOCK = "import sys\nsys.modules['av'] = None\nsys.modules['soundfile'] = None\n"


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=900, env={**os.environ, **{k: str(v) for k, v in env.items()}})


@pytest.fixture(scope="module")
def smoke_cache(tmp_path_factory):
    """The smoke profile's synthetic corpus and its cache entries (as ``synthetic`` and read as ``crema-d``)."""
    root = tmp_path_factory.mktemp("without-decoders")
    env = {"GAPKIT_DATA": root / "data", "GAPKIT_CACHE": root / "cache"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update({k: str(v) for k, v in env.items()})
    try:
        profile = get_profile("smoke")
        synthetic = load_data(profile, "synthetic")
        corpus = Path(synthetic.info["data_root"])
        load_data(profile, "crema-d", corpus)
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return root, env, corpus


def test_import_without_decoders_and_decoding_names_the_missing_package(tmp_path):
    wav = write_wav(tmp_path / "a.wav", tone(440, 1.0, 8000), 8000)
    flv = write_video(tmp_path / "v.flv", 1.5)
    done = _python(f"""
        import gapkit, gapkit.data, gapkit.data.cache, gapkit.training, gapkit.runs, gapkit.studies
        from gapkit.data.media import MissingDecoderError, decode_clip, read_video_frames, read_wav
        from gapkit.data.base import Preprocessing
        for call, package in ((lambda: read_wav({str(wav)!r}, 8000), "soundfile"),
                              (lambda: read_video_frames({str(flv)!r}, 1.0), "av"),
                              (lambda: decode_clip({str(flv)!r}, {str(flv)!r}, Preprocessing(sample_rate=8000,
                                                   frames=1, frame_size=8)), "av")):
            try:
                call()
            except MissingDecoderError as exc:
                assert exc.package == package and repr(package) in str(exc) and "not installed" in str(exc), exc
            else:
                raise AssertionError("decoded without " + package)
        assert sys.modules["av"] is None and sys.modules["soundfile"] is None
        print("ok")
        """)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_a_cache_build_without_decoders_stops_with_the_package_not_skipped_clips(tmp_path):
    from fixtures_media import make_cremad
    make_cremad(tmp_path / "corpus", actors=(1001,), labels=("NEU", "HAP"), video_seconds=1.5)
    done = _python(f"""
        from gapkit.data import load_dataset
        from gapkit.data.base import Preprocessing
        from gapkit.data.media import MissingDecoderError
        try:
            load_dataset("crema-d", {str(tmp_path / "corpus")!r}, Preprocessing(sample_rate=8000, frames=1,
                         frame_size=8), cache_root={str(tmp_path / "cache")!r}, on_error="skip")
        except MissingDecoderError as exc:
            print(exc.package)
        """)
    assert done.returncode == 0 and done.stdout.strip() in ("av", "soundfile"), done.stderr[-3000:]


def _train(env, out, *args) -> subprocess.CompletedProcess:
    return _python(f"""
        from gapkit.__main__ import main
        code = main(["train", "--profile", "smoke", "--method", "adaptive", "--seed", "0", "--out", {str(out)!r},
                     "--quiet", "--json", *{list(args)!r}])
        assert sys.modules["av"] is None and sys.modules["soundfile"] is None
        sys.exit(code)
        """, **env)


def test_the_smoke_profile_trains_from_an_existing_cache_without_decoders(smoke_cache):
    root, env, corpus = smoke_cache
    done = _train(env, root / "run-crema-d", "--dataset", "crema-d", "--data-root", str(corpus))
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((root / "run-crema-d" / "metrics.json").read_text())
    assert metrics["epochs"] == 4 and not metrics["data"]["cache_built"]


def test_the_smoke_profile_trains_on_the_synthetic_corpus_without_decoders(smoke_cache):
    root, env, _ = smoke_cache
    done = _train(env, root / "run-synthetic", "--dataset", "synthetic")
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((root / "run-synthetic" / "metrics.json").read_text())
    assert metrics["epochs"] == 4 and not metrics["data"]["cache_built"]
