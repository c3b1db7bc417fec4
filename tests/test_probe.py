"""HebbianProbe against hand computations from the same tensors (float64), and its robustness rules."""

import math

import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from plasticlab.errors import PlasticlabError
from plasticlab.probe import HebbianProbe


def hand_cos(a, b):
    a, b = a.reshape(-1), b.reshape(-1)
    return float(a @ b / (a.norm() * b.norm()))


class MLP(nn.Module):
    """Keeps its own h_a / h_b so the test can compute alignments without the probe."""

    def __init__(self, sizes=(6, 9, 7, 3)):
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        self.seen = []
        for i, fc in enumerate(self.fcs):
            pre = x
            x = fc(x)
            self.seen.append(
                (pre.detach().reshape(-1, pre.shape[-1]), (x - fc.bias).detach().reshape(-1, x.shape[-1]))
            )
            if i < len(self.fcs) - 1:
                x = torch.tanh(x)
        return x


def hand_H(pre, post):
    return torch.einsum("bo,bi->oi", post, pre) / pre.shape[0]


def train_step(model, opt, x, y):
    opt.zero_grad()
    F.mse_loss(model(x), y).backward()
    grads = [-fc.weight.grad.clone() for fc in model.fcs]
    before = [fc.weight.detach().clone() for fc in model.fcs]
    seen = model.seen
    opt.step()
    dws = [fc.weight.detach() - b for fc, b in zip(model.fcs, before)]
    return seen, grads, dws


@pytest.fixture
def mlp():
    torch.manual_seed(0)
    return MLP().double()


def test_mlp_signal_and_update_match_hand_computation(mlp):
    opt = torch.optim.Adam(mlp.parameters(), lr=1e-2, weight_decay=1e-2)
    probe = HebbianProbe(mlp).attach_optimizer(opt)
    expected = []
    for step in range(3):
        x, y = torch.randn(16, 6, dtype=torch.float64), torch.randn(16, 3, dtype=torch.float64)
        seen, grads, dws = train_step(mlp, opt, x, y)
        for i, ((pre, post), g, dw) in enumerate(zip(seen, grads, dws)):
            H = hand_H(pre, post)
            expected.append((step, f"fcs.{i}", hand_cos(g, H), hand_cos(dw, H)))
    df = probe.to_frame()
    assert len(df) == len(expected) == 9
    for (step, layer, a_sig, a_upd), row in zip(expected, df.itertuples()):
        assert (row.step, row.layer, row.batch_size) == (step, layer, 16)
        assert row.alignment_signal == pytest.approx(a_sig, abs=1e-10)
        assert row.alignment_update == pytest.approx(a_upd, abs=1e-10)
    # Adam with decay moves W along neither −grad nor H exactly: the two alignments must differ
    assert (df.alignment_signal - df.alignment_update).abs().max() > 1e-3


def test_sgd_update_alignment_equals_signal_and_decay_stays_out_of_signal(mlp):
    x, y = torch.randn(32, 6, dtype=torch.float64), torch.randn(32, 3, dtype=torch.float64)
    frames = []
    for wd in (0.0, 0.5):
        torch.manual_seed(1)
        model = MLP().double()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=wd)
        probe = HebbianProbe(model).attach_optimizer(opt)
        train_step(model, opt, x, y)
        frames.append(probe.to_frame())
    plain, decayed = frames
    assert plain.alignment_update.tolist() == pytest.approx(plain.alignment_signal.tolist(), abs=1e-12)
    # same first gradient with and without decay: the signal excludes it, the actual update does not
    assert decayed.alignment_signal.tolist() == pytest.approx(plain.alignment_signal.tolist(), abs=1e-12)
    assert (decayed.alignment_update - decayed.alignment_signal).abs().min() > 1e-3


def conv_patches_by_hand(x, k, stride, pad):
    xp = F.pad(x, (pad, pad, pad, pad))
    B, _C, Hh, Ww = xp.shape
    rows = []
    for b in range(B):
        for i in range(0, Hh - k + 1, stride):
            for j in range(0, Ww - k + 1, stride):
                rows.append(xp[b, :, i : i + k, j : j + k].reshape(-1))
    return torch.stack(rows)


def test_conv2d_matches_hand_unfolded_patches():
    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(3 * 3 * 3, 2)
    ).double()
    conv = net[0]
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    probe = HebbianProbe(net).attach_optimizer(opt)
    x = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    opt.zero_grad()
    out = conv(x)
    pre = conv_patches_by_hand(x, 3, 2, 1)  # (B·L, in·k·k), position-major per sample like the output
    post = (out - conv.bias[None, :, None, None]).detach().permute(0, 2, 3, 1).reshape(-1, 3)
    F.mse_loss(net(x), torch.ones(4, 2, dtype=torch.float64)).backward()
    g = -conv.weight.grad.reshape(3, -1).clone()
    opt.step()
    row = probe.to_frame().set_index("layer").loc["0"]
    assert row.batch_size == 4 * 9 and row.kind == "conv2d"
    assert row.alignment_signal == pytest.approx(hand_cos(g, hand_H(pre, post)), abs=1e-10)
    assert row.alignment_update == pytest.approx(row.alignment_signal, abs=1e-10)


