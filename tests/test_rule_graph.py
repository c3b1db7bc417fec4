"""RuleOptimizer on any module graph: conv nets, residual blocks, attention. sgd is torch's SGD to the bit,
feedback rules act through each layer's backward (checked against hand-written FA/DFA and against the
chain-based rules on an MLP), local rules read conv patches, and every parameter a rule does not train is
named."""

import copy
import math

import pytest
import torch
from torch import nn

from plasticlab import seeding
from plasticlab.errors import PlasticlabError, PlasticlabWarning
from plasticlab.networks.mlp import MLP
from plasticlab.rules import Context, adam, chain, dfa, fa, hebbian, sgd, sign_symmetry, weight_decay
from plasticlab.rules.graph import Recorder, attention_forward
from plasticlab.rules.layers import learnable_matrices
from plasticlab.rules.optim import RuleOptimizer

torch.set_num_threads(1)


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 36, 2)
    ).double()


class Residual(nn.Module):
    def __init__(self, d=6, norm=True):
        super().__init__()
        self.inp, self.fc1, self.fc2, self.out = nn.Linear(4, d), nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, 3)
        self.norm = nn.LayerNorm(d) if norm else nn.Identity()

    def forward(self, x):
        h = torch.relu(self.inp(x))
        h = h + self.fc2(torch.relu(self.fc1(self.norm(h))))
        return self.out(h)


def residual(norm=True):
    torch.manual_seed(0)
    return Residual(norm=norm).double()


def encoder():
    torch.manual_seed(0)
    return nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, batch_first=True).double()


def data(model):
    g = torch.Generator().manual_seed(1)
    if isinstance(model, nn.Sequential):
        return torch.randn(6, 1, 8, 8, generator=g, dtype=torch.float64), torch.randn(6, 2, generator=g).double()
    if isinstance(model, Residual):
        return torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 3, generator=g).double()
    return torch.randn(3, 5, 8, generator=g, dtype=torch.float64), torch.randn(3, 5, 8, generator=g).double()


def matrix_params(model):
    return [p for m in learnable_matrices(model)[0] for p in (m.weight, m.bias) if p is not None]


def train(model, opt, x, y, steps=3):
    for t in range(steps):
        opt.zero_grad()
        nn.functional.mse_loss(
            model(x[t % 2 :: 2] if len(x) > 3 else x), y[t % 2 :: 2] if len(y) > 3 else y
        ).backward()
        opt.step()


@pytest.mark.parametrize("make", [cnn, residual, encoder])
def test_sgd_is_torch_sgd_to_the_bit(make):
    model = make()
    ref = copy.deepcopy(model)
    x, y = data(model)
    params = list(dict.fromkeys(matrix_params(ref)))  # q/k/v share one in_proj_weight
    train(ref, torch.optim.SGD(params, lr=0.1), x, y)
    train(model, RuleOptimizer(model, sgd(), lr=0.1, params=list(dict.fromkeys(matrix_params(model)))), x, y)
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        assert torch.equal(p, q), name
    assert not torch.equal(next(model.parameters()), next(make().parameters()))


def test_sgd_adam_decay_is_adamw_on_a_cnn():
    model = cnn()
    ref = copy.deepcopy(model)
    x, y = data(model)
    train(ref, torch.optim.AdamW(ref.parameters(), lr=0.01, weight_decay=0.1), x, y, steps=4)
    rule = chain(sgd(), adam(), weight_decay(0.1, biases=True))
    train(model, RuleOptimizer(model, rule, lr=0.01), x, y, steps=4)
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12)


def two_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x, y = torch.randn(8, 4, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64)
    return model, x, y


@pytest.mark.parametrize("rule", ["dfa", "fa", "sign_symmetry"])
def test_feedback_rules_match_a_hand_written_two_layer_net(rule):
    model, x, y = two_layer()
    W1, b1, W2, b2 = (p.detach().clone() for p in model.parameters())
    opt = RuleOptimizer(model, rule, lr=0.1)
    nn.functional.mse_loss(model(x), y).backward()
    opt.step()
    h1 = torch.tanh(x @ W1.T + b1)
    e = 2 * (h1 @ W2.T + b2 - y) / y.numel()  # dloss/dout of the mean squared error
    if rule == "dfa":
        back = e @ (seeding.normal([0], seeding.key_of("dfa-feedback", 0), (5, 3))[0] / math.sqrt(3)).T
    elif rule == "fa":
        back = e @ (seeding.normal([0], seeding.key_of("fa-feedback", 1), (3, 5))[0] / math.sqrt(5))
    else:
        back = e @ (torch.sign(W2) * W2.abs().mean())
    d1 = back * (1 - h1**2)
    (g1, gb1), (g2, _) = opt.last_signal
    torch.testing.assert_close(g1[0], -d1.T @ x, rtol=0, atol=1e-13)
    torch.testing.assert_close(gb1[0], -d1.sum(0), rtol=0, atol=1e-13)
    torch.testing.assert_close(g2[0], -e.T @ h1, rtol=0, atol=1e-13)
    torch.testing.assert_close(model[0].weight, W1 - 0.1 * d1.T @ x, rtol=0, atol=1e-13)


