"""Mini-batches: the device-resident and the streamed (prefetching) paths, and the batched frame augmentation
against torchvision's per-clip RandomResizedCrop and flip."""
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torchvision.transforms import RandomResizedCrop

import gapkit.data.batches as batches
from gapkit.data.augment import SCALE, centre_crop, crop_parameters, flip_clips_, resized_crops
from gapkit.data.base import AVData, AVSplit
from gapkit.data.batches import IMAGENET_MEAN, IMAGENET_STD, iterate_batches, placement
from gapkit.models import AVClassifier
from gapkit.training import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")
MEAN = torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1)


def _split(n=23, frames=3, height=16, width=16, seed=0) -> AVSplit:
    g = torch.Generator().manual_seed(seed)
    return AVSplit(torch.randn(n, 1, 9, 7, generator=g).half(),
                   torch.randint(0, 256, (n, frames, 3, height, width), generator=g, dtype=torch.uint8),
                   torch.randint(0, 4, (n,), generator=g), [f"c{i}" for i in range(n)])


def _all(split, **kw):
    generator = torch.Generator().manual_seed(5) if kw.get("shuffle") else None
    return list(iterate_batches(split, 8, generator=generator, **kw))


def _same(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            assert u.dtype == v.dtype and u.shape == v.shape and torch.equal(u, v)


# --- without augmentation: today's batches, bit for bit -------------------------------------------------

@pytest.mark.parametrize("where", ["resident", "streamed"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_unaugmented_batches_are_the_plain_normalised_rows(where, shuffle):
    split = _split()
    state = torch.get_rng_state()
    out = _all(split, shuffle=shuffle, where=where)
    assert torch.equal(torch.get_rng_state(), state)  # no global random draw without augmentation
    order = torch.randperm(23, generator=torch.Generator().manual_seed(5)) if shuffle else torch.arange(23)
    expected_sizes = [8, 8, 7]
    assert [len(b[3]) for b in out] == expected_sizes and torch.equal(torch.cat([b[3] for b in out]), order)
    for audio, visual, y, index in out:
        assert torch.equal(visual, (split.visual[index].float() / 255 - MEAN) / STD)  # the same arithmetic
        assert torch.equal(audio, split.audio[index].float()) and torch.equal(y, split.labels[index])


def test_resident_and_streamed_give_the_same_batches_augmented_or_not():
    split = _split(height=16, width=21)
    _same(_all(split, shuffle=True, where="resident"), _all(split, shuffle=True, where="streamed"))
    torch.manual_seed(3)
    resident = _all(split, shuffle=True, augment=True, where="resident")
    torch.manual_seed(3)
    _same(resident, _all(split, shuffle=True, augment=True, where="streamed"))


def test_a_final_single_sample_is_dropped_only_when_shuffling():
    split = _split(n=17)
    assert [len(b[3]) for b in _all(split, shuffle=True)] == [8, 8]
    assert [len(b[3]) for b in _all(split)] == [8, 8, 1]
    assert [len(b[3]) for b in _all(split, clips=[3, 4, 5], shuffle=True)] == [3]
    assert list(iterate_batches(split, 1, shuffle=True, generator=torch.Generator())) == []  # as before: all single


def test_the_cpu_keeps_the_split_where_it_is():
    split = _split()
    assert placement(split, "cpu") == "resident"
    audio, visual, labels = batches.device_tensors(split, "cpu")
    assert audio is split.audio and visual is split.visual and labels is split.labels


def test_the_device_budget_decides_resident_or_streamed(monkeypatch):
    split = _split()
    need = sum(t.numel() * t.element_size() for t in (split.audio, split.visual, split.labels))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * need, 10 * need))
    assert placement(split, "cuda") == "resident"  # needs exactly half the free memory
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * need - 1, 10 * need))
    assert placement(split, "cuda") == "streamed"


def test_the_streaming_thread_stops_when_the_consumer_does():
    split = _split(n=64)
    stream = iterate_batches(split, 4, shuffle=True, generator=torch.Generator(), where="streamed")
    next(stream)
    stream.close()
    assert not [t for t in threading.enumerate() if t.name == "gapkit-prefetch"]


