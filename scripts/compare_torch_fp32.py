#!/usr/bin/python3
"""Compare distq's fp32 ResNet-18 against PyTorch/torchvision: correctness and speed.

Method
  1. Load the model file's /tensors into torchvision.models.resnet18() by name
     (the datasets are named like torchvision's state_dict keys); every name and
     shape is checked before load_state_dict(strict=True).
  2. Correctness: `distq data` makes --images random images, `distq infer
     --backend onednn` computes their logits, and torchvision computes them too
     (eager, float64, so the reference itself adds no fp32 rounding). The max
     relative error max|distq - torch| / max|torch| must be <= 1e-4.
  3. Speed, with PyTorch at its best: torch.set_num_threads(T), channels_last
     model and input, torch.jit.trace + torch.jit.freeze under no_grad; the
     variant with torch.jit.optimize_for_inference is also built and, per batch
     size, whichever is faster in a short probe is timed. Each point is warmed up,
     then timed until --min-time seconds and at least 10 iterations, exactly as
     `distq bench` does: p50/p90 of the per-iteration latencies (linear
     interpolation) and images/s = batch * iters / sum(latencies).
     Per batch size the order is torch, `distq bench`, torch again, and the
     better torch run is kept, so the ratio is, if anything, in PyTorch's favour.
     Each run also reports how many CPUs other processes kept busy meanwhile
     (from /proc/stat less this process tree's CPU time); on a shared machine a
     warning follows the table when that exceeds 0.2 CPU.
Exit status: 0 ok, 1 correctness failure, 2 setup/usage error.
"""
import argparse
import copy
import csv
import os
import subprocess
import sys
import tempfile
import time

TOL = 1e-4
DISTQ_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def die(msg, code=2):
    print(f"compare_torch_fp32: error: {msg}", file=sys.stderr)
    sys.exit(code)


try:
    import h5py
    import numpy as np
    import torch
    import torchvision
except ImportError as exc:
    die(f"{exc}; install with: apt-get install python3-torch python3-torchvision python3-h5py "
        "(and run this script with /usr/bin/python3, not another python3)")


