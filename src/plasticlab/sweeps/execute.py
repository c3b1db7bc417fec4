"""Minimal serial executor (placeholder until the resumable sweep layer lands)."""
from __future__ import annotations

import pandas as pd


def execute(exp, specs, out=None, executor="local", workers=1, scheduler=None, progress=False):
    frames = [exp.run_chunk(spec) for spec in specs]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
