"""Any rule chain as a ``torch.optim.Optimizer`` for an ordinary ``nn.Module`` built from ``nn.Linear`` layers.

    opt = RuleOptimizer(model, chain(dfa(), weight_decay(1e-4)), lr=0.01)
    out = model(x); loss = F.mse_loss(out, y); opt.zero_grad(); loss.backward(); opt.step()

How a rule sees the model (an ensemble of one, E = 1):
- the ``nn.Linear`` layers in ``model.modules()`` order are the layers (e.g. an ``nn.Sequential`` MLP);
- forward hooks record each layer's input (h_a) and output; h_b = output - bias (SPEC A.1), z = output;
  the last call of forward before ``step()`` is the one the rule sees (leading dims are flattened to B);
- during backward, hooks on the layer outputs record dloss/d(output). The output-layer delta given to a rule
  is B times that, i.e. the per-sample delta of a batch-*mean* loss (PyTorch's default reduction), so any
  loss the user wrote drives DFA / FA / sign symmetry; when the rule back-propagates that delta through the
  true weights (sgd, curl, exp_grad) it gets autograd's own deltas, and a chain that *starts* with sgd
  uses ``-p.grad`` itself. Local rules (hebbian, oja, bcm, soft_wta) need no backward pass at all;
- hidden-layer derivatives phi' (needed by DFA / FA / sign symmetry / random_nn) come from ``activation``,
  inferred when the model's only non-Linear layers are one of Tanh / ReLU / Sigmoid;
- ``W <- W + lr * update`` (the library's sign convention: updates are descent directions).
Parameter noise perturbs the forward pass, which the user runs, so it is refused here.
"""

from __future__ import annotations

import torch
from torch import nn

from plasticlab.errors import PlasticlabError, check_choice
from plasticlab.networks.mlp import MLP, Trace
from plasticlab.rules.base import Chain, Context, Transform, chain
from plasticlab.rules.signals import SGD
from plasticlab.rules.transforms import ParamNoise

_ACT = {nn.Tanh: "tanh", nn.ReLU: "relu", nn.Sigmoid: "sigmoid"}
_NEUTRAL = (nn.Identity, nn.Dropout, nn.Flatten)
UNKNOWN = "unknown (pass activation= to RuleOptimizer)"


def infer_activation(model: nn.Module) -> str:
    kinds = set()
    for m in model.modules():
        if next(m.children(), None) is not None or isinstance(m, (nn.Linear, *_NEUTRAL)):
            continue
        kinds.add(_ACT.get(type(m), UNKNOWN))
    if not kinds:
        return "linear"
    return kinds.pop() if len(kinds) == 1 else UNKNOWN


class _GradSignal(Transform):
    """sgd on a torch model: the gradient autograd already computed, as a descent direction."""

    kind, name = "signal", "sgd"

    def update(self, updates, state, ctx):
        return ctx.grads, state


class HookContext(Context):
    """A Context whose output delta and true-weight backprop come from autograd's recorded gradients."""

    captured_out: torch.Tensor | None = None
    captured: list | None = None
    grads: list | None = None

    def output_delta(self, out=None, y=None):
        if out is None and y is None and self.captured_out is not None:
            return self.captured_out
        if (self.y if y is None else y) is None:
            raise PlasticlabError(
                "this rule needs the output error: call loss.backward() before step(), "
                "or pass the targets as opt.step(y=...)"
            )
        return super().output_delta(out, y)

    def backprop(self, delta_out, feedback=None):
        if feedback is None and delta_out is self.captured_out and self.captured is not None:
            return self.captured
        return super().backprop(delta_out, feedback)


