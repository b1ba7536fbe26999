"""`hqgnn serve`: the HTTP service over ``codes/current`` (FastAPI), hot-swapping versions.

Endpoints (JSON; every answer from codes names the ``version`` that produced it, also in the
``X-Hqgnn-Version`` header):

- ``GET /recommend?user=ID&k=20&exclude_seen=true``: top-K original item ids and scores for an
  original user id; the ranking of `hqgnn recommend` (the same :class:`Retriever` call);
- ``POST /recommend`` ``{"items": [ID, ...], "k": 20}`` (or a bare JSON list): an anonymous user
  from the items they interacted with, by fold-in (the given items excluded)
  (:meth:`LoadedVersion.recommend_for_items`);
- ``GET /similar?item=ID&k=20``: items nearest to an item by the same code score;
- ``GET /healthz`` (200 once a version serves, else 503), ``GET /version``, ``GET /metrics``
  (Prometheus text: requests by endpoint and status, latency histogram, current version).

Bad input is a 4xx JSON ``{"error": "..."}``: unknown ids 404, ``k`` outside 1..``K_MAX`` or a
malformed body 422, a body over ``MAX_BODY_BYTES`` 413; never a 500.

The app reads only ``codes/<version>/`` (Parquet + manifest) and its snapshot's
``train.parquet``; never the warehouse, never a checkpoint. The version is loaded in
:func:`create_app`'s lifespan and then by the watcher thread (:mod:`flows.serving.swap`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from flows.serving.batch import Batcher
from flows.serving.swap import VersionHolder, Watcher
from flows.serving.version import LoadedVersion, Ranked, load_version

log = logging.getLogger("hqgnn.serve")

K_MAX = 1000  # largest k a request may ask for
MAX_BODY_BYTES = 64 * 1024  # POST /recommend body
MAX_ITEMS = 1000  # item ids in one POST /recommend body
ENDPOINTS = ("/recommend", "/similar", "/healthz", "/version", "/metrics")
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


KParam = Annotated[int, Query(ge=1, le=K_MAX, description=f"number of items, 1..{K_MAX}")]
IdParam = Annotated[str, Query(min_length=1, max_length=256, description="an original id")]


class ApiError(Exception):
    """A clear client (or availability) error: HTTP ``status`` and a one-line message."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


class ItemsBody(BaseModel):
    """``POST /recommend`` body: the items an anonymous user interacted with."""

    model_config = ConfigDict(extra="forbid")
    items: list[str | int] = Field(min_length=1, max_length=MAX_ITEMS)
    k: int = Field(20, ge=1, le=K_MAX)


class _Metrics:
    """Prometheus metrics of one app (own registry: several apps in one process never clash).

    With ``PROMETHEUS_MULTIPROC_DIR`` set (``hqgnn serve --workers N`` sets it to a fresh
    folder), prometheus_client's multiprocess mode: every worker writes its values there and
    ``/metrics``, whichever worker answers, reports all of them: counters and histograms summed
    over the workers, the version gauge as the largest value among live workers (during a swap
    both versions show 1 until every worker has swapped, then the old one 0).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.requests = Counter("hqgnn_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("hqgnn_request_seconds", "request latency in seconds", ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.version = Gauge("hqgnn_code_version_info", "the served code version (value 1)", ["version", "bits", "dim"],
                             registry=self.registry, multiprocess_mode="livemax")
        self.loaded = Gauge("hqgnn_code_version_loaded_timestamp_seconds", "when the served version was loaded",
                            registry=self.registry, multiprocess_mode="livemax")
        self.swaps = Counter("hqgnn_version_swaps", "hot swaps to a new code version", registry=self.registry)
        self.refusals = Counter("hqgnn_version_refusals", "code versions refused (failed verification)", registry=self.registry)
        self._shown: tuple[str, str, str] | None = None

    def served(self, v: LoadedVersion, replaced: bool) -> None:
        if replaced:
            self.swaps.inc()
        if self._shown is not None:  # multiprocess mode keeps a cleared label's last value: write 0 first
            self.version.labels(*self._shown).set(0)
        self.version.clear()
        self._shown = (v.name, str(v.bits), str(v.dim))
        self.version.labels(*self._shown).set(1)
        self.loaded.set(time.time())

    def exposition(self) -> bytes:
        """The Prometheus text of this process, or of every worker in multiprocess mode."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)


