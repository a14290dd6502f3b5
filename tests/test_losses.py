"""The drop-in losses against formulas written here from IRLLREC_SPEC.md section 4 (and RLMRec's
loss_utils semantics), fused against torch (values and gradients), and one whole IRLLRec step from
../shared/testvectors."""
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import TOLERANCES, assert_close
from irllrec_fast import _library, losses, testing

IMPLS = ["torch", "fused"]


def rows(n, d, device, dtype=torch.float64, seed=0, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(n, d, generator=gen, dtype=torch.float64)).to(device, dtype)


# --- section 4, written independently of irllrec_fast.losses -------------------------------------

def spec_nce(a, b, cands, tau):
    """NCE(a, b, C, tau): rows normalised as x / sqrt(1e-8 + ||x||^2), then the sum over rows of
    -<a_k, b_k>/tau + log sum_j exp(<a_k, C_j>/tau)."""
    def unit(x):
        return x / (x.pow(2).sum(1, keepdim=True) + 1e-8).sqrt()
    a, b, cands = unit(a), unit(b), unit(cands)
    positive = torch.einsum("kd,kd->k", a, b) / tau
    return (torch.logsumexp(torch.einsum("kd,jd->kj", a, cands) / tau, dim=1) - positive).sum()


def spec_translation(x, y, temp=1.0):
    """L_ta of section 4.5 (temperature 1 there): x^ = x / max(||x||, 1e-12), likewise y^;
    -(1/N) sum_n log( exp(x^_n.y^_n) / (sum_m exp(x^_n.y^_m) + 1e-8) + 1e-8 ), logits over temp."""
    xh = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    yh = y / y.norm(dim=1, keepdim=True).clamp_min(1e-12)
    logits = xh @ yh.T / temp
    mole = torch.exp(torch.diagonal(logits))
    deno = torch.exp(logits).sum(1)
    return -torch.log(mole / (deno + 1e-8) + 1e-8).mean()


def spec_bpr_sum(anc, pos, neg):
    """RLMRec's cal_bpr_loss: sum over the batch of -log sigmoid(<anc, pos> - <anc, neg>)."""
    return -F.logsigmoid((anc * pos).sum(1) - (anc * neg).sum(1)).sum()


def spec_soft(student, teacher):
    """Section 4.6: (1/N) sum_n sum_k softmax(teacher_n)_k * log_softmax(student_n)_k."""
    weights = torch.exp(teacher - torch.logsumexp(teacher, 1, keepdim=True))
    return (weights * (student - torch.logsumexp(student, 1, keepdim=True))).sum() / student.shape[0]


def spec_info_nce(a, b, cands, tau):
    """Per row, F.normalize'd: -<a_k, b_k>/tau + log sum_j exp(<a_k, c_j>/tau)."""
    a, b, cands = (x / x.norm(dim=1, keepdim=True).clamp_min(1e-12) for x in (a, b, cands))
    return torch.logsumexp(a @ cands.T / tau, 1) - (a * b).sum(1) / tau


def value_and_grads(fn, *inputs):
    inputs = [x.detach().clone().requires_grad_() for x in inputs]
    value = fn(*inputs)
    grads = torch.autograd.grad(value, inputs, allow_unused=True, materialize_grads=True)
    return value.detach(), grads


def assert_same(got, want, dtype, scale=1.0):
    value, grads = got
    want_value, want_grads = want
    assert_close(value, want_value.to(value.dtype), dtype, scale)
    for g, w in zip(grads, want_grads):
        assert_close(g, w.to(g.dtype), dtype, scale)


# --- the losses one by one ------------------------------------------------------------------------

def test_cal_bpr_loss(device):
    anc, pos, neg = (rows(64, 8, device, seed=s) for s in (1, 2, 3))
    assert_same(value_and_grads(losses.cal_bpr_loss, anc, pos, neg),
                value_and_grads(spec_bpr_sum, anc, pos, neg), torch.float64)


