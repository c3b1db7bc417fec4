"""Imported once by the forkserver so that forked workers start with every experiment module loaded."""
try:
    from plasticlab.experiments import all_experiments

    all_experiments()
except Exception:  # noqa: BLE001 - a broken module must not kill the server; workers then report it per chunk
    pass