class _Measure:
    """ASGI middleware: count and time every HTTP request by endpoint (unknown paths: ``other``)."""

    def __init__(self, app: Any, metrics: _Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]], send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in ENDPOINTS else "other"
        status = 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
            self.metrics.requests.labels(endpoint, str(status)).inc()


def create_app(
    workdir: Path | str,
    poll_s: float = 1.0,
    compute_threads: int | None = None,
    scaled_index_min_items: int = 100_000,
    batch: bool = True,
) -> FastAPI:
    """The service over ``<workdir>/codes/current`` (see module docstring).

    ``poll_s``: seconds between checks of the ``current`` pointer. ``compute_threads``: torch
    and FAISS threads per process (None: leave them; 1 suits many concurrent requests, each
    answered on one core). ``scaled_index_min_items``: :class:`Retriever`'s switch to the
    bucketed 1-bit index (same ranking either way). ``batch``: rank concurrent ``GET /recommend``
    requests together where the scores are batch-invariant (b-bit codes on both sides, float users
    against item codes; not float32: :mod:`flows.serving.batch`; same answers).
    """
    root = Path(workdir)
    holder = VersionHolder()
    metrics = _Metrics()
    holder.on_change.append(metrics.served)
    holder.on_refuse.append(lambda _: metrics.refusals.inc())

    def load(path: Path) -> LoadedVersion:
        return load_version(root, path, scaled_index_min_items=scaled_index_min_items)

    watcher = Watcher(root / "codes" / "current", holder, load, poll_s)
    batcher = Batcher(threads=compute_threads) if batch else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if compute_threads is not None:
            import faiss
            import torch

            torch.set_num_threads(compute_threads)
            faiss.omp_set_num_threads(compute_threads)
        watcher.check()  # the first version loads before the first request is accepted
        if holder.current is None:
            log.warning("no code version to serve yet (%s); /healthz answers 503 until one loads",
                        holder.refused.reason if holder.refused else f"{root / 'codes' / 'current'} does not exist")
        watcher.start()
        if batcher is not None:
            batcher.start()
        yield
        watcher.stop()
        if batcher is not None:
            batcher.stop()

    app = FastAPI(title="hqgnn", summary="recommendations from the published codes", lifespan=lifespan)
    app.state.holder, app.state.watcher, app.state.metrics = holder, watcher, metrics
    app.add_middleware(_Measure, metrics=metrics)

    def serving() -> LoadedVersion:
        v = holder.current  # read once: this request uses this version to the end
        if v is None:
            why = f" (last refused: {holder.refused.version}: {holder.refused.reason})" if holder.refused else ""
            raise ApiError(503, f"no code version loaded yet from {root / 'codes' / 'current'}{why}")
        return v

    def answer(v: LoadedVersion, ranked: Ranked, **fields: Any) -> JSONResponse:
        body = {**fields, "version": v.name, "bits": v.bits, "items": ranked.ids, "scores": ranked.scores}
        return JSONResponse(body, headers={"X-Hqgnn-Version": v.name})

    @app.get("/recommend")
    def get_recommend(user: IdParam, k: KParam = 20, exclude_seen: bool = True) -> JSONResponse:
        """Top-``k`` items for an original user id (train items excluded unless exclude_seen=false)."""
        v = serving()
        idx = v.user_ids.index(user)
        if idx is None:
            raise ApiError(404, f"unknown user {user!r}: not in code version {v.name} "
                           "(ids are the original user ids of the split; new users: POST /recommend with their items)", version=v.name)
        ranked = batcher.recommend(v, idx, k, exclude_seen) if batcher and v.retriever.batch_invariant else v.recommend(idx, k, exclude_seen)
        return answer(v, ranked, user=user, k=k, exclude_seen=exclude_seen)

    @app.post("/recommend")
    async def post_recommend(request: Request) -> JSONResponse:
        """Top-``k`` for an anonymous user given the items they interacted with (fold-in)."""
        raw = await _bounded_body(request)
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(422, f"body is not JSON ({e}); send {{\"items\": [ID, ...], \"k\": 20}}") from e
        try:
            body = ItemsBody(items=data) if isinstance(data, list) else ItemsBody.model_validate(data)
        except ValidationError as e:
            raise ApiError(422, f"bad body: {_validation_message(e.errors())}; send {{\"items\": [ID, ...], \"k\": 20}}") from e
        v = serving()
        items = [v.item_ids.index(str(x)) for x in body.items]
        unknown = [str(x) for x, i in zip(body.items, items, strict=True) if i is None]
        if unknown:
            raise ApiError(404, f"{len(unknown)} unknown item id(s), e.g. {unknown[:5]}: not in code version {v.name}", version=v.name)
        ranked = v.recommend_for_items([i for i in items if i is not None], body.k)
        return answer(v, ranked, k=body.k, from_items=len(items))

    @app.get("/similar")
    def get_similar(item: IdParam, k: KParam = 20) -> JSONResponse:
        """Items nearest to ``item`` by the code score (the item itself left out)."""
        v = serving()
        idx = v.item_ids.index(item)
        if idx is None:
            raise ApiError(404, f"unknown item {item!r}: not in code version {v.name}", version=v.name)
        return answer(v, v.similar(idx, k), item=item, k=k)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        v = holder.current
        if v is None:
            return JSONResponse({"status": "unavailable", "error": "no code version loaded"}, status_code=503)
        return JSONResponse({"status": "ok", "version": v.name}, headers={"X-Hqgnn-Version": v.name})

    @app.get("/version")
    def version() -> JSONResponse:
        v = holder.current
        body: dict[str, Any] = v.describe() if v is not None else {"version": None}
        body.update(refused=holder.refused.describe() if holder.refused else None, swaps=holder.swaps, pid=os.getpid())
        return JSONResponse(body)

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    _error_handlers(app)
    return app


