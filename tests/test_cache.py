"""The decode-once cache: reuse, one entry per parameter set, killed builds, raise vs skip, parallel decoding."""
import json
import os

import pytest
import torch

import gapkit.data.cache as cache
from fixtures_media import make_cremad
from gapkit.data import cremad, load_dataset
from gapkit.data.base import Preprocessing
from gapkit.data.cache import corpus_key, load_or_build
from gapkit.data.media import ListingError, MediaError

PRE = Preprocessing(sample_rate=8000, clip_seconds=1.0, n_fft=64, hop_length=200, frames=2, frame_size=16)


@pytest.fixture
def corpus(tmp_path):
    make_cremad(tmp_path / "corpus", actors=(1001, 1002), labels=("NEU", "HAP"), video_seconds=1.5)
    return tmp_path / "corpus"


def _build(root, cache_root, pre=PRE, **kw):
    return load_or_build(cremad.read_corpus(root).sources, pre, dataset="crema-d", root=root, cache_root=cache_root,
                         **kw)


def _entries(cache_root):
    return sorted(p.name for p in cache_root.iterdir())


def _refuse(*args, **kw):
    raise AssertionError("the cache was decoded again")


def test_second_load_reads_the_cache_without_decoding(corpus, tmp_path, monkeypatch):
    first = _build(corpus, tmp_path / "cache")
    assert first.built and len(first.clips) == 8 and first.clips == sorted(first.clips)
    assert first.audio.shape == (8, 1, 33, 41) and first.audio.dtype == torch.float16
    assert first.visual.shape == (8, 2, 3, 16, 21) and first.visual.dtype == torch.uint8
    monkeypatch.setattr(cache, "decode_clip", _refuse)
    second = _build(corpus, tmp_path / "cache")
    assert not second.built and second.clips == first.clips and second.key == first.key
    assert torch.equal(second.audio, first.audio) and torch.equal(second.visual, first.visual)
    assert torch.equal(second.labels, first.labels)
    manifest = json.loads((second.path / "manifest.json").read_text())
    assert manifest["preprocessing"] == PRE.to_dict() and manifest["clips"] == 8


def test_a_changed_parameter_builds_a_new_entry(corpus, tmp_path):
    a = _build(corpus, tmp_path / "cache")
    b = _build(corpus, tmp_path / "cache", Preprocessing(**{**PRE.to_dict(), "frames": 1}))
    assert a.path != b.path and b.built and b.visual.shape[1] == 1
    assert len(_entries(tmp_path / "cache")) == 2
    assert _build(corpus, tmp_path / "cache").path == a.path and len(_entries(tmp_path / "cache")) == 2


def test_the_key_covers_the_corpus_identity(corpus):
    sources = cremad.read_corpus(corpus).sources
    key = corpus_key("crema-d", corpus, sources, PRE)
    assert key == corpus_key("crema-d", corpus, sources[::-1], PRE)  # order does not matter
    assert key != corpus_key("crema-d", corpus, sources[1:], PRE)
    assert key != corpus_key("synthetic", corpus, sources, PRE)
    assert key.startswith(PRE.key())


