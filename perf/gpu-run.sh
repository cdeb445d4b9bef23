#!/usr/bin/env bash
# Build the self-contained benchmark archive for the GPU machine (DESIGN.md §8). Run HERE, from any folder:
#
#   perf/gpu-run.sh [extra dotnet publish arguments, e.g. --artifacts-path /tmp/art]
#
# Produces .gpu/perf.tar.xz (git-ignored) holding perf/gpurnn-perf and perf/GpuRnn.Tests (the test suite with
# NUnit's runner), both self-contained linux-x64 in one folder,
# perf/compare_pytorch.py, perf/gpu-bench.sh and perf/BUILD_INFO.json, prints its size, then unpacks it
# into a temporary folder and runs the published binary on --device cpu with a tiny config to prove it
# starts (set GPURNN_SKIP_VERIFY=1 to skip). On the GPU machine, with the device tool:
#
#   run(command="bash perf/gpu-bench.sh /tmp/gpu $OUT/gpu.tar.gz", carry=[".gpu/perf.tar.xz"], timeout_s=540)
# ($OUT is the device tool's folder that comes back; the script keeps itself under 8 minutes.)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
GPU_DIR="$ROOT/.gpu"
PUB="$GPU_DIR/perf"
ARCHIVE="$GPU_DIR/perf.tar.xz"

rm -rf "$PUB" "$ARCHIVE"
mkdir -p "$GPU_DIR"

echo "== dotnet publish (self-contained linux-x64) -> $PUB"
# InvariantGlobalization: the GPU machine may lack libicu; the benchmark needs no culture data.
dotnet publish perf/GpuRnn.Perf/GpuRnn.Perf.csproj -c Release -r linux-x64 --self-contained -o "$PUB" \
    -p:InvariantGlobalization=true -p:DebugType=none -p:DebugSymbols=false -nologo -v quiet "$@"
test -x "$PUB/gpurnn-perf" || { echo "gpu-run: $PUB/gpurnn-perf missing after publish" >&2; exit 1; }
echo "== dotnet publish the test suite (tests/GpuRnn.Tests.Gpu, NUnit's runner) into the same folder"
# Same runtime and libraries as the benchmark: one folder, one copy of the runtime.
dotnet publish tests/GpuRnn.Tests.Gpu/GpuRnn.Tests.Gpu.csproj -c Release -r linux-x64 --self-contained -o "$PUB" \
    -p:InvariantGlobalization=true -p:DebugType=none -p:DebugSymbols=false -nologo -v quiet "$@"
test -x "$PUB/GpuRnn.Tests" || { echo "gpu-run: $PUB/GpuRnn.Tests missing after publish" >&2; exit 1; }

cp perf/compare_pytorch.py perf/gpu-bench.sh "$PUB/"
chmod +x "$PUB/gpu-bench.sh" "$PUB/compare_pytorch.py"
commit="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
dirty=false
git diff --quiet HEAD -- src kernels perf 2>/dev/null || dirty=true
cat > "$PUB/BUILD_INFO.json" <<EOF
{"commit": "$commit", "dirtyTree": $dirty, "builtAt": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "dotnet": "$(dotnet --version)", "rid": "linux-x64"}
EOF

echo "== tar -> $ARCHIVE"
XZ_OPT="${XZ_OPT:--6 -T0}" tar -C "$GPU_DIR" -cJf "$ARCHIVE" perf
archive_bytes=$(stat -c %s "$ARCHIVE")
tree_bytes=$(git ls-files -z -c -o --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
echo "archive: $ARCHIVE  $(mib "$archive_bytes") MiB ($archive_bytes bytes); published folder $(du -sh "$PUB" | cut -f1)"
echo "working tree (tracked + untracked, not ignored) $(mib "$tree_bytes") MiB + archive = $(mib $((tree_bytes + archive_bytes))) MiB (device tool limit 64 MiB)"
if (( tree_bytes + archive_bytes >= 64 * 1048576 )); then
    echo "gpu-run: tree + archive exceed 64 MiB: the device tool will refuse to carry them" >&2
    exit 1
fi

if [[ "${GPURNN_SKIP_VERIFY:-0}" != 1 ]]; then
    verify="$(mktemp -d /tmp/gpurnn-verify.XXXXXX)"
    echo "== verify: unpack into $verify and run the published binary on the CPU accelerator"
    tar -C "$verify" -xJf "$ARCHIVE"
    # Run from / with a clean environment for DOTNET_*: the self-contained binary must not need the SDK.
    (cd / && env -u DOTNET_ROOT DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 "$verify/perf/gpurnn-perf" \
        --device cpu --hidden 16 --layers 1 --vocab 17 --batch 4 --seq-len 4 --steps 2 --warmup 1 --json)
    rm -rf "$verify"
    echo "== verify ok"
fi
echo "next: on the GPU machine run  bash perf/gpu-bench.sh OUTDIR  with carry [\".gpu/perf.tar.xz\"]"
