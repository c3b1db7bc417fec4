"""Rules on any module graph: hooks that record what a rule reads and carry feedback errors backwards.

``Recorder(model, matrices, feedback, seeds)`` watches the learnable matrices of ``rules.layers`` in the
model's own forward pass, whatever the code around them (residual adds, normalisation, pooling, attention):

- each call of a matrix keeps its input and output (references, no copies) and, once backward reaches it,
  the gradient at its output; rules read them as sample rows (``layers.pre_rows``: conv patches, tokens);
- with a ``Feedback``, the gradient that leaves a matrix towards its *input* is replaced in backward: an
  identity node in front of the input (``_Inject``) discards W's transpose product and returns the
  feedback rule's error instead. Autograd carries that error through whatever lies below (the
  nonlinearity's φ′, a norm layer, a residual sum) to the matrices that feed it, and computes every weight
  gradient from the error that reached the layer's output: ``-p.grad`` is the rule's learning signal.

  ``DFAFeedback``: the model's output error e (∂loss/∂output) sent to the input of every matrix by a fixed
  random matrix, per sample, to every channel and position of that input (Nøkland 2016). In an MLP the
  input of layer l + 1 is layer l's activity, so layer l's error is (e B_lᵀ) ⊙ φ′(z_l): the chain-based
  ``dfa`` rule's, with its draws. ``FAFeedback``: the layer's own output error back through a fixed random
  B shaped like W (``fa``'s draws); ``SignFeedback``: through sign(W)·mean|W| (``sign_symmetry``).

``nn.MultiheadAttention`` applies its projections functionally, so while recording, its ``forward`` is
replaced on the instance by ``attention_forward`` (the same computation, projections through the
recorder) and restored by ``remove()``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from plasticlab import seeding
from plasticlab.errors import PlasticlabError
from plasticlab.rules.layers import Matrix


@dataclass
class Forward:
    """One forward of the whole model: its output and, once backward reaches it, the output's gradient."""

    out: torch.Tensor | None = None
    grad: torch.Tensor | None = None


@dataclass
class Call:
    """One forward call of one matrix: its input and output (detached), the gradient at the output, and
    the forward of the whole model it belongs to (DFA sends that forward's output error)."""

    x: torch.Tensor
    root: Forward
    out: torch.Tensor | None = None
    grad: torch.Tensor | None = None
    batch_dim: int | None = None  # where the samples are in x (None: found from the output's batch)


class _Inject(torch.autograd.Function):
    """Identity in forward; in backward the feedback rule's error replaces the one back-propagated by W."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, feedback: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        ctx.feedback = feedback
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.feedback(g), None


class Feedback:
    """How a feedback rule's error reaches a matrix's input; ``name`` is the rule it stands for."""

    name = "feedback"

    def input_error(self, rec: Recorder, i: int, call: Call) -> torch.Tensor:
        """The error sent to the input of matrix ``i`` for this call (shaped like ``call.x``)."""
        raise NotImplementedError


class DFAFeedback(Feedback):
    """The output error, projected to the input of every matrix by a fixed B (n_in x d_out) per sample;
    ``kind`` "normal": B ~ N(0, scale²/d_out), "uniform": U(±scale/√n_in), the ``dfa`` rule's draws."""

    def __init__(self, scale: float = 1.0, kind: str = "normal"):
        self.scale, self.kind, self.name = float(scale), kind, "dfa"

    def input_error(self, rec: Recorder, i: int, call: Call) -> torch.Tensor:
        """The model's output error times matrix ``i``'s fixed B (drawn once per shape), shaped like ``call.x``."""
        e = call.root.grad
        if e is None:
            raise PlasticlabError(
                "dfa sends the model's output error to every layer, but the model's output got no gradient "
                "(is the loss computed from the tensor the model returns?)"
            )
        B = e.shape[0]
        bd = rec.batch_dim(i, call, B)
        x = call.x.movedim(bd, 0)
        n, d_out = x[0].numel(), e[0].numel()
        key = (i, n, d_out, x.dtype, x.device)
        if key not in rec.cache:
            rec.cache[key] = self._draw(rec.seeds, i - 1, n, d_out, x.dtype, x.device)
        return (e.reshape(B, -1).to(x.dtype) @ rec.cache[key].T).reshape(x.shape).movedim(0, bd)

    def _draw(self, seeds: torch.Tensor, l: int, n: int, d_out: int, dtype: torch.dtype, device) -> torch.Tensor:
        if self.kind == "uniform":  # as DFA.init: layer 0 on the curl engine's historical key
            key = seeding.key_of("curl", "feedback") if l == 0 else seeding.key_of("curl", "feedback", l)
            u = seeding.uniform(seeds, key, (n, d_out))[0]
            return (2.0 * u - 1.0).mul_(self.scale / math.sqrt(n)).to(dtype=dtype, device=device)
        B = seeding.normal(seeds, seeding.key_of("dfa-feedback", l), (n, d_out), dtype, device=device)[0]
        return B * (self.scale / math.sqrt(d_out))


