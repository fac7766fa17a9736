#!/usr/bin/env bash
# One GPU check for issue 13, run once on a lent machine from the repository root (one NVIDIA GPU, 16 CPUs,
# torch + lightning + timm + torchmetrics + opencv + scipy preinstalled; pydicom, albumentations, jsonargparse and
# pytest as wheels in ./.whl; no wandb there, so W&B is disabled and the GPU tests log to CSV). Figures go to
# $OUT/gpu_figures.txt (and .json) as each step finishes, and are printed. Every step runs under `timeout` within a
# total budget (GPU_CHECK_BUDGET seconds, default 510 for the steps after the data), so one failing or slow piece
# does not eat the rest.
#   bash tests/benchmarks/gpu_check.sh                      # on the GPU machine (device run: carry .whl, timeout 590 s)
#   GPU_CHECK_SMALL=1 bash tests/benchmarks/gpu_check.sh    # dry run on CPU at 384 x 256 (minutes on 2 cores)
# Measures, side by side in one run, in order of what issue 13 still needs (each step capped by the budget left), with
# one model setting CHOICE (GPU_CHECK_CHOICE; default the fastest on the H200s of 2026-11-27 and 2026-12-04:
# reduce-overhead CUDA graphs + GMIC's `compile_training_forward`, the whole training forward as one graph, +
# `global_stem: space_to_depth`, as configs/trainer/gpu.yaml, + `local_stem: space_to_depth`, new, not yet
# measured on a GPU: the local network reads the gray patch itself, not 3 copies of it):
# 1. tests/test_cuda.py but its last test (pytest comes from .whl, see below; 7 of 7 passed on 2026-12-04; the gray
#    local stem's is new): evaluation with every saliency method under CUDA graphs equals eager (`wsod test`
#    included), copy_ahead feeds the same batches, training with the whole forward as CUDA graphs equals eager (CAM,
#    then GradCAM++ patches), the space-to-depth stem and the gray local stem on cuDNN;
# 2. in one call, each in its own process: model only at batch 6, model only fed 8 held batches in turn (new data at a
#    new address every step, no transform), the model with the device transform of a held uint16
#    batch every step (model_device_transform: all of end to end's GPU work, no loading) and end to end (the
#    DataModule as gpu.yaml: 4 workers x 2 batches, augment_on + standardize_on device, pixel_reads main, copy_ahead)
#    in epochs of VinDr-like length, each then profiled for 10 more steps in its real loop (on 2026-12-04 end to end
#    ran at 0.78 of model only, GPU-bound: the compiled graphs took ~4 ms more a step behind the device transform; the
#    rotating batches and every row's SM clock, power and clock-event reasons say whether that is the transform, the
#    input changing, or the chip's clocks); then model only with that setting less the gray local stem (its gain);
# 3. test_cuda.py's last test (new, minutes of compiling: after the figures, so it cannot take their budget): a whole
#    `wsod fit` + `wsod test` with configs/trainer/gpu.yaml's compiled GMIC; sync-debug of end to end with that
#    setting (eager was clean on 2026-12-04);
# 4. the held batch through an eager device transform, end to end without copy_ahead; the top CUDA kernels and CPU vs
#    GPU time of a model-only training and evaluation step (bench_profile.py);
# 5. model only: eager and reduce-overhead alone ($MODES), each model opt-in alone, GradCAM patches;
# 6. the five maps' cost (bench_saliency.py), the stem's layouts, loader-only worker scaling and the pin-memory
#    thread's work, then compile default only if GPU_CHECK_LAST_MODES=default.
# .whl: `bash <the shared folder beside this checkout>/device/wheels.sh`, then `python3 -m pip download -q --no-deps -d .whl pytest iniconfig pluggy pygments packaging`
# (pure-Python wheels: the GPU machine has no pytest).
case "${1:-}" in  # it takes no arguments: anything given (--help, -h, a typo) prints the header above and stops
  "") ;;
  *) sed -n '2,/^# (pure-Python/s/^# \{0,1\}//p' "$0"; [ "$1" = --help ] || [ "$1" = -h ]; exit $? ;;
