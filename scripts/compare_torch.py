#!/usr/bin/env python3
"""Time the ops of a `gpu-activations bench --json` run in PyTorch on the same GPU and print
the ratio to ours.

Usage: scripts/compare_torch.py BENCH.json [--out RESULT.json] [--device cuda]

PyTorch is timed with CUDA events: warm-up, then the median of many runs, on resident data,
with the same bytes-moved formula as `gpu-activations bench` (each input read once, each output
written once). Backward ops are timed as PyTorch's own backward kernels (aten.*_backward),
the losses as forward + backward (the work the fused kernel does). A ratio above 1 means
gpu-activations is faster.
"""

import argparse
import json
import statistics
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("compare_torch.py needs PyTorch (pip install torch)")

aten = torch.ops.aten


def activation(name, x):
    """The forward of a command-line activation name."""
    return {
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
    }[name](x)


def activation_backward(name, x, g):
    """PyTorch's backward kernel of an activation, as autograd would call it."""
    alpha, scale = 1.6732632423543772, 1.0507009873554805
    kernels = {
        "sigmoid": lambda: aten.sigmoid_backward(g, torch.sigmoid(x)),
        "tanh": lambda: aten.tanh_backward(g, torch.tanh(x)),
        "relu": lambda: aten.threshold_backward(g, x, 0.0),
        "leaky-relu": lambda: aten.leaky_relu_backward(g, x, 0.01, False),
        "elu": lambda: aten.elu_backward(g, 1.0, 1.0, 1.0, False, x),
        "selu": lambda: aten.elu_backward(g, alpha, scale, 1.0, False, x),
        "gelu": lambda: aten.gelu_backward(g, x),
        "gelu-tanh": lambda: aten.gelu_backward(g, x, approximate="tanh"),
        "silu": lambda: aten.silu_backward(g, x),
        "mish": lambda: aten.mish_backward(g, x),
        "softplus": lambda: aten.softplus_backward(g, x, 1.0, 20.0),
        "hardsigmoid": lambda: aten.hardsigmoid_backward(g, x),
        "hardswish": lambda: aten.hardswish_backward(g, x),
        "relu6": lambda: aten.hardtanh_backward(g, x, 0.0, 6.0),
        "logsigmoid": lambda: aten.log_sigmoid_backward(g, x, torch.empty(0, device=x.device)),
    }
    return kernels[name]


def make_case(op, shape, device):
    """A zero-argument callable running `op` on resident data, and the bytes it moves."""
    gen = torch.Generator(device=device).manual_seed(0)
    x = (torch.rand(shape, device=device, generator=gen) - 0.5) * 16
    g = (torch.rand(shape, device=device, generator=gen) - 0.5) * 2
    n = x.numel()
    rows = n // shape[-1]
    if op == "copy":
        out = torch.empty_like(x)
        return (lambda: out.copy_(x)), 8 * n
    if op in ("softmax", "log-softmax"):
        f = torch.softmax if op == "softmax" else torch.log_softmax
        return (lambda: f(x, -1)), 8 * n
    if op == "softmax-backward":
        y = torch.softmax(x, -1)
        return (lambda: aten._softmax_backward_data(g, y, -1, x.dtype)), 12 * n
    if op == "log-softmax-backward":
        y = torch.log_softmax(x, -1)
        return (lambda: aten._log_softmax_backward_data(g, y, -1, x.dtype)), 12 * n
    if op == "cross-entropy":
        t = torch.randint(0, shape[-1], (rows,), device=device, generator=gen)
        z = x.reshape(rows, shape[-1]).clone().requires_grad_(True)

        def ce():
            z.grad = None
            F.cross_entropy(z, t).backward()

        return ce, 8 * n + 8 * rows
    if op == "bce-with-logits":
        y = g.abs()
        z = x.clone().requires_grad_(True)

        def bce():
            z.grad = None
            F.binary_cross_entropy_with_logits(z, y).backward()

        return bce, 12 * n
    if op.endswith("-backward"):
        return activation_backward(op[: -len("-backward")], x, g), 12 * n
    return (lambda: activation(op, x)), 8 * n


def time_ms(fn, warmup=5, runs=30):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bench_json")
    parser.add_argument("--out", help="write the comparison as JSON here")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("compare_torch.py needs a CUDA device for CUDA-event timing")
    ours = json.load(open(args.bench_json))
    rows = []
    print(f"ours:    {ours['adapter']['name']} ({ours['adapter']['backend']}, {ours['adapter']['driver']})")
    print(f"PyTorch: {torch.__version__} on {torch.cuda.get_device_name()}, CUDA {torch.version.cuda}")
    print()
    print(f"{'op':<24} {'shape':<16} {'ours ms':>9} {'torch ms':>9} {'ours GB/s':>10} {'torch GB/s':>10} {'ours/torch speed':>17}")
    for r in ours["results"]:
        op, shape = r["op"], tuple(r["shape"])
        fn, nbytes = make_case(op, shape, args.device)
        with torch.enable_grad():
            torch_ms = time_ms(fn)
        speed = torch_ms / r["median_ms"]
        rows.append({**r, "torch_ms": torch_ms, "torch_gbs": nbytes / torch_ms / 1e6, "speed_vs_torch": speed})
        print(f"{op:<24} {str(list(shape)):<16} {r['median_ms']:>9.3f} {torch_ms:>9.3f} {r['gbs']:>10.1f} {nbytes / torch_ms / 1e6:>10.1f} {speed:>16.2f}x")
    if args.out:
        json.dump({"ours": ours["adapter"], "torch": torch.__version__, "device": torch.cuda.get_device_name(), "results": rows}, open(args.out, "w"), indent=2)


if __name__ == "__main__":
    main()