class RuleOptimizer(torch.optim.Optimizer):
    """Apply ``rule`` (a Chain, a single signal, or a rule name) to the Linear layers of ``model``.

    ``loss`` ("mse" or "xent") is only used when a rule computes its own error from targets (random_nn,
    three_factor, or ``step(y=...)`` without a backward pass); ``seed`` fixes feedback matrices and noise."""

    def __init__(
        self, model: nn.Module, rule, lr: float, *, loss: str = "mse", activation: str | None = None, seed: int = 0
    ):
        if lr <= 0:
            raise PlasticlabError(f"lr must be > 0, got {lr!r}")
        self.layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not self.layers:
            raise PlasticlabError(f"RuleOptimizer needs nn.Linear layers; {type(model).__name__} has none")
        super().__init__([p for m in self.layers for p in m.parameters()], dict(lr=lr))
        if isinstance(rule, str):
            from plasticlab.rules import make_rule

            rule = make_rule(rule)
        self.rule = rule if isinstance(rule, Chain) else chain(rule)
        if any(isinstance(p, ParamNoise) and p.sigma > 0 for p in self.rule.parts):
            raise PlasticlabError(
                "param_noise perturbs the forward pass, which your model runs itself: "
                "add the noise in the model, or use signal_noise"
            )
        parts = list(self.rule.parts)
        if type(parts[0]) is SGD:
            parts[0] = _GradSignal()
        self._chain = Chain(*parts)
        self.loss = check_choice("loss", loss, ["mse", "xent"])
        self.activation = activation or infer_activation(model)
        self.seeds = torch.tensor([int(seed)], dtype=torch.int64)
        self.rule_state = self._chain.init(self._net(), self.seeds)
        self.t = 0
        self._acts: dict[int, tuple] = {}
        self._grads: dict[int, torch.Tensor] = {}
        self._handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(self.layers)]

    def _hook(self, i: int):
        def record(module, inputs, output):
            self._acts[i] = (inputs[0].detach(), output.detach())
            if output.requires_grad:
                output.register_hook(lambda g: self._grads.__setitem__(i, g.detach()))

        return record

    def _net(self) -> MLP:
        ws = [m.weight.detach()[None] for m in self.layers]
        bs = [None if m.bias is None else m.bias.detach()[None] for m in self.layers]
        return MLP(ws, bs, self.activation)

    def remove_hooks(self) -> None:
        for h in self._handles:
            h.remove()

    @torch.no_grad()
    def step(self, closure=None, *, y: torch.Tensor | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if len(self._acts) < len(self.layers):
            raise PlasticlabError(
                "step() before a forward pass: run the model on a batch first "
                "(and loss.backward() for rules that need the error)"
            )
        net = self._net()
        flat = lambda t: t.reshape(1, -1, t.shape[-1])
        pre, z = (
            [flat(self._acts[i][0]) for i in range(len(self.layers))],
            [flat(self._acts[i][1]) for i in range(len(self.layers))],
        )
        post = [zz if b is None else zz - b[:, None, :] for zz, b in zip(z, net.biases)]
        trace = Trace(pre=pre, post=post, z=z, out=z[-1], weights=net.weights)
        ctx = HookContext(
            net=net,
            trace=trace,
            x=pre[0],
            y=None if y is None else flat(y),
            loss=self.loss,
            seeds=self.seeds,
            step=self.t,
        )
        B = pre[0].shape[1]
        if len(self._grads) == len(self.layers):
            ctx.captured = [B * flat(self._grads[i]) for i in range(len(self.layers))]
            ctx.captured_out = ctx.captured[-1]
        elif len(self.layers) - 1 in self._grads:
            ctx.captured_out = B * flat(self._grads[len(self.layers) - 1])
        if type(self._chain.parts[0]) is _GradSignal:
            if any(m.weight.grad is None for m in self.layers):
                raise PlasticlabError("sgd reads p.grad: call loss.backward() before step()")
            ctx.grads = [
                (-m.weight.grad[None], None if m.bias is None or m.bias.grad is None else -m.bias.grad[None])
                for m in self.layers
            ]
        out = self._chain.step(self.rule_state, ctx)
        self.rule_state = out.state
        lr = self.param_groups[0]["lr"]
        for m, (uW, ub) in zip(self.layers, out.updates):
            m.weight.add_(uW[0].to(m.weight.dtype), alpha=lr)
            if m.bias is not None and ub is not None:
                m.bias.add_(ub[0].to(m.bias.dtype), alpha=lr)
        self.last_signal = out.signal
        self.t += 1
        self._grads = {}
        return loss
