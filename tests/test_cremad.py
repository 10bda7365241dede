"""CREMA-D: split files, visual sources, load_dataset, validation carving, speaker split, download and verify."""
import csv
import functools
import gzip
import hashlib
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image

from fixtures_media import cut_file, make_cremad, shared_metadata, write_split
from gapkit.data import carve_validation, cremad, load_dataset
from gapkit.data.base import Preprocessing
from gapkit.data.cremad import (CLASSES, SPLIT_SHA256, actor_of, download_splits, find_split_files, read_corpus,
                                read_split_file, speaker_split, verify, visual_path)
from gapkit.data.media import ListingError, MediaError

shared = functools.partial(shared_metadata, "crema-d")  # real metadata; the test skips where absent

PRE = Preprocessing(sample_rate=8000, clip_seconds=1.0, n_fft=64, hop_length=200, frames=2, frame_size=16)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("template") / "corpus"
    make_cremad(root)
    return root


@pytest.fixture
def corpus(template, tmp_path):
    return Path(shutil.copytree(template, tmp_path / "corpus"))


# --------------------------------------------------------------------------- split files

def test_split_file_with_bom_and_crlf(tmp_path):
    path = write_split(tmp_path / "train.csv", [("1001_DFA_ANG_XX", "ANG"), ("1002_IEO_NEU_LO", "NEU")])
    entries = read_split_file(path)
    assert [(e.clip, e.label, e.line) for e in entries] == [("1001_DFA_ANG_XX", "ANG", 1),
                                                            ("1002_IEO_NEU_LO", "NEU", 2)]
    plain = write_split(tmp_path / "plain.csv", [("1001_DFA_ANG_XX", "ANG")], bom=False, crlf=False)
    assert read_split_file(plain)[0].clip == "1001_DFA_ANG_XX"


@pytest.mark.parametrize("lines, line, message", [
    (["1001_A_NEU_XX,NEU", "1001_B_NEU_XX"], 2, "malformed"),
    (["1001_A_NEU_XX,NEU", "1001_B_NEU_XX,NEU,extra"], 2, "malformed"),
    (["1001_A_NEU_XX,NEU", "1001_B_CAL_XX,CAL"], 2, "'CAL'"),
    (["1001_A_NEU_XX,NEU", "1001_B_NEU_XX,NEU", "1001_A_NEU_XX,NEU"], 3, "duplicate clip id 1001_A_NEU_XX"),
])
def test_split_file_errors_name_file_and_line(tmp_path, lines, line, message):
    path = tmp_path / "train.csv"
    path.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode())
    with pytest.raises(ListingError, match=message) as info:
        read_split_file(path)
    assert f"{path}, line {line}:" in str(info.value) and info.value.line == line


def test_empty_and_non_utf8_split_files(tmp_path):
    (tmp_path / "empty.csv").write_bytes("\ufeff\r\n".encode())
    with pytest.raises(ListingError, match="empty split") as info:
        read_split_file(tmp_path / "empty.csv")
    assert "empty.csv" in str(info.value)
    (tmp_path / "latin.csv").write_bytes(b"1001_A_NEU_XX,NEU\r\n\xe9\xff\r\n")
    with pytest.raises(ListingError, match="not UTF-8"):
        read_split_file(tmp_path / "latin.csv")


def test_clip_in_train_and_test_is_a_duplicate(corpus):
    test_rows = read_split_file(corpus / "test.csv")
    clip = read_split_file(corpus / "train.csv")[0]
    write_split(corpus / "test.csv", [(e.clip, e.label) for e in test_rows] + [(clip.clip, clip.label)])
    with pytest.raises(ListingError, match=f"duplicate clip id {clip.clip}") as info:
        read_corpus(corpus)
    assert f"test.csv, line {len(test_rows) + 1}" in str(info.value)


def test_missing_media_names_split_file_line_and_file(corpus, tmp_path):
    entries = read_split_file(corpus / "train.csv")
    gone = corpus / "AudioWAV" / f"{entries[2].clip}.wav"
    gone.unlink()
    with pytest.raises(ListingError) as info:
        load_dataset("crema-d", corpus, PRE, cache_root=tmp_path / "cache")
    assert f"train.csv, line 3" in str(info.value) and str(gone) in str(info.value)


