"""Decoding: waveforms, resampling, tiling, spectrograms, 1-fps frame picking, frame folders and images."""
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from fixtures_media import COLOUR_TOLERANCE, cut_file, tone, write_png_header, write_video, write_wav
from gapkit.data.base import Preprocessing
from gapkit.data.media import (MediaError, check_duration, corpus_aspect, decode_clip, expected_shapes, fit_length,
                               frame_shape, log_spectrogram, read_frame_folder, read_image, read_video_audio,
                               read_video_frames, read_wav, resize_frames, select_frames, source_aspect)


def _colour(image):
    return np.asarray(image)[5, 5].astype(int)


# --------------------------------------------------------------------------- audio

def test_read_wav_mono_float32_and_stereo_mixed(tmp_path):
    mono = read_wav(write_wav(tmp_path / "m.wav", tone(440, 1.0, 16000), 16000), 16000)
    assert mono.dtype == torch.float32 and mono.shape == (16000,)
    stereo = np.stack([np.full(800, 0.5), np.full(800, -0.25)], 1).astype(np.float32)
    sf.write(tmp_path / "s.wav", stereo, 8000, subtype="FLOAT")
    mixed = read_wav(tmp_path / "s.wav", 8000)
    assert mixed.shape == (800,) and torch.allclose(mixed, torch.full((800,), 0.125))


def test_read_wav_resamples_and_keeps_the_pitch(tmp_path):
    path = write_wav(tmp_path / "a.wav", tone(1000, 1.0, 16000), 16000)
    for rate in (8000, 22050):
        wave = read_wav(path, rate)
        assert abs(len(wave) - rate) <= 1
        spectrum = np.abs(np.fft.rfft(wave.numpy()))
        assert abs(np.argmax(spectrum) * rate / len(wave) - 1000) < 2


@pytest.mark.parametrize("case, reason", [("missing", "not found"), ("empty", "empty file"),
                                          ("truncated", "truncated"), ("garbage", "cannot decode")])
