#!/usr/bin/python3
"""PyTorch 1.13 reference for the Fashion-MNIST experiment: fp32 training, FX PTQ and QAT int8.

Run with Debian's interpreter (it has python3-torch, -torchvision, -h5py, -numpy):

    /usr/bin/python3 scripts/compare_torch_fmnist.py --model results/fmnist_cnn.h5 \\
        --train results/fmnist_train.h5 --test results/fmnist_test.h5 \\
        --fp32-config configs/fmnist_fp32.ini --qat-config configs/fmnist_qat.ini \\
        --json results/torch_fmnist.json

Steps (all figures come from this one process):
  0. The distq model file (distq-model, docs/file-formats.md) is loaded into FmnistCNN,
     an nn.Module whose state_dict keys are distq's parameter names; the file's graph is
     checked against the module (node names, ops, conv/pool geometry; BN eps/momentum
     are taken from the file) and load_state_dict(strict=True) must see no missing or
     unexpected key. If build/distq exists, `distq infer` (backends ref and onednn) on
     the first --check-images test images must give the logits PyTorch (float64) gives,
     to a max relative error of 1e-4 (exit 1 otherwise), before any training.
  1. fp32 training as `distq train`: SGD(lr, momentum, weight_decay) over all parameters
     (BN included), lr = lr * gamma^(epoch // lr_step_epochs) (lr_step_epochs = 0: no
     decay), a fresh seeded shuffle per epoch (torch.Generator; not distq's splitmix64
     order), the last partial batch kept, mean cross-entropy. Per epoch: loss and accuracy
     of the training batches, test accuracy (eval mode), training images/s (test
     evaluation not timed).
  2. PTQ: prepare_fx with get_default_qconfig_mapping("x86") (HistogramObserver with
     reduce_range=True, u8 [0, 127] activations; per-channel symmetric s8 weights), a
     forward pass over the first --calib-images training images (file order), convert_fx.
  3. QAT: prepare_qat_fx with get_default_qat_qconfig_mapping("x86") on a copy of the
     fp32-trained model, fine-tuned with the QAT config's [train] schedule (new SGD);
     after [qat] freeze_bn_after optimizer steps model.apply(freeze_bn_stats), after
     freeze_observers_after steps model.apply(disable_observer) (0 = never). Test
     evaluation runs with observers paused, so test images never move the qparams.
     Reported: fake-quant accuracy (eval mode) and int8 accuracy after convert_fx.
  4. Inference speed on the test set at --infer-batch: fp32 (eval, jit.trace + freeze)
     and PTQ int8 (convert_fx, jit.trace + freeze), --bench-passes interleaved passes
     each, the best pass of each kept.

Quantized engine: "x86" if this PyTorch has it, else "fbgemm", else "onednn" (Debian's
1.13 build has only qnnpack and onednn). The qconfig is the x86 one in every case, so
activations use 7 bits, as distq does on CPUs without VNNI.

The configs' [train] data/test/checkpoint/output paths are not used (--train and --test
give the data; they default to the fp32 config's data and test). Every key is optional
with distq's defaults (include/distq/config.h).
Exit status: 0 ok, 1 distq's logits disagree with PyTorch's, 2 setup/usage error.
"""
import argparse
import configparser
import contextlib
import copy
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings


def die(msg, code=2):
    print(f"compare_torch_fmnist: error: {msg}", file=sys.stderr)
    sys.exit(code)


try:
    import h5py
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torchvision.models.resnet import BasicBlock
    from torch.ao.quantization import (disable_observer, get_default_qat_qconfig_mapping,
                                       get_default_qconfig_mapping)
    from torch.ao.quantization.fake_quantize import FakeQuantizeBase
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx, prepare_qat_fx
    from torch.nn.intrinsic.qat import freeze_bn_stats
except ImportError as exc:
    die(f"{exc}; install with: apt-get install python3-torch python3-torchvision python3-h5py "
        "(and run this script with /usr/bin/python3, not another python3)")

