#!/usr/bin/python3
"""Compare distq's int8 ResNet-18 against PyTorch FX int8 (onednn engine): calibration, accuracy, speed.

Method
  1. The distq float model file's /tensors are loaded into torchvision resnet18 (eval),
     exactly as scripts/compare_torch_fp32.py does (its helpers are imported).
  2. Calibration, same images and batches on both sides: `distq data` makes
     --calib-images images (seed 11). PyTorch 1.13: torch.backends.quantized.engine =
     "onednn", prepare_fx(model, mapping, example_inputs), a forward pass over the
     images in batches of --calib-batch (read with h5py, in file order), convert_fx.
     distq: `distq calibrate --batches ceil(N/B) --batch-size B --observer O
     --reduce-range auto`, OMP_NUM_THREADS=--threads. Both use --threads threads and
     run twice, interleaved (torch, distq, torch, distq), each with its load figure;
     the faster run of each is compared: PyTorch's forward pass (with observers) vs
     distq's own "calibrate" seconds, and PyTorch prepare+forward+convert vs the wall
     time of the whole `distq calibrate` process (start, load, convert, save included).
  3. Accuracy on --heldout other images (seed 12): relative L2 error
     ||int8 - fp32|| / ||fp32|| over all logits (as `distq eval`) and top-1 agreement,
     PyTorch int8 vs PyTorch fp32 (eager) and distq int8 (`distq infer` on Q.h5) vs
     distq fp32 (`distq infer` on the float model). distq fp32 vs PyTorch fp32 is a
     sanity check (rel L2 must be <= 1e-4, else exit 1).
  4. Speed: PyTorch int8 = converted model, channels_last, torch.jit.trace +
     torch.jit.freeze; PyTorch fp32 = the fp32 script's variants (trace+freeze, and
     +optimize_for_inference; the faster one in a short probe is timed); distq =
     `distq bench --precision fp32,int8` on Q.h5. Per batch size the order is torch
     int8, torch fp32, distq, torch int8, torch fp32; the better torch runs are kept.
     Timing statistics and the /proc/stat load warning are the fp32 script's.

QConfig (PyTorch side)
  This CPU has AVX2 but no VNNI. distq then quantizes activations to u8 [0, 127]
  (reduce_range), because oneDNN's u8*s8 AVX2 kernels (vpmaddubsw) can saturate int16
  with 8-bit activations. PyTorch 1.13's get_default_qconfig_mapping("onednn") uses
  HistogramObserver(reduce_range=False), i.e. u8 [0, 255], whatever the CPU (no VNNI
  check or warning in 1.13); Debian's build has no fbgemm/x86 engine. So by default the
  global qconfig is the x86/fbgemm recipe, matching distq:
    activation = HistogramObserver.with_args(reduce_range=True)   # quint8, [0, 127]
    weight     = PerChannelMinMaxObserver.with_args(dtype=torch.qint8,
                                                    qscheme=torch.per_channel_symmetric)
  (= get_default_qconfig("x86")). --torch-reduce-range off uses reduce_range=False,
  which is get_default_qconfig("onednn"). distq's recipe: histogram (or minmax) u8
  activations, per-channel symmetric s8 weights, BN folded; its fc emits f32 logits,
  PyTorch's fc output is quantized then dequantized.
Exit status: 0 ok, 1 distq fp32 disagrees with PyTorch fp32, 2 setup/usage error.
"""
import argparse
import copy
import csv
import os
import subprocess
import sys
import tempfile
import time
import warnings

import compare_torch_fp32 as fp32  # same directory: load_resnet18, timing and load helpers
from compare_torch_fp32 import h5py, np, torch, torchvision

from torch.ao.quantization import HistogramObserver, PerChannelMinMaxObserver, QConfig, QConfigMapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

FP32_TOL = 1e-4
# reduce_range=True is the x86 recipe's own spelling; 1.13 nags that it "will be deprecated"
warnings.filterwarnings("ignore", message="Please use quant_min and quant_max")