@pytest.mark.parametrize("impl", IMPLS)
def test_reg_params_counts_every_parameter(device, impl):
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.LeakyReLU(), torch.nn.Linear(4, 3))
    frozen = torch.nn.Linear(3, 2)
    frozen.requires_grad_(False)  # a momentum teacher: counted in the value, no gradient
    model.append(frozen)
    model.to(device, torch.float64)
    expected = sum(float((p.detach().double() ** 2).sum()) for p in model.parameters())
    value = losses.reg_params(model, impl=impl)
    assert math.isclose(value.detach().item(), expected, rel_tol=1e-12)
    with torch.no_grad():
        frozen.weight.mul_(0.5)  # the teacher's momentum update comes before the backward
    value.backward()
    assert frozen.weight.grad is None and frozen.bias.grad is None
    for p in model[0].parameters():
        assert_close(p.grad, 2 * p.detach())
    assert_close(model[2].bias.grad, 2 * model[2].bias.detach())


@pytest.mark.parametrize("impl", IMPLS)
def test_reg_pick_embeds(device, impl):
    picked = [rows(6, 4, device, seed=s) for s in (1, 2, 3)]
    expected = sum(float((e ** 2).sum()) for e in picked)
    value, grads = value_and_grads(lambda *e: losses.reg_pick_embeds(e, impl=impl), *picked)
    assert math.isclose(value.item(), expected, rel_tol=1e-12)
    for g, e in zip(grads, picked):
        assert_close(g, 2 * e)
    assert losses.reg_pick_embeds([], impl=impl).item() == 0


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("candidates", ["all", "in_batch", "same_tensor"])
def test_cal_infonce_loss(device, impl, dtype, candidates):
    anchors, positives = rows(40, 16, device, dtype, 1, 3.0), rows(40, 16, device, dtype, 2, 0.5)
    everyone = rows(300, 16, device, dtype, 3)
    # RLMRec passes the positives themselves as candidates for in-batch items
    cands = {"all": everyone, "in_batch": positives.clone(), "same_tensor": None}[candidates]

    def ours(a, b, *c):
        return losses.cal_infonce_loss(a, b, c[0] if c else b, 0.2, impl=impl)

    def spec(a, b, *c):
        return spec_nce(a.double(), b.double(), (c[0] if c else b).double(), 0.2)

    inputs = (anchors, positives) + (() if cands is None else (cands,))
    assert_same(value_and_grads(ours, *inputs), value_and_grads(spec, *inputs), dtype, scale=10)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("temp", [0.2, 1.0])
def test_ssl_con_loss(device, impl, dtype, temp):
    x, y = rows(500, 32, device, dtype, 1), rows(500, 32, device, dtype, 2)
    x[3] = 0  # a zero row: F.normalize leaves it 0

    def spec(x, y):
        return spec_translation(x.double(), y.double(), temp)

    assert_same(value_and_grads(lambda x, y: losses.ssl_con_loss(x, y, temp, impl=impl), x, y),
                value_and_grads(spec, x, y), dtype)


def test_momentum_distill_loss(device):
    student, teacher = rows(50, 32, device, seed=1), rows(50, 32, device, seed=2)
    teacher.requires_grad_()
    got = value_and_grads(lambda s: losses.momentum_distill_loss(s, teacher), student)
    assert_same(got, value_and_grads(lambda s: spec_soft(s, teacher.detach()), student), torch.float64)
    losses.momentum_distill_loss(student.requires_grad_(), teacher).backward()
    assert teacher.grad is None and student.grad is not None  # the teacher gets no gradient


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("setting", ["in_batch", "candidates", "symmetric"])
def test_info_nce(device, impl, reduction, setting):
    a, b, c = rows(30, 12, device, seed=1), rows(30, 12, device, seed=2), rows(90, 12, device, seed=3)

    def ours(a, b, c):
        return losses.info_nce(a, b, c if setting == "candidates" else None, 0.3, reduction,
                               symmetric=setting == "symmetric", impl=impl)

    def spec(a, b, c):
        if setting == "symmetric":
            per_row = 0.5 * (spec_info_nce(a, b, b, 0.3) + spec_info_nce(b, a, a, 0.3))
        else:
            per_row = spec_info_nce(a, b, c if setting == "candidates" else b, 0.3)
        return {"mean": per_row.mean(), "sum": per_row.sum(), "none": per_row}[reduction]

    def total(fn):
        return lambda *x: fn(*x).sum()

    assert_close(ours(a, b, c), spec(a, b, c))
    assert_same(value_and_grads(total(ours), a, b, c), value_and_grads(total(spec), a, b, c),
                torch.float64)


