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

    result = calibrate_run(args.run_dir, args.data)
    summary = {
        label: {"temperature": round(c["temperature"], 4), "ece_before": round(c["ece_before"], 4), "ece_after": round(c["ece_after"], 4),
                "review": round(result["thresholds"]["labels"][label]["review"], 4), "block": round(result["thresholds"]["labels"][label]["block"], 4)}
        for label, c in result["calibration"]["per_label"].items()
    }
    _print_json(summary)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from qingfin.models.export import export_run

    out = export_run(args.run_dir, args.out, fp32=not args.no_fp32, int8=not args.no_int8)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    _print_json({"bundle": str(out), "version": manifest["version"], "parity": manifest["parity"],
                 "files": {name: f["bytes"] for name, f in manifest["files"].items()}})
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from qingfin.models.evaluate import evaluate_file, markdown_report

    result = evaluate_file(args.model, args.data, args.out, precision=args.precision)
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

    train = sub.add_parser("train", help="fine-tune a classifier from a TOML config")
    train.add_argument("--config", help="TOML run config (defaults apply for absent keys)")
    train.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override one config key (repeatable)")
    train.set_defaults(func=cmd_train)

    calibrate = sub.add_parser("calibrate", help="fit temperatures and review/block thresholds on the calib split")
    calibrate.add_argument("run_dir")
    calibrate.add_argument("--data", help="calibration file (default: the run config's data.calib)")
    calibrate.set_defaults(func=cmd_calibrate)

    export = sub.add_parser("export", help="export a calibrated run to a model bundle (ONNX fp32 + int8)")
    export.add_argument("run_dir")
    export.add_argument("--out", required=True)
    export.add_argument("--no-fp32", action="store_true", help="ship only the int8 model")
    export.add_argument("--no-int8", action="store_true", help="ship only the fp32 model")
    export.set_defaults(func=cmd_export)

    evaluate = sub.add_parser("evaluate", help="metrics of a bundle on a labeled JSONL file")
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--out", help="directory for metrics.json and report.md")
    evaluate.add_argument("--precision", choices=["int8", "fp32"])
    evaluate.set_defaults(func=cmd_evaluate)

    predict = sub.add_parser("predict", help="moderate texts given as arguments, or JSONL/lines on stdin")
    predict.add_argument("--model", required=True)
    predict.add_argument("--precision", choices=["int8", "fp32"])
    predict.add_argument("--threads", type=int, default=None)
    predict.add_argument("texts", nargs="*")
    predict.set_defaults(func=cmd_predict)

    _add_base(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
