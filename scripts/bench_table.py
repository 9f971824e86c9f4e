#!/usr/bin/env python3
"""Renders `gpu-activations bench --json` files as the Markdown table of BENCHMARKS.md.

Usage: scripts/bench_table.py RUN.json [MORE_RUNS.json ...]

The first file gives the times and bandwidths; every file contributes its paired fraction of
the copy ceiling (one column per run), and the target column marks an op ✓ when every run meets
its target, ~ when some do, ✗ when none does.
"""
import json
import sys

RELU_LIKE = {"relu", "leaky-relu", "relu6", "hardsigmoid"}


def target(op: str):
    base = op.removesuffix("-backward")
    if op in ("softmax", "log-softmax"):
        return 0.70
    if op in ("softmax-backward", "log-softmax-backward"):
        return 0.60
    if op == "cross-entropy":
        return 0.65
    if op == "bce-with-logits":
        return 0.75
    if op == "copy":
        return None
    return 0.95 if base in RELU_LIKE else 0.85


def shape(s):
    return " × ".join(f"{v:,}" for v in s)


def main(paths):
    runs = [json.load(open(p)) for p in paths]
    first = runs[0]
    a = first["adapter"]
    print(f"Adapter: `{a['name']}` ({a['backend']}, {a['device_type']}, {a['driver']}); "
          f"{len(runs)} run(s) of `gpu-activations bench`.\n")
    head = "| op | shape | median ms | GB/s | copy GB/s (paired) | "
    head += " | ".join(f"of copy, run {i + 1}" for i in range(len(runs)))
    head += " | target | vs CPU ref |"
    print(head)
    print("|---|---|" + "---:|" * (3 + len(runs) + 2))
    for k, r in enumerate(first["results"]):
        fracs = [run["results"][k]["fraction_of_copy"] for run in runs]
        t = target(r["op"])
        mark = ""
        if t is not None:
            met = sum(f >= t for f in fracs)
            sign = "✓" if met == len(fracs) else ("~" if met else "✗")
            mark = f"{t:.0%} {sign}"
        cells = [
            r["op"],
            shape(r["shape"]),
            f"{r['median_ms']:.2f}",
            f"{r['gbs']:.2f}",
            f"{r['copy_gbs']:.2f}",
            *[f"{f:.0%}" for f in fracs],
            mark,
            f"{r['cpu_speedup']:.1f}×",
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
