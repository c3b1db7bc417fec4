"""hebb-transformer builds its optimizers from the rule registry: names as in hebb-table, decay placed by piece."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import torch
import torch.nn as nn

from plasticlab import seeding
from plasticlab.experiments import all_experiments
from plasticlab.experiments.hebbian.transformer import make_data, rule_optimizer, seeded_init
from plasticlab.networks.transformer import TinyTransformer
from plasticlab.study import RunContext
from plasticlab.study.report import write_report

torch.set_num_threads(1)
EXP = all_experiments()["hebb-transformer"]


def _spec(**over):
    p = EXP.params(**{**EXP.tiny, **over})
    return dataclasses.replace(EXP.chunks(p)[0], seed=0)


def _model(spec):
    m = TinyTransformer(spec.tokens, spec.features, spec.d_model, spec.heads, spec.layers, 32, 32)
    seeded_init(m, 0)
    return m


@pytest.mark.parametrize(
    "rule, tail, coupled, lr_key",
    [("sgd", 5e-3, False, "lr_sgd"), ("adam", 5e-3, False, "lr_adam"), ("adam_l2", 0.0, True, "lr_adam")],
)
def test_decay_is_placed_by_the_rules_pieces(rule, tail, coupled, lr_key):
    spec = _spec()
    setup = rule_optimizer(_model(spec), rule, 5e-3, spec)
    assert setup.tail == tail and setup.coupled is coupled
    assert setup.opt.param_groups[0]["lr"] == getattr(spec, lr_key)
    assert all(p.ndim == 2 for p in setup.decayed)  # weight matrices only: biases are not decayed


def test_registry_sgd_is_torch_sgd_bit_for_bit():
    """Same parameters, same batches: the registry's sgd + decoupled decay equals torch.optim.SGD + W(1 − ηγ)."""
    spec, gamma, steps = _spec(), 5e-3, 5
    xt, yt, *_ = make_data(0, spec)
    idx = seeding.randint([0], seeding.key_of("test", 0), (steps, 8), len(xt))[0]
    finals = []
    for kind in ("torch", "registry"):
        m = _model(spec)
        setup = rule_optimizer(m, "sgd", gamma, spec)  # the non-Linear parameters go to setup.rest
        lr = spec.lr_sgd
        opt = setup.opt if kind == "registry" else torch.optim.SGD(list(m.parameters()), lr)
        weights = [mod.weight for mod in m.modules() if isinstance(mod, nn.Linear)]
        for i in range(steps):
            m.zero_grad(set_to_none=True)
            (0.5 * (m(xt[idx[i]]) - yt[idx[i]]).pow(2).sum(1).mean()).backward()
            opt.step()
            if kind == "registry" and setup.rest is not None:
                setup.rest.step()
            with torch.no_grad():
                torch._foreach_mul_(weights, 1.0 - lr * gamma)
        finals.append([p.detach().clone() for p in m.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*finals))
    init = list(_model(spec).parameters())
    # the parameters outside nn.Linear (LayerNorm, position embedding) train too, as in the paper's model
    # (the attention key bias is the one parameter that cannot move: softmax ignores it, its gradient is 0)
    names = [n for n, _ in _model(spec).named_parameters()]
    stuck = [n for n, a, b in zip(names, finals[1], init) if torch.equal(a, b)]
    assert all(n.endswith("attn.k.bias") for n in stuck), stuck
    assert "pos" in names and "ln_f.weight" in names and "ln_f.weight" not in stuck and "pos" not in stuck


def test_rules_take_registry_names_with_hyperparameters():
    p = EXP.params(**EXP.tiny, rules=["sgd:momentum=0.9", "adam"])
    df = pd.concat([EXP.run_chunk(s, RunContext()) for s in EXP.chunks(p)], ignore_index=True)
    assert set(df.rule) == {"sgd:momentum=0.9", "adam"}
    assert df.alignment.map(math.isfinite).all()
    claims = EXP.claims(df, p)
    # a rule with hyperparameters sits beside its base name's paper cell (sgd, γ = 0: 0.00)
    assert [c.paper_value for c in claims if "sgd:momentum=0.9, γ = 0:" in c.claim] == [0.0]


def test_rules_that_need_a_layer_chain_are_refused_at_the_door():
    from plasticlab.errors import PlasticlabError
    from plasticlab.study import validate_params

    with pytest.raises(PlasticlabError, match=r"'rules' 'random_nn'; valid choices: .*hebbian"):
        validate_params(EXP, EXP.params(**EXP.tiny, rules=["sgd", "random_nn"]))
    # feedback rules run through each layer's backward (rules.graph), so they are valid here
    validate_params(EXP, EXP.params(**EXP.tiny, rules=["hebbian", "adam_l2", "dfa", "fa"]))


def test_a_rule_the_paper_has_no_row_for_still_gets_a_report(tmp_path):
    """The paper-vs-ours table joins on an empty paper side without a dtype clash."""
    p = EXP.params(**EXP.tiny, rules=["oja"])
    df = pd.concat([EXP.run_chunk(s, RunContext()) for s in EXP.chunks(p)], ignore_index=True)
    write_report(EXP, df, p, tmp_path)
    assert "oja" in (tmp_path / "report.md").read_text()


def test_gamma_factor_reads_each_run_at_the_paper_gamma_it_stands_for():
    """Under the mean-reduced-loss reading (our γ = 16 × the paper's) the run at γ = 8e-3 is the paper's
    5e-4 cell (0.99) and 8e-2 its collapse; the factor leaves the chunks, and so earlier runs, untouched."""
    from plasticlab.experiments.hebbian.transformer import SECOND, paper_cell, transformer_claims

    assert paper_cell("adam_l2", 8e-3, 16.0) == 0.99 and paper_cell("adam_l2", 5e-4) == 0.99
    assert paper_cell("adam_l2", 5e-4, 16.0) is None
    p = EXP.params(**{**EXP.tiny, "rules": ["adam_l2"], "gammas": [0.0, 8e-3, 8e-2], "gamma_factor": 16.0})
    assert EXP.chunks(p) == EXP.chunks(EXP.params(**{**EXP.tiny, "rules": ["adam_l2"], "gammas": p["gammas"]}))
    rows = [
        dict(rule="adam_l2", gamma=g, seed=s, layer=layer, alignment=a, diverged=False, collapsed=False)
        for g, a in [(0.0, 0.0), (8e-3, 0.95), (8e-2, math.nan)]
        for s in (0, 1)
        for layer in SECOND
    ]
    claims = {c.claim: c for c in transformer_claims(pd.DataFrame(rows), p, "tiny")}
    cell = claims["transformer / adam_l2, γ = 0.0005 (ours 0.008): 2nd-layer Hebbian alignment"]
    assert cell.paper_value == 0.99 and cell.verdict == "reproduced"
    assert claims["transformer / adam_l2, γ = 0.005 (ours 0.08): weights collapse (the paper's '—')"].verdict == (
        "reproduced"
    )
    assert not any("beyond Table 1" in c for c in claims)
    assert "transformer / adam_l2, γ = 0: 2nd-layer Hebbian alignment" in claims  # no "(ours 0)"