class FAFeedback(Feedback):
    """The layer's output error back through a fixed random B shaped like W, std scale/√(in·k) (``fa``)."""

    def __init__(self, scale: float = 1.0):
        self.scale, self.name = float(scale), "fa"

    def back_weight(self, rec: Recorder, i: int) -> torch.Tensor:
        """B for matrix ``i``, in the weight's own layout (a conv kernel for a conv)."""
        w = rec.mats[i].w()
        key = (i, tuple(w.shape), w.dtype, w.device)
        if key not in rec.cache:
            out, n_in = w.shape[0], w[0].numel()
            B = seeding.normal(rec.seeds, seeding.key_of("fa-feedback", i), (out, n_in), w.dtype, device=w.device)
            rec.cache[key] = (B[0] * (self.scale / math.sqrt(n_in))).reshape(w.shape)
        return rec.cache[key]

    def input_error(self, rec: Recorder, i: int, call: Call) -> torch.Tensor:
        """The error at matrix ``i``'s output sent back through ``back_weight`` instead of W."""
        return _vjp(rec.mats[i], self.back_weight(rec, i), call)


class SignFeedback(FAFeedback):
    """The layer's output error back through sign(W)·mean|W| (``sign_symmetry``: only W's signs shared)."""

    def __init__(self) -> None:
        self.name = "sign_symmetry"

    def back_weight(self, rec: Recorder, i: int) -> torch.Tensor:
        """sign(W)·mean|W| of matrix ``i`` (detached: no gradient flows into W through it)."""
        w = rec.mats[i].w().detach()
        return torch.sign(w) * w.abs().mean()


def _vjp(mat: Matrix, back: torch.Tensor, call: Call) -> torch.Tensor:
    """The input error of one call with ``back`` in place of W: δ·B for a matrix, a conv's transpose."""
    delta = call.grad
    if delta is None:
        raise PlasticlabError(f"layer {mat.name!r}: backward reached its input but not its output")
    if not mat.kind.startswith("conv"):
        return delta @ back.reshape(back.shape[0], -1).to(delta.dtype)
    conv = cast(nn.Conv2d, mat.module)
    with torch.enable_grad():  # a conv is linear in its input: the vjp at zero is the transpose conv
        x0 = torch.zeros_like(call.x, requires_grad=True)
        (gx,) = torch.autograd.grad(conv._conv_forward(x0, back.to(x0.dtype), None), x0, delta)
    return gx


