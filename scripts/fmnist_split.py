#!/usr/bin/python3
"""Hold a validation split out of a distq data file (for choosing schedules).

    /usr/bin/python3 scripts/fmnist_split.py results/fmnist_train.h5 --val 10000 \
        --train-out results/fmnist_train50k.h5 --val-out results/fmnist_val10k.h5

The last --val images go to the validation file, the rest to the training file;
both keep every root attribute of the source (format, version, mean and std of
the normalisation), so distq reads them like the original. The Fashion-MNIST
training file is not sorted by class, so its tail is a fair sample (the class
counts are printed to check that). Each file is written under a temporary name
and renamed when complete.
"""
import argparse
import os
import sys

import h5py
import numpy as np


def write_part(src, dst, lo, hi, note):
    tmp = dst + ".tmp"
    with h5py.File(tmp, "w") as out:
        for key, value in src.attrs.items():
            out.attrs[key] = value
        out.attrs["split_of"] = note
        for name in ("images", "labels"):
            data = src[name][lo:hi]
            ds = out.create_dataset(name, data=data)
            for key, value in src[name].attrs.items():
                ds.attrs[key] = value
    os.replace(tmp, dst)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("source")
    ap.add_argument("--val", type=int, default=10000, help="images held out (the file's tail)")
    ap.add_argument("--train-out", required=True)
    ap.add_argument("--val-out", required=True)
    args = ap.parse_args()
    with h5py.File(args.source, "r") as src:
        for name in ("images", "labels"):
            if name not in src:
                sys.exit(f"{args.source}: no dataset /{name}")
        n = src["images"].shape[0]
        if src["labels"].shape[0] != n:
            sys.exit(f"{args.source}: /images has {n} rows, /labels {src['labels'].shape[0]}")
        if not 0 < args.val < n:
            sys.exit(f"--val {args.val}: must be between 1 and {n - 1} for {args.source}")
        cut = n - args.val
        write_part(src, args.train_out, 0, cut, f"{args.source} rows [0, {cut})")
        write_part(src, args.val_out, cut, n, f"{args.source} rows [{cut}, {n})")
        for label, lo, hi in (("train", 0, cut), ("val", cut, n)):
            counts = np.bincount(src["labels"][lo:hi], minlength=10)
            print(f"{label}: {hi - lo} images, per class {counts.tolist()}")


if __name__ == "__main__":
    main()