# reduce_range=True is the x86 recipe's own spelling; 1.13 nags that it "will be deprecated"
warnings.filterwarnings("ignore", message="Please use quant_min and quant_max")
warnings.filterwarnings("ignore", message=".*TypedStorage is deprecated.*")

QCONFIG = "x86"
LOGIT_TOL = 1e-4
# distq's defaults for keys a config leaves out (src/io/config.c, distq_config_defaults)
TRAIN_DEFAULTS = {"epochs": 8, "batch_size": 128, "lr": 0.05, "momentum": 0.9,
                  "weight_decay": 5e-4, "lr_step_epochs": 3, "lr_gamma": 0.1, "seed": 0}
DISTQ_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


# --- inputs -----------------------------------------------------------------------------

def read_ini(path):
    if not os.path.isfile(path):
        die(f"config file not found: {path}")
    # libinih, which distq uses: ';' or '#' starts a comment line, ' ;' an inline comment
    cp = configparser.ConfigParser(comment_prefixes=(";", "#"), inline_comment_prefixes=(";",),
                                   interpolation=None)
    try:
        cp.read(path)
    except configparser.Error as exc:
        die(f"{path}: {exc}")
    return cp


def read_number(cp, path, section, key, default, kind):
    if not cp.has_option(section, key):
        return default
    text = cp.get(section, key)
    try:
        value = kind(text)
    except ValueError:
        die(f"{path}: [{section}] {key} = '{text}' is not {'an integer' if kind is int else 'a number'}")
    if value < 0:
        die(f"{path}: [{section}] {key} = {value} must be >= 0")
    return value


def read_train_section(cp, path):
    """[train] hyper-parameters with distq's defaults for missing keys."""
    if not cp.has_section("train"):
        die(f"{path}: no [train] section")
    cfg = {k: read_number(cp, path, "train", k, v, type(v)) for k, v in TRAIN_DEFAULTS.items()}
    if cfg["epochs"] < 1 or cfg["batch_size"] < 1:
        die(f"{path}: [train] epochs and batch_size must be >= 1")
    for k in ("model", "data", "test"):
        cfg[k] = None
    if cp.has_option("model", "path"):
        cfg["model"] = cp.get("model", "path")
    for k in ("data", "test"):
        if cp.has_option("train", k):
            cfg[k] = cp.get("train", k)
    return cfg


def read_qat_section(cp, path):
    if not cp.has_section("qat"):
        die(f"{path}: no [qat] section (freeze_bn_after, freeze_observers_after)")
    return {k: read_number(cp, path, "qat", k, 0, int)
            for k in ("freeze_bn_after", "freeze_observers_after")}


def open_h5(path, kind):
    """The HDF5 file at path, read-only; a clear error if it is missing or not HDF5."""
    if not os.path.isfile(path):
        die(f"{kind} file not found: {path}")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        die(f"{path}: cannot open as HDF5: {exc}")


def load_data(path, limit, input_shape):
    """(images float32 (N, C, H, W), labels int64 (N)) as torch tensors; first `limit` rows."""
    with open_h5(path, "data") as f:
        if f.attrs.get("format") != "distq-data":
            die(f"{path}: not a distq-data file (format={f.attrs.get('format')!r})")
        for key in ("images", "labels"):
            if key not in f:
                die(f"{path}: no dataset /{key} (a distq-data file with labels is needed)")
        img, lab = f["images"], f["labels"]
        if img.dtype != np.float32:
            die(f"{path}: /images has type {img.dtype}, expected float32")
        if tuple(img.shape[1:]) != tuple(input_shape):
            die(f"{path}: /images has images of shape {tuple(img.shape[1:])}, "
                f"the model expects {tuple(input_shape)}")
        if lab.dtype.kind not in "iu" or lab.shape != (img.shape[0],):
            die(f"{path}: /labels must be integers of shape ({img.shape[0]},), "
                f"got {lab.dtype} {lab.shape}")
        n = img.shape[0] if limit is None else min(limit, img.shape[0])
        x = torch.from_numpy(np.ascontiguousarray(img[:n]))
        y = torch.from_numpy(lab[:n].astype(np.int64))
    if n == 0:
        die(f"{path}: no images")
    if not torch.isfinite(x).all():
        die(f"{path}: /images holds NaN or Inf")
    return x, y


