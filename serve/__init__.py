"""qingfin.serve: load a model bundle and moderate texts with onnxruntime.

Imports no torch, transformers or datasets (proved by tests/test_import_boundaries.py)::

    from qingfin.serve import Classifier
    clf = Classifier.load("models/zhfin")
    clf.predict(["加薇信看内部渠道额度"])[0].decision

``Classifier`` is imported lazily so that light submodules (``qingfin.serve.scoring``) can be
used by training code without loading onnxruntime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["BundleError", "Classifier", "Prediction"]

if TYPE_CHECKING:
    from qingfin.serve.bundle import BundleError
    from qingfin.serve.classifier import Classifier, Prediction


def __getattr__(name: str):
    if name == "BundleError":
        from qingfin.serve.bundle import BundleError

        return BundleError
    if name in ("Classifier", "Prediction"):
        from qingfin.serve import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module 'qingfin.serve' has no attribute {name!r}")
