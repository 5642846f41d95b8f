"""The model bundle on disk: a directory of plain files described by ``manifest.json``.

Reading and verifying lives here (serving needs it); writing the manifest lives here too so
that both sides agree on one definition of the format. No pickles anywhere.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from qingfin.data.hashing import file_sha256

BUNDLE_FORMAT = "qingfin-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# Files every bundle must carry besides at least one ONNX model.
REQUIRED_FILES = (
    "tokenizer/tokenizer.json",
    "labels.json",
    "thresholds.json",
    "calibration.json",
    "normalizer.json",
)
MODEL_FILES = {"int8": "model.int8.onnx", "fp32": "model.onnx"}


class BundleError(RuntimeError):
    """A bundle is missing, corrupted, or of a format this qingfin cannot read."""


@dataclass(frozen=True)
class Bundle:
    """A verified bundle directory and its parsed JSON documents."""

    path: Path
    manifest: dict
    digest: str
    labels: dict
    thresholds: dict
    calibration: dict
    normalizer: dict

    def model_path(self, precision: str) -> Path:
        if precision not in MODEL_FILES:
            raise ValueError(f"precision must be one of {sorted(MODEL_FILES)}, got {precision!r}")
        path = self.path / MODEL_FILES[precision]
        if MODEL_FILES[precision] not in self.manifest["files"]:
            available = [p for p, f in MODEL_FILES.items() if f in self.manifest["files"]]
            raise BundleError(f"{self.path} has no {precision} model; available: {available}")
        return path


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"missing file {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(f"{path} is not valid JSON: {error}") from None


def _check_format(manifest: dict, path: Path) -> None:
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: not a qingfin bundle (format={manifest.get('format')!r})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format_version {version!r} is not supported by this qingfin "
            f"(supports {FORMAT_VERSION}); upgrade qingfin or re-export the model"
        )
    if not isinstance(manifest.get("files"), dict):
        raise BundleError(f"{path}: manifest has no 'files' table")


def _check_files(root: Path, files: dict) -> None:
    for name, expected in files.items():
        path = root / name
        if not path.is_file():
            raise BundleError(f"{root}: missing file {name} listed in the manifest")
        size = path.stat().st_size
        if size != expected["bytes"]:
            raise BundleError(f"{root}: {name} has {size} bytes, manifest says {expected['bytes']}")
        if file_sha256(path) != expected["sha256"]:
            raise BundleError(f"{root}: {name} does not match its sha256 in the manifest (changed or corrupted)")


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Read a bundle directory; with ``verify`` check the format and every file's sha256."""
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"no bundle directory at {root}")
    manifest_path = root / MANIFEST
    manifest_bytes = manifest_path.read_bytes() if manifest_path.is_file() else None
    if manifest_bytes is None:
        raise BundleError(f"{root}: missing {MANIFEST}")
    manifest = _read_json(manifest_path)
    _check_format(manifest, root)
    missing = [name for name in REQUIRED_FILES if name not in manifest["files"]]
    if missing or not any(f in manifest["files"] for f in MODEL_FILES.values()):
        raise BundleError(f"{root}: manifest lacks required files {missing or list(MODEL_FILES.values())}")
    if verify:
        _check_files(root, manifest["files"])
    return Bundle(
        path=root,
        manifest=manifest,
        digest=hashlib.sha256(manifest_bytes).hexdigest(),
        labels=_read_json(root / "labels.json"),
        thresholds=_read_json(root / "thresholds.json"),
        calibration=_read_json(root / "calibration.json"),
        normalizer=_read_json(root / "normalizer.json"),
    )


def write_manifest(root: str | Path, fields: dict) -> dict:
    """Write ``manifest.json`` listing sha256 and size of every other file under ``root``.

    ``fields`` supplies name, version, built_with, data hashes, parity figures...; format keys
    and the file table are added here so that every writer produces the same shape.
    """
    root = Path(root)
    files = {
        str(p.relative_to(root)): {"sha256": file_sha256(p), "bytes": p.stat().st_size}
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    manifest = {"format": BUNDLE_FORMAT, "format_version": FORMAT_VERSION, **fields, "files": files}
    (root / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return manifest
