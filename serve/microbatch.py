"""Micro-batching: concurrent requests share model calls.

Requests put their texts on a queue; one worker task gathers them for up to ``max_wait_ms`` or
until ``max_batch`` texts are waiting, scores them in one call off the event loop, and resolves
each request's future with its own rows. Under concurrency this approaches offline batch
throughput; with a single client it adds at most ``max_wait_ms`` of latency.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future


class MicroBatcher:
    def __init__(self, score: Callable[[list[str]], np.ndarray], max_batch: int = 32, max_wait_ms: float = 5.0):
        self._score = score
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def submit(self, texts: list[str]) -> np.ndarray:
        """Probabilities ``[len(texts), K]`` for one request's texts."""
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(texts, future))
        return await future

    async def _gather(self) -> list[_Job]:
        jobs = [await self._queue.get()]
        count = len(jobs[0].texts)
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while count < self.max_batch:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                job = await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                break
            jobs.append(job)
            count += len(job.texts)
        return jobs

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._gather()
            live = [job for job in jobs if not job.future.done()]  # timed-out requests are skipped
            if not live:
                continue
            texts = [text for job in live for text in job.texts]
            try:
                probs = await loop.run_in_executor(None, self._score, texts)
            except Exception as error:
                logger.exception("scoring failed for a batch of %d texts", len(texts))
                for job in live:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            start = 0
            for job in live:
                end = start + len(job.texts)
                if not job.future.done():
                    job.future.set_result(probs[start:end])
                start = end
