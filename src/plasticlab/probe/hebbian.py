"""HebbianProbe: Hebbian alignment (Koplow et al. 2025) of any PyTorch model, measured from hooks.

Per probed layer and measured step the probe records the cosine between the batch-mean Hebbian direction
H = (1/N) Σ_i h_b,i h_a,iᵀ and

* ``alignment_signal``: the learning signal G = −∂ℓ/∂W (descent convention), read from ``W.grad`` just before
  the optimizer step. Weight decay done by the optimizer (SGD/Adam ``weight_decay``, AdamW) never enters
  ``.grad``, so G excludes it whatever the optimizer; an L2 term the user adds to the loss is part of the loss
  and therefore of G.
* ``alignment_update``: the parameter change ΔW actually made by the optimizer step (or by the code inside
  ``with probe.update():``), decay included if the optimizer does it.

Layer convention (Koplow et al. 2025): h_a is the layer's input (the presynaptic post-activation), h_b = W h_a its
pre-activation **without the bias**: only W is measured, h_b = output − bias. Leading dims of a Linear input
(B, T, in) are flattened to N = B·T samples; a Conv1d/Conv2d is measured as the matrix W (out, in·k) acting on
unfolded patches, N = B·L with L the number of output positions. An ``nn.MultiheadAttention`` (and so a
``TransformerEncoderLayer``) is four layers, ``<name>.q``, ``.k``, ``.v`` and ``<name>.out_proj``: it applies
them functionally, so its own forward hook reads them, H = W Σ h_a h_aᵀ with h_a the query / key / value
input, and for ``out_proj`` the attention output its matmul saved for backward (found in the autograd graph).
Every trainable parameter that is not measured is named in ``probe.skipped`` with the reason.

Pairing rules (why the bookkeeping looks the way it does):
* H is computed inside the forward hook, so a later in-place op on the output (ReLU(inplace=True)) cannot
  corrupt it, and activations are never kept. Only forwards in training mode with grad enabled count, and a
  forward only counts once the backward pass actually reached its output (a tensor hook flags it), so an
  unused branch or a forward without backward is never paired with a gradient.
* Everything pending is dropped when a step closes, so activations of one step never meet the gradient of
  the next (layers skipped in a step simply have no row for it). Several forwards before one step (gradient
  accumulation, a module called twice) are pooled: H over all their samples, as ``.grad`` sums over them.
* Unmeasured steps (``every`` > 1) cost one Python check per forward call.
"""

from __future__ import annotations

import contextlib
import functools
import operator
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import pandas as pd
import torch
import torch.nn as nn

from plasticlab.errors import PlasticlabError, PlasticlabWarning, check_positive
from plasticlab.metrics.hebbian import _EPS
from plasticlab.rules.layers import SUPPORTED, Matrix, conv_patches, learnable_matrices


@dataclass
class _LayerState:
    name: str
    module: Any  # the module whose forward hook reads this layer (the attention module for q/k/v/out)
    kind: str
    mat: Matrix
    read: int = 0  # forwards whose activity the probe could read, since it was attached
    hooked: int = 0  # forwards its hook saw at all (any mode), since it was attached
    h_sum: torch.Tensor | None = None  # Σ_i h_b,i h_a,iᵀ over confirmed forwards of this step
    n: int = 0  # samples in h_sum
    calls: int = 0
    pending: list = field(default_factory=list)  # [H_sum, n, confirmed] per forward call this step
    w_before: torch.Tensor | None = None
    signal: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # <-g, H>, |g|^2, |H|^2
    version: int | None = None  # weight._version when this step's first forward was seen


MAX_PENDING = 64  # unconfirmed forwards kept per layer and step; each holds one (out, in) matrix