def test_token_dims_flattened_batch_sizes_change_and_accumulation_pools(mlp):
    opt = torch.optim.SGD(mlp.parameters(), lr=0.01)
    probe = HebbianProbe(mlp, layers=["fcs.1"]).attach_optimizer(opt)
    opt.zero_grad()
    pres, posts = [], []
    for B, T in [(3, 5), (7, 2)]:  # two micro-batches of different shapes before one step
        mlp(torch.randn(B, T, 6, dtype=torch.float64)).pow(2).mean().backward()
        pres.append(mlp.seen[1][0])
        posts.append(mlp.seen[1][1])
    g = -mlp.fcs[1].weight.grad.clone()
    opt.step()
    x = torch.randn(4, 6, dtype=torch.float64)
    seen, grads, _ = train_step(mlp, opt, x, torch.zeros(4, 3, dtype=torch.float64))
    df = probe.to_frame()
    assert df.batch_size.tolist() == [15 + 14, 4] and df.calls.tolist() == [2, 1]
    assert df.alignment_signal[0] == pytest.approx(
        hand_cos(g, hand_H(torch.cat(pres), torch.cat(posts))), abs=1e-10
    )
    assert df.alignment_signal[1] == pytest.approx(hand_cos(grads[1], hand_H(*seen[1])), abs=1e-10)


class TwoBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 2), nn.Linear(4, 2)

    def forward(self, x, use_b=True, b_in_loss=True):
        y = self.a(x)
        if use_b:
            yb = self.b(x)
            if b_in_loss:
                y = y + yb
        return y


def test_skipped_layers_get_no_row_and_no_stale_activations():
    torch.manual_seed(3)
    net = TwoBranch().double()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    probe = HebbianProbe(net).attach_optimizer(opt)
    x = torch.randn(8, 4, dtype=torch.float64)
    for kwargs in [dict(), dict(use_b=False), dict(b_in_loss=False)]:
        opt.zero_grad()  # set_to_none: b has no grad when skipped
        net(x, **kwargs).pow(2).mean().backward()
        opt.step()
    df = probe.to_frame()
    assert df[df.layer == "a"].step.tolist() == [0, 1, 2]
    assert df[df.layer == "b"].step.tolist() == [0]  # not called at step 1, no gradient reached it at step 2
    # gradient accumulation where b's second forward gets no gradient: only its first forward's samples
    # are paired with its .grad (which that forward alone produced)
    opt.zero_grad(set_to_none=False)
    net(x).pow(2).mean().backward()
    net(x, b_in_loss=False).pow(2).mean().backward()
    opt.step()
    last = probe.to_frame().query("step == 3").set_index("layer").batch_size
    assert last.to_dict() == {"a": 16, "b": 8}


def test_eval_mode_and_no_grad_record_nothing(mlp):
    opt = torch.optim.SGD(mlp.parameters(), lr=0.1)
    probe = HebbianProbe(mlp).attach_optimizer(opt)
    x, y = torch.randn(8, 6, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64)
    train_step(mlp, opt, x, y)
    mlp.eval()
    with torch.no_grad():
        mlp(x)
    train_step(mlp, opt, x, y)  # eval-mode step with grad: nothing recorded, no crash
    mlp.train()
    with torch.no_grad():
        mlp(torch.randn(50, 6, dtype=torch.float64))  # must not leak into the next step's batch
    train_step(mlp, opt, x, y)
    df = probe.to_frame()
    assert sorted(set(df.step)) == [0, 2]
    assert (df.batch_size == 8).all()


def test_every_k_measures_only_those_steps_and_stores_nothing_between(mlp):
    opt = torch.optim.SGD(mlp.parameters(), lr=0.1)
    probe = HebbianProbe(mlp, every=3).attach_optimizer(opt)
    x, y = torch.randn(8, 6, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64)
    for step in range(7):
        opt.zero_grad()
        F.mse_loss(mlp(x), y).backward()
        stored = sum(len(st.pending) for st in probe.layers.values())
        assert stored == (3 if step % 3 == 0 else 0)
        opt.step()
    assert sorted(set(probe.to_frame().step)) == [0, 3, 6]


def test_manual_update_context_and_signal_only_step(mlp):
    probe = HebbianProbe(mlp)
    x, y = torch.randn(8, 6, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64)
    F.mse_loss(mlp(x), y).backward()
    with probe.update(), torch.no_grad():
        for p in mlp.parameters():
            p -= 0.1 * p.grad
    mlp.zero_grad()
    F.mse_loss(mlp(x), y).backward()
    probe.step()
    df = probe.to_frame()
    first, second = df[df.step == 0], df[df.step == 1]
    assert first.alignment_update.tolist() == pytest.approx(first.alignment_signal.tolist(), abs=1e-12)
    assert second.alignment_update.isna().all() and second.alignment_signal.notna().all()