esac
if [ -d .whl ]; then
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
else
export PYTHONPATH=$PWD  # the dry run: the project's environment has every package
fi
set -u
export WANDB_MODE=disabled
OUT=${OUT:-$PWD/gpu_check_out}
# each step's JSON and log stay in WORK; OUT gets four files (a device call brings back only a few): the figures
# (.txt, and .json with every step's JSON), profile.txt and logs.tar.gz
WORK=${GPU_CHECK_WORK:-/tmp/gpu_check_work}
rm -rf "$WORK"; mkdir -p "$OUT" "$WORK/logs"
FIG=$OUT/gpu_figures.txt
B=tests/benchmarks
if [ -n "${GPU_CHECK_SMALL:-}" ]; then  # CPU dry run: same steps, tiny sizes
  DEV=cpu; H=384; W=256; STUDIES=3; BATCH=2; WORKERS=2; PREFETCH=2; STEPS=3; WARMUP=1; EPOCH_IMAGES=24
  MODES=${GPU_CHECK_MODES:-"none default"}; THREADS=2; LAST_MODES=""; CHOICE=${GPU_CHECK_CHOICE:-none_space_to_depth_gray_local}
  SCALE=1,2; PROC=2; BUDGET=${GPU_CHECK_BUDGET:-2400}; SLOW=4; PROFILE_ARGS="--batch 1 --evaluate_methods 0 --threads 2"
  PROFILE_STEPS=1  # a bf16 step here takes ~27 s (slow CPU convolutions)
else
  # On an H200 (2026-11-27) reduce-overhead gave 1.70x eager model-only, with both model opt-ins 2.12x (2.28x on
  # 2026-12-04; compile default 0.81-0.84x, only if GPU_CHECK_LAST_MODES asks).
  # 43 studies, one held out for validation: 168 training images, 28 batches of 6 (no short last batch, whose new
  # size would recompile the compiled networks inside the timed steps); an epoch of --epoch_images 1344 is 224
  # steps, more than the window.
  DEV=cuda; H=2944; W=1920; STUDIES=43; BATCH=6; WORKERS=4; PREFETCH=2; STEPS=100; WARMUP=6; EPOCH_IMAGES=1344
  MODES=${GPU_CHECK_MODES:-"none reduce-overhead"}; THREADS=4; LAST_MODES=${GPU_CHECK_LAST_MODES:-}
  CHOICE=${GPU_CHECK_CHOICE:-reduce-overhead_training_forward_space_to_depth_gray_local}
  SCALE=1,2,4,8,12,16; PROC=16; BUDGET=${GPU_CHECK_BUDGET:-510}; SLOW=1; PROFILE_ARGS="--batch 6 --bf16"; PROFILE_STEPS=10
fi
DATA=${GPU_CHECK_DATA:-/tmp/gpu_check_data}
COMMON=(--device "$DEV" --height "$H" --width "$W" --batch "$BATCH" --data "$DATA")
PIPE=(--precision bf16-mixed --threads "$THREADS" --warmup "$WARMUP" --steps "$STEPS" --standardize_on device --augment_on device
      --pixel_reads main --fused_adam --compile_device_transform)
PIPE_EAGER_TRANSFORM=()  # the same without compile_device_transform (step 4)
for a in "${PIPE[@]}"; do [ "$a" != --compile_device_transform ] && PIPE_EAGER_TRANSFORM+=("$a"); done
{ echo "gpu_check $(date -u +%FT%TZ) small=${GPU_CHECK_SMALL:-0}"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
  python3 -c "import torch, lightning; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'lightning', lightning.__version__, 'cpus', __import__('os').cpu_count())"; } | tee "$FIG"

