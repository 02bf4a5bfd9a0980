#!/usr/bin/env bash
# `make gpu-check`: everything oto does on CUDA, in one call, for a machine with NVIDIA GPUs
# (not part of `make test`, which runs anywhere). Needs the venv's CUDA build of PyTorch.
#
#   1. builds oto (release) with the NCCL backend of data-parallel training;
#   2. runs a HESSO job (the digits demo) on --device cuda and checks its verification;
#   3. times one training step of resnet18 on the oto executor against PyTorch eager on CUDA;
#   4. with 2 or more GPUs: the same job on 2 GPUs over NCCL (--nproc 2, synchronized
#      BatchNorm), its per-step losses compared with the 1-GPU job's.
#
# CUDA headers for the NCCL backend: a CUDA toolkit (CUDA_HOME or /usr/local/cuda), else the
# pip wheels' headers (nvidia-cuda-runtime beside torch, plus nvidia-cuda-crt and
# nvidia-cuda-cccl of the same CUDA version, downloaded into target/cuda-headers).
# Environment: PY (the venv's python), CARGO.
#
# `gpu_check.sh --preflight` only checks that an NVIDIA GPU is there (make runs it before
# setting anything up): on a machine without one, `make gpu-check` stops at once with exit
# code 2 (the script's 1) and says so, having built and downloaded nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CARGO=${CARGO:-cargo}
OUT=target/gpu-check

say() { printf '\n== %s\n' "$*"; }
fail() { printf 'gpu-check FAILED: %s\n' "$*" >&2; exit 1; }

say "GPUs"
command -v nvidia-smi >/dev/null || fail "no NVIDIA GPU here (nvidia-smi is not installed): make gpu-check is for a machine with NVIDIA GPUs and their driver; make test needs none"
nvidia-smi -L || fail "nvidia-smi found no NVIDIA GPU (is the driver loaded?)"
GPUS=$(nvidia-smi -L | grep -c '^GPU' || true)
[ "$GPUS" -ge 1 ] || fail "nvidia-smi lists no GPU"
[ "${1:-}" = "--preflight" ] && exit 0
mkdir -p "$OUT"
CUDA_VERSION=$("$PY" -c 'import torch; print(torch.version.cuda or "")')
[ -n "$CUDA_VERSION" ] || fail "the venv's PyTorch is a CPU-only build: install the CUDA wheel of the same version into it (pip's default torch wheel on Linux x86-64 is one)"
"$PY" -c 'import torch; assert torch.cuda.is_available(), "PyTorch sees no GPU"; print(torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name(0))' \
    || fail "the venv's PyTorch (CUDA $CUDA_VERSION) cannot use the GPU: is the driver older than that CUDA version?"

say "CUDA headers"
if [ -e "${CUDA_HOME:-/usr/local/cuda}/include/crt/host_config.h" ]; then
    echo "CUDA toolkit at ${CUDA_HOME:-/usr/local/cuda}"
else
    site=$("$PY" -c 'import torch, os; print(os.path.dirname(os.path.dirname(torch.__file__)))')
    headers="$OUT/../cuda-headers"
    mkdir -p "$headers"
    includes=""
    for pkg in nvidia-cuda-crt nvidia-cuda-cccl; do
        dir="$headers/$pkg"
        if [ ! -d "$dir" ]; then
            "$PY" -m pip download --disable-pip-version-check --no-deps -q -d "$headers/wheels" "$pkg==${CUDA_VERSION}.*"
            "$PY" -m zipfile -e "$(ls "$headers/wheels/${pkg//-/_}"-*.whl | head -n 1)" "$dir"
        fi
        for inc in "$dir"/nvidia/*/include; do includes="$includes:$(cd "$inc" && pwd)"; done
    done
    for inc in "$site"/nvidia/*/include; do includes="$includes:$inc"; done
    export OTO_CUDA_INCLUDE="${includes#:}"
    echo "OTO_CUDA_INCLUDE=$OTO_CUDA_INCLUDE"
fi
export OTO_C10D_NCCL=1

say "build (release, NCCL backend)"
"$CARGO" build --release --bin oto
"$CARGO" build --release -p oto-torch --example bench_step
OTO=target/release/oto
"$OTO" --version

say "HESSO job on --device cuda (digits demo)"
rm -rf "$OUT/demo-1"
"$OTO" prune --config examples/digits.toml --device cuda --out "$OUT/demo-1"
"$PY" - "$OUT/demo-1/report.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["job"]["device"].startswith("cuda"), f"the job ran on {r['job']['device']}"
assert r["verification"]["passed"], "compact vs sparse verification failed"
print("verification passed; accuracy", r["quality"]["compact"]["accuracy"], "group sparsity", r["group_sparsity"])
EOF

say "training step, oto vs PyTorch eager on CUDA (resnet18, batch 64)"
# make gpu-check exports only the demo CNN; resnet18 alone when the whole zoo is not there.
[ -e graphs/zoo/resnet18.onnx ] || "$PY" graphs/zoo.py --out graphs/zoo --only resnet18
oto_line=$(target/release/examples/bench_step graphs/zoo/resnet18.onnx --batch 64 --steps 20 --device cuda | head -n 1)
torch_line=$("$PY" bench/torch_step.py resnet18 --batch 64 --steps 20 --device cuda | head -n 1)
"$PY" - "$oto_line" "$torch_line" <<'EOF'
import json, sys
o, t = (json.loads(a)["median_step_s"] for a in sys.argv[1:3])
print(f"oto {o * 1e3:.2f} ms, PyTorch {t * 1e3:.2f} ms per step: oto/PyTorch = {o / t:.2f}")
EOF

if [ "$GPUS" -ge 2 ]; then
    say "NCCL: the job on 2 GPUs (--nproc 2 --sync-batch-norm) vs 1 GPU"
    rm -rf "$OUT/demo-1s" "$OUT/demo-2"
    "$OTO" prune --config examples/digits.toml --device cuda --steps 40 --out "$OUT/demo-1s" -q
    "$OTO" prune --config examples/digits.toml --device cuda --steps 40 --nproc 2 --sync-batch-norm --out "$OUT/demo-2" 2>&1 \
        | tee "$OUT/demo-2.log"
    grep -q "data-parallel over 2 processes" "$OUT/demo-2.log" || fail "the 2-GPU job did not run data-parallel"
    "$PY" - "$OUT/demo-1s" "$OUT/demo-2" <<'EOF'
import json, sys
a, b = (json.load(open(f"{d}/checkpoint/progress.json"))["history"]["steps"] for d in sys.argv[1:3])
worst = max(abs(x["loss"] - y["loss"]) / abs(x["loss"]) for x, y in zip(a, b))
print(f"{len(a)} steps, largest relative loss difference 1 GPU vs 2 GPUs: {worst:.2e}")
# cuDNN and NCCL reduce in other orders than one GPU: equal to float32 rounding, not bitwise.
assert worst < 1e-3, worst
EOF
else
    say "NCCL: skipped, $GPUS GPU (2 or more needed)"
fi
say "gpu-check passed"
