#!/usr/bin/env bash
# Converts Debian's Fashion-MNIST (package dataset-fashion-mnist, installed by
# scripts/install_deps.sh) to distq data files:
#   results/fmnist_train.h5  60000 images (N, 1, 28, 28) f32 + labels
#   results/fmnist_test.h5   10000 images, normalised with the TRAINING set's
#                            pixel mean and std (root attributes mean, std)
# Usage: scripts/fmnist_data.sh [DISTQ_BINARY] (default build/distq)
set -euo pipefail
cd "$(dirname "$0")/.."
distq=${1:-build/distq}
src=${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz \
         t10k-labels-idx1-ubyte.gz; do
  [ -r "$src/$f" ] || { echo "fmnist_data.sh: $src/$f missing (apt-get install dataset-fashion-mnist)" >&2; exit 1; }
done
mkdir -p results
"$distq" data --from-idx "$src/train-images-idx3-ubyte.gz" --labels "$src/train-labels-idx1-ubyte.gz" \
  -o results/fmnist_train.h5
"$distq" data --from-idx "$src/t10k-images-idx3-ubyte.gz" --labels "$src/t10k-labels-idx1-ubyte.gz" \
  --normalize-from "$src/train-images-idx3-ubyte.gz" -o results/fmnist_test.h5
