"""Eq. 1-10 against values computed by hand on small tensors."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gapkit import AVClassifier, GapMixture, adaptive_loss, annealing_coefficient, modality_gap, warmup_loss


def test_unimodal_logits_split_the_head_as_eq3():
    model = AVClassifier(num_classes=2, width=1)  # feature_dim 8
    with torch.no_grad():
        model.fusion.weight.zero_()
        model.fusion.weight[0, 0] = 2.0    # audio half
        model.fusion.weight[1, 8] = 3.0    # visual half
        model.fusion.bias.copy_(torch.tensor([1.0, -4.0]))
    phi_a = torch.zeros(1, 8)
    phi_a[0, 0] = 1.5
    phi_v = torch.zeros(1, 8)
    phi_v[0, 0] = 0.5
    l_a, l_v = model.unimodal_logits(phi_a, phi_v)
    # l_a = W_a phi_a + b/2 = [2*1.5 + 0.5, 0 - 2]; l_v = W_v phi_v + b/2 = [0 + 0.5, 3*0.5 - 2]
    assert torch.allclose(l_a, torch.tensor([[3.5, -2.0]]))
    assert torch.allclose(l_v, torch.tensor([[0.5, -0.5]]))
    f, _, _ = model.head(phi_a, phi_v)
    assert torch.allclose(f, torch.tensor([[4.0, -2.5]]))  # Eq. 1: W [phi_a; phi_v] + b


def test_forward_shapes_and_eq2_sum():
    torch.manual_seed(0)
    model = AVClassifier(num_classes=6, width=4).eval()
    audio, visual = torch.randn(3, 1, 32, 40), torch.randn(3, 2, 3, 32, 32)
    logits, l_a, l_v = model(audio, visual)
    assert logits.shape == l_a.shape == l_v.shape == (3, 6)
    assert torch.allclose(logits, l_a + l_v, atol=1e-6)
    phi_a, phi_v = model.encode(audio, visual)
    assert phi_a.shape == phi_v.shape == (3, 32)  # 8 * width
    assert torch.allclose(logits, model.fusion(torch.cat([phi_a, phi_v], 1)), atol=1e-5)


def test_full_width_feature_is_512():
    assert AVClassifier(num_classes=6).feature_dim == 512


def test_visual_encoder_averages_frames_over_time():
    torch.manual_seed(0)
    model = AVClassifier(num_classes=2, width=2).eval()
    frames = torch.randn(1, 2, 3, 32, 32)
    both = model.visual_encoder(frames)
    each = [model.visual_encoder.frame_encoder(frames[:, t]) for t in range(2)]
    assert torch.allclose(both, (each[0] + each[1]) / 2, atol=1e-6)


def test_modality_gap_by_hand():
    l_a = torch.tensor([[0.0, 0.0], [math.log(4.0), 0.0]])
    l_v = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    y = torch.tensor([0, 1])
    # sample 0: s_a = 1/2, s_v = 3/4 -> -1/4; sample 1 (class 1): s_a = 1/5, s_v = 1/2 -> -3/10
    assert torch.allclose(modality_gap(l_a, l_v, y), torch.tensor([-0.25, -0.3]))


def test_warmup_loss_by_hand():
    logits = torch.tensor([[math.log(3.0), 0.0]])
    zeros = torch.zeros(1, 2)
    y = torch.tensor([0])
    # CE(f) = -log(3/4); CE(l_a) = CE(l_v) = log 2
    expected = -math.log(0.75) + 2 * math.log(2.0)
    assert warmup_loss(logits, zeros, zeros, y).item() == pytest.approx(expected, rel=1e-6)


def test_annealing_coefficient():
    assert annealing_coefficient(0) == 1.0
    assert annealing_coefficient(2) == pytest.approx(0.9216)


def _mixture():
    return GapMixture.from_dict({"weights": [0.8, 0.2], "means": [0.0, 0.5], "variances": [0.01, 0.04]})


def _normal(x, mu, var):
    return math.exp(-(x - mu) ** 2 / (2 * var)) / math.sqrt(2 * math.pi * var)


def test_posteriors_by_hand_eq9():
    g = torch.tensor([-0.25, 0.5])
    w_bal, w_imb = _mixture().posteriors(g)
    for i, x in enumerate([-0.25, 0.5]):
        p0, p1 = 0.8 * _normal(x, 0.0, 0.01), 0.2 * _normal(x, 0.5, 0.04)
        assert w_imb[i].item() == pytest.approx(p1 / (p0 + p1), rel=1e-5)
        assert w_bal[i].item() == pytest.approx(p0 / (p0 + p1), rel=1e-5)
    assert torch.allclose(w_bal + w_imb, torch.ones(2))


def test_adaptive_loss_by_hand_eq10():
    l_a = torch.tensor([[0.0, 0.0]])
    l_v = torch.tensor([[math.log(3.0), 0.0]])
    logits = l_a + l_v
    y = torch.tensor([0])
    g = 0.5 - 0.75
    p0, p1 = 0.8 * _normal(g, 0.0, 0.01), 0.2 * _normal(g, 0.5, 0.04)
    w_bal, w_imb = p0 / (p0 + p1), p1 / (p0 + p1)
    ce = -math.log(0.75)
    lam = 0.96 ** 2
    alpha, beta, gamma = 0.7, 1.3, 2.0
    expected = alpha * w_bal * ce + lam * (beta * g ** 2 + gamma * w_imb * (g - 0.0) ** 2)
    got = adaptive_loss(logits, l_a, l_v, y, _mixture(), epoch=2, alpha=alpha, beta=beta, gamma=gamma)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # without the weights (the "w/o w" ablation) both weights are 1
    expected_now = alpha * ce + lam * (beta * g ** 2 + gamma * (g - 0.0) ** 2)
    got_now = adaptive_loss(logits, l_a, l_v, y, _mixture(), epoch=2, alpha=alpha, beta=beta, gamma=gamma,
                            use_weights=False)
    assert got_now.item() == pytest.approx(expected_now, rel=1e-5)


def test_adaptive_loss_uses_the_balanced_mean():
    mix = GapMixture.from_dict({"weights": [0.5, 0.5], "means": [0.1, 0.6], "variances": [0.01, 0.01]})
    l = torch.zeros(1, 2)
    y = torch.tensor([0])  # g = 0
    w_bal, w_imb = mix.posteriors(torch.zeros(1))
    expected = w_bal.item() * math.log(2.0) + 1.0 * (0.0 + w_imb.item() * 0.1 ** 2)
    assert adaptive_loss(l + l, l, l, y, mix, epoch=0).item() == pytest.approx(expected, rel=1e-5)


def test_adaptive_loss_reduces_to_alpha_ce_without_gap_terms():
    torch.manual_seed(0)
    logits_a, logits_v = torch.randn(5, 4), torch.randn(5, 4)
    logits, y = logits_a + logits_v, torch.tensor([0, 1, 2, 3, 1])
    mix = _mixture()
    loss = adaptive_loss(logits, logits_a, logits_v, y, mix, epoch=3, alpha=1.7, beta=0.0, gamma=0.0,
                         use_weights=False)
    assert loss.item() == pytest.approx(1.7 * F.cross_entropy(logits, y).item(), rel=1e-6)
    weighted = adaptive_loss(logits, logits_a, logits_v, y, mix, epoch=3, alpha=1.7, beta=0.0, gamma=0.0)
    w_bal, _ = mix.posteriors(modality_gap(logits_a, logits_v, y))
    ce = F.cross_entropy(logits, y, reduction="none")
    assert weighted.item() == pytest.approx(1.7 * (w_bal * ce).mean().item(), rel=1e-6)


def test_adaptive_loss_gradients_reach_both_encoders_and_weights_are_constants():
    torch.manual_seed(0)
    model = AVClassifier(num_classes=3, width=2)
    audio, visual = torch.randn(4, 1, 32, 32), torch.randn(4, 1, 3, 32, 32)
    y = torch.tensor([0, 1, 2, 0])
    logits, l_a, l_v = model(audio, visual)
    g = modality_gap(l_a, l_v, y)
    w_bal, w_imb = _mixture().posteriors(g)
    assert not w_bal.requires_grad and not w_imb.requires_grad
    adaptive_loss(logits, l_a, l_v, y, _mixture(), epoch=0).backward()
    for encoder in (model.audio_encoder, model.visual_encoder):
        grads = [p.grad for p in encoder.parameters()]
        assert all(gr is not None for gr in grads)
        assert sum(gr.abs().sum().item() for gr in grads) > 0


def test_gap_terms_alone_pull_the_gap_towards_zero():
    # with alpha = 0 the gradient of Eq. 10 w.r.t. the audio logits lowers s_a when g > 0
    l_a = torch.tensor([[2.0, 0.0]], requires_grad=True)
    l_v = torch.tensor([[0.0, 0.0]], requires_grad=True)
    y = torch.tensor([0])
    adaptive_loss(l_a + l_v, l_a, l_v, y, _mixture(), epoch=0, alpha=0.0).backward()
    assert l_a.grad[0, 0] > 0 and l_v.grad[0, 0] < 0


def test_mixture_posteriors_follow_the_device_and_dtype():
    w_bal, w_imb = _mixture().posteriors(torch.tensor([0.1, 0.2], dtype=torch.float32))
    assert w_bal.dtype == torch.float32 and w_imb.dtype == torch.float32
    assert np.isfinite(w_bal.numpy()).all()


def test_gap_magnitude_control_keeps_the_batch_mean():
    from gapkit.losses import control_weights

    g = torch.tensor([0.1, -0.3, 0.2])
    w_imb = torch.tensor([0.2, 0.4, 0.0])
    w_bal2, w_imb2 = control_weights(g, 1 - w_imb, w_imb, "gap-magnitude")
    # mean |g| = 0.2 = mean w_imb, so the scale is 1 and w_imb becomes |g|
    assert torch.allclose(w_imb2, torch.tensor([0.1, 0.3, 0.2]))
    assert torch.allclose(w_bal2 + w_imb2, torch.ones(3))
    assert w_imb2.mean().item() == pytest.approx(w_imb.mean().item())


def test_shuffled_control_permutes_weight_pairs():
    from gapkit.losses import control_weights

    torch.manual_seed(3)
    g = torch.linspace(-0.5, 0.5, 64)
    w_imb = torch.rand(64)
    w_bal2, w_imb2 = control_weights(g, 1 - w_imb, w_imb, "shuffled")
    assert torch.equal(torch.sort(w_imb2).values, torch.sort(w_imb).values)
    assert torch.allclose(w_bal2 + w_imb2, torch.ones(64))
    assert not torch.equal(w_imb2, w_imb)
    with pytest.raises(ValueError, match="unknown weight control"):
        control_weights(g, 1 - w_imb, w_imb, "other")


def test_adaptive_loss_by_hand_on_a_batch_with_nonzero_balanced_mean():
    """Eq. 10 on three samples whose gaps and weights all differ, with mu_0 = 0.1, each term by hand.

    A batch of one and mu_0 = 0 cannot tell the batch mean from the sum, nor (g - mu_0) from g.
    """
    mix = GapMixture.from_dict({"weights": [0.7, 0.3], "means": [0.1, -0.4], "variances": [0.02, 0.05]})
    # two classes; uniform visual logits (s_v = 1/2), audio probabilities of the true class 3/4, 1/2, 1/5
    l_a = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0], [math.log(4.0), 0.0]])
    l_v = torch.zeros(3, 2)
    y = torch.tensor([0, 1, 1])
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.5, -0.5]])
    gaps = [0.75 - 0.5, 0.5 - 0.5, 0.2 - 0.5]
    ces = [math.log(1 + math.exp(-2.0)), math.log(1 + math.exp(-1.0)), math.log(1 + math.exp(1.0))]
    alpha, beta, gamma, epoch = 0.8, 1.5, 2.5, 3
    lam = 0.96 ** 3
    terms = []
    for g, ce in zip(gaps, ces):
        p0, p1 = 0.7 * _normal(g, 0.1, 0.02), 0.3 * _normal(g, -0.4, 0.05)
        w_bal, w_imb = p0 / (p0 + p1), p1 / (p0 + p1)
        terms.append(alpha * w_bal * ce + lam * (beta * g ** 2 + gamma * w_imb * (g - 0.1) ** 2))
    expected = sum(terms) / 3
    got = adaptive_loss(logits, l_a, l_v, y, mix, epoch=epoch, alpha=alpha, beta=beta, gamma=gamma)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # alpha = beta = gamma = 1 by default
    defaults = sum(w_b * ce + 0.96 ** 3 * (g ** 2 + w_i * (g - 0.1) ** 2) for g, ce, (w_b, w_i) in zip(
        gaps, ces, [(1 - w, w) for w in (0.3 * _normal(g, -0.4, 0.05) / (0.7 * _normal(g, 0.1, 0.02)
                                                                        + 0.3 * _normal(g, -0.4, 0.05)) for g in gaps)]))
    assert adaptive_loss(logits, l_a, l_v, y, mix, epoch=3).item() == pytest.approx(defaults / 3, rel=1e-5)
    # the weights really differ across the batch (else the test could not tell a weight from its mean)
    _, w_imb = mix.posteriors(torch.tensor(gaps))
    assert w_imb.max() - w_imb.min() > 0.5
    # each gap term alone, averaged over the batch
    gap_only = adaptive_loss(logits, l_a, l_v, y, mix, epoch=0, alpha=0.0, beta=1.0, gamma=0.0)
    assert gap_only.item() == pytest.approx(sum(g ** 2 for g in gaps) / 3, rel=1e-5)
    centred = adaptive_loss(logits, l_a, l_v, y, mix, epoch=0, alpha=0.0, beta=0.0, gamma=1.0, use_weights=False)
    assert centred.item() == pytest.approx(sum((g - 0.1) ** 2 for g in gaps) / 3, rel=1e-5)


def test_gamma_term_pulls_an_imbalanced_gap_towards_the_balanced_mean():
    """At a gap where w_imb is large, the gamma term's gradient points from g towards mu_0, not mu_1."""
    mix = GapMixture.from_dict({"weights": [0.6, 0.4], "means": [0.1, 0.5], "variances": [0.01, 0.01]})
    l_a = torch.tensor([[math.log(9.0), 0.0]], requires_grad=True)  # s_a = 0.9, s_v = 0.5: g = 0.4
    l_v = torch.zeros(1, 2, requires_grad=True)
    y = torch.tensor([0])
    _, w_imb = mix.posteriors(torch.tensor([0.4]))
    assert w_imb.item() > 0.9
    loss = adaptive_loss(l_a + l_v, l_a, l_v, y, mix, epoch=0, alpha=0.0, beta=0.0, gamma=1.0)
    assert loss.item() == pytest.approx(w_imb.item() * (0.4 - 0.1) ** 2, rel=1e-5)
    loss.backward()
    # d/dl_a0 of w_imb (g - mu_0)^2 = 2 w_imb (g - mu_0) s_a (1 - s_a): lowers s_a since g > mu_0
    assert l_a.grad[0, 0].item() == pytest.approx(2 * w_imb.item() * 0.3 * 0.9 * 0.1, rel=1e-4)


