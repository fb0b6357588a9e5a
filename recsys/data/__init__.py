"""Interaction-log data: readers for every supported format, cleaning (nulls, duplicates, k-core),
id vocabularies, chronological splits, the prepared-dataset folder, per-user sequences and the
right-aligned batches every model input uses, and a synthetic log generator.

``prepare_dataset`` runs the steps on the encoded log of ``events`` (integer codes, sorted once);
the frame-level functions exported here apply the same rules to a polars frame.
"""

from recsys.data.cleaning import CleaningConfig, CleaningReport, clean_interactions, k_core
from recsys.data.prepare import PrepareConfig, fingerprint, prepare_dataset
from recsys.data.prepared import (
    FORMAT_VERSION,
    PreparedDataset,
    load_prepared,
    write_prepared,
)
from recsys.data.readers import (
    LOG_FORMATS,
    ColumnMapping,
    LogFormat,
    TimeUnit,
    detect_format,
    read_interactions,
)
from recsys.data.sequences import (
    FlatSequences,
    HeldOutTargets,
    LengthBucketBatchSampler,
    evaluation_batch,
    held_out_targets,
    right_aligned,
    right_aligned_rows,
    training_batch,
    training_sequences,
)
from recsys.data.splits import SplitConfig, SplitStrategy, assign_split, order_chronologically
from recsys.data.vocab import IdVocabulary, index_interactions

__all__ = [
    "FORMAT_VERSION",
    "LOG_FORMATS",
    "CleaningConfig",
    "CleaningReport",
    "ColumnMapping",
    "FlatSequences",
    "HeldOutTargets",
    "IdVocabulary",
    "LengthBucketBatchSampler",
    "LogFormat",
    "PrepareConfig",
    "PreparedDataset",
    "SplitConfig",
    "SplitStrategy",
    "TimeUnit",
    "assign_split",
    "clean_interactions",
    "detect_format",
    "evaluation_batch",
    "fingerprint",
    "held_out_targets",
    "index_interactions",
    "k_core",
    "load_prepared",
    "order_chronologically",
    "prepare_dataset",
    "read_interactions",
    "right_aligned",
    "right_aligned_rows",
    "training_batch",
    "training_sequences",
    "write_prepared",
]
