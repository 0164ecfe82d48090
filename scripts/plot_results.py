#!/usr/bin/python3
"""Plot a distq results file: latency distributions and throughput per rank.

    scripts/plot_results.py results/resnet18_run.h5 -o run.png

One row per benchmark point (precision, batch size, concurrency), in run
order. Left: a box plot of every rank's raw latency samples (ms; whiskers at
the 5th and 95th percentiles, outliers as dots), with the p50/p90/p99 over all
ranks' samples as horizontal lines. Right: every rank's images/s as a bar and
the aggregate (sum over ranks) as a last, differently coloured bar. The title
names the model, rank count, ISA and date. Layout: docs/file-formats.md,
"Results files".

Needs Debian's python3-h5py, python3-numpy and python3-matplotlib (drawn with
the Agg backend, no display needed).
"""
import argparse
import os
import sys

import h5py
import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

FORMAT, VERSION = "distq-results", 1


def fail(msg):
    sys.exit(f"plot_results.py: error: {msg}")


def text(v):
    """An attribute as str (h5py gives str for our strings, bytes for fixed-length ones)."""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.shape in ((), (1,)):
        return text(v.reshape(-1)[0])
    return str(v)


def open_results(path):
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        fail(f"{path}: no such file")
    except OSError as e:
        fail(f"{path}: not an HDF5 file or truncated ({e})")
    fmt = text(f.attrs["format"]) if "format" in f.attrs else None
    if fmt != FORMAT:
        what = f"its format is '{fmt}'" if fmt else "it has no root attribute 'format'"
        f.close()
        fail(f"{path}: not a {FORMAT} file ({what}); distq run writes those")
    version = int(np.asarray(f.attrs.get("version", -1)).reshape(-1)[0])
    if version != VERSION:
        f.close()
        fail(f"{path}: {FORMAT} version {version}, this script reads version {VERSION}")
    return f


def read_points(f, path):
    """[(name, attrs, per-rank latency arrays in s, per-rank images/s, p50/p90/p99, aggregate)]."""
    nranks = int(np.asarray(f.attrs["nranks"]).reshape(-1)[0])
    points = f["points"]
    order = [text(n) for n in points.attrs.get("order", sorted(points.keys()))]
    out = []
    for name in order:
        if name not in points:
            fail(f"{path}: /points attribute order names '{name}', which is not in /points")
        p = points[name]
        lat = []
        for r in range(nranks):
            key = f"ranks/{r}/{name}/latency"
            if key not in f:
                fail(f"{path}: missing dataset /{key}")
            lat.append(np.asarray(f[key][...], dtype=np.float64))
        out.append({
            "name": name,
            "label": f"{text(p.attrs['precision'])}  batch {int(p.attrs['batch'])}  "
                     f"({text(p.attrs['concurrency'])})",
            "latency": lat,
            "ips": np.asarray(p["images_per_s"][...], dtype=np.float64),
            "pct": [float(p[k][()]) for k in ("p50", "p90", "p99")],
            "aggregate": float(p["aggregate_images_per_s"][()]),
        })
    return nranks, out


def rank_labels(f, nranks):
    labels = []
    for r in range(nranks):
        a = f[f"ranks/{r}"].attrs
        numa = int(a["numa_node"])
        labels.append(f"r{r}\n{text(a['host'])}\nnuma {numa if numa >= 0 else '-'}")
    return labels


def plot(f, path, out, dpi):
    nranks, points = read_points(f, path)
    if not points:
        fail(f"{path}: the run has no benchmark points (empty /points)")
    labels = rank_labels(f, nranks)
    n = len(points)
    fig, axes = plt.subplots(n, 2, figsize=(max(10, 4 + 1.6 * nranks), 3.6 * n + 0.4),
                             squeeze=False, gridspec_kw={"width_ratios": [3, 2]},
                             layout="constrained")
    x = np.arange(1, nranks + 1)
    for row, p in enumerate(points):
        ax = axes[row][0]
        data = [s * 1e3 for s in p["latency"]]
        have = [len(d) > 0 for d in data]
        ax.boxplot([d if len(d) else [np.nan] for d in data], positions=x, widths=0.5,
                   whis=(5, 95), showfliers=True, flierprops={"markersize": 3, "alpha": 0.5})
        for value, style, name in zip(p["pct"], (":", "--", "-."), ("p50", "p90", "p99")):
            ax.axhline(value * 1e3, color="tab:red", linestyle=style, linewidth=1,
                       label=f"{name} all ranks {value * 1e3:.3f} ms")
        ax.set_xticks(x)
        ax.set_xticklabels([lb + ("" if h else "\n(no samples)") for lb, h in zip(labels, have)],
                           fontsize=8)
        ax.set_ylabel("latency per batch (ms)")
        ax.set_title(f"{p['label']}: latency per rank", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="best")

        ax = axes[row][1]
        xs = np.arange(nranks + 1)
        values = list(p["ips"]) + [p["aggregate"]]
        colors = ["tab:blue"] * nranks + ["tab:orange"]
        bars = ax.bar(xs, values, color=colors, width=0.6)
        ax.bar_label(bars, labels=[f"{v:.1f}" for v in values], fontsize=7, padding=2)
        ax.set_xticks(xs)
        ax.set_xticklabels([f"r{r}" for r in range(nranks)] + ["all"], fontsize=8)
        ax.set_ylabel("images/s")
        ax.set_ylim(0, max(values) * 1.15 if max(values) > 0 else 1)
        ax.set_title(f"{p['label']}: throughput", fontsize=10)
        ax.grid(axis="y", alpha=0.3)

    a = f.attrs
    model = text(a.get("quantized_model", "")) or text(a.get("model", "")) or "?"
    fig.suptitle(f"{os.path.basename(path)}: {model}, {nranks} rank(s), "
                 f"isa {text(a.get('isa', '?'))}, {text(a.get('date', '?'))}", fontsize=11)
    try:
        fig.savefig(out, dpi=dpi)
    except OSError as e:
        fail(f"{out}: cannot write: {e}")
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", help="a distq-results HDF5 file (distq run)")
    ap.add_argument("-o", "--output", required=True, help="PNG to write")
    ap.add_argument("--dpi", type=int, default=110)
    args = ap.parse_args()
    with open_results(args.results) as f:
        try:
            plot(f, args.results, args.output, args.dpi)
        except KeyError as e:
            fail(f"{args.results}: missing {e} (not a complete {FORMAT} file)")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