@pytest.mark.parametrize("rule", [dfa(), fa(), sign_symmetry(), dfa(feedback="uniform", scale=2.0)])
def test_feedback_through_backward_equals_the_chain_rule_on_an_mlp(rule):
    """On an MLP the per-layer backward gives the chain-based rule's signal with its own feedback draws."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x, y = torch.randn(10, 4, dtype=torch.float64), torch.randn(10, 3, dtype=torch.float64)
    lin = [model[0], model[2], model[4]]
    net = MLP([m.weight.detach()[None].clone() for m in lin], [m.bias.detach()[None].clone() for m in lin], "tanh")
    seeds = torch.tensor([3])
    ctx = Context(net=net, trace=net.forward(x[None]), x=x[None], y=y[None], loss="mse", seeds=seeds, step=0)
    want, _ = rule.update([], rule.init(net, seeds), ctx)
    opt = RuleOptimizer(model, rule, lr=0.1, seed=3)
    (0.5 * ((model(x) - y) ** 2).sum(1).mean()).backward()  # the chain rule's per-sample loss, batch mean
    opt.step()
    for (gw, gb), (ww, wb) in zip(opt.last_signal, want):
        torch.testing.assert_close(gw, ww, rtol=0, atol=1e-13)
        torch.testing.assert_close(gb, wb, rtol=0, atol=1e-13)


def test_dfa_sends_the_output_error_to_every_channel_and_position_of_a_conv():
    model = cnn()
    x, y = data(model)
    opt = RuleOptimizer(model, "dfa", lr=0.1)
    out = model(x)
    out.retain_grad()
    nn.functional.mse_loss(out, y).backward()
    e = out.grad
    with torch.enable_grad():  # by hand: conv1's error is (e B0ᵀ) at conv2's input, through the ReLU
        h1 = torch.relu(model[0](x))
        B0 = seeding.normal([0], seeding.key_of("dfa-feedback", 0), (3 * 64, 2), torch.float64)[0] / math.sqrt(2)
        (want,) = torch.autograd.grad((h1 * (e @ B0.T).reshape(h1.shape)).sum(), model[0].weight)
    torch.testing.assert_close(model[0].weight.grad, want, rtol=0, atol=1e-13)
    opt.step()


@pytest.mark.parametrize(
    "conv", [nn.Conv1d(2, 3, 3, padding=1, padding_mode="reflect"), nn.Conv2d(2, 3, 2, stride=2)]
)
def test_local_rules_read_a_conv_as_a_matrix_on_unfolded_patches(conv):
    torch.manual_seed(0)
    model = nn.Sequential(conv.double(), nn.Flatten(), nn.LazyLinear(2).double())
    x = (
        torch.randn(4, 2, 6, dtype=torch.float64)
        if isinstance(conv, nn.Conv1d)
        else torch.randn(4, 2, 6, 6).double()
    )
    model(x)  # materialise the lazy layer
    opt = RuleOptimizer(model, hebbian(), lr=0.01)
    with torch.no_grad():
        out = conv(x) - (conv.bias[:, None] if isinstance(conv, nn.Conv1d) else conv.bias[:, None, None])
        model(x)
    opt.step()
    if isinstance(conv, nn.Conv1d):
        xp = nn.functional.pad(x, (1, 1), mode="reflect")
        patches = xp.unfold(2, 3, 1).permute(0, 2, 1, 3).reshape(-1, 2 * 3)
    else:
        patches = nn.functional.unfold(x, 2, stride=2).transpose(1, 2).reshape(-1, 2 * 4)
    post = out.movedim(1, -1).reshape(-1, 3)  # h_b: the output without the bias, one row per position
    torch.testing.assert_close(opt.last_signal[0][0][0], post.T @ patches / len(patches), rtol=0, atol=1e-12)


@pytest.mark.parametrize("batch_first", [True, False])
def test_attention_forward_is_torchs(batch_first):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=batch_first, kdim=6, vdim=5).double()
    self_attn = nn.MultiheadAttention(8, 4, batch_first=batch_first).double()
    L, S, N = 4, 3, 2
    shape = (lambda T, d: (N, T, d)) if batch_first else (lambda T, d: (T, N, d))
    q, k, v = (
        torch.randn(*shape(L, 8)).double(),
        torch.randn(*shape(S, 6)).double(),
        torch.randn(*shape(S, 5)).double(),
    )
    pad = torch.tensor([[False, False, True], [False, False, False]])
    causal = torch.ones(L, L, dtype=torch.bool).triu(1)
    cases = [
        (mha, (q, k, v), dict(key_padding_mask=pad)),
        (mha, (q, k, v), dict(attn_mask=torch.randn(L, S).double(), average_attn_weights=False)),
        (self_attn, (q, q, q), dict(attn_mask=causal, is_causal=True, need_weights=False)),
        (self_attn, (q[0], q[0], q[0]), dict()),  # unbatched
    ]
    for m, args, kw in cases:
        mats = [x for x in learnable_matrices(m)[0]]
        rec = Recorder(m, mats, None, torch.tensor([0]))
        got = m(*args, **kw)
        rec.remove()
        want = m(*args, **kw)
        assert "forward" not in vars(m)  # the module's own forward is back
        torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-12)
        assert (got[1] is None) == (want[1] is None)
        if want[1] is not None:
            torch.testing.assert_close(got[1], want[1], rtol=0, atol=1e-12)
        assert [len(c) for c in rec.calls] == [0] * len(mats)  # removed: the recorded calls are cleared
    assert attention_forward.__doc__  # the forward the recorder installs


@pytest.mark.parametrize("rule", ["dfa", "fa", "sign_symmetry", "hebbian", "oja"])
def test_rules_train_every_projection_of_a_transformer_layer(rule):
    layer = encoder()
    x, y = data(layer)
    with pytest.warns(PlasticlabWarning, match=r"norm1\.weight"):
        opt = RuleOptimizer(layer, rule, lr=0.05)
    assert [m.name for m in opt.layers] == ["self_attn.q", "self_attn.k", "self_attn.v", "self_attn.out_proj"] + [
        "linear1",
        "linear2",
    ]
    before = {m.name: m.w().detach().clone() for m in opt.layers}
    opt.zero_grad()
    nn.functional.mse_loss(layer(x), y).backward()
    opt.step()
    for m in opt.layers:
        assert not torch.equal(m.w(), before[m.name]), m.name
    opt.remove_hooks()
    assert "forward" not in vars(layer.self_attn)


def test_dfa_and_fa_train_a_residual_block_and_a_cnn_with_batchnorm():
    for model in (
        residual(),
        nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(108, 2)),
    ):
        model = model.double()
        x, y = data(residual()) if isinstance(model, Residual) else data(cnn())
        for rule in ("dfa", "fa"):
            m = copy.deepcopy(model)
            with pytest.warns(PlasticlabWarning, match="norm|1.weight"):
                opt = RuleOptimizer(m, rule, lr=0.05)
            losses = []
            for _ in range(30):
                opt.zero_grad()
                loss = nn.functional.mse_loss(m(x), y)
                loss.backward()
                opt.step()
                losses.append(loss.item())
            assert losses[-1] < losses[0], (rule, losses[0], losses[-1])


def test_untrained_parameters_are_named_and_refused_when_asked_for():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))
    with pytest.warns(PlasticlabWarning, match=r"does not train 1\.weight \(BatchNorm2d.*1\.bias"):
        opt = RuleOptimizer(model, "sgd", lr=0.1)
    w0 = model[0].weight.detach().clone()
    nn.functional.mse_loss(model(torch.randn(5, 1, 8, 8)), torch.randn(5, 3)).backward()
    opt.step()
    assert not torch.equal(model[0].weight, w0)  # the conv is trained now
    with pytest.raises(PlasticlabError, match=r"holds '1\.weight', which no rule trains \(BatchNorm2d"):
        RuleOptimizer(model, "sgd", lr=0.1, params=[model[1].weight])
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(PlasticlabError, match=r"can't train 0\.weight \(Conv2d with groups=2"):
        RuleOptimizer(grouped, "dfa", lr=0.1)
    RuleOptimizer(grouped, "dfa", lr=0.1, params=list(grouped[2].parameters()))  # left out on purpose: fine


def test_a_rule_that_cannot_run_on_a_layer_names_it():
    model = cnn()
    x, y = data(model)
    opt = RuleOptimizer(model, "three_factor", lr=0.1)
    model(x)
    with pytest.raises(PlasticlabError, match=r"layer\(s\) '0' \(384 rows\), '2' \(216 rows\)"):
        opt.step(y=y)
    with pytest.raises(PlasticlabError, match="random_nn can't be set up"):
        RuleOptimizer(nn.Sequential(nn.Linear(2, 2), nn.GELU(), nn.Linear(2, 1)), "random_nn", lr=0.1)


def test_dfa_needs_one_output_tensor_and_a_layer_that_ran():
    mha = nn.MultiheadAttention(4, 1)
    opt = RuleOptimizer(mha, "dfa", lr=0.1)
    with pytest.raises(PlasticlabError, match="must return one tensor"):
        mha(torch.randn(3, 2, 4), torch.randn(3, 2, 4), torch.randn(3, 2, 4))
    opt.remove_hooks()
    model = residual()
    opt = RuleOptimizer(model, "hebbian", lr=0.1, params=matrix_params(model))
    with torch.no_grad():
        model.fc1(torch.randn(3, 6, dtype=torch.float64))  # part of the model only
    with pytest.raises(PlasticlabError, match=r"'inp', 'fc2', 'out' took no part in the model's last forward"):
        opt.step()
    with pytest.raises(PlasticlabError, match=r"step\(\) before a forward pass"):
        RuleOptimizer(residual(), "oja", lr=0.1).step()


def test_same_seed_same_feedback_other_seed_other():
    def run(seed):
        model, x, y = two_layer()
        opt = RuleOptimizer(model, "dfa", lr=0.1, seed=seed)
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        return model[0].weight.detach().clone()

    assert torch.equal(run(0), run(0)) and not torch.equal(run(0), run(1))


def test_each_forward_gets_its_own_output_error():
    """Two forwards, one backward of the summed loss: each layer call hears its own forward's output error."""
    model, x, y = two_layer()
    opt = RuleOptimizer(model, "dfa", lr=0.1)
    loss = lambda i: nn.functional.mse_loss(model(x[i::2]), y[i::2])
    (loss(0) + loss(1)).backward()
    together = model[0].weight.grad.clone()
    opt.zero_grad()
    loss(0).backward()
    loss(1).backward()
    torch.testing.assert_close(together, model[0].weight.grad, rtol=0, atol=1e-14)