# --- fused against torch, and where only fused survives ------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_equals_torch(device, dtype):
    x, y, everyone = rows(200, 32, device, dtype, 1), rows(200, 32, device, dtype, 2), rows(700, 32, device, dtype, 3)
    cases = [
        (lambda i: lambda x, y, c: losses.cal_infonce_loss(x, y, c, 0.2, impl=i), (x, y, everyone)),
        (lambda i: lambda x, y: losses.cal_infonce_loss(x, y, y, 0.2, impl=i), (x, y)),
        (lambda i: lambda x, y: losses.ssl_con_loss(x, y, 1.0, impl=i), (x, y)),
        (lambda i: lambda x, y: losses.info_nce(x, y, symmetric=True, impl=i), (x, y)),
    ]
    for make, inputs in cases:
        assert_same(value_and_grads(make("fused"), *inputs), value_and_grads(make("torch"), *inputs),
                    dtype, scale=10)


def test_ssl_con_loss_fused_survives_small_temperatures(device):
    # at temp 0.01 the literal formula's exp(1/temp) overflows float32 (inf / inf); the fused
    # path stays finite and equals the float64 formula
    x, y = rows(300, 32, device, torch.float32, 1), rows(300, 32, device, torch.float32, 2)
    y[:10] = -x[:10] * 3  # rows whose positive is the least similar candidate
    y[10:20] = x[10:20] * 2  # and rows whose logit 1 / temp = 100 overflows exp in float32
    with torch.no_grad():
        assert not torch.isfinite(losses.ssl_con_loss(x, y, 0.01, impl="torch"))
    got = value_and_grads(lambda x, y: losses.ssl_con_loss(x, y, 0.01, impl="fused"), x, y)
    want = value_and_grads(lambda x, y: spec_translation(x.double(), y.double(), 0.01), x, y)
    assert all(torch.isfinite(g).all() for g in got[1])
    assert_same(got, want, torch.float32, scale=100)


def test_ssl_con_loss_far_below_every_candidate(device):
    # every logit of x_0 is -1/temp: exp(-lse) overflows float32, which must not reach the
    # gradient as inf / inf
    y = F.normalize(0.05 * rows(64, 8, device, torch.float32, 2) + 1, dim=1)  # all alike
    x = rows(64, 8, device, torch.float32, 1)
    x[0] = -y.mean(0) * 50
    with torch.no_grad():
        lse = torch.logsumexp(F.normalize(x) @ y.T / 0.01, 1)
    assert lse[0] < -89  # exp(-lse) is beyond float32
    got = value_and_grads(lambda x, y: losses.ssl_con_loss(x, y, 0.01, impl="fused"), x, y)
    want = value_and_grads(lambda x, y: spec_translation(x.double(), y.double(), 0.01), x, y)
    assert torch.isfinite(got[0]) and all(torch.isfinite(g).all() for g in got[1])
    assert_same(got, want, torch.float32, scale=100)