async def _bounded_body(request: Request) -> bytes:
    """The request body, refused with 413 past ``MAX_BODY_BYTES`` (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise ApiError(413, f"body too large: {declared} bytes (at most {MAX_BODY_BYTES})")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"body too large: over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _validation_message(errors: Any) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()) if p not in ('query', 'body')) or 'body'}: {e.get('msg')}" for e in errors)


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, e: ApiError) -> JSONResponse:
        return JSONResponse({"error": e.message, **e.extra}, status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, e: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": f"bad request: {_validation_message(e.errors())}"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def server_error(_: Request, e: Exception) -> JSONResponse:
        log.exception("internal error")
        return JSONResponse({"error": f"internal error: {type(e).__name__}: {e}"}, status_code=500)


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers (``--workers N`` needs an import string): settings come from
    ``HQGNN_SERVE_WORKDIR``, ``HQGNN_SERVE_POLL_S``, ``HQGNN_SERVE_THREADS``,
    ``HQGNN_SERVE_SCALED_INDEX_MIN_ITEMS``, ``HQGNN_SERVE_BATCH`` (0: one request at a time)."""
    threads = os.environ.get("HQGNN_SERVE_THREADS", "1")
    if not log.handlers:  # the service's own lines (swaps, refusals) on stderr; other libraries stay quiet
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    return create_app(
        os.environ.get("HQGNN_SERVE_WORKDIR", "hqgnn-work"),
        poll_s=float(os.environ.get("HQGNN_SERVE_POLL_S", "1.0")),
        compute_threads=int(threads) if threads else None,
        scaled_index_min_items=int(os.environ.get("HQGNN_SERVE_SCALED_INDEX_MIN_ITEMS", "100000")),
        batch=os.environ.get("HQGNN_SERVE_BATCH", "1") != "0",
    )
