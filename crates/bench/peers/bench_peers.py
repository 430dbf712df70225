#!/usr/bin/env python3
"""kiln-bench's peers: the same workloads, shapes, dtypes and seeds as `kiln-bench`, run in
PyTorch eager, torch.compile, jax.jit, (inference workloads) ONNX Runtime and (inference
workloads without recurrence) NumPy with its bundled OpenBLAS, printing the same JSON lines
(one per workload, framework and thread count).

Optional: CI never runs it. Needs the pinned packages in requirements.txt beside it.

Data (identical to crates/bench/src/workloads.rs): an input is
jax.random.uniform(PRNGKey(seed), shape, float32, -1, 1) with seed 1 (2 for a second input);
the k-th model parameter in state_dict order is uniform(fold_in(PRNGKey(0), k), shape, -b, b)
with PyTorch's default bound b (1/sqrt(fan_in) for Linear/Conv2d, 1/sqrt(hidden) for LSTM;
xavier for the transformer's packed q/k/v projection); parameters PyTorch sets to a constant c
(the transformer's attention and LayerNorm biases, LayerNorm weights) are drawn as
uniform(fold_in(PRNGKey(0), k), shape, c - b, c + b) with b = 1/sqrt(256) instead;
labels are i % 10. Train steps: mean cross-entropy, Adam(lr=1e-3), PyTorch defaults.

The transformer workloads are one nn.TransformerEncoderLayer(256, 4, 1024, dropout=0.0,
batch_first=True) (post-norm, ReLU) over x [8, 128, 256]; the train step pools its output
over the sequence (mean over axis 1) and applies a Linear(256, 10) `head`. Parameter keys
are the state_dict of a module holding the layer as `layer` (and `head`).

Every (framework, threads, workload) runs in its own child process pinned to the first
`threads` CPUs (sched_setaffinity, like taskset) with torch.set_num_threads, XLA's
intra-op thread pool flag, ORT's intra_op_num_threads and OPENBLAS_NUM_THREADS set to the same
count.

    python3 crates/bench/peers/bench_peers.py --out target/bench/peers.jsonl
"""

import argparse
import json
import os
import subprocess
import sys
import time

WORKLOADS = [
    "simple_nn_infer_b1",
    "simple_nn_infer_b256",
    "simple_nn_train_b64",
    "lstm_infer_b64",
    "lstm_infer_b1",
    "lstm_train_b64",
    "lenet_infer_b64",
    "lenet_train_b64",
    "transformer_infer_b8",
    "transformer_train_b8",
    "matmul_1024",
    "ew_chain_16m",
    "softmax_4096x1024",
    "layernorm_4096x1024",
]
FRAMEWORKS = ["torch_eager", "torch_compile", "jax_jit", "onnxruntime", "numpy"]
M4 = 4096 * 1024 * 4


def _simple(b):
    return 2.0 * b * (784 * 128 + 128 * 10)


def _lstm_fwd(b):
    return 2.0 * b * 28 * 512 * ((28 + 128) + (128 + 128)) + 2.0 * b * 1280


_LSTM_FWD = _lstm_fwd(64)
_LENET_FWD = 64 * 2.0 * (6 * 784 * 25 + 16 * 100 * 150 + 400 * 120 + 120 * 84 + 84 * 10)
# Transformer encoder layer, batch 8, seq 128, d_model 256, feed-forward 1024: the four
# projections, q.k^T and p.v, and the feed-forward block (softmax, layer norms not counted).
T_B, T_S, T_D, T_F, T_H = 8, 128, 256, 1024, 4
_TR_FWD = 2.0 * T_B * T_S * (4 * T_D * T_D + 2 * T_S * T_D + 2 * T_D * T_F)
_TR_X = T_B * T_S * T_D
N16M = 16 << 20

