"""Serving stacks: the project's networks served to a stream of requests, with batching set by a policy.

- :mod:`e4gym.serving.triton`: a real Triton Inference Server (PyPI's ``nvidia-pytriton``) in its own
  environment (``make triton-env``), driven by an arrival process and measured (``docs/serving.md``).
- :mod:`e4gym.serving.triton_server`: its server side, run only by that environment.

Importing this package imports neither torch nor PyTriton.
"""