def die(msg, code=2):
    print(f"compare_torch_int8: error: {msg}", file=sys.stderr)
    sys.exit(code)


fp32.die = die  # the imported helpers report errors under this script's name


def read_h5(path, name):
    with h5py.File(path, "r") as f:
        return f[name][()]


def distq_env(threads):
    return dict(fp32.DISTQ_ENV, OMP_NUM_THREADS=str(threads))


def qconfig_mapping(reduce_range):
    return QConfigMapping().set_global(QConfig(
        activation=HistogramObserver.with_args(reduce_range=reduce_range),
        weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8,
                                                  qscheme=torch.per_channel_symmetric)))


def torch_calibrate(model, images, batch, reduce_range):
    """prepare_fx, forward over images in batches, convert_fx; seconds and the int8 model."""
    t = {}
    t0 = time.perf_counter()
    prepared = prepare_fx(copy.deepcopy(model), qconfig_mapping(reduce_range),
                          example_inputs=(torch.from_numpy(images[:batch]),))
    t["prepare"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(images), batch):
            prepared(torch.from_numpy(images[i:i + batch]))
    t["forward"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    quantized = convert_fx(prepared)
    t["convert"] = time.perf_counter() - t0
    t["total"] = t["prepare"] + t["forward"] + t["convert"]
    t["model"] = quantized
    return t


def distq_calibrate(distq, model, data, out, n, batch, observer, threads):
    cmd = [distq, "calibrate", "--model", model, "--data", data, "--batches", str(-(-n // batch)),
           "--batch-size", str(batch), "--observer", observer, "--reduce-range", "auto", "-o", out]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=distq_env(threads), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        die(f"'{' '.join(cmd)}' exited {proc.returncode}:\n{proc.stderr.strip() or proc.stdout.strip()}")
    lines = proc.stdout.splitlines()
    timing = next((ln for ln in lines if ln.startswith("time:")), "")
    wrote = next((ln for ln in lines if ln.startswith("wrote ")), "")
    try:
        calib_s = float(timing.split("calibrate ")[1].split()[0])
    except (IndexError, ValueError):
        die(f"no 'time: ... calibrate X s' line in distq calibrate's output:\n{proc.stdout}")
    return {"wall": wall, "calibrate": calib_s, "timing": timing, "wrote": wrote,
            "qmax": 127 if "[0, 127]" in wrote else 255}


def compare(y, ref):
    y, ref = y.astype(np.float64), ref.astype(np.float64)
    return (np.sqrt(((y - ref) ** 2).sum() / (ref ** 2).sum()),
            100.0 * (y.argmax(1) == ref.argmax(1)).mean())


def distq_bench(distq, qmodel, batch, threads, min_time):
    text = fp32.run_distq(distq, "bench", "--model", qmodel, "--precision", "fp32,int8",
                          "--batch", batch, "--threads", threads, "--min-time", min_time,
                          "--min-iters", 10)
    res = {}
    for row in csv.reader(ln for ln in text.splitlines() if ln.startswith("perf,")):
        if int(row[4]) == batch and int(row[5]) == 0:
            res[row[2]] = {"p50": float(row[8]), "p90": float(row[9]), "ips": float(row[11]),
                           "iters": "-", "note": f"oneDNN ISA {row[12]}", "isa": row[12]}
    if set(res) != {"fp32", "int8"}:
        die(f"distq bench printed no fp32 and int8 perf lines for batch {batch}:\n{text}")
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--distq", default="build/distq")
    p.add_argument("--model", help="distq model file (default: distq model --arch resnet18 --seed 1)")
    p.add_argument("--calib-images", type=int, default=64)
    p.add_argument("--calib-batch", type=int, default=8)
    p.add_argument("--heldout", type=int, default=50)
    p.add_argument("--observer", choices=("histogram", "minmax"), default="histogram",
                   help="distq's observer (PyTorch always uses HistogramObserver)")
    p.add_argument("--torch-reduce-range", choices=("on", "off"), default="on",
                   help="on: x86 recipe, u8 [0,127] like distq here; off: onednn default [0,255]")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", default="1,50")
    p.add_argument("--min-time", type=float, default=10.0, help="seconds per timed point")
    args = p.parse_args()
    distq = os.path.abspath(args.distq)
    if not (os.path.isfile(distq) and os.access(distq, os.X_OK)):
        die(f"distq binary not found or not executable: {args.distq}")
    try:
        batches = [int(b) for b in args.batch.split(",")]
    except ValueError:
        die(f"--batch must be a comma-separated list of integers, got '{args.batch}'")
    if min(batches + [args.calib_images, args.calib_batch, args.heldout, args.threads]) < 1:
        die("--batch, --calib-images, --calib-batch, --heldout and --threads must be >= 1")
    if "onednn" not in torch.backends.quantized.supported_engines:
        die(f"this PyTorch has no onednn quantized engine ({torch.backends.quantized.supported_engines})")
    torch.backends.quantized.engine = "onednn"
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="distq_cmp8_") as tmp:
        path = lambda name: os.path.join(tmp, name)  # noqa: E731
        if args.model is None:
            args.model = path("resnet18.h5")
            fp32.run_distq(distq, "model", "--arch", "resnet18", "--seed", 1, "-o", args.model)
        elif not os.path.isfile(args.model):
            die(f"model file not found: {args.model}")
        model = fp32.load_resnet18(args.model)
        print(f"model {args.model}: torchvision resnet18 (torch {torch.__version__}, torchvision "
              f"{torchvision.__version__}, quantized engine {torch.backends.quantized.engine})")
        calib, held, qmodel = path("calib.h5"), path("heldout.h5"), path("resnet18_int8.h5")
        fp32.run_distq(distq, "data", "--shape", "3,224,224", "-n", args.calib_images, "--seed", 11, "-o", calib)
        fp32.run_distq(distq, "data", "--shape", "3,224,224", "-n", args.heldout, "--seed", 12, "-o", held)

        # --- calibration: same images, batches and threads; torch, distq, torch, distq
        rr = args.torch_reduce_range == "on"
        print(f"\ncalibration: {args.calib_images} images in batches of {args.calib_batch}, "
              f"{args.threads} thread(s), two rounds; torch qconfig: HistogramObserver(reduce_range="
              f"{rr}) -> quint8 [0, {127 if rr else 255}], PerChannelMinMaxObserver(qint8, "
              "per_channel_symmetric)")
        calib_images, tts, dcs = read_h5(calib, "images"), [], []
        for _ in range(2):
            tts.append(fp32.measured(torch_calibrate, model, calib_images, args.calib_batch, rr))
            tt = tts[-1]
            print(f"  torch  prepare_fx {tt['prepare']:.2f} s + forward {tt['forward']:.2f} s + "
                  f"convert_fx {tt['convert']:.2f} s = {tt['total']:.2f} s  (other load {tt['other']:.2f} CPU)")
            dcs.append(fp32.measured(distq_calibrate, distq, args.model, calib, qmodel, args.calib_images,
                                     args.calib_batch, args.observer, args.threads))
            dc = dcs[-1]
            print(f"  distq  {dc['timing'][6:]}; wall {dc['wall']:.2f} s  (other load {dc['other']:.2f} CPU)")
        tq = tts[-1]["model"]
        tt, dc = min(tts, key=lambda r: r["total"]), min(dcs, key=lambda r: r["wall"])
        print(f"  best of 2: torch forward {tt['forward']:.2f} s vs distq calibrate {dc['calibrate']:.2f} s "
              f"({tt['forward'] / dc['calibrate']:.2f}x); torch prepare+forward+convert {tt['total']:.2f} s "
              f"vs distq wall {dc['wall']:.2f} s ({tt['total'] / dc['wall']:.2f}x)")
        print(f"  distq  {dc['wrote']}")
        if dc["qmax"] != (127 if rr else 255):
            print(f"  note: activation ranges differ (distq [0, {dc['qmax']}], torch [0, {127 if rr else 255}])")

        # --- accuracy on held-out images
        images = torch.from_numpy(read_h5(held, "images"))
        with torch.no_grad():
            t32, t8 = model(images).numpy(), tq(images).numpy()
        fp32.run_distq(distq, "infer", "--model", qmodel, "--data", held, "-o", path("d8.h5"))
        fp32.run_distq(distq, "infer", "--model", args.model, "--data", held, "-o", path("d32.h5"))
        d8, d32 = read_h5(path("d8.h5"), "logits"), read_h5(path("d32.h5"), "logits")
        acc = {"torch int8 vs torch fp32": compare(t8, t32),
               "distq int8 vs distq fp32": compare(d8, d32),
               "distq int8 vs torch fp32": compare(d8, t32),
               "distq int8 vs torch int8": compare(d8, t8),
               "distq fp32 vs torch fp32 (sanity)": compare(d32, t32)}
        print(f"\naccuracy on {args.heldout} held-out images (logits, relative L2 = ||a-b||/||b||):")
        for k, (err, agree) in acc.items():
            print(f"  {k:<34} relative L2 {err:.5f}  top-1 agreement {agree:6.2f}%")

        # --- speed, interleaved
        print(f"\ntiming: {args.threads} thread(s), >= {args.min_time:g} s and 10 iters per point; per "
              "batch: torch int8, torch fp32, distq fp32+int8, torch int8, torch fp32 (better torch kept)")
        res = {}
        for b in batches:
            variants32, x = fp32.build_variants(model, b)
            with torch.no_grad():
                v8 = {"trace+freeze": torch.jit.freeze(torch.jit.trace(tq, x))}
            runs = {"torch int8": [], "torch fp32": []}
            for rnd in range(2):
                for key, variants in (("torch int8", v8), ("torch fp32", variants32)):
                    r = fp32.measured(fp32.torch_point, variants, x, args.min_time)
                    fp32.show(key.replace("torch ", "torch/"), b, r)
                    runs[key].append(r)
                if rnd == 0:
                    d = fp32.measured(distq_bench, distq, qmodel, b, args.threads, args.min_time)
                    for prec in ("fp32", "int8"):
                        d[prec]["other"] = d["other"]
                        fp32.show(f"distq/{prec}", b, d[prec])
            res[b] = {"distq int8": d["int8"], "distq fp32": d["fp32"],
                      **{k: max(v, key=lambda r: r["ips"]) for k, v in runs.items()}}

    isa = res[batches[0]]["distq int8"]["isa"]
    print(f"\ndistq (onednn, ISA {isa}) vs PyTorch {torch.__version__} FX int8 (onednn engine), "
          f"{args.threads} thread(s); torch = better of its two runs")
    print(f"{'batch':>5}  {'':<10} {'p50 ms':>8} {'images/s':>9}")
    for b in batches:
        for k in ("distq int8", "torch int8", "distq fp32", "torch fp32"):
            print(f"{b:>5}  {k:<10} {res[b][k]['p50']:>8.2f} {res[b][k]['ips']:>9.1f}")
    print("ratios (throughput = images/s; latency = p50):")
    for b in batches:
        r = res[b]
        print(f"  bs {b:<3} distq int8 / torch int8: throughput {r['distq int8']['ips'] / r['torch int8']['ips']:.2f}x, "
              f"latency {r['distq int8']['p50'] / r['torch int8']['p50']:.2f}x;  int8/fp32 speed-up: "
              f"distq {r['distq int8']['ips'] / r['distq fp32']['ips']:.2f}x, "
              f"torch {r['torch int8']['ips'] / r['torch fp32']['ips']:.2f}x")
    busiest = max([r["other"] for b in batches for r in res[b].values()] + [tt["other"], dc["other"]])
    if busiest > 0.2:
        print(f"warning: other processes kept up to {busiest:.2f} CPU(s) busy during these "
              f"measurements ({os.cpu_count()} CPUs); figures may be skewed, rerun on a quiet machine")
    if acc["distq fp32 vs torch fp32 (sanity)"][0] > FP32_TOL:
        print(f"FAIL: distq fp32 vs torch fp32 relative L2 > {FP32_TOL:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
