#!/usr/bin/env bash
# GPU benchmark: GpuRnn (self-contained build from perf/gpu-run.sh) against PyTorch/cuDNN on the same card,
# in one run, everything as JSON into OUTDIR (DESIGN.md §8). Runs on the GPU machine (NVIDIA driver, python3
# with torch+CUDA, no .NET, no network):
#
#   bash perf/gpu-bench.sh OUTDIR [BUNDLE]   # needs .gpu/perf.tar.xz (carry it with the device tool);
#                                            # BUNDLE (e.g. $OUT/gpu.tar.gz): OUTDIR packed into one file at the end
#
# Proving the flow on a machine without a GPU (both sides on the CPU, tiny sizes):
#
#   GPURNN_BENCH_DEVICE=cpu bash perf/gpu-bench.sh /tmp/bench-cpu
#
# Knobs (environment): GPURNN_BENCH_DEVICE (cuda|cpu), GPURNN_BENCH_HIDDENS ("128 256 512 1024"),
# GPURNN_BENCH_CELLS ("rnn gru lstm"), GPURNN_BENCH_RECURRENCES ("per-step fused"; "default" passes no flag),
# GPURNN_BENCH_TEST_FILTER (default: every fixture on the device), GPURNN_BENCH_TEST_TIMEOUT_S (200),
# GPURNN_BENCH_TORCH (1; 0 skips the PyTorch side),
# GPURNN_BENCH_BATCH (64), GPURNN_BENCH_SEQ_LEN (100), GPURNN_BENCH_VOCAB (65), GPURNN_BENCH_LAYERS (1),
# GPURNN_BENCH_STEPS (20), GPURNN_BENCH_WARMUP (3), GPURNN_BENCH_BUDGET_S (450: the whole script stays under
# 8 minutes), GPURNN_BENCH_CMD_TIMEOUT_S (150), GPURNN_ARCHIVE (.gpu/perf.tar.xz), GPURNN_UNPACK_DIR
# (/tmp/gpurnn), PYTHON (python3). The CPU mode's defaults are tiny (H 16 32, B 4, T 8, 3 steps).
#
# OUTDIR gets: env.json, nvidia-smi.txt, probe.json, tests.log, tests.json, ours_CELL_RECURRENCE_H.json,
# torch_CELL_H_tf32off.json, torch_CELL_H_tf32on.json
# (each the tool's JSON line, or {"error": ...} when it failed or was skipped), *.err (stderr of each run),
# summary.json and summary.md (a table of all of it), bench.log.
set -uo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 OUTDIR [BUNDLE.tar.gz]" >&2
    exit 2
fi
START=$SECONDS
BUDGET=${GPURNN_BENCH_BUDGET_S:-480}
CMD_CAP=${GPURNN_BENCH_CMD_TIMEOUT_S:-150}
RESERVE=20                      # seconds kept for the summary at the end
DEVICE=${GPURNN_BENCH_DEVICE:-cuda}
case "$DEVICE" in
    cuda) d_h="128 256 512 1024"; d_b=64; d_t=100; d_steps=20; d_warm=3 ;;
    cpu)  d_h="16 32"; d_b=4; d_t=8; d_steps=3; d_warm=1 ;;
    *) echo "gpu-bench: GPURNN_BENCH_DEVICE must be cuda or cpu (got '$DEVICE')" >&2; exit 2 ;;
