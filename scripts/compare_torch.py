#!/usr/bin/env python3
"""Time the ops of a `gpu-activations bench --json` run in PyTorch on the same machine and print
the ratio to ours.

Usage: scripts/compare_torch.py BENCH.json [--out RESULT.json] [--device auto|cuda|cpu]
                                [--runs N]

PyTorch is timed on resident data, warm-up then the median of many runs: with CUDA events on a
CUDA device, with the wall clock on the CPU (`--device auto` takes CUDA where PyTorch sees a
device, the CPU otherwise, and says which). The bytes moved are `gpu-activations bench`'s own
(each input read once, each output written once), taken from its JSON. Backward ops are timed as
PyTorch's own backward kernels (aten.*_backward) or autograd, the losses as forward + backward
(the work the fused kernel does), in the storage type of our run (float32, float16, bfloat16).
A ratio above 1 means gpu-activations is faster. An op this script has no PyTorch twin for is
listed as not compared, not an error. Exits 3 with one line when PyTorch is not installed.
"""

import argparse
import json
import statistics
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - depends on the machine
    print("compare_torch.py: skipped: PyTorch is not installed (pip install torch)")
    sys.exit(3)

aten = torch.ops.aten

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805

# The forward of each command-line activation name, PyTorch's defaults (ours).
ACTIVATIONS = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "leaky-relu": lambda v: F.leaky_relu(v, 0.01),
    "elu": F.elu,
    "selu": F.selu,
    "gelu": F.gelu,
    "gelu-tanh": lambda v: F.gelu(v, approximate="tanh"),
    "silu": F.silu,
    "mish": F.mish,
    "softplus": F.softplus,
    "hardsigmoid": F.hardsigmoid,
    "hardswish": F.hardswish,
    "relu6": F.relu6,
    "logsigmoid": F.logsigmoid,
    "celu": F.celu,
    "hardtanh": F.hardtanh,
    "softsign": F.softsign,
    "tanhshrink": F.tanhshrink,
    "threshold": lambda v: F.threshold(v, 0.0, 0.0),
    "hardshrink": F.hardshrink,
    "softshrink": F.softshrink,
    "rrelu-eval": lambda v: F.rrelu(v, training=False),
    "onnx-hardsigmoid": lambda v: torch.clamp(0.2 * v + 0.5, 0.0, 1.0),
    "onnx-selu": lambda v: SELU_SCALE * F.elu(v, SELU_ALPHA),
    "onnx-thresholded-relu": lambda v: torch.where(v > 1.0, v, torch.zeros_like(v)),
    "onnx-swish": F.silu,
    "quick-gelu": lambda v: v * torch.sigmoid(1.702 * v),
    "squared-relu": lambda v: torch.square(torch.relu(v)),
}


def activation_backward(name, x, g):
    """PyTorch's backward of an activation: its own kernel where aten has one, else autograd."""
    kernels = {
        "sigmoid": lambda: aten.sigmoid_backward(g, torch.sigmoid(x)),
        "tanh": lambda: aten.tanh_backward(g, torch.tanh(x)),
        "relu": lambda: aten.threshold_backward(g, x, 0.0),
        "leaky-relu": lambda: aten.leaky_relu_backward(g, x, 0.01, False),
        "elu": lambda: aten.elu_backward(g, 1.0, 1.0, 1.0, False, x),
        "selu": lambda: aten.elu_backward(g, SELU_ALPHA, SELU_SCALE, 1.0, False, x),
        "gelu": lambda: aten.gelu_backward(g, x),
        "gelu-tanh": lambda: aten.gelu_backward(g, x, approximate="tanh"),
        "silu": lambda: aten.silu_backward(g, x),
        "mish": lambda: aten.mish_backward(g, x),
        "softplus": lambda: aten.softplus_backward(g, x, 1.0, 20.0),
        "hardsigmoid": lambda: aten.hardsigmoid_backward(g, x),
        "hardswish": lambda: aten.hardswish_backward(g, x),
        "relu6": lambda: aten.hardtanh_backward(g, x, 0.0, 6.0),
        "hardtanh": lambda: aten.hardtanh_backward(g, x, -1.0, 1.0),
        "logsigmoid": lambda: aten.log_sigmoid_backward(g, x, torch.empty(0, device=x.device)),
    }
    if name in kernels:
        return kernels[name]
    if name not in ACTIVATIONS:
        return None
    f = ACTIVATIONS[name]
    xg = x.clone().requires_grad_(True)

    def by_autograd():
        return torch.autograd.grad(f(xg), xg, g)[0]

    return by_autograd


def with_grad(loss_of, *leaves):
    """A callable that zeroes the leaves' gradients and runs `loss_of()`'s backward."""

    def step():
        for leaf in leaves:
            leaf.grad = None
        loss_of().backward()

    return step


