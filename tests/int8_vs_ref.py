#!/usr/bin/python3
"""The chained bound of tests/test_int8_cmp.h on logits files written by
`distq infer`: |int8 oneDNN - int8 ref| <= 1 * |int8 ref - fp32| (L2, the
implementation's difference within the quantization error of the same
images), and |int8 ref - fp32| <= 0.5 |fp32| (the quantized model is a model
of the float one). Usage: int8_vs_ref.py LABEL DNN.h5 REF.h5 FP32.h5"""
import sys

import h5py
import numpy as np

label, paths = sys.argv[1], sys.argv[2:5]
dnn, ref, fp32 = (h5py.File(p, "r")["logits"][()].astype(np.float64) for p in paths)
impl, quant, signal = np.linalg.norm(dnn - ref), np.linalg.norm(ref - fp32), np.linalg.norm(fp32)
print(f"{label}: |int8 onednn - int8 ref| / |int8 ref - fp32| = {impl:.4g} / {quant:.4g} = "
      f"{impl / quant if quant else 0:.4f} (bound 1); |int8 ref - fp32| / |fp32| = {quant / signal:.4f} (bound 0.5)")
sys.exit(0 if impl <= 1.0 * quant and quant <= 0.5 * signal else 1)
