#!/usr/bin/env bash
# Recipe of the shipped model models/mergedna-small: pre-train the small preset on the shared
# genomes, human up-weighted 10x per base, human chr20 held out for validation, the BRCA1 gene
# (+-50 kb) excluded. Re-run with RESUME=1 to continue from the last checkpoint.
# On 2 CPU cores, 2 DDP processes x 1 thread beat 1 process x 2 threads (small ops scale poorly
# across OpenMP threads, and collapse when another process competes for the cores).
# Global batch = NPROC x 16 windows of 512 bases; 6,250 steps x 32 x 512 = 102.4 M bases.
set -euo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs/mergedna-small}
NPROC=${NPROC:-2}
STEPS=${STEPS:-6250}
python -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m mergedna_cli pretrain --threads 1 \
  --fasta "$DATA/pretrain_corpus/arabidopsis_TAIR10_chr1.fa.gz" \
  --fasta "$DATA/pretrain_corpus/celegans_first1pct_each_chromosome.fa.gz" \
  --fasta "$DATA/pretrain_corpus/drosophila_dm6_chr4.fa.gz" \
  --fasta "$DATA/pretrain_corpus/ecoli_K12_MG1655.fa.gz" \
  --fasta "$DATA/pretrain_corpus/yeast_R64_chrI.fa.gz" \
  --fasta "$DATA/pretrain_corpus/human_GRCh38_chr17_42425000-43600000.fa.gz" \
  --fasta "$DATA/pretrain_human_extra/human_GRCh38_chr2_1-2333275.fa.gz" \
  --fasta "$DATA/pretrain_human_extra/human_GRCh38_chr22_20000001-21000000.fa.gz" \
  --weight 'human_*=10' \
  --exclude models/recipes/exclude_brca1_locus.bed \
  --val-fasta "$DATA/pretrain_corpus/human_GRCh37_chr20_1Mb_vg1kgp.fa.gz" --val-windows 128 \
  --preset small --batch-size 16 --lr 2e-3 --warmup 200 --steps "$STEPS" \
  --val-every 200 --checkpoint-every 100 --seed 0 -o "$OUT" ${RESUME:+--resume} "$@"
