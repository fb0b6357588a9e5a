"""recsys: a self-attentive sequential recommender library.

Layers, each importing only those before it (an import-linter contract in ``make lint``):
``data`` (read, clean, index and split logs; sequences), ``models`` (the SASRec backbone, its
losses), ``evaluation`` (metrics, protocols, baselines, reports), ``training`` (Lightning),
``export`` (the TorchScript artifact and its loader). Beneath them all: ``config`` (the typed
settings every command is built from), ``errors`` and ``io`` (atomic writes). The library
imports neither ``serving`` nor ``pipelines``, nor gRPC nor Redis.
"""

from recsys.errors import RecsysError

__all__ = ["RecsysError"]
__version__ = "0.1.0"
