"""Rule identification: the engine's observer hook, observables, features, classifiers, identify()."""

import torch

from plasticlab.networks import init_mlp
from plasticlab.rules import make_rule
from plasticlab.simulation.train_mlp import train_mlp
from plasticlab.tasks import teacher_regression


def _small(seeds, **kw):
    data = teacher_regression(seeds, d_in=6, d_out=2, n_train=64, n_val=16)
    net = init_mlp(seeds, [6, 8, 2], "tanh")
    return train_mlp(net, make_rule("adam", gamma=1e-3), data, seeds, steps=30, lr=0.01, batch_size=8, **kw)


def test_observer_sees_every_checkpoint_and_leaves_training_unchanged():
    seeds = torch.arange(3)
    seen = []

    def observe(step, ctx, out, state, alive):
        # re-running the rule from the state it started from must reproduce its output (no hidden mutation)
        again = ctx_rule.step(state, ctx)
        assert torch.equal(again.signal[0][0], out.signal[0][0])
        seen.append((step, ctx.trace.post[0].shape, alive.clone()))

    ctx_rule = make_rule("adam", gamma=1e-3)
    data = teacher_regression(seeds, d_in=6, d_out=2, n_train=64, n_val=16)
    net = init_mlp(seeds, [6, 8, 2], "tanh")
    watched = train_mlp(
        net, ctx_rule, data, seeds, steps=30, lr=0.01, batch_size=8, record_every=10, observe=observe
    )
    plain = _small(seeds, record_every=10)
    assert [s for s, _, _ in seen] == watched.steps_recorded == [0, 10, 20, 29]
    assert seen[0][1] == (3, 8, 8) and all(a.all() for _, _, a in seen)
    assert torch.equal(watched.net.weights[1], plain.net.weights[1])
