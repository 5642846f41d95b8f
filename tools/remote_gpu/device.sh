#!/bin/bash
# Device wrapper (workplace only): install carried wheels, rebuild the base, run the committed
# sweep, pack the chosen 6-layer model for the trip back.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
if [ -z "${SKIP_WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
mkdir -p /tmp/qf/qingfin; for p in data training models serve; do ln -sfn "$PWD/$p" /tmp/qf/qingfin/$p; done
export PYTHONPATH=/tmp/qf:${PYTHONPATH:-} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
PY=${PY:-python3}
$PY -c "import transformers, torch; print('transformers', transformers.__version__, 'torch', torch.__version__, torch.cuda.is_available())"
$PY tools/remote_gpu/unpack_base.py .gpu/basepack /tmp/base || exit 1
MINUTES=4 MINUTES2=2 BASE=/tmp/base RUNS=/tmp/runs PY=$PY bash training/sweeps/zhfin_model_choice.sh
$PY tools/remote_gpu/pick_and_pack.py /tmp/runs "$OUT"
for f in /tmp/runs/*.log; do echo "== $f"; grep -a -E "eval_macro_f1|trained in|Error" "$f" | tail -n 12; done > "$OUT/runs.log"
