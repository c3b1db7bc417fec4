"""The learnable matrices of any ``nn.Module``: what ``RuleOptimizer`` trains and ``HebbianProbe`` measures.

A *matrix* is a weight W (out x in) that acts on samples as h_b = W h_a: an ``nn.Linear`` (every leading dim
of its input is a sample), an ``nn.Conv1d``/``nn.Conv2d`` with groups = 1 (W as (out, in·k) acting on the
unfolded input patches, one sample per output position) and the four projections of an
``nn.MultiheadAttention`` (q, k, v: row blocks of ``in_proj_weight`` or their own weights; ``out_proj``).
The attention module calls its projections functionally, never through ``out_proj.forward``, so the four are
found from the attention module itself, never as ordinary Linear layers.

Every other trainable parameter is listed with the reason it is not a matrix the rules can train, so a caller
can refuse or warn by name instead of leaving it silently untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, cast

import torch
import torch.nn.functional as F
from torch import nn

CONVS = (nn.Conv1d, nn.Conv2d)
SUPPORTED = "nn.Linear, nn.Conv1d/nn.Conv2d (groups = 1), nn.MultiheadAttention"
# modules holding a matrix that acts on samples, but not as one (out, in) matrix the rules can read
_UNSUPPORTED_LAYERS = (
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Bilinear,
    nn.RNNBase,
)


@dataclass(frozen=True)
class Matrix:
    """One learnable matrix: its name, kind, the module whose forward uses it, and where its entries live
    (``rows`` of ``weight``, e.g. the q block of a packed ``in_proj_weight``; None: all of it)."""

    name: str
    kind: str  # "linear", "conv1d", "conv2d" or "attention"
    module: nn.Module  # Linear/Conv: the layer; attention projections: the nn.MultiheadAttention
    weight: torch.Tensor  # the nn.Parameter holding it
    bias: torch.Tensor | None
    rows: slice | None = None  # rows of weight (packed q/k/v); None: the whole tensor
    bias_rows: slice | None = None  # rows of bias (q/k/v share one packed in_proj_bias)

    def w(self) -> torch.Tensor:
        """The weight as stored (a row block of the parameter for packed q/k/v), a view that shares storage."""
        return self.weight if self.rows is None else self.weight[self.rows]

    def b(self) -> torch.Tensor | None:
        """The bias (its row block for packed q/k/v), or None."""
        if self.bias is None:
            return None
        return self.bias if self.bias_rows is None else self.bias[self.bias_rows]

    def matrix(self) -> torch.Tensor:
        """W as (out, in·k): a conv's kernel flattened in ``F.unfold``'s patch order."""
        w = self.w()
        return w.reshape(w.shape[0], -1)

    def grad(self) -> torch.Tensor | None:
        """The weight's ``.grad`` in matrix form (None before a backward)."""
        g = self.weight.grad
        if g is None:
            return None
        g = g if self.rows is None else g[self.rows]
        return g.reshape(g.shape[0], -1)

    def bias_grad(self) -> torch.Tensor | None:
        """The bias's ``.grad`` (its row block), or None."""
        if self.bias is None or self.bias.grad is None:
            return None
        return self.bias.grad if self.bias_rows is None else self.bias.grad[self.bias_rows]


class Skipped(NamedTuple):
    """A trainable parameter that is not one of the matrices: why, and whether it belongs to a layer that
    does hold a matrix acting on samples (a grouped conv, a ConvTranspose, an RNN ...) rather than a vector,
    a lookup table or a raw parameter the model's own code uses."""

    reason: str
    layer: bool


def learnable_matrices(model: nn.Module) -> tuple[list[Matrix], dict[str, Skipped]]:
    """The matrices of ``model`` whose weight requires grad, in module order, and every other trainable
    parameter by name with why it is not one (biases of the matrices are theirs, not listed)."""
    mats: list[Matrix] = []
    inside_attention: set[int] = set()
    for name, m in model.named_modules():
        if id(m) in inside_attention:
            continue
        if isinstance(m, nn.MultiheadAttention):
            inside_attention.update(id(c) for c in m.modules() if c is not m)
            mats += _attention_matrices(name, m)
        elif isinstance(m, nn.Linear) and m.weight.requires_grad:
            mats.append(Matrix(name, "linear", m, m.weight, m.bias))
        elif isinstance(m, CONVS) and m.groups == 1 and m.weight.requires_grad:
            kind = "conv1d" if isinstance(m, nn.Conv1d) else "conv2d"
            mats.append(Matrix(name, kind, m, m.weight, m.bias))
    owned = {id(p) for mat in mats for p in (mat.weight, mat.bias) if p is not None}
    owner = {id(p): (mn, m) for mn, m in model.named_modules() for p in m.parameters(recurse=False)}
    skipped = {}
    for pname, p in model.named_parameters():
        if p.requires_grad and id(p) not in owned:
            mname, m = owner[id(p)]
            skipped[pname] = _why_not(m, pname[len(mname) + 1 :] if mname else pname, p)
    return mats, skipped


