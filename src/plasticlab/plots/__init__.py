"""Figures of the experiments, one module per family; experiments call them from ``report`` only.

Plotting is kept out of the experiment modules (compute + claims) so that workers never import pyplot.
"""
