"""The ``qingfin`` command line: one sub-command per stage, each a thin shell over a function.

Heavy modules (torch, transformers) are imported inside the sub-commands that need them, so
``qingfin predict`` works with only the serving dependencies installed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

logger = logging.getLogger("qingfin")


def _print_json(document: object) -> None:
    print(json.dumps(document, ensure_ascii=False, indent=2))


# -- data ----------------------------------------------------------------------------------

def cmd_data_check(args: argparse.Namespace) -> int:
    from qingfin.data.rows import check_files

    report = check_files(args.files)
    for problem in report.problems:
        print(problem, file=sys.stderr)
    print(f"{report.rows} rows checked, {report.bad_rows} bad", file=sys.stderr)
    return 0 if report.ok else 1


def cmd_data_import(args: argparse.Namespace) -> int:
    from qingfin.data.build import DATA_DIR
    from qingfin.data.sources import import_sources

    _print_json(import_sources(args.shared, args.data_dir or DATA_DIR))
    return 0


def cmd_data_build(args: argparse.Namespace) -> int:
    from qingfin.data.build import DATA_DIR, build

    data_dir = Path(args.data_dir) if args.data_dir else DATA_DIR
    manifest = build(data_dir, Path(args.out) if args.out else None)
    _print_json({name: {k: v for k, v in split.items() if k in ("rows", "labels", "clean", "sha256")} for name, split in manifest["splits"].items()})
    return 0


def cmd_data_samples(args: argparse.Namespace) -> int:
    from qingfin.data.samples import write_sample_archive

    print(write_sample_archive(Path(args.test), Path(args.out), args.rows))
    return 0


# -- training pipeline ---------------------------------------------------------------------

def cmd_train(args: argparse.Namespace) -> int:
    from qingfin.training.config import load_config

    config, applied = load_config(args.config, args.set or [])
    for line in applied:
        print(f"override: {line}", file=sys.stderr)
    from qingfin.training.train import train

    run_dir = train(config)
    print(run_dir)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from qingfin.training.calibrate import calibrate_run

    result = calibrate_run(args.run_dir, args.data, args.set or [])
    summary = {
        label: {"temperature": round(c["temperature"], 4), "bias": round(c["bias"], 4), "ece_before": round(c["ece_before"], 4), "ece_after": round(c["ece_after"], 4),
                "review": round(result["thresholds"]["labels"][label]["review"], 4), "block": round(result["thresholds"]["labels"][label]["block"], 4)}
        for label, c in result["calibration"]["per_label"].items()
    }
    _print_json(summary)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from qingfin.models.export import export_run

    out = export_run(args.run_dir, args.out, fp32=not args.no_fp32, int8=not args.no_int8, speed=args.speed)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    _print_json({"bundle": str(out), "version": manifest["version"], "parity": manifest["parity"],
                 "files": {name: f["bytes"] for name, f in manifest["files"].items()}})
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from qingfin.models.evaluate import evaluate_file, markdown_report

    result = evaluate_file(args.model, args.data, args.out, precision=args.precision, attack=args.attack)
    print(markdown_report(result))
    return 0


# -- inference -----------------------------------------------------------------------------

def _stdin_items(stream) -> Iterator[tuple[int, dict | None, str | None]]:
    """``(line, {"id"?, "text"} or None, error or None)`` per non-blank stdin line.

    A line is a JSON object with a ``text`` field, or else plain text.
    """
    for number, line in enumerate(stream, start=1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                yield number, None, f"bad JSON: {error.msg}"
                continue
            text = row.get("text") if isinstance(row, dict) else None
            if not isinstance(text, str):
                yield number, None, "field 'text' missing or not a string"
                continue
            yield number, {"id": row.get("id"), "text": text}, None
        else:
            yield number, {"id": None, "text": line}, None


def cmd_predict(args: argparse.Namespace) -> int:
    from qingfin.serve import Classifier

    classifier = Classifier.load(args.model, precision=args.precision, threads=args.threads)
    if args.texts:
        items = [(i, {"id": None, "text": t}, None) for i, t in enumerate(args.texts, start=1)]
    else:
        items = list(_stdin_items(sys.stdin))
    good = [item for _, item, error in items if error is None]
    predictions = iter(classifier.predict([item["text"] for item in good]))
    errors = 0
    for line, item, error in items:
        if error is not None:
            errors += 1
            print(json.dumps({"line": line, "error": error}, ensure_ascii=False))
            continue
        record = {"line": line, **({"id": item["id"]} if item["id"] is not None else {}), **next(predictions).to_dict()}
        print(json.dumps(record, ensure_ascii=False))
    return 1 if errors else 0


def cmd_report(args: argparse.Namespace) -> int:
    from qingfin.models.report import build_report

    build_report(args.model, args.data_dir, args.out, args.fp32_model, args.base, args.notes)
    print((Path(args.out) / "README.md").read_text(encoding="utf-8"))
    return 0


def cmd_attack(args: argparse.Namespace) -> int:
    from qingfin.data.attack import attack_file

    _print_json(attack_file(args.data, args.out, kinds=args.kinds, seed=args.seed))
    return 0


def cmd_normalize(args: argparse.Namespace) -> int:
    from qingfin.data.normalize import get_normalizer

    normalizer = get_normalizer(args.normalizer)
    if args.bench:
        from qingfin.data.zh_fin import bench_normalizer
        from qingfin.serve.bench import load_texts

        _print_json(bench_normalizer(load_texts(args.bench, 100_000), seconds=args.seconds))
        return 0
    for text in args.texts or (line.rstrip("\n") for line in sys.stdin):
        print(normalizer(text))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from qingfin.serve.bench import format_bench, run_bench

    report = run_bench(args.model, args.data, args.limit, args.threads, args.torch_run, args.budget, args.repeats)
    print(format_bench(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    from qingfin.serve.batch import BatchJob, format_summary, run_batch

    job = BatchJob(model=args.model, inputs=args.input, output=args.output, text_field=args.text_field, id_field=args.id_field,
                   account_field=args.account_field, batch_size=args.batch_size, chunk_rows=args.chunk_rows,
                   max_chars=args.max_chars, write_jsonl=args.jsonl, policy=args.policy, threads=args.threads)
    summary = run_batch(job, engine=args.engine, workers=args.workers)
    print(format_summary(summary))
    return 0 if summary["reconciled"] else 2


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    from qingfin.serve.http import hash_api_key

    if args.hash_key:
        print(hash_api_key(args.hash_key))
        return 0
    if not args.model:
        raise SystemExit("qingfin serve: --model is required")
    import uvicorn

    # Workers are separate processes: settings travel through the environment to app_from_env.
    os.environ["QINGFIN_MODEL"] = str(Path(args.model).resolve())
    settings = {"QINGFIN_API_KEYS_FILE": args.api_keys_file, "QINGFIN_THREADS": args.threads,
                "QINGFIN_MAX_TEXTS": args.max_texts, "QINGFIN_MAX_CHARS_PER_TEXT": args.max_chars_per_text,
                "QINGFIN_MAX_BATCH": args.max_batch}
    os.environ.update({key: str(value) for key, value in settings.items() if value is not None})
    # Keep-alive longer than a loaded request takes, so clients never race a closing connection.
    uvicorn.run("qingfin.serve.http:app_from_env", factory=True, host=args.host, port=args.port, workers=args.workers,
                log_level="info", access_log=False, timeout_keep_alive=75)
    return 0


# -- base models ---------------------------------------------------------------------------

def cmd_base_tiny(args: argparse.Namespace) -> int:
    from qingfin.data.rows import iter_rows
    from qingfin.training.tiny_base import build_tiny_base

    texts = [row["text"] for path in args.texts_from for row in iter_rows(path)]
    print(build_tiny_base(texts, args.out, seed=args.seed))
    return 0


def _add_base(subparsers) -> None:
    try:
        from qingfin.training.base_cli import add_base_subcommands
    except ImportError:  # base conversion module not available in this install
        base = subparsers.add_parser("base", help="prepare and verify base models")
        base_sub = base.add_subparsers(dest="base_command", required=True)
    else:
        base_sub = add_base_subcommands(subparsers)
    tiny = base_sub.add_parser("tiny", help="build a tiny random BERT from texts (tests, demo)")
    tiny.add_argument("--texts-from", nargs="+", required=True, help="JSONL dataset files whose texts define the vocabulary")
    tiny.add_argument("--out", required=True)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=cmd_base_tiny)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qingfin", description="Detect online financial violations in Chinese platform content.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="dataset tools")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    check = data_sub.add_parser("check", help="validate JSONL dataset files; exit 1 if any row is bad")
    check.add_argument("files", nargs="+")
    check.set_defaults(func=cmd_data_check)
    build = data_sub.add_parser("build", help="rebuild data/processed/{train,dev,calib,test}.jsonl deterministically")
    build.add_argument("--data-dir", help="the repository's data/ directory (default: the installed package's)")
    build.add_argument("--out", help="output directory (default: DATA_DIR/processed)")
    build.set_defaults(func=cmd_data_build)
    imports = data_sub.add_parser("import-sources", help="copy annotated rows of the public datasets into data/sources")
    imports.add_argument("--shared", required=True, help="folder holding the public datasets (e.g. ../shared/data)")
    imports.add_argument("--data-dir", help="the repository's data/ directory")
    imports.set_defaults(func=cmd_data_import)
    samples = data_sub.add_parser("samples", help="write the sample archive used by the README's main job")
    samples.add_argument("--test", default="data/processed/test.jsonl")
    samples.add_argument("--out", default="data/samples/archive.jsonl")
    samples.add_argument("--rows", type=int, default=300)
    samples.set_defaults(func=cmd_data_samples)

    train = sub.add_parser("train", help="fine-tune a classifier from a TOML config")
    train.add_argument("--config", help="TOML run config (defaults apply for absent keys)")
    train.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override one config key (repeatable)")
    train.set_defaults(func=cmd_train)

    calibrate = sub.add_parser("calibrate", help="fit temperatures and review/block thresholds on the calib split")
    calibrate.add_argument("run_dir")
    calibrate.add_argument("--data", help="calibration file (default: the run config's data.calib)")
    calibrate.add_argument("--set", action="append", metavar="calibration.KEY=VALUE",
                           help="override one [calibration] key of the run's config, e.g. calibration.precision_confidence=0.9 "
                                "(repeatable; the policy used is recorded in thresholds.json)")
    calibrate.set_defaults(func=cmd_calibrate)

    export = sub.add_parser("export", help="export a calibrated run to a model bundle (ONNX fp32 + int8)")
    export.add_argument("run_dir")
    export.add_argument("--out", required=True)
    export.add_argument("--no-fp32", action="store_true", help="ship only the int8 model")
    export.add_argument("--no-int8", action="store_true", help="ship only the fp32 model")
    export.add_argument("--speed", help="a `qingfin bench --json` report to ship as speed.json and show in the model card")
    export.set_defaults(func=cmd_export)

    evaluate = sub.add_parser("evaluate", help="metrics of a bundle on a labeled JSONL file")
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--out", help="directory for metrics.json and report.md")
    evaluate.add_argument("--precision", choices=["int8", "fp32"])
    evaluate.add_argument("--attack", action="store_true", help="also report per-label F1 per obfuscation attack kind")
    evaluate.set_defaults(func=cmd_evaluate)

    predict = sub.add_parser("predict", help="moderate texts given as arguments, or JSONL/lines on stdin")
    predict.add_argument("--model", required=True)
    predict.add_argument("--precision", choices=["int8", "fp32"])
    predict.add_argument("--threads", type=int, default=None)
    predict.add_argument("texts", nargs="*")
    predict.set_defaults(func=cmd_predict)

    report = sub.add_parser("report", help="release evaluation report against baselines (Markdown + PNG)")
    report.add_argument("--model", required=True, help="the shipped (int8) bundle")
    report.add_argument("--fp32-model", help="a bundle with the fp32 twin")
    report.add_argument("--data-dir", default="data/processed")
    report.add_argument("--out", required=True)
    report.add_argument("--base", help="base model directory for the frozen-embedding baseline")
    report.add_argument("--notes", help="JSON {row id: analysis} for the worst-errors table")
    report.set_defaults(func=cmd_report)

    attack = sub.add_parser("attack", help="write seeded, label-preserving disguised copies of positive rows")
    attack.add_argument("--data", required=True)
    attack.add_argument("--out", required=True)
    attack.add_argument("--kinds", nargs="+", help="attack kinds (default: all)")
    attack.add_argument("--seed", type=int, default=0)
    attack.set_defaults(func=cmd_attack)

    normalize = sub.add_parser("normalize", help="print normalized texts, or benchmark a normalizer")
    normalize.add_argument("--normalizer", default="zh_fin.v1")
    normalize.add_argument("--bench", metavar="JSONL", help="benchmark posts/s on the texts of this file")
    normalize.add_argument("--seconds", type=float, default=3.0)
    normalize.add_argument("texts", nargs="*")
    normalize.set_defaults(func=cmd_normalize)

    bench = sub.add_parser("bench", help="speed of a bundle: throughput, latency, int8 vs fp32, GFLOP/s")
    bench.add_argument("--model", required=True)
    bench.add_argument("--data", default="data/processed/test.jsonl", help="JSONL with a text field (the real length mix)")
    bench.add_argument("--limit", type=int, default=1000, help="texts to use")
    bench.add_argument("--threads", type=int)
    bench.add_argument("--budget", type=float, default=20.0, help="seconds per measurement at most")
    bench.add_argument("--torch-run", help="training run directory, to add torch eager for comparison")
    bench.add_argument("--repeats", type=int, default=1, help="measure each precision N times, interleaved; report the median run")
    bench.add_argument("--json", help="also write the full report as JSON here")
    bench.set_defaults(func=cmd_bench)

    batch = sub.add_parser("batch", help="moderate archives (JSONL/CSV/Parquet) into Parquet shards; resumable")
    batch.add_argument("--model", required=True)
    batch.add_argument("--input", nargs="+", required=True, metavar="PATH_OR_GLOB", help="files, directories or globs")
    batch.add_argument("--output", required=True, help="output directory (re-running the same command resumes)")
    batch.add_argument("--resume", action="store_true", help="accepted for clarity: an existing matching job always resumes")
    batch.add_argument("--text-field", default="text")
    batch.add_argument("--id-field", default="id", help="missing ids are replaced by a content hash")
    batch.add_argument("--account-field", help="roll results up per account (accounts.parquet, contacts.parquet)")
    batch.add_argument("--policy", help="account policy TOML (default: the packaged one, see README)")
    batch.add_argument("--engine", choices=["local", "ray"], default="local")
    batch.add_argument("--workers", type=int, default=1, help="Ray actors (engine ray)")
    batch.add_argument("--batch-size", type=int, default=32)
    batch.add_argument("--chunk-rows", type=int, default=2048, help="rows per committed output shard")
    batch.add_argument("--max-chars", type=int, default=20_000, help="longer texts become error records")
    batch.add_argument("--threads", type=int, help="onnxruntime threads")
    batch.add_argument("--jsonl", action="store_true", help="also write JSONL result shards")
    batch.set_defaults(func=cmd_batch)

    serve = sub.add_parser("serve", help="run the moderation HTTP service (needs the http extra)")
    serve.add_argument("--model", help="bundle directory")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="worker processes, each with its own model copy")
    serve.add_argument("--threads", type=int, help="onnxruntime threads per worker")
    serve.add_argument("--api-keys-file", help="file of sha256 hashes of accepted API keys, one per line")
    serve.add_argument("--max-texts", type=int, help="maximum texts per request (default 64)")
    serve.add_argument("--max-chars-per-text", type=int, help="maximum characters per text (default 5000)")
    serve.add_argument("--max-batch", type=int, help="texts gathered per model call (default 64)")
    serve.add_argument("--hash-key", metavar="KEY", help="print the hash to store for an API key, then exit")
    serve.set_defaults(func=cmd_serve)

    _add_base(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
