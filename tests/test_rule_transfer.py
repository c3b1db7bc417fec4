"""rule-transfer: the identifier trained on one MLP family, tested on held-out architectures (tiny sizes)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from plasticlab.experiments.rules.transfer import accuracies, transfer_claims
from plasticlab.study import RunContext, get, run_chunks
from plasticlab.study.claims import BEYOND

EXP = get("rule-transfer")


@pytest.fixture(scope="module")
def tiny_run():
    p = EXP.params(**EXP.tiny)
    return run_chunks(EXP, EXP.chunks(p)), p


def test_chunks_hold_each_family_and_the_right_seeds():
    p = EXP.params(**EXP.tiny)
    specs = EXP.chunks(p)
    by = {(s.family, s.rule): s for s in specs}
    assert by["train", "sgd"].seeds == [0, 1, 2] and by["depth", "sgd"].seeds == [2]
    assert by["depth", "sgd"].widths == [16, 16, 16, 16, 8] and by["width", "sgd"].widths == [16, 64, 8]
    assert by["activation", "sgd"].activation == "relu" and by["train", "sgd"].activation == "tanh"


def test_every_family_records_first_and_last_layer_only(tiny_run):
    df, _ = tiny_run
    assert set(EXP.columns) <= set(df.columns)
    assert not [c for c in df.columns if c.endswith("_l2")]  # a deeper net's middle layers are left out
    deep = df[(df.family == "depth") & (df.rule == "sgd")]
    assert np.isfinite(deep.align_l0).all() and np.isfinite(deep.align_l1).all()
    assert set(df.family) == {"train", "width", "depth", "activation", "cnn"}
    cnn = df[df.family == "cnn"]
    assert set(cnn.noise) == {0.0} and np.isfinite(cnn.align_l0).all() and np.isfinite(cnn.w_var_l1).all()
    assert cnn.align_noise_l0.isna().all()  # not recorded through RuleOptimizer


def test_accuracy_table_and_claims(tiny_run):
    df, p = tiny_run
    acc = accuracies(df, p)
    assert list(acc["test set"]) == ["in distribution", "width", "depth", "activation", "cnn"]
    assert (acc.runs == 3).all() and acc.chance.eq(1 / 3).all()
    assert acc.accuracy.between(0, 1).all()
    claims = EXP.claims(df, p)
    assert len(claims) == 8 and all(c.paper == BEYOND for c in claims)
    assert all(c.word in ("holds", "partly", "does not hold") for c in claims)


def test_claim_verdicts_follow_the_accuracies():
    p = EXP.params(**EXP.tiny, held_out=["width", "depth", "activation"])
    acc = pd.DataFrame(
        {
            "test set": ["in distribution", "width", "depth", "activation"],
            "runs": [100] * 4,
            "accuracy": [0.9, 0.85, 0.5, 0.05],
            "sem": [0.01] * 4,
            "chance": [0.1] * 4,
        }
    )
    words = [c.word for c in transfer_claims(acc, p, "quick")]
    assert words == ["holds", "holds", "holds", "partly", "does not hold", "does not hold"]
    none = transfer_claims(acc.iloc[:1], p, "quick")
    assert all(c.word == "not run" for c in none) and math.isnan(none[0].ours)


def test_a_member_alone_equals_itself_in_the_batch():
    p = EXP.params(**EXP.tiny)
    spec = next(s for s in EXP.chunks(p) if s.family == "train" and s.rule == "dfa")
    both = EXP.run_chunk(spec, RunContext())
    alone = EXP.run_chunk(dataclasses.replace(spec, seeds=[1]), RunContext())
    cols = ["step", "align_l0", "align_l1", "w_mean_l1", "act_var_l0"]
    pd.testing.assert_frame_equal(
        both[both.seed == 1][cols].reset_index(drop=True), alone[cols].reset_index(drop=True)
    )
