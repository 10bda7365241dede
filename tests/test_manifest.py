"""A CSV manifest: image, frame-folder and video visuals, any sample rate, its errors."""
import shutil
from pathlib import Path

import pytest
from PIL import Image

from fixtures_media import tone, write_video, write_wav
from gapkit.data import carve_validation, load_dataset
from gapkit.data.base import Preprocessing
from gapkit.data.manifest import read_corpus
from gapkit.data.media import ListingError, MediaError

PRE = Preprocessing(sample_rate=8000, clip_seconds=1.0, n_fft=64, hop_length=200, frames=2, frame_size=16)
HEADER = "audio,visual,label,split"


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Four clips' media: wavs at 8, 16, 22.05 and 44.1 kHz; an image, a frames folder, an MP4 and an FLV."""
    root = tmp_path_factory.mktemp("template") / "media"
    for name, rate in (("a", 8000), ("b", 16000), ("c", 22050), ("d", 44100)):
        write_wav(root / "sound" / f"{name}.wav", tone(500, 0.8, rate), rate)
    (root / "pictures").mkdir()
    Image.new("L", (30, 20), 200).save(root / "pictures" / "a.png")
    (root / "frames" / "b").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (24, 24), (0, 80 * i, 0)).save(root / "frames" / "b" / f"{i}.png")
    write_video(root / "video" / "c.mp4", 2.0, container="mp4", codec="mpeg4")
    write_video(root / "video" / "d.flv", 2.0)
    return root