HALF_PRECISION_LOSSES = {
    "cal_infonce_loss": lambda a, b, c: losses.cal_infonce_loss(a, b, c, 0.2, impl="fused"),
    "cal_infonce_loss in-batch": lambda a, b, c: losses.cal_infonce_loss(a, b, b, 0.2,
                                                                         impl="fused"),
    "ssl_con_loss": lambda a, b, c: losses.ssl_con_loss(a, b, impl="fused"),
    "info_nce": lambda a, b, c: losses.info_nce(a, b, c, impl="fused"),
    "info_nce symmetric": lambda a, b, c: losses.info_nce(a, b, symmetric=True, impl="fused"),
}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", list(HALF_PRECISION_LOSSES))
def test_fused_losses_take_half_precision_in_float32(device, dtype, name):
    """As autocast makes them: the loss is that of the same values in float32, and each input's
    gradient is the float32 one in the input's dtype."""
    loss_fn = HALF_PRECISION_LOSSES[name]
    inputs = [rows(n, 16, device, seed=s).to(dtype) for n, s in ((12, 1), (12, 2), (30, 3))]
    half = [x.clone().requires_grad_() for x in inputs]
    full = [x.float().requires_grad_() for x in inputs]
    value, want = loss_fn(*half), loss_fn(*full)
    assert value.dtype == torch.float32
    assert torch.equal(value.detach(), want.detach())
    grads = torch.autograd.grad(value, half, allow_unused=True, materialize_grads=True)
    want_grads = torch.autograd.grad(want, full, allow_unused=True, materialize_grads=True)
    for g, w in zip(grads, want_grads):
        assert g.dtype == dtype and torch.equal(g, w.to(dtype))
    # and near the literal formula computed in float64 from the same half-precision values
    reference = {"cal_infonce_loss": lambda a, b, c: spec_nce(a, b, c, 0.2),
                 "cal_infonce_loss in-batch": lambda a, b, c: spec_nce(a, b, b, 0.2),
                 "ssl_con_loss": lambda a, b, c: spec_translation(a, b),
                 "info_nce": lambda a, b, c: spec_info_nce(a, b, c, 0.2).mean(),
                 "info_nce symmetric": lambda a, b, c: 0.5 * (spec_info_nce(a, b, b, 0.2)
                                                             + spec_info_nce(b, a, a, 0.2)).mean()}
    expected = reference[name](*(x.double() for x in inputs))
    torch.testing.assert_close(value.double(), expected, atol=1e-5, rtol=1e-5)


def test_fused_losses_under_autocast(device):
    """A bfloat16 linear layer under autocast feeds cal_infonce_loss: finite float32 loss, and
    the layer's float32 weight gets its gradient through the bfloat16 activations."""
    layer = torch.nn.Linear(16, 16).to(device)
    x, y = rows(12, 16, device, torch.float32, seed=1), rows(12, 16, device, torch.float32, seed=2)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        anchors = layer(x)
        loss = losses.cal_infonce_loss(anchors, y, y, 0.2, impl="fused")
    assert anchors.dtype == torch.bfloat16 and loss.dtype == torch.float32
    loss.backward()
    assert torch.isfinite(loss) and layer.weight.grad is not None
    assert torch.isfinite(layer.weight.grad).all() and layer.weight.grad.abs().sum() > 0


LEARNABLE_TEMPERATURE_LOSSES = {
    "cal_infonce_loss": lambda a, b, c, t, impl: losses.cal_infonce_loss(a, b, c, t, impl=impl),
    "ssl_con_loss": lambda a, b, c, t, impl: losses.ssl_con_loss(a, b, t, impl=impl),
    "info_nce": lambda a, b, c, t, impl: losses.info_nce(a, b, c, temperature=t, impl=impl),
    "info_nce symmetric": lambda a, b, c, t, impl: losses.info_nce(a, b, temperature=t,
                                                                   symmetric=True, impl=impl),
}


@pytest.mark.parametrize("name", list(LEARNABLE_TEMPERATURE_LOSSES))
def test_a_learnable_temperature_gets_its_gradient(device, name):
    """The fused kernel takes tau as a float; a temperature tensor that requires grad must still
    get d loss / d tau, as on the torch path."""
    loss_fn = LEARNABLE_TEMPERATURE_LOSSES[name]
    a, b, c = rows(10, 8, device, seed=1), rows(10, 8, device, seed=2), rows(25, 8, device, seed=3)
    temperature = torch.tensor(0.3, dtype=torch.float64, device=device)
    results = {impl: value_and_grads(lambda x, t, impl=impl: loss_fn(x, b, c, t, impl), a,
                                     temperature)
               for impl in IMPLS}
    assert results["fused"][1][1].abs() > 0
    assert_same(results["fused"], results["torch"], torch.float64)
    # a plain float and a tensor that needs no gradient give the same value as the learnable one
    for temperature in (0.3, torch.tensor(0.3, dtype=torch.float64, device=device)):
        assert_close(loss_fn(a, b, c, temperature, "fused"), results["torch"][0])


