"""Any rule chain as a ``torch.optim.Optimizer`` for an ordinary ``nn.Module`` built from ``nn.Linear`` layers.

    opt = RuleOptimizer(model, chain(dfa(), weight_decay(1e-4)), lr=0.01)
    out = model(x); loss = F.mse_loss(out, y); opt.zero_grad(); loss.backward(); opt.step()

How a rule sees the model (an ensemble of one, E = 1):
- the ``nn.Linear`` layers in ``model.modules()`` order are the layers (e.g. an ``nn.Sequential`` MLP);
- forward hooks record each layer's input (h_a) and output; h_b = output - bias (Koplow et al. 2025), z = output;
  the last call of forward before ``step()`` is the one the rule sees (leading dims are flattened to B);
- during backward, hooks on the layer outputs record dloss/d(output). The output-layer delta given to a rule
  is B times that, i.e. the per-sample delta of a batch-*mean* loss (PyTorch's default reduction), so any
  loss the user wrote drives DFA / FA / sign symmetry; when the rule back-propagates that delta through the
  true weights (sgd, curl, exp_grad) it gets autograd's own deltas, and a chain that *starts* with sgd
  uses ``-p.grad`` itself. Local rules (hebbian, oja, bcm, soft_wta) need no backward pass at all;
- hidden-layer derivatives phi' (needed by DFA / FA / sign symmetry / random_nn) come from ``activation``,
  inferred when the model's only non-Linear layers are one of Tanh / ReLU / Sigmoid;
- ``W <- W + lr * update`` (the library's sign convention: updates are descent directions).
A piece tagged ``perturbs_forward`` (parameter noise) changes the forward pass, which the user runs, so
it is refused here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from torch import nn

from plasticlab.errors import PlasticlabError, check_choice
from plasticlab.networks.mlp import MLP, Trace
from plasticlab.rules.base import Chain, Context, Signal, Updates, chain
from plasticlab.rules.registry import RuleNames, RuleSpec, make_rule
from plasticlab.rules.signals import SGD

_ACT = {nn.Tanh: "tanh", nn.ReLU: "relu", nn.Sigmoid: "sigmoid"}
_NEUTRAL = (nn.Identity, nn.Dropout, nn.Flatten)
UNKNOWN = "unknown (pass activation= to RuleOptimizer)"


def infer_activation(model: nn.Module) -> str:
    """The one hidden nonlinearity of ``model`` (Tanh / ReLU / Sigmoid), "linear" if none, else unknown."""
    kinds = set()
    for m in model.modules():
        if next(m.children(), None) is not None or isinstance(m, (nn.Linear, *_NEUTRAL)):
            continue
        kinds.add(_ACT.get(type(m), UNKNOWN))
    if not kinds:
        return "linear"
    return kinds.pop() if len(kinds) == 1 else UNKNOWN


class _GradSignal(Signal):
    """sgd on a torch model: the gradient autograd already computed, as a descent direction."""

    name = "sgd"

    def update(self, updates: Updates, state: Any, ctx: Context) -> tuple[Updates, Any]:
        """-p.grad per layer, read by ``RuleOptimizer`` into ``ctx.grads``."""
        assert isinstance(ctx, HookContext) and ctx.grads is not None
        return ctx.grads, state


class HookContext(Context):
    """A Context whose output delta and true-weight backprop come from autograd's recorded gradients."""

    captured_out: torch.Tensor | None = None
    captured: list[torch.Tensor] | None = None
    grads: Updates | None = None

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
        if feedback is None and delta_out is self.captured_out and self.captured is not None:
            return self.captured
        return super().backprop(delta_out, feedback)