def test_remove_detaches_everything_and_model_is_unchanged(mlp):
    x = torch.randn(5, 6, dtype=torch.float64)
    before = mlp(x).detach().clone()
    opt = torch.optim.SGD(mlp.parameters(), lr=0.1)
    probe = HebbianProbe(mlp).attach_optimizer(opt)
    assert sum(len(m._forward_hooks) for m in mlp.modules()) == 3
    assert torch.equal(mlp(x), before)
    probe.remove()
    assert sum(len(m._forward_hooks) + len(m._backward_hooks) for m in mlp.modules()) == 0
    assert len(opt._optimizer_step_pre_hooks) == len(opt._optimizer_step_post_hooks) == 0
    train_step(mlp, opt, x, torch.zeros(5, 3, dtype=torch.float64))
    assert probe.to_frame().empty


def test_writer_gets_one_scalar_per_layer_and_kind(mlp):
    class FakeWriter:
        def __init__(self):
            self.calls = []

        def add_scalar(self, tag, value, step):
            self.calls.append((tag, value, step))

    w = FakeWriter()
    opt = torch.optim.SGD(mlp.parameters(), lr=0.1)
    probe = HebbianProbe(mlp, writer=w, every=2).attach_optimizer(opt)
    for _ in range(3):
        train_step(mlp, opt, torch.randn(8, 6, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64))
    df = probe.to_frame()
    assert len(w.calls) == 2 * len(df) == 2 * 6
    got = {(t, s): v for t, v, s in w.calls}
    for r in df.itertuples():
        assert got[(f"hebbian/signal/{r.layer}", r.step)] == r.alignment_signal
        assert got[(f"hebbian/update/{r.layer}", r.step)] == r.alignment_update


def test_collapsed_weights_give_nan_and_bad_input_names_choices(mlp):
    with torch.no_grad():
        mlp.fcs[1].weight.zero_()
        mlp.fcs[1].bias.zero_()
    probe = HebbianProbe(mlp, layers="fcs.1")
    F.mse_loss(mlp(torch.randn(4, 6, dtype=torch.float64)), torch.ones(4, 3, dtype=torch.float64)).backward()
    probe.step()
    assert math.isnan(probe.to_frame().alignment_signal[0])  # h_b = 0 -> H = 0 -> undefined
    with pytest.raises(PlasticlabError, match=r"'fcs\.7'.*fcs\.0, fcs\.1, fcs\.2"):
        HebbianProbe(mlp, layers=["fcs.7"])
    with pytest.raises(PlasticlabError, match="every"):
        HebbianProbe(mlp, every=0)
    with pytest.raises(PlasticlabError, match="groups"):
        HebbianProbe(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)), layers=["0"])


def test_hebb_transformer_chunk_and_report(tmp_path):
    from plasticlab.experiments import get
    from plasticlab.study import RunContext
    from plasticlab.study.report import write_report

    exp = get("hebb-transformer")
    p = exp.params(
        quick=True, seeds=[0], gammas=[0.0, 5e-3], steps=12, batch_size=8, every=2, n_train=64, n_val=16
    )
    specs = exp.chunks(p)
    assert len(specs) == 2 * 2 * 1
    df = exp.run_chunk(specs[1], RunContext())
    assert {"rule", "gamma", "seed", "layer", "alignment"} <= set(df.columns)
    assert len(df) == 14 and df.layer.str.startswith("blocks.").sum() == 12  # 4 attn + 2 ff per block
    assert df.alignment.between(-1, 1).all() and (df.measured == 3).all()  # steps 6, 8, 10
    assert (df.alignment == df.alignment_grad).sum() < 14  # Adam: its direction, not −grad
    again = exp.run_chunk(specs[1], RunContext())
    assert again.alignment.tolist() == df.alignment.tolist()  # a chunk depends on its spec only
    full = pd.concat(
        [df, exp.run_chunk(specs[0], RunContext())] + [exp.run_chunk(s, RunContext()) for s in specs[2:]]
    )
    write_report(exp, full, p, tmp_path)
    assert (tmp_path / "alignment_vs_gamma.png").exists() and "## Verdicts" in (tmp_path / "report.md").read_text()
    claims = {c.claim: c for c in exp.claims(full, p)}
    cell = claims["transformer / sgd, γ = 0.005: 2nd-layer Hebbian alignment"]
    assert cell.paper_value == 0.88 and cell.n == 1 and -1 <= cell.ours <= 1
    rise = claims["transformer / sgd: alignment rises with weight decay (mean over layers)"]
    per = full[(full.rule == "sgd") & full.layer.isin(["blocks.0.attn.q", "blocks.0.attn.k", "blocks.0.attn.v"])]
    assert cell.ours == pytest.approx(per[per.gamma == 5e-3].alignment.mean())
    assert rise.verdict in ("reproduced", "partly", "not reproduced")
    with pytest.raises(PlasticlabError, match="heads"):
        exp.params(quick=True, heads=5)
