#!/usr/bin/python3
"""Export a torchvision model to ONNX, as a user would, plus PyTorch's own output.

    scripts/export_torchvision.py resnet18 -o out/resnet18 [--opset 13] [--image-size 224]

writes out/resnet18/model.onnx and, in ONNX's test-case layout,
out/resnet18/test_data_set_0/input_0.pb (a seeded batch) and output_0.pb (the
logits PyTorch computes for it), which `distq onnx-test out/resnet18` checks.

Weights are torchvision's own init (weights=None) under a fixed seed, with the
BN running statistics drawn too (so folding them is exercised); eval mode;
the batch dimension is dynamic, so the file runs at every batch size.
Debian's python3-torch 1.13, python3-torchvision 0.14 and python3-onnx.

With --training-graph the model is exported in training mode instead
(model.train(), TrainingMode.PRESERVE, no constant folding), as a user exports
a network to fine-tune or quantization-aware-train: BatchNormalization stays
after each conv, with its running statistics, and Dropout is kept. Only
model.onnx is written (`distq import --training-graph` reads it).
"""
import argparse
import os
import sys

import torch
import torchvision
from onnx import numpy_helper


def build(name, seed, num_classes):
    torch.manual_seed(seed)
    kwargs = {"weights": None, "num_classes": num_classes}
    if name in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, init_weights=False)  # default init: logits of O(1)
    model = getattr(torchvision.models, name)(**kwargs)
    g = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.empty(c).uniform_(-0.1, 0.1, generator=g))
            m.running_var.copy_(torch.empty(c).uniform_(0.5, 1.5, generator=g))
            m.weight.data.copy_(torch.empty(c).uniform_(0.5, 1.5, generator=g))
            m.bias.data.copy_(torch.empty(c).uniform_(-0.1, 0.1, generator=g))
    return model.eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="a torchvision.models name: resnet18, mobilenet_v2, ...")
    ap.add_argument("-o", "--output", required=True, help="folder to write")
    ap.add_argument("--opset", type=int, default=13)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=2, help="images in the test input")
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--training-graph", action="store_true", help="export in training mode (see above)")
    a = ap.parse_args()

    model = build(a.model, a.seed, a.classes)
    torch.manual_seed(a.seed + 2)
    x = torch.randn(a.batch, 3, a.image_size, a.image_size)
    path = os.path.join(a.output, "model.onnx")
    if a.training_graph:
        os.makedirs(a.output, exist_ok=True)
        model.train()
        torch.onnx.export(model, x, path, opset_version=a.opset, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
        print(f"wrote {path} (training mode, opset {a.opset}, input {tuple(x.shape)}), torch {torch.__version__}")
        return 0
    os.makedirs(os.path.join(a.output, "test_data_set_0"), exist_ok=True)
    with torch.no_grad():
        y = model(x)
        torch.onnx.export(model, x, path, opset_version=a.opset, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          do_constant_folding=True)
    for kind, t in (("input", x), ("output", y)):
        p = numpy_helper.from_array(t.numpy(), name="input" if kind == "input" else "logits")
        with open(os.path.join(a.output, "test_data_set_0", kind + "_0.pb"), "wb") as f:
            f.write(p.SerializeToString())
    print(f"wrote {path} (opset {a.opset}, input {tuple(x.shape)}), torch {torch.__version__}")


if __name__ == "__main__":
    sys.exit(main())
