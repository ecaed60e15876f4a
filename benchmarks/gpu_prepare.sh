#!/usr/bin/env bash
# Run HERE (the machine with the package registries), before a GPU session: everything the GPU machine
# lacks for benchmarks/gpu_check.sh, put in the git-ignored benchmarks/out/ so the device tool can carry it.
#
#   bash benchmarks/gpu_prepare.sh            # wheels for Python 3.12 (the GPU image's), data copies
#   GPU_PYTHON=3.11 bash benchmarks/gpu_prepare.sh   # wheels for another Python (to test the install here)
#
# The GPU image (../.library/device/KINDS.md) has PyTorch, numpy, scipy, scikit-learn, numba, matplotlib,
# pandas, tqdm, pytest and pytest-xdist, but not nbval, ipykernel and the Jupyter stack, nor umap-learn,
# and no data sets. This script writes
#   benchmarks/out/wheels/         those packages and their missing dependencies as wheels (~14 MB)
#   benchmarks/out/data/fashion-mnist/   Debian's Fashion-MNIST IDX files (30 MB; for the notebooks)
#   benchmarks/out/cifar10-jpeg/   the CIFAR-10 JPEG copy (19 MB; throughput and reproduction runs)
# A device call carries at most 64 MiB with the working tree (~7 MB), so a GPU session makes two calls:
#   1. carry benchmarks/out/cifar10-jpeg:                 bash benchmarks/gpu_check.sh env throughput reproduce
#   2. carry benchmarks/out/wheels, benchmarks/out/data:  bash benchmarks/gpu_check.sh nbval
# gpu_check.sh installs the wheels (into /tmp/site) and points ltkd at the data by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=benchmarks/out
PY=${GPU_PYTHON:-3.12}
mkdir -p "$OUT/wheels" "$OUT/data/fashion-mnist"

# Installed on the GPU image (KINDS.md, read 2026-11-17): wheels of these are not carried.
DEVICE_HAS="attrs certifi cloudpickle coverage execnet filelock fsspec hypothesis iniconfig jinja2 joblib
kiwisolver llvmlite markupsafe matplotlib narwhals networkx numba numpy packaging pandas pillow pluggy psutil
pygments pyparsing pytest pytest-xdist python-dateutil pyyaml scikit-learn scipy six sympy threadpoolctl torch
torchvision tqdm typing-extensions contourpy cycler fonttools mpmath setuptools wheel pip"

echo "== wheels for CPython $PY (manylinux x86_64) =="
rm -f "$OUT"/wheels/*.whl
tmp=$(mktemp -d)
plats=()
for p in manylinux1_x86_64 manylinux2010_x86_64 manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_24_x86_64 \
         manylinux_2_26_x86_64 manylinux_2_27_x86_64 manylinux_2_28_x86_64 manylinux_2_31_x86_64 \
         manylinux_2_34_x86_64 manylinux_2_35_x86_64; do plats+=(--platform "$p"); done
python3 -m pip download -q --only-binary=:all: --python-version "$PY" --implementation cp "${plats[@]}" \
  -d "$tmp" nbval ipykernel nbformat nbclient umap-learn 2>&1 | grep -v "is ignored: it is neither" || true
norm() { echo "$1" | tr 'A-Z_.' 'a-z--'; }
kept=0
for w in "$tmp"/*.whl; do
  name=$(norm "$(basename "$w" | cut -d- -f1)")
  if echo " $DEVICE_HAS " | tr '\n' ' ' | grep -q " $name "; then continue; fi
  mv "$w" "$OUT/wheels/"; kept=$((kept + 1))
done
rm -rf "$tmp"
echo "$kept wheels, $(du -sh "$OUT/wheels" | cut -f1): $(ls "$OUT/wheels" | cut -d- -f1 | tr '\n' ' ')"

echo "== data =="
src=/usr/share/datasets/fashion-mnist
if [ -f "$src/train-images-idx3-ubyte.gz" ]; then
  cp -u "$src"/*-ubyte.gz "$OUT/data/fashion-mnist/"
  echo "Fashion-MNIST: $(du -sh "$OUT/data/fashion-mnist" | cut -f1)"
else
  echo "Fashion-MNIST missing here: apt-get install dataset-fashion-mnist, then rerun" >&2; exit 1
fi
cifar=${LTKD_CIFAR10_JPEG:-../shared/data/cifar10-jpeg}
if [ -d "$cifar" ]; then
  mkdir -p "$OUT/cifar10-jpeg"; cp -u "$cifar"/* "$OUT/cifar10-jpeg/"
  echo "CIFAR-10 JPEG copy: $(du -sh "$OUT/cifar10-jpeg" | cut -f1)"
else
  echo "no CIFAR-10 JPEG copy at $cifar: the throughput and reproduce phases will need torchvision's CIFAR-10" >&2
fi
if tree=$(git ls-files -z 2>/dev/null | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1) && [ -n "$tree" ]; then
  echo "working tree (tracked files): $((tree / 1048576)) MiB; each device call carries at most 64 MiB in all"
fi