# name -> (flops, bytes, limit, train); must match workloads.rs.
META = {
    "simple_nn_infer_b1": (_simple(1), 4.0 * (784 + 10), None, False),
    "simple_nn_infer_b256": (_simple(256), 4.0 * 256 * (784 + 10), None, False),
    "simple_nn_train_b64": (3 * _simple(64), 4.0 * 64 * 785, None, True),
    "lstm_infer_b64": (_LSTM_FWD, 4.0 * 64 * (784 + 10), None, False),
    "lstm_infer_b1": (_lstm_fwd(1), 4.0 * (784 + 10), None, False),
    "lstm_train_b64": (3 * _LSTM_FWD, 4.0 * 64 * 785, None, True),
    "lenet_infer_b64": (_LENET_FWD, 4.0 * 64 * (784 + 10), None, False),
    "lenet_train_b64": (3 * _LENET_FWD, 4.0 * 64 * 785, None, True),
    "transformer_infer_b8": (_TR_FWD, 4.0 * 2 * _TR_X, None, False),
    "transformer_train_b8": (3 * (_TR_FWD + 2.0 * T_B * T_D * 10), 4.0 * (_TR_X + T_B), None, True),
    "matmul_1024": (2.0 * 1024**3, 3.0 * 1024 * 1024 * 4, "fma", False),
    "ew_chain_16m": (N16M * 7.0, 2.0 * N16M * 4, "copy", False),
    "softmax_4096x1024": (4096 * 1024 * 4.0, 2.0 * M4, "copy", False),
    "layernorm_4096x1024": (4096 * 1024 * 6.0, 2.0 * M4, "copy", False),
}


# ----------------------------------------------------------------------------- data


def _lin(p, i, o):
    b = 1.0 / i**0.5
    return [(f"{p}.weight", (o, i), b), (f"{p}.bias", (o,), b)]


def param_specs(model):
    if model == "simple_nn":
        return _lin("fc1", 784, 128) + _lin("fc2", 128, 10)
    if model == "lstm":
        b = 1.0 / 128**0.5
        v = []
        for l in range(2):
            inp = 28 if l == 0 else 128
            v += [
                (f"lstm.weight_ih_l{l}", (512, inp), b),
                (f"lstm.weight_hh_l{l}", (512, 128), b),
                (f"lstm.bias_ih_l{l}", (512,), b),
                (f"lstm.bias_hh_l{l}", (512,), b),
            ]
        return v + _lin("fc", 128, 10)
    if model == "lenet":

        def conv(p, cin, cout):
            b = 1.0 / (cin * 25) ** 0.5
            return [(f"{p}.weight", (cout, cin, 5, 5), b), (f"{p}.bias", (cout,), b)]

        return conv("conv1", 1, 6) + conv("conv2", 6, 16) + _lin("fc1", 400, 120) + _lin("fc2", 120, 84) + _lin("fc3", 84, 10)
    if model in ("transformer", "transformer_cls"):
        d, f = T_D, T_F
        b = 1.0 / d**0.5
        v = [
            ("layer.self_attn.in_proj_weight", (3 * d, d), (6.0 / (d + 3 * d)) ** 0.5),
            ("layer.self_attn.in_proj_bias", (3 * d,), b),
            ("layer.self_attn.out_proj.weight", (d, d), b),
            ("layer.self_attn.out_proj.bias", (d,), b),
            ("layer.linear1.weight", (f, d), b),
            ("layer.linear1.bias", (f,), b),
            ("layer.linear2.weight", (d, f), 1.0 / f**0.5),
            ("layer.linear2.bias", (d,), 1.0 / f**0.5),
            ("layer.norm1.weight", (d,), b, 1.0),
            ("layer.norm1.bias", (d,), b),
            ("layer.norm2.weight", (d,), b, 1.0),
            ("layer.norm2.bias", (d,), b),
        ]
        return v + (_lin("head", d, 10) if model == "transformer_cls" else [])
    raise ValueError(model)


