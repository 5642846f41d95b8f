"""Load test of `qingfin serve` on loopback: concurrent clients, bounded in count and time.

    python bench/load_http.py --model models/zhfin [--data data/processed/test.jsonl]
        [--clients 50] [--requests 5000] [--max-seconds 300]

Starts the service on a free 127.0.0.1 port, sends ``--requests`` single-text requests of the
real length mix from ``--clients`` concurrent clients, and prints errors, p50/p99 latency and
throughput next to the offline ``qingfin bench`` throughput at batch 32 measured in the same run
(machines are noisy: only the ratio is comparable). Traffic goes to loopback only, and the run
stops by itself at ``--requests`` or ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("service did not become ready")


async def _post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int, body: bytes) -> int:
    """One keep-alive HTTP/1.1 POST on an open connection; returns the status code.

    A minimal client on purpose: on a 2-core machine a full HTTP library in the load generator
    would take CPU from the server it is measuring.
    """
    writer.write(b"POST /v1/moderate HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % (port, len(body)) + body)
    await writer.drain()
    status_line = await reader.readline()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    await reader.readexactly(length)
    return int(status_line.split()[1])


async def run_clients(port: int, texts: list[str], clients: int, requests: int, max_seconds: float) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    counter = iter(range(requests))
    deadline = time.perf_counter() + max_seconds
    bodies = [json.dumps({"text": text}, ensure_ascii=False).encode("utf-8") for text in texts]

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for index in counter:
                if time.perf_counter() > deadline:
                    return
                started = time.perf_counter()
                try:
                    status = await _post(reader, writer, port, bodies[index % len(bodies)])
                    if status != 200:
                        errors.append(f"HTTP {status}")
                except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                    errors.append(type(error).__name__)
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                latencies.append(time.perf_counter() - started)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "errors": len(errors), "error_kinds": sorted(set(errors)), "seconds": elapsed,
            "texts_per_s": len(latencies) / elapsed, "p50_ms": 1000 * float(np.percentile(latencies, 50)),
            "p99_ms": 1000 * float(np.percentile(latencies, 99))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", default="data/processed/test.jsonl")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--max-seconds", type=float, default=300)
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads for both measurements")
    args = parser.parse_args()

    from qingfin.serve.bench import bench_precision, load_texts

    texts = load_texts(args.data, 100_000)
    port = free_port()
    command = [sys.executable, "-m", "qingfin.training.cli", "serve", "--model", args.model, "--port", str(port)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    try:
        wait_ready(port)
        http = asyncio.run(run_clients(port, texts, args.clients, args.requests, args.max_seconds))
    finally:
        server.terminate()
        server.wait(timeout=30)
    offline = bench_precision(args.model, "int8", texts[:1000], args.threads, budget_s=20)["batch32"]
    ratio = http["texts_per_s"] / offline["texts_per_s"]
    print(json.dumps({"http": http, "offline_batch32": offline, "ratio": ratio}, indent=2))
    print(f"\nHTTP: {http['requests']} requests from {args.clients} clients, {http['errors']} errors, "
          f"p50 {http['p50_ms']:.1f} ms, p99 {http['p99_ms']:.1f} ms, {http['texts_per_s']:.1f} texts/s")
    print(f"offline qingfin bench (batch 32): {offline['texts_per_s']:.1f} texts/s -> HTTP/offline = {ratio:.2f}")
    return 0 if http["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
