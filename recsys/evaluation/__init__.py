"""Offline evaluation: ranking metrics from the rank of each user's held-out item."""

from recsys.evaluation.metrics import hit_rate_at_k, ndcg_at_k, target_ranks

__all__ = ["hit_rate_at_k", "ndcg_at_k", "target_ranks"]
