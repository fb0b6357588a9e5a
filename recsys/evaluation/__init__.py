"""Offline evaluation: ranking metrics, the full and sampled protocols, scorers (a backbone,
baselines), bootstrap intervals and paired differences, and the report folder.

Below training in the layers: training validates with these metrics and protocols; the scorers
that read a checkpoint or an artifact live with their readers (``recsys.training``,
``recsys.export``).

``evaluate_scorer(dataset, scorer, ...)`` is the one-call API; ``evaluation_task`` +
``run_evaluation`` evaluate several scorers on identical users and negatives, and
``build_report`` + ``write_report`` turn their results into ``metrics.json``, Markdown and PNGs.
"""

from recsys.evaluation.baselines import (
    BASELINE_NAMES,
    BASELINES,
    BaselineName,
    MarkovScorer,
    MostPopularScorer,
    baseline_scorer,
    markov_scorer,
    most_popular_scorer,
    training_popularity,
)
from recsys.evaluation.bootstrap import (
    Interval,
    bootstrap_intervals,
    bootstrap_means,
    metric_intervals,
    paired_differences,
)
from recsys.evaluation.metrics import (
    RANK_METRICS,
    average_popularity_at_k,
    catalogue_coverage,
    hit_rate_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    target_ranks,
)
from recsys.evaluation.negatives import (
    NEGATIVE_SAMPLINGS,
    NegativeSampling,
    interacted_keys,
    sample_negatives,
)
from recsys.evaluation.protocols import (
    PROTOCOLS,
    EvaluationProtocol,
    candidate_ranks,
    full_ranking,
    full_ranks,
    sampled_ranking,
)
from recsys.evaluation.report import (
    Comparison,
    EvaluationReport,
    build_report,
    markdown_report,
    report_payload,
    write_report,
)
from recsys.evaluation.runner import (
    EVALUATION_SPLITS,
    EvaluationResult,
    EvaluationTask,
    check_ks,
    evaluate_scorer,
    evaluation_task,
    run_evaluation,
)
from recsys.evaluation.scorers import ModelScorer, Scorer

__all__ = [
    "BASELINES",
    "BASELINE_NAMES",
    "EVALUATION_SPLITS",
    "NEGATIVE_SAMPLINGS",
    "PROTOCOLS",
    "RANK_METRICS",
    "BaselineName",
    "Comparison",
    "EvaluationProtocol",
    "EvaluationReport",
    "EvaluationResult",
    "EvaluationTask",
    "Interval",
    "MarkovScorer",
    "ModelScorer",
    "MostPopularScorer",
    "NegativeSampling",
    "Scorer",
    "average_popularity_at_k",
    "baseline_scorer",
    "bootstrap_intervals",
    "bootstrap_means",
    "build_report",
    "candidate_ranks",
    "catalogue_coverage",
    "check_ks",
    "evaluate_scorer",
    "evaluation_task",
    "full_ranking",
    "full_ranks",
    "hit_rate_at_k",
    "interacted_keys",
    "markdown_report",
    "markov_scorer",
    "metric_intervals",
    "most_popular_scorer",
    "mrr_at_k",
    "ndcg_at_k",
    "paired_differences",
    "precision_at_k",
    "report_payload",
    "run_evaluation",
    "sample_negatives",
    "sampled_ranking",
    "target_ranks",
    "training_popularity",
    "write_report",
]
