"""AVE: annotations, order files, its own validation split, event segments from MP4 videos."""
import functools
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from fixtures_media import COLOUR_TOLERANCE, shared_metadata, write_video
from gapkit.data import ave, load_dataset
from gapkit.data.base import Preprocessing
from gapkit.data.media import ListingError

shared = functools.partial(shared_metadata, "ave")  # real metadata; the test skips where absent

PRE = Preprocessing(sample_rate=8000, clip_seconds=3.0, n_fft=256, hop_length=200, frames=3, frame_size=16)
LINES = ["Church bell&vid0&good&0&3", "Bark&vid1&good&2&5", "Church bell&vid2&good&1&4", "Bark&vid3&good&0&6",
         "Cat&vid4&good&3&3", "Cat&vid0&good&3&6"]
ORDERS = {"train": [0, 1, 3, 4], "val": [2], "test": [5]}


def _stepped_tone(seconds, rate=16000):
    """Second k is a tone of 400 + 200 k Hz."""
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * (400 + 200 * np.floor(t)) * t)).astype(np.float32)


def _write_orders(folder, orders):
    for part, order in orders.items():
        with h5py.File(folder / f"{part}_order.h5", "w") as f:
            f.create_dataset("order", data=np.array(order, dtype=np.int64))


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("template") / "ave"
    for i in range(5):
        write_video(root / "AVE" / f"vid{i}.mp4", 6.0, rate=4, container="mp4", codec="h264",
                    audio=_stepped_tone(6.0))
    (root / "Annotations.txt").write_text("\n".join(LINES) + "\n")
    _write_orders(root, ORDERS)
    return root


@pytest.fixture
def root(template, tmp_path):
    return Path(shutil.copytree(template, tmp_path / "ave"))


def test_corpus_listing(root):
    corpus = ave.read_corpus(root)
    assert corpus.classes == ["Church bell", "Bark", "Cat"]  # order of first appearance
    assert corpus.splits == {"train": ["0000_vid0", "0001_vid1", "0003_vid3", "0004_vid4"], "val": ["0002_vid2"],
                             "test": ["0005_vid0"]}
    by_clip = {s.clip: s for s in corpus.sources}
    assert by_clip["0001_vid1"].segment == (2.0, 5.0) and by_clip["0001_vid1"].label == 1
    assert by_clip["0004_vid4"].segment == (3.0, 4.0)  # an empty segment widened to one second
    assert by_clip["0005_vid0"].audio == root / "AVE" / "vid0.mp4"


def test_load_takes_frames_and_audio_inside_the_segment(root, tmp_path):
    data = load_dataset("ave", root, PRE, cache_root=tmp_path / "cache")
    assert (len(data.train), len(data.val), len(data.test)) == (4, 1, 1)  # AVE's own val: nothing carved
    assert data.info["val_source"] == "corpus" and data.classes == ["Church bell", "Bark", "Cat"]
    assert data.train.visual.shape == (4, 3, 3, 16, 21) and data.train.audio.shape == (4, 1, 129, 121)
    row = data.train.clips.index("0001_vid1")
    frames = data.train.visual[row].int()
    assert [round(int(f[1].float().mean()) / 40) for f in frames] == [2, 3, 4]  # seconds 2, 3, 4 of the video
    assert all(int(f[0].float().mean()) <= COLOUR_TOLERANCE for f in frames)
    spec = data.train.audio[row, 0].float()
    peak = lambda frames: int(spec[:, frames].mean(dim=1).argmax()) * 8000 / 256  # Hz
    assert abs(peak(slice(10, 30)) - 800) < 40 and abs(peak(slice(90, 110)) - 1200) < 40
    short = data.train.visual[data.train.clips.index("0004_vid4")].int()
    assert [round(int(f[1].float().mean()) / 40) for f in short] == [3, 3, 3]  # one frame, repeated


def test_an_event_longer_than_clip_seconds_is_heard_whole(root, tmp_path):
    """Annotation 3 spans seconds 0-6 of a tone that climbs 200 Hz a second; clip_seconds is 3."""
    data = load_dataset("ave", root, PRE, cache_root=tmp_path / "cache")
    spec = data.train.audio[data.train.clips.index("0003_vid3"), 0].float()
    assert spec.shape == (129, 121)  # the shape of clip_seconds, covering the whole event

    def peak(columns):
        return int(spec[:, columns].mean(dim=1).argmax()) * 8000 / 256  # Hz

    assert abs(peak(slice(2, 12)) - 400) < 40 and abs(peak(slice(110, 119)) - 1400) < 40  # seconds 0 and 5
    assert abs(peak(slice(42, 58)) - 800) < 40  # second 2, at a third of the columns
    frames = data.train.visual[data.train.clips.index("0003_vid3")].int()
    assert [round(int(f[1].float().mean()) / 40) for f in frames] == [1, 3, 5]  # frames over the whole event too


def test_missing_video_raise_and_skip(root, tmp_path):
    (root / "AVE" / "vid3.mp4").unlink()
    with pytest.raises(ListingError) as info:
        load_dataset("ave", root, PRE, cache_root=tmp_path / "cache")
    assert "Annotations.txt, line 4" in str(info.value) and "vid3.mp4" in str(info.value)
    data = load_dataset("ave", root, PRE, cache_root=tmp_path / "cache", on_error="skip")
    assert data.info["skipped_count"] == 1 and data.info["skipped"][0]["clip"] == "0003_vid3"
    assert len(data.train) == 3


def test_videos_directly_under_the_root(root, tmp_path):
    for video in (root / "AVE").iterdir():
        video.rename(root / video.name)
    assert ave.video_path(root, "vid1") == root / "vid1.mp4"
    assert len(load_dataset("ave", root, PRE, cache_root=tmp_path / "cache").train) == 4


@pytest.mark.parametrize("line, message", [("Bark&vid9&good&1", "malformed"), ("Bark&vid9&good&x&3", "not numbers"),
                                           ("Bark&vid9&good&5&3", "not an interval")])
def test_annotation_errors_name_the_line(tmp_path, line, message):
    path = tmp_path / "Annotations.txt"
    path.write_text("\n".join(LINES[:2] + [line]) + "\n")
    with pytest.raises(ListingError, match=message) as info:
        ave.read_annotations(path)
    assert f"{path}, line 3" in str(info.value)


def test_order_errors(tmp_path):
    _write_orders(tmp_path, {"train": [0, 9]})
    with pytest.raises(ListingError, match="index 9 outside"):
        ave.read_order(tmp_path / "train_order.h5", 6)
    with h5py.File(tmp_path / "val_order.h5", "w") as f:
        f.create_dataset("indices", data=np.arange(3))
    with pytest.raises(ListingError, match="no dataset named 'order'"):
        ave.read_order(tmp_path / "val_order.h5", 6)


def test_shipped_metadata_is_the_real_split(tmp_path):
    corpus = ave.read_corpus(tmp_path)  # no metadata in the root: the shipped copies
    assert len(corpus.classes) == 28 and len(corpus.sources) == 4143
    assert {part: len(clips) for part, clips in corpus.splits.items()} == {"train": 3339, "val": 402, "test": 402}
    assert corpus.classes[:3] == ["Church bell", "Male speech, man speaking", "Bark"]
    for name in ("Annotations.txt", "train_order.h5", "val_order.h5", "test_order.h5"):
        assert (ave.RESOURCES / name).read_bytes() == shared(name).read_bytes()