START=$(date +%s)
step() {  # step NAME SECONDS COMMAND...: run under timeout (capped by the budget left); keep its output
  local name=$1 limit=$(($2 * SLOW)); shift 2  # SLOW: the 2-core dry run compiles for minutes
  local left=$((BUDGET - ($(date +%s) - START)))
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$limit" -lt 15 ]; then echo "== $name: skipped (budget spent)" | tee -a "$FIG"; return 1; fi
  echo "== $name (limit ${limit}s): $*" | tee -a "$FIG"
  local t0=$(date +%s)
  # own process group, killed whole on time-out: a benchmark's child processes must not outlive it (GPU held)
  setsid "$@" > "$WORK/logs/$name.log" 2>&1 &
  local pid=$!
  ( sleep "$limit"; kill -TERM -- "-$pid" 2>/dev/null; sleep 10; kill -KILL -- "-$pid" 2>/dev/null ) &
  local watcher=$!
  wait "$pid"
  local rc=$?
  kill "$watcher" 2>/dev/null
  kill -KILL -- "-$pid" 2>/dev/null  # whatever of the step is still alive (stray children)
  [ "$rc" -ge 128 ] && echo "-- $name: TIMED OUT after ${limit}s (process group killed)" | tee -a "$FIG"
  grep -v -e '^prepare' -e 'Warning' -e 'warn(' "$WORK/logs/$name.log" | grep -v '^\s*$' | tail -n 40 | tee -a "$FIG"
  echo "-- $name: rc=$rc in $(( $(date +%s) - t0 ))s" | tee -a "$FIG"
  return $rc
}

# 0. Data: >= 150 training images + NPY cache, written by many processes (not counted in BUDGET, but timed).
if [ ! -f "$DATA/cache/manifest.json" ]; then
  rm -rf "$DATA"
  BUDGET_SAVE=$BUDGET; BUDGET=100000
  step data 150 python3 $B/synthdata.py "$DATA" --studies "$STUDIES" --height "$H" --width "$W" --processes "$PROC"
  BUDGET=$BUDGET_SAVE
fi
START=$(date +%s)

flags() {  # flags LABEL: bench_pipeline's GMIC options for a label MODE[_training_forward][_space_to_depth][_gray_local]
  local -a f=(--compile "${1%%_*}")
  [[ $1 == *_training_forward* ]] && f+=(--compile_training_forward)
  [[ $1 == *_space_to_depth* ]] && f+=(--global_stem space_to_depth)
  [[ $1 == *_gray_local* ]] && f+=(--local_stem space_to_depth)
  echo "${f[@]}"
}
model_only() {  # model_only LABEL: one model-only row of the options LABEL names
  step "model_only_$1" 150 python3 $B/bench_pipeline.py "${COMMON[@]}" "${PIPE[@]}" --variants model_only $(flags "$1") \
    --json "$WORK/model_only_$1.json"
}
MODEL=($(flags "$CHOICE"))
echo "model setting: $CHOICE (${MODEL[*]})" | tee -a "$FIG"

# 1. What only a GPU can test (tests/test_cuda.py), first, each named as it ends, failing or not; all but the whole fit
# + test with gpu.yaml (step 3: its compilation would take step 2's budget).
LAST_CUDA_TEST=test_the_gpu_config_fits_validates_and_tests_with_its_compiled_gmic
if [ "$DEV" = cuda ]; then
  step cuda_tests 240 python3 -m pytest -v --tb=short -p no:cacheprovider tests/test_cuda.py -k "not $LAST_CUDA_TEST"
fi

# 2. Model only, the held batch through the device transform and end to end with copy_ahead, side by side in one call
# with the chosen setting, each profiled for $PROFILE_STEPS more steps in its own loop (host vs GPU time per step, top
# kernels: logs.tar.gz); each variant's line is printed as it ends (the budget may stop the last); the figures'
# summary below compares them.
step end_to_end 420 python3 $B/bench_pipeline.py "${COMMON[@]}" "${PIPE[@]}" --workers "$WORKERS" --prefetch "$PREFETCH" \
  --epoch_images "$EPOCH_IMAGES" "${MODEL[@]}" \
  --variants model_only,model_only_rotating,model_device_transform,pipeline_copy_ahead \
  --json "$WORK/end_to_end.json" \
  --profile_steps "$PROFILE_STEPS" --profile_out "$WORK/logs/profile_end_to_end"