def test_gap_magnitude_control_rescales_and_clamps_at_one():
    from gapkit.losses import control_weights

    g = torch.tensor([1.0, -0.05, 0.05])
    w_imb = torch.tensor([0.9, 0.9, 0.9])
    # mean |g| = 1.1 / 3, so the scale is 0.9 * 3 / 1.1: 2.45 for the first sample, clamped to 1
    scale = 0.9 * 3 / 1.1
    w_bal2, w_imb2 = control_weights(g, 1 - w_imb, w_imb, "gap-magnitude")
    torch.testing.assert_close(w_imb2, torch.tensor([1.0, 0.05 * scale, 0.05 * scale]))
    torch.testing.assert_close(w_bal2, 1 - w_imb2)


def test_adaptive_loss_with_given_weights_uses_them_in_place_of_eq9():
    """``weights=(w_bal, w_imb)`` (the controls, or posteriors collected at a step's start) replace Eq. 9's."""
    mix = GapMixture.from_dict({"weights": [0.7, 0.3], "means": [0.1, -0.4], "variances": [0.02, 0.05]})
    l_a = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])  # s_a of the true class: 3/4, 1/2; s_v = 1/2
    l_v = torch.zeros(2, 2)
    y = torch.tensor([0, 1])
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    gaps, ces = [0.25, 0.0], [math.log(1 + math.exp(-2.0)), math.log(1 + math.exp(-1.0))]
    w_bal, w_imb = torch.tensor([0.2, 0.9]), torch.tensor([0.8, 0.1])
    expected = sum(wb * ce + 0.96 ** 2 * (g ** 2 + 3.0 * wi * (g - 0.1) ** 2)
                   for g, ce, wb, wi in zip(gaps, ces, w_bal.tolist(), w_imb.tolist())) / 2
    got = adaptive_loss(logits, l_a, l_v, y, mix, epoch=2, gamma=3.0, weights=(w_bal, w_imb))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert got.item() != pytest.approx(adaptive_loss(logits, l_a, l_v, y, mix, epoch=2, gamma=3.0).item(), rel=1e-3)


