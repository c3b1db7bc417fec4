"""Fused, ensemble-batched simulators.

- ``curl``: the curl-descent student–teacher engine (Ninou et al. 2025): ``curl_step`` / ``curl_forward`` (pure,
  torch.func-friendly reference) and ``simulate(CurlConfig, seeds, k1, k2, init_scale, rule)``.
- ``train_mlp``: the MLP trainer used by the Hebbian-signature experiments (Part A).

Submodules are imported explicitly (``from plasticlab.simulation.curl import simulate``) so that importing
one does not pull in the other.
"""
