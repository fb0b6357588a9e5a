"""One batch's model work as a TorchScript task on torch's inter-op thread pool.

The event loop builds a batch's inputs, starts the task (``launch``: it returns at once) and is
woken by the task's completion callback; the forward itself runs in C++ without the GIL. Against
a Python worker thread this saves the GIL hand-offs around every forward (the worker needs the
GIL to start the call, to convert the outputs and to wake the loop, each time behind a busy
loop), which is most of what a cache miss costs at low concurrency (``bench/serve_load.py``).

Only Python lists cross the boundary, never tensors, in either direction. A tensor that Python
has seen carries a Python object, and whichever thread drops the tensor's last reference must
take the GIL to free that object. The inter-op thread drops its references after the task
completes; at interpreter exit a thread that asks for the GIL is ended by ``pthread_exit``, which
unwinds through a C++ destructor and aborts the process ("terminate called without an active
exception", seen in core dumps). Tensors made and freed inside the task have no Python object.
The same holds for a completion callback: torch drops its reference to it on the inter-op thread,
under the GIL, just after calling it, so ``on_done`` tracks callbacks until torch has let go and
the interpreter waits for that before it exits.

Shape letters: B rows in a batch, W window width, E excluded items per row, A allowed items per
row, K the largest k, B' the rows that want an explanation.
"""

from __future__ import annotations

import atexit
import time
import weakref
from collections.abc import Callable
from typing import Any, Optional  # noqa: UP035 - TorchScript reads Optional, not `X | None`

import torch
from torch import nn

Rows = list[list[int]]
TaskOutput = tuple[list[list[int]], list[list[float]], list[list[float]]]
"""(top indices [B, K], their scores [B, K], mean attention weights [B', W])."""


class BatchForward(nn.Module):
    """Wraps an artifact's module; ``forward`` forks ``run`` and returns its future."""

    def __init__(self, model: torch.jit.ScriptModule) -> None:
        super().__init__()
        self.model = model

    def run(
        self,
        items: list[list[int]],
        k: int,
        exclude: list[list[int]],
        allow: Optional[list[list[int]]],  # noqa: UP045 - TorchScript
        explain_rows: list[int],
    ) -> TaskOutput:
        window = torch.tensor(items, dtype=torch.long)  # [B, W]
        allowed: Optional[torch.Tensor] = None  # noqa: UP045 - TorchScript
        if allow is not None:
            allowed = torch.tensor(allow, dtype=torch.long)  # [B, A]
        top_indices, top_scores = self.model(
            window, k, torch.tensor(exclude, dtype=torch.long), False, allowed
        )  # [B, K] each
        weights = self.explained(window, explain_rows)
        indices: list[list[int]] = top_indices.tolist()
        scores: list[list[float]] = top_scores.tolist()
        return indices, scores, weights

    def explained(self, window: torch.Tensor, explain_rows: list[int]) -> list[list[float]]:
        """The mean attention weights [B', W] of the rows that asked for an explanation."""
        if len(explain_rows) == 0:
            return []
        rows = torch.tensor(explain_rows, dtype=torch.long)
        mean = self.model.explain(window.index_select(0, rows))[1]  # [B', W]
        weights: list[list[float]] = mean.tolist()
        return weights

    def forward(
        self,
        items: list[list[int]],
        k: int,
        exclude: list[list[int]],
        allow: Optional[list[list[int]]],  # noqa: UP045 - TorchScript
        explain_rows: list[int],
    ) -> torch.jit.Future[TaskOutput]:
        return torch.jit.fork(  # type: ignore[no-untyped-call]
            self.run, items, k, exclude, allow, explain_rows
        )


class UserVectorForward(BatchForward):
    """``BatchForward`` for an artifact with a retrieval index: the task computes each row's
    user vector (``TaskOutput``'s scores rows, [B, H]; no indices) and the explanations; the
    caller searches the index with the vectors (``recsys.export.retrieval``)."""

    def run(
        self,
        items: list[list[int]],
        k: int,
        exclude: list[list[int]],
        allow: Optional[list[list[int]]],  # noqa: UP045 - TorchScript
        explain_rows: list[int],
    ) -> TaskOutput:
        window = torch.tensor(items, dtype=torch.long)  # [B, W]
        vectors: list[list[float]] = self.model.user_vectors(window).tolist()  # [B, H]
        weights = self.explained(window, explain_rows)
        indices: list[list[int]] = []
        return indices, vectors, weights


