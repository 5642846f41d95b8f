"""The built wheel installs the one import name ``qingfin`` with working serving code."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).parent.parent


@pytest.mark.slow
def test_wheel_builds_and_imports(tmp_path):
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path / "dist"), str(REPO)],
                   check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("qingfin-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "qingfin/serve/classifier.py" in names and "qingfin/data/LABELS.md" in names
    assert not any(name.startswith(("data/", "serve/", "tests/")) for name in names)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    code = "import qingfin.serve, qingfin.data.schema as s; print(qingfin.serve.__file__); print(len(s.LABELS))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert result.returncode == 0, result.stderr
    first, count = result.stdout.split()
    assert first.startswith(str(target)) and count == "6"
