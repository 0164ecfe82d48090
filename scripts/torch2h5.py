#!/usr/bin/python3
"""Convert a torchvision ResNet-18 state_dict into a distq model file.

The graph (node names, wiring, attributes) is copied from a template model
file written by distq itself, so it matches distq_build_resnet18 exactly:

    distq model --arch resnet18 -o template.h5
    scripts/torch2h5.py --template template.h5 --state-dict resnet18.pth -o model.h5
    scripts/torch2h5.py --template template.h5 --torchvision-random 0 -o model.h5

Every /tensors dataset of the template is replaced by the state_dict entry of
the same name (distq's parameter names are torchvision's state_dict keys);
shapes and dtypes must match (num_batches_tracked is int64, the rest float32),
and every key must be used. The file is written to "<out>.tmp.<pid>" and
renamed when complete. Layout: docs/file-formats.md.

Needs h5py and numpy, and PyTorch (Debian: python3-torch; --torchvision-random
also python3-torchvision), imported only when needed.
"""
import argparse
import os
import sys

import h5py
import numpy as np


def fail(msg):
    sys.exit(f"torch2h5.py: error: {msg}")


def import_torch(what):
    try:
        import torch
    except ImportError:
        fail(f"{what} needs PyTorch, which is not installed "
             "(Debian: apt install python3-torch)")
    return torch


def load_state_dict(args):
    """Returns {name: numpy array} and a provenance string."""
    torch = import_torch("reading a state_dict")
    if args.torchvision_random is not None:
        try:
            import torchvision
        except ImportError:
            fail("--torchvision-random needs torchvision "
                 "(Debian: apt install python3-torchvision)")
        torch.manual_seed(args.torchvision_random)
        model = torchvision.models.resnet18()
        sd = model.state_dict()
        source = (f"torchvision {torchvision.__version__} resnet18, random init, "
                  f"seed {args.torchvision_random}")
    else:
        try:
            obj = torch.load(args.state_dict, map_location="cpu")
        except Exception as e:  # torch raises many kinds for a bad file
            fail(f"{args.state_dict}: cannot load with torch.load: {e}")
        if isinstance(obj, torch.nn.Module):
            obj = obj.state_dict()
        if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            obj = obj["state_dict"]  # training checkpoints
        if not isinstance(obj, dict):
            fail(f"{args.state_dict}: holds a {type(obj).__name__}, not a state_dict")
        sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}
        source = f"state_dict {os.path.abspath(args.state_dict)}"
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        fail(f"state_dict entries that are not tensors: {', '.join(bad[:8])}")
    return {k: v.detach().cpu().numpy() for k, v in sd.items()}, source


def convert(template_path, tensors, source, out_path):
    try:
        tpl_file = h5py.File(template_path, "r")
    except OSError as e:
        fail(f"{template_path}: cannot open as HDF5: {e}")
    with tpl_file as tpl:
        fmt, version = tpl.attrs.get("format"), tpl.attrs.get("version")
        if fmt != "distq-model" or version != 1:
            fail(f"{template_path}: not a distq-model version 1 file "
                 f"(format={fmt!r}, version={version!r})")
        names = list(tpl["tensors"])
        missing = [n for n in names if n not in tensors]
        unused = [k for k in tensors if k not in tpl["tensors"]]
        if missing:
            fail(f"state_dict lacks {len(missing)} tensor(s) the graph needs: "
                 f"{', '.join(missing[:8])}")
        if unused:
            fail(f"state_dict has {len(unused)} key(s) the graph does not use: "
                 f"{', '.join(unused[:8])}")
        for n in names:
            want, got = tpl["tensors"][n], tensors[n]
            if got.shape != want.shape:
                fail(f"{n}: state_dict shape {tuple(got.shape)}, graph expects {want.shape}")
            if got.dtype.kind != want.dtype.kind:
                fail(f"{n}: state_dict dtype {got.dtype}, graph expects {want.dtype}")

        tmp = f"{out_path}.tmp.{os.getpid()}"
        try:
            with h5py.File(tmp, "w", libver=("v108", "v108")) as out:
                for k, v in tpl.attrs.items():
                    out.attrs[k] = v
                out.attrs["source"] = source
                tpl.copy(tpl["graph"], out, "graph")
                grp = out.create_group("tensors", track_order=True)
                for n in names:
                    dtype = tpl["tensors"][n].dtype
                    grp.create_dataset(n, data=np.asarray(tensors[n], dtype=dtype))
            os.replace(tmp, out_path)
        except BaseException as e:
            if os.path.exists(tmp):
                os.remove(tmp)
            if isinstance(e, OSError):
                fail(f"{out_path}: cannot write: {e}")
            raise


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--template", required=True,
                   help="model file from `distq model --arch resnet18 -o template.h5`")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--state-dict", metavar="PTH", help="torchvision resnet18 state_dict (.pth)")
    src.add_argument("--torchvision-random", metavar="SEED", type=int,
                     help="use torchvision.models.resnet18() initialised after "
                          "torch.manual_seed(SEED)")
    p.add_argument("-o", "--output", required=True, help="model file to write")
    args = p.parse_args()
    tensors, source = load_state_dict(args)
    convert(args.template, tensors, source, args.output)
    print(f"{args.output}: {len(tensors)} tensors from {source}")


if __name__ == "__main__":
    main()
