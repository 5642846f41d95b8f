"""Summarise the sweep's runs; pack the best 6-layer model (fp16 weights) in <=15 MB parts.

Usage: pick_and_pack.py RUNS_DIR OUT_DIR
"""
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from safetensors.torch import load_file, save_file

runs, out = Path(sys.argv[1]), Path(sys.argv[2])
rows = []
for summary_path in sorted(runs.glob("*/train_summary.json")):
    s = json.loads(summary_path.read_text())
    history = []
    states = sorted(summary_path.parent.glob("checkpoints/checkpoint-*/trainer_state.json"),
                    key=lambda p: int(p.parent.name.split("-")[1]))
    if states:
        log = json.loads(states[-1].read_text())["log_history"]
        history = [(e["epoch"], round(e["eval_macro_f1"], 4)) for e in log if "eval_macro_f1" in e]
    c = s["config"]
    rows.append({"run": summary_path.parent.name, "layers": c["model"]["layers"] or 12,
                 "lr": c["train"]["learning_rate"], "epochs": c["train"]["epochs"],
                 "teacher": c["train"]["teacher"], "alpha": c["train"]["distill_alpha"],
                 "freeze_embeddings": c["model"]["freeze_embeddings"],
                 "best_dev_macro_f1": s["best_dev_macro_f1"], "wall_seconds": s["wall_seconds"],
                 "global_steps": s["global_steps"], "dev_history": history, "device": s.get("device")})
best = max(r["best_dev_macro_f1"] for r in rows)
six = [r for r in rows if r["layers"] == 6]
chosen = max(six, key=lambda r: r["best_dev_macro_f1"])
result = {"runs": rows, "best_dev_macro_f1": best, "chosen": chosen["run"],
          "chosen_within_1_point": best - chosen["best_dev_macro_f1"] <= 0.01}
(out / "sweep.json").write_text(json.dumps(result, indent=2))
for r in sorted(rows, key=lambda r: -r["best_dev_macro_f1"]):
    print(f'{r["run"]:<24} L{r["layers"]:<3} dev {r["best_dev_macro_f1"]:.4f} {r["wall_seconds"]:>6.0f}s {r["dev_history"]}')
print("chosen", chosen["run"])

# The chosen run: everything but the checkpoints; encoder weights cast to fp16 for the transfer.
src = runs / chosen["run"]
pack = Path("/tmp/pack") / chosen["run"]
shutil.copytree(src, pack, ignore=shutil.ignore_patterns("checkpoints"))
weights = pack / "model" / "encoder" / "model.safetensors"
state = load_file(str(weights))
save_file({k: v.half() for k, v in state.items()}, str(weights), metadata={"format": "pt", "transfer": "fp16"})
with tarfile.open("/tmp/pack.tar", "w") as tar:
    tar.add(pack, arcname=chosen["run"])
subprocess.run(["split", "-b", "15000000", "-d", "/tmp/pack.tar", str(out / "model.tar.part")], check=True)
print(sorted(p.name for p in out.iterdir()))