def _manifest(media, tmp_path, rows, header=HEADER):
    root = Path(shutil.copytree(media, tmp_path / "corpus"))
    (root / "manifest.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return root / "manifest.csv"


ROWS = ["sound/a.wav,pictures/a.png,2,train", "sound/b.wav,frames/b,10,train", "sound/c.wav,video/c.mp4,2,test",
        "sound/d.wav,video/d.flv,10,val"]


def test_manifest_with_image_frames_folder_and_videos(media, tmp_path):
    path = _manifest(media, tmp_path, ROWS)
    data = load_dataset("manifest", path, PRE, cache_root=tmp_path / "cache")
    assert data.classes == ["2", "10"]  # integers sort as numbers
    assert data.train.clips == ["sound/a.wav", "sound/b.wav"] and data.val.clips == ["sound/d.wav"]
    assert data.train.labels.tolist() == [0, 1] and data.info["val_source"] == "corpus"
    assert data.train.audio.shape == (2, 1, 33, 41) and data.test.visual.shape == (1, 2, 3, 16, 21)
    image, folder = data.train.visual
    assert bool((image == 200).all())  # one grey image, in colour, for both frames
    assert [int(f[1].float().mean()) for f in folder] == [0, 160]  # frames 0 and 2 of 0..2
    assert data.info["manifest"] == str(path)


def test_folder_as_data_root_and_val_carved_when_absent(media, tmp_path):
    rows = [r.replace(",val", ",train") for r in ROWS]
    path = _manifest(media, tmp_path, rows)
    data = load_dataset("manifest", path.parent, PRE, val_fraction=0.5, cache_root=tmp_path / "cache")
    # half of class 10's two clips go to val; class 2's only train clip stays in train
    assert data.train.clips == ["sound/a.wav", "sound/b.wav"] or data.train.clips == ["sound/a.wav", "sound/d.wav"]
    assert len(data.val) == 1 and len(data.test) == 1
    assert data.info["val_source"].startswith("carved from train")


def test_string_labels_sort_as_text(media, tmp_path):
    rows = [r.replace(",2,", ",dog,").replace(",10,", ",cat,") for r in ROWS]
    assert read_corpus(_manifest(media, tmp_path, rows)).classes == ["cat", "dog"]


@pytest.mark.parametrize("header, rows, line, message", [
    ("audio,visual,split", ROWS, 1, "missing column.*label"),
    (HEADER, ROWS[:2] + ["sound/c.wav,video/c.mp4,2,holdout"], 4, "unknown split 'holdout'"),
    (HEADER, ROWS[:2] + ["sound/c.wav,,2,test"], 4, "empty visual"),
    (HEADER, ROWS + ["sound/a.wav,pictures/a.png,2,test"], 6, "already listed on line 2"),
])
def test_listing_errors_name_file_and_line(media, tmp_path, header, rows, line, message):
    path = _manifest(media, tmp_path, rows, header)
    with pytest.raises(ListingError, match=message) as info:
        read_corpus(path)
    assert f"{path}, line {line}:" in str(info.value)


def test_no_test_rows(media, tmp_path):
    with pytest.raises(ListingError, match="no 'test' rows"):
        read_corpus(_manifest(media, tmp_path, [ROWS[0], ROWS[1]]))


def test_missing_and_broken_files(media, tmp_path):
    path = _manifest(media, tmp_path, ROWS + ["sound/gone.wav,pictures/a.png,10,train"])
    with pytest.raises(ListingError) as info:
        load_dataset("manifest", path, PRE, cache_root=tmp_path / "cache")
    assert f"{path}, line 6" in str(info.value) and "gone.wav" in str(info.value)
    (path.parent / "video" / "d.flv").write_bytes(b"\x00" * 64)
    data = load_dataset("manifest", path, PRE, on_error="skip", cache_root=tmp_path / "cache")
    assert data.info["skipped_count"] == 2 and len(data.train) == 2 and len(data.val) == 0
    assert {s["clip"] for s in data.info["skipped"]} == {"sound/gone.wav", "sound/d.wav"}
    # without skip the skipped clips are decoded again: today's first error, naming its file and listing line
    with pytest.raises(ListingError, match="gone.wav"):
        load_dataset("manifest", path, PRE, cache_root=tmp_path / "cache")


def test_manifest_needs_a_path(tmp_path):
    with pytest.raises(ValueError, match="needs data_root"):
        load_dataset("manifest")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        load_dataset("manifest", tmp_path / "missing.csv")


def test_path_aliases_are_one_clip(media, tmp_path):
    rows = ["./sound/a.wav,./pictures/a.png,2,train", "sound/b.wav,frames/b/,10,train",
            "sound//c.wav,video/../video/c.mp4,2,test"]
    corpus = read_corpus(_manifest(media, tmp_path / "ok", rows))
    assert [s.clip for s in corpus.sources] == ["sound/a.wav", "sound/b.wav", "sound/c.wav"]
    assert corpus.splits["test"] == ["sound/c.wav"]
    path = _manifest(media, tmp_path / "alias", rows + ["sound/./a.wav,pictures/a.png,2,test"])
    with pytest.raises(ListingError, match=r"line 5: audio sound/./a.wav already listed on line 2 "
                                           r"\(written './sound/a.wav' there\)"):
        read_corpus(path)
    absolute = f"{path.parent / 'sound' / 'b.wav'},frames/b,10,test"
    path.write_text("\n".join([HEADER, *rows, absolute]) + "\n", encoding="utf-8")
    with pytest.raises(ListingError, match="line 5: .* already listed on line 3"):
        read_corpus(path)


def test_label_only_in_test_names_the_labels_and_the_listing(media, tmp_path):
    rows = [ROWS[0], ROWS[1], "sound/c.wav,video/c.mp4,bird,test", "sound/d.wav,video/d.flv,fish,val"]
    path = _manifest(media, tmp_path, rows)
    with pytest.raises(ListingError, match="line 5: label\\(s\\) 'fish' appear in the val split but not in train"):
        load_dataset("manifest", path, PRE, cache_root=tmp_path / "cache")
    path.write_text("\n".join([HEADER, *rows[:3]]) + "\n", encoding="utf-8")
    with pytest.raises(ListingError, match="line 4: label\\(s\\) 'bird' appear in the test split") as info:
        load_dataset("manifest", path, PRE, cache_root=tmp_path / "cache")
    assert str(path) in str(info.value) and "Add train clips" in str(info.value)
    assert not (tmp_path / "cache").exists()  # refused before decoding anything


def test_empty_carved_validation_says_why_and_how_to_fix(media, tmp_path):
    rows = [r.replace(",val", ",train") for r in ROWS]  # 3 train clips: 1 of class 2, 2 of class 10
    path = _manifest(media, tmp_path, rows)
    with pytest.raises(ValueError, match=r"carved from train is empty: val_fraction 0.1 .* largest class has 2 "
                                         r"train clips; a class needs 5 .* at least 0.25 \(--set val_fraction"):
        load_dataset("manifest", path, PRE, val_fraction=0.1, cache_root=tmp_path / "cache")
    with pytest.raises(ValueError, match="every class has a single train clip"):
        carve_validation([0, 1, 2], 0.5, seed=0)
    assert carve_validation([0, 0, 1], 0.0, seed=0) == ([0, 1, 2], [])  # no validation asked for