def run_distq(distq, *args):
    cmd = [distq, *map(str, args)]
    proc = subprocess.run(cmd, env=DISTQ_ENV, capture_output=True, text=True)
    if proc.returncode != 0:
        die(f"'{' '.join(cmd)}' exited {proc.returncode}:\n{proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def load_resnet18(path):
    """torchvision resnet18 (eval) with the model file's /tensors; names and shapes checked."""
    model = torchvision.models.resnet18()
    expected = model.state_dict()
    with h5py.File(path, "r") as f:
        if "tensors" not in f:
            die(f"{path}: no /tensors group")
        tensors = {name: np.asarray(f["tensors"][name][()]) for name in f["tensors"]}
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        die(f"{path}: /tensors does not match torchvision resnet18: "
            + "; ".join(f"{what}: {', '.join(names)}" for what, names in
                        (("missing", missing), ("unexpected", extra)) if names))
    state = {}
    for name, ref in expected.items():
        arr = tensors[name]
        if tuple(arr.shape) != tuple(ref.shape):
            die(f"{path}: /tensors/{name} has shape {tuple(arr.shape)}, "
                f"torchvision expects {tuple(ref.shape)}")
        state[name] = torch.from_numpy(np.ascontiguousarray(arr)).to(ref.dtype)
    model.load_state_dict(state, strict=True)
    return model.eval()


def check_correctness(distq, model_path, model, tmp, n_images):
    data, out = os.path.join(tmp, "data.h5"), os.path.join(tmp, "logits.h5")
    run_distq(distq, "data", "--shape", "3,224,224", "-n", n_images, "--seed", 7, "-o", data)
    run_distq(distq, "infer", "--model", model_path, "--data", data, "-o", out,
              "--backend", "onednn")
    with h5py.File(data, "r") as f:
        images = f["images"][()]
    with h5py.File(out, "r") as f:
        got = f["logits"][()].astype(np.float64)
    with torch.no_grad():
        want = copy.deepcopy(model).double()(torch.from_numpy(images).double()).numpy()
        torch32 = model(torch.from_numpy(images)).numpy().astype(np.float64)
    if got.shape != want.shape:
        die(f"distq logits have shape {got.shape}, torchvision {want.shape}", 1)
    scale = np.abs(want).max()
    err = np.abs(got - want).max() / scale
    err32 = np.abs(torch32 - want).max() / scale
    print(f"correctness: {n_images} images, max|torch logit| = {scale:.4g}; max relative error "
          f"distq(onednn) vs torch float64 = {err:.3e} (tol {TOL:g}); torch fp32 vs float64 = "
          f"{err32:.3e}; same argmax: {int((got.argmax(1) == want.argmax(1)).sum())}/{n_images}")
    return err


def build_variants(model, batch):
    """Traced+frozen channels_last modules: plain, and with optimize_for_inference."""
    model = model.float().to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        frozen = torch.jit.freeze(torch.jit.trace(model, x))
        variants = {"freeze": frozen}
        try:
            opt = torch.jit.optimize_for_inference(
                torch.jit.freeze(torch.jit.trace(model, x)))
            opt(x)
            variants["freeze+optimize_for_inference"] = opt
        except Exception as exc:  # some builds lack MKLDNN fusions
            print(f"  (optimize_for_inference unavailable: {exc})")
    return variants, x


def time_module(mod, x, min_time, min_iters=10, warmup=3):
    with torch.no_grad():
        for _ in range(warmup):
            mod(x)
        samples, total = [], 0.0
        while len(samples) < min_iters or total < min_time:
            t0 = time.perf_counter()
            mod(x)
            dt = time.perf_counter() - t0
            samples.append(dt)
            total += dt
    batch = x.shape[0]
    return {"p50": 1e3 * np.percentile(samples, 50), "p90": 1e3 * np.percentile(samples, 90),
            "ips": batch * len(samples) / total, "iters": len(samples)}


def cpu_seconds():
    """(CPU seconds all processes were busy, CPU seconds this process and its children used)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    t = os.times()
    return ((user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK"),
            t.user + t.system + t.children_user + t.children_system)


def measured(fn, *a):
    """Runs fn(*a) -> dict and adds 'other': CPUs other processes kept busy meanwhile."""
    (busy0, own0), t0 = cpu_seconds(), time.perf_counter()
    r = fn(*a)
    (busy1, own1), t1 = cpu_seconds(), time.perf_counter()
    r["other"] = max(0.0, (busy1 - busy0) - (own1 - own0)) / (t1 - t0)
    return r


def torch_point(variants, x, min_time):
    probe = {k: time_module(m, x, min(1.0, min_time), min_iters=3)["p50"]
             for k, m in variants.items()}
    best = min(probe, key=probe.get)
    r = time_module(variants[best], x, min_time)
    r["note"] = f"{best}; probe p50 " + ", ".join(f"{k} {v:.2f}" for k, v in probe.items())
    return r


def distq_point(distq, model_path, batch, threads, min_time):
    text = run_distq(distq, "bench", "--model", model_path, "--batch", batch,
                     "--threads", threads, "--min-time", min_time, "--iters", 10)
    for row in csv.reader(line for line in text.splitlines() if line.startswith("perf,")):
        if int(row[4]) == batch and int(row[5]) == 0:
            return {"p50": float(row[8]), "p90": float(row[9]), "ips": float(row[11]),
                    "isa": row[12], "note": f"oneDNN ISA {row[12]}", "iters": "-"}
    die(f"distq bench printed no perf line for batch {batch}:\n{text}")


def show(label, b, r):
    print(f"  {label:<8} bs {b:<3} p50 {r['p50']:8.2f} ms  p90 {r['p90']:8.2f} ms  "
          f"{r['ips']:7.1f} images/s  iters {r['iters']}  other load {r['other']:.2f} CPU  "
          f"({r['note']})")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--distq", default="build/distq")
    p.add_argument("--model", help="distq model file (default: distq model --arch resnet18 --seed 1)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", default="1,50")
    p.add_argument("--min-time", type=float, default=10.0, help="seconds per timed point")
    p.add_argument("--images", type=int, default=4, help="images for the correctness check")
    args = p.parse_args()
    distq = os.path.abspath(args.distq)
    if not (os.path.isfile(distq) and os.access(distq, os.X_OK)):
        die(f"distq binary not found or not executable: {args.distq} "
            "(build it: cmake -S . -B build && make -C build distq)")
    try:
        batches = [int(b) for b in args.batch.split(",")]
    except ValueError:
        die(f"--batch must be a comma-separated list of integers, got '{args.batch}'")
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="distq_cmp_") as tmp:
        if args.model is None:
            args.model = os.path.join(tmp, "resnet18.h5")
            run_distq(distq, "model", "--arch", "resnet18", "--seed", 1, "-o", args.model)
        elif not os.path.isfile(args.model):
            die(f"model file not found: {args.model}")
        model = load_resnet18(args.model)
        print(f"model {args.model}: {len(model.state_dict())} tensors match torchvision "
              f"resnet18 (torch {torch.__version__}, torchvision {torchvision.__version__})")
        err = check_correctness(distq, args.model, model, tmp, args.images)

        print(f"timing: {args.threads} thread(s), >= {args.min_time:g} s and 10 iters per point; "
              "per batch: torch, distq, torch (the better torch run is kept)")
        dq, best = {}, {}
        for b in batches:
            variants, x = build_variants(model, b)
            t1 = measured(torch_point, variants, x, args.min_time)
            show("torch", b, t1)
            dq[b] = measured(distq_point, distq, args.model, b, args.threads, args.min_time)
            show("distq", b, dq[b])
            t2 = measured(torch_point, variants, x, args.min_time)
            show("torch", b, t2)
            best[b] = max(t1, t2, key=lambda r: r["ips"])

    print(f"\ndistq (onednn, ISA {dq[batches[0]]['isa']}) vs PyTorch {torch.__version__} fp32, "
          f"{args.threads} thread(s); torch = better of its two runs")
    print(f"{'batch':>5} {'distq p50 ms':>12} {'distq img/s':>11} {'torch p50 ms':>12} "
          f"{'torch img/s':>11} {'distq/torch':>11}")
    for b in batches:
        d, t = dq[b], best[b]
        print(f"{b:>5} {d['p50']:>12.2f} {d['ips']:>11.1f} {t['p50']:>12.2f} {t['ips']:>11.1f} "
              f"{d['ips'] / t['ips']:>11.2f}")
    busiest = max(r["other"] for r in list(dq.values()) + list(best.values()))
    if busiest > 0.2:
        print(f"warning: other processes kept up to {busiest:.2f} CPU(s) busy during these "
              f"measurements ({os.cpu_count()} CPUs); figures may be skewed, rerun on a quiet machine")
    if err > TOL:
        print(f"FAIL: max relative error {err:.3e} > {TOL:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