def make_case(op, shape, dtype, device):
    """A zero-argument callable running `op` on resident data, or None where there is no twin."""
    gen = torch.Generator(device=device).manual_seed(0)
    x = ((torch.rand(shape, device=device, generator=gen) - 0.5) * 16).to(dtype)
    g = ((torch.rand(shape, device=device, generator=gen) - 0.5) * 2).to(dtype)
    cols = shape[-1]
    rows = x.numel() // cols
    if op == "copy":
        out = torch.empty_like(x)
        return lambda: out.copy_(x)
    if op in ("softmax", "log-softmax"):
        f = torch.softmax if op == "softmax" else torch.log_softmax
        return lambda: f(x, -1)
    if op == "softmax-backward":
        y = torch.softmax(x, -1)
        return lambda: aten._softmax_backward_data(g, y, -1, x.dtype)
    if op == "log-softmax-backward":
        y = torch.log_softmax(x, -1)
        return lambda: aten._log_softmax_backward_data(g, y, -1, x.dtype)
    # Our softmax-dim family runs along dim 1 where there is one.
    dim = 1 if len(shape) >= 2 else -1
    family = {
        "softmax-dim": lambda v: torch.softmax(v, dim),
        "log-softmax-dim": lambda v: torch.log_softmax(v, dim),
        "softmin": lambda v: F.softmin(v, dim),
    }
    if op in family:
        return lambda: family[op](x)
    if op.endswith("-backward") and op[: -len("-backward")] in family:
        f = family[op[: -len("-backward")]]
        xg = x.clone().requires_grad_(True)
        return lambda: torch.autograd.grad(f(xg), xg, g)[0]
    if op in ("cross-entropy", "nll-loss"):
        t = torch.randint(0, cols, (rows,), device=device, generator=gen)
        z = x.reshape(rows, cols).clone().requires_grad_(True)
        f = F.cross_entropy if op == "cross-entropy" else F.nll_loss
        return with_grad(lambda: f(z, t), z)
    if op in ("cross-entropy-dim1", "nll-loss-dim1") and len(shape) >= 2:
        spatial = (shape[0],) + tuple(shape[2:])
        t = torch.randint(0, shape[1], spatial, device=device, generator=gen)
        z = x.clone().requires_grad_(True)
        f = F.cross_entropy if op == "cross-entropy-dim1" else F.nll_loss
        return with_grad(lambda: f(z, t), z)
    if op == "bce-with-logits":
        y = g.abs()
        z = x.clone().requires_grad_(True)
        return with_grad(lambda: F.binary_cross_entropy_with_logits(z, y), z)
    gates = {
        "glu": lambda a, b: a * torch.sigmoid(b),
        "swiglu": lambda a, b: F.silu(a) * b,
        "geglu": lambda a, b: F.gelu(a) * b,
        "geglu-tanh": lambda a, b: F.gelu(a, approximate="tanh") * b,
    }
    base = op[: -len("-backward")] if op.endswith("-backward") else op
    if base in gates:
        gate = gates[base]

        def gated(v):
            a, b = v.chunk(2, dim=-1)
            return gate(a, b)

        if base == op:
            return lambda: gated(x)
        xg = x.clone().requires_grad_(True)
        gy = g[..., : cols // 2]
        return lambda: torch.autograd.grad(gated(xg), xg, gy)[0]
    if base == "prelu":
        channels = shape[1] if len(shape) >= 2 else 1
        w = torch.full((channels,), 0.25, device=device, dtype=dtype)
        if base == op:
            return lambda: F.prelu(x, w)
        xg = x.clone().requires_grad_(True)
        wg = w.clone().requires_grad_(True)
        return lambda: torch.autograd.grad(F.prelu(xg, wg), (xg, wg), g)
    if op.endswith("-backward"):
        return activation_backward(base, x, g)
    if op in ACTIVATIONS:
        f = ACTIVATIONS[op]
        return lambda: f(x)
    return None


def time_ms(fn, device, runs):
    """The median time of `fn` in milliseconds, after a warm-up."""
    for _ in range(5):
        fn()
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        if cuda:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bench_json")
    parser.add_argument("--out", help="write the comparison as JSON here")
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per op (median)")
    args = parser.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("compare_torch.py: --device cuda, but PyTorch sees no CUDA device")
    device = torch.device(args.device)
    where = torch.cuda.get_device_name() if device.type == "cuda" else "the CPU (no CUDA device)"
    with open(args.bench_json) as f:
        ours = json.load(f)
    rows = []
    print(f"ours:    {ours['adapter']['name']} ({ours['adapter']['backend']}, {ours['adapter']['driver']})")
    print(f"PyTorch: {torch.__version__} on {where}, CUDA {torch.version.cuda}")
    print()
    print(f"{'op':<24} {'dtype':<9} {'shape':<16} {'ours ms':>9} {'torch ms':>9} {'ours GB/s':>10} {'torch GB/s':>10} {'ours/torch speed':>17}")
    for r in ours["results"]:
        op, shape, dtype = r["op"], tuple(r["shape"]), r.get("dtype", "float32")
        # Our bytes moved, back from our GB/s and time.
        nbytes = r["gbs"] * r["median_ms"] * 1e6
        try:
            fn = make_case(op, shape, DTYPES.get(dtype, torch.float32), device)
            if fn is None:
                print(f"{op:<24} {dtype:<9} {str(list(shape)):<16} not compared: no PyTorch twin here")
                continue
            with torch.enable_grad():
                torch_ms = time_ms(fn, device, args.runs)
        except (RuntimeError, TypeError, ValueError) as e:
            print(f"{op:<24} {dtype:<9} {str(list(shape)):<16} not compared: {str(e).splitlines()[0]}")
            continue
        speed = torch_ms / r["median_ms"]
        torch_gbs = nbytes / torch_ms / 1e6
        rows.append({**r, "torch_ms": torch_ms, "torch_gbs": torch_gbs, "speed_vs_torch": speed})
        print(f"{op:<24} {dtype:<9} {str(list(shape)):<16} {r['median_ms']:>9.3f} {torch_ms:>9.3f} {r['gbs']:>10.1f} {torch_gbs:>10.1f} {speed:>16.2f}x")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"ours": ours["adapter"], "torch": torch.__version__, "device": where, "results": rows}, f, indent=2)
    print()
    print(f"{len(rows)} of {len(ours['results'])} results compared with PyTorch on {where}")


if __name__ == "__main__":
    main()
