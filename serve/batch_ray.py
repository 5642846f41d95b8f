"""The Ray Data engine for ``qingfin batch --engine ray``.

Input shards become a Ray dataset; ``map_batches`` runs an actor pool in which each actor loads
the bundle once and scores whole shards with the same :func:`process_file` as the local
engine (same chunking, same atomic shard names, same resume state), so both engines write
identical results. Connects to ``RAY_ADDRESS`` when set, else starts a local Ray instance.
The bundle and the inputs must be readable at the same paths from every node (shared storage).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from qingfin.serve.batch import BatchJob, FileProgress, load_progress, process_file


class _ShardScorer:
    """A Ray actor: one Classifier per actor, reused for every shard it is given."""

    def __init__(self, job: dict):
        from qingfin.serve import Classifier

        self.job = BatchJob(**job)
        self.classifier = Classifier.load(self.job.model, threads=self.job.threads)

    def __call__(self, batch: dict) -> dict:
        done = []
        for index, file in zip(batch["index"], batch["file"]):
            progress = process_file(self.classifier, self.job, int(index), Path(str(file)))
            done.append(progress.rows_read)
        return {"index": batch["index"], "rows_read": done}


def run_files_on_ray(job: BatchJob, files: list[Path], workers: int) -> list[FileProgress]:
    import ray

    address = os.environ.get("RAY_ADDRESS")
    if not ray.is_initialized():
        if address:
            ray.init(address=address)
        else:
            ray.init(num_cpus=max(workers, 1), include_dashboard=False, log_to_driver=False)
    pending = [{"index": i, "file": str(f)} for i, f in enumerate(files) if not load_progress(Path(job.output), i, f).done]
    if pending:
        dataset = ray.data.from_items(pending)
        dataset.map_batches(
            _ShardScorer, fn_constructor_kwargs={"job": asdict(job)}, batch_size=1, concurrency=max(workers, 1), num_cpus=1
        ).materialize()
    return [load_progress(Path(job.output), i, f) for i, f in enumerate(files)]
