"""Batch jobs (prepare, synth, demo, and later train/evaluate/export/load-features), each a thin
entry that reads its options and calls the ``recsys`` library; ``pipelines.cli`` is the ``recsys``
command that reaches all of them and the server.
"""

__all__: list[str] = []
