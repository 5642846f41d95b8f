"""Join model.tar.part* from the device into runs/, casting the fp16 transfer weights to fp32.

Usage: receive.py FILES_DIR RUNS_DIR
"""
import sys
import tarfile
from pathlib import Path

from safetensors.torch import load_file, save_file

files, runs = Path(sys.argv[1]), Path(sys.argv[2])
tar_path = Path("/tmp/received.tar")
with tar_path.open("wb") as out:
    for part in sorted(files.glob("model.tar.part*")):
        out.write(part.read_bytes())
with tarfile.open(tar_path) as tar:
    names = {m.name.split("/")[0] for m in tar.getmembers()}
    tar.extractall(runs, filter="data")
for name in names:
    weights = runs / name / "model" / "encoder" / "model.safetensors"
    state = load_file(str(weights))
    save_file({k: v.float() for k, v in state.items()}, str(weights), metadata={"format": "pt"})
    print("received", runs / name)