def _hebb_sum(m: nn.Module, x: torch.Tensor, out: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(Σ_i h_b,i h_a,iᵀ, N) for one forward call, h_b without the bias: one matmul + one rank-1 pass.

    N·hebbian_direction(pre, post) computed without its division pass (the cosine ignores the scale).
    """
    x = x.detach()
    out = out.detach()
    if isinstance(m, (nn.Conv1d, nn.Conv2d)):
        pre = conv_patches(m, x)
        post = out.movedim(1, -1).reshape(-1, out.shape[1])
    else:
        pre = x.reshape(-1, x.shape[-1])
        post = out.reshape(-1, out.shape[-1])
    if pre.dtype in (torch.float16, torch.bfloat16):
        pre, post = pre.float(), post.float()
    H_sum = post.T @ pre
    if m.bias is not None:
        # Σ (out_i − b) pre_iᵀ = Σ out_i pre_iᵀ − b (Σ pre_i)ᵀ: removes the bias without copying the output
        H_sum.addr_(cast(torch.Tensor, m.bias).detach().to(H_sum.dtype), pre.sum(0), alpha=-1)
    return H_sum, pre.shape[0]


def _attention_sums(
    m: nn.Module, states: list[_LayerState], args: tuple, kwargs: dict, out: torch.Tensor
) -> list[tuple[_LayerState, torch.Tensor, int]]:
    """(state, Σ h_b h_aᵀ, N) of each probed projection of one attention call, h_b = W h_a without the bias:
    H = W (Σ h_a h_aᵀ), one Gram matrix per distinct input (self-attention: one for q, k and v)."""
    names = ("query", "key", "value")
    inputs = {p: args[i] if len(args) > i else kwargs[names[i]] for i, p in enumerate("qkv")}
    grams: dict[int, tuple[torch.Tensor, int]] = {}
    sums = []
    for st in states:
        part = st.name.rsplit(".", 1)[-1]
        x = inputs[part] if part in inputs else _out_proj_input(out, st.mat.weight)
        if x is None:  # the attention output was not found in the graph: reported as never read
            continue
        if id(x) not in grams:
            a = x.detach().reshape(-1, x.shape[-1])
            a = a.float() if a.dtype in (torch.float16, torch.bfloat16) else a
            grams[id(x)] = (a.T @ a, a.shape[0])
        gram, n = grams[id(x)]
        sums.append((st, st.mat.matrix().detach().to(gram.dtype) @ gram, n))
    return sums


def _out_proj_input(out: torch.Tensor, weight: torch.Tensor, depth: int = 8) -> torch.Tensor | None:
    """The input of an attention's out projection, which it applies functionally: the matmul node near the
    output whose saved operands include ``weight`` saved its input too. None if not found."""
    storage = weight.untyped_storage().data_ptr()
    node, seen = out.grad_fn, 0
    queue = [node] if node is not None else []
    while queue and seen < depth:
        node, seen = queue.pop(0), seen + 1
        saved = [getattr(node, a, None) for a in dir(node) if a.startswith("_saved_") and "sym_" not in a]
        tensors = [t for t in saved if isinstance(t, torch.Tensor)]
        if any(t.untyped_storage().data_ptr() == storage for t in tensors):
            for t in tensors:
                if t.untyped_storage().data_ptr() != storage and t.dim() == 2 and t.shape[1] == weight.shape[1]:
                    return t
        queue += [f for f, _ in node.next_functions if f is not None]
    return None


def _confirm(entries: list[list], grad: torch.Tensor) -> None:
    """Backward reached the output of these forwards: they count."""
    for e in entries:
        e[2] = True


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.dot(a.reshape(-1), b.reshape(-1))


def _cos(dot: torch.Tensor, sq_a: torch.Tensor, sq_b: torch.Tensor) -> torch.Tensor:
    """metrics.cosine from precomputed inner products (one BLAS pass each instead of three temporaries);
    NaN where either side is zero, as there."""
    denom = (sq_a * sq_b).sqrt()
    return torch.where(denom > _EPS, dot / denom.clamp_min(_EPS), torch.full_like(dot, float("nan")))


class HebbianProbe:
    """Measure the Hebbian alignment of every learnable matrix of ``model`` (or the named ``layers``):
    ``nn.Linear``, ``nn.Conv1d``/``nn.Conv2d`` (groups = 1), the q/k/v/out projections of attention.

    Two lines in a user's loop::

        probe = HebbianProbe(model, every=10)
        probe.attach_optimizer(optimizer)      # or: with probe.update(): <manual update>;  or probe.step()
        ...
        probe.to_frame()                       # step, layer, alignment_signal, alignment_update, batch_size, …
        probe.remove()

    ``writer``: anything with ``add_scalar(tag, value, step)`` (e.g. a TensorBoard SummaryWriter); tags are
    ``hebbian/signal/<layer>`` and ``hebbian/update/<layer>``. ``skipped``: every trainable parameter that
    is not measured, by name, with the reason (a norm's gain, an embedding, a grouped conv, ...).
    """

    def __init__(self, model: nn.Module, layers: Iterable[str] | None = None, every: int = 1, writer: Any = None):
        if not isinstance(model, nn.Module):
            raise PlasticlabError(f"HebbianProbe needs a torch.nn.Module, got {type(model).__name__}")
        try:
            every = operator.index(every)  # ints and numpy ints, not floats or bools-as-floats
        except TypeError:
            raise PlasticlabError(f"every must be a positive int, got {every!r}") from None
        check_positive("every", every)
        self.model = model
        self.every = every
        self.writer = writer
        self.skipped: dict[str, str] = {}
        self.layers = self._select(model, layers)
        self._step = 0  # closed steps so far
        self._records: list[dict[str, Any]] = []
        self._handles: list[Any] = []
        self._opt_handles: list[Any] = []
        self._active = True
        self._seen = 0  # forward calls of probed layers while active
        self._counted = 0  # ... of which in training mode with grad enabled
        self._closed = 0  # steps closed (optimizer step, update(), step())
        self._blind = False  # updates happen that the probe never sees: store nothing until a step closes
        self._warned: set[str] = set()
        by_module: dict[int, list[_LayerState]] = {}
        for st in self.layers.values():
            by_module.setdefault(id(st.module), []).append(st)
        for states in by_module.values():
            hook = self._forward_hook(states)
            self._handles.append(states[0].module.register_forward_hook(hook, with_kwargs=True))

    # -- setup ------------------------------------------------------------------------------------------
    def _select(self, model: nn.Module, layers: Iterable[str] | None) -> dict[str, _LayerState]:
        mats, skipped = learnable_matrices(model)
        self.skipped = {n: s.reason for n, s in skipped.items()}
        by_name = {m.name: m for m in mats}
        if layers is None:
            chosen = mats
            if not chosen:
                raise PlasticlabError(f"model {type(model).__name__} has no layer to probe ({SUPPORTED})")
        else:
            if isinstance(layers, str):
                layers = [layers]
            chosen = []
            for n in layers:
                if n not in by_name:
                    why = next((s.reason for p, s in skipped.items() if p.rsplit(".", 1)[0] == n), None)
                    if why:
                        raise PlasticlabError(f"layer {n!r} can't be probed: {why}")
                    raise PlasticlabError(
                        f"unknown layer {n!r} for HebbianProbe; valid choices ({SUPPORTED}): "
                        f"{', '.join(by_name) or 'none'}"
                    )
                chosen.append(by_name[n])
        return {m.name: _LayerState(m.name, m.module, m.kind, m) for m in chosen}

    def _forward_hook(self, states: list[_LayerState]):
        def hook(module, args, kwargs, output):
            if not self._active:
                return None
            self._seen += 1
            for st in states:
                st.hooked += 1
            if not (module.training and torch.is_grad_enabled()):
                return None
            self._counted += 1
            if self._blind or not self.measuring:
                return None
            out = output[0] if isinstance(output, tuple) else output
            if not (isinstance(out, torch.Tensor) and out.requires_grad):
                return None
            kept = [st for st in states if self._keep(st)]
            if not kept:
                return None
            if kept[0].kind == "attention":
                sums = _attention_sums(module, kept, args, kwargs, out)
            else:
                x = args[0] if args else kwargs.get("input")
                sums = [] if x is None else [(kept[0], *_hebb_sum(module, x, out))]
            entries = []
            for st, H_sum, n in sums:
                st.read += 1
                entries.append([H_sum, n, False])
                st.pending.append(entries[-1])
            if entries:
                out.register_hook(functools.partial(_confirm, entries))
            return None

        return hook

    def _keep(self, st: _LayerState) -> bool:
        """Guard one forward: weights that changed inside an open step mean updates the probe never
        sees (no optimizer attached, no step()): warn once and store nothing. Memory stays bounded."""
        version = st.mat.weight._version
        if st.version is None:
            st.version = version
        elif version != st.version:
            self._reset(st)
            if not self._opt_handles and self._closed == 0:
                self._blind = True
                for other in self.layers.values():
                    self._reset(other)
                self._warn_once(
                    "unseen",
                    "HebbianProbe: the weights are being updated but no step was closed: call "
                    "probe.attach_optimizer(optimizer), probe.step() after each backward, or update inside "
                    "`with probe.update():`. Nothing is stored until then.",
                )
                return False
            st.version = version
        self._fold_confirmed(st)
        if len(st.pending) >= MAX_PENDING:
            st.pending.pop(0)  # a forward its backward never reached; keep memory bounded
            self._warn_once(
                "pending",
                f"HebbianProbe: more than {MAX_PENDING} forward passes of {st.name!r} in one step without a "
                "backward reaching them; the oldest are dropped (is loss.backward() called?)",
            )
        return True

    @staticmethod
    def _fold_confirmed(st: _LayerState) -> None:
        """Sum forwards the backward already reached into h_sum now, so pending holds only the rest."""
        keep = []
        for entry in st.pending:
            H_sum, n, confirmed = entry
            if confirmed:
                st.h_sum = H_sum if st.h_sum is None else st.h_sum + H_sum
                st.n += n
                st.calls += 1
            else:
                keep.append(entry)
        st.pending = keep

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, PlasticlabWarning, stacklevel=4)

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> HebbianProbe:
        """Measure around every ``optimizer.step()``: signal before it, actual update across it."""
        if self._opt_handles:
            raise PlasticlabError(
                "HebbianProbe already has an optimizer attached; call remove() first or use "
                "`with probe.update():` for a second one"
            )
        self._opt_handles = [
            optimizer.register_step_pre_hook(lambda *a, **k: self._pre()),
            optimizer.register_step_post_hook(lambda *a, **k: self._post(True)),
        ]
        return self

    @contextlib.contextmanager
    def update(self):
        """``with probe.update(): <any parameter update>`` — for hand-written update rules."""
        self._pre()
        try:
            yield self
        finally:
            self._post(True)

    def step(self) -> None:
        """Close a step without an update to compare against (signal alignment only); call after backward."""
        self._pre()
        self._post(False)

    def remove(self) -> None:
        """Detach every hook; the model is left exactly as it was."""
        for h in self._handles + self._opt_handles:
            h.remove()
        self._handles, self._opt_handles = [], []
        self._active = False
        for st in self.layers.values():
            self._reset(st)

    # -- measurement ------------------------------------------------------------------------------------
    @property
    def measuring(self) -> bool:
        """Whether the current (open) step is measured."""
        return self._step % self.every == 0

    def _pre(self) -> None:
        if not self._active or not self.measuring:
            return
        for st in self.layers.values():
            self._fold_confirmed(st)
            st.pending = []
            grad = st.mat.grad()
            if st.h_sum is None or grad is None:
                continue
            # reduce the signal to scalars now: the optimizer may not leave .grad as it found it
            g = grad.detach().to(st.h_sum.dtype)
            st.signal = (-_dot(g, st.h_sum), _dot(g, g), _dot(st.h_sum, st.h_sum))
            st.w_before = st.mat.matrix().detach().clone()

    def _post(self, updated: bool) -> None:
        if not self._active:
            return
        if self._seen and not self._counted:
            self._warn_once(
                "eval",
                "HebbianProbe: every forward pass of this step ran in eval mode or under torch.no_grad(), so "
                "nothing was measured; call model.train() and run the forward with grad enabled",
            )
        if self.measuring:
            self._record(updated)
            self._warn_unread()
        self._closed += 1
        self._blind = False
        self._seen = self._counted = 0
        for st in self.layers.values():
            self._reset(st)
        self._step += 1

    def unread(self) -> list[str]:
        """Probed layers whose forward the probe has never read, while others were read."""
        if not any(st.read for st in self.layers.values()) and not self._closed:
            return []
        return [n for n, st in self.layers.items() if not st.read]

    def _warn_unread(self) -> None:
        if not any(st.read for st in self.layers.values()):
            return
        for name in self.unread():
            self._warn_once(
                f"unread:{name}",
                f"HebbianProbe: layer {name!r} is probed but its forward was never seen in training mode with "
                "grad enabled (is its weight used functionally, e.g. F.linear(x, layer.weight), or the module "
                "never called?); it has no rows",
            )

    def _record(self, updated: bool) -> None:
        rows, values = [], []
        for st in self.layers.values():
            if st.signal is None:
                continue
            gh, gg, hh = st.signal
            assert st.h_sum is not None and st.w_before is not None  # set together with the signal
            if updated:
                W = st.mat.matrix().detach()
                dW = torch.sub(W, st.w_before, out=st.w_before).to(st.h_sum.dtype)  # in place: no new buffer
                dh, dd = _dot(dW, st.h_sum), _dot(dW, dW)
            else:
                dh = dd = torch.full_like(gh, float("nan"))
            values.append(
                torch.stack([_cos(gh, gg, hh), _cos(dh, dd, hh), gg.sqrt(), dd.sqrt(), hh.sqrt() / st.n])
            )
            rows.append(st)
        if not rows:
            return
        table = torch.stack(values).double().tolist()  # one conversion per step, not per layer
        for st, (a_sig, a_upd, g_norm, dw_norm, h_norm) in zip(rows, table):
            self._records.append(
                dict(
                    step=self._step,
                    layer=st.name,
                    kind=st.kind,
                    alignment_signal=a_sig,
                    alignment_update=a_upd,
                    batch_size=st.n,
                    calls=st.calls,
                    signal_norm=g_norm,
                    update_norm=dw_norm,
                    hebbian_norm=h_norm,
                )
            )
            if self.writer is not None:
                self.writer.add_scalar(f"hebbian/signal/{st.name}", a_sig, self._step)
                if updated:
                    self.writer.add_scalar(f"hebbian/update/{st.name}", a_upd, self._step)

    @staticmethod
    def _reset(st: _LayerState) -> None:
        st.h_sum, st.n, st.calls, st.pending, st.w_before, st.signal = None, 0, 0, [], None, None
        st.version = None

    def why_empty(self) -> str | None:
        """Why :meth:`to_frame` has no rows (None if it has some)."""
        if self._records:
            return None
        if self._blind:
            return "no step was closed although the weights changed (attach_optimizer(), step() or update())"
        if self._closed == 0 and self._counted:
            return "no step was closed yet (attach_optimizer(), step() after backward, or update())"
        if self._closed == 0 and self._seen:
            return "every forward pass ran in eval mode or under torch.no_grad()"
        if self._closed == 0:
            return "no forward pass of the probed layers was seen (is this probe on the model being trained?)"
        if not any(st.hooked for st in self.layers.values()):
            return (
                f"the forward of {', '.join(map(repr, self.layers))} never ran where a hook sees it (a weight "
                "used functionally, e.g. F.linear(x, layer.weight), or a module never called)"
            )
        return "no measured step had a forward in training mode whose backward reached the probed layers"

    def to_frame(self) -> pd.DataFrame:
        """Tidy table, one row per (measured step, layer that took part in it)."""
        cols = [
            "step",
            "layer",
            "kind",
            "alignment_signal",
            "alignment_update",
            "batch_size",
            "calls",
            "signal_norm",
            "update_norm",
            "hebbian_norm",
        ]
        df = pd.DataFrame(self._records, columns=cols)
        if (why := self.why_empty()) is not None:
            df.attrs["why_empty"] = why
            warnings.warn(f"HebbianProbe.to_frame() is empty: {why}", PlasticlabWarning, stacklevel=2)
        return df

    def __enter__(self) -> HebbianProbe:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
