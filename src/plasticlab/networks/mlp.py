"""Ensemble-batched MLPs that expose every layer's presynaptic h_a and postsynaptic h_b (Koplow et al. 2025).

Weights of layer l are (E, out, in): E ensemble members advance together. Conventions:
- h_a: the post-activation of the previous layer (the input x for the first layer);
- h_b: the pre-activation W h_a **without the bias** (the bias is added after, to form z). Alignment is
  measured on W alone, so the bias never enters the Hebbian factor.
- Hidden layers apply the activation; the output layer is linear (regression / logits).

Two initialisations (``init_mlp(init=...)``): ``"normal"``, W ~ N(0, scale²/fan_in), biases (if any) zero;
``"torch"``, ``nn.Linear``'s default, W and b ~ U(±scale/√fan_in) (kaiming_uniform with a = √5 for W).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from plasticlab import seeding
from plasticlab.errors import PlasticlabError, check_choice
from plasticlab.networks.activations import activation as get_activation


@dataclass
class MLP:
    """An ensemble of MLPs: per-layer weights (E, out, in), optional biases and one activation.

    ``init`` names how the net was initialised ("normal" or "torch"), so that a rule building a network of
    its own (random_nn's fixed target) can follow the same convention."""

    weights: list[torch.Tensor]  # (E, out, in)
    biases: list[torch.Tensor | None]  # (E, out) or None
    activation: str
    init: str = "normal"

    @property
    def depth(self) -> int:
        """The number of weight layers."""
        return len(self.weights)

    @property
    def ensemble_size(self) -> int:
        """E, the number of members."""
        return self.weights[0].shape[0]

    @property
    def widths(self) -> list[int]:
        """Layer widths from the input to the output: [in, hidden…, out]."""
        return [self.weights[0].shape[2]] + [w.shape[1] for w in self.weights]

    def params(self) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """(W, b) per layer; b is None for a bias-free layer."""
        return list(zip(self.weights, self.biases))

    def with_params(self, params) -> MLP:
        """A network with the same activation and the given (W, b) per layer."""
        return MLP([w for w, _ in params], [b for _, b in params], self.activation, self.init)

    def forward(self, x: torch.Tensor, weights: list[torch.Tensor] | None = None) -> Trace:
        """x (E, B, in) -> Trace; ``weights`` replaces W in the pass (e.g. perturbed by parameter noise)."""
        weights = self.weights if weights is None else weights
        phi, _ = get_activation(self.activation)
        pre, post, z_all = [], [], []
        h = x
        for l, (W, b) in enumerate(zip(weights, self.biases)):
            hb = torch.bmm(h, W.transpose(1, 2))
            z = hb if b is None else hb + b[:, None, :]
            pre.append(h)
            post.append(hb)
            z_all.append(z)
            h = phi(z) if l < len(weights) - 1 else z
        return Trace(pre=pre, post=post, z=z_all, out=h, weights=weights, chained=True)


@dataclass
class Trace:
    """One forward pass: each layer's input h_a, output h_b (no bias), pre-activation z and the output."""

    pre: list[torch.Tensor]  # h_a per layer (E, B, in)
    post: list[torch.Tensor]  # h_b per layer (E, B, out), without bias
    z: list[torch.Tensor]  # pre-activation with bias
    out: torch.Tensor  # network output (E, B, d_out)
    weights: list[torch.Tensor] = field(repr=False)  # the weights this pass used
    # pre[l + 1] is phi(z[l]) for every hidden layer (``MLP.forward``), so phi' may be taken from it; a
    # trace recorded from another model (hooks, convolutions) is not, and leaves this False
    chained: bool = False


def init_mlp(
    seeds,
    widths: list[int],
    activation: str = "tanh",
    *,
    bias: bool | None = None,
    scale: float = 1.0,
    tag: str = "student",
    init: str = "normal",
    dtype=torch.float64,
    device=None,
) -> MLP:
    """Member e depends on seeds[e] and ``tag`` only.

    ``init="normal"``: W ~ N(0, scale²/fan_in), biases zero; ``init="torch"``: ``nn.Linear``'s default,
    W ~ U(±scale/√fan_in) and b ~ U(±scale/√fan_in). ``bias`` (default: as the init, none for "normal",
    present for "torch") says whether layers have biases. ``device``: where the weights live (default:
    ``plasticlab.devices.current()``)."""
    get_activation(activation)  # validate early
    check_choice("init", init, INITS)
    if len(widths) < 2 or any(int(w) < 1 for w in widths):
        raise PlasticlabError(f"widths must list at least two positive sizes (in, ..., out), got {widths}")
    bias = (init == "torch") if bias is None else bias
    weights: list[torch.Tensor] = []
    biases: list[torch.Tensor | None] = []
    for l, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        if init == "torch":
            bound = scale / math.sqrt(fan_in)
            weights.append(
                _uniform(seeds, seeding.key_of(tag, "W-uniform", l), (fan_out, fan_in), bound, dtype, device)
            )
            biases.append(
                _uniform(seeds, seeding.key_of(tag, "b-uniform", l), (fan_out,), bound, dtype, device)
                if bias
                else None
            )
            continue
        W = seeding.normal(seeds, seeding.key_of(tag, "W", l), (fan_out, fan_in), dtype, device=device)
        weights.append(W * (scale / math.sqrt(fan_in)))
        biases.append(torch.zeros(len(weights[-1]), fan_out, dtype=dtype, device=W.device) if bias else None)
    return MLP(weights, biases, activation, init)


INITS = ["normal", "torch"]


def _uniform(seeds, key: int, shape: tuple[int, ...], bound: float, dtype, device) -> torch.Tensor:
    """U(-bound, bound) of shape (E, *shape), drawn in float64 from the members' seeds."""
    u = seeding.uniform(seeds, key, shape, torch.float64, device=device)
    return ((2.0 * u - 1.0) * bound).to(dtype)
