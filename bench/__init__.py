"""Benchmarks, each a script that writes its numbers to ``bench/results/``.

``prepare`` times data preparation with polars (``recsys.data``) against a plain pandas
implementation of the same steps (``pandas_prepare``).
"""

__all__: list[str] = []
