"""The peer methods of Table 1: each one's characteristic mechanism on hand-built tensors, a smoke run, exact resume."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fixtures_tiny import tiny_split
from gapkit.data.base import AVData
from gapkit.data.batches import iterate_batches
from gapkit.methods import METHODS, PEERS, Context, StepOutput, make_method
from gapkit.methods.agm import AGM, agm_coefficients, mono_modal_score, scale_gradient
from gapkit.methods.d_and_r import feature_purity, purity_score, relearn_weight, soft_reinit
from gapkit.methods.g_blending import GBlending, ogr_weights
from gapkit.methods.d_and_r import DiagnoseRelearn
from gapkit.methods.greedy import MMTM, MMTM_STAGES, Greedy, greedy_forward
from gapkit.methods.mla import MLA, entropy_weights, modify_gradient, update_projector
from gapkit.methods.ogm import OGM
from gapkit.methods.ogm_ge import OGMGE, modulate_encoder_gradients, ogm_coefficients, true_class_score
from gapkit.methods.opm import OPM, drop_features, opm_drop_probabilities
from gapkit.methods.peer_settings import DEFAULT_PEER_OPTIONS, PEER_SETTINGS, peer_overrides, settings_table
from gapkit.methods.pmr import PMR, class_means, entropy, pmr_coefficient, prototype_logits
from gapkit.models import AVClassifier
from gapkit.training import Trainer, TrainConfig, make_optimizer


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return AVData(tiny_split(48, 0), tiny_split(12, 1), tiny_split(12, 2), ["a", "b", "c"], info={"cache_key": "tiny"})


def _model(seed=0):
    torch.manual_seed(seed)
    return AVClassifier(3, width=2)


def _batch(data, n=12):
    s = data.train
    visual = (s.visual[:n].float() / 255 - 0.5) / 0.25
    return s.audio[:n].float(), visual, s.labels[:n]


def _ctx(epoch=0, **kw):
    return Context(epoch=epoch, phase="train", **kw)


# --- OGM-GE ---------------------------------------------------------------------------------------

def test_ogm_coefficient_is_one_for_the_weaker_and_the_formula_for_the_dominant():
    # Eq. 10 as in the paper and the authors' code: 1 - tanh(alpha * rho) for the dominant modality
    k_a, k_v, rho = ogm_coefficients(30.0, 20.0, alpha=0.8)
    assert rho == pytest.approx(1.5)
    assert k_v == 1.0 and k_a < 1
    assert k_a == pytest.approx(1 - math.tanh(0.8 * 1.5))
    k_a, k_v, _ = ogm_coefficients(10.0, 40.0, alpha=0.5)
    assert k_a == 1.0 and k_v == pytest.approx(1 - math.tanh(0.5 * 4.0))
    assert ogm_coefficients(7.0, 7.0, alpha=0.8)[:2] == (1.0, 1.0)
    # the continuous variant 1 - tanh(alpha * (rho - 1)): 1 at balance, below 1 for the dominant modality
    k_a, k_v, _ = ogm_coefficients(30.0, 20.0, alpha=0.8, ratio_offset=1)
    assert k_v == 1.0 and k_a == pytest.approx(1 - math.tanh(0.8 * (1.5 - 1)))
    assert ogm_coefficients(20.001, 20.0, alpha=0.8, ratio_offset=1)[0] == pytest.approx(1.0, abs=1e-4)
    assert OGMGE().options["ratio_offset"] == 0


def test_true_class_score_sums_the_ground_truth_softmax():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = torch.tensor([0, 1, 0])
    p = torch.softmax(logits, 1)
    assert true_class_score(logits, y).item() == pytest.approx((p[0, 0] + p[1, 1] + p[2, 0]).item())


def test_ogm_modulates_only_the_dominant_encoders_convolutions(data):
    model = _model()
    audio, visual, y = _batch(data)
    method = OGMGE(ge=False, alpha=0.8)
    out = method.training_step(model, audio, visual, y, _ctx())
    # hand-built unimodal logits: audio confident on the true class, visual uniform
    out = StepOutput(out.loss, out.logits, F.one_hot(y, 3).float() * 5, torch.zeros(len(y), 3))
    out.loss.backward()
    before = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    method.after_backward(model, out, y, _ctx())
    k_a, k_v, _ = ogm_coefficients(true_class_score(out.logits_a, y), true_class_score(out.logits_v, y), 0.8)
    assert k_a < 1 and k_v == 1
    for n, p in model.named_parameters():
        expected = before[n] * k_a if n.startswith("audio_encoder") and p.dim() == 4 else before[n]
        torch.testing.assert_close(p.grad, expected)


def test_ge_noise_has_the_gradients_std():
    conv = torch.nn.Conv2d(64, 64, 3)
    torch.manual_seed(1)
    conv.weight.grad = torch.randn_like(conv.weight) * 3.0
    g = conv.weight.grad.clone()
    modulate_encoder_gradients(conv, 0.5, noise=True)
    noise = conv.weight.grad - 0.5 * g
    assert noise.std().item() == pytest.approx(g.std().item(), rel=0.05)
    assert conv.bias.grad is None


# --- G-Blending -----------------------------------------------------------------------------------

def test_ogr_weights_by_hand():
    start = {"fused": (1.0, 1.2), "audio": (1.0, 1.1), "visual": (1.0, 1.3)}
    end = {"fused": (0.5, 1.0), "audio": (0.8, 1.0), "visual": (0.9, 1.4)}
    raw = {"fused": 0.2 / ((1.0 - 0.5) - (1.2 - 1.0)) ** 2,     # Delta G / Delta O^2
           "audio": 0.1 / ((1.0 - 0.8) - (1.1 - 1.0)) ** 2,
           "visual": 0.0}                                       # held-out loss rose: no weight
    w = ogr_weights(start, end)
    total = sum(raw.values())
    assert w == pytest.approx({k: v / total for k, v in raw.items()})
    assert ogr_weights(start, start) is None


def test_g_blending_loss_is_the_weighted_sum_of_the_heads(data):
    model = _model()
    audio, visual, y = _batch(data)
    method = GBlending(super_epoch=2)
    method.weights = {"fused": 0.5, "audio": 0.3, "visual": 0.2}
    out = method.training_step(model, audio, visual, y, _ctx())
    f, la, lv = model(audio, visual)
    expected = 0.5 * F.cross_entropy(f, y) + 0.3 * F.cross_entropy(la, y) + 0.2 * F.cross_entropy(lv, y)
    torch.testing.assert_close(out.loss, expected)


# --- PMR ------------------------------------------------------------------------------------------

def test_pmr_prototypes_are_the_class_means(data):
    model = _model()
    method = PMR(proto_fraction=1.0)
    proto = method.compute_prototypes(model, data)
    model.eval()
    with torch.no_grad():
        audio, visual, y, _ = next(iterate_batches(data.train, len(data.train)))
        phi_a, phi_v = model.encode(audio, visual)
    for k in range(3):
        torch.testing.assert_close(proto["audio"][k], phi_a[y == k].mean(0), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(proto["visual"][k], phi_v[y == k].mean(0), atol=1e-5, rtol=1e-5)


def test_class_means_keep_previous_prototype_of_an_absent_class():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0], [10.0, 0.0]])
    y = torch.tensor([0, 0, 2])
    prev = torch.full((3, 2), 7.0)
    torch.testing.assert_close(class_means(x, y, 3, prev), torch.tensor([[2.0, 3.0], [7.0, 7.0], [10.0, 0.0]]))


def test_pmr_loss_adds_pce_for_the_slow_and_entropy_for_the_dominant(data):
    model = _model()
    audio, visual, y = _batch(data)
    method = PMR(alpha=2.0, mu=0.1, entropy_epochs=1)
    assert method.options["coefficient"] == "constant"     # the authors' beta = alpha
    with torch.no_grad():
        phi_a, phi_v = model.encode(audio, visual)
    # audio prototypes at its class means (well separated), visual prototypes all equal (uninformative)
    method.prototypes = {"audio": class_means(phi_a, y, 3), "visual": phi_v.mean(0, keepdim=True).repeat(3, 1)}
    for epoch, with_entropy in ((0, True), (1, False)):
        out = method.training_step(model, audio, visual, y, _ctx(epoch))
        pa = prototype_logits(phi_a, method.prototypes["audio"])
        pv = prototype_logits(phi_v, method.prototypes["visual"])
        rho = true_class_score(pa, y).item() / true_class_score(pv, y).item()
        assert rho > 1                      # audio dominates, visual is the slow modality
        beta = 2.0
        expected = F.cross_entropy(model(audio, visual)[0], y) + beta * F.cross_entropy(pv, y)
        if with_entropy:
            expected = expected - 0.1 * entropy(pa)
        torch.testing.assert_close(out.loss, expected, atol=1e-5, rtol=1e-5)
    assert pmr_coefficient(1.0, 2.0) == 0 and pmr_coefficient(1.5, 2.0) == 2.0
    assert pmr_coefficient(1.5, 2.0, "ratio") == pytest.approx(1.0)   # gapkit's variant: alpha (rho - 1)
    torch.testing.assert_close(prototype_logits(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0], [0.0, 1.0]])),
                               torch.tensor([[-5.0, -1.0]]))


def test_pmr_pce_gradient_reaches_only_the_slow_encoder_with_weight_alpha(data):
    model = _model()
    audio, visual, y = _batch(data)
    method = PMR(alpha=2.0, mu=0.0)
    with torch.no_grad():
        phi_a, phi_v = model.encode(audio, visual)
    # audio prototypes at its class means, visual prototypes at the class means of permuted labels: visual is slow
    method.prototypes = {"audio": class_means(phi_a, y, 3), "visual": class_means(phi_v, (y + 1) % 3, 3)}
    pa = prototype_logits(phi_a, method.prototypes["audio"])
    pv = prototype_logits(phi_v, method.prototypes["visual"])
    assert true_class_score(pa, y) > true_class_score(pv, y)
    method.training_step(model, audio, visual, y, _ctx(5)).loss.backward()
    with_pmr = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    F.cross_entropy(model(audio, visual)[0], y).backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    (2.0 * F.cross_entropy(prototype_logits(model.visual_encoder(visual), method.prototypes["visual"]), y)).backward()
    pce = {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in model.named_parameters()}
    moved = 0
    for n in with_pmr:
        if n.startswith("visual_encoder"):
            torch.testing.assert_close(with_pmr[n] - plain[n], pce[n], atol=1e-5, rtol=1e-3)
            moved += int(pce[n].abs().max() > 1e-6)
        else:                                    # the dominant encoder and the head: L_MM's gradient alone
            torch.testing.assert_close(with_pmr[n], plain[n], atol=1e-6, rtol=1e-4)
    assert moved > 0


# --- AGM ------------------------------------------------------------------------------------------

def test_scale_gradient_is_identity_forward_and_scales_backward():
    x = torch.randn(4, 3, requires_grad=True)
    y = scale_gradient(x, 0.25)
    assert torch.equal(y, x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 0.25))


def test_agm_coefficients_by_hand():
    c_a, c_v = agm_coefficients(score_a=0.5, score_v=1.0, mean_a=0.8, mean_v=0.9, alpha=1.0)
    assert c_a == pytest.approx(math.exp(math.exp(0.1) - math.exp(0.5)))   # audio ahead of its usual share: < 1
    assert c_v == pytest.approx(math.exp(math.exp(-0.1) - math.exp(-0.5)))  # visual behind: > 1
    assert c_a < 1 < c_v
    assert agm_coefficients(1.0, 1.0, 12.0, 0.0, 1.0)[1] == pytest.approx(math.exp(10))  # clipped at 10
    y = torch.tensor([0, 1])
    m = torch.tensor([[100.0, -100.0], [0.0, 0.0]])
    assert mono_modal_score(m, y) == pytest.approx((0.0 + math.log(2)) / 2, abs=1e-6)


def test_agm_responses_sum_to_the_fused_logits(data):
    model = _model()
    audio, visual, y = _batch(data)
    total, m_a, m_v, la, lv = AGM(padding="input").responses(model, audio, visual)
    torch.testing.assert_close(m_a + m_v, total)
    assert model.training
    total, m_a, m_v, la, lv = AGM(padding="feature").responses(model, audio, visual)
    torch.testing.assert_close(m_a, la)  # the Eq. 3 logits
    torch.testing.assert_close(m_v, lv)


def test_agm_scales_the_gradient_through_each_modality(data):
    model = _model()
    audio, visual, y = _batch(data)
    method = AGM(padding="feature", clip_grad=False, alpha=1.0)
    method.running = {"audio": 0.5, "visual": 1.5, "iterations": 10}
    out = method.training_step(model, audio, visual, y, _ctx())
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    c_a, c_v = method.means.record()["agm_coeff_audio"], method.means.record()["agm_coeff_visual"]
    model.zero_grad()
    F.cross_entropy(model(audio, visual)[0], y).backward()
    for n, p in model.named_parameters():
        if n.startswith("audio_encoder"):
            torch.testing.assert_close(grads[n], c_a * p.grad, atol=1e-6, rtol=1e-4)
        elif n.startswith("visual_encoder"):
            torch.testing.assert_close(grads[n], c_v * p.grad, atol=1e-6, rtol=1e-4)
    assert method.running["iterations"] == 11


# --- MLA ------------------------------------------------------------------------------------------

def test_mla_projection_makes_the_gradient_orthogonal_to_the_inputs_seen():
    torch.manual_seed(0)
    d = 8
    P = torch.eye(d)
    r1 = torch.randn(d) * 3
    P = update_projector(P, r1, a=1e-6)
    torch.testing.assert_close(P, P.T)
    assert torch.linalg.matrix_norm(P).item() == pytest.approx(1.0)
    G = torch.randn(5, d)
    projected = modify_gradient(G, P, "replace")
    assert (projected @ r1).abs().max() < 1e-4 * (G @ r1).abs().max()      # G P r ~ 0
    r2 = torch.randn(d)
    P = update_projector(P, r2, a=1e-6)
    projected = modify_gradient(G, P, "replace")
    assert (projected @ r2).abs().max() < 1e-4 * (G @ r2).abs().max()
    assert (projected @ r1).abs().max() < 1e-3 * (G @ r1).abs().max()      # still orthogonal to the first
    torch.testing.assert_close(modify_gradient(G, P, "add"), G + G @ P.T)


class _Head(torch.nn.Module):
    def __init__(self, d, m):
        super().__init__()
        self.mla_head = torch.nn.Linear(d, m)


def _mla_response_change(method, seed=0, d=16, m=3, n=32, lr=0.1):
    """Audio sub-step, then visual sub-step; returns (|dW r_a|, |lr G_v r_a|, |dW|, |lr G_v|) of the visual step."""
    torch.manual_seed(seed)
    model = _Head(d, m)
    method.P = torch.eye(d)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    ctx = _ctx(batches_per_epoch=10, optimizer=optimizer)
    y = torch.arange(n) % m
    half = (torch.arange(d) < d // 2).float()
    phi_a = torch.randn(n, d) + 5 * half          # the modalities' mean inputs point in different directions
    phi_v = torch.randn(n, d) + 5 * (1 - half)
    for phi in (phi_a, phi_v):
        w0 = model.mla_head.weight.detach().clone()
        optimizer.zero_grad()
        F.cross_entropy(model.mla_head(phi), y).backward()
        raw = model.mla_head.weight.grad.clone()
        method.modify(model, phi, ctx)
        optimizer.step()
    step = model.mla_head.weight.detach() - w0
    r_a = phi_a.mean(0)
    return (step @ r_a).norm().item(), (lr * raw @ r_a).norm().item(), step.norm().item(), (lr * raw).norm().item()


def test_mla_projected_step_keeps_the_previous_modality_response_to_first_order():
    # the paper: P updated with the previous modality's mean input, G <- G P (OWM recursion)
    moved_r, raw_r, moved, raw = _mla_response_change(MLA())
    assert moved_r < 1e-3 * raw_r            # W r_a is unchanged to first order by the visual step
    assert moved > 0.03 * raw                # while the head still learns (P has unit Frobenius norm: ~1/sqrt(d))
    # BalanceBenchmark's additive form G + G P barely changes the step: the response moves as much as unprojected
    moved_r, raw_r, _, _ = _mla_response_change(MLA(projection="add"))
    assert moved_r > 0.9 * raw_r
    # the public codes' element-wise update and their use of the current modality's mean do not keep r_a either
    moved_r, raw_r, _, _ = _mla_response_change(MLA(projector_update="outer"))
    assert moved_r > 0.1 * raw_r
    moved_r, raw_r, _, _ = _mla_response_change(MLA(projector_input="current"))
    assert moved_r > 0.1 * raw_r
    moved_r, raw_r, _, _ = _mla_response_change(MLA(projection="none"))   # the released code: no projection
    assert moved_r == pytest.approx(raw_r, rel=1e-5)


def test_mla_first_sub_step_is_unmodified_and_the_previous_mean_is_kept_for_resume():
    method = MLA()
    model = _Head(4, 2)
    method.P = torch.eye(4)
    model.mla_head.weight.grad = torch.ones(2, 4)
    phi = torch.arange(8.0).view(2, 4)
    method.modify(model, phi, _ctx(batches_per_epoch=1))
    torch.testing.assert_close(model.mla_head.weight.grad, torch.ones(2, 4))   # nothing seen before
    torch.testing.assert_close(method.previous_mean, phi.mean(0))
    other = MLA()
    other.load_state_dict(method.state_dict())
    torch.testing.assert_close(other.previous_mean, phi.mean(0))
    assert other.sub_steps == 1


def test_mla_entropy_weights_favour_the_confident_modality():
    confident = torch.tensor([[5.0, 0.0, 0.0]])
    unsure = torch.tensor([[0.1, 0.0, 0.0]])
    w_c, w_u = entropy_weights([confident, unsure])
    assert w_c.item() + w_u.item() == pytest.approx(1.0)
    assert w_c.item() > 0.5 > w_u.item()
    e = [-(torch.softmax(x, 1) * torch.log_softmax(x, 1)).sum().item() for x in (confident, unsure)]
    assert w_c.item() == pytest.approx(math.exp(e[1] - e[0]) / (math.exp(e[1] - e[0]) + 1))


def test_mla_takes_one_optimizer_step_per_modality_and_predicts_the_fused_head(data):
    model = _model()
    method = MLA()
    method.setup(model)
    audio, visual, y = _batch(data)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    steps = []
    original = optimizer.step
    optimizer.step = lambda *a, **k: (steps.append(model.mla_head.weight.detach().clone()), original(*a, **k))[1]
    head0 = model.mla_head.weight.detach().clone()
    ctx = _ctx(batches_per_epoch=4, optimizer=optimizer)
    out = method.training_step(model, audio, visual, y, ctx)
    assert len(steps) == 1 and not torch.equal(model.mla_head.weight, head0)   # the audio step is taken
    optimizer.zero_grad()
    out.loss.backward()
    assert model.fusion.weight.grad is None and model.audio_encoder.stem[0].weight.grad is None
    method.after_backward(model, out, y, ctx)
    optimizer.step()
    assert len(steps) == 2 and method.sub_steps == 2
    model.eval()
    fused, out_a, out_v = method.predict(model, audio, visual)
    phi_a, phi_v = model.encode(audio, visual)
    torch.testing.assert_close(out_a, model.mla_head(phi_a))
    w_a, w_v = entropy_weights([out_a, out_v])
    torch.testing.assert_close(fused, w_a * out_a + w_v * out_v)


# --- Greedy ---------------------------------------------------------------------------------------

def test_mmtm_rebalancing_cuts_the_cross_modal_flow_into_the_caring_modality():
    torch.manual_seed(0)
    mmtm = MMTM(4, 6)
    a, v = torch.randn(3, 4, 5, 5), torch.randn(3, 2, 6, 4, 4)
    mmtm.train()
    out_a, out_v = mmtm(a, v)                   # updates the running averages
    assert mmtm.steps.item() == 1
    mmtm.eval()
    other_v = torch.randn_like(v)
    cut_a, _ = mmtm(a, v, curation=True, caring=0)
    cut_a2, _ = mmtm(a, other_v, curation=True, caring=0)
    torch.testing.assert_close(cut_a, cut_a2)                  # audio no longer depends on the visual input
    torch.testing.assert_close(cut_a, a * mmtm.running_audio[None, :, None, None])
    free_a, _ = mmtm(a, other_v)
    assert not torch.allclose(free_a, cut_a)
    _, cut_v = mmtm(a, v, curation=True, caring=1)
    torch.testing.assert_close(cut_v, v * mmtm.running_visual[None, None, :, None, None])


def test_greedy_enters_a_rebalancing_window_for_the_modality_leaning_on_the_bypass(data):
    method = Greedy(epsilon=0.1, window=3, starting_epoch=2)
    model = _model()
    method.setup(model)
    values = iter([0.5, -0.5, 0.01])
    method.conditional_speed = lambda model: next(values)
    method.after_backward(model, None, None, _ctx(0))   # the authors' epoch 1 (< 2): measured, never acted on
    assert not method.curation
    method.after_backward(model, None, None, _ctx(1))   # their epoch 2; d = -0.5: visual leans on the bypass
    assert method.curation and method.caring == 1
    for _ in range(3):
        method.after_backward(model, None, None, _ctx(1))
    assert not method.curation                          # the window of 3 steps is over
    method.after_backward(model, None, None, _ctx(1))   # d = 0.01 < epsilon
    assert not method.curation


def test_greedy_network_is_the_authors_three_mmtm_and_averaged_branch_heads(data):
    assert Greedy().options == {"epsilon": 0.01, "window": 5, "starting_epoch": 2, "ratio": 4}
    model = _model()
    method = Greedy()
    method.setup(model)
    channels = [stage[-1].bn2.num_features for stage in model.audio_encoder.stages]
    assert MMTM_STAGES == (1, 2, 3) and len(model.greedy_mmtm) == 3
    assert [mmtm.excite_audio.out_features for mmtm in model.greedy_mmtm] == channels[1:]
    audio, visual, y = _batch(data)
    fused, out_a, out_v = greedy_forward(model, audio, visual)
    torch.testing.assert_close(fused, 0.5 * (out_a + out_v))
    seen = {}
    model.greedy_heads[0].register_forward_hook(lambda mod, args, out: seen.update(phi_a=args[0]))
    greedy_forward(model, audio, visual)
    torch.testing.assert_close(model.greedy_heads[0](seen["phi_a"]), out_a)
    out = method.training_step(model, audio, visual, y, _ctx())
    out.loss.backward()
    assert model.fusion.weight.grad is None                      # the concat head is not used
    assert model.greedy_heads[1].weight.grad.abs().sum() > 0
    torch.testing.assert_close(out.loss, F.cross_entropy(0.5 * (out.logits_a + out.logits_v), y))


def test_greedy_conditional_speed_is_bdr_difference(data):
    model = _model()
    method = Greedy()
    method.setup(model)
    audio, visual, y = _batch(data)
    out = method.training_step(model, audio, visual, y, _ctx())
    out.loss.backward()
    d = method.conditional_speed(model)
    s = method.speeds
    assert d == pytest.approx(math.log10(s["bypass_audio"] / s["main_audio"]) - math.log10(s["bypass_visual"] / s["main_visual"]))


# --- D&R ------------------------------------------------------------------------------------------

def test_soft_reinit_interpolates_toward_the_initial_weights():
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2)
    init = {k: v.detach().clone() for k, v in layer.named_parameters()}
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p))
    current = {k: v.detach().clone() for k, v in layer.named_parameters()}
    soft_reinit(layer, init, 0.3)
    for k, p in layer.named_parameters():
        torch.testing.assert_close(p.detach(), 0.3 * init[k] + 0.7 * current[k])


def test_d_and_r_resets_each_encoder_toward_its_initial_weights_by_its_own_weight(data, monkeypatch):
    model = _model()
    method = DiagnoseRelearn(reinit_epoch=2, reinit_num=1)
    method.setup(model)
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        for b in model.buffers():
            if b.dtype.is_floating_point:
                b.add_(0.5)
    trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
    weights = {"weight_audio": 0.25, "weight_visual": 0.75}
    monkeypatch.setattr(method, "diagnose", lambda model, data: dict(weights))
    method.on_epoch_start(model, data, _ctx(2))       # after epoch 1: no diagnosis
    assert all(torch.equal(v, trained[k]) for k, v in model.state_dict().items())
    method.on_epoch_start(model, data, _ctx(3))       # after epoch 2: re-learn
    params = dict(model.named_parameters())
    for k, v in model.state_dict().items():
        if k in params and k.startswith(("audio_encoder", "visual_encoder")):
            w = weights["weight_audio" if k.startswith("audio") else "weight_visual"]
            torch.testing.assert_close(v, w * init[k] + (1 - w) * trained[k])
        else:                                        # the head and every BatchNorm statistic keep their state
            assert torch.equal(v, trained[k]), k
    after = {k: v.detach().clone() for k, v in model.state_dict().items()}
    method.on_epoch_start(model, data, _ctx(5))       # reinit_num = 1 reached
    assert all(torch.equal(v, after[k]) for k, v in model.state_dict().items())


def test_purity_and_relearn_weight_by_hand():
    labels = np.array([0, 0, 1, 1, 1, 2])
    clusters = np.array([5, 5, 5, 7, 7, 7])
    assert purity_score(labels, clusters) == pytest.approx(4 / 6)   # cluster 5 -> 0 (2 hits), 7 -> 1 (2 hits)
    assert relearn_weight(0.9, 0.6, 3.0) == pytest.approx(math.tanh(0.9))
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    separable = np.eye(3)[y] * 10 + rng.normal(size=(60, 3)) * 0.1
    assert feature_purity(separable, y, 3) == 1.0


# --- OPM and OGM (run separately, as their authors run them) --------------------------------------

def test_opm_drops_only_the_dominant_modality_with_a_probability_growing_with_the_discrepancy():
    q_a, q_v = opm_drop_probabilities(30.0, 20.0, q_base=0.5, lam=0.5)
    assert q_v == 0 and q_a == pytest.approx(0.5 * (1 + 0.5 * math.tanh(0.5)))
    assert opm_drop_probabilities(10.0, 10.0, 0.5, 0.5) == (0.0, 0.0)
    qs = [opm_drop_probabilities(10.0 * r, 10.0, 0.5, 0.5)[0] for r in (1.1, 1.5, 2.0, 4.0)]
    assert all(a < b for a, b in zip(qs, qs[1:]))
    assert opm_drop_probabilities(10.0, 40.0, 0.5, 0.5)[0] == 0.0

    torch.manual_seed(0)
    phi_a, phi_v = torch.ones(20000, 4), torch.ones(20000, 4)
    q_a = 0.6
    out_a, out_v, keep = drop_features(phi_a, phi_v, q_a, 0.0)
    theta = (4 * q_a) / 8
    assert (out_v == 1 / (1 - theta)).all()                  # the weaker modality is never dropped
    dropped = (out_a[:, 0] == 0).float().mean().item()
    assert dropped == pytest.approx(q_a, abs=0.02)
    assert torch.allclose(out_a[out_a[:, 0] != 0], torch.tensor(1 / (1 - theta)))
    assert keep.all()


def test_opm_drops_the_dominant_features_in_the_forward_pass_after_the_warm_up(data):
    model = _model()
    audio, visual, y = _batch(data)
    method = OPM(p_exe=1.0)
    assert method.options["modulation_starts"] == 6 and "after_backward" not in vars(OPM)   # no gradient modulation
    out = method.training_step(model, audio, visual, y, _ctx(5))          # their warm-up: plain L_MM
    torch.testing.assert_close(out.loss, F.cross_entropy(model(audio, visual)[0], y))
    phi_a, phi_v = model.encode(audio, visual)
    la, lv = model.unimodal_logits(phi_a, phi_v)
    q_a, q_v = opm_drop_probabilities(true_class_score(la, y), true_class_score(lv, y), 0.5, 0.5)
    assert (q_a > 0) != (q_v > 0)                                         # only the dominant one is dropped
    torch.manual_seed(3)
    out = method.training_step(model, audio, visual, y, _ctx(6))
    torch.manual_seed(3)
    torch.rand(())                                                        # the p_exe draw
    da, dv, keep = drop_features(phi_a, phi_v, q_a, q_v)
    ce = F.cross_entropy(model.head(da, dv)[0], y, reduction="none")
    expected = (ce * keep).sum() / keep.sum()
    torch.testing.assert_close(out.loss, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out.loss, F.cross_entropy(model(audio, visual)[0], y))


def test_ogm_modulates_the_dominant_encoder_only_after_the_authors_warm_up(data):
    method = OGM(ge=False)
    assert (method.options["alpha"], method.options["modulation_starts"], method.options["modulation_ends"]) == (0.8, 6, 60)
    model = _model()
    audio, visual, y = _batch(data)
    for epoch, modulated in ((5, False), (6, True), (60, True), (61, False)):
        model.zero_grad()
        out = method.training_step(model, audio, visual, y, _ctx(epoch))
        out = StepOutput(out.loss, out.logits, F.one_hot(y, 3).float() * 5, torch.zeros(len(y), 3))
        out.loss.backward()
        before = {n: p.grad.clone() for n, p in model.named_parameters()}
        method.after_backward(model, out, y, _ctx(epoch))
        k_a = ogm_coefficients(true_class_score(out.logits_a, y), true_class_score(out.logits_v, y), 0.8)[0]
        assert k_a < 0.5
        for n, p in model.named_parameters():
            scaled = modulated and n.startswith("audio_encoder") and p.dim() == 4
            torch.testing.assert_close(p.grad, before[n] * k_a if scaled else before[n])


# --- each peer's own settings ---------------------------------------------------------------------

def test_peer_settings_table_covers_every_peer_with_sources_and_valid_settings():
    assert set(PEER_SETTINGS) == {cls.name for cls in PEERS}
    for name, settings in PEER_SETTINGS.items():
        assert settings.source
        assert peer_overrides(name, "shared") == {}
        over = peer_overrides(name, "authors")
        if settings.optimizer is None:
            assert over == {}
        else:
            TrainConfig(**over)                                           # every value is one the trainer accepts
    mla = peer_overrides("mla", "authors")
    assert (mla["optimizer"], mla["lr"], mla["momentum"], mla["weight_decay"]) == ("sgd", 1e-3, 0.9, 1e-4)
    assert (mla["lr_schedule"], mla["lr_step_size"], mla["lr_gamma"]) == ("step", 70, 0.1)
    assert peer_overrides("d-and-r", "authors")["lr"] == 2e-3
    assert peer_overrides("d-and-r", "authors")["lr_schedule"] == "constant"
    assert peer_overrides("agm", "authors")["lr"] == 1e-4
    assert peer_overrides("g-blending", "authors") == {} and peer_overrides("concat", "authors") == {}
    opm = TrainConfig(**peer_overrides("opm", "authors"))
    assert isinstance(make_optimizer(torch.nn.Linear(2, 2), opm), torch.optim.AdamW)
    with pytest.raises(ValueError, match="peer_settings"):
        peer_overrides("mla", "mine")
    for name, options in DEFAULT_PEER_OPTIONS.items():
        assert name in PEER_SETTINGS
        make_method(name, **options)                                      # every scaled option exists
    assert list(settings_table()["method"]) == list(PEER_SETTINGS)


def test_the_paper_profile_plans_each_peer_with_its_authors_settings_and_the_default_profile_shares_its_own():
    from gapkit.profiles import get_profile
    from gapkit.studies import plan_table1

    paper = get_profile("paper")
    assert paper.peer_settings == "authors" and get_profile("default").peer_settings == "shared"
    specs = {spec.method: spec for spec in plan_table1(paper, seeds=[0])}
    assert {"opm", "ogm"} <= set(specs) and "opm-ogm" not in specs
    assert specs["mla"].name == "mla-authors-seed0"
    config = specs["mla"].config(paper)
    assert (config["optimizer"], config["lr"], config["lr_schedule"], config["lr_step_size"]) == ("sgd", 1e-3, "step", 70)
    assert specs["opm"].config(paper)["optimizer"] == "adamw"
    assert config["batch_size"] == paper.training.batch_size
    assert config["warmup_epochs"] == paper.training.warmup_epochs
    for method in ("concat", "adaptive", "warmup-only", "g-blending"):      # ours, its controls, no authors' code
        assert specs[method].overrides == {} and "-authors" not in specs[method].name
    default = get_profile("default")
    planned = {spec.method: spec for spec in plan_table1(default, seeds=[0])}
    assert all(spec.overrides == {} and "-authors" not in spec.name for spec in planned.values())
    assert planned["opm"].options == DEFAULT_PEER_OPTIONS["opm"] and planned["opm"].config(default)["lr"] == default.training.lr


# --- smoke runs and resume ------------------------------------------------------------------------

SMOKE_OPTIONS = {"g-blending": {"super_epoch": 2}, "d-and-r": {"reinit_epoch": 1}, "opm": {"modulation_starts": 0},
                 "ogm": {"modulation_starts": 0},
                 "pmr": {"momentum_coef": 0.5, "proto_fraction": 0.5}, "agm": {"modulation_ends": 1}}
DIAGNOSTIC = {"ogm-ge": "ogm_coeff_audio", "g-blending": "gb_weight_fused", "pmr": "pmr_ratio_audio",
              "agm": "agm_coeff_audio", "mla": "mla_sub_steps", "greedy": "greedy_d", "d-and-r": "dr_reinits",
              "opm": "opm_q_audio", "ogm": "ogm_coeff_audio"}


def _train(data, name, epochs=3, out_dir=None):
    cfg = TrainConfig(method=name, method_options=SMOKE_OPTIONS.get(name, {}), warmup_epochs=epochs, adaptive_steps=0,
                      adaptive_epochs=1, batch_size=16, lr=0.02, seed=0)
    return Trainer(_model(), data, cfg, device="cpu", out_dir=out_dir).fit()


def test_registry_has_every_peer():
    assert [cls.name for cls in PEERS] == ["g-blending", "ogm-ge", "greedy", "pmr", "agm", "mla", "d-and-r", "opm",
                                           "ogm"]
    for cls in PEERS:
        assert METHODS[cls.name] is cls and not cls.two_stage and not cls.fits_gmm
        assert isinstance(make_method(cls.name), cls)
        with pytest.raises(ValueError, match="no option"):
            make_method(cls.name, no_such_option=1)


@pytest.mark.parametrize("name", [cls.name for cls in PEERS])
def test_smoke_training(data, name):
    result = _train(data, name)
    epochs = result.history["epochs"]
    assert len(epochs) == 3 and {e["phase"] for e in epochs} == {"train"}
    for e in epochs:
        assert math.isfinite(e["loss"]) and e["loss"] > 0
        # accuracies count whole clips: the running train accuracy over 48, val and test over 12
        for key, n in (("train_acc", 48), ("val_acc", 12), ("test_acc", 12), ("val_acc_audio", 12),
                       ("test_acc_visual", 12)):
            assert key not in e or e[key] * n == pytest.approx(round(e[key] * n)), key
        assert math.isfinite(e[DIAGNOSTIC[name]])
    # the summary reports the test accuracy at the first epoch of best validation accuracy
    best = max(range(3), key=lambda i: (epochs[i]["val_acc"], -i))
    summary = result.summary()
    assert [i for i, e in enumerate(epochs) if "test_acc" in e] == sorted({best, 2})  # tested: selected and last
    assert summary["best_val_epoch"] == best and summary["test_acc"] == epochs[best]["test_acc"]
    assert summary["last_test_acc"] == epochs[-1]["test_acc"]
    # training moved the encoders' weights
    initial = _model().state_dict()
    for prefix in ("audio_encoder.stem.0.weight", "visual_encoder.frame_encoder.stem.0.weight"):
        key = next(k for k in result.last_state if k.endswith(prefix))
        assert not torch.equal(result.last_state[key], initial[key]), key


@pytest.mark.parametrize("name", ["g-blending", "pmr", "agm", "mla", "greedy", "d-and-r"])
def test_killed_run_resumes_to_the_same_result(data, name, tmp_path, monkeypatch):
    full = _train(data, name)
    original = Trainer._train_epoch

    def dies_at_epoch_2(self, optimizer, generator, ctx):
        if ctx.epoch == 2:
            raise KeyboardInterrupt
        return original(self, optimizer, generator, ctx)

    monkeypatch.setattr(Trainer, "_train_epoch", dies_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        _train(data, name, out_dir=tmp_path)
    monkeypatch.setattr(Trainer, "_train_epoch", original)
    resumed = _train(data, name, out_dir=tmp_path)
    strip = lambda h: [{k: v for k, v in e.items() if "seconds" not in k} for e in h["epochs"]]
    assert strip(resumed.history) == strip(full.history)
