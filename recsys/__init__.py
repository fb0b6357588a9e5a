"""recsys: a self-attentive sequential recommender library.

Sub-packages: ``data`` (read, clean, index and split interaction logs), and later ``models``,
``training``, ``evaluation`` and ``export``. The library imports neither ``serving`` nor
``pipelines``.
"""

from recsys.errors import RecsysError

__all__ = ["RecsysError"]
__version__ = "0.1.0"
