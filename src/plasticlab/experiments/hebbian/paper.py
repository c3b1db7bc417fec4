"""The numbers of Koplow, Poggio & Ziyin 2025 ("Emergence of Hebbian Dynamics in Regularized Non-Local
Learners", arXiv 2505.18069) that our Part A claims are set against: every paper number in one place.

NaN stands for the paper's "—" (the weights collapsed to zero). The paper's Adam row is set beside both Adam
forms we run: decoupled decay (``adam`` = AdamW) and coupled L2 (``adam_l2`` = Adam(weight_decay)), since
which Adam the paper used is itself a question.
"""

from __future__ import annotations

import math

import numpy as np

TABLE1_GAMMAS = [0.0, 5e-5, 5e-4, 5e-3]
"""The weight decays γ of Table 1's columns."""

TABLE1_MLP = {
    "adam": [-0.02, 0.10, 0.66, np.nan],
    "adam_l2": [-0.02, 0.10, 0.66, np.nan],
    "sgd": [-0.10, -0.06, 0.17, 0.59],
    "dfa": [0.45, 0.45, 0.68, 0.87],
    "random_nn": [0.00, 0.00, 0.05, 0.50],
}
"""Table 1, MLP rows: 2nd-layer Hebbian alignment per rule at each γ of TABLE1_GAMMAS."""

TABLE1_MLP_ADAM = dict(zip(TABLE1_GAMMAS, TABLE1_MLP["adam"]))
"""Table 1, MLP / Adam row by γ."""

TABLE1_MLP_DFA0 = 0.45
"""Table 1, MLP / DFA at γ = 0 (reported as 0.45 ± 0.05)."""

TABLE1_TRANSFORMER = {
    ("adam", 0.0): -0.02,
    ("adam", 5e-5): 0.50,
    ("adam", 5e-4): 0.99,
    ("adam", 5e-3): math.nan,
    ("adam_l2", 0.0): -0.02,
    ("adam_l2", 5e-5): 0.50,
    ("adam_l2", 5e-4): 0.99,
    ("adam_l2", 5e-3): math.nan,
    ("sgd", 0.0): 0.00,
    ("sgd", 5e-5): 0.04,
    ("sgd", 5e-4): 0.47,
    ("sgd", 5e-3): 0.88,
}
"""Table 1, transformer rows: alignment by (rule, γ)."""

TABLE1_MLP_ROW = {"adam": "Adam", "adam_l2": "Adam", "sgd": "SGD", "dfa": "DFA", "random_nn": "random NN"}
"""The row of Table 1 (MLP) each rule of TABLE1_MLP is set beside: the paper has ONE Adam row, set beside both
Adam forms we run."""
