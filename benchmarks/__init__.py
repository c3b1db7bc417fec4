"""plasticlab benchmarks: ``python -m benchmarks NAME`` (``make bench`` runs them all).

Each benchmark prints one line per figure and ends with a ratio measured side by side in the same process.
See docs/performance.md for the figures and the conditions they were measured under.
"""