def test_missing_split_files_say_how_to_download(tmp_path):
    (tmp_path / "AudioWAV").mkdir()
    with pytest.raises(FileNotFoundError, match="--download-splits") as info:
        find_split_files(tmp_path)
    assert "train.csv" in str(info.value) and str(tmp_path) in str(info.value)


def test_splits_dir(corpus, tmp_path):
    elsewhere = tmp_path / "splits"
    elsewhere.mkdir()
    for name in ("train.csv", "test.csv"):
        (corpus / name).rename(elsewhere / name)
    assert find_split_files(corpus, elsewhere)["train.csv"] == elsewhere / "train.csv"
    data = load_dataset("crema-d", corpus, PRE, splits_dir=elsewhere, cache_root=tmp_path / "cache")
    assert len(data.test) == 6


# --------------------------------------------------------------------------- download

def test_download_checks_the_pinned_checksum(tmp_path):
    server = tmp_path / "server"
    server.mkdir()
    write_split(server / "train.csv", [("1001_A_NEU_XX", "NEU")])
    write_split(server / "test.csv", [("1001_B_NEU_XX", "NEU")])
    dest = tmp_path / "dest"
    with pytest.raises(ValueError, match="differs from the pinned") as info:
        download_splits(dest, base_url=server.as_uri() + "/")
    assert "train.csv" in str(info.value)
    assert not any(dest.iterdir())  # nothing written


def test_download_of_the_real_files(tmp_path):
    server = tmp_path / "server"
    server.mkdir()
    for name in ("train", "test"):
        (server / f"{name}.csv").write_bytes(shared(f"ogm-ge-{name}.csv").read_bytes())
    written = download_splits(tmp_path / "dest", base_url=server.as_uri() + "/")
    assert [p.name for p in written] == ["train.csv", "test.csv"]
    for path in written:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == SPLIT_SHA256[path.name]
    assert not list((tmp_path / "dest").glob("*.part-*"))


# --------------------------------------------------------------------------- layout and loading

def test_visual_source_prefers_frame_folders(corpus):
    clip = read_split_file(corpus / "train.csv")[0].clip
    assert visual_path(corpus, clip) == corpus / "VideoFlash" / f"{clip}.flv"
    (corpus / "Image-01-FPS" / clip).mkdir(parents=True)
    assert visual_path(corpus, clip) == corpus / "Image-01-FPS" / clip
    (corpus / "VideoFrames" / clip).mkdir(parents=True)
    assert visual_path(corpus, clip) == corpus / "VideoFrames" / clip


def test_load_frames_folder_instead_of_flv(corpus, tmp_path):
    clip = read_split_file(corpus / "train.csv")[0].clip
    folder = corpus / "Image-01-FPS" / clip
    folder.mkdir(parents=True)
    for i in range(2):
        Image.new("RGB", (40, 30), (0, 0, 250)).save(folder / f"{i:05d}.jpg")
    data = load_dataset("crema-d", corpus, PRE, val_fraction=0.0, cache_root=tmp_path / "cache")
    frames = data.train.visual[data.train.clips.index(clip)]
    assert int(frames[:, 2].float().mean()) > 240 and int(frames[:, 0].float().mean()) < 10


def test_load_dataset_crema_d(corpus, tmp_path):
    data = load_dataset("crema-d", corpus, PRE, cache_root=tmp_path / "cache")
    assert data.classes == CLASSES
    assert (len(data.train), len(data.val), len(data.test)) == (15, 3, 6)
    assert data.train.audio.shape == (15, 1, 33, 41) and data.train.audio.dtype == torch.float16
    assert data.test.visual.shape == (6, 2, 3, 16, 21) and data.test.visual.dtype == torch.uint8
    assert data.test.clips == [e.clip for e in read_split_file(corpus / "test.csv")]
    info = data.info
    assert info["dataset"] == "crema-d" and info["data_root"] == str(corpus.resolve())
    assert info["split_sizes"] == {"train": 15, "val": 3, "test": 6} and info["skipped"] == []
    assert info["class_counts"]["test"] == {"NEU": 2, "HAP": 2, "SAD": 2, "FEA": 0, "DIS": 0, "ANG": 0}
    assert info["preprocessing"] == PRE.to_dict() and info["cache_path"].endswith(info["cache_key"])
    assert info["split_files"]["train.csv"]["ogm_ge_standard"] is False
    assert all(CLASSES[int(y)] == clip.split("_")[2] for clip, y in zip(data.train.clips, data.train.labels))