esac
HIDDENS=${GPURNN_BENCH_HIDDENS:-$d_h}
CELLS=${GPURNN_BENCH_CELLS:-rnn gru lstm}
RECURRENCES=${GPURNN_BENCH_RECURRENCES:-per-step fused}   # "default": pass no --recurrence flag
TORCH=${GPURNN_BENCH_TORCH:-1}                               # 0: our side only (PyTorch measured in an earlier call)
B=${GPURNN_BENCH_BATCH:-$d_b}
T=${GPURNN_BENCH_SEQ_LEN:-$d_t}
V=${GPURNN_BENCH_VOCAB:-65}
L=${GPURNN_BENCH_LAYERS:-1}
STEPS=${GPURNN_BENCH_STEPS:-$d_steps}
WARMUP=${GPURNN_BENCH_WARMUP:-$d_warm}
# A python that imports torch: $PYTHON, else the first of python3, /usr/bin/python3, python that does.
PY=${PYTHON:-}
if [[ -z "$PY" ]]; then
    for c in python3 /usr/bin/python3 python; do
        if command -v "$c" > /dev/null && "$c" -c 'import torch' 2> /dev/null; then PY=$c; break; fi
    done
    PY=${PY:-python3}
fi

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ARCHIVE=${GPURNN_ARCHIVE:-$SCRIPT_DIR/../.gpu/perf.tar.xz}
UNPACK=${GPURNN_UNPACK_DIR:-/tmp/gpurnn}
mkdir -p "$1" || exit 2
OUT="$(cd "$1" && pwd)"
LOG="$OUT/bench.log"
: > "$LOG"
log() { echo "[$(date -u +%H:%M:%S) +$((SECONDS - START))s] $*" | tee -a "$LOG"; }
remaining() { echo $((BUDGET - (SECONDS - START))); }
# The self-contained .NET app needs no ICU in invariant mode (the GPU machine may lack libicu).
export DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1

# error_json FILE RC WHAT COMMAND...: write {"error": ...} with the tail of FILE's .err into FILE.
error_json() {
    local file=$1 rc=$2 what=$3; shift 3
    "$PY" - "$file" "$rc" "$what" "$*" <<'EOF'
import json, os, sys
file, rc, what, cmd = sys.argv[1:5]
err = file[:-5] + ".err" if file.endswith(".json") else file + ".err"
tail = ""
if os.path.exists(err):
    with open(err, encoding="utf-8", errors="replace") as f:
        tail = f.read()[-3000:]
with open(file, "w", encoding="utf-8") as f:
    json.dump({"error": what, "rc": int(rc), "command": cmd, "stderrTail": tail}, f)
    f.write("\n")
EOF
}

# is_json FILE: the last non-empty line of FILE is a JSON object.
is_json() {
    "$PY" -c 'import json,sys; l=[x for x in open(sys.argv[1]) if x.strip()]; assert l and isinstance(json.loads(l[-1]), dict)' "$1" 2>/dev/null
}

# run_json NAME MIN_S CAP_S COMMAND...: run with a timeout, stdout -> OUT/NAME.json, stderr -> OUT/NAME.err.
# Skips (and says so in NAME.json) when fewer than MIN_S seconds are left before the reserve.
LAST_RC=0
run_json() {
    local name=$1 min_s=$2 cap_s=$3; shift 3
    local file="$OUT/$name.json" left=$(( $(remaining) - RESERVE ))
    if (( left < min_s )); then
        log "SKIP $name: ${left}s left before the reserve, needs ~${min_s}s"
        : > "$OUT/$name.err"
        error_json "$file" -1 "skipped: time budget (${left}s left, needed ~${min_s}s)" "$@"
        LAST_RC=-1
        return
    fi
    local limit=$(( left < cap_s ? left : cap_s )) t0=$SECONDS rc
    log "RUN  $name (timeout ${limit}s): $*"
    timeout -k 5 "$limit" "$@" > "$file" 2> "$OUT/$name.err"
    rc=$?
    if (( rc != 0 )) || ! is_json "$file"; then
        local what="failed (rc $rc)"
        (( rc == 124 || rc == 137 )) && what="timed out after ${limit}s"
        (( rc == 0 )) && what="no JSON on stdout"
        log "FAIL $name: $what; stderr tail: $(tail -c 400 "$OUT/$name.err" | tr '\n' ' ')"
        error_json "$file" "$rc" "$what" "$@"
        (( rc == 0 )) && rc=1
    else
        log "OK   $name in $((SECONDS - t0))s: $(tail -n 1 "$file" | cut -c1-220)"
    fi
    LAST_RC=$rc
}

