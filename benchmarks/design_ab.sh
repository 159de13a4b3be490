#!/usr/bin/env bash
# Design A/Bs of issue 14 at equal bases seen on CPU: each arm continues the shipped small model
# (--init-from, a fresh warm-up + cosine schedule) for the same number of steps on the same data,
# changing one thing:
#   row       control: today's per-row merge budget, every base weighted 1
#   chunk64   merge budget per 64-base chunk (config merge_budget=chunk, merge_chunk=64)
#   repeat01  lower-case (soft-masked repeat) bases weighted 0.1 in the loss (--repeat-weight 0.1)
#   perbase   no learned merging: compression 1.0 at training and inference (a per-base
#             transformer with the same parameters), the paper's central comparison
# Then each arm is evaluated by benchmarks/pretrain_eval.py (held-out chr20, both strands).
#
#   ARMS="row chunk64" STEPS=400 bash benchmarks/design_ab.sh runs/ab   (RESUME=1: continue)
set -euo pipefail
OUT=${1:-runs/ab}
STEPS=${STEPS:-400}
ARMS=${ARMS:-"row chunk64 repeat01 perbase"}
DATA=${DATA:-../shared/data}
BASE_MODEL=${BASE_MODEL:-models/mergedna-small}
mkdir -p "$OUT"

start_model() {  # the arm's starting model directory: the shipped weights, config edited
  local arm=$1 dir="$OUT/start-$1"
  mkdir -p "$dir"
  cp "$BASE_MODEL/model.safetensors" "$BASE_MODEL/training.json" "$dir/"  # training.json: bases seen before
  python - "$BASE_MODEL/config.json" "$dir/config.json" "$arm" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
arm = sys.argv[3]
if arm == "chunk64":
    config.update(merge_budget="chunk", merge_chunk=64)
if arm == "perbase":
    config.update(compression=1.0, train_compression=[1.0, 0.0, 1.0, 1.0])
json.dump(config, open(sys.argv[2], "w"), indent=2)
PY
  echo "$dir"
}

for arm in $ARMS; do
  extra=()
  [ "$arm" = repeat01 ] && extra=(--repeat-weight 0.1)
  files=()
  for f in "$DATA"/pretrain_corpus/{arabidopsis_TAIR10_chr1,celegans_first1pct_each_chromosome,drosophila_dm6_chr4,ecoli_K12_MG1655,yeast_R64_chrI,human_GRCh38_chr17_42425000-43600000}.fa.gz \
           "$DATA"/pretrain_human_extra/*.fa.gz "$DATA"/pretrain_human_more/*.fa.gz "$DATA"/pretrain_vertebrate_extra/*.fa.gz; do
    files+=(--fasta "$f")
  done
  python -m mergedna_cli pretrain --threads 1 "${files[@]}" --weight 'human_*=10' \
    --exclude models/recipes/exclude_brca1_locus.bed \
    --val-fasta "$DATA/pretrain_corpus/human_GRCh37_chr20_1Mb_vg1kgp.fa.gz" --val-windows 64 \
    $( [ -n "${RESUME:-}" ] && echo --resume || echo --init-from "$(start_model "$arm")" ) --batch-size 16 --lr 1e-3 --warmup "$((STEPS / 10))" --steps "$STEPS" \
    --val-every 50 --checkpoint-every 50 --seed 7 --cache-dir "$OUT/cache-$arm" -o "$OUT/$arm" --quiet \
    "${extra[@]}" > "$OUT/$arm.log" 2>&1 &
done
wait