def test_a_killed_build_leaves_nothing_read_as_good(corpus, tmp_path, monkeypatch):
    cache_root = tmp_path / "cache"
    real, calls = cache.decode_clip, []

    def dies_on_the_third(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as a user's Ctrl-C in the middle of the build
        return real(*args)

    monkeypatch.setattr(cache, "decode_clip", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        _build(corpus, cache_root)
    assert _entries(cache_root) == []
    # a hard kill leaves its temporary folder behind: a later build ignores and removes it
    entry_name = f"crema-d-{corpus_key('crema-d', corpus, cremad.read_corpus(corpus).sources, PRE)}"
    leftover = cache_root / f"{entry_name}.tmp-999999999"
    leftover.mkdir()
    (leftover / "audio.npy").write_bytes(b"partial")
    monkeypatch.setattr(cache, "decode_clip", real)
    rebuilt = _build(corpus, cache_root)
    assert rebuilt.built and len(rebuilt.clips) == 8
    assert _entries(cache_root) == [entry_name]


def test_an_entry_without_its_manifest_is_rebuilt(corpus, tmp_path):
    entry = _build(corpus, tmp_path / "cache").path
    (entry / "manifest.json").unlink()
    again = _build(corpus, tmp_path / "cache")
    assert again.built and again.path == entry and (entry / "manifest.json").is_file()


def _break_two_clips(root):
    wav = sorted((root / "AudioWAV").iterdir())[1]
    wav.write_bytes(wav.read_bytes()[:60])  # truncated
    flv = sorted((root / "VideoFlash").iterdir())[4]
    flv.unlink()
    return wav, flv


def test_on_error_raise_names_the_file(corpus, tmp_path):
    wav, flv = _break_two_clips(corpus)
    with pytest.raises(ListingError) as info:
        _build(corpus, tmp_path / "cache")
    assert str(flv) in str(info.value) and "line" in str(info.value)  # missing: the split file's line
    flv.write_bytes(sorted((corpus / "VideoFlash").iterdir())[0].read_bytes())  # restore it
    with pytest.raises(MediaError, match="truncated") as info:
        _build(corpus, tmp_path / "cache")
    assert str(wav) in str(info.value) and wav.stem in str(info.value)
    assert _entries(tmp_path / "cache") == []


def test_on_error_skip_counts_and_lists(corpus, tmp_path):
    wav, flv = _break_two_clips(corpus)
    out = _build(corpus, tmp_path / "cache", on_error="skip")
    assert len(out.clips) == 6 and out.audio.shape[0] == 6 and out.visual.shape[0] == 6 and len(out.labels) == 6
    assert {s["file"] for s in out.skipped} == {str(wav), str(flv)}
    assert {s["clip"] for s in out.skipped} == {wav.stem, flv.stem}
    assert not {wav.stem, flv.stem} & set(out.clips)
    manifest = json.loads((out.path / "manifest.json").read_text())
    assert manifest["skipped"] == out.skipped and manifest["requested"] == 8
    # under on_error="raise" the skipped clips are decoded again: the error is today's, naming the file
    with pytest.raises(ListingError, match=flv.name):
        _build(corpus, tmp_path / "cache")


def test_skipped_clips_are_retried_once_fixed(corpus, tmp_path):
    good_wav = sorted((corpus / "AudioWAV").iterdir())[0].read_bytes()
    wav, flv = _break_two_clips(corpus)
    assert len(_build(corpus, tmp_path / "cache", on_error="skip").clips) == 6
    wav.write_bytes(good_wav)
    with pytest.warns(UserWarning, match=wav.name):
        again = _build(corpus, tmp_path / "cache", on_error="skip")
    assert again.built and len(again.clips) == 7 and wav.stem in again.clips and flv.stem not in again.clips


def test_a_changed_media_file_rebuilds_the_entry(corpus, tmp_path, monkeypatch):
    first = _build(corpus, tmp_path / "cache")
    wav = sorted((corpus / "AudioWAV").iterdir())[2]
    data = bytearray(wav.read_bytes())
    data[20000:24000] = bytes(4000)  # the same size, silence mid-clip: only the content hash can tell
    wav.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=f"{wav.name} changed content"):
        second = _build(corpus, tmp_path / "cache")
    assert second.built and second.path == first.path and second.content_digest != first.content_digest
    row = second.clips.index(wav.stem)
    assert not torch.equal(second.audio[row], first.audio[row])
    others = [i for i in range(len(second.clips)) if i != row]
    assert torch.equal(second.audio[others], first.audio[others])


def test_a_touched_file_with_the_same_content_keeps_the_entry(corpus, tmp_path, monkeypatch):
    first = _build(corpus, tmp_path / "cache")
    wav = sorted((corpus / "AudioWAV").iterdir())[2]
    os.utime(wav, ns=(1, 1))
    monkeypatch.setattr(cache, "decode_clip", _refuse)
    second = _build(corpus, tmp_path / "cache")
    assert not second.built and second.content_digest == first.content_digest
    recorded = json.loads((second.path / "manifest.json").read_text())["media"][f"AudioWAV/{wav.name}"]
    assert recorded[1] == 1  # the new time is remembered: the next load does not hash the file again


def test_a_moved_corpus_finds_its_entry(corpus, tmp_path, monkeypatch):
    import shutil

    first = _build(corpus, tmp_path / "cache")
    moved = tmp_path / "elsewhere" / "renamed"
    shutil.copytree(corpus, moved)  # a copy: new paths and new modification times, the same bytes
    monkeypatch.setattr(cache, "decode_clip", _refuse)
    second = _build(moved, tmp_path / "cache")
    assert not second.built and second.path == first.path and second.content_digest == first.content_digest


def test_two_worker_processes_give_the_same_bytes(corpus, tmp_path):
    one = _build(corpus, tmp_path / "one", workers=1)
    two = _build(corpus, tmp_path / "two", workers=2)
    assert one.clips == two.clips and torch.equal(one.labels, two.labels)
    assert torch.equal(one.audio, two.audio) and torch.equal(one.visual, two.visual)
    assert os.path.basename(one.path) == os.path.basename(two.path)


# --------------------------------------------------------------------------- what an entry holds, how many decode it

def test_frames_are_cached_at_the_corpus_aspect_ratio(corpus, tmp_path):
    built = _build(corpus, tmp_path / "cache")  # 64 x 48 videos: 4:3
    manifest = json.loads((built.path / "manifest.json").read_text())
    assert manifest["aspect"] == pytest.approx(4 / 3) and manifest["visual_shape"] == [2, 3, 16, 21]
    assert built.aspect == pytest.approx(4 / 3) and built.visual.shape[-2:] == (16, 21)
    data = load_dataset("crema-d", corpus, PRE, cache_root=tmp_path / "cache", val_fraction=0.3)
    assert data.info["frame_aspect"] == pytest.approx(4 / 3) and not data.info["cache_built"]


def test_an_entry_of_an_older_decoding_is_never_read(corpus, tmp_path, monkeypatch):
    sources = cremad.read_corpus(corpus).sources
    key = corpus_key("crema-d", corpus, sources, PRE)
    monkeypatch.setattr(cache, "FORMAT", cache.FORMAT - 1)
    old_key = corpus_key("crema-d", corpus, sources, PRE)
    assert old_key != key and old_key.split("-")[0] == key.split("-")[0]  # the same preprocessing, another entry
    old = _build(corpus, tmp_path / "cache")
    monkeypatch.undo()
    new = _build(corpus, tmp_path / "cache")
    assert new.built and new.path != old.path
    # an entry under today's key whose manifest names another format is built again, not read
    manifest = json.loads((new.path / "manifest.json").read_text())
    (new.path / "manifest.json").write_text(json.dumps({**manifest, "format": cache.FORMAT - 1}))
    assert _build(corpus, tmp_path / "cache").built


def test_decoding_processes_follow_the_cores_and_the_clips(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert [cache.decode_processes(n) for n in (0, 63, 64, 200, 511, 512, 7442)] == [1, 1, 1, 3, 7, 8, 8]
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert cache.decode_processes(7442) == 1


def test_the_decoding_pool_is_spawned(corpus, tmp_path, monkeypatch):
    methods = []
    real = cache.multiprocessing.get_context

    def record(method=None):
        methods.append(method)
        return real(method)
    monkeypatch.setattr(cache.multiprocessing, "get_context", record)
    _build(corpus, tmp_path / "cache", workers=2)
    assert methods == ["spawn"]