def test_read_wav_errors_name_the_file(tmp_path, case, reason):
    good = write_wav(tmp_path / "good.wav", tone(440, 1.0, 16000), 16000).read_bytes()
    path = tmp_path / f"{case}.wav"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        path.write_bytes(good[:len(good) // 2])
    elif case == "garbage":
        path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(MediaError, match=reason) as info:
        read_wav(path, 16000)
    assert str(path) in str(info.value) and info.value.path == path


def test_fit_length_tiles_and_cuts():
    wave = torch.tensor([1.0, 2.0, 3.0])
    assert fit_length(wave, 7).tolist() == [1, 2, 3, 1, 2, 3, 1]
    assert fit_length(wave, 2).tolist() == [1, 2]
    assert fit_length(wave, 3).tolist() == [1, 2, 3]


def test_log_spectrogram_shape_and_peak_bin():
    rate, n_fft, hop = 22050, 512, 353
    wave = torch.from_numpy(tone(1000, 3.0, rate, amplitude=0.5))
    spec = log_spectrogram(wave, n_fft, hop)
    assert spec.shape == (1, 257, 188) and spec.dtype == torch.float32
    profile = spec[0, :, 10:-10].mean(dim=1)
    assert int(profile.argmax()) == round(1000 * n_fft / rate)  # bin 23
    # a Hann-windowed sine of amplitude A: |S| at its bin is about A * n_fft / 4
    assert abs(float(profile.max()) - math.log(0.5 * n_fft / 4)) < 0.2
    silence = log_spectrogram(torch.zeros(rate), n_fft, hop)
    assert torch.allclose(silence, torch.full_like(silence, math.log(1e-7)))


def test_read_video_audio_from_mp4(tmp_path):
    path = write_video(tmp_path / "v.mp4", 2.0, container="mp4", codec="mpeg4", audio=tone(800, 2.0, 16000))
    wave = read_video_audio(path, 8000)
    assert wave.dtype == torch.float32 and abs(len(wave) - 16000) < 2048  # the AAC encoder adds a frame
    spectrum = np.abs(np.fft.rfft(wave.numpy()))
    assert abs(np.argmax(spectrum) * 8000 / len(wave) - 800) < 5
    with pytest.raises(MediaError, match="no audio track"):
        read_video_audio(write_video(tmp_path / "silent.flv", 1.0), 8000)


# --------------------------------------------------------------------------- frames

def test_flv_keeps_the_first_frame_of_each_second(tmp_path):
    path = write_video(tmp_path / "v.flv", 3.5, rate=10)  # 35 frames, seconds 0..3
    frames = read_video_frames(path, fps=1)
    assert len(frames) == 4 and frames[0].size == (64, 48)
    for second, frame in enumerate(frames):
        red, green, _ = _colour(frame)
        assert red <= COLOUR_TOLERANCE, "not the first frame of its second"
        assert abs(green - 40 * second) <= COLOUR_TOLERANCE
    two = read_video_frames(path, fps=2)  # frames 0, 5, 10, ...
    assert len(two) == 7
    assert [round(_colour(f)[0] / 24) for f in two] == [0, 5, 0, 5, 0, 5, 0]


def test_mp4_segment_frames(tmp_path):
    path = write_video(tmp_path / "v.mp4", 6.0, rate=4, container="mp4", codec="h264")
    frames = read_video_frames(path, fps=1, start=2, end=5)
    assert [round(_colour(f)[1] / 40) for f in frames] == [2, 3, 4]
    assert all(_colour(f)[0] <= COLOUR_TOLERANCE for f in frames)
    with pytest.raises(MediaError, match="no decodable frame") as info:
        read_video_frames(path, fps=1, start=7, end=8)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", [b"", b"FLV\x01" + bytes(200), bytes(range(256)) * 4])
def test_broken_video_names_the_file(tmp_path, content):
    path = tmp_path / "broken.flv"
    path.write_bytes(content)
    with pytest.raises(MediaError) as info:
        read_video_frames(path, 1)
    assert str(path) in str(info.value)


def test_frame_folder_natural_order_and_any_image_mode(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.new("L", (20, 10), 30).save(folder / "frame_2.png")
    Image.new("RGBA", (40, 40), (200, 0, 0, 128)).save(folder / "frame_10.png")
    Image.new("RGB", (8, 8), (0, 90, 0)).save(folder / "frame_1.jpg")
    (folder / "notes.txt").write_text("not a frame")
    frames = read_frame_folder(folder)
    assert [f.size for f in frames] == [(8, 8), (20, 10), (40, 40)]
    assert [f.mode for f in frames] == ["RGB"] * 3
    assert abs(_colour(frames[0])[1] - 90) < 5
    assert _colour(frames[1]).tolist() == [30, 30, 30] and _colour(frames[2])[0] == 200
    (tmp_path / "empty").mkdir()
    with pytest.raises(MediaError, match="no image files"):
        read_frame_folder(tmp_path / "empty")
    (folder / "frame_3.png").write_bytes(b"not a png")
    with pytest.raises(MediaError, match="frame_3.png"):
        read_frame_folder(folder)


def test_read_image_errors(tmp_path):
    with pytest.raises(MediaError, match="not found"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(MediaError, match="bad.jpg"):
        read_image(tmp_path / "bad.jpg")


def test_select_frames_evenly_and_repeats_the_last():
    assert select_frames(list(range(10)), 3) == [1, 5, 8]
    assert select_frames(list(range(3)), 1) == [1]
    assert select_frames(list(range(3)), 3) == [0, 1, 2]
    assert select_frames([7, 8], 4) == [7, 8, 8, 8]


def test_resize_frames_uint8_tchw():
    frames = [Image.new("RGB", (30, 20), (10, 20, 30)), Image.new("RGB", (50, 50), (200, 100, 0))]
    out = resize_frames(frames, 16)
    assert out.shape == (2, 3, 16, 16) and out.dtype == torch.uint8
    assert out[0, :, 5, 5].tolist() == [10, 20, 30] and out[1, :, 8, 8].tolist() == [200, 100, 0]


def _bands(width=60, height=30):
    """Three vertical bands, red | green | blue, each a third of the width."""
    image = np.zeros((height, width, 3), np.uint8)
    for band in range(3):
        image[:, band * width // 3:(band + 1) * width // 3, band] = 255
    return Image.fromarray(image)


def test_frames_keep_their_aspect_ratio_and_lose_a_centred_margin_never_squashed():
    wide = _bands()  # 2:1
    kept = resize_frames([wide], 10, aspect=2.0)
    assert kept.shape == (1, 3, 10, 20)
    assert [int(kept[0, :, 5, x].argmax()) for x in (1, 10, 18)] == [0, 1, 2]  # the thirds stay thirds
    square = resize_frames([wide], 10)  # the centre square of the source: x in [15, 45)
    assert square.shape == (1, 3, 10, 10)
    assert [int(square[0, :, 5, x].argmax()) for x in (0, 2, 5, 7, 9)] == [0, 1, 1, 1, 2]  # squashed: [0, 0, 1, 2, 2]
    tall = resize_frames([wide.rotate(90, expand=True)], 10, aspect=2.0)  # 1:2 into 2:1: its centre band
    assert tall.shape == (1, 3, 10, 20) and bool((tall[0, 1] > 200).all())
    assert frame_shape(224, 4 / 3) == (224, 299) and frame_shape(224, 0.75) == (299, 224)
    assert corpus_aspect([1.0, 4 / 3, None, 4 / 3, 1.5]) == pytest.approx(4 / 3) and corpus_aspect([None]) == 1.0


def test_source_aspect_reads_headers(tmp_path):
    assert source_aspect(write_video(tmp_path / "v.flv", 1.0, size=(64, 48))) == pytest.approx(4 / 3)
    _bands().save(tmp_path / "still.png")
    assert source_aspect(tmp_path / "still.png") == 2.0
    (tmp_path / "frames").mkdir()
    for i in (2, 10):
        _bands(30 + i, 30).save(tmp_path / "frames" / f"frame_{i}.png")
    assert source_aspect(tmp_path / "frames") == pytest.approx(32 / 30)  # the first in natural order
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    assert source_aspect(tmp_path / "broken.mp4") is None


def test_a_long_waveform_is_averaged_down_to_the_columns_asked_for():
    rate = 8000
    wave = torch.from_numpy(np.concatenate([tone(500, 2.0, rate), tone(1500, 2.0, rate)]))
    full = log_spectrogram(wave, 256, 200)
    pooled = log_spectrogram(wave, 256, 200, frames=81)
    assert full.shape == (1, 129, 161) and pooled.shape == (1, 129, 81)
    peak = lambda spec, cols: int(spec[0, :, cols].mean(dim=1).argmax()) * rate / 256  # noqa: E731
    assert abs(peak(pooled, slice(5, 35)) - 500) < 40 and abs(peak(pooled, slice(45, 75)) - 1500) < 40
    assert torch.equal(log_spectrogram(wave[:16000], 256, 200, frames=81), log_spectrogram(wave[:16000], 256, 200))


def test_decode_clip_shapes_with_video_and_image(tmp_path):
    wav = write_wav(tmp_path / "a.wav", tone(440, 1.0, 16000), 16000)
    pre = Preprocessing(sample_rate=8000, clip_seconds=2.0, n_fft=126, hop_length=250, frames=3, frame_size=32)
    spec, frames = decode_clip(wav, write_video(tmp_path / "v.flv", 2.5), pre)
    assert (tuple(spec.shape), tuple(frames.shape)) == expected_shapes(pre)
    assert spec.dtype == torch.float16 and frames.dtype == torch.uint8
    assert spec.shape == (1, 64, 65)
    Image.new("RGB", (50, 40), (0, 0, 255)).save(tmp_path / "still.png")
    _, still = decode_clip(wav, tmp_path / "still.png", pre)
    assert still.shape == (3, 3, 32, 32) and bool((still[:, 2] == 255).all())


# --------------------------------------------------------------------------- faults

def test_video_cut_short_is_truncated_not_silently_shorter(tmp_path):
    path = write_video(tmp_path / "v.flv", 6.0, rate=10)  # the FLV header states 6 s
    assert len(read_video_frames(path, fps=1)) == 6
    cut_file(path, 0.5)  # decodes to about 3 s without a decoder error
    with pytest.raises(MediaError, match=r"truncated: the video stream decodes to .* of the 6.00 s") as info:
        read_video_frames(path, fps=1)
    assert info.value.path == path
    assert len(read_video_frames(path, fps=1, end=2)) == 2  # a segment that ends before the cut is still whole


def test_check_duration_tolerates_small_differences(tmp_path):
    check_duration("x.flv", 2.4, 2.5)  # a frame or two: a normal difference between container and stream
    check_duration("x.flv", 1.0, None)
    with pytest.raises(MediaError, match="x.flv: truncated"):
        check_duration("x.flv", 1.0, 2.5)


def test_decompression_bomb_is_a_media_error_naming_the_file(tmp_path):
    bomb = write_png_header(tmp_path / "bomb.png", 20000, 10000)
    with pytest.raises(MediaError, match="decompression bomb") as info:
        read_image(bomb)
    assert info.value.path == bomb and "bomb.png" in str(info.value)
    wav = write_wav(tmp_path / "a.wav", tone(440, 1.0, 8000), 8000)
    with pytest.raises(MediaError, match="bomb.png"):
        decode_clip(wav, bomb, Preprocessing(sample_rate=8000, frames=1, frame_size=8))


def test_any_decoder_exception_becomes_a_media_error(tmp_path, monkeypatch):
    path = write_wav(tmp_path / "a.wav", tone(440, 1.0, 8000), 8000)

    def broken(*args, **kwargs):
        raise KeyError("decoder state")
    monkeypatch.setattr("soundfile.read", broken)
    with pytest.raises(MediaError, match="cannot decode audio.*KeyError") as info:
        read_wav(path, 8000)
    assert info.value.path == path


def test_alpha_only_image_is_refused(tmp_path):
    mask = np.zeros((20, 20, 4), np.uint8)
    mask[5:15, 5:15, 3] = 255  # a square drawn in alpha only, over black
    Image.fromarray(mask, "RGBA").save(tmp_path / "mask.png")
    with pytest.raises(MediaError, match="only in the alpha channel") as info:
        read_image(tmp_path / "mask.png")
    assert info.value.path == tmp_path / "mask.png"
    grey = np.zeros((20, 20, 2), np.uint8)
    grey[5:15, 5:15, 1] = 255
    Image.fromarray(grey, "LA").save(tmp_path / "grey.png")
    with pytest.raises(MediaError, match="grey.png.*alpha"):
        read_image(tmp_path / "grey.png")
    mask[5:15, 5:15, 0] = 200  # the same square in colour too: an ordinary RGBA image
    Image.fromarray(mask, "RGBA").save(tmp_path / "drawn.png")
    assert np.asarray(read_image(tmp_path / "drawn.png"))[10, 10].tolist() == [200, 0, 0]