def test_a_temperature_must_be_positive_and_finite():
    x = torch.randn(5, 4)
    for bad in (0.0, -1.0, float("nan"), float("inf"), torch.tensor(-0.5, requires_grad=True),
                torch.tensor(float("inf"), requires_grad=True)):
        with pytest.raises(ValueError, match="temperature must be"):
            losses.cal_infonce_loss(x, x, x, bad, impl="fused")
        with pytest.raises(ValueError, match="temperature must be"):
            losses.ssl_con_loss(x, x, bad, impl="fused")


def test_impl_switch():
    expected = "fused" if _library.available() else "torch"
    assert losses.resolve_impl(None) == expected
    assert losses.resolve_impl("torch") == "torch"
    with pytest.raises(ValueError, match="impl must be 'fused' or 'torch'"):
        losses.resolve_impl("cuda")
    x = torch.randn(5, 4)
    with pytest.raises(ValueError, match="impl must be"):
        losses.ssl_con_loss(x, x, impl="triton")


BAD_INPUTS = [  # (call, error type, message): each refused alike by both paths
    (lambda x, impl: losses.cal_infonce_loss(x, x, torch.randn(6, 3), impl=impl),
     ValueError, "all_embeds2 must have the 4 columns of embeds1, got 3"),
    (lambda x, impl: losses.cal_infonce_loss(x, x[:1], x, impl=impl),
     ValueError, "embeds2 must have the 5 rows of embeds1, got 1"),
    (lambda x, impl: losses.cal_infonce_loss(x, x, x[:0], impl=impl),
     ValueError, "all_embeds2 must have at least one row"),
    (lambda x, impl: losses.cal_infonce_loss(x, x, x, 0.0, impl=impl),
     ValueError, "temperature must be a finite number > 0, got 0.0"),
    (lambda x, impl: losses.ssl_con_loss(x, torch.randn(6, 4), impl=impl),
     ValueError, "y must have the 5 rows of x, got 6"),
    (lambda x, impl: losses.ssl_con_loss(x[:0], x[:0], impl=impl),
     ValueError, "x must have at least one row"),
    (lambda x, impl: losses.ssl_con_loss(x, x, -1.0, impl=impl),
     ValueError, "temperature must be a finite number > 0, got -1.0"),
    (lambda x, impl: losses.ssl_con_loss(x.long(), x.long(), impl=impl),
     TypeError, "x must be a floating-point tensor, got torch.int64"),
    (lambda x, impl: losses.info_nce(x, x, reduction="max", impl=impl),
     ValueError, "reduction must be"),
    (lambda x, impl: losses.info_nce(x, x, temperature=float("nan"), impl=impl),
     ValueError, "temperature must be a finite number > 0, got nan"),
    (lambda x, impl: losses.info_nce(x, x, temperature="0.2", impl=impl),
     TypeError, "temperature must be a number or a one-element tensor"),
    (lambda x, impl: losses.info_nce(x, x, temperature=torch.ones(2), impl=impl),
     ValueError, "a temperature tensor must hold one floating-point number"),
    (lambda x, impl: losses.info_nce(x, x, x[0], impl=impl),
     ValueError, "candidates must be 2-D"),
    (lambda x, impl: losses.info_nce(x, x, x, symmetric=True, impl=impl),
     ValueError, "symmetric=True needs in-batch candidates"),
    (lambda x, impl: losses.momentum_distill_loss(x, x[:2]),
     ValueError, "teacher must have the 5 rows of student, got 2"),
    (lambda x, impl: losses.cal_bpr_loss(x, x[:2], x),
     ValueError, "pos_embeds must have the 5 rows of anc_embeds, got 2"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", range(len(BAD_INPUTS)))
def test_bad_input_is_refused_naming_the_argument(case, impl):
    call, error, message = BAD_INPUTS[case]
    with pytest.raises(error, match=re.escape(message)):
        call(torch.randn(5, 4), impl)


# --- one whole IRLLRec step ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def step_vector():
    path = testing.shared_dir() / "testvectors" / "irllrec_step_small.npz"
    if not path.is_file():
        pytest.skip(f"test vectors absent: {path} (set IRLLREC_FAST_SHARED)")
    data = np.load(path)
    out = {k: torch.from_numpy(data[k]) for k in data.files if data[k].dtype.kind != "U"}
    out["hyper"] = dict(zip(data["hyper_names"].tolist(), data["hyper_values"].tolist()))
    return out


@pytest.mark.parametrize("impl", IMPLS)
def test_losses_reproduce_an_irllrec_step(step_vector, impl):
    t, h = step_vector, step_vector["hyper"]
    num_users, batch = t["user_emb"].shape[0], t["batch_user"].shape[0]

    def mlp(x, prefix):  # in -> hidden -> LeakyReLU(0.01) -> out, nn.Linear weight layout
        hidden = F.leaky_relu(F.linear(x, t[prefix + "_w1"], t[prefix + "_b1"]), 0.01)
        return F.linear(hidden, t[prefix + "_w2"], t[prefix + "_b2"])

    users, pos, neg = t["batch_user"], num_users + t["batch_pos"], num_users + t["batch_neg"]
    final, intents = t["final_embeddings"], t["intent_repr"]

    def alignment(emb, text_users, text_items, tau):
        # anchors against all users; positive and negative items against the batch's items
        return (losses.cal_infonce_loss(emb[users], text_users[users], text_users, tau, impl=impl)
                + losses.cal_infonce_loss(emb[pos], text_items[t["batch_pos"]],
                                          text_items[t["batch_pos"]], tau, impl=impl)
                + losses.cal_infonce_loss(emb[neg], text_items[t["batch_neg"]],
                                          text_items[t["batch_neg"]], tau, impl=impl))

    profile = h["kd_w"] / batch * alignment(final, mlp(t["profile_user"], "mlp"),
                                            mlp(t["profile_item"], "mlp"), h["kd_tau"])
    z_users, z_items = mlp(t["intent_user"], "imlp"), mlp(t["intent_item"], "imlp")
    intent = h["kdi_w"] / batch * alignment(intents, z_users, z_items, h["kdi_tau"])
    z = torch.cat([z_users, z_items])
    translation = losses.ssl_con_loss(z + z * t["noise_text"], final + final * t["noise_graph"],
                                      impl=impl)
    m = h["momentum"]
    for name in ("w1", "b1", "w2", "b2"):  # the teacher's momentum update, before its forward
        t["updated_" + name] = m * t["teacher_" + name] + (1 - m) * t["imlp_" + name]
    soft = losses.momentum_distill_loss(z, mlp(torch.cat([t["intent_user"], t["intent_item"]]), "updated"))
    bpr = losses.cal_bpr_loss(final[users], final[pos], final[neg]) / batch
    params = torch.nn.ParameterList(
        torch.nn.Parameter(t[k], requires_grad=not k.startswith("teacher_"))
        for k in ("user_emb", "item_emb", "w_user", "w_item", "mlp_w1", "mlp_b1", "mlp_w2",
                  "mlp_b2", "imlp_w1", "imlp_b1", "imlp_w2", "imlp_b2", "teacher_w1",
                  "teacher_b1", "teacher_w2", "teacher_b2"))
    got = {
        "loss_profile": profile, "loss_intent": intent, "loss_translation": translation,
        "loss_soft": soft, "loss_itm": h["w3"] * (0.4 * h["w2"] * translation - 0.6 * soft),
        "loss_bpr": bpr, "loss_reg": h["reg"] * losses.reg_params(params),
    }
    atol, rtol = TOLERANCES[torch.float64]
    for name, value in got.items():
        value = value.detach()
        assert math.isclose(value.item(), t[name].item(), rel_tol=rtol, abs_tol=atol), name
