"""`qingfin batch` against `qingfin bench`, and peak memory against archive size, in one run.

    python bench/batch_throughput.py --model models/zhfin [--rows 50000]
        [--memory-rows 10000 200000] [--memory-model BUNDLE]

1. Generates an archive of ``--rows`` rows (test-split texts with fresh ids, 10 JSONL shards),
   runs the local batch engine over it and prints its rows/s next to the offline `qingfin bench`
   throughput of the same model at the same batch size (target: batch >= 90 % of bench).
2. Runs the batch engine in a subprocess per archive size in ``--memory-rows`` and prints peak
   RSS for each (target: flat). ``--memory-model`` may name a faster bundle: memory is a
   property of the streaming pipeline, not of the model's speed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_archive(texts: list[str], rows: int, directory: Path, shards: int = 10) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    handles = [open(directory / f"part-{i:03d}.jsonl", "w", encoding="utf-8") for i in range(shards)]
    for index in range(rows):
        record = {"id": f"r{index}", "author_id": f"acct{index % 5000}", "text": texts[index % len(texts)]}
        handles[index % shards].write(json.dumps(record, ensure_ascii=False) + "\n")
    for handle in handles:
        handle.close()
    return directory


def peak_rss_mb(model: str, archive: Path, output: Path) -> tuple[float, float]:
    code = (
        "import resource, sys, time\n"
        "from qingfin.serve.batch import BatchJob, run_batch\n"
        "t = time.time()\n"
        f"s = run_batch(BatchJob(model={model!r}, inputs=[{str(archive)!r}], output={str(output)!r}))\n"
        "assert s['reconciled']\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, time.time() - t)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    rss, seconds = result.stdout.split()[-2:]
    return float(rss), float(seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", default="data/processed/test.jsonl")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--memory-rows", type=int, nargs="*", default=[10_000, 200_000])
    parser.add_argument("--memory-model", help="bundle for the memory runs (default: --model)")
    args = parser.parse_args()

    from qingfin.serve.batch import BatchJob, run_batch
    from qingfin.serve.bench import bench_precision, load_texts

    texts = load_texts(args.data, 100_000)
    work = Path(tempfile.mkdtemp(prefix="qingfin-batch-bench-"))
    try:
        archive = make_archive(texts, args.rows, work / "archive")
        started = time.perf_counter()
        summary = run_batch(BatchJob(model=args.model, inputs=[str(archive)], output=str(work / "out"), batch_size=args.batch_size))
        batch_rate = summary["rows_read"] / (time.perf_counter() - started)
        offline = bench_precision(args.model, "int8", texts[:2000], None, budget_s=30)["batch32"]["texts_per_s"]
        print(f"batch engine: {summary['rows_read']} rows ({summary['results']} results, {summary['errors']} errors) "
              f"at {batch_rate:.1f} rows/s; qingfin bench batch {args.batch_size}: {offline:.1f} texts/s -> "
              f"batch/bench = {batch_rate / offline:.2f}")
        memory_model = args.memory_model or args.model
        for rows in args.memory_rows:
            shutil.rmtree(work / "mem", ignore_errors=True)
            rss, seconds = peak_rss_mb(memory_model, make_archive(texts, rows, work / "mem" / "archive"), work / "mem" / "out")
            print(f"memory: {rows:>7} rows -> peak RSS {rss:.0f} MB ({seconds:.0f} s, model {memory_model})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
