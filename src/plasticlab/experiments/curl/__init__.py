"""Experiments of Ninou, Kadmon & Cayco-Gajic 2025 (curl descent): one module per experiment, shared helpers in
``_common`` and the figures in ``figures``."""