log "gpu-bench: python $PY, device $DEVICE, H in [$HIDDENS], B=$B T=$T V=$V L=$L, $STEPS steps + $WARMUP warmup, budget ${BUDGET}s; out $OUT"

# --- the GpuRnn binary: unpack the archive (or use the folder this script was unpacked with) ---
if [[ -f "$ARCHIVE" ]]; then
    rm -rf "$UNPACK/perf"
    mkdir -p "$UNPACK"
    tar -C "$UNPACK" -xJf "$ARCHIVE" || { log "cannot unpack $ARCHIVE"; exit 1; }
    PERF_DIR="$UNPACK/perf"
    log "unpacked $ARCHIVE ($(stat -c %s "$ARCHIVE") bytes) into $PERF_DIR"
elif [[ -x "$SCRIPT_DIR/gpurnn-perf" ]]; then
    PERF_DIR="$SCRIPT_DIR"
    log "no archive at $ARCHIVE; using the unpacked build in $PERF_DIR"
else
    log "no archive at $ARCHIVE (build it with perf/gpu-run.sh and carry .gpu/perf.tar.xz) and no gpurnn-perf next to this script"
    exit 1
fi
OURS="$PERF_DIR/gpurnn-perf"
COMPARE="$SCRIPT_DIR/compare_pytorch.py"
[[ -f "$COMPARE" ]] || COMPARE="$PERF_DIR/compare_pytorch.py"

# --- the machine ---
if command -v nvidia-smi > /dev/null; then
    timeout 60 nvidia-smi -q > "$OUT/nvidia-smi.txt" 2>&1 || log "nvidia-smi -q failed"
    timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit,pstate \
        --format=csv > "$OUT/nvidia-smi.csv" 2>&1 || true
else
    echo "nvidia-smi not found on this machine (device $DEVICE)" > "$OUT/nvidia-smi.txt"
fi
"$PY" - "$OUT/env.json" "$PERF_DIR/BUILD_INFO.json" "$OUT/nvidia-smi.csv" "$DEVICE" <<'EOF' 2>> "$LOG" || log "env.json: python/torch probe failed"
import json, os, platform, sys, datetime
out, build, smi, device = sys.argv[1:5]
env = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(), "host": platform.node(),
       "uname": " ".join(platform.uname()), "python": sys.version.split()[0], "benchDevice": device,
       "cpuCount": os.cpu_count()}
try:
    env["build"] = json.load(open(build))
except Exception as e:
    env["build"] = f"unreadable: {e}"
if os.path.exists(smi):
    env["nvidiaSmi"] = open(smi).read().strip().splitlines()