# --- model ------------------------------------------------------------------------------

class FmnistCNN(nn.Module):
    """distq_build_fmnist_cnn (src/graph/builders.c): module paths = distq parameter names.

    (1, 28, 28) -> stem conv3x3-bn-relu 32 -> block1 (BasicBlock 32) -> maxpool 2x2
    -> block2 (BasicBlock 32->64, stride 2, 1x1 downsample) -> avgpool -> flatten -> fc 10.
    torchvision's BasicBlock calls its one relu twice, which torch.fx names relu and
    relu_1, as distq names its nodes.
    """

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential()
        self.stem.add_module("conv", nn.Conv2d(1, 32, 3, 1, 1, bias=False))
        self.stem.add_module("bn", nn.BatchNorm2d(32))
        self.stem.add_module("relu", nn.ReLU(inplace=True))
        self.block1 = BasicBlock(32, 32)
        self.maxpool = nn.MaxPool2d(2, 2)
        down = nn.Sequential(nn.Conv2d(32, 64, 1, 2, bias=False), nn.BatchNorm2d(64))
        self.block2 = BasicBlock(32, 64, stride=2, downsample=down)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.maxpool(self.block1(self.stem(x)))
        return self.fc(self.flatten(self.avgpool(self.block2(x))))


def attr_str(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def check_graph(path, g, model):
    """The file's nodes must be the module's: same names, ops and geometry."""
    mods = dict(model.named_modules())
    op_of = {nn.Conv2d: "conv2d", nn.BatchNorm2d: "batch_norm", nn.MaxPool2d: "max_pool2d",
             nn.AdaptiveAvgPool2d: "adaptive_avg_pool2d", nn.Flatten: "flatten", nn.Linear: "linear"}
    # functional nodes of the graph: relus and residual adds
    expected = {n: op_of[type(m)] for n, m in mods.items() if type(m) in op_of}
    expected.update({"stem.relu": "relu"})
    for b in ("block1", "block2"):
        expected.update({f"{b}.relu": "relu", f"{b}.relu_1": "relu", f"{b}.add": "add"})
    nodes = g["nodes"]
    got = {n: attr_str(nodes[n].attrs.get("op")) for n in nodes}
    if got != expected:
        extra = sorted(set(got) - set(expected))
        missing = sorted(set(expected) - set(got))
        wrong = sorted(n for n in set(got) & set(expected) if got[n] != expected[n])
        die(f"{path}: graph is not distq's fmnist_cnn (unexpected nodes: {extra or '-'}; "
            f"missing: {missing or '-'}; other op: {wrong or '-'})")
    for name, m in mods.items():
        a = nodes[name].attrs if name in nodes else None
        if isinstance(m, nn.Conv2d):
            geo = {"stride": m.stride, "padding": m.padding, "dilation": m.dilation}
            for k, v in geo.items():
                if tuple(int(i) for i in a[k]) != tuple(v):
                    die(f"{path}: node {name}: {k} {tuple(a[k])}, fmnist_cnn has {tuple(v)}")
        elif isinstance(m, nn.MaxPool2d):
            if (tuple(a["kernel"]), tuple(a["stride"]), tuple(a["padding"])) != ((2, 2), (2, 2), (0, 0)):
                die(f"{path}: node {name}: max pool is not 2x2 stride 2")
        elif isinstance(m, nn.BatchNorm2d):
            m.eps, m.momentum = float(a["eps"]), float(a["momentum"])  # the file's own values


def load_model(path):
    """FmnistCNN with the file's weights, BN buffers included; strict load."""
    model = FmnistCNN()
    with open_h5(path, "model") as f:
        fmt = attr_str(f.attrs.get("format"))
        if fmt != "distq-model":
            die(f"{path}: format {fmt!r}, expected 'distq-model' (a float model from "
                "`distq model --arch fmnist_cnn` or `distq train`)")
        for grp in ("graph", "graph/nodes", "tensors"):
            if grp not in f:
                die(f"{path}: no /{grp} group")
        input_shape = tuple(int(d) for d in f["graph"].attrs["input_shape"])[1:]
        if input_shape != (1, 28, 28):
            die(f"{path}: input_shape {input_shape}, fmnist_cnn takes (1, 28, 28)")
        check_graph(path, f["graph"], model)
        tensors = {n: np.asarray(f["tensors"][n][()]) for n in f["tensors"]}
    expected = model.state_dict()
    state = {}
    for name, arr in tensors.items():
        if name in expected:
            if tuple(arr.shape) != tuple(expected[name].shape):
                die(f"{path}: /tensors/{name} has shape {tuple(arr.shape)}, "
                    f"fmnist_cnn expects {tuple(expected[name].shape)}")
            state[name] = torch.from_numpy(np.ascontiguousarray(arr)).to(expected[name].dtype)
        else:
            state[name] = torch.from_numpy(np.ascontiguousarray(arr))  # reported as unexpected
    res = model.load_state_dict(state, strict=False)
    if res.missing_keys or res.unexpected_keys:
        die(f"{path}: /tensors does not match FmnistCNN's state_dict: missing "
            f"{res.missing_keys or '-'}; unexpected {res.unexpected_keys or '-'}")
    return model.eval(), input_shape, len(state)


def check_against_distq(distq, model_path, model, x, threads):
    """Logits of `distq infer` (ref and onednn) vs PyTorch float64 on the same images."""
    out = {"images": int(x.shape[0]), "tolerance": LOGIT_TOL}
    with torch.no_grad():
        want = copy.deepcopy(model).double().eval()(x.double()).numpy()
    scale = float(np.abs(want).max())
    env = dict(DISTQ_ENV, OMP_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory(prefix="distq_fmnist_") as tmp:
        data = os.path.join(tmp, "images.h5")
        with h5py.File(data, "w") as f:
            f.attrs["format"], f.attrs["version"] = "distq-data", 1
            f["images"] = x.numpy()
        for backend in ("ref", "onednn"):
            logits = os.path.join(tmp, f"logits_{backend}.h5")
            cmd = [distq, "infer", "--model", model_path, "--data", data, "-o", logits,
                   "--backend", backend]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                die(f"'{' '.join(cmd)}' exited {proc.returncode}: "
                    f"{(proc.stderr or proc.stdout).strip()}")
            with h5py.File(logits, "r") as f:
                got = f["logits"][()].astype(np.float64)
            if got.shape != want.shape:
                die(f"distq {backend} logits have shape {got.shape}, PyTorch {want.shape}", 1)
            out[backend] = {"max_rel_err": float(np.abs(got - want).max() / scale),
                            "same_argmax": int((got.argmax(1) == want.argmax(1)).sum())}
    return out


# --- training and evaluation ------------------------------------------------------------

def evaluate(model, x, y, batch):
    """Top-1 accuracy in eval mode (leaves the model in eval mode)."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, x.shape[0], batch):
            correct += int((model(x[s:s + batch]).argmax(1) == y[s:s + batch]).sum())
    return correct / x.shape[0]


@contextlib.contextmanager
def observers_paused(model):
    """Fake-quant observers update even in eval mode: keep test images out of the qparams."""
    fqs = [m for m in model.modules() if isinstance(m, FakeQuantizeBase)]
    saved = [int(m.observer_enabled[0]) for m in fqs]
    for m in fqs:
        m.disable_observer()
    try:
        yield
    finally:
        for m, on in zip(fqs, saved):
            m.observer_enabled[0] = on


def train(model, cfg, train_x, train_y, test_x, test_y, args, phase, on_step=None):
    """SGD epochs as `distq train`; returns per-epoch records. on_step(steps) after each step."""
    opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                          weight_decay=cfg["weight_decay"])
    gen = torch.Generator().manual_seed(cfg["seed"])
    B, n, steps, epochs = cfg["batch_size"], train_x.shape[0], 0, []
    for epoch in range(cfg["epochs"]):
        decays = epoch // cfg["lr_step_epochs"] if cfg["lr_step_epochs"] else 0
        lr = cfg["lr"] * cfg["lr_gamma"] ** decays  # StepLR, as distq sets sgd.lr per epoch
        for group in opt.param_groups:
            group["lr"] = lr
        model.train()
        perm = torch.randperm(n, generator=gen)
        loss_sum, correct, images = 0.0, 0, 0
        t0 = time.perf_counter()
        for s in range(0, n, B):
            idx = perm[s:s + B]
            xb, yb = train_x[idx], train_y[idx]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            loss_sum += float(loss) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            images += len(idx)
            if on_step:
                on_step(steps)
            if args.max_steps and steps >= args.max_steps:
                break
        elapsed = time.perf_counter() - t0  # the test evaluation below is not timed
        with (observers_paused(model) if phase == "qat" else contextlib.nullcontext()):
            test_acc = evaluate(model, test_x, test_y, args.infer_batch)
        rec = {"epoch": epoch + 1, "steps": steps, "lr": lr, "loss": loss_sum / images,
               "train_acc": correct / images, "test_acc": test_acc, "images": images,
               "train_s": elapsed, "images_per_s": images / elapsed}
        epochs.append(rec)
        print(f"  {phase} epoch {epoch + 1}/{cfg['epochs']}: lr {lr:.4g}  loss {rec['loss']:.4f}  "
              f"train acc {rec['train_acc']:.4f}  test acc {test_acc:.4f}  "
              f"{rec['images_per_s']:.1f} img/s ({images} images, {elapsed:.1f} s)", flush=True)
        if args.max_steps and steps >= args.max_steps:
            print(f"  {phase}: stopped after --max-steps {args.max_steps}")
            break
    return epochs


def throughput(epochs):
    """Training images/s over all epochs: total images / total training seconds."""
    return sum(e["images"] for e in epochs) / sum(e["train_s"] for e in epochs)


def pick_engine():
    engines = torch.backends.quantized.supported_engines
    for e in ("x86", "fbgemm", "onednn"):
        if e in engines:
            torch.backends.quantized.engine = e
            return e
    die(f"this PyTorch has no x86 quantized engine (x86, fbgemm or onednn); it has {engines}")


def ptq(fp32_model, train_x, args):
    """FX post-training quantization with the x86 qconfig, calibrated on training images."""
    n = min(args.calib_images, train_x.shape[0])
    calib = train_x[:n]
    t0 = time.perf_counter()
    prepared = prepare_fx(copy.deepcopy(fp32_model).eval(), get_default_qconfig_mapping(QCONFIG),
                          example_inputs=(calib[:1],))
    with torch.no_grad():
        for s in range(0, n, args.infer_batch):
            prepared(calib[s:s + args.infer_batch])
    int8 = convert_fx(prepared)
    return int8, {"calib_images": n, "calib_batch": args.infer_batch,
                  "seconds": time.perf_counter() - t0}


def qat(fp32_model, qcfg, qat_opts, train_x, train_y, test_x, test_y, args):
    """FX QAT from the fp32-trained weights; freezes BN stats / observers after N steps."""
    model = prepare_qat_fx(copy.deepcopy(fp32_model).train(), get_default_qat_qconfig_mapping(QCONFIG),
                           example_inputs=(train_x[:1],))
    events = {}

    def on_step(steps):
        if qat_opts["freeze_bn_after"] and steps == qat_opts["freeze_bn_after"]:
            model.apply(freeze_bn_stats)
            events["bn_frozen_at_step"] = steps
        if qat_opts["freeze_observers_after"] and steps == qat_opts["freeze_observers_after"]:
            model.apply(disable_observer)
            events["observers_frozen_at_step"] = steps

    epochs = train(model, qcfg, train_x, train_y, test_x, test_y, args, "qat", on_step)
    with observers_paused(model):
        fq_acc = evaluate(model, test_x, test_y, args.infer_batch)
    int8 = convert_fx(copy.deepcopy(model).eval())
    return model, int8, epochs, fq_acc, events


# --- inference speed --------------------------------------------------------------------

def frozen(model, x):
    with torch.no_grad():
        return torch.jit.freeze(torch.jit.trace(model.eval(), x))


def timed_pass(mod, x, batch, warmup=2):
    """Images/s of one pass over x in batches (warm-up batches first, not timed)."""
    with torch.no_grad():
        for _ in range(warmup):
            mod(x[:batch])
        t0 = time.perf_counter()
        for s in range(0, x.shape[0], batch):
            mod(x[s:s + batch])
        return x.shape[0] / (time.perf_counter() - t0)


def bench_inference(fp32_model, int8_model, test_x, args):
    """fp32 vs int8, interleaved passes over the test set; the best pass of each is kept."""
    b = min(args.infer_batch, test_x.shape[0])
    mods = {"fp32": frozen(copy.deepcopy(fp32_model), test_x[:b]),
            "int8": frozen(int8_model, test_x[:b])}
    runs = {"fp32": [], "int8": []}
    for _ in range(args.bench_passes):
        for k, m in mods.items():
            runs[k].append(timed_pass(m, test_x, b))
    best = {k: max(v) for k, v in runs.items()}
    return {"batch": b, "images": int(test_x.shape[0]), "passes": runs,
            "fp32_images_per_s": best["fp32"], "int8_images_per_s": best["int8"],
            "int8_over_fp32": best["int8"] / best["fp32"]}


# --- report -----------------------------------------------------------------------------

def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return {"avx2": "avx2" in flags, "avx512f": "avx512f" in flags,
                            "vnni": bool({"avx512_vnni", "avx_vnni"} & flags)}
    except OSError:
        pass
    return {}


def markdown(r):
    acc = r["accuracy"]
    sp = r["inference"]
    rows = [("fp32 test accuracy", f"{acc['fp32']:.4f}"),
            ("PTQ int8 test accuracy", f"{acc['ptq_int8']:.4f}"),
            ("QAT fake-quant test accuracy", f"{acc['qat_fake_quant']:.4f}"),
            ("QAT int8 test accuracy", f"{acc['qat_int8']:.4f}"),
            ("fp32 training images/s", f"{r['train']['fp32_images_per_s']:.1f}"),
            ("QAT training images/s", f"{r['train']['qat_images_per_s']:.1f}"),
            (f"fp32 inference images/s (batch {sp['batch']})", f"{sp['fp32_images_per_s']:.1f}"),
            (f"PTQ int8 inference images/s (batch {sp['batch']})", f"{sp['int8_images_per_s']:.1f}"),
            ("int8 / fp32 inference speed", f"{sp['int8_over_fp32']:.2f}")]
    s = r["settings"]
    head = (f"PyTorch {s['torch']} reference, Fashion-MNIST, {s['threads']} thread(s), "
            f"engine {s['quantized_engine']}, qconfig {QCONFIG}; {s['train_images']} train / "
            f"{s['test_images']} test images")
    w = max(len(a) for a, _ in rows)
    lines = [head, "", f"| {'metric':<{w}} | value |", f"|{'-' * (w + 2)}|------:|"]
    lines += [f"| {a:<{w}} | {b} |" for a, b in rows]
    return "\n".join(lines)


def write_json(path, obj):
    tmp = f"{path}.tmp.{os.getpid()}"  # atomic, like distq's writers
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.remove(tmp)
        die(f"{path}: cannot write: {exc}")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.split("\n")[1:]))
    p.add_argument("--model", help="distq fmnist_cnn model file (default: fp32 config [model] path)")
    p.add_argument("--train", help="training data (default: fp32 config [train] data)")
    p.add_argument("--test", help="test data (default: fp32 config [train] test)")
    p.add_argument("--fp32-config", required=True, help="e.g. configs/fmnist_fp32.ini")
    p.add_argument("--qat-config", required=True, help="e.g. configs/fmnist_qat.ini ([train], [qat])")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--calib-images", type=int, default=1024, help="PTQ calibration images (default 1024)")
    p.add_argument("--infer-batch", type=int, default=128, help="evaluation/inference batch (default 128)")
    p.add_argument("--bench-passes", type=int, default=3,
                   help="timed passes over the test set per precision, interleaved (default 3)")
    p.add_argument("--max-steps", type=int, default=0, help="stop each training phase after N steps")
    p.add_argument("--limit-train", type=int, help="use only the first N training images")
    p.add_argument("--limit-test", type=int, help="use only the first N test images")
    p.add_argument("--distq", default="build/distq",
                   help="distq binary for the logits check (skipped if absent)")
    p.add_argument("--check-images", type=int, default=8, help="test images for the logits check")
    p.add_argument("--json", metavar="PATH", help="write every figure and the settings here")
    args = p.parse_args()
    for k in ("threads", "calib_images", "infer_batch", "bench_passes", "check_images"):
        if getattr(args, k) < 1:
            p.error(f"--{k.replace('_', '-')} must be >= 1")
    if args.max_steps < 0:
        p.error("--max-steps must be >= 0 (0: no limit)")
    for k in ("limit_train", "limit_test"):
        if getattr(args, k) is not None and getattr(args, k) < 1:
            p.error(f"--{k.replace('_', '-')} must be >= 1")
    if args.json:  # fail now, not after the training
        d = os.path.dirname(os.path.abspath(args.json))
        if not (os.path.isdir(d) and os.access(d, os.W_OK)):
            p.error(f"--json {args.json}: directory {d} does not exist or is not writable")
    return args


def main():
    args = parse_args()
    load0 = os.getloadavg()
    if load0[0] > 1.5:
        print(f"warning: load average {load0[0]:.2f} on {os.cpu_count()} CPUs at start: this machine "
              "is shared, the images/s figures will be low and noisy", file=sys.stderr)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    engine = pick_engine()

    fp32_cp, qat_cp = read_ini(args.fp32_config), read_ini(args.qat_config)
    fcfg = read_train_section(fp32_cp, args.fp32_config)
    qcfg = read_train_section(qat_cp, args.qat_config)
    qat_opts = read_qat_section(qat_cp, args.qat_config)
    model_path = args.model or fcfg["model"]
    train_path, test_path = args.train or fcfg["data"], args.test or fcfg["test"]
    for what, v in (("--model", model_path), ("--train", train_path), ("--test", test_path)):
        if not v:
            die(f"{what} not given and {args.fp32_config} does not name it")

    model, input_shape, n_tensors = load_model(model_path)
    print(f"model {model_path}: {n_tensors} tensors loaded into FmnistCNN (strict: no missing or "
          f"unexpected keys); torch {torch.__version__}, {args.threads} thread(s), engine {engine}")
    train_x, train_y = load_data(train_path, args.limit_train, input_shape)
    test_x, test_y = load_data(test_path, args.limit_test, input_shape)
    print(f"data: {train_x.shape[0]} training images ({train_path}), "
          f"{test_x.shape[0]} test images ({test_path})")

    if os.path.isfile(args.distq) and os.access(args.distq, os.X_OK):
        check = check_against_distq(os.path.abspath(args.distq), model_path, model,
                                    test_x[:args.check_images], args.threads)
        print(f"logits vs distq infer on {check['images']} test images (PyTorch float64 reference): "
              + ", ".join(f"{b} max rel err {check[b]['max_rel_err']:.2e}, same argmax "
                          f"{check[b]['same_argmax']}/{check['images']}" for b in ("ref", "onednn")))
        bad = [b for b in ("ref", "onednn") if not check[b]["max_rel_err"] <= LOGIT_TOL]
        if bad:
            die(f"distq ({', '.join(bad)}) and PyTorch disagree on the initial model's logits "
                f"(tolerance {LOGIT_TOL:g}): the module does not match the file", 1)
    else:
        check = {"skipped": f"{args.distq} not found or not executable"}
        print(f"logits check against distq skipped: {check['skipped']}")

    print(f"fp32 training ({args.fp32_config}): {fcfg['epochs']} epochs, batch {fcfg['batch_size']}, "
          f"lr {fcfg['lr']}, momentum {fcfg['momentum']}, weight decay {fcfg['weight_decay']}")
    init_acc = evaluate(model, test_x, test_y, args.infer_batch)
    fp32_epochs = train(model, fcfg, train_x, train_y, test_x, test_y, args, "fp32")
    fp32_acc = evaluate(model, test_x, test_y, args.infer_batch)

    ptq_model, ptq_info = ptq(model, train_x, args)
    ptq_acc = evaluate(ptq_model, test_x, test_y, args.infer_batch)
    print(f"PTQ int8 ({ptq_info['calib_images']} calibration images, {ptq_info['seconds']:.1f} s): "
          f"test acc {ptq_acc:.4f}")

    print(f"QAT ({args.qat_config}): {qcfg['epochs']} epochs, batch {qcfg['batch_size']}, lr {qcfg['lr']}, "
          f"freeze BN after {qat_opts['freeze_bn_after'] or 'never'}, observers after "
          f"{qat_opts['freeze_observers_after'] or 'never'} steps")
    _, qat_int8, qat_epochs, fq_acc, events = qat(model, qcfg, qat_opts, train_x, train_y,
                                                  test_x, test_y, args)
    qat_int8_acc = evaluate(qat_int8, test_x, test_y, args.infer_batch)
    print(f"QAT: fake-quant test acc {fq_acc:.4f}, int8 test acc {qat_int8_acc:.4f}")

    speed = bench_inference(model, ptq_model, test_x, args)
    load1 = os.getloadavg()

    results = {
        "settings": {
            "script": "scripts/compare_torch_fmnist.py", "argv": sys.argv[1:],
            "torch": torch.__version__, "python": platform.python_version(),
            "threads": args.threads, "quantized_engine": engine, "qconfig": QCONFIG,
            "qconfig_ptq": str(get_default_qconfig_mapping(QCONFIG).global_qconfig),
            "qconfig_qat": str(get_default_qat_qconfig_mapping(QCONFIG).global_qconfig),
            "cpu": cpu_flags(), "cpus": os.cpu_count(),
            "model": model_path, "train": train_path, "test": test_path,
            "train_images": int(train_x.shape[0]), "test_images": int(test_x.shape[0]),
            "limit_train": args.limit_train, "limit_test": args.limit_test,
            "max_steps": args.max_steps, "calib_images": ptq_info["calib_images"],
            "infer_batch": args.infer_batch, "bench_passes": args.bench_passes,
            "fp32_config": args.fp32_config, "fp32_train": {k: fcfg[k] for k in TRAIN_DEFAULTS},
            "qat_config": args.qat_config, "qat_train": {k: qcfg[k] for k in TRAIN_DEFAULTS},
            "qat": qat_opts, "loadavg_start": load0, "loadavg_end": load1,
        },
        "distq_logits_check": check,
        "accuracy": {"initial_fp32": init_acc, "fp32": fp32_acc, "ptq_int8": ptq_acc,
                     "qat_fake_quant": fq_acc, "qat_int8": qat_int8_acc},
        "train": {"fp32_epochs": fp32_epochs, "qat_epochs": qat_epochs, "qat_events": events,
                  "fp32_images_per_s": throughput(fp32_epochs),
                  "qat_images_per_s": throughput(qat_epochs)},
        "ptq": ptq_info,
        "inference": speed,
    }
    print()
    print(markdown(results))
    if load1[0] > 1.5:
        print(f"\nwarning: load average {load1[0]:.2f} at the end: speed figures shared the CPUs")
    if args.json:
        write_json(args.json, results)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