for f in "$WORK"/logs/profile_end_to_end.*.txt; do
  [ -f "$f" ] && { echo "${f##*/}:"; head -n 2 "$f"; } | tee -a "$FIG"
done
# the gray local stem's gain: model only with the same setting less it, right after step 2's model only
[[ $CHOICE == *_gray_local* ]] && model_only "${CHOICE/_gray_local/}"

# 3. gpu.yaml's whole fit + test (never yet run on a GPU), then sync-debug: any host-device synchronization inside a
# training step raises (the chosen setting, copy_ahead).
if [ "$DEV" = cuda ]; then
  step cuda_gpu_config 200 python3 -m pytest -v --tb=short -p no:cacheprovider tests/test_cuda.py -k "$LAST_CUDA_TEST"
  step sync_debug 150 python3 $B/bench_pipeline.py "${COMMON[@]}" "${PIPE[@]}" --workers "$WORKERS" --prefetch "$PREFETCH" \
    --epoch_images "$EPOCH_IMAGES" "${MODEL[@]}" --variants pipeline_copy_ahead --sync_debug --json "$WORK/sync_debug.json"
fi

# 4. The held batch through an eager device transform (is the compiled transform what slows the compiled graphs
# after it?), end to end without copy_ahead; top kernels of one training and one evaluation step with the setting.
step held_eager_transform 150 python3 $B/bench_pipeline.py "${COMMON[@]}" "${PIPE_EAGER_TRANSFORM[@]}" "${MODEL[@]}" \
  --variants model_device_transform --json "$WORK/held_eager_transform.json"
step end_to_end_plain 150 python3 $B/bench_pipeline.py "${COMMON[@]}" "${PIPE[@]}" --workers "$WORKERS" \
  --prefetch "$PREFETCH" --epoch_images "$EPOCH_IMAGES" "${MODEL[@]}" --variants pipeline --json "$WORK/end_to_end_plain.json"
step profile 120 python3 $B/bench_profile.py --device "$DEV" --height "$H" --width "$W" $PROFILE_ARGS --top 20 \
  "${MODEL[@]}" --warmup 3 --out "$OUT/profile.txt"

# 5. The other model-only rows, side by side with step 2's: eager and each compile mode alone ($MODES), each model
# opt-in alone, the chosen setting with GradCAM selecting the patches (closed-form gradient: still one graph).
for mode in $MODES; do
  [ "$mode" != "$CHOICE" ] && model_only "$mode"
done
MODE=${CHOICE%%_*}
if [ "$MODE" != none ]; then
  for label in "${MODE}_training_forward" "${MODE}_space_to_depth" "${MODE}_gray_local"; do
    [ "$label" != "$CHOICE" ] && model_only "$label"
  done
fi
step "model_only_${CHOICE}_gradcam" 150 python3 $B/bench_pipeline.py "${COMMON[@]}" "${PIPE[@]}" --variants model_only \
  "${MODEL[@]}" --saliency gradcam --json "$WORK/model_only_${CHOICE}_gradcam.json"

# 6. Evaluation's five maps (every validation and test step), the stem's layouts alone, loader-only worker scaling
# (the data path has not changed since its 2026-11-27 figures), then compile default if GPU_CHECK_LAST_MODES asks.
step saliency 60 python3 $B/bench_saliency.py --device "$DEV" --height "$H" --width "$W" --batch "$BATCH" --iters 5
step stem 60 python3 $B/bench_stem.py --device "$DEV" --height "$H" --width "$W" --batch "$BATCH" --json "$WORK/stem.json"
step loader 150 python3 $B/bench_loader.py --device "$DEV" --height "$H" --width "$W" --batch "$BATCH" --data "$DATA" \
  --workers "$SCALE" --batches 10 --transfer_workers "$WORKERS" --json "$WORK/loader.json"