def test_skip_reports_in_info(corpus, tmp_path):
    flv = sorted((corpus / "VideoFlash").iterdir())[0]
    flv.write_bytes(b"FLV garbage")
    data = load_dataset("crema-d", corpus, PRE, on_error="skip", cache_root=tmp_path / "cache")
    assert data.info["skipped_count"] == 1 and data.info["skipped"][0]["clip"] == flv.stem
    assert sum(data.info["split_sizes"].values()) == 23


def test_validation_is_carved_from_train_stratified_and_seeded(corpus, tmp_path):
    labels = [i % 3 for i in range(60)]
    train, val = carve_validation(labels, 0.1, seed=0)
    assert Counter(labels[i] for i in val) == {0: 2, 1: 2, 2: 2}
    assert sorted(train + val) == list(range(60)) and not set(train) & set(val)
    assert carve_validation(labels, 0.1, seed=0) == (train, val)
    assert carve_validation(labels, 0.1, seed=1)[1] != val

    a = load_dataset("crema-d", corpus, PRE, val_fraction=0.25, split_seed=3, cache_root=tmp_path / "cache")
    b = load_dataset("crema-d", corpus, PRE, val_fraction=0.25, split_seed=3, cache_root=tmp_path / "cache")
    c = load_dataset("crema-d", corpus, PRE, val_fraction=0.25, split_seed=4, cache_root=tmp_path / "cache")
    listed_train = {e.clip for e in read_split_file(corpus / "train.csv")}
    assert set(a.val.clips) <= listed_train and set(a.train.clips) | set(a.val.clips) == listed_train
    assert a.test.clips == c.test.clips  # never from test
    assert a.val.clips == b.val.clips and a.val.clips != c.val.clips
    assert Counter(a.val.labels.tolist()) == {0: 2, 1: 2, 2: 2}  # 0.25 of 6 per class, rounded half up


def test_speaker_split_shares_no_actor(corpus, tmp_path):
    clips = [f"{1001 + a}_S{s:02d}_NEU_XX" for a in range(30) for s in range(3)]
    train, test = speaker_split(clips, seed=0)
    assert not {actor_of(c) for c in train} & {actor_of(c) for c in test}
    assert len({actor_of(c) for c in test}) == 3 and sorted(train + test) == sorted(clips)
    assert speaker_split(clips, seed=0) == (train, test) and speaker_split(clips, seed=1) != (train, test)
    data = load_dataset("crema-d", corpus, PRE, split="speaker", cache_root=tmp_path / "cache")
    train_actors = {actor_of(c) for c in data.train.clips + data.val.clips}
    assert train_actors and not train_actors & {actor_of(c) for c in data.test.clips}
    assert len(data.train) + len(data.val) + len(data.test) == 24 and data.info["split"] == "speaker"


def test_load_dataset_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="synthetic, crema-d, ave, manifest"):
        load_dataset("kinetics", tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_dataset("crema-d", tmp_path / "nowhere")


def test_synthetic_corpus_through_the_crema_d_loader(tmp_path):
    from gapkit.data.synthetic import SyntheticSpec, read_degradation

    spec = SyntheticSpec(clips=36, frame_size=32)
    data = load_dataset("synthetic", tmp_path / "syn", PRE, synthetic=spec, cache_root=tmp_path / "cache")
    loaded = data.train.clips + data.val.clips + data.test.clips
    assert len(loaded) == 36 and data.classes == CLASSES and data.info["synthetic"]["key"] == spec.key()
    assert data.info["degradation"] == {c: k for c, k in read_degradation(tmp_path / "syn").items() if c in loaded}


# --------------------------------------------------------------------------- verify

def _checksums(root, path):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "sha256", "bytes"])
        for file in sorted((root / "AudioWAV").iterdir()) + sorted((root / "VideoFlash").iterdir()):
            data = file.read_bytes()
            writer.writerow([file.relative_to(root).as_posix(), hashlib.sha256(data).hexdigest(), len(data)])
    return path


