#!/usr/bin/env bash
# Wheels and data that benchmarks/gpu_inference.py needs on the lent GPU machine, which has
# PyTorch (CUDA), numpy, onnx, onnxruntime (CPU only), safetensors, pyarrow and rich, but neither
# the project's other dependencies nor ../shared (only the repository travels). Run here, in the
# repository root, before the device call; the call carries .whl and .gpu_data (both ignored by
# .git/info/exclude) and installs the wheels into /tmp/site first (see the command printed at the end).
#
#   bash benchmarks/gpu_wheels.sh            # project dependencies + shared data (~30 MB)
#   bash benchmarks/gpu_wheels.sh --ort-gpu  # also onnxruntime-gpu into .whl-ort (see below)
#
# onnxruntime-gpu: 1.31.1 is the build for CUDA 13 (the machine's torch is cu130; its METADATA
# requires nvidia-cuda-runtime~=13.0 and nvidia-cudnn-cu13, which the machine has for torch). Its
# wheel is 255.6 MB (libonnxruntime_providers_cuda.so alone is 284 MB unpacked; xz -6 gets it to
# 186 MB), over the 64 MiB a device call can carry, so it goes to .whl-ort/ in 30 MB pieces, one
# piece per call, reassembled on the machine (which must stay warm between calls, 30 s): see
# docs/benchmarks.md, "GPU inference (prepared)". Without it the benchmark skips ONNX Runtime's
# CUDA provider and says why.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
for folder in /.whl/ /.whl-ort/ /.gpu_data/; do
    grep -qxF "$folder" .git/info/exclude 2>/dev/null || echo "$folder" >> .git/info/exclude
done
PY=${PYTHON:-python3}
download() {  # cp312 manylinux wheels for the machine's Python 3.12, no dependencies
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$@"
}
mkdir -p .whl .gpu_data
# pysam and pyBigWig are not on the machine; typer >= 0.29 (this project's CLI) needs pydantic,
# which is not there either. The versions are those of the development venv.
download .whl pysam==0.24.1 pyBigWig==0.3.29 typer==0.29.2 annotated-doc==0.0.7 pydantic==2.14.4 \
    pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 shellingham==1.5.4
SHARED=../shared/data
cp "$SHARED"/grch38_chr17_brca1_region/GRCh38_chr17_brca1_region.fa.gz* .gpu_data/
cp "$SHARED"/brca1_sge_findlay2018/variants.vcf.gz* .gpu_data/
du -sh .whl .gpu_data

if [[ "${1:-}" == "--ort-gpu" ]]; then
    mkdir -p .whl-ort
    download .whl-ort onnxruntime-gpu==1.31.1
    (cd .whl-ort && split -b 30m -d onnxruntime_gpu-1.31.1-*.whl ort.part- && rm onnxruntime_gpu-1.31.1-*.whl \
        && ls -la)
fi
cat <<'EOF'
device command prefix (carry [".whl", ".gpu_data"]):
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit;
EOF
