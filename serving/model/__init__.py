"""The model side of the server: the loaded artifact and its micro-batched inference.

``runtime`` (the snapshot of one artifact, micro-batching, hot swap), ``forward_task`` (one
batch's forward as a TorchScript task on torch's inter-op thread) and ``scheduling`` (the
``SCHED_BATCH`` hint that keeps that thread from preempting the event loop).
"""

from serving.model.runtime import (
    Explanation,
    ModelJob,
    ModelResult,
    ModelRuntime,
    ModelSnapshot,
    load_snapshot,
)

__all__ = [
    "Explanation",
    "ModelJob",
    "ModelResult",
    "ModelRuntime",
    "ModelSnapshot",
    "load_snapshot",
]
