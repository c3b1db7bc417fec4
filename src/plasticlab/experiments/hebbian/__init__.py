"""Experiments of Koplow, Poggio & Ziyin 2025 (emergent Hebbian dynamics under weight decay): one module per
experiment, the paper's numbers in ``paper``, shared helpers in ``_common`` and the figures in ``figures``."""
