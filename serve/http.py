"""``qingfin serve``: the moderation HTTP service (FastAPI; the ``http`` extra).

Endpoints: ``POST /v1/moderate``, ``GET /healthz``, ``GET /readyz``, ``GET /v1/model``,
``GET /metrics`` (Prometheus), ``GET /openapi.json``. Concurrent requests are micro-batched
(:mod:`qingfin.serve.microbatch`). Errors are JSON ``{"error": {"code", "message"}}`` without
stack traces. Logs carry sizes and timings, never the texts (privacy).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from qingfin.serve.classifier import Classifier
from qingfin.serve.microbatch import MicroBatcher

logger = logging.getLogger(__name__)


@dataclass
class ServeSettings:
    """Limits and batching knobs of the service (CLI flags map onto these)."""

    max_texts: int = 64
    max_chars_per_text: int = 5_000
    max_chars_per_request: int = 100_000
    max_batch: int = 64  # texts gathered per model call (micro-batch)
    inner_batch: int = 16  # length-sorted sub-batches inside a micro-batch: less padding on CPU
    max_wait_ms: float = 5.0
    request_timeout_s: float = 30.0
    api_key_hashes: list[str] = field(default_factory=list)


class ModerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[str] | None = Field(default=None, description="texts to moderate, in order")
    text: str | None = Field(default=None, description="a single text (alternative to texts)")
    thresholds: dict[str, dict[str, float]] | None = Field(default=None, description="per-label review/block overrides in [0, 1]")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def hash_api_key(key: str) -> str:
    """The sha256 hex stored in an API-keys file for ``key`` (keys are never stored in clear)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def read_api_key_hashes(path: str | Path) -> list[str]:
    """One sha256 hex per line (``name:hash`` also accepted); ``#`` comments and blanks ignored."""
    hashes = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        value = line.rsplit(":", 1)[-1].strip().lower()
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise ValueError(f"{path}:{number}: expected a sha256 hex digest (use `qingfin serve --hash-key KEY`)")
        hashes.append(value)
    return hashes


