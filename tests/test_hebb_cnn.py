"""hebb-cnn: alignment per layer of a CNN and a transformer under registry rules (tiny sizes)."""

from __future__ import annotations

import dataclasses
import math
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from plasticlab.experiments.rules.cnn import Spec, cnn_claims
from plasticlab.simulation.train_torch import rule_setup
from plasticlab.study import RunContext, get, run_chunks
from plasticlab.study.claims import BEYOND

EXP = get("hebb-cnn")


def tiny(**over):
    return EXP.params(**{**EXP.tiny, **over})


def test_tiny_run_measures_every_layer_and_marks_rules_that_cannot_run():
    p = tiny(rules=["sgd", "random_nn"], gammas=[0.0])
    df = run_chunks(EXP, EXP.chunks(p))
    assert set(EXP.columns) <= set(df.columns)
    ran = df[df.runnable]
    cnn = ran[ran.model == "cnn"]
    assert list(cnn.layer) == ["conv1", "conv2", "readout"]
    assert np.isfinite(cnn.alignment).all()
    tf = ran[ran.model == "transformer"]
    assert {"attention", "feed-forward", "embed", "readout"} == set(tf.group)
    assert {"blocks.0.attn.q", "blocks.1.attn.o", "blocks.1.ff.fc2"} <= set(tf.layer)
    bad = df[~df.runnable]
    assert set(bad.rule) == {"random_nn"} and bad.why.str.contains("random_nn").all()
    assert not df.stationary.any()  # 10 steps are far from lr·γ·T ≥ 5


def test_a_seed_alone_equals_itself_beside_another():
    p = tiny(models=["cnn"], rules=["fa"], gammas=[5e-3], seeds=[0, 1])
    both = EXP.run_chunk(EXP.chunks(p)[0], RunContext())
    alone = EXP.run_chunk(dataclasses.replace(EXP.chunks(p)[0], seeds=[1]), RunContext())
    cols = ["layer", "alignment", "alignment_early", "val_acc", "train_loss_late"]
    pd.testing.assert_frame_equal(
        both[both.seed == 1][cols].reset_index(drop=True), alone[cols].reset_index(drop=True)
    )
    assert not np.allclose(both[both.seed == 0].alignment, alone.alignment)  # seeds differ


def test_cifar10_is_skipped_with_a_note_without_its_folder_and_runs_with_one(tmp_path):
    p = tiny(datasets=["digits", "cifar10"], data_path=str(tmp_path / "missing"))
    assert {s.dataset for s in EXP.chunks(p)} == {"digits"}
    assert "CIFAR-10 skipped" in EXP.notes(p)
    rng = np.random.default_rng(0)
    for name in ("data_batch_1", "test_batch"):  # the python-pickle layout, a few random images
        batch = {b"data": rng.integers(0, 256, (40, 3072), dtype=np.uint8), b"labels": list(range(10)) * 4}
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    p = tiny(datasets=["cifar10"], data_path=str(tmp_path), models=["cnn"], rules=["sgd"], gammas=[0.0])
    assert "skipped" not in EXP.notes(p)
    df = run_chunks(EXP, EXP.chunks(p))
    assert set(df.dataset) == {"cifar10"} and np.isfinite(df.alignment).all()


def test_decay_is_split_off_unless_coupled():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    _, tail, coupled = rule_setup(model, "sgd", 5e-3, 0.1, 0)
    assert tail == pytest.approx(5e-3) and not coupled
    _, tail, coupled = rule_setup(model, "adam_l2", 5e-3, 0.1, 0)
    assert tail == 0 and coupled


def _cells(values: dict[str, list[float]], layers=("conv1", "conv2", "readout")) -> pd.DataFrame:
    rows = []
    for rule, curve in values.items():
        for g, a in zip([0.0, 5e-4, 5e-3], curve):
            for layer in layers:
                rows.append(dict(rule=rule, layer=layer, group=layer, gamma=g, seed=0, alignment=a))
    return pd.DataFrame(rows).assign(runnable=True, stationary=False)


def test_claims_count_cells_and_read_holds_or_not():
    rising = cnn_claims(_cells({"sgd": [0.0, 0.2, 0.5], "dfa": [-0.1, 0.1, 0.3]}), "cnn", "digits", "quick")
    assert [c.word for c in rising] == ["holds", "holds"] and all(c.paper == BEYOND for c in rising)
    assert rising[0].n == 6
    mixed = cnn_claims(_cells({"sgd": [0.0, 0.2, 0.5], "dfa": [0.3, 0.1, -0.2]}), "cnn", "digits", "quick")
    assert [c.word for c in mixed] == ["partly", "partly"] and mixed[0].ours == pytest.approx(0.5)
    falling = cnn_claims(_cells({"dfa": [0.3, 0.1, -0.2]}), "cnn", "digits", "quick")
    assert [c.word for c in falling] == ["does not hold", "does not hold"]
    none = cnn_claims(_cells({"sgd": [math.nan] * 3}), "cnn", "digits", "quick")
    assert [c.word for c in none] == ["not run", "not run"]


def test_transformer_claims_read_attention_and_feed_forward_groups():
    layers = ("blocks.0.attn.q", "blocks.0.ff.fc1", "readout")
    df = _cells({"sgd": [0.0, 0.1, 0.2]}, layers)
    df["group"] = ["attention", "feed-forward", "readout"] * (len(df) // 3)
    claims = cnn_claims(df, "transformer", "digits", "quick")
    assert [c.n for c in claims] == [2, 2]


def test_bad_heads_is_one_line_error():
    from plasticlab.errors import PlasticlabError

    with pytest.raises(PlasticlabError, match="heads"):
        EXP.params(d_model=30, heads=4)


def test_spec_round_trips_as_plain_dict():
    spec = EXP.chunks(tiny())[0]
    assert isinstance(spec, Spec) and EXP.spec_of(EXP.spec_dict(spec)) == spec
