#!/usr/bin/env bash
# The GPU path, checked where a CUDA GPU is present (CI has none): the CUDA-marked tests, the
# main job's VAE on cuda in fp32 and bf16, the world model's debug preset, a one-process
# torchrun with nccl, the importance-sampled evaluation on cuda, and the diffusion bound batched
# over (image, t) against calc_bpd_loop's order on cuda (issue 12), each with its wall time.
# Under 5 minutes on one recent GPU. Run from the repository root, in the project's venv:
#
#     bash benchmarks/gpu_check.sh [OUT]          (OUT: where the runs go, default a temp folder)
#
# Exits 0 with a note when there is no GPU; otherwise with the first failure's status.
set -uo pipefail
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); nothing to check"
    exit 0
fi
python -c "import torch; p = torch.cuda.get_device_properties(0); print(f'GPU {p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}, bf16 {torch.cuda.is_bf16_supported()}')"
status=0
step() {  # step NAME COMMAND...: run, time, record
    local name="$1"; shift
    local t0; t0=$(date +%s.%N)
    "$@" > "$out/$name.log" 2>&1
    local rc=$?
    local t1; t1=$(date +%s.%N)
    printf '%-34s %7.1f s  exit %d\n' "$name" "$(echo "$t1 - $t0" | bc)" "$rc"
    if [ "$rc" -ne 0 ]; then tail -20 "$out/$name.log"; [ "$status" -eq 0 ] && status=$rc; fi
}
step "pytest -m cuda" python -m pytest -q -m cuda tests/
step "train vae cuda fp32 (30 epochs)" elbokit train vae --device cuda --no-progress --out "$out/vae-fp32"
step "train vae cuda bf16 (30 epochs)" elbokit train vae --device cuda --precision bf16 --no-progress --eval-k 0 --out "$out/vae-bf16"
step "eval vae cuda k=1000" elbokit eval "$out/vae-fp32" --device cuda --k 1000
step "eval vae cpu k=1000" elbokit eval "$out/vae-fp32" --k 1000
step "train world-model debug cuda" elbokit train world-model --preset debug --device cuda --no-progress --out "$out/wm"
step "diffusion bound cuda, 500 images, every t" python benchmarks/diffusion_bench.py bound --device cuda --t-stride 1 --batch 2048
step "torchrun 1 process nccl" torchrun --standalone --nproc_per_node=1 -m elbokit train vae --preset debug --device cuda --no-progress --out "$out/ddp"
for run in vae-fp32 vae-bf16; do
    python - "$out/$run" <<'PY'
import json, sys
from elbokit.report.metrics import last_with, read_metrics
last = last_with(read_metrics(f"{sys.argv[1]}/metrics.jsonl"), "test/elbo")
print(f"{sys.argv[1]}: test ELBO {last['test/elbo']:.2f} nats after {last['step']} steps")
PY
done
grep -h "log p(x)" "$out"/eval*.log "$out/vae-fp32.log" 2>/dev/null | head -3
grep -h "batched\|one t at a time\|ratio" "$out"/diffusion*.log 2>/dev/null
echo "logs and runs in $out"
exit $status