def uniform(seed, shape):
    import jax
    import jax.numpy as jnp
    import numpy as np

    return np.asarray(jax.random.uniform(jax.random.PRNGKey(seed), shape, jnp.float32, -1.0, 1.0))


def params(model):
    import jax
    import jax.numpy as jnp
    import numpy as np

    out = {}
    for k, (name, shape, b, *centre) in enumerate(param_specs(model)):
        c = centre[0] if centre else 0.0
        key = jax.random.fold_in(jax.random.PRNGKey(0), k)
        out[name] = np.asarray(jax.random.uniform(key, shape, jnp.float32, c - b, c + b))
    return out


def labels(n):
    import numpy as np

    return (np.arange(n, dtype=np.int64) % 10).astype(np.int64)


X_SHAPE = {
    "simple_nn": (None, 784),
    "lstm": (None, 28, 28),
    "lenet": (None, 1, 28, 28),
    "transformer": (None, T_S, T_D),
    "transformer_cls": (None, T_S, T_D),
}


def model_of(workload):
    if workload.startswith("transformer"):
        return "transformer_cls" if "_train_" in workload else "transformer"
    for m in ("simple_nn", "lstm", "lenet"):
        if workload.startswith(m):
            return m
    return None


def batch_of(workload):
    return int(workload.rsplit("_b", 1)[1])


def x_for(model, batch):
    return uniform(1, (batch,) + X_SHAPE[model][1:])


# ----------------------------------------------------------------------------- timing


def time_it(run, max_seconds, repeats):
    """Same procedure as measure.rs: probe (checksum), warm-up, timed repeats."""
    t0 = time.perf_counter()
    check = run(True)
    probe = time.perf_counter() - t0
    if probe > max_seconds / 2:
        return [probe], 0, f"1 iteration only: the first run took {probe:.3g} s (> half of --max-seconds {max_seconds})", check
    warm, last, ws = 1, probe, time.perf_counter()
    while warm < 3 and time.perf_counter() - ws + last < max(0.2, 2 * probe):
        t = time.perf_counter()
        run(False)
        last = time.perf_counter() - t
        warm += 1
    per = max(last, 1e-9)
    target = repeats if repeats else min(max(int(max_seconds / per), 5), 200)
    samples, start, capped = [], time.perf_counter(), None
    while len(samples) < target:
        t = time.perf_counter()
        run(False)
        samples.append(time.perf_counter() - t)
        if not repeats and time.perf_counter() - start > 1.5 * max_seconds and len(samples) >= 3 and len(samples) < target:
            capped = f"{len(samples)} repeats: time budget spent"
            break
    return samples, warm, capped, check


def quantile(sorted_s, q):
    n = len(sorted_s)
    if n == 1:
        return sorted_s[0]
    pos = q * (n - 1)
    lo = int(pos)
    hi = min(lo + 1, n - 1)
    return sorted_s[lo] + (sorted_s[hi] - sorted_s[lo]) * (pos - lo)


# ----------------------------------------------------------------------------- torch


def torch_modules():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class SimpleNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x):
            return self.fc2(F.relu(self.fc1(x)))

    class LSTMNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(28, 128, num_layers=2, batch_first=True)
            self.fc = nn.Linear(128, 10)

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.fc(out[:, -1])

    class LeNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1 = nn.Linear(400, 120)
            self.fc2 = nn.Linear(120, 84)
            self.fc3 = nn.Linear(84, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2).flatten(1)
            return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))

    class Transformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.TransformerEncoderLayer(T_D, T_H, T_F, dropout=0.0, batch_first=True)

        def forward(self, x):
            return self.layer(x)

    class TransformerCls(Transformer):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(T_D, 10)

        def forward(self, x):
            return self.head(self.layer(x).mean(1))

    class MatMul(nn.Module):
        def forward(self, a, b):
            return a @ b

    class EwChain(nn.Module):
        def forward(self, x):
            return torch.tanh(x * 1.7 + 0.3) * torch.sigmoid(x) - 0.5 * x

    class Softmax(nn.Module):
        def forward(self, x):
            return torch.softmax(x, -1)

    class LayerNorm(nn.Module):
        def forward(self, x):
            return F.layer_norm(x, (1024,), eps=1e-5)

    return {"simple_nn": SimpleNN, "lstm": LSTMNN, "lenet": LeNet, "transformer": Transformer, "transformer_cls": TransformerCls, "matmul": MatMul, "ew": EwChain, "softmax": Softmax, "layernorm": LayerNorm}


