"""Observables an experimenter could record while a network learns, for telling learning rules apart.

Three families, each per layer and computed on the first ``u`` recorded units only (the unit budget):

- **alignment** (what a probe of ΔW sees): the Hebbian alignment of the learning signal, cos(G, H), and
  its response to a small injected perturbation: the alignment recomputed after adding Gaussian noise of
  size ``probe_sigma`` to the forward weights, minus the clean one (the rule is re-run from the state the
  step started from, so training itself is untouched);
- **activity**: mean, variance, kurtosis and median of the layer's post-activations h_b over the batch and
  the recorded units (Nayebi et al. 2020, "Identifying learning rules from neural network observables");
- **weights**: the same four statistics of |W| over the recorded block (postsynaptic × presynaptic units).

``ObservableRecorder`` is the ``observe`` hook of :func:`plasticlab.simulation.train_mlp.train_mlp`; it
stores one (E,) value per observable, layer and unit budget at every checkpoint.
"""

from __future__ import annotations

import torch

from plasticlab import seeding
from plasticlab.metrics.hebbian import cosine, hebbian_direction
from plasticlab.rules.base import Chain, Context

ALIGNMENT = ("align", "align_noise")
ACTIVITY = ("act_mean", "act_var", "act_kurt", "act_median")
WEIGHTS = ("w_mean", "w_var", "w_kurt", "w_median")
OBSERVABLES = ALIGNMENT + ACTIVITY + WEIGHTS
FAMILIES = {"alignment": ALIGNMENT, "activity": ACTIVITY, "weights": WEIGHTS}


def moments(x: torch.Tensor, prefix: str) -> dict[str, torch.Tensor]:
    """Mean, variance, kurtosis (m4 / m2², 3 for a Gaussian) and median of x (E, ...) per member -> (E,).

    Kurtosis is NaN where the variance is zero (e.g. weights collapsed by decay): it is undefined there."""
    flat = x.flatten(1)
    mean = flat.mean(1)
    c = flat - mean[:, None]
    m2 = c.pow(2).mean(1)
    kurt = c.pow(4).mean(1) / m2.pow(2)
    kurt = torch.where(m2 > 1e-30, kurt, torch.full_like(kurt, float("nan")))
    return {
        f"{prefix}_mean": mean,
        f"{prefix}_var": m2,
        f"{prefix}_kurt": kurt,
        f"{prefix}_median": flat.median(1).values,
    }


def block(t: torch.Tensor, n_out: int | None, n_in: int | None) -> torch.Tensor:
    """The recorded (first n_out × first n_in) block of a (E, out, in) matrix; None = all units."""
    return t[:, :n_out, :n_in]


def layer_observables(
    signal: torch.Tensor,
    pre: torch.Tensor,
    post: torch.Tensor,
    W: torch.Tensor,
    units: int | None,
    signal_noisy: torch.Tensor | None = None,
    pre_noisy: torch.Tensor | None = None,
    post_noisy: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """All observables of one layer from its learning signal (E, out, in), pre (E, B, in), post (E, B, out)
    and weights, on the first ``units`` units of each side (None = every unit). (E,) tensors."""
    H = block(hebbian_direction(pre, post), units, units)
    align = cosine(block(signal, units, units), H)
    out = {"align": align}
    if signal_noisy is not None and pre_noisy is not None and post_noisy is not None:
        Hn = block(hebbian_direction(pre_noisy, post_noisy), units, units)
        out["align_noise"] = cosine(block(signal_noisy, units, units), Hn) - align
    else:
        out["align_noise"] = torch.full_like(align, float("nan"))
    out.update(moments(post[:, :, :units], "act"))
    out.update(moments(block(W, units, units).abs(), "w"))
    return out


class ObservableRecorder:
    """``observe`` hook for ``train_mlp``: records every observable at every checkpoint, for each unit
    budget in ``units`` (None = all units).

    The perturbation probe adds N(0, probe_sigma²) to every forward weight on its own keys (independent of
    the training noise), so a member's probe depends on its seed and the step only."""

    def __init__(self, rule: Chain, units=(None,), probe_sigma: float = 0.05):
        self.rule = rule
        self.units = tuple(units)
        self.probe_sigma = float(probe_sigma)
        self.steps: list[int] = []
        self.values: list[dict[tuple[str, int, int | None], torch.Tensor]] = []

    def _probe(self, ctx: Context, state):
        weights = [
            W
            + self.probe_sigma
            * seeding.normal(ctx.seeds, seeding.key_of("observable-probe", l, ctx.step), W.shape[1:], W.dtype)
            for l, W in enumerate(ctx.trace.weights)
        ]
        trace = ctx.net.forward(ctx.x, weights)
        noisy = Context(net=ctx.net, trace=trace, x=ctx.x, y=ctx.y, loss=ctx.loss, seeds=ctx.seeds, step=ctx.step)
        return trace, self.rule.step(state, noisy).signal

    def __call__(self, step: int, ctx: Context, out, state, alive: torch.Tensor) -> None:
        """Record this checkpoint (the ``observe`` signature of ``train_mlp``)."""
        probe = self._probe(ctx, state) if self.probe_sigma > 0 else None
        rec = {}
        with torch.no_grad():
            for l, ((g, _), pre, post, W) in enumerate(
                zip(out.signal, ctx.trace.pre, ctx.trace.post, ctx.net.weights)
            ):
                for u in self.units:
                    noisy = {}
                    if probe is not None:
                        trace_n, signal_n = probe
                        noisy = dict(
                            signal_noisy=signal_n[l][0], pre_noisy=trace_n.pre[l], post_noisy=trace_n.post[l]
                        )
                    for name, v in layer_observables(g, pre, post, W, u, **noisy).items():
                        v = torch.where(alive & torch.isfinite(v), v, torch.full_like(v, float("nan")))
                        rec[(name, l, u)] = v.detach().to(torch.float64)
        self.steps.append(int(step))
        self.values.append(rec)

    def trajectories(self) -> dict[tuple[str, int, int | None], torch.Tensor]:
        """(observable, layer, units) -> (T, E) trajectory over the recorded checkpoints."""
        keys = self.values[0].keys() if self.values else []
        return {k: torch.stack([v[k] for v in self.values]) for k in keys}
