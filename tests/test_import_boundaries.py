"""Serving must not drag in the training stack: checked in a fresh interpreter."""

import subprocess
import sys

HEAVY = ("torch", "transformers", "datasets", "sklearn")


def test_serve_imports_no_training_stack(tiny_bundle):
    code = (
        "import sys\n"
        "from qingfin.serve import Classifier\n"
        f"clf = Classifier.load({str(tiny_bundle)!r})\n"
        "clf.predict(['加微信 abc123 领内部额度'])\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
