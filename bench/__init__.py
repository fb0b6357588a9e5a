"""Benchmarks, each a script (``python bench/<name>.py``) that writes its numbers to
``bench/results/``.

- ``prepare``: data preparation with polars (``recsys.data``) against plain pandas
  (``pandas_prepare``, the same steps: a module, not a script).
- ``train_speed``: seconds per epoch of ``recsys train`` against a plain PyTorch loop.
- ``quality``: the recommended recipe on every data set under full ranking (and the paper's
  sampled protocol on Video Games), beside most-popular, Markov and published numbers.
- ``sweep_video_games``: variants of ``paper_video_games.yaml`` trained side by side.
- ``export_latency``: one call of an exported model, TorchScript against eager.
- ``serve_load``: closed-loop gRPC load on ``recsys serve`` against an echo server as the
  ceiling (its parts in ``serving_load/``).
"""

__all__: list[str] = []
