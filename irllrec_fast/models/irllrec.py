"""IRLLRec (Wang et al., SIGIR 2025) on a LightGCN backbone: IRLLREC_SPEC.md sections 2-4.

Towers:
- interaction: the backbone's propagation, plus the per-layer intent branch (intent assignment,
  intent-aware adaptive aggregation over the plain adjacency) whose layer mean R feeds only the
  intent alignment;
- text: `mlp` over the profile embeddings and `int_mlp` over the intent-text embeddings, both over
  all N rows every step, and the momentum teacher `int_mlp_m`.

impl="torch" computes all of it literally. impl="fused" gives the same numbers with less work in
the text tower, which dominates the step on a CPU:
- the teacher's first layer is linear in its weights and the momentum update is a weighted mean
  of teacher and student weights, so its pre-activation follows the same recurrence,
  H_m <- m H_m + (1 - m) H, with H the student's pre-activation of this step (already computed).
  That replaces a [N, in] x [in, hidden] product per step by two element-wise passes. H_m is
  computed directly at the first step, after every `train()` / `eval()` (so every epoch starts
  from it, and a resumed run repeats an uninterrupted one) and whenever the teacher's weights were
  changed from outside (load_state_dict, `.to()`, an in-place edit);
- on the CPU, the profile MLP runs only over the rows the profile alignment reads (all users and
  the batch's distinct items); the other rows' outputs reach no loss term;
- the students' LeakyReLU runs in place on the first layer's output, so autograd keeps one
  [rows, hidden] buffer per MLP instead of two (64 MB each at Amazon-book); the teacher's
  recurrence reads the pre-activation before it is overwritten;
- on the CPU, the MLPs' second halves (activation, second layer, their backward, the teacher's
  recurrence) run in blocks of rows that stay in cache (_text_tail.py) instead of streaming
  [rows, hidden] temporaries through memory; the students' hidden gradient exists one block at a
  time, and the first layer's weight gradient is summed block by block.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, fields
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import losses
from .._rows import take_rows
from ..graph import CSRGraph
from . import _text_tail
from ._text_tail import blend_leaky_linear, leaky_mlp
from .base import Recommender
from .lightgcn import LightGCN, LightGCNConfig

TEACHER_INITS = ("redraw", "copy")


@dataclass
class IRLLRecConfig(LightGCNConfig):
    """Hyperparameters of IRLLRec on LightGCN (names as in the authors' lightgcn_int.yml).

    Fields (backbone):
        embedding_size, layer_num, keep_rate, layer_combine: as `LightGCNConfig`; IRLLRec's
            released config uses keep_rate 1.0 (no edge dropout).
        reg_weight: weight of sum ||W||^2 over all parameters, the frozen teacher included.
    Fields (IRLLRec):
        intent_num: K, intent prototypes per side (W_user, W_item are [d, K]).
        kd_weight: weight of the profile alignment (RLMRec-Con).
        kd_temperature: its InfoNCE temperature.
        kd_int_weight: weight of the pairwise intent alignment (R against int_mlp(T)).
        kd_int_temperature: its temperature.
        kd_int_weight_2: w2, weight of the translation alignment L_ta (N x N InfoNCE, temperature
            1, multiplicative Gaussian noise on both sides).
        kd_int_weight_3: w3, weight of loss_itm = w3 * (0.4 * w2 * L_ta - 0.6 * soft).
        momentum: teacher update theta_m <- momentum * theta_m + (1 - momentum) * theta.
        teacher_init: "redraw" (the released code: copy, then Xavier re-draw of the teacher's
            weights, biases shared) or "copy" (teacher starts equal to the student).
        text_mlp_bf16: run the three text MLPs (student profile, student intent, teacher) under
            bfloat16 autocast, forward and backward, with float32 results. Off by default (the
            spec computes them in full precision); on a GPU they are a quarter of the step. Its
            effect on accuracy is measured in docs/precision.md.

    The defaults are the spec's Amazon-book row. The command line's shipped configuration
    (irllrec_fast/configs/irllrec.yml) has the table's rows for amazon, yelp and movie and, for any
    other dataset (the synthetic default included), global values that differ in kd_int_weight
    (1e-2, the authors' global value).
    """

    reg_weight: float = 1e-7
    keep_rate: float = 1.0
    intent_num: int = 128
    kd_weight: float = 1e-2
    kd_temperature: float = 0.2
    kd_int_weight: float = 2e-2
    kd_int_temperature: float = 0.2
    kd_int_weight_2: float = 1e-7
    kd_int_weight_3: float = 1e-7
    momentum: float = 0.999
    teacher_init: str = "redraw"
    text_mlp_bf16: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.intent_num < 1:
            raise ValueError(f"intent_num must be >= 1, got {self.intent_num}")
        for name in ("kd_temperature", "kd_int_temperature"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("kd_weight", "kd_int_weight", "kd_int_weight_2", "kd_int_weight_3"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {self.momentum}")
        if self.teacher_init not in TEACHER_INITS:
            raise ValueError(f"teacher_init must be one of {TEACHER_INITS}, got "
                             f"{self.teacher_init!r}")

    def backbone_config(self) -> LightGCNConfig:
        names = {f.name for f in fields(LightGCNConfig)}
        return LightGCNConfig(**{k: v for k, v in asdict(self).items() if k in names})


def text_mlp(width_in: int, width_out: int) -> nn.Sequential:
    """in -> (in + out) // 2 -> LeakyReLU(0.01) -> out, shared by users and items."""
    hidden = (width_in + width_out) // 2
    return nn.Sequential(nn.Linear(width_in, hidden), nn.LeakyReLU(0.01),
                         nn.Linear(hidden, width_out))


def _xavier_weights(module: nn.Module) -> None:
    for layer in module:
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)


def _stack_rows(name: str, users, items, num_users: int, num_items: int) -> torch.Tensor:
    users = torch.as_tensor(np.asarray(users) if not isinstance(users, torch.Tensor) else users)
    items = torch.as_tensor(np.asarray(items) if not isinstance(items, torch.Tensor) else items)
    for side, x, n in (("user", users, num_users), ("item", items, num_items)):
        if x.dim() != 2 or x.shape[0] != n:
            raise ValueError(f"{name} {side} embeddings must have shape ({n}, width), got "
                             f"{tuple(x.shape)}")
    if users.shape[1] != items.shape[1]:
        raise ValueError(f"{name} user and item embeddings must have the same width, got "
                         f"{users.shape[1]} and {items.shape[1]}")
    # torch's default dtype, like the parameters: float64 runs (torch.set_default_dtype) must
    # not see the text rounded to float32
    stacked = torch.cat([users, items]).to(torch.get_default_dtype())
    if not torch.isfinite(stacked).all():
        raise ValueError(f"{name} embeddings contain NaN or infinite values")
    return stacked


class IRLLRec(Recommender):
    """IRLLRec with a LightGCN backbone.

    Args:
        graph: the training interactions as a bipartite `CSRGraph`.
        text: text embeddings with attributes profile_user [U, dp], profile_item [I, dp],
            intent_user [U, dt], intent_item [I, dt] (numpy arrays or tensors), e.g.
            `irllrec_fast.data.TextEmbeddings`. Required.
        config: `IRLLRecConfig`.
        impl: "fused" (ops.spmm / intent_assign / intent_propagate and the fused losses),
            "torch" (the references) or None (fused where every operator is built for the model's
            device, chosen again after each move).

    The text embeddings are non-persistent buffers: they follow `.to()` but stay out of the
    state dict (they are data, not weights).
    """

    OPERATORS = ("spmm", "intent_assign", "intent_propagate", "infonce")

    def __init__(self, graph: CSRGraph, text, config: Optional[IRLLRecConfig] = None, *,
                 impl: Optional[str] = None):
        super().__init__(graph)
        self._teacher_hidden: Optional[Tuple[tuple, torch.Tensor]] = None  # (key, H_m)
        if text is None:
            raise ValueError(
                "IRLLRec needs text embeddings (user/item profiles and intent texts), and this "
                "dataset has none: add usr_emb_np / itm_emb_np / user_intent_emb_3 / "
                "item_intent_emb_3 (.npy/.npz/.pkl) to the dataset folder or to a folder given "
                "with --text, or train --model lightgcn")
        if config is not None and not isinstance(config, IRLLRecConfig):
            raise TypeError(f"config must be an IRLLRecConfig, got {type(config).__name__}")
        self.config = config if config is not None else IRLLRecConfig()
        self.choose_operators(impl)
        U, I = self.num_users, self.num_items
        self.register_buffer("profile", _stack_rows("profile", text.profile_user,
                                                     text.profile_item, U, I), persistent=False)
        self.register_buffer("intent", _stack_rows("intent", text.intent_user,
                                                    text.intent_item, U, I), persistent=False)

        cfg, d = self.config, self.config.embedding_size
        # explicit: the backbone follows this model's choice (use_operators), not its own
        self.backbone = LightGCN(graph, cfg.backbone_config(), impl=self.impl)
        self.user_intent = nn.Parameter(nn.init.xavier_uniform_(torch.empty(d, cfg.intent_num)))
        self.item_intent = nn.Parameter(nn.init.xavier_uniform_(torch.empty(d, cfg.intent_num)))
        self.mlp = text_mlp(self.profile.shape[1], d)
        self.int_mlp = text_mlp(self.intent.shape[1], d)
        self.int_mlp_m = text_mlp(self.intent.shape[1], d)
        # Xavier weights in the released order (mlp, int_mlp, teacher); the teacher copies the
        # student, then "redraw" re-draws its weights (biases stay shared)
        for module in (self.mlp, self.int_mlp):
            _xavier_weights(module)
        with torch.no_grad():
            for p, p_m in zip(self.int_mlp.parameters(), self.int_mlp_m.parameters()):
                p_m.copy_(p)
                p_m.requires_grad_(False)
        if cfg.teacher_init == "redraw":
            _xavier_weights(self.int_mlp_m)

    def use_operators(self, impl: str) -> None:
        super().use_operators(impl)
        backbone = self._modules.get("backbone")  # absent while __init__ runs
        if backbone is not None:
            backbone.use_operators(impl)

    # ------------------------------------------------------------------ towers
    def intent_representation(self, layer_inputs) -> torch.Tensor:
        """R [N, d]: mean over layers of the intent-aware aggregation of each layer's input."""
        U, plain = self.num_users, self.graph("plain")
        out = []
        for e in layer_inputs:
            r = torch.cat([self._ops.intent_assign(e[:U], self.user_intent),
                           self._ops.intent_assign(e[U:], self.item_intent)])
            out.append(self._ops.intent_propagate(plain, r, e))
        return torch.stack(out).mean(0)

    def embeddings(self) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.backbone.embeddings()

    def _mlp_precision(self, x: torch.Tensor):
        if not self.config.text_mlp_bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=x.device.type, dtype=torch.bfloat16)

    def _text_mlp(self, mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """mlp(x), under bfloat16 autocast when config.text_mlp_bf16 (result in x's dtype)."""
        with self._mlp_precision(x):
            out = mlp(x)
        return out.to(x.dtype)

    def _row_blocked(self, x: torch.Tensor) -> bool:
        """Whether the text MLPs run with their second halves in row blocks (_text_tail.py): on
        the CPU in float precision, unless _text_tail.BLOCK_ROWS is None; under torch.compile
        Inductor fuses the whole-tensor form itself."""
        return (x.device.type == "cpu" and _text_tail.BLOCK_ROWS is not None
                and not self.config.text_mlp_bf16 and not torch.compiler.is_compiling())

    def _text_mlp_lean(self, mlp: nn.Module, x: torch.Tensor, on_hidden=None) -> torch.Tensor:
        """The same values as _text_mlp(mlp, x) with fewer [rows, hidden] buffers; on_hidden, if
        given, reads the first layer's output before the activation overwrites it.

        Whole tensors (GPU, bfloat16, torch.compile): the LeakyReLU runs in place on the first
        layer's output, so autograd saves its output alone (the slope is positive, so the output's
        sign gives the derivative) instead of its input and output."""
        if self._row_blocked(x):
            return leaky_mlp(x, mlp[0].weight, mlp[0].bias, mlp[2].weight, mlp[2].bias,
                             mlp[1].negative_slope, on_hidden=on_hidden)
        with self._mlp_precision(x):
            hidden = mlp[0](x)
        if on_hidden is not None:
            on_hidden(hidden)
        with self._mlp_precision(x):
            out = mlp[2](F.leaky_relu(hidden, mlp[1].negative_slope, inplace=True))
        return out.to(x.dtype)

    @torch.no_grad()
    def _momentum_update(self) -> None:
        m = self.config.momentum
        teacher = list(self.int_mlp_m.parameters())
        torch._foreach_mul_(teacher, m)  # one multi-tensor kernel per line on a GPU
        torch._foreach_add_(teacher, list(self.int_mlp.parameters()), alpha=1.0 - m)

    def _teacher_key(self) -> tuple:
        """Changes whenever the teacher's first layer or the intent text is replaced or edited in
        place (every in-place op bumps a tensor's version counter)."""
        first = self.int_mlp_m[0]
        return tuple((t.data_ptr(), t._version, t.dtype, t.device)
                     for t in (first.weight, first.bias, self.intent)) + (
                         self.config.text_mlp_bf16,)

    @torch.no_grad()
    def _teacher_forward(self, student_hidden: Optional[torch.Tensor]) -> torch.Tensor:
        """The momentum update, then int_mlp_m(intent) over all N rows.

        student_hidden None: the literal forward (impl="torch"). Otherwise the student's first-layer
        pre-activation of this step, from which the teacher's follows by the recurrence of the
        module docstring when the cached one is still valid.
        """
        cached = self._teacher_hidden
        valid = cached is not None and cached[0] == self._teacher_key()
        self._momentum_update()
        if student_hidden is None:
            return self._text_mlp(self.int_mlp_m, self.intent)
        teacher, m = self.int_mlp_m, self.config.momentum
        if valid:
            hidden, blend = cached[1], student_hidden.to(cached[1].dtype)
        else:
            self._teacher_hidden = None  # release the stale one before allocating
            with self._mlp_precision(self.intent):
                hidden = teacher[0](self.intent).to(self.intent.dtype)
            blend = None
        self._teacher_hidden = (self._teacher_key(), hidden)
        if self._row_blocked(hidden):
            return blend_leaky_linear(hidden, teacher[2].weight, teacher[2].bias,
                                      teacher[1].negative_slope, blend, m)
        if blend is not None:
            hidden.mul_(m).add_(blend, alpha=1.0 - m)
        with self._mlp_precision(self.intent):
            out = teacher[2](teacher[1](hidden))
        return out.to(self.intent.dtype)

    def _profile_text(self, batch) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """p~ of all users [U, d], of the positive [B, d] and of the negative items [B, d].

        Fused on the CPU, only these rows go through the MLP (on Amazon-book about 16,000 of
        20,332). On a GPU all rows do: finding the distinct items would make the host wait for the
        device, for a saving there estimated (not measured) at a fifth of the profile MLP's two
        GEMMs, a few tenths of a millisecond on an H100.
        """
        users, pos, neg = batch
        U, B = self.num_users, pos.shape[0]
        mlp = self._text_mlp if self.impl == "torch" else self._text_mlp_lean
        if self.impl == "torch" or self.profile.device.type != "cpu":
            text = mlp(self.mlp, self.profile)
            return text[:U], take_rows(text[U:], pos), take_rows(text[U:], neg)
        items, where = torch.unique(torch.cat([pos, neg]), return_inverse=True)
        text_user = mlp(self.mlp, self.profile[:U])
        text_item = mlp(self.mlp, take_rows(self.profile, U + items))
        return text_user, take_rows(text_item, where[:B]), take_rows(text_item, where[B:])

    def _contrast_triplet(self, graph_side, text_user, text_pos, text_neg, batch, temperature
                          ) -> torch.Tensor:
        """NCE(anchors vs all users) + NCE(pos vs in-batch pos) + NCE(neg vs in-batch neg)."""
        users, pos, neg = batch
        U, impl = self.num_users, self.impl
        g_user, g_item = graph_side[:U], graph_side[U:]
        return (losses.cal_infonce_loss(take_rows(g_user, users), take_rows(text_user, users),
                                        text_user, temperature, impl=impl)
                + losses.cal_infonce_loss(take_rows(g_item, pos), text_pos, text_pos, temperature,
                                          impl=impl)
                + losses.cal_infonce_loss(take_rows(g_item, neg), text_neg, text_neg, temperature,
                                          impl=impl))

    # ------------------------------------------------------------------ losses
    def loss_terms(self, batch, noise: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
                   ) -> Dict[str, torch.Tensor]:
        """Every term of one training step, unweighted where the spec names them so:
        bpr, reg, profile, intent (weighted as they enter the total), translation (L_ta before
        w2), soft (the distillation term) and itm (w3 * (0.4 * w2 * L_ta - 0.6 * soft)).

        noise: (eps_text, eps_graph), each [N, d], to replay a recorded step; None draws them
        from the global torch RNG (text first).

        Side effect: the teacher's momentum update, after the L2 term (which sees the teacher's
        weights before it) and before the teacher's forward, as the released code does.
        """
        cfg = self.config
        users, pos, neg = self.unpack_batch(batch)
        B = users.shape[0]
        final, layers = self.backbone.propagate(cfg.keep_rate)
        U = self.num_users
        user, item = final[:U], final[U:]
        anc, pos_e, neg_e = take_rows(user, users), take_rows(item, pos), take_rows(item, neg)

        bpr = losses.cal_bpr_loss(anc, pos_e, neg_e) / B
        reg = cfg.reg_weight * losses.reg_params(self, impl=self.impl)
        profile = self._contrast_triplet(final, *self._profile_text(batch), batch,
                                         cfg.kd_temperature)
        profile = profile / B * cfg.kd_weight

        intent_graph = self.intent_representation(layers[:-1])
        if self.impl == "torch":
            intent_text = self._text_mlp(self.int_mlp, self.intent)
            teacher = self._teacher_forward(None)
        else:
            teachers = []  # the teacher reads the pre-activation before the activation takes it
            intent_text = self._text_mlp_lean(
                self.int_mlp, self.intent, lambda h: teachers.append(self._teacher_forward(h)))
            teacher = teachers[0]
        intent_item = intent_text[U:]
        intent = self._contrast_triplet(intent_graph, intent_text[:U], take_rows(intent_item, pos),
                                        take_rows(intent_item, neg), batch, cfg.kd_int_temperature)
        intent = intent / B * cfg.kd_int_weight

        if noise is None:
            noise = (torch.randn_like(intent_text), torch.randn_like(final))
        eps_text, eps_graph = noise
        translation = losses.ssl_con_loss(intent_text + intent_text * eps_text,
                                          final + final * eps_graph, impl=self.impl)

        soft = losses.momentum_distill_loss(intent_text, teacher)
        w2, w3 = cfg.kd_int_weight_2, cfg.kd_int_weight_3
        itm = w3 * (0.4 * (w2 * translation) - 0.6 * soft)
        return {"bpr": bpr, "reg": reg, "profile": profile, "intent": intent,
                "translation": translation, "soft": soft, "itm": itm,
                "final_embeddings": final, "intent_repr": intent_graph}

    def calculate_loss(self, batch, noise: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
                       ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """L = bpr + reg + profile + intent + w2 * L_ta + itm; parts hold the six summands."""
        terms = self.loss_terms(batch, noise)
        parts = {"bpr": terms["bpr"], "reg": terms["reg"], "profile": terms["profile"],
                 "intent": terms["intent"],
                 "translation": self.config.kd_int_weight_2 * terms["translation"],
                 "itm": terms["itm"]}
        return sum(parts.values()), parts

    def drop_caches(self) -> None:
        """Also forgets the teacher's pre-activation: every epoch (train()) starts from the direct
        product, so a resumed run repeats an uninterrupted one."""
        super().drop_caches()
        self._teacher_hidden = None