def torch_problem(workload):
    """(module, inputs as numpy, train) with seeded parameters loaded."""
    import torch

    mods = torch_modules()
    m = model_of(workload)
    if m is not None:
        net = mods[m]()
        p = params(m)
        sd = net.state_dict()
        assert list(sd.keys()) == [s[0] for s in param_specs(m)], list(sd.keys())
        net.load_state_dict({k: torch.from_numpy(v) for k, v in p.items()})
        b = batch_of(workload)
        inputs = [x_for(m, b)]
        if "_train_" in workload:
            inputs.append(labels(b))
        else:
            # Inference mode as a user runs it (the encoder layer's fused fast path; dropout is
            # 0 and no model has batch norm, so the function is the same).
            net.eval()
        return net, inputs
    if workload == "matmul_1024":
        return mods["matmul"](), [uniform(1, (1024, 1024)), uniform(2, (1024, 1024))]
    if workload == "ew_chain_16m":
        return mods["ew"](), [uniform(1, (N16M,))]
    if workload == "softmax_4096x1024":
        return mods["softmax"](), [uniform(1, (4096, 1024))]
    if workload == "layernorm_4096x1024":
        return mods["layernorm"](), [uniform(1, (4096, 1024))]
    raise ValueError(workload)


def run_torch(workload, threads, compiled, args):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    net, inputs = torch_problem(workload)
    ts = [torch.from_numpy(a) for a in inputs]
    fwd = torch.compile(net) if compiled else net
    note = None
    if "_train_" in workload:
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        x, y = ts

        def run(check):
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(fwd(x), y)
            loss.backward()
            opt.step()
            return float(loss.item()) if check else None

        note = "adam(lr=1e-3)" + ("; model compiled, optimizer step eager" if compiled else "")
    else:

        def run(check):
            with torch.inference_mode():
                out = fwd(*ts)
            return float(out.double().sum().item()) if check else None

    return run, note


# ----------------------------------------------------------------------------- jax