class Recorder:
    """Forward/backward hooks on ``mats`` of ``model``: the calls of the last forward of the whole model, its
    output and output gradient, and (with ``feedback``) the feedback errors sent in backward."""

    def __init__(self, model: nn.Module, mats: list[Matrix], feedback: Feedback | None, seeds: torch.Tensor):
        self.mats, self.feedback, self.seeds = mats, feedback, seeds
        self.calls: list[list[Call]] = [[] for _ in mats]
        self.root = Forward()
        self.cache: dict[Any, torch.Tensor] = {}
        self._stack: dict[int, list[Call]] = {}
        self._handles = [
            model.register_forward_pre_hook(lambda *a: self.clear()),
            model.register_forward_hook(self._root),
        ]
        self._patched: list[nn.Module] = []
        attention: dict[int, dict[str, int]] = {}
        for i, mat in enumerate(mats):
            if mat.kind == "attention":
                attention.setdefault(id(mat.module), {})[mat.name.rsplit(".", 1)[-1]] = i
            else:
                self._handles += [
                    mat.module.register_forward_pre_hook(functools.partial(self._pre, i), with_kwargs=True),
                    mat.module.register_forward_hook(functools.partial(self._post, i)),
                ]
        for mat in mats:
            m = mat.module
            if mat.kind == "attention" and m not in self._patched:
                _check_attention(mat.name.rsplit(".", 1)[0], cast(nn.MultiheadAttention, m))
                if "forward" in vars(m):
                    self.remove()
                    raise PlasticlabError(
                        f"attention {mat.name.rsplit('.', 1)[0]!r} is already recorded by another "
                        "RuleOptimizer: call its remove_hooks() first"
                    )
                attn = cast(nn.MultiheadAttention, m)
                m.forward = functools.partial(attention_forward, self, attn, attention[id(m)])
                self._patched.append(m)

    @property
    def out(self) -> torch.Tensor | None:
        """The output of the model's last forward."""
        return self.root.out

    @property
    def out_grad(self) -> torch.Tensor | None:
        """dloss/d(output) of the model's last forward, once backward reached it."""
        return self.root.grad

    def clear(self) -> None:
        """Forget the recorded forward (a new forward of the whole model starts, or a step used it)."""
        self.calls = [[] for _ in self.mats]
        self.root = Forward()

    def remove(self) -> None:
        """Remove every hook and give the attention modules their own forward back."""
        for h in self._handles:
            h.remove()
        for m in self._patched:
            del m.forward
        self._handles, self._patched = [], []
        self.clear()

    def _root(self, module: nn.Module, args: Any, output: Any) -> None:
        if not isinstance(output, torch.Tensor):
            if isinstance(self.feedback, DFAFeedback):
                raise PlasticlabError(
                    f"dfa sends the model's output error to every layer: the model must return one tensor, "
                    f"{type(module).__name__} returned {type(output).__name__}"
                )
            return
        root = self.root
        root.out = output.detach()
        if output.requires_grad:
            output.register_hook(lambda g: setattr(root, "grad", g.detach()))

    def _pre(self, i: int, module: nn.Module, args: tuple, kwargs: dict) -> Any:
        x = args[0] if args else kwargs["input"]
        call = Call(x.detach(), self.root)
        self._stack.setdefault(i, []).append(call)
        x2 = self.inject(i, call, x)
        if x2 is x:
            return None
        return ((x2, *args[1:]), kwargs) if args else (args, {**kwargs, "input": x2})

    def _post(self, i: int, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        self.record(i, self._stack[i].pop(), output)

    def inject(self, i: int, call: Call, x: torch.Tensor) -> torch.Tensor:
        """``x`` behind the feedback node when a feedback rule runs and backward will reach ``x``."""
        if self.feedback is None or not (torch.is_grad_enabled() and x.requires_grad):
            return x
        fb = self.feedback
        return cast(torch.Tensor, _Inject.apply(x, lambda g: fb.input_error(self, i, call).to(g.dtype)))

    def record(self, i: int, call: Call, out: torch.Tensor) -> None:
        """Keep this call's output, and its gradient once backward reaches it."""
        call.out = out.detach()
        self.calls[i].append(call)
        if out.requires_grad:
            out.register_hook(lambda g: setattr(call, "grad", g.detach()))

    def project(self, i: int | None, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        """A projection of an attention module, (L, N, E) input, through the recorder if it is watched."""
        if i is None:
            return F.linear(x, w, b)
        call = Call(x.detach(), self.root, batch_dim=1)
        out = F.linear(self.inject(i, call, x), w, b)
        self.record(i, call, out)
        return out

    def batch_dim(self, i: int, call: Call, B: int) -> int:
        """Where the ``B`` samples of the output batch sit in this call's input."""
        if call.batch_dim is not None:
            return call.batch_dim
        shape = call.x.shape
        if shape[0] == B:
            return 0
        if len(shape) > 1 and shape[1] == B:
            return 1
        raise PlasticlabError(
            f"dfa: layer {self.mats[i].name!r} has input shape {tuple(shape)}, with no dimension of the "
            f"output's batch size {B} first or second: its rows can't be matched to samples' errors"
        )


def _check_attention(name: str, m: nn.MultiheadAttention) -> None:
    if m.bias_k is not None or m.add_zero_attn:
        raise PlasticlabError(
            f"attention {name!r}: add_bias_kv / add_zero_attn are not supported by RuleOptimizer's "
            "attention forward (plain nn.MultiheadAttention is)"
        )


def attention_forward(
    rec: Recorder,
    m: nn.MultiheadAttention,
    watched: dict[str, int],
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    need_weights: bool = True,
    attn_mask: torch.Tensor | None = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``nn.MultiheadAttention.forward`` (torch's math path) with the four projections through ``rec``."""
    batched = query.dim() == 3
    if not batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        key_padding_mask = None if key_padding_mask is None else key_padding_mask.unsqueeze(0)
    elif m.batch_first:
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))
    L, N, E = query.shape
    S, H = key.shape[0], m.num_heads
    hd = E // H
    if m._qkv_same_embed_dim:
        ws = cast(torch.Tensor, m.in_proj_weight).chunk(3)
    else:
        ws = (m.q_proj_weight, m.k_proj_weight, m.v_proj_weight)
    bs = (None,) * 3 if m.in_proj_bias is None else m.in_proj_bias.chunk(3)
    q, k, v = (rec.project(watched.get(p), t, w, b) for p, t, w, b in zip("qkv", (query, key, value), ws, bs))
    q = q.reshape(L, N * H, hd).transpose(0, 1)
    k = k.reshape(S, N * H, hd).transpose(0, 1)
    v = v.reshape(S, N * H, hd).transpose(0, 1)
    scores = (q * (1.0 / math.sqrt(hd))) @ k.transpose(1, 2)
    mask = _mask(attn_mask, key_padding_mask, is_causal, N, H, L, S, scores.dtype, scores.device)
    attn = torch.softmax(scores if mask is None else scores + mask, dim=-1)
    if m.training and m.dropout > 0:
        attn = F.dropout(attn, m.dropout)
    out = (attn @ v).transpose(0, 1).reshape(L, N, E)
    out = rec.project(watched.get("out_proj"), out, m.out_proj.weight, m.out_proj.bias)
    out = out.transpose(0, 1) if (batched and m.batch_first) else out if batched else out.squeeze(1)
    if not need_weights:
        return out, None
    weights = attn.reshape(N, H, L, S)
    weights = weights.mean(1) if average_attn_weights else weights
    return out, weights if batched else weights.squeeze(0)


def _mask(attn_mask, key_padding_mask, is_causal, N, H, L, S, dtype, device) -> torch.Tensor | None:
    """Additive (N·H, L, S) mask from torch's masks (True / -inf: not attended)."""

    def additive(t: torch.Tensor) -> torch.Tensor:
        if t.dtype == torch.bool:
            return torch.zeros(t.shape, dtype=dtype, device=device).masked_fill_(t, float("-inf"))
        return t.to(dtype)

    if attn_mask is None and is_causal:
        attn_mask = torch.ones(L, S, dtype=torch.bool, device=device).triu(1)
    mask = None if attn_mask is None else additive(attn_mask)
    if mask is not None and mask.dim() == 2:
        mask = mask.unsqueeze(0)
    if key_padding_mask is not None:
        kp = additive(key_padding_mask).reshape(N, 1, 1, S).expand(N, H, 1, S).reshape(N * H, 1, S)
        mask = kp if mask is None else mask + kp
    return mask
