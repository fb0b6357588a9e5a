"""The parts of the serving benchmark that ``bench/serve_load.py`` puts together.

``servers`` (the data, artifact and Redis it needs, and the servers under test: ``recsys serve``
and the echo server), ``load`` (one closed-loop load from a client process of its own, and the
CPU every process spent on it) and ``report`` (rounds pooled, targets checked, JSON, Markdown and
PNG written). Not named ``serving``: the script's folder comes first on ``sys.path`` when it runs
as ``python bench/serve_load.py``, where a ``bench/serving`` would hide the real ``serving``.
"""

__all__: list[str] = []