def script_task(
    model: torch.jit.ScriptModule, user_vectors: bool = False
) -> torch.jit.ScriptModule:
    """The scripted ``BatchForward`` (``UserVectorForward`` with ``user_vectors``) around an
    artifact's loaded module (~0.1 s)."""
    return torch.jit.script(UserVectorForward(model) if user_vectors else BatchForward(model))


WARM_UP_RUNS = 4
"""Forwards run at load time. TorchScript's profiling executor records a graph's first run and
optimizes it over the next ones: the first forwards of a fresh task cost tens of times a warm one
(the event loop blocked for most of it), later ones do not, whatever the shapes; the serving
benchmark records the first answers after a start."""


def warm_up(task: torch.jit.ScriptModule, max_len: int) -> None:
    """Run ``task`` ``WARM_UP_RUNS`` times on made-up batches of varied shapes, with an allow
    list and an explanation among them, so that requests never pay for its compilation (call it
    before a snapshot serves: at start and before a hot swap)."""
    for run in range(WARM_UP_RUNS):
        rows = 1 + run % 3
        width = max_len if run % 2 else 1
        items = [[1] * width for _ in range(rows)]
        allow = [[1, 1] for _ in range(rows)] if run == WARM_UP_RUNS - 1 else None
        launch(task, items, 2, [[1] for _ in range(rows)], allow, [0] if run == 1 else []).wait()


def launch(
    task: torch.jit.ScriptModule,
    items: Rows,
    k: int,
    exclude: Rows,
    allow: Rows | None,
    explain_rows: list[int],
) -> torch.futures.Future[Any]:
    """Start one batch on the inter-op pool; returns at once with the task's future.

    Runs under ``torch.inference_mode`` (the fork inherits it: no autograd bookkeeping, ~50 us
    less per forward than the module's own ``no_grad``).
    """
    with torch.inference_mode():
        future: torch.futures.Future[Any] = task(items, k, exclude, allow, explain_rows)
    return future


class _TrackedCallback:
    """A completion callback whose last reference is torch's (see ``on_done``)."""

    def __init__(self, callback: Callable[[torch.futures.Future[Any]], None]) -> None:
        self.callback = callback

    def __call__(self, future: torch.futures.Future[Any]) -> None:
        self.callback(future)


_callbacks_torch_holds: weakref.WeakSet[_TrackedCallback] = weakref.WeakSet()

CALLBACK_RELEASE_WAIT_S = 2.0
"""The longest the interpreter's exit waits for torch to drop the last callbacks: they are
released right after they run, so only a stuck task could take this long."""


def on_done(
    future: torch.futures.Future[Any], callback: Callable[[torch.futures.Future[Any]], None]
) -> None:
    """``future.add_done_callback(callback)``, with the callback tracked until torch drops it.

    Torch wraps the callback in a guard that the inter-op thread destroys after calling it, taking
    the GIL once more to release it; if the interpreter has begun to finalize by then, that thread
    is ended inside a C++ destructor and the process aborts. The wrapper handed to torch is
    referenced by torch alone, so it leaves ``_callbacks_torch_holds`` exactly when torch has
    released it, and ``wait_for_released_callbacks`` (run at exit) waits for the set to empty.
    """
    tracked = _TrackedCallback(callback)
    _callbacks_torch_holds.add(tracked)
    future.add_done_callback(tracked)


@atexit.register
def wait_for_released_callbacks(timeout_s: float = CALLBACK_RELEASE_WAIT_S) -> bool:
    """Sleep (the GIL free) until torch has dropped every tracked callback, at most
    ``timeout_s``; whether it has. Registered to run at exit, before the interpreter finalizes."""
    deadline = time.monotonic() + timeout_s
    while len(_callbacks_torch_holds) > 0:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.001)
    return True
