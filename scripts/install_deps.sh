#!/usr/bin/env bash
# Installs distq's build and test dependencies from Debian 12 packages.
# Runs as root (CI, containers) or through sudo. Non-interactive.
set -euo pipefail
packages=(
  build-essential cmake pkg-config git
  libopenmpi-dev openmpi-bin          # MPI
  libhdf5-openmpi-dev hdf5-tools      # parallel HDF5, h5dump/h5ls
  libdnnl-dev ocl-icd-opencl-dev      # oneDNN 2.6 (its CMake config needs OpenCL headers)
  libhwloc-dev                        # placement
  libcunit1-dev                       # unit tests
  libinih-dev                         # config files (INI)
  zlib1g-dev                          # reading gzip'd IDX files
  dataset-fashion-mnist               # Fashion-MNIST (IDX, /usr/share/datasets/fashion-mnist)
  python3-h5py python3-numpy          # scripts/
  libonnx-dev                         # onnx.proto, compiled by protoc-c at build time
  protobuf-c-compiler libprotobuf-c-dev # protoc-c and its runtime library
  libonnx-testdata                    # ONNX's backend test cases (conformance test)
  python3-onnx python3-torch python3-torchvision # scripts/export_torchvision.py (model tests)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
