"""Part B paper numbers (Ninou, Kadmon & Cayco-Gajic 2025), shared by the curl experiments and their figures:
the listed large-N critical flip fractions and the speed-up medians (tanh, norm constraint on, k = 1, r = 2,
40 seeds unless a table says otherwise)."""

from __future__ import annotations

import numpy as np
import pandas as pd

# The listed large-N thresholds α*(c) per flipped layer.
THRESHOLDS = {"hidden": {0.3: 0.559, 0.4: 0.177, 0.5: 0.047}, "readout": {0.1: 0.245, 1.0: 0.055, 10.0: 0.006}}
SYMBOL = {"hidden": "α_h", "readout": "α_r"}
C_RANGE = (1e-3, 1e2)  # the c range of the large-N phase diagrams

# Median epochs to train error 1e-3 over the training-set size P, GD vs curl descent.
SPEEDUP_P = pd.DataFrame(
    dict(
        P=[2000, 1600, 1000, 600, 300, 140, 100],
        gd=[2972, 2889, 2575, 1596, 698, 278, 191],
        curl=[1090, 1248, 1563, 1026, 681, 335, 204],
    )
)
# Curl descent's median epochs over the number k of flipped readout neurons (of N = 10), P = 2000.
SPEEDUP_K = pd.DataFrame(
    dict(k_readout=list(range(1, 11)), curl=[1215, 1635, 1451, 2262, 2627, 3854, 4703, 5568, 7903, np.inf])
)
SPEEDUP_R = pd.DataFrame(dict(init_scale=[3.0, 6.0], gd=[2449, 17525], curl=[811, 785]))  # student init scale r
SPEEDUP_NO_NORM = pd.DataFrame(dict(P=[2000], gd=[1464], curl=[1109]))  # without the norm constraint