def run_jax(workload, threads, args):
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    def linear(p, name, x):
        return x @ p[f"{name}.weight"].T + p[f"{name}.bias"]

    def simple_nn(p, x):
        return linear(p, "fc2", jax.nn.relu(linear(p, "fc1", x)))

    def lstm(p, x):
        n = x.shape[0]
        state = [(jnp.zeros((n, 128), jnp.float32), jnp.zeros((n, 128), jnp.float32)) for _ in range(2)]
        for t in range(28):
            inp = x[:, t, :]
            for l in range(2):
                h, c = state[l]
                gates = inp @ p[f"lstm.weight_ih_l{l}"].T + p[f"lstm.bias_ih_l{l}"] + h @ p[f"lstm.weight_hh_l{l}"].T + p[f"lstm.bias_hh_l{l}"]
                i, f, g, o = jnp.split(gates, 4, axis=-1)
                c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
                h = jax.nn.sigmoid(o) * jnp.tanh(c)
                state[l] = (h, c)
                inp = h
        return linear(p, "fc", state[1][0])

    def lenet(p, x):
        def conv(x, name, pad):
            y = lax.conv_general_dilated(x, p[f"{name}.weight"], (1, 1), [(pad, pad), (pad, pad)], dimension_numbers=("NCHW", "OIHW", "NCHW"))
            y = jax.nn.relu(y + p[f"{name}.bias"][None, :, None, None])
            return lax.reduce_window(y, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

        h = conv(conv(x, "conv1", 2), "conv2", 0).reshape(x.shape[0], -1)
        h = jax.nn.relu(linear(p, "fc1", h))
        h = jax.nn.relu(linear(p, "fc2", h))
        return linear(p, "fc3", h)

    def layer_norm(p, name, x):
        mu = jnp.mean(x, axis=-1, keepdims=True)
        c = x - mu
        y = c * lax.rsqrt(jnp.mean(c * c, axis=-1, keepdims=True) + 1e-5)
        return y * p[f"{name}.weight"] + p[f"{name}.bias"]

    def transformer(p, x):
        n, s, d = x.shape
        dh = d // T_H
        qkv = x @ p["layer.self_attn.in_proj_weight"].T + p["layer.self_attn.in_proj_bias"]

        def heads(i):
            return qkv[..., i * d : (i + 1) * d].reshape(n, s, T_H, dh).transpose(0, 2, 1, 3)

        q, k, v = heads(0) * (1.0 / dh**0.5), heads(1), heads(2)
        att = jax.nn.softmax(q @ k.swapaxes(-1, -2), axis=-1) @ v
        att = att.transpose(0, 2, 1, 3).reshape(n, s, d)
        h = layer_norm(p, "layer.norm1", x + linear(p, "layer.self_attn.out_proj", att))
        ff = linear(p, "layer.linear2", jax.nn.relu(linear(p, "layer.linear1", h)))
        return layer_norm(p, "layer.norm2", h + ff)

    def transformer_cls(p, x):
        return linear(p, "head", jnp.mean(transformer(p, x), axis=1))

    models = {"simple_nn": simple_nn, "lstm": lstm, "lenet": lenet, "transformer": transformer, "transformer_cls": transformer_cls}
    m = model_of(workload)
    if m is not None:
        f = models[m]
        p = {k: jnp.asarray(v) for k, v in params(m).items()}
        b = batch_of(workload)
        x = jnp.asarray(x_for(m, b))
        if "_train_" in workload:
            y = jnp.asarray(labels(b))

            def loss_fn(p, x, y):
                logp = jax.nn.log_softmax(f(p, x), axis=-1)
                return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

            @jax.jit
            def step(p, m1, v1, t, x, y):
                loss, g = jax.value_and_grad(loss_fn)(p, x, y)
                t = t + 1.0
                b1, b2, lr, eps = 0.9, 0.999, 1e-3, 1e-8
                m1 = jax.tree.map(lambda m, g: m + (1 - b1) * (g - m), m1, g)
                v1 = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, v1, g)
                bc1 = 1 - b1**t
                bc2 = 1 - b2**t
                p = jax.tree.map(lambda p, m, v: p - lr / bc1 * m / (jnp.sqrt(v) / jnp.sqrt(bc2) + eps), p, m1, v1)
                return loss, p, m1, v1, t

            st = {"p": p, "m": jax.tree.map(jnp.zeros_like, p), "v": jax.tree.map(jnp.zeros_like, p), "t": jnp.float32(0)}

            def run(check):
                loss, st["p"], st["m"], st["v"], st["t"] = step(st["p"], st["m"], st["v"], st["t"], x, y)
                loss.block_until_ready()
                return float(loss) if check else None

            return run, "adam(lr=1e-3)"
        fn = jax.jit(lambda x: f(p, x))
        ins = [x]
    elif workload == "matmul_1024":
        fn = jax.jit(lambda a, b: a @ b)
        ins = [jnp.asarray(uniform(1, (1024, 1024))), jnp.asarray(uniform(2, (1024, 1024)))]
    elif workload == "ew_chain_16m":
        fn = jax.jit(lambda x: jnp.tanh(x * 1.7 + 0.3) * jax.nn.sigmoid(x) - 0.5 * x)
        ins = [jnp.asarray(uniform(1, (N16M,)))]
    elif workload == "softmax_4096x1024":
        fn = jax.jit(lambda x: jax.nn.softmax(x, axis=-1))
        ins = [jnp.asarray(uniform(1, (4096, 1024)))]
    elif workload == "layernorm_4096x1024":

        def ln(x):
            mu = jnp.mean(x, axis=-1, keepdims=True)
            c = x - mu
            return c * lax.rsqrt(jnp.mean(c * c, axis=-1, keepdims=True) + 1e-5)

        fn = jax.jit(ln)
        ins = [jnp.asarray(uniform(1, (4096, 1024)))]
    else:
        raise ValueError(workload)

    def run(check):
        out = fn(*ins)
        out.block_until_ready()
        return float(np.asarray(out, dtype=np.float64).sum()) if check else None

    return run, None