def test_a_failure_while_prefetching_reaches_the_consumer():
    split = _split()
    with pytest.raises(IndexError):
        list(iterate_batches(split, 4, clips=[0, 1, 99], where="streamed"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
@pytest.mark.parametrize("augment", [False, True])
def test_cuda_resident_and_streamed_batches_match_the_cpu(augment):
    split = _split(height=16, width=21)
    runs = {}
    for name, device, where in (("cpu", "cpu", "resident"), ("gpu", "cuda", "resident"), ("pinned", "cuda",
                                                                                          "streamed")):
        torch.manual_seed(3)
        runs[name] = [[t.cpu() for t in b] for b in iterate_batches(
            split, 8, device, shuffle=True, generator=torch.Generator().manual_seed(5), augment=augment, where=where)]
    _same(runs["gpu"], runs["pinned"])
    for a, b in zip(runs["cpu"], runs["gpu"]):
        torch.testing.assert_close(a[1], b[1], atol=1e-4, rtol=0)  # the same boxes; float kernels may differ
        assert torch.equal(a[3], b[3]) and torch.equal(a[2], b[2])


# --- frames wider than square: evaluation sees the centre, never an augmentation ------------------------

def test_wide_frames_are_cut_to_their_centre_square():
    split = _split(height=16, width=21)
    audio, visual, y, index = next(iterate_batches(split, 8))
    assert visual.shape == (8, 3, 3, 16, 16)
    # torchvision's centre: round((21 - 16) / 2) = 2 columns off the left
    torch.testing.assert_close(visual, (split.visual[:8, ..., 2:18].float() / 255 - MEAN) / STD, rtol=0, atol=0)
    assert centre_crop(torch.zeros(2, 3, 20, 16), 16).shape == (2, 3, 16, 16)


def test_the_trainer_never_augments_evaluation_or_gap_batches():
    data = AVData(_split(n=12, seed=1, width=21), _split(n=6, seed=2, width=21), _split(n=6, seed=3, width=21),
                  ["a", "b", "c", "d"], info={"cache_key": "tiny"})
    trainer = Trainer(AVClassifier(4, width=2), data, TrainConfig(augment=True, batch_size=4), device="cpu")
    for split in ("val", "test", "train"):  # "train" unshuffled: the gaps of Algorithm 1
        torch.manual_seed(0)
        first = [b[1] for b in trainer.batches(split)]
        torch.manual_seed(1)
        _same([[v] for v in first], [[b[1]] for b in trainer.batches(split)])
        plain = (data.splits()[split].visual[..., 2:18].float() / 255 - MEAN) / STD
        assert torch.equal(torch.cat(first), plain)
    torch.manual_seed(0)
    shuffled = next(trainer.batches("train", shuffle=True, generator=torch.Generator().manual_seed(0)))
    plain = (data.train.visual[shuffled[3]][..., 2:18].float() / 255 - MEAN) / STD
    assert not torch.allclose(shuffled[1], plain)  # the training batches are augmented


# --- the crop boxes: torchvision's distribution ------------------------------------------------------------

def _torchvision_boxes(n, height, width, scale=SCALE, seed=0):
    torch.manual_seed(seed)
    image = torch.zeros(3, height, width)
    rows = [RandomResizedCrop.get_params(image, list(scale), [3 / 4, 4 / 3]) for _ in range(n)]
    return np.array([[j, i, j + w, i + h] for i, j, h, w in rows], dtype=float)


@pytest.mark.parametrize("height,width", [(24, 24), (24, 32)])
def test_crop_boxes_follow_torchvisions_distribution(height, width):
    n = 6000
    ours = crop_parameters(n, height, width, generator=torch.Generator().manual_seed(1))[0].double().numpy()
    theirs = _torchvision_boxes(n, height, width)
    for boxes in (ours, theirs):
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
        assert (w >= 1).all() and (h >= 1).all()

    def features(boxes):
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        free_x, free_y = width - w, height - h
        return {"area": w * h / (height * width), "log_aspect": np.log(w / h),
                "left": np.where(free_x > 0, boxes[:, 0] / np.maximum(free_x, 1), 0.5),
                "top": np.where(free_y > 0, boxes[:, 1] / np.maximum(free_y, 1), 0.5), "width": w, "height": h}
    a, b = features(ours), features(theirs)
    for name in a:
        assert stats.ks_2samp(a[name], b[name]).pvalue > 1e-3, name
    assert abs(np.median(a["area"]) - np.median(b["area"])) < 0.03
    assert a["area"].min() >= 0.06 and a["area"].max() <= 1.0  # scale (0.08, 1), up to rounding
    aspects = np.exp(a["log_aspect"])
    assert np.quantile(aspects, 0.01) > 0.6 and np.quantile(aspects, 0.99) < 1.6  # ratio (3/4, 4/3), rounded


def test_the_fallback_is_torchvisions_centre_crop():
    # an area of 90-100% of a 10 x 40 frame can never have an aspect ratio within (3/4, 4/3)
    ours = crop_parameters(50, 10, 40, scale=(0.9, 1.0), generator=torch.Generator().manual_seed(0))[0]
    theirs = _torchvision_boxes(50, 10, 40, scale=(0.9, 1.0))
    assert (ours.numpy() == theirs).all() and ours[0].tolist() == [13.0, 0.0, 26.0, 10.0]


def test_flips_are_drawn_half_the_time_from_the_global_generator():
    torch.manual_seed(0)
    _, flips = crop_parameters(20000, 16, 16)
    assert abs(flips.float().mean().item() - 0.5) < 0.015
    torch.manual_seed(0)
    assert torch.equal(crop_parameters(20000, 16, 16)[1], flips)


# --- applying them ----------------------------------------------------------------------------------------

def test_an_enlarged_crop_is_bilinear_resizing_of_the_box():
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(2, 3, 3, 20, 30, generator=g) * 255
    boxes = torch.tensor([[4.0, 2.0, 14.0, 12.0], [0.0, 0.0, 30.0, 20.0]])
    out = resized_crops(frames, boxes, 16)
    expected = F.interpolate(frames[0, :, :, 2:12, 4:14], size=(16, 16), mode="bilinear", align_corners=False)
    # inside the box the same samples; on its rim the crop reads the pixels beyond the box, where a resize of the
    # cut-out box repeats its edge
    torch.testing.assert_close(out[0, ..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-3, rtol=0)
    same = resized_crops(frames[..., :16, :16].contiguous(), torch.tensor([[0.0, 0.0, 16.0, 16.0]] * 2), 16)
    torch.testing.assert_close(same, frames[..., :16, :16], atol=1e-3, rtol=0)  # the identity box


def test_a_reduced_crop_averages_like_an_antialiased_resize():
    frames = torch.zeros(1, 1, 3, 32, 32)
    frames[..., ::2] = 255  # one-pixel stripes: aliasing would show them
    out = resized_crops(frames, torch.tensor([[0.0, 0.0, 32.0, 32.0]]), 8)
    torch.testing.assert_close(out, torch.full_like(out, 127.5), atol=1.0, rtol=0)


def test_one_box_and_flip_for_all_frames_of_a_clip():
    g = torch.Generator().manual_seed(0)
    base = torch.randint(0, 200, (6, 1, 3, 16, 21), generator=g, dtype=torch.uint8)
    visual = torch.cat([base, base + 20, base + 40], dim=1)  # three frames: the same picture, brighter
    split = AVSplit(torch.zeros(6, 1, 4, 4).half(), visual, torch.arange(6) % 2, [str(i) for i in range(6)])
    torch.manual_seed(2)
    _, out, _, _ = next(iterate_batches(split, 6, augment=True))
    step = (20 / 255) / STD.view(1, 3, 1, 1)
    torch.testing.assert_close(out[:, 1] - out[:, 0], step.expand(6, 3, 16, 16), atol=1e-4, rtol=0)
    torch.testing.assert_close(out[:, 2] - out[:, 1], step.expand(6, 3, 16, 16), atol=1e-4, rtol=0)
    torch.manual_seed(2)
    boxes, flips = crop_parameters(6, 16, 21)
    manual = flip_clips_(resized_crops(visual.float(), boxes, 16), flips)
    torch.testing.assert_close(out, (manual / 255 - MEAN) / STD, atol=1e-5, rtol=0)
    assert 0 < int(flips.sum()) < 6


def test_device_copies_stay_with_the_process():
    import pickle
    split = _split()
    split.__dict__["_device_copies"] = {"cuda:0": "a device copy"}
    again = pickle.loads(pickle.dumps(split))
    assert "_device_copies" not in again.__dict__ and torch.equal(again.visual, split.visual)
    assert again.clips == split.clips