def test_probe_and_a_feedback_rule_on_one_transformer_layer():
    from plasticlab.probe import HebbianProbe

    layer = encoder()
    x, y = data(layer)
    with pytest.warns(PlasticlabWarning):
        opt = RuleOptimizer(layer, "dfa", lr=0.05)
    probe = HebbianProbe(layer).attach_optimizer(opt)
    for _ in range(2):
        opt.zero_grad()
        nn.functional.mse_loss(layer(x), y).backward()
        opt.step()
    assert set(probe.to_frame().layer) == {m.name for m in opt.layers}
    with pytest.raises(PlasticlabError, match="already recorded by another RuleOptimizer"):
        RuleOptimizer(layer, "fa", lr=0.05, params=matrix_params(layer))
    opt.remove_hooks()
    RuleOptimizer(layer, "fa", lr=0.05, params=matrix_params(layer)).remove_hooks()


def test_rules_reading_autograd_never_unfold_conv_patches(monkeypatch):
    import plasticlab.rules.layers as layers

    calls = []
    real = layers.conv_patches
    monkeypatch.setattr(layers, "conv_patches", lambda m, x: calls.append(m) or real(m, x))
    model = cnn()
    x, y = data(model)
    for rule, unfolds in (("curl", False), ("exp_grad", False), ("hebbian", True)):
        opt = RuleOptimizer(model, rule, lr=0.01)
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        opt.remove_hooks()
        assert bool(calls) == unfolds, rule


def test_a_weight_two_modules_share_is_trained_once():
    torch.manual_seed(0)
    a, b = nn.Linear(4, 4).double(), nn.Linear(4, 4).double()
    b.weight = a.weight
    model = nn.Sequential(a, nn.Tanh(), b)
    ref = copy.deepcopy(model)
    x, y = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    train(ref, torch.optim.SGD(ref.parameters(), lr=0.1), x, y)
    with pytest.warns(PlasticlabWarning, match="'2' shares its weight with '0'; the weight takes '0'"):
        opt = RuleOptimizer(model, "sgd", lr=0.1)
    train(model, opt, x, y)
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.equal(p, q)