# ----------------------------------------------------------------------------- onnxruntime


def run_ort(workload, threads, args):
    import io

    import onnxruntime as ort
    import torch

    net, inputs = torch_problem(workload)
    names = ["a", "b"] if workload == "matmul_1024" else ["x"]
    buf = io.BytesIO()
    torch.onnx.export(net, tuple(torch.from_numpy(a) for a in inputs), buf, input_names=names, output_names=["y"], opset_version=17, dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    t = time.perf_counter()
    sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
    create_s = time.perf_counter() - t
    feeds = dict(zip(names, inputs))

    def run(check):
        out = sess.run(None, feeds)[0]
        return float(out.astype("float64").sum()) if check else None

    return run, "exported with torch.onnx.export (TorchScript exporter, opset 17)", create_s


# ----------------------------------------------------------------------------- numpy


def run_numpy(workload, threads, args):
    """NumPy (its bundled OpenBLAS for the products; threads from OPENBLAS_NUM_THREADS):
    the inference workloads without recurrence (LeNet's convolutions as a sliding-window
    view contracted with tensordot). `matmul_1024` is the OpenBLAS sgemm
    reference of the CPU-backend goal."""
    import numpy as np

    if workload.startswith("simple_nn_infer"):
        p = params("simple_nn")
        w1, b1, w2, b2 = (np.ascontiguousarray(p[k]) for k in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"))
        w1t, w2t = np.ascontiguousarray(w1.T), np.ascontiguousarray(w2.T)
        x = x_for("simple_nn", batch_of(workload))

        def fn():
            return np.maximum(x @ w1t + b1, 0.0) @ w2t + b2

    elif workload.startswith("lenet_infer"):
        from numpy.lib.stride_tricks import sliding_window_view

        p = params("lenet")
        x = x_for("lenet", batch_of(workload))

        def conv_relu_pool(x, name, pad):
            w, b = p[f"{name}.weight"], p[f"{name}.bias"]
            if pad:
                x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
            win = sliding_window_view(x, w.shape[2:], axis=(2, 3))  # [N, C, H, W, 5, 5]
            y = np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2) + b[:, None, None]
            y = np.maximum(y, np.float32(0.0))
            n, c, h, wd = y.shape
            return y.reshape(n, c, h // 2, 2, wd // 2, 2).max(axis=(3, 5))

        def lin(h, name):
            return h @ p[f"{name}.weight"].T + p[f"{name}.bias"]

        def fn():
            h = conv_relu_pool(conv_relu_pool(x, "conv1", 2), "conv2", 0).reshape(x.shape[0], -1)
            h = np.maximum(lin(h, "fc1"), np.float32(0.0))
            h = np.maximum(lin(h, "fc2"), np.float32(0.0))
            return lin(h, "fc3")

    elif workload.startswith("transformer_infer"):
        p = params("transformer")
        x = x_for("transformer", batch_of(workload))
        n, s, d = x.shape
        dh = d // T_H
        w_in_t = np.ascontiguousarray(p["layer.self_attn.in_proj_weight"].T)
        wt = {k: np.ascontiguousarray(p[f"layer.{k}.weight"].T) for k in ("self_attn.out_proj", "linear1", "linear2")}

        def ln(h, name):
            c = h - h.mean(axis=-1, keepdims=True)
            y = c / np.sqrt((c * c).mean(axis=-1, keepdims=True) + np.float32(1e-5))
            return y * p[f"layer.{name}.weight"] + p[f"layer.{name}.bias"]

        def fn():
            qkv = x @ w_in_t + p["layer.self_attn.in_proj_bias"]
            q, k, v = (qkv[..., i * d : (i + 1) * d].reshape(n, s, T_H, dh).transpose(0, 2, 1, 3) for i in range(3))
            sc = (q * np.float32(1.0 / dh**0.5)) @ k.transpose(0, 1, 3, 2)
            e = np.exp(sc - sc.max(axis=-1, keepdims=True))
            att = (e / e.sum(axis=-1, keepdims=True)) @ v
            att = att.transpose(0, 2, 1, 3).reshape(n, s, d)
            h = ln(x + att @ wt["self_attn.out_proj"] + p["layer.self_attn.out_proj.bias"], "norm1")
            ff = np.maximum(h @ wt["linear1"] + p["layer.linear1.bias"], np.float32(0.0)) @ wt["linear2"] + p["layer.linear2.bias"]
            return ln(h + ff, "norm2")

    elif workload == "matmul_1024":
        a, b = uniform(1, (1024, 1024)), uniform(2, (1024, 1024))

        def fn():
            return a @ b

    elif workload == "ew_chain_16m":
        x = uniform(1, (N16M,))

        def fn():
            return np.tanh(x * np.float32(1.7) + np.float32(0.3)) * (np.float32(1.0) / (np.float32(1.0) + np.exp(-x))) - np.float32(0.5) * x

    elif workload == "softmax_4096x1024":
        x = uniform(1, (4096, 1024))

        def fn():
            e = np.exp(x - x.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)

    elif workload == "layernorm_4096x1024":
        x = uniform(1, (4096, 1024))

        def fn():
            c = x - x.mean(axis=-1, keepdims=True)
            return c / np.sqrt((c * c).mean(axis=-1, keepdims=True) + np.float32(1e-5))

    else:
        raise ValueError(f"numpy: {workload} is not measured (recurrent and training workloads need autodiff)")

    def run(check):
        out = fn()
        return float(out.astype(np.float64).sum()) if check else None

    return run, None


# ----------------------------------------------------------------------------- driver


def record(workload, fw, threads, status, **kw):
    flops, nbytes, limit, _ = META[workload]
    r = {"suite": "peers", "workload": workload, "backend": fw, "threads": threads, "status": status}
    r.update({k: v for k, v in kw.items() if v is not None})
    r["flops"] = flops
    r["bytes"] = nbytes
    if limit:
        r["limit"] = limit
    return r


def child(args):
    workload, fw, threads = args.workload[0], args.framework, args.threads[0]
    try:
        t = time.perf_counter()
        create_s = None
        if fw == "torch_eager":
            run, note = run_torch(workload, threads, False, args)
        elif fw == "torch_compile":
            run, note = run_torch(workload, threads, True, args)
        elif fw == "jax_jit":
            run, note = run_jax(workload, threads, args)
        elif fw == "onnxruntime":
            run, note, create_s = run_ort(workload, threads, args)
        elif fw == "numpy":
            run, note = run_numpy(workload, threads, args)
        else:
            raise ValueError(fw)
        setup_s = time.perf_counter() - t
        # The first call traces/compiles (torch.compile, jax.jit); time it separately. Its
        # checksum (for train steps: the loss before the first update) is the one recorded.
        t = time.perf_counter()
        check = run(True)
        first_s = time.perf_counter() - t
        samples, warm, capped, _ = time_it(run, args.max_seconds, args.repeats)
    except Exception as e:  # noqa: BLE001 - every failure becomes a record
        msg = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        print(json.dumps(record(workload, fw, threads, "failed", note=msg)), flush=True)
        return
    s = sorted(samples)
    med = quantile(s, 0.5)
    flops, nbytes, _, _ = META[workload]
    notes = [n for n in (note, capped) if n]
    compile_s = create_s if create_s is not None else (first_s if fw in ("torch_compile", "jax_jit") else None)
    r = record(
        workload,
        fw,
        threads,
        "ok",
        note="; ".join(notes) if notes else None,
        median_s=med,
        p10_s=quantile(s, 0.1),
        p90_s=quantile(s, 0.9),
        repeats=len(samples),
        warmup=warm + 1,
        build_s=setup_s,
        compile_s=compile_s,
        gflops=flops / med / 1e9,
        gbps=nbytes / med / 1e9,
        check=check,
    )
    print(json.dumps(r), flush=True)


def child_env(threads):
    env = dict(os.environ)
    t = str(threads)
    env.update(
        {
            "OMP_NUM_THREADS": t,
            "MKL_NUM_THREADS": t,
            "OPENBLAS_NUM_THREADS": t,
            "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen={'false' if threads == 1 else 'true'} intra_op_parallelism_threads={t}",
            "TORCHINDUCTOR_COMPILE_THREADS": "1",
        }
    )
    return env


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", action="append", default=[], help="run only this workload (repeatable)")
    ap.add_argument("--framework", action="append", default=[], help=f"one of {FRAMEWORKS} (repeatable); all by default")
    ap.add_argument("--threads", type=int, action="append", default=[], help="thread counts (repeatable; default 1 and 2)")
    ap.add_argument("--repeats", type=int, default=None, help="exact timed repeats (default: as many as fit)")
    ap.add_argument("--max-seconds", type=float, default=5.0, help="time budget per measurement")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds before one measurement's process is killed")
    ap.add_argument("--out", default=None, help="also write the JSON lines here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.framework = args.framework[0]
        child(args)
        return
    workloads = args.workload or WORKLOADS
    for w in workloads:
        if w not in META:
            sys.exit(f"unknown workload {w!r}; known: {', '.join(WORKLOADS)}")
    frameworks = args.framework or FRAMEWORKS
    threads = args.threads or [1, 2]
    ncpu = len(os.sched_getaffinity(0))
    out = open(args.out, "w") if args.out else None
    for t in threads:
        for fw in frameworks:
            for w in workloads:
                if fw == "onnxruntime" and META[w][3]:
                    continue
                if t > ncpu:
                    line = json.dumps(record(w, fw, t, "skipped", note=f"only {ncpu} CPUs"))
                else:
                    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--workload", w, "--framework", fw, "--threads", str(t), "--max-seconds", str(args.max_seconds)]
                    if args.repeats:
                        cmd += ["--repeats", str(args.repeats)]
                    cpus = sorted(os.sched_getaffinity(0))[:t]
                    try:
                        p = subprocess.run(cmd, env=child_env(t), capture_output=True, text=True, timeout=args.timeout, preexec_fn=lambda: os.sched_setaffinity(0, cpus))
                        lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
                        if lines:
                            line = lines[-1]
                        else:
                            err = (p.stderr.strip().splitlines() or ["no output"])[-1][:300]
                            line = json.dumps(record(w, fw, t, "failed", note=f"exit {p.returncode}: {err}"))
                    except subprocess.TimeoutExpired:
                        line = json.dumps(record(w, fw, t, "skipped", note=f"no result within --timeout {args.timeout} s"))
                print(line, flush=True)
                if out:
                    out.write(line + "\n")
                    out.flush()
    if out:
        out.close()


if __name__ == "__main__":
    main()