class RuleOptimizer(torch.optim.Optimizer):
    """Apply ``rule`` (a Chain, a single signal, or a rule name for ``make_rule``) to the Linear layers of
    ``model``: ``W <- W + lr * update`` with each parameter's lr from its entry in ``param_groups``.

    ``params`` (optional, as for torch optimizers: tensors or group dicts with ``params`` and ``lr``) picks
    the parameters to update and their step sizes; a Linear parameter in no group stays fixed. The rule's
    state lives in ``self.state`` ("rule": the chain's state, "step": steps taken), so ``state_dict()`` /
    ``load_state_dict()`` round-trip it, Adam moments included. ``loss`` ("mse" or "xent") is only used when
    a rule computes its own error from targets (random_nn, three_factor, or ``step(y=...)`` without a
    backward pass); ``seed`` fixes feedback matrices and noise."""

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
        self.layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not self.layers:
            raise PlasticlabError(f"RuleOptimizer needs nn.Linear layers; {type(model).__name__} has none")
        mine = [p for m in self.layers for p in m.parameters()]
        super().__init__(mine if params is None else params, dict(lr=lr))
        _check_groups(self.param_groups, mine)
        self.rule = _as_chain(rule)
        self._chain = _with_autograd_sgd(self.rule)
        self.loss = check_choice("loss", loss, ["mse", "xent"])
        self.activation = activation or infer_activation(model)
        self.seeds = torch.tensor([int(seed)], dtype=torch.int64)
        self._store["rule"] = self._chain.init(self._net(), self.seeds)
        self._store["step"] = 0
        self.last_signal: Updates = []
        self._acts: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._grads: dict[int, torch.Tensor] = {}
        self._handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(self.layers)]

    @property
    def _store(self) -> dict[Any, Any]:
        """``self.state`` under its real key type: the rule's entries are keyed by name, not by parameter."""
        return cast(dict[Any, Any], self.state)

    def _hook(self, i: int) -> Callable[..., None]:
        def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            self._acts[i] = (inputs[0].detach(), output.detach())
            if output.requires_grad:
                output.register_hook(lambda g: self._grads.__setitem__(i, g.detach()))

        return record

    def _net(self) -> MLP:
        ws = [m.weight.detach()[None] for m in self.layers]
        bs: list[torch.Tensor | None] = [None if m.bias is None else m.bias.detach()[None] for m in self.layers]
        return MLP(ws, bs, self.activation)

    def remove_hooks(self) -> None:
        """Stop recording the model's forward passes."""
        for h in self._handles:
            h.remove()

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, *, y: torch.Tensor | None = None) -> Any:
        """One rule step on the last forward pass (and backward pass, if any); ``y``: targets for rules
        that compute their own error. Returns the closure's loss, like torch optimizers."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if len(self._acts) < len(self.layers):
            raise PlasticlabError(
                "step() before a forward pass: run the model on a batch first "
                "(and loss.backward() for rules that need the error)"
            )
        ctx = self._context(y)
        try:
            out = self._chain.step(self._store["rule"], ctx)
        except RuntimeError as e:
            rows = [t.shape[1] for t in ctx.trace.pre]
            if len(set(rows)) == 1:
                raise
            raise PlasticlabError(
                f"this rule carries the output error back through the nn.Linear layers as one chain, but "
                f"they see different numbers of rows per batch ({', '.join(map(str, rows))}; e.g. a "
                f"transformer's token-wise layers vs its output), so it cannot run on this model; rules "
                f"that can: {', '.join(any_model_rules())}"
            ) from e
        self._store["rule"] = out.state
        self._apply(out.updates)
        self.last_signal = out.signal
        self._store["step"] += 1
        self._grads = {}
        return loss

    def _context(self, y: torch.Tensor | None) -> HookContext:
        """This step's Context from the recorded activations and autograd's gradients."""
        net = self._net()
        pre = [_flat(self._acts[i][0]) for i in range(len(self.layers))]
        z = [_flat(self._acts[i][1]) for i in range(len(self.layers))]
        post = [zz if b is None else zz - b[:, None, :] for zz, b in zip(z, net.biases)]
        trace = Trace(pre=pre, post=post, z=z, out=z[-1], weights=net.weights)
        ctx = HookContext(
            net=net,
            trace=trace,
            x=pre[0],
            y=None if y is None else _flat(y),
            loss=self.loss,
            seeds=self.seeds,
            step=self._store["step"],
        )
        B, last = pre[0].shape[1], len(self.layers) - 1
        if len(self._grads) == len(self.layers):
            ctx.captured = [B * _flat(self._grads[i]) for i in range(len(self.layers))]
            ctx.captured_out = ctx.captured[-1]
        elif last in self._grads:
            ctx.captured_out = B * _flat(self._grads[last])
        if isinstance(self._chain.parts[0], _GradSignal):
            ctx.grads = self._descent_from_grad()
        return ctx

    def _descent_from_grad(self) -> Updates:
        if any(m.weight.grad is None for m in self.layers):
            raise PlasticlabError("sgd reads p.grad: call loss.backward() before step()")
        return [
            (-m.weight.grad[None], None if m.bias is None or m.bias.grad is None else -m.bias.grad[None])  # type: ignore[index]
            for m in self.layers
        ]

    def _apply(self, updates: Updates) -> None:
        """p <- p + lr * update, lr from p's param group; parameters in no group stay fixed."""
        lrs = {id(p): g["lr"] for g in self.param_groups for p in g["params"]}
        for m, (uW, ub) in zip(self.layers, updates):
            for p, u in ((m.weight, uW), (m.bias, ub)):
                if p is not None and u is not None and id(p) in lrs:
                    p.add_(u[0].to(p.dtype), alpha=lrs[id(p)])


_ANY_MODEL: dict[tuple[str, Any], bool] = {}


def _runs_on_any_model(spec: RuleSpec) -> bool:
    """Whether the rule needs no layer chain: one step on a toy model whose first Linear runs per token
    (3 rows per sample) and whose output Linear sees the flattened tokens (1 row), as in a transformer.
    Local rules and those using autograd's gradient pass; dfa, fa, random_nn and the like send the output
    error along fixed feedback matrices, which needs every layer to see the output's rows. Asked once per
    registered factory (a rule registered later is asked when first listed)."""
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


def _with_autograd_sgd(rule: Chain) -> Chain:
    """The chain with a leading sgd replaced by autograd's own gradient (exactly torch's SGD)."""
    parts = list(rule.parts)
    if type(parts[0]) is SGD:
        parts[0] = _GradSignal()
    return Chain(*parts)


def _check_groups(groups: list[dict[str, Any]], mine: Sequence[torch.Tensor]) -> None:
    """Every group names only the model's Linear parameters and sets nothing but lr."""
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
        if any(id(p) not in ids for p in g["params"]):
            raise PlasticlabError(
                f"RuleOptimizer param group {i} holds a parameter that is not in the model's nn.Linear layers"
            )