try:
    import torch
    env["torch"] = torch.__version__
    env["torchCuda"] = torch.version.cuda
    env["cudaAvailable"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        env["cudaDevice"] = torch.cuda.get_device_name(0)
        env["cudnn"] = torch.backends.cudnn.version()
except Exception as e:
    env["torch"] = f"import failed: {e}"
json.dump(env, open(out, "w"), indent=1)
EOF

# --- does ILGPU see the device? If not, make libcuda.so resolve and retry ---
# one warmup step compiles nothing new but checks the whole step runs before timing
probe=(--device "$DEVICE" --hidden 32 --layers 1 --vocab "$V" --batch 8 --seq-len 8 --steps 1 --warmup 1 --json)
LIBCUDA_DIR=""
LIBCUDA=""
run_json probe_1 20 120 "$OURS" "${probe[@]}"
probe_rc=$LAST_RC
if (( probe_rc != 0 )) && [[ "$DEVICE" == cuda ]]; then
    LIBCUDA="$( (ldconfig -p 2>/dev/null || true) | awk '/libcuda\.so\.1 .*x86-64/{print $NF; exit}')"
    if [[ -z "$LIBCUDA" ]]; then
        for c in /usr/lib/x86_64-linux-gnu/libcuda.so.1 /usr/lib64/libcuda.so.1 /usr/lib/libcuda.so.1 \
                 /usr/local/nvidia/lib64/libcuda.so.1 /usr/lib/wsl/lib/libcuda.so.1 \
                 /usr/local/cuda/compat/libcuda.so.1; do
            [[ -e "$c" ]] && { LIBCUDA="$c"; break; }
        done
    fi
    if [[ -n "$LIBCUDA" ]]; then
        LIBCUDA_DIR="$UNPACK/libcuda"
        mkdir -p "$LIBCUDA_DIR"
        ln -sf "$LIBCUDA" "$LIBCUDA_DIR/libcuda.so"
        export LD_LIBRARY_PATH="$LIBCUDA_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        log "probe failed; retrying with $LIBCUDA_DIR/libcuda.so -> $LIBCUDA on LD_LIBRARY_PATH"
        run_json probe_2 20 120 "$OURS" "${probe[@]}"
        probe_rc=$LAST_RC
    else
        log "probe failed and no libcuda.so.1 found (ldconfig -p, common paths)"
    fi
fi
"$PY" - "$OUT/probe.json" "$probe_rc" "$LIBCUDA" "$LIBCUDA_DIR" "${LD_LIBRARY_PATH:-}" "$OUT" <<'EOF'
import json, os, sys
out, rc, lib, libdir, ldpath, d = sys.argv[1:7]
tries = {}
for n in ("probe_1", "probe_2"):
    p = os.path.join(d, n + ".json")
    if os.path.exists(p):
        tries[n] = json.loads([l for l in open(p) if l.strip()][-1])
json.dump({"oursWorks": rc == "0", "libcudaSo1": lib or None, "libcudaLinkDir": libdir or None,
           "LD_LIBRARY_PATH": ldpath, "attempts": tries}, open(out, "w"), indent=1)
EOF
if (( probe_rc == 0 )); then log "ILGPU opens $DEVICE"; else log "ILGPU cannot open $DEVICE: GpuRnn numbers will be errors; PyTorch still runs"; fi

# --- the whole test suite on the device: every fixture whose device spec is this device ---
# gpurnn-tests is tests/GpuRnn.Tests.Gpu (the same sources as GpuRnn.Tests, NUnit's own runner, self-contained).
# Fixtures are named after their device spec (GemmTests("cuda:0"), …), so the filter picks exactly those on $DEVICE;
# GPURNN_BENCH_TEST_FILTER overrides it (the CPU dry run uses a small subset).
TESTS="$PERF_DIR/GpuRnn.Tests"
TEST_FILTER=${GPURNN_BENCH_TEST_FILTER:-FullyQualifiedName~\"$DEVICE}
TEST_CAP=${GPURNN_BENCH_TEST_TIMEOUT_S:-200}
if [[ -x "$TESTS" ]]; then
    left=$(( $(remaining) - RESERVE ))
    limit=$(( left < TEST_CAP ? left : TEST_CAP ))
    log "RUN  tests (timeout ${limit}s): filter $TEST_FILTER"
    t0=$SECONDS
    (cd "$SCRIPT_DIR/.." && export GPURNN_REPO_ROOT="$PWD" && timeout -k 5 "$limit" "$TESTS" --filter "$TEST_FILTER" --no-ansi --no-progress --output Detailed \
        --results-directory "$OUT/test-results") > "$OUT/tests.log" 2>&1
    test_rc=$?
    log "tests finished (rc $test_rc) in $((SECONDS - t0))s: $(grep -E '^ +(total|failed|succeeded|skipped):' "$OUT/tests.log" | tr -s ' \n' ' ')"
else
    echo "no test program at $TESTS" > "$OUT/tests.log"
    test_rc=-1
    log "SKIP tests: no $TESTS in the archive"
fi
"$PY" - "$OUT/tests.log" "$OUT/tests.json" "$test_rc" "$TEST_FILTER" <<'PYEOF'
import json, re, sys
log, out, rc, flt = sys.argv[1:5]
text = open(log, encoding="utf-8", errors="replace").read()
counts = {k: int(v) for k, v in re.findall(r"^\s+(total|failed|succeeded|skipped):\s+(\d+)", text, re.M)}
failed, current = [], None
for line in text.splitlines():
    m = re.match(r"^failed (.+?) \(", line)
    if m:
        current = {"test": m.group(1), "message": []}
        failed.append(current)
    elif current is not None and len(current["message"]) < 12 and line.strip() and not re.match(r"^(passed|skipped) ", line):
        current["message"].append(line.strip())
    elif re.match(r"^(passed|skipped) ", line):
        current = None
for f in failed:
    f["message"] = "\n".join(f["message"])[:1500]
json.dump({"rc": int(rc), "filter": flt, "counts": counts, "failed": failed}, open(out, "w"), indent=1)
PYEOF

# --- the sweep: every cell, both recurrence paths, against PyTorch's nn.RNN/nn.GRU/nn.LSTM ---
prev_ours=20
prev_torch=20
tf32s=(off on)            # on the CPU the flag is a no-op; both still run, to prove the flow
for CELL in $CELLS; do
    for H in $HIDDENS; do
        shape=(--cell "$CELL" --hidden "$H" --layers "$L" --vocab "$V" --batch "$B" --seq-len "$T" --steps "$STEPS" --warmup "$WARMUP")
        first=""
        for REC in $RECURRENCES; do
            name="ours_${CELL}_${REC}_$H"
            first=${first:-$name}
            rec_flag=()
            [[ "$REC" != default ]] && rec_flag=(--recurrence "$REC")
            if (( probe_rc == 0 )); then
                t0=$SECONDS
                run_json "$name" $(( prev_ours * 2 )) "$CMD_CAP" "$OURS" "${shape[@]}" "${rec_flag[@]}" --optimizer adam --device "$DEVICE" --json
                (( LAST_RC >= 0 )) && prev_ours=$(( SECONDS - t0 > 10 ? SECONDS - t0 : 10 ))
            else
                : > "$OUT/$name.err"
                error_json "$OUT/$name.json" -1 "not run: ILGPU could not open $DEVICE (see probe.json)" "$OURS" "${shape[@]}"
            fi
        done
        for tf in "${tf32s[@]}"; do
            [[ "$TORCH" == 1 ]] || continue
            t0=$SECONDS
            run_json "torch_${CELL}_${H}_tf32$tf" $(( prev_torch * 2 )) "$CMD_CAP" "$PY" "$COMPARE" "${shape[@]}" \
                --device "$DEVICE" --tf32 "$tf" --json --ours "$OUT/$first.json"
            (( LAST_RC >= 0 )) && prev_torch=$(( SECONDS - t0 > 10 ? SECONDS - t0 : 10 ))
        done
    done
done

# --- summary ---
"$PY" - "$OUT" "$HIDDENS" "$CELLS" "$RECURRENCES" <<'EOF' | tee -a "$LOG"
import json, os, sys
d, hiddens, cells, recs = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4].split()

def load(name):
    p = os.path.join(d, name + ".json")
    if not os.path.exists(p):
        return {"error": "missing"}
    text = open(p, encoding="utf-8", errors="replace").read()
    try:
        return json.loads(text)                 # env.json, probe.json, tests.json: one indented object
    except Exception:
        pass
    lines = [l for l in text.splitlines() if l.strip()]
    try:
        return json.loads(lines[-1])            # tool output: the last line
    except Exception as e:
        return {"error": f"unreadable: {e}"}

def fmt(x, f="{:.0f}"):
    return "-" if x is None else f.format(x)

def ratio(a, b):
    return a / b if a and b else None

rows = []
for cell in cells:
    for h in hiddens:
        off, on = load(f"torch_{cell}_{h}_tf32off"), load(f"torch_{cell}_{h}_tf32on")
        algo = off.get("cudnn_algo") or on.get("cudnn_algo") or {}
        for rec in recs:
            o = load(f"ours_{cell}_{rec}_{h}")
            rows.append({
                "cell": cell, "hidden": int(h), "recurrence": o.get("recurrence", rec),
                "oursDevice": o.get("device"), "oursMsPerStep": o.get("medianMsPerStep"),
                "oursTokensPerSecond": o.get("tokensPerSecond"), "oursLaunchesPerStep": o.get("launchesPerStep"),
                "oursError": o.get("error"),
                "torchDevice": off.get("deviceName") or on.get("deviceName"),
                "torchTf32OffMsPerStep": off.get("medianMsPerStep"), "torchTf32OffTokensPerSecond": off.get("tokensPerSecond"),
                "torchTf32OnMsPerStep": on.get("medianMsPerStep"), "torchTf32OnTokensPerSecond": on.get("tokensPerSecond"),
                "ratioVsTf32Off": ratio(o.get("tokensPerSecond"), off.get("tokensPerSecond")),
                "ratioVsTf32On": ratio(o.get("tokensPerSecond"), on.get("tokensPerSecond")),
                "cudnnForward": algo.get("forward"), "cudnnBackward": algo.get("backward"),
                "torchErrors": [x.get("error") for x in (off, on) if x.get("error")] or None,
            })
env, probe, tests = load("env"), load("probe"), load("tests")
json.dump({"env": env, "probe": probe, "tests": tests, "rows": rows}, open(os.path.join(d, "summary.json"), "w"), indent=1)
md = ["| cell | H | recurrence | ours ms/step | ours tok/s | launches/step | torch ms (tf32 off) | torch tok/s (off) | torch tok/s (on) | ours/torch (off) | ours/torch (on) | cuDNN fwd / bwd |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|"]
short = lambda a: (a or "-").replace("CUDNN_RNN_ALGO_", "")
for r in rows:
    md.append(f"| {r['cell']} | {r['hidden']} | {r['recurrence']} | {fmt(r['oursMsPerStep'], '{:.2f}')} | {fmt(r['oursTokensPerSecond'])} | "
              f"{fmt(r['oursLaunchesPerStep'], '{:.0f}')} | {fmt(r['torchTf32OffMsPerStep'], '{:.2f}')} | "
              f"{fmt(r['torchTf32OffTokensPerSecond'])} | {fmt(r['torchTf32OnTokensPerSecond'])} | "
              f"{fmt(r['ratioVsTf32Off'], '{:.3f}')} | {fmt(r['ratioVsTf32On'], '{:.3f}')} | "
              f"{short(r['cudnnForward'])} / {short(r['cudnnBackward'])} |")
dev = env.get("cudaDevice") or (rows[0]["torchDevice"] if rows else None)
c = tests.get("counts", {})
md.insert(0, f"Device: {dev}; torch {env.get('torch')}, cuDNN {env.get('cudnn')}; ours works: {probe.get('oursWorks')}; "
             f"tests ({tests.get('filter')}): {c.get('succeeded', '-')} passed, {c.get('failed', '-')} failed, {c.get('skipped', '-')} skipped of {c.get('total', '-')}\n")
for f in tests.get("failed", []):
    md.append(f"\nFAILED {f['test']}: {f['message'][:300]}")
for r in rows:
    if r["oursError"]:
        md.append(f"\n{r['cell']} H={r['hidden']} {r['recurrence']} ours: {r['oursError']}")
    if r["torchErrors"] and r["recurrence"] == recs[0]:
        md.append(f"\n{r['cell']} H={r['hidden']} torch: {r['torchErrors']}")
text = "\n".join(md) + "\n"
open(os.path.join(d, "summary.md"), "w").write(text)
print(text)
EOF
log "done in $((SECONDS - START))s; results in $OUT"
if [[ $# -eq 2 ]]; then
    mkdir -p "$(dirname "$2")" && tar -C "$(dirname "$OUT")" -czf "$2" "$(basename "$OUT")" && log "bundled $OUT into $2"
fi
