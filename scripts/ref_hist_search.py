#!/usr/bin/python3
"""Reference values for tests/test_observers.c: PyTorch's own HistogramObserver
L2 search (_non_linear_param_search) and qparams on a fixed 2048-bin histogram.

Run with Debian's python3-torch (1.13). The search code is the same in 1.13 and
current torchao (only histogram building changed, spec Appendix A.2), so these
values check distq_hist_search against PyTorch itself.
"""
import math

import torch
from torch.ao.quantization.observer import HistogramObserver


def ramp():
    """Fixture 1 (the C test rebuilds it): a ramp over bins 0..299 plus outliers."""
    h = [0.0] * 2048
    for i in range(300):
        h[i] = float((i * 37) % 101)
    h[1500] = 3.0
    h[2047] = 1.0
    return h, -1.5, 6.5


def bell():
    """Fixture 2: a bell over all bins, rounded to integer counts."""
    h = [float(round(1000.0 * math.exp(-0.5 * ((i - 1024) / 200.0) ** 2))) for i in range(2048)]
    return h, -3.0, 5.0


for name, fixture in (("ramp", ramp), ("bell", bell)):
    hist, mn, mx = fixture()
    obs = HistogramObserver(eps=2 ** -12)  # quint8, per_tensor_affine, 2048 bins
    obs.histogram = torch.tensor(hist, dtype=torch.float32)
    obs.min_val = torch.tensor(mn)
    obs.max_val = torch.tensor(mx)
    lo, hi = obs._non_linear_param_search()
    scale, zp = obs._calculate_qparams(lo, hi)
    print(f"{name}: search lo {lo.item():.9g} hi {hi.item():.9g} scale {scale.item():.9g} zp {zp.item()}")