for mode in $LAST_MODES; do
  model_only "$mode"
done

python3 - "$WORK" "$OUT" "$CHOICE" <<'PY' | tee -a "$FIG"
import json, pathlib, sys
work, out, choice = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
figures = {p.stem: json.loads(p.read_text()) for p in sorted(work.glob("*.json"))}
(out / "gpu_figures.json").write_text(json.dumps(figures, indent=1))
def rate(name, variant):
    return figures.get(name, {}).get("results", {}).get(variant, {}).get("images_per_s")
eager = rate("model_only_none", "model_only")
print("== summary (img/s at the batch above)")
for name in sorted(figures):
    for variant, r in figures[name].get("results", {}).items():
        if isinstance(r, dict) and "images_per_s" in r:
            extra = {k: round(v, 2) for k, v in r.items() if k != "images_per_s" and isinstance(v, float)}
            print(f"{name}/{variant}: {r['images_per_s']:.1f} img/s"
                  + (f" ({r['images_per_s'] / eager:.2f}x eager model-only)" if eager else "") + f" {extra}")
mo = rate("end_to_end", "model_only")
held = rate("end_to_end", "model_device_transform")
if mo:
    print(f"model-only ({choice}) / 196 img/s (issue 13's start, 2026-11-26): {mo / 196:.2f} (target >= 2)")
without_gray = rate(f"model_only_{choice.replace('_gray_local', '')}", "model_only")
if mo and without_gray and "_gray_local" in choice:
    print(f"model-only ({choice}) / the same without the gray local stem: {mo / without_gray:.2f}")
if held and mo:
    print(f"model-only with the device transform / model-only ({choice}): {held / mo:.2f} (its GPU work alone)")
rotating = rate("end_to_end", "model_only_rotating")
if rotating and mo:
    print(f"model-only fed held batches in turn / model-only ({choice}): {rotating / mo:.2f} (new input every step)")
for variant, r in figures.get("end_to_end", {}).get("results", {}).items():
    if isinstance(r, dict) and "sm_clock_mhz_mean" in r:
        print(f"{variant}: SM clock mean {r['sm_clock_mhz_mean']:.0f} MHz (min {r['sm_clock_mhz_min']:.0f}), power "
              f"{r['power_w_mean']:.0f} W of {r['power_limit_w']:.0f}, held down for power "
              f"{100 * r.get('power_capped_share', float('nan')):.0f}% of samples")
held_eager = rate("held_eager_transform", "model_device_transform")
if held_eager and mo:
    print(f"the same with an eager device transform / model-only: {held_eager / mo:.2f}")
for name, pipeline in (("end_to_end", "pipeline_copy_ahead"), ("end_to_end_plain", "pipeline")):
    e2e = rate(name, pipeline)
    if e2e and mo:
        print(f"end-to-end {pipeline} / model-only ({choice}, step 2): {e2e / mo:.2f} (target >= 0.95)")
    if e2e and held:
        print(f"end-to-end {pipeline} / model-only with the device transform: {e2e / held:.2f} (loading alone)")
for name in sorted(figures):  # each opt-in against its compile mode alone, model only
    mode = name.removeprefix("model_only_").split("_")[0]
    if name.startswith("model_only_") and name != f"model_only_{mode}":
        alone, found = rate(f"model_only_{mode}", "model_only"), rate(name, "model_only")
        if alone and found:
            print(f"{name} / model_only_{mode}: {found / alone:.2f}")
sd = rate("sync_debug", "pipeline_copy_ahead")
if sd and mo:
    print(f"end-to-end under sync-debug / model-only ({choice}, step 2): {sd / mo:.2f}")
if "sync_debug" in figures:
    print("sync-debug:", "clean" if sd else "FAILED or not run (see logs/sync_debug.log)")
PY
tar -czf "$OUT/logs.tar.gz" -C "$WORK" logs
echo "figures: $FIG, $OUT/gpu_figures.json, $OUT/profile.txt, logs in $OUT/logs.tar.gz"
