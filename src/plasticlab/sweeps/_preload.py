"""Imported once by the forkserver so that forked workers start with every experiment module loaded."""

try:
    from plasticlab.experiments import all_experiments

    all_experiments()
except Exception:
    pass
