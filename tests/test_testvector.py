"""Both paths reproduce the recorded IRLLRec step (../shared/testvectors/irllrec_step_small.npz) in
float64: the torch path every loss part, the final embeddings, the intent representation and every
gradient; the fused path (the kernels, the fused losses and the CPU text tower) the total, the
summands and every gradient, to the same tolerance."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from irllrec_fast import CSRGraph, testing
from irllrec_fast.models import IRLLRec, IRLLRecConfig

ATOL, RTOL = 1e-10, 1e-10
PARAMETERS = {"backbone.user_embeds": "user_emb", "backbone.item_embeds": "item_emb",
              "user_intent": "w_user", "item_intent": "w_item"}
for module, key in (("mlp", "mlp"), ("int_mlp", "imlp"), ("int_mlp_m", "teacher")):
    PARAMETERS.update({f"{module}.0.weight": f"{key}_w1", f"{module}.0.bias": f"{key}_b1",
                       f"{module}.2.weight": f"{key}_w2", f"{module}.2.bias": f"{key}_b2"})


@pytest.fixture(scope="module")
def vector():
    path = testing.shared_dir() / "testvectors" / "irllrec_step_small.npz"
    if not path.is_file():
        pytest.skip(f"test vector absent: {path}")
    with np.load(path) as archive:
        return {k: archive[k] for k in archive.files}


@pytest.fixture
def float64_default():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def build(z, teacher_init="redraw", impl="torch"):
    h = dict(zip(z["hyper_names"].tolist(), z["hyper_values"].tolist()))
    num_users, num_items = z["user_emb"].shape[0], z["item_emb"].shape[0]
    graph = CSRGraph.from_interactions(z["interactions_user"], z["interactions_item"],
                                       num_users, num_items)
    text = SimpleNamespace(profile_user=z["profile_user"], profile_item=z["profile_item"],
                           intent_user=z["intent_user"], intent_item=z["intent_item"])
    config = IRLLRecConfig(
        embedding_size=z["user_emb"].shape[1], layer_num=int(z["num_layers"]),
        intent_num=z["w_user"].shape[1], keep_rate=1.0, layer_combine="sum",
        reg_weight=h["reg"], kd_weight=h["kd_w"], kd_temperature=h["kd_tau"],
        kd_int_weight=h["kdi_w"], kd_int_temperature=h["kdi_tau"], kd_int_weight_2=h["w2"],
        kd_int_weight_3=h["w3"], momentum=h["momentum"], teacher_init=teacher_init)
    model = IRLLRec(graph, text, config, impl=impl)
    model.load_state_dict({name: torch.from_numpy(z[key]) for name, key in PARAMETERS.items()})
    batch = tuple(torch.from_numpy(z[k]) for k in ("batch_user", "batch_pos", "batch_neg"))
    noise = (torch.from_numpy(z["noise_text"]), torch.from_numpy(z["noise_graph"]))
    return model, batch, noise, h


def close(actual, expected):
    torch.testing.assert_close(actual.detach(), torch.as_tensor(expected), atol=ATOL, rtol=RTOL)


def test_every_loss_part_embedding_and_gradient(vector, float64_default):
    model, batch, noise, h = build(vector)
    assert model.profile.dtype == torch.float64
    terms = model.loss_terms(batch, noise)
    for name in ("bpr", "reg", "profile", "intent", "translation", "soft", "itm"):
        close(terms[name], vector[f"loss_{name}"])
    close(terms["final_embeddings"], vector["final_embeddings"])
    close(terms["intent_repr"], vector["intent_repr"])


@pytest.mark.parametrize("impl", ["torch", "fused"])
def test_calculate_loss_total_and_gradients(vector, float64_default, impl):
    model, batch, noise, h = build(vector, impl=impl)
    loss, parts = model.calculate_loss(batch, noise)
    close(loss, vector["loss_total"])
    for name in ("bpr", "reg", "profile", "intent"):
        close(parts[name], vector[f"loss_{name}"])
    close(parts["itm"], vector["loss_itm"])
    close(sum(parts.values()), vector["loss_total"])
    close(parts["translation"], h["w2"] * vector["loss_translation"])  # w2 * L_ta enters the total
    loss.backward()
    named = dict(model.named_parameters())
    for name, key in PARAMETERS.items():
        if key.startswith("teacher"):
            assert named[name].grad is None  # frozen: in the L2 value, never in a gradient
        else:
            close(named[name].grad, vector[f"grad_{key}"])


def test_teacher_moves_by_momentum_after_the_l2_term(vector, float64_default):
    model, batch, noise, h = build(vector)
    model.calculate_loss(batch, noise)
    m = h["momentum"]
    for module, key in (("int_mlp_m.0.weight", "w1"), ("int_mlp_m.2.bias", "b2")):
        expected = m * vector[f"teacher_{key}"] + (1 - m) * vector[f"imlp_{key}"]
        close(dict(model.named_parameters())[module], expected)


def test_copy_teacher_init_starts_equal():
    graph = testing.power_law_graph(30, 20, 120, seed=1)
    text = SimpleNamespace(profile_user=np.random.rand(30, 6), profile_item=np.random.rand(20, 6),
                           intent_user=np.random.rand(30, 5), intent_item=np.random.rand(20, 5))
    for init, equal in (("copy", True), ("redraw", False)):
        model = IRLLRec(graph, text, IRLLRecConfig(embedding_size=4, intent_num=3,
                                                   teacher_init=init), impl="torch")
        same = torch.equal(model.int_mlp[0].weight, model.int_mlp_m[0].weight)
        assert same == equal
        torch.testing.assert_close(model.int_mlp[0].bias, model.int_mlp_m[0].bias)