class Metrics:
    """Prometheus metrics in a registry of the app's own (several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("qingfin_requests_total", "HTTP requests", ["route", "status"], registry=self.registry)
        self.latency = Histogram("qingfin_request_seconds", "request latency", ["route"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.texts = Counter("qingfin_texts_scored_total", "texts scored", registry=self.registry)
        self.decisions = Counter("qingfin_decisions_total", "per-label decisions other than pass", ["label", "decision"], registry=self.registry)
        self.errors = Counter("qingfin_errors_total", "error responses", ["code"], registry=self.registry)


def _error(status: int, code: str, message: str, metrics: Metrics) -> JSONResponse:
    metrics.errors.labels(code=code).inc()
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


def _validated_texts(body: ModerateRequest, settings: ServeSettings) -> list[str]:
    if (body.texts is None) == (body.text is None):
        raise ApiError(422, "invalid_request", "give exactly one of 'texts' (a list) or 'text'")
    texts = body.texts if body.texts is not None else [body.text]
    if not texts:
        raise ApiError(422, "invalid_request", "'texts' is empty")
    if len(texts) > settings.max_texts:
        raise ApiError(413, "too_many_texts", f"{len(texts)} texts; the limit is {settings.max_texts} per request")
    for index, text in enumerate(texts):
        if len(text) > settings.max_chars_per_text:
            raise ApiError(413, "text_too_long", f"texts[{index}] has {len(text)} characters; the limit is {settings.max_chars_per_text}")
    total = sum(map(len, texts))
    if total > settings.max_chars_per_request:
        raise ApiError(413, "request_too_large", f"{total} characters in total; the limit is {settings.max_chars_per_request}")
    return texts


def _check_api_key(request: Request, settings: ServeSettings) -> None:
    if not settings.api_key_hashes:
        return
    header = request.headers.get("authorization", "")
    key = header[7:] if header.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
    if not key:
        raise ApiError(401, "unauthorized", "an API key is required (Authorization: Bearer KEY or X-API-Key)")
    candidate = hash_api_key(key)
    # Compare against every stored hash in constant time; no early exit on a match.
    matched = False
    for stored in settings.api_key_hashes:
        matched |= hmac.compare_digest(candidate, stored)
    if not matched:
        raise ApiError(401, "unauthorized", "invalid API key")


def create_app(model: str | Path | Classifier, settings: ServeSettings | None = None, threads: int | None = None) -> FastAPI:
    """The FastAPI application; the bundle is loaded once at start-up (lifespan) and warmed up."""
    settings = settings or ServeSettings()
    metrics = Metrics()
    state: dict = {"ready": False}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        classifier = model if isinstance(model, Classifier) else Classifier.load(model, threads=threads)
        batcher = MicroBatcher(lambda texts: classifier.predict_proba(texts, batch_size=settings.inner_batch),
                               settings.max_batch, settings.max_wait_ms)
        batcher.start()
        state.update(classifier=classifier, batcher=batcher)
        await asyncio.get_running_loop().run_in_executor(None, classifier.predict, ["预热 warm-up 加微信"])
        state["ready"] = True
        logger.info("model %s %s loaded (digest %s)", classifier.name, classifier.version, classifier.digest[:12])
        yield
        state["ready"] = False
        await batcher.stop()

    app = FastAPI(title="qingfin moderation API", version="1", lifespan=lifespan)

    @app.middleware("http")
    async def observe(request: Request, call_next):
        started = time.perf_counter()
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        try:
            response = await call_next(request)
        except Exception:
            logger.exception("unhandled error (request %s)", request_id)
            response = _error(500, "internal_error", "internal error", metrics)
        elapsed = time.perf_counter() - started
        route = request.url.path
        metrics.requests.labels(route=route, status=str(response.status_code)).inc()
        metrics.latency.labels(route=route).observe(elapsed)
        response.headers["x-request-id"] = request_id
        logger.info("%s %s -> %d in %.1f ms (request %s)", request.method, route, response.status_code, 1000 * elapsed, request_id)
        return response

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError):
        return _error(error.status, error.code, error.message, metrics)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return _error(422, "invalid_request", problems, metrics)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException):
        return _error(error.status_code, "http_error", str(error.detail), metrics)

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        if not state["ready"]:
            return _error(503, "not_ready", "model not loaded yet", metrics)
        return {"status": "ready"}

    @app.get("/v1/model")
    async def model_info(request: Request):
        _check_api_key(request, settings)
        return state["classifier"].info()

    @app.get("/metrics")
    async def prometheus():
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/moderate")
    async def moderate(request: Request, body: ModerateRequest):
        _check_api_key(request, settings)
        classifier: Classifier = state["classifier"]
        texts = _validated_texts(body, settings)
        try:
            thresholds = classifier.merged_thresholds(body.thresholds)
        except ValueError as error:
            raise ApiError(422, "invalid_thresholds", str(error)) from None
        try:
            probs = await asyncio.wait_for(state["batcher"].submit(texts), settings.request_timeout_s)
        except TimeoutError:
            raise ApiError(504, "timeout", f"scoring took longer than {settings.request_timeout_s} s") from None
        predictions = await asyncio.to_thread(
            lambda: [classifier.prediction_from_probs(t, p, thresholds) for t, p in zip(texts, probs)]
        )
        metrics.texts.inc(len(texts))
        for prediction in predictions:
            for label, decision in prediction.decisions.items():
                if decision != "pass":
                    metrics.decisions.labels(label=label, decision=decision).inc()
        return {
            "results": [p.to_dict() for p in predictions],
            "model_version": classifier.version,
            "model_digest": classifier.digest,
        }

    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` with several workers: settings come from the environment."""
    hashes_file = os.environ.get("QINGFIN_API_KEYS_FILE")
    settings = ServeSettings(api_key_hashes=read_api_key_hashes(hashes_file) if hashes_file else [])
    for name in ("max_texts", "max_chars_per_text", "max_chars_per_request", "max_batch"):
        if f"QINGFIN_{name.upper()}" in os.environ:
            setattr(settings, name, int(os.environ[f"QINGFIN_{name.upper()}"]))
    threads = int(os.environ["QINGFIN_THREADS"]) if os.environ.get("QINGFIN_THREADS") else None
    return create_app(os.environ["QINGFIN_MODEL"], settings, threads=threads)