def _attention_matrices(name: str, m: nn.MultiheadAttention) -> list[Matrix]:
    """q, k, v and out_proj of an attention module (those whose weight requires grad)."""
    prefix = f"{name}." if name else ""
    E, out = m.embed_dim, []
    for i, part in enumerate("qkv"):
        rows = slice(i * E, (i + 1) * E)
        bias = m.in_proj_bias  # one packed bias for q, k, v in both layouts
        if m._qkv_same_embed_dim:
            w, w_rows = cast(torch.Tensor, m.in_proj_weight), rows
        else:
            w, w_rows = cast(torch.Tensor, getattr(m, f"{part}_proj_weight")), None
        if w.requires_grad:
            out.append(Matrix(prefix + part, "attention", m, w, bias, w_rows, None if bias is None else rows))
    if m.out_proj.weight.requires_grad:
        out.append(Matrix(prefix + "out_proj", "attention", m, m.out_proj.weight, m.out_proj.bias))
    return out


def _why_not(m: nn.Module, local: str, p: torch.Tensor) -> Skipped:
    """Why parameter ``local`` of module ``m`` is not a matrix the rules train."""
    kind = type(m).__name__
    if isinstance(m, CONVS) and m.groups != 1:
        return Skipped(f"{kind} with groups={m.groups}: not one (out, in·k) matrix", True)
    if isinstance(m, _UNSUPPORTED_LAYERS):
        return Skipped(f"{kind}: not a supported layer ({SUPPORTED} are)", True)
    if isinstance(m, nn.MultiheadAttention):
        return Skipped(f"{kind}.{local}: learned key/value vectors appended to the sequence", False)
    if isinstance(m, (nn.Embedding, nn.EmbeddingBag)):
        return Skipped(f"{kind}: a lookup table, not a matrix acting on an input", False)
    if isinstance(m, (nn.Linear, *CONVS)):
        return Skipped(f"{kind}.{local}: its weight is frozen (requires_grad=False)", False)
    if p.dim() <= 1:
        return Skipped(f"{kind}.{local}: a vector (gain or shift), not a matrix", False)
    return Skipped(f"{kind}.{local}: a raw parameter the model's own code uses (no layer to read)", False)


def conv_patches(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Unfolded input patches (B·L, in·k) of a Conv1d/Conv2d, padded exactly as the conv pads."""
    conv = cast(nn.Conv2d, m)
    one_d = isinstance(m, nn.Conv1d)
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
        x = F.pad(x, conv._reversed_padding_repeated_twice, mode=mode)
        padding: tuple[int, ...] = (0,) * (1 if one_d else 2)
    else:
        padding = tuple(conv.padding)
    if one_d:  # a 1-d conv is a 2-d one over a height-1 image
        x = x.unsqueeze(-2)
        k, d, s, p = (1, *conv.kernel_size), (1, *conv.dilation), (1, *conv.stride), (0, *padding)
    else:
        k, d, s, p = conv.kernel_size, conv.dilation, conv.stride, padding
    cols = F.unfold(x, k, dilation=d, padding=p, stride=s)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def pre_rows(mat: Matrix, x: torch.Tensor) -> torch.Tensor:
    """h_a of one forward call as (N, in·k) sample rows: conv patches, or every leading dim a sample."""
    return conv_patches(mat.module, x) if mat.kind.startswith("conv") else x.reshape(-1, x.shape[-1])


def post_rows(mat: Matrix, out: torch.Tensor) -> torch.Tensor:
    """h_b = output − bias of one forward call as (N, out) sample rows, in ``pre_rows``'s order."""
    post = (
        out.movedim(1, -1).reshape(-1, out.shape[1])
        if mat.kind.startswith("conv")
        else out.reshape(-1, out.shape[-1])
    )
    b = mat.b()
    return post if b is None else post - b.detach()
