#!/usr/bin/env bash
# Fetches NVIDIA's ptxas, and nothing else, for the static proof of the CUDA path (DESIGN.md §8a):
# Debian ships it in the non-free binary package nvidia-cuda-toolkit (CUDA 11.8 on Debian 12: sm_50 … sm_90,
# PTX ISA ≤ 7.8). The script points apt at this machine's Debian archive with `Components: non-free`, keeping
# apt's lists and cache in a temporary folder (the system's sources and package state are not touched),
# downloads that one package (84 MB) without installing it and extracts /usr/bin/ptxas (19 MB) into
# .tools/ptxas/ptxas (git-ignored).
#
# Idempotent: a ptxas that runs is kept and the script returns at once. It never fails the caller (.ci/run):
# when the archive cannot be reached it writes the reason to .tools/ptxas/UNAVAILABLE, says so on stderr and
# exits 0; PtxTests then reports skipped with that reason.
#
# Knobs: GPURNN_PTXAS_PACKAGE (default nvidia-cuda-toolkit), GPURNN_PTXAS_MIRROR (default: the machine's
# Debian URI), GPURNN_PTXAS_SUITE (default: the machine's release codename).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.tools/ptxas"

if [ -x "$dest/ptxas" ] && "$dest/ptxas" --version >/dev/null 2>&1; then
  echo "fetch-ptxas: $dest/ptxas present"
  exit 0
fi
mkdir -p "$dest"
rm -f "$dest/UNAVAILABLE"
unavailable() {
  echo "$*" >"$dest/UNAVAILABLE"
  echo "fetch-ptxas: $* (PtxTests will be skipped)" >&2
  exit 0
}
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || unavailable "apt-get and dpkg-deb are needed (Debian)"

package=${GPURNN_PTXAS_PACKAGE:-nvidia-cuda-toolkit}
suite=${GPURNN_PTXAS_SUITE:-$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")}
[ -n "$suite" ] || unavailable "no Debian release codename in /etc/os-release"
mirror=${GPURNN_PTXAS_MIRROR:-}
if [ -z "$mirror" ]; then
  # The machine's own Debian archive: first URI of a deb822 source, else of a one-line source, serving main.
  mirror=$(awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null)
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $2 !~ /security/ && / main/ { print $2; exit }' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
fi
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$keyring" ] || unavailable "no Debian archive keyring at $keyring"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/sources" "$work/lists/partial" "$work/cache/archives/partial"
cat >"$work/sources/non-free.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite
Components: non-free
Signed-By: $keyring
EOF
apt=(apt-get -q -o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$work/sources"
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o "APT::Sandbox::User=root"
  -o "Acquire::Retries=1" -o "Acquire::http::Timeout=30")
[ "$(id -u)" -eq 0 ] || apt+=(-o "Debug::NoLocking=1")

start=$(date +%s)
if ! timeout 120 "${apt[@]}" update >"$work/update.log" 2>&1; then
  unavailable "apt-get update of $mirror $suite non-free failed: $(tail -n 2 "$work/update.log" | tr '\n' ' ')"
fi
if ! (cd "$work" && timeout 600 "${apt[@]}" download "$package" >"$work/download.log" 2>&1); then
  # apt-get update exits 0 when it could not reach the archive; its first complaint says why.
  unavailable "apt-get download $package from $mirror $suite non-free failed: $(tail -n 1 "$work/download.log")$(grep -m 1 -E '^(W|E):' "$work/update.log" | sed 's/^/ after /')"
fi
deb=$(ls "$work"/"$package"_*.deb 2>/dev/null | head -n 1)
[ -n "$deb" ] || unavailable "apt-get download $package left no .deb"
if ! dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work" ./usr/bin/ptxas 2>"$work/tar.log"; then
  unavailable "$(basename "$deb") holds no ./usr/bin/ptxas: $(tr '\n' ' ' <"$work/tar.log")"
fi
"$work/usr/bin/ptxas" --version >/dev/null 2>&1 || unavailable "the extracted ptxas does not run"
mv "$work/usr/bin/ptxas" "$dest/ptxas"
echo "fetch-ptxas: $dest/ptxas from $(basename "$deb") in $(($(date +%s) - start)) s: $("$dest/ptxas" --version | tail -n 1)"
