"""The embedded synthetic corpus: CREMA-D layout and split format, determinism, degradation, atomic generation."""
import hashlib
import math
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

import gapkit.data.synthetic as synthetic
from gapkit.data.synthetic import CLASSES, SyntheticSpec, ensure_corpus, read_degradation

SPEC = SyntheticSpec(clips=60, seed=3)
NAME = re.compile(r"^(1\d{3})_S(\d{2})_(NEU|HAP|SAD|FEA|DIS|ANG)_(LO|MD|HI|XX)$")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return ensure_corpus(SPEC, tmp_path_factory.mktemp("a") / "corpus", workers=1)


def _split(root: Path, part: str) -> list[tuple[str, str]]:
    text = (root / f"{part}.csv").read_bytes().decode("utf-8-sig")
    return [tuple(line.split(",")) for line in text.split("\r\n")[:-1]]


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_counts(corpus):
    wavs = sorted(p.stem for p in (corpus / "AudioWAV").glob("*.wav"))
    folders = sorted(p.name for p in (corpus / "VideoFrames").iterdir())
    train, test = _split(corpus, "train"), _split(corpus, "test")
    assert len(wavs) == SPEC.clips and folders == wavs
    assert sorted(c for c, _ in train + test) == wavs
    assert not {c for c, _ in train} & {c for c, _ in test}
    # stratified 90/10: 10 clips per class, 1 of each in test
    assert sorted(lab for _, lab in test) == sorted(CLASSES)
    info = synthetic.json.loads((corpus / "spec.json").read_text())
    assert info["key"] == SPEC.key() and info["classes"] == CLASSES and info["clips"] == SPEC.clips
    assert info["counts"]["test"] == {c: 1 for c in CLASSES}
    assert info["counts"]["train"] == {c: 9 for c in CLASSES}


def test_split_files_have_the_peer_codebases_format(corpus):
    for part in ("train", "test"):
        raw = (corpus / f"{part}.csv").read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf") and raw.count(b"\xef\xbb\xbf") == 1
        assert raw.endswith(b"\r\n") and raw.count(b"\n") == raw.count(b"\r\n")
        for clip, label in _split(corpus, part):  # no header: every line is a clip
            assert NAME.match(clip), clip
            assert label in CLASSES and clip.split("_")[2] == label


def test_clip_names_follow_cremad(corpus):
    names = [p.stem for p in (corpus / "AudioWAV").glob("*.wav")]
    assert len(set(names)) == len(names)
    parts = [NAME.match(n).groups() for n in names]
    assert min(int(actor) for actor, *_ in parts) == 1001
    assert all(level == "XX" for _, _, emotion, level in parts if emotion == "NEU")
    assert any(level != "XX" for *_, level in parts)  # sentence S00 carries graded intensities
    assert {emotion for _, _, emotion, _ in parts} == set(CLASSES)


def test_wavs_are_16k_mono_pcm16_of_about_2_to_3_seconds(corpus):
    for path in (corpus / "AudioWAV").glob("*.wav"):
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert SPEC.min_seconds - 1e-3 <= info.duration <= SPEC.max_seconds + 1e-3
        audio, _ = sf.read(path)
        assert 0.1 < np.abs(audio).max() < 1.0  # audible and not clipped


def test_one_frame_per_started_second(corpus):
    counts = set()
    for path in (corpus / "AudioWAV").glob("*.wav"):
        frames = sorted((corpus / "VideoFrames" / path.stem).iterdir())
        expected = math.ceil(sf.info(path).frames / 16000)
        assert [f.name for f in frames] == [f"frame_{i:03d}.png" for i in range(expected)]
        counts.add(expected)
        with Image.open(frames[0]) as image:
            assert (image.mode, image.size) == ("RGB", (SPEC.frame_size, SPEC.frame_size))
    assert counts == {2, 3}


def test_same_spec_gives_identical_bytes_whatever_the_workers(corpus, tmp_path):
    again = ensure_corpus(SPEC, tmp_path / "again", workers=2)
    assert _hashes(again) == _hashes(corpus)


