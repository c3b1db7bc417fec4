"""A rename inside chunk specs (the curl engine's presets) keeps a committed folder's finished chunks:
``sweeps.migrate`` renews their hashes and part names, and the folder is then exactly what today's code
would have written."""

import plasticlab
from plasticlab.simulation.curl_rules import PRESETS, RENAMED
from plasticlab.study import get
from plasticlab.sweeps import summary
from plasticlab.sweeps.execute import hashes_of
from plasticlab.sweeps.migrate import curl_presets, main, rewrite_specs
from plasticlab.sweeps.store import Manifest, file_sha256


def _old_labels(spec):
    back = {new: old for old, new in RENAMED.items()}
    spec["conditions"] = [[back.get(c[0], c[0]), *c[1:]] for c in spec["conditions"]]
    return spec


def test_curl_presets_migration_keeps_every_chunk(tmp_path):
    exp = get("curl-speedup")
    params = dict(exp.tiny, Ps=[100, 200], sweep_P=200)
    plasticlab.run("curl-speedup", out=tmp_path, **params)
    today = hashes_of(exp, exp.chunks(exp.params(**params)))
    m = Manifest.load(tmp_path, must_exist=True)
    assert m.grid == today and all(s["spec"]["conditions"][0][0] in PRESETS for s in m.chunks.values())
    sums = {m.chunks[h]["sha256"] for h in today}

    assert len(rewrite_specs(tmp_path, _old_labels)) == 2  # the folder as the old labels wrote it
    old = Manifest.load(tmp_path, must_exist=True)
    assert not set(old.grid) & set(today) and {c[0] for c in old.chunks[old.grid[0]]["spec"]["conditions"]} == {
        "gd",
        "curl",
    }
    assert summary(tmp_path)["done"] == 2 and summary(tmp_path)["results"] == "current"

    assert main(["curl-presets", str(tmp_path)]) == 0
    new = Manifest.load(tmp_path, must_exist=True)
    assert new.grid == today  # today's hashes, in the same order
    assert {file_sha256(new.part(h)) for h in today} == sums  # the same parts, renamed
    s = summary(tmp_path)
    assert (s["done"], s["pending"], s["results"]) == (2, 0, "current")
    assert rewrite_specs(tmp_path, curl_presets) == {}  # idempotent
    plasticlab.run("curl-speedup", out=tmp_path, **params)
    assert Manifest.load(tmp_path, must_exist=True).data["runs"][-1]["computed"] == 0  # nothing recomputed


def test_no_preset_is_a_registered_rule_name():
    from plasticlab.rules import rule_names

    assert not set(PRESETS) & set(rule_names())
    assert set(RENAMED.values()) <= set(PRESETS)


def test_an_unknown_migration_or_no_folder_is_a_usage_line(capsys):
    assert main(["nope", "x"]) == 2 and main(["curl-presets"]) == 2
    assert "usage" in capsys.readouterr().err


def test_a_rule_that_flips_itself_refuses_the_members_flips():
    """The registry's curl (which flips its own columns) with k ≠ 0 would flip twice and silently undo the
    flip: refused, naming the engine preset for the paper's curl descent (formerly the label "curl")."""
    import pandas as pd
    import pytest

    from plasticlab.errors import PlasticlabError
    from plasticlab.simulation.curl_rules import build_rule

    members = pd.DataFrame(dict(rule=["curl"], k1=[0], k2=[1]))
    with pytest.raises(PlasticlabError, match="gd_flip"):
        build_rule(members)
    assert build_rule(members.assign(rule="gd_flip")) is not None
    assert build_rule(members.assign(k2=0)) is not None  # its own flip alone is fine
