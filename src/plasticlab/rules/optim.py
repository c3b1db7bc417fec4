"""Any rule chain as a ``torch.optim.Optimizer`` for any ``nn.Module`` whose learnable layers are
``nn.Linear``, ``nn.Conv1d``/``nn.Conv2d`` (groups = 1) or ``nn.MultiheadAttention`` projections.

    opt = RuleOptimizer(model, "dfa", lr=0.01)            # or chain(dfa(), weight_decay(1e-4)), or a Signal
    out = model(x); loss = F.cross_entropy(out, y); opt.zero_grad(); loss.backward(); opt.step()

How a rule sees the model (an ensemble of one, E = 1; see ``rules.layers`` and ``rules.graph``):
- its layers are the model's learnable matrices in module order, each W as (out, in·k) acting on sample rows:
  a Linear's leading dims, a conv's output positions (h_a = unfolded patches), an attention projection's
  tokens. Residual connections, normalisation layers and any forward code between them are the model's own;
- a chain starting with ``sgd`` is ``-p.grad`` (exactly ``torch.optim.SGD``); no hook is installed;
- ``dfa``, ``fa`` and ``sign_symmetry`` act through the layers' backward (``rules.graph.Recorder``): the
  error leaving each layer towards its input is the rule's, autograd carries it through the model (φ′ of
  whatever nonlinearity is there, norms, residual sums), and ``-p.grad`` is the learning signal;
- every other signal (hebbian, oja, bcm, soft_wta, curl, exp_grad, a user's) reads a ``Context`` built from
  the last forward of the whole model: h_a and h_b = output − bias per layer, the model output and, after a
  backward, the output delta (B x dloss/d(output): the per-sample delta of a batch-mean loss). Back-propagating
  that delta through the true weights gives autograd's own gradient;
- ``W <- W + lr * update`` (the library's sign convention: updates are descent directions).

A trainable parameter that is none of these matrices (a norm's gain, an embedding, a raw parameter) is not
trained by the rule: it is named in a warning (``params=`` says explicitly what the rule trains); a layer
that holds a matrix the rules can't read (grouped conv, ConvTranspose, RNN ...) is an error naming it. A
piece tagged ``perturbs_forward`` (parameter noise) changes the forward pass, which the user runs, so it is
refused here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from torch import nn

from plasticlab.errors import PlasticlabError, PlasticlabWarning
from plasticlab.losses import check_loss
from plasticlab.networks.mlp import MLP, Trace
from plasticlab.rules.atlas import FA, SignSymmetry
from plasticlab.rules.base import Chain, Context, Signal, Updates, chain
from plasticlab.rules.graph import DFAFeedback, FAFeedback, Feedback, Recorder, SignFeedback
from plasticlab.rules.layers import SUPPORTED, Matrix, Skipped, learnable_matrices, post_rows, pre_rows
from plasticlab.rules.registry import RuleNames, RuleSpec, make_rule
from plasticlab.rules.signals import DFA, SGD

_ACT = {nn.Tanh: "tanh", nn.ReLU: "relu", nn.Sigmoid: "sigmoid"}
_NEUTRAL = (nn.Identity, nn.Dropout, nn.Flatten)
UNKNOWN = (
    "unknown (not an MLP chain: an nn.Sequential of nn.Linear and one of Tanh/ReLU/Sigmoid; pass activation= "
    "to RuleOptimizer if it is one)"
)


def infer_activation(model: nn.Module) -> str:
    """The one hidden nonlinearity of an MLP chain (an ``nn.Sequential`` of Linear layers and Tanh / ReLU /
    Sigmoid), "linear" if none; unknown for any other model. Only rules that treat the model as an MLP chain
    read it (random_nn's pseudo-target network, a user rule back-propagating its own error)."""
    if not isinstance(model, nn.Sequential):
        return UNKNOWN
    kinds = set()
    for m in model.modules():
        if next(m.children(), None) is not None or isinstance(m, (nn.Linear, *_NEUTRAL)):
            continue
        kinds.add(_ACT.get(type(m), UNKNOWN))
    if not kinds:
        return "linear"
    return kinds.pop() if len(kinds) == 1 else UNKNOWN


class _AutogradSignal(Signal):
    """The learning signal autograd left in ``.grad``, as a descent direction: -p.grad per layer. For sgd
    that is the gradient; under a feedback rule's backward it is that rule's signal."""

    def __init__(self, name: str):
        self.name = name

    def update(self, updates: Updates, state: Any, ctx: Context) -> tuple[Updates, Any]:
        """-p.grad per layer, read by ``RuleOptimizer`` into ``ctx.grads``."""
        assert isinstance(ctx, HookContext) and ctx.grads is not None
        return ctx.grads, state


# how the chain-based feedback signals run on a module graph: their error transport as per-layer backward
_ON_GRAPH: dict[type, Callable[[Any], Feedback]] = {
    DFA: lambda s: DFAFeedback(s.scale, s.feedback),
    FA: lambda s: FAFeedback(s.scale),
    SignSymmetry: lambda s: SignFeedback(),
}


class _AutogradDeltas(list):
    """Autograd's per-layer deltas: ``HookContext.descent`` of them is -p.grad itself (exact for every layer
    kind, attention projections included)."""


class HookContext(Context):
    """A Context whose output delta and true-weight backprop come from autograd's recorded gradients."""

    captured_out: torch.Tensor | None = None
    captured: list[torch.Tensor] | None = None
    grads: Updates | None = None
    autograd: Callable[[], Updates | None] | None = None
    _x: torch.Tensor | None = None

    @property
    def x(self) -> torch.Tensor:
        """The model's input as rows: the first layer's h_a, made on first use (a conv's are patches)."""
        return self.trace.pre[0] if self._x is None else self._x

    @x.setter
    def x(self, value: torch.Tensor | None) -> None:
        self._x = value

    def output_delta(self, out: torch.Tensor | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        """The output delta autograd recorded (B x dloss/dout), else the one computed from targets."""
        if out is None and y is None and self.captured_out is not None:
            return self.captured_out
        if (self.y if y is None else y) is None:
            raise PlasticlabError(
                "this rule needs the output error: call loss.backward() before step(), "
                "or pass the targets as opt.step(y=...)"
            )
        return super().output_delta(out, y)

    def backprop(self, delta_out: torch.Tensor, feedback: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Autograd's own deltas when back-propagating its output delta through the true weights."""
        if feedback is None and delta_out is self.captured_out and self.autograd is not None:
            return _AutogradDeltas(self.captured or [])
        return super().backprop(delta_out, feedback)

    def descent(self, deltas: list[torch.Tensor]) -> Updates:
        """-p.grad for autograd's own deltas; otherwise -(1/N) Σ δ h_aᵀ over each layer's rows."""
        if isinstance(deltas, _AutogradDeltas) and self.autograd is not None:
            grads = self.autograd()
            if grads is not None:
                return grads
        return super().descent(deltas)


class RuleOptimizer(torch.optim.Optimizer):
    """Apply ``rule`` (a Chain, a single signal, or a rule name for ``make_rule``) to the learnable matrices
    of ``model`` (``rules.layers``): ``W <- W + lr * update`` with each parameter's lr from ``param_groups``.

    ``params`` (optional, as for torch optimizers: tensors or group dicts with ``params`` and ``lr``) picks
    the parameters to update and their step sizes; a matrix's parameter in no group stays fixed. Without
    ``params``, every trainable parameter the rule can't train is named in a ``PlasticlabWarning``. The
    rule's state lives in ``self.state`` ("rule": the chain's state, "step": steps taken), so
    ``state_dict()`` / ``load_state_dict()`` round-trip it, Adam moments included. ``loss`` (a
    ``plasticlab.losses`` kind: "mse", "mse_mean", "xent") is only used when a rule computes its own error
    from targets (random_nn, three_factor, or ``step(y=...)`` without a backward pass); ``seed`` fixes
    feedback matrices and noise; ``activation`` is only read by rules that rebuild the model as an MLP chain
    (random_nn)."""

    def __init__(
        self,
        model: nn.Module,
        rule: Chain | Signal | str,
        lr: float,
        *,
        params: Any = None,
        loss: str = "mse",
        activation: str | None = None,
        seed: int = 0,
    ):
        if lr <= 0:
            raise PlasticlabError(f"lr must be > 0, got {lr!r}")
        self.rule = _as_chain(rule)
        self.layers, skipped = learnable_matrices(model)
        _warn_shared(self.layers)
        if not self.layers:
            raise PlasticlabError(
                f"RuleOptimizer needs a learnable layer ({SUPPORTED}); {type(model).__name__} has none"
            )
        mine = list({id(p): p for m in self.layers for p in (m.weight, m.bias) if p is not None}.values())
        if params is None:
            _refuse_or_warn(skipped)
        super().__init__(mine if params is None else params, dict(lr=lr))
        _check_groups(self.param_groups, mine, {id(p): n for n, p in model.named_parameters()}, skipped)
        self._chain, feedback = _on_graph(self.rule)
        self.loss = check_loss(loss)
        self.activation = activation or infer_activation(model)
        self.seeds = torch.tensor([int(seed)], dtype=torch.int64)
        try:
            self._store["rule"] = self._chain.init(self._net(), self.seeds)
        except (RuntimeError, PlasticlabError) as e:  # e.g. random_nn rebuilding the model as an MLP chain
            raise PlasticlabError(
                f"rule {self._chain.signal_name} can't be set up on {type(model).__name__}: {e}"
            ) from e
        self._store["step"] = 0
        self.last_signal: Updates = []
        reads_grad = isinstance(self._chain.parts[0], _AutogradSignal)
        # sgd needs no hook at all: the model runs exactly as it would under torch.optim.SGD
        self._rec = None if reads_grad and feedback is None else Recorder(model, self.layers, feedback, self.seeds)

    @property
    def _store(self) -> dict[Any, Any]:
        """``self.state`` under its real key type: the rule's entries are keyed by name, not by parameter."""
        return cast(dict[Any, Any], self.state)

    def _net(self) -> MLP:
        ws = [m.matrix().detach()[None] for m in self.layers]
        bs = [None if (b := m.b()) is None else b.detach()[None] for m in self.layers]
        return MLP(ws, bs, self.activation)

    def remove_hooks(self) -> None:
        """Stop recording the model's forward passes (and give attention modules their own forward back)."""
        if self._rec is not None:
            self._rec.remove()

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, *, y: torch.Tensor | None = None) -> Any:
        """One rule step on the last forward pass (and backward pass, if any); ``y``: targets for rules
        that compute their own error. Returns the closure's loss, like torch optimizers."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        ctx = self._context(y)
        try:
            out = self._chain.step(self._store["rule"], ctx)
        except RuntimeError as e:
            raise self._cannot_run(ctx, e) from e
        self._store["rule"] = out.state
        self._apply(out.updates)
        self.last_signal = out.signal
        self._store["step"] += 1
        if self._rec is not None:
            self._rec.clear()
        return loss

    def _context(self, y: torch.Tensor | None) -> HookContext:
        """This step's Context: -p.grad for signals that read it, else the recorded forward (and backward)."""
        net = self._net()
        common = dict(net=net, y=None if y is None else _flat(y), loss=self.loss, seeds=self.seeds)
        if isinstance(self._chain.parts[0], _AutogradSignal):
            grads = self._descent_from_grad()
            if grads is None:
                raise PlasticlabError(
                    "step() before a forward and backward pass: this rule reads the gradient its backward "
                    "left in p.grad (the output error sent back); call loss.backward() before step()"
                )
            empty = torch.empty(1, 0, 0)
            trace = Trace(pre=[], post=[], z=[], out=empty, weights=net.weights)
            ctx = HookContext(trace=trace, x=empty, step=self._store["step"], **common)  # type: ignore[arg-type]
            ctx.grads = grads
            return ctx
        rec = cast(Recorder, self._rec)
        missing = [m.name for m, calls in zip(self.layers, rec.calls) if not calls]
        if len(missing) == len(self.layers):
            raise PlasticlabError(
                "step() before a forward pass: run the model on a batch first "
                "(and loss.backward() for rules that need the error)"
            )
        if missing:
            raise PlasticlabError(
                f"layer(s) {', '.join(map(repr, missing))} took no part in the model's last forward pass, so "
                f"rule {self._chain.signal_name} has no activity to read there (run a forward that uses them, "
                "or leave them out with params=)"
            )
        calls = rec.calls

        def pre_of(l: int) -> torch.Tensor:
            return torch.cat([pre_rows(self.layers[l], c.x) for c in calls[l]])[None]

        def post_of(l: int) -> torch.Tensor:
            return torch.cat([post_rows(self.layers[l], cast(torch.Tensor, c.out)) for c in calls[l]])[None]

        def delta(l: int) -> torch.Tensor:  # N x dloss/dh_b: descent's 1/N gives dloss/dW back
            g = torch.cat([_grad_rows(self.layers[l], cast(torch.Tensor, c.grad)) for c in calls[l]])
            return len(g) * g[None]

        L = len(self.layers)
        pre, post = _Lazy(L, pre_of), _Lazy(L, post_of)
        z = _Lazy(L, lambda l: post[l] if (b := net.biases[l]) is None else post[l] + b[:, None, :])
        out = _flat(rec.out) if rec.out is not None else post[L - 1]
        trace = Trace(pre=cast(list, pre), post=cast(list, post), z=cast(list, z), out=out, weights=net.weights)
        ctx = HookContext(trace=trace, x=None, step=self._store["step"], **common)  # type: ignore[arg-type]
        if rec.out_grad is not None:
            ctx.captured_out = out.shape[1] * _flat(rec.out_grad)
        if all(c.grad is not None for layer in calls for c in layer):
            ctx.captured = cast(list, _Lazy(L, delta))
        ctx.autograd = self._descent_from_grad
        return ctx

    def _cannot_run(self, ctx: HookContext, e: RuntimeError) -> Exception:
        """A rule that failed on layers whose rows are not the output's samples, named; else the error."""
        if not ctx.trace.pre:
            return e
        n = ctx.trace.out.shape[1]
        odd = [f"{m.name!r} ({t.shape[1]} rows)" for m, t in zip(self.layers, ctx.trace.pre) if t.shape[1] != n]
        if not odd:
            return e
        return PlasticlabError(
            f"rule {self._chain.signal_name} pairs every layer's rows with the output's {n} samples, but "
            f"layer(s) {', '.join(odd)} see different numbers of rows per batch (a conv's positions, a "
            f"sequence's tokens), so it cannot run on this model; rules that can: {', '.join(any_model_rules())}"
        )

    def _descent_from_grad(self) -> Updates | None:
        """-p.grad of every layer as (1, out, in·k) matrices (None before a backward)."""
        out: Updates = []
        for m in self.layers:
            g = m.grad()
            if g is None:
                return None
            gb = m.bias_grad()
            out.append((-g[None], None if m.bias is None or gb is None else -gb[None]))
        return out

    def _apply(self, updates: Updates) -> None:
        """p <- p + lr * update, lr from p's param group; parameters in no group stay fixed."""
        lrs = {id(p): g["lr"] for g in self.param_groups for p in g["params"]}
        done: set[tuple[int, Any]] = set()  # a tied weight takes its first layer's update only
        for m, (uW, ub) in zip(self.layers, updates):
            for p, rows, view, u in ((m.weight, m.rows, m.w(), uW), (m.bias, m.bias_rows, m.b(), ub)):
                key = (id(p), None if rows is None else (rows.start, rows.stop))
                if p is not None and view is not None and u is not None and id(p) in lrs and key not in done:
                    view.add_(u[0].reshape(view.shape).to(view.dtype), alpha=lrs[id(p)])
                    done.add(key)


class _Lazy(Sequence[torch.Tensor]):
    """Per-layer tensors made on first access: a conv's patch rows are large, and rules such as curl and
    exp_grad (which read autograd's gradient) never look at them."""

    def __init__(self, n: int, make: Callable[[int], torch.Tensor]):
        self._items: list[torch.Tensor | None] = [None] * n
        self._make = make

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        item = self._items[i]
        if item is None:
            item = self._items[i] = self._make(i % len(self))
        return item


def _grad_rows(m: Matrix, g: torch.Tensor) -> torch.Tensor:
    """dloss/d(output) of one call as (N, out) rows, in ``post_rows``' order."""
    return g.movedim(1, -1).reshape(-1, g.shape[1]) if m.kind.startswith("conv") else g.reshape(-1, g.shape[-1])


def _warn_shared(mats: list[Matrix]) -> None:
    """A weight two modules share (tied weights) is updated once, by the first one's update: its .grad
    already sums both uses, and applying both would double the step."""
    first: dict[tuple[int, Any], str] = {}
    for m in mats:
        key = (id(m.weight), None if m.rows is None else (m.rows.start, m.rows.stop))
        if key in first:
            warnings.warn(
                f"RuleOptimizer: layer {m.name!r} shares its weight with {first[key]!r}; the weight takes "
                f"{first[key]!r}'s update only",
                PlasticlabWarning,
                stacklevel=4,
            )
        first.setdefault(key, m.name)


def _refuse_or_warn(skipped: dict[str, Skipped]) -> None:
    """A layer holding a matrix the rules can't read is an error; other untrained parameters a warning."""
    layers = [f"{n} ({s.reason})" for n, s in skipped.items() if s.layer]
    if layers:
        raise PlasticlabError(
            f"RuleOptimizer can't train {'; '.join(layers)}: rules train {SUPPORTED}; pass params= "
            "without them (and train them yourself) to run the rule on the rest"
        )
    if skipped:
        names = "; ".join(f"{n} ({s.reason})" for n, s in skipped.items())
        warnings.warn(
            f"RuleOptimizer: the rule does not train {names}; they stay as they are unless you train them "
            "yourself (pass params= to say which parameters the rule trains)",
            PlasticlabWarning,
            stacklevel=3,
        )


_ANY_MODEL: dict[tuple[str, Any], bool] = {}


def _runs_on_any_model(spec: RuleSpec) -> bool:
    """Whether the rule runs where layers see different rows than the output: one step on a toy model whose
    first Linear runs per token (3 rows per sample) and whose output Linear sees the flattened tokens (1 row),
    as in a transformer. Local rules, autograd's gradient and the feedback rules (through each layer's
    backward) pass; rules that rebuild the model as an MLP chain (random_nn) or pair every layer's rows with
    the output's samples (three_factor) do not. Asked once per registered factory (a rule registered later
    is asked when first listed)."""
    key = (spec.name, spec.factory)
    if key not in _ANY_MODEL:
        gen = torch.Generator().manual_seed(0)
        tok, out = nn.Linear(2, 2), nn.Linear(6, 1)
        for m in (tok, out):
            m.weight.data = torch.randn(m.weight.shape, generator=gen)
        x, y = torch.randn(4, 3, 2, generator=gen), torch.randn(4, 1, generator=gen)
        model = nn.Sequential(tok, nn.Tanh(), nn.Flatten(), out)
        opt = RuleOptimizer(model, spec.name, lr=0.01)
        try:  # the chain itself, not step(): step's error message lists these rules
            with torch.enable_grad():  # the question may be asked inside a step (no_grad)
                ((model(x) - y) ** 2).mean().backward()
            with torch.no_grad():
                opt._chain.step(opt._store["rule"], opt._context(y))
            _ANY_MODEL[key] = True
        except (RuntimeError, PlasticlabError):
            _ANY_MODEL[key] = False
        finally:
            opt.remove_hooks()
    return _ANY_MODEL[key]


def any_model_rules() -> RuleNames:
    """The registered rules RuleOptimizer can run on any model, transformers included (a live view)."""
    return RuleNames(where=_runs_on_any_model)


def _flat(t: torch.Tensor) -> torch.Tensor:
    """(..., d) activations as one member's batch (1, B, d)."""
    return t.reshape(1, -1, t.shape[-1])


def _as_chain(rule: Chain | Signal | str) -> Chain:
    """A rule name, a lone signal or a chain, as a chain that leaves the forward pass alone."""
    if isinstance(rule, str):
        rule = make_rule(rule)
    chain_ = rule if isinstance(rule, Chain) else chain(rule)
    noisy = [p for p in chain_.parts if p.perturbs_forward]
    if noisy:
        raise PlasticlabError(
            f"{noisy[0]!r} perturbs the forward pass, which your model runs itself: "
            "add the noise in the model, or use signal_noise"
        )
    return chain_


def _on_graph(rule: Chain) -> tuple[Chain, Feedback | None]:
    """The chain as it runs on a module graph: a leading sgd becomes autograd's own gradient (exactly torch's
    SGD); dfa / fa / sign_symmetry become -p.grad under their per-layer backward (the returned feedback)."""
    parts = list(rule.parts)
    first, feedback = parts[0], None
    if type(first) is SGD:
        parts[0] = _AutogradSignal("sgd")
    elif type(first) in _ON_GRAPH:
        feedback = _ON_GRAPH[type(first)](first)
        parts[0] = _AutogradSignal(first.name)
    return Chain(*parts), feedback


def _check_groups(
    groups: list[dict[str, Any]], mine: Sequence[torch.Tensor], names: dict[int, str], skipped: dict[str, Skipped]
) -> None:
    """Every group names only parameters of the model's matrices and sets nothing but lr."""
    ids = {id(p) for p in mine}
    for i, g in enumerate(groups):
        extra = sorted(set(g) - {"params", "lr"})
        if extra:
            raise PlasticlabError(
                f"RuleOptimizer param group {i} sets {extra}: a rule optimizer's groups take only lr "
                "(put decay, momentum etc. in the rule, e.g. chain(sgd(), adam(), weight_decay(1e-4)))"
            )
        if not g["lr"] > 0:
            raise PlasticlabError(f"RuleOptimizer param group {i}: lr must be > 0, got {g['lr']!r}")
        for p in g["params"]:
            if id(p) in ids:
                continue
            name = names.get(id(p))
            if name is None:
                raise PlasticlabError(f"RuleOptimizer param group {i} holds a parameter that is not in the model")
            why = skipped[name].reason if name in skipped else "frozen"
            raise PlasticlabError(
                f"RuleOptimizer param group {i} holds {name!r}, which no rule trains ({why}); rules train "
                f"{SUPPORTED}"
            )