def test_another_seed_gives_other_content(corpus, tmp_path):
    other = ensure_corpus(SyntheticSpec(clips=12, seed=SPEC.seed + 1), tmp_path / "other", workers=1)
    mine, theirs = _hashes(corpus), _hashes(other)
    shared = [p for p in theirs if p.startswith(("AudioWAV", "VideoFrames")) and p in mine]
    assert shared and all(mine[p] != theirs[p] for p in shared)


def test_degradation_is_recorded_and_matches_the_spec(corpus):
    degraded = read_degradation(corpus)
    assert sorted(degraded) == sorted(p.stem for p in (corpus / "AudioWAV").glob("*.wav"))
    n = round(SPEC.degraded_fraction * SPEC.clips)
    kinds = {}
    for row in (corpus / "degradation.csv").read_text().splitlines()[1:]:
        clip, which, kind = row.split(",")
        kinds.setdefault(which, set()).add(kind)
    assert (corpus / "degradation.csv").read_text().splitlines()[0] == "clip,degraded,kind"
    assert sum(v != "none" for v in degraded.values()) == n
    assert sum(v == "audio" for v in degraded.values()) == round(SPEC.audio_degraded_share * n)
    assert kinds["none"] == {"none"} and kinds["audio"] == {"noise"} and kinds["visual"] <= {"occlusion", "blur"}


def test_degraded_audio_is_drowned_in_noise(corpus):
    """Speech pauses (syllable troughs, silences) are quiet in clean clips, filled with noise in degraded ones."""
    def pause_to_peak(clip):
        audio, sr = sf.read(corpus / "AudioWAV" / f"{clip}.wav")
        frames = audio[: len(audio) // 400 * 400].reshape(-1, 400)
        energy = np.sort((frames ** 2).mean(1))
        return energy[len(energy) // 10] / energy[-len(energy) // 10]
    degraded = read_degradation(corpus)
    clean = [pause_to_peak(c) for c, d in degraded.items() if d == "none"]
    noisy = [pause_to_peak(c) for c, d in degraded.items() if d == "audio"]
    assert min(noisy) > np.median(clean)


def test_complete_corpus_is_reused_not_rewritten(corpus):
    before = {p: p.stat().st_mtime_ns for p in corpus.rglob("*")}
    assert ensure_corpus(SPEC, corpus) == corpus
    assert {p: p.stat().st_mtime_ns for p in corpus.rglob("*")} == before


def test_default_root_is_named_by_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("GAPKIT_DATA", str(tmp_path))
    spec = SyntheticSpec(clips=6)
    assert re.fullmatch(r"[0-9a-f]{16}", spec.key()) and spec.key() == SyntheticSpec(clips=6).key()
    assert spec.key() != SyntheticSpec(clips=6, visual_jitter=1.1).key()
    assert ensure_corpus(spec, workers=1) == tmp_path / f"synthetic-{spec.key()}"


def test_leftover_temporary_folder_and_missing_spec_regenerate(tmp_path):
    spec = SyntheticSpec(clips=12)
    root = tmp_path / "corpus"
    leftover = tmp_path / "corpus.tmp-999999999"  # from a killed run: no such process
    (leftover / "AudioWAV").mkdir(parents=True)
    ensure_corpus(spec, root, workers=1)
    assert not leftover.exists() and (root / "spec.json").is_file()
    reference = _hashes(root)

    (root / "spec.json").unlink()  # as if the corpus were incomplete
    next(iter((root / "AudioWAV").glob("*.wav"))).unlink()
    assert ensure_corpus(spec, root, workers=1) == root
    assert _hashes(root) == reference
    assert [p.name for p in tmp_path.iterdir()] == ["corpus"]


def test_failed_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    made = []

    def failing(job):
        if len(made) == 5:
            raise RuntimeError("killed")
        made.append(job)
        return real(job)

    real = synthetic.make_clip
    monkeypatch.setattr(synthetic, "make_clip", failing)
    with pytest.raises(RuntimeError, match="killed"):
        ensure_corpus(SyntheticSpec(clips=12), tmp_path / "corpus", workers=1)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_a_folder_that_is_not_a_corpus(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        ensure_corpus(SyntheticSpec(clips=6), root, workers=1)
    assert (root / "notes.txt").read_text() == "keep me"
    assert not list(tmp_path.glob("mine.tmp-*"))