def test_one_sided_penalty_same_value_gradient_to_the_weaker_modality_only():
    """``penalty="one-sided"``: Eq. 10's value unchanged; the gap terms' gradient reaches only the logits of the
    modality with the lower true-class score (audio in sample 0, visual in sample 1)."""
    mix = GapMixture.from_dict({"weights": [0.7, 0.3], "means": [0.1, -0.4], "variances": [0.02, 0.05]})
    l_a = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]], requires_grad=True)  # s_a: 1/2, 3/4
    l_v = torch.tensor([[math.log(4.0), 0.0], [0.0, 0.0]], requires_grad=True)  # s_v: 4/5, 1/2
    y = torch.tensor([0, 0])
    logits = torch.zeros(2, 2)
    symmetric = adaptive_loss(logits, l_a, l_v, y, mix, epoch=0, alpha=0.0)
    one_sided = adaptive_loss(logits, l_a, l_v, y, mix, epoch=0, alpha=0.0, penalty="one-sided")
    assert one_sided.item() == pytest.approx(symmetric.item(), rel=1e-6)
    one_sided.backward()
    assert l_a.grad[0].abs().sum() > 0 and l_v.grad[1].abs().sum() > 0  # the weaker ones move
    assert l_a.grad[1].abs().sum() == 0 and l_v.grad[0].abs().sum() == 0  # the stronger ones do not
    with pytest.raises(ValueError, match=r"^unknown penalty 'both'; use 'symmetric' or 'one-sided'$"):
        adaptive_loss(logits, l_a, l_v, y, mix, epoch=0, penalty="both")


