#!/usr/bin/env bash
# The GPU check of issue 8, one prepared script. Run from the repository root on a GPU machine:
#
#   OUT=/path/for/results bash benchmarks/gpu_check.sh                  # all phases, in order
#   OUT=... bash benchmarks/gpu_check.sh throughput reproduce           # only some phases
#
# Phases, in this order:  env  nbval  throughput  reproduce
#   env         nvidia-smi, torch / CUDA versions                         -> $OUT/env.txt
#   nbval       the whole notebook suite under nbval with LTKD_DEVICE=cuda -> $OUT/nbval.log, nbval.xml
#   throughput  ResNet-32 on CIFAR-10-LT: ltkd vs the PIL + DataLoader reference, eager and compiled
#                                                                          -> $OUT/throughput*.json / .log
#   reproduce   paper-profile runs (benchmarks/reproduce.py), as many as the time left allows
#                                                                          -> $OUT/reproduce/, reproduction.json
# Everything is summarised in $OUT/summary.txt (card, numbers, wall times).
#
# Budget: GPU_CHECK_SECONDS (default 570) for the whole script; each phase gets at most its own
# cap (NBVAL_SECONDS default 240, THROUGHPUT_SECONDS default 150) and never more than what is left.
# Data: the CIFAR-10 JPEG copy; on a machine without ../shared, copy it into the git-ignored
# benchmarks/out/cifar10-jpeg first (19 MB) and carry that path, or set LTKD_CIFAR10_JPEG.
# Dry run on a CPU, to test the script itself: GPU_CHECK_DRY=1 (CPU, collect-only nbval, tiny runs).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
BUDGET=${GPU_CHECK_SECONDS:-570}
DRY=${GPU_CHECK_DRY:-0}
START=$(date +%s)
PHASES=${*:-env nbval throughput reproduce}
export LTKD_PROGRESS=0
if [ "$DRY" = 1 ]; then export LTKD_DEVICE=cpu; else export LTKD_DEVICE=cuda; fi

left() { echo $(( BUDGET - ($(date +%s) - START) )); }
cap() { local l; l=$(left); l=$(( l - ${2:-0} )); [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
log() { echo "[$(date -u +%H:%M:%S) +$(( $(date +%s) - START ))s] $*" | tee -a "$OUT/summary.txt"; }

log "gpu_check: phases '$PHASES', budget ${BUDGET}s, device $LTKD_DEVICE, dry=$DRY, out $OUT"

for phase in $PHASES; do
  case $phase in
  env)
    { nvidia-smi 2>&1 || echo "nvidia-smi: not available"
      python -c "import torch, torchvision, platform; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'torchvision', torchvision.__version__, 'python', platform.python_version()); print('gpu', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none')"
      git rev-parse --short HEAD 2>/dev/null; } > "$OUT/env.txt" 2>&1
    log "env: $(grep -E '^gpu|^torch' "$OUT/env.txt" | tr '\n' ' ')"
    ;;
  nbval)
    t=$(cap "${NBVAL_SECONDS:-240}" 60)
    if [ "$t" -le 10 ]; then log "nbval: skipped (no time left)"; continue; fi
    extra=""; [ "$DRY" = 1 ] && extra="--collect-only"
    s=$(date +%s)
    timeout "$t" python -m pytest notebooks -q $extra --junitxml="$OUT/nbval.xml" > "$OUT/nbval.log" 2>&1
    rc=$?
    log "nbval (LTKD_DEVICE=$LTKD_DEVICE): rc=$rc in $(( $(date +%s) - s ))s$([ $rc = 124 ] && echo ' (TIMED OUT)'): $(tail -1 "$OUT/nbval.log")"
    ;;
  throughput)
    t=$(cap "${THROUGHPUT_SECONDS:-150}" 30)
    if [ "$t" -le 10 ]; then log "throughput: skipped (no time left)"; continue; fi
    args=""; [ "$DRY" = 1 ] && args="--images 256 --engine-epochs 2 --model cnn6 --workers 1 --dataset digits"
    s=$(date +%s)
    LTKD_COMPILE=0 timeout "$t" python benchmarks/throughput.py $args --json "$OUT/throughput.json" > "$OUT/throughput.log" 2>&1
    log "throughput eager: rc=$? in $(( $(date +%s) - s ))s: $(grep -E 'ratio|images/s' "$OUT/throughput.log" | tr '\n' ';')"
    t=$(cap "${THROUGHPUT_SECONDS:-150}" 30)
    if [ "$DRY" != 1 ] && [ "$t" -gt 30 ]; then
      s=$(date +%s)
      # CUDA graphs (reduce-overhead) take the per-kernel launch cost out of ResNet-32's small convolutions
      LTKD_COMPILE=${THROUGHPUT_COMPILE:-reduce-overhead} timeout "$t" python benchmarks/throughput.py --json "$OUT/throughput_compile.json" > "$OUT/throughput_compile.log" 2>&1
      log "throughput LTKD_COMPILE=${THROUGHPUT_COMPILE:-reduce-overhead}: rc=$? in $(( $(date +%s) - s ))s: $(grep -E 'engine|ratio ltkd engine' "$OUT/throughput_compile.log" | tr '\n' ';')"
    fi
    ;;
  reproduce)
    t=$(( $(left) - 15 ))
    if [ "$t" -le 30 ]; then log "reproduce: skipped (no time left)"; continue; fi
    args="--time-budget $(( t - 10 ))"; [ "$DRY" = 1 ] && args="--smoke --methods ce crt --seeds 0"
    s=$(date +%s)
    timeout "$t" python benchmarks/reproduce.py $args ${REPRODUCE_ARGS:-} --out "$OUT/reproduce" \
      --results "$OUT/reproduction.json" --no-page > "$OUT/reproduce.log" 2>&1
    log "reproduce: rc=$? in $(( $(date +%s) - s ))s"
    grep -E "^  " "$OUT/reproduce.log" | tee -a "$OUT/summary.txt"
    python - "$OUT/reproduce" 2>&1 <<'EOF' | tee -a "$OUT/summary.txt"
import json, sys, pathlib
for f in sorted(pathlib.Path(sys.argv[1]).glob("*/seed*/metrics.json")):
    m = json.loads(f.read_text())
    s1 = sum(h["seconds"] for h in m["history"] if h.get("stage") == "stage1")
    print(f"  {m['method']} seed {m['seed']}: top-1 {100 * m['overall']:.2f} %, stage-1 epochs "
          f"{sum(1 for h in m['history'] if h.get('stage') == 'stage1')} in {s1:.0f} s, run {m['seconds']:.0f} s, "
          f"{m['environment'].get('device_name')}")
EOF
    ;;
  *) log "unknown phase $phase (env nbval throughput reproduce)";;
  esac
done
log "gpu_check: done in $(( $(date +%s) - START ))s"
