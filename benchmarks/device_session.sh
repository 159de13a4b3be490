#!/usr/bin/env bash
# The one prepared command for a session that is lent a GPU (issue 14's sprint and issue 15's
# GPU inference measurements in a single device call, inside its 10-minute limit).
#
# On the CPU machine first:   bash benchmarks/gpu_wheels.sh && python models/recipes/fill_gpudata.py
# Then the device tool:       run(command="bash benchmarks/device_session.sh",
#                                 carry=[".whl", ".gpu_data", ".gpudata"], timeout_s=590)
# CPU dry run (tiny sizes):   DEVICE=cpu bash benchmarks/device_session.sh /tmp/dry
#
# $OUT gets at most 8 files: gpu_inference.json/.log, sprint.log, the bf16 weight shards and
# run.tar (config, index, metrics, evaluation). The inference part runs first and is cut at
# INFER_SECONDS, so the sprint keeps SPRINT_BUDGET seconds whatever happens before it.
set -uo pipefail
OUT=${1:-${OUT:?set OUT or pass a folder}}
DEVICE=${DEVICE:-cuda}
INFER_SECONDS=${INFER_SECONDS:-150}
SPRINT_BUDGET=${SPRINT_BUDGET:-380}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MERGEDNA_CACHE=${MERGEDNA_CACHE:-/tmp/mdna-cache}
if [ "$DEVICE" = cuda ]; then
  # the GPU machine lacks pysam, pyBigWig and this typer: wheels carried in .whl
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site || exit 1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu_inference.log"
  infer=(--device cuda --models mergedna-small)
  sprint=(--device cuda --budget "$SPRINT_BUDGET" --link-shared)
else
  infer=(--device cpu --quick --no-cli)
  sprint=(--device cpu --budget 60 --preset tiny --batch 2 --context 128 --warmup 4 --log-every 2 --val-every 4 --bench-seconds 0 --eval-windows 4
          --skip-zero-shot --compile-scope off)
fi
PY=${PY:-python3}
timeout -s INT "$INFER_SECONDS" "$PY" benchmarks/gpu_inference.py "${infer[@]}" --data .gpu_data \
  --json "$OUT/gpu_inference.json" 2>&1 | tee -a "$OUT/gpu_inference.log"
"$PY" models/recipes/gpu_sprint_large.py --data .gpudata --out "$OUT" "${sprint[@]}" 2>&1 | tee "$OUT/sprint.log"