def test_one_sided_gap_at_a_tie_sends_the_gradient_to_the_visual_logits():
    """Where s_a = s_v (g = 0) the visual modality counts as the weaker one, so the centring term
    (g - mu_0)^2, whose gradient at g = 0 is not 0 when mu_0 != 0, moves the visual logits only."""
    from gapkit.gap import one_sided_gap

    l_a = torch.tensor([[1.0, 0.0]], requires_grad=True)
    l_v = torch.tensor([[1.0, 0.0]], requires_grad=True)
    g = one_sided_gap(l_a, l_v, torch.tensor([0]))
    assert g.item() == 0.0
    ((g - 0.1) ** 2).sum().backward()
    assert l_a.grad.abs().sum() == 0
    assert l_v.grad.abs().sum() > 0


def test_outputs_accuracy_counts_each_head_by_hand():
    """Fused, audio and visual accuracy of :class:`~gapkit.gap.Outputs`: 4, 3 and 1 of 5 right (no two alike, and
    none equal to its complement)."""
    from gapkit.gap import Outputs

    y = torch.tensor([0, 1, 2, 1, 0])
    one_hot = lambda classes: F.one_hot(torch.tensor(classes), 3).float()  # noqa: E731
    outputs = Outputs(logits=one_hot([0, 1, 2, 1, 2]), logits_a=one_hot([0, 1, 0, 1, 1]),
                      logits_v=one_hot([1, 0, 2, 0, 2]), labels=y)
    assert outputs.accuracy() == pytest.approx({"acc": 0.8, "acc_audio": 0.6, "acc_visual": 0.2})
