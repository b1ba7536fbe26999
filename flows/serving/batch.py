"""Micro-batching of ``GET /recommend``: requests that arrive while a batch ranks are ranked
together in the next one (one :meth:`Retriever.topk` call).

Why: one query at a time leaves most of the work per call. The 1-bit top-K at large catalogues
(:class:`hqgnn.scaled_hamming.ScaledHammingIndex`) spends a single query mostly in per-call
Python/numpy work (16 FAISS bucket searches, masks, merges) that holds the GIL, so one query at a
time does not use the second core; the GEMM paths (b-bit codes, float users against item codes)
unpack or convert every item block once per call and run a matrix-vector product that reads the
whole catalogue for one user. A batch of ``B`` queries costs little more than one. No request
waits for a timer: the batcher takes whatever is queued when it becomes free (a request alone is
ranked at once).

Exactness: only versions whose retriever is :attr:`Retriever.batch_invariant` (b-bit codes on both
sides; float users against item codes) are batched. Their
scores are computed per (query, item) to the same bits whatever the batch: 1-bit scores are
integer Hamming distances times the item scale; b-bit inner products are integer sums, exact in
float32; float users are rounded onto a fixed-point grid on which their inner products with the
item codes are exact too (:func:`hqgnn.retrieval.on_exact_grid`; in two slices against 4- and 8-bit
items, :func:`hqgnn.retrieval.grid_slices`). Every path breaks ties by the
lower item index, so a user's top-``K`` in a batch equals :meth:`Retriever.recommend`'s for that
user, and its first ``k`` are the top-``k``. float32 versions are not batched (a GEMM's
rounding depends on the batch shape).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import defaultdict
from concurrent.futures import Future

from flows.serving.version import LoadedVersion, Ranked

log = logging.getLogger("hqgnn.serve")
_STOP = object()


class Batcher:
    """One thread that ranks queued ``(version, user, k, exclude_seen)`` requests in batches of at
    most ``max_batch``, grouped by version and ``exclude_seen`` (``k``: the group's largest)."""

    def __init__(self, max_batch: int = 64, threads: int | None = None) -> None:
        self.max_batch, self.threads = max_batch, threads
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="hqgnn-batcher", daemon=True)
        self.batches = 0
        self.requests = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def recommend(self, version: LoadedVersion, user: int, k: int, exclude_seen: bool) -> Ranked:
        """Top-``k`` of dense ``user`` on ``version`` (blocks until its batch is ranked)."""
        done: Future[Ranked] = Future()
        self._queue.put((version, user, k, exclude_seen, done))
        return done.result()

    def _loop(self) -> None:
        if self.threads is not None:  # OpenMP's thread count is per calling thread: set it in this one
            import faiss

            faiss.omp_set_num_threads(self.threads)
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = [first], False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._rank(batch)
            if stop:
                return

    def _rank(self, batch: list[tuple]) -> None:
        groups: dict[tuple[int, bool], list[tuple]] = defaultdict(list)
        for item in batch:
            groups[(id(item[0]), item[3])].append(item)
        for items in groups.values():
            version, exclude_seen = items[0][0], items[0][3]
            try:
                ranked = version.recommend_many([it[1] for it in items], max(it[2] for it in items), exclude_seen)
            except Exception as e:  # the requests fail with the error; the batcher lives on
                log.exception("ranking a batch of %d requests failed", len(items))
                for it in items:
                    it[4].set_exception(e)
                continue
            for it, r in zip(items, ranked, strict=True):
                it[4].set_result(Ranked(r.ids[: it[2]], r.scores[: it[2]]))
        self.batches += 1
        self.requests += len(batch)