def test_verify_reports_missing_truncated_corrupt(corpus, tmp_path):
    listing = _checksums(corpus, tmp_path / "sums.csv")
    assert verify(corpus, listing).ok
    wavs, flvs = sorted((corpus / "AudioWAV").iterdir()), sorted((corpus / "VideoFlash").iterdir())
    wavs[0].unlink()
    wavs[1].write_bytes(wavs[1].read_bytes()[:100])
    data = bytearray(flvs[2].read_bytes())
    data[-1] ^= 0xFF
    flvs[2].write_bytes(bytes(data))
    report = verify(corpus, listing)
    assert not report.ok and report.checked == 48
    assert report.missing == [f"AudioWAV/{wavs[0].name}"]
    assert report.truncated == [f"AudioWAV/{wavs[1].name}"]
    assert report.corrupt == [f"VideoFlash/{flvs[2].name}"]
    assert "1 missing, 1 truncated, 1 corrupt" in report.summary() and flvs[2].name in report.summary()


def test_shipped_checksum_list():
    rows = cremad.read_checksums()
    assert len(rows) == 14884 and rows[0][0].startswith("AudioWAV/") and len(rows[0][1]) == 64
    assert sum(r[0].startswith("VideoFlash/") and r[0].endswith(".flv") for r in rows) == 7442
    with gzip.open(cremad.CHECKSUMS, "rb") as f:
        shipped = f.read()
    assert shipped == shared("lfs-checksums.csv").read_bytes()


# --------------------------------------------------------------------------- the real split

def test_real_split_files():
    train, test = read_split_file(shared("ogm-ge-train.csv")), read_split_file(shared("ogm-ge-test.csv"))
    assert (len(train), len(test)) == (6698, 744)
    assert [line.strip() for line in shared("ogm-ge-stat.csv").read_text(encoding="utf-8-sig").splitlines()] == CLASSES
    assert {e.label for e in train} == set(CLASSES)
    train_actors, test_actors = {actor_of(e.clip) for e in train}, {actor_of(e.clip) for e in test}
    assert train_actors == test_actors and len(train_actors) == 91
    for name in ("train", "test"):
        digest = hashlib.sha256(shared(f"ogm-ge-{name}.csv").read_bytes()).hexdigest()
        assert digest == SPLIT_SHA256[f"{name}.csv"]


def test_flv_cut_in_half_stops_the_load_or_is_skipped_and_counted(corpus, tmp_path):
    flv = cut_file(sorted((corpus / "VideoFlash").iterdir())[0], 0.5)
    with pytest.raises(MediaError, match=f"{flv}: truncated"):
        load_dataset("crema-d", corpus, PRE, cache_root=tmp_path / "cache")
    data = load_dataset("crema-d", corpus, PRE, on_error="skip", cache_root=tmp_path / "cache2")
    assert data.info["skipped_count"] == 1 and data.info["skipped"][0]["clip"] == flv.stem
    assert data.info["skipped"][0]["reason"].startswith("truncated")


def test_label_only_in_test_names_the_split_file(corpus, tmp_path):
    rows = [(e.clip, e.label) for e in read_split_file(corpus / "train.csv") if e.label != "SAD"]
    write_split(corpus / "train.csv", rows)
    test_rows = read_split_file(corpus / "test.csv")
    first_sad = next(e.line for e in test_rows if e.label == "SAD")
    with pytest.raises(ListingError, match=f"test.csv, line {first_sad}: label\\(s\\) 'SAD' appear in the test split "
                                           f"but not in train"):
        load_dataset("crema-d", corpus, PRE, cache_root=tmp_path / "cache")
