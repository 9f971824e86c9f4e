#!/usr/bin/env python3
"""The page of examples/web in headless Chromium's WebGPU, checked against the crate's CPU
reference and the command line's `train` (run by scripts/web-test.sh, which builds both):

- training ends (`#status` is `done`, `window.result` set) on a WebGPU adapter the page names;
- its test accuracy is `train --backend cpu`'s on the same file to within one test image, and
  its final loss to within 1e-4 (float32 on the GPU against the f64 reference: summation
  order moves the loss by about 1e-6 and only a test image whose two best scores tie that
  closely could change class; one image is 0.28 %);
- the plotted f(x) and f'(x) of a few ops, parameters set through the page's fields, are
  `gpu-activations run OP --backend cpu` (and OP-backward, upstream gradient of ones) on the
  same x values, to the crate's bound 1e-6 + 1e-5|want|; a bad parameter shows in the page;
- a screenshot of the page is not blank: many colours, and each curve's colour.

    scripts/web-test.py PAGE_DIR GPU_ACTIVATIONS [--screenshot PNG]

Fails (exit 1) when Chromium, chromedriver or WebGPU is missing. Standard library only.
"""

import argparse
import ast
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from browser import Browser, BrowserError, Serve  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "data", "digits.csv")

# Accuracy of `train` and the page: at most this many test images apart; the final loss within
# LOSS_TOLERANCE (see the docstring for why).
IMAGES_TOLERANCE = 1
LOSS_TOLERANCE = 1e-4
# The crate's bound for every op (src/accuracy.rs).
ATOL, RTOL = 1e-6, 1e-5

# Ops to plot through the page, with parameters typed into its fields; the last one stays on
# screen for the screenshot.
CURVES = [
    ("sigmoid", {}),
    ("leaky_relu", {"negative_slope": 0.2}),
    ("softplus", {"beta": 2.0, "threshold": 3.0}),
    ("hardtanh", {"min_val": -2.0, "max_val": 1.5}),
    ("elu", {"alpha": 0.5}),
    ("gelu", {}),
]
# The colours the page draws its series in (examples/web/curves.rs, training.rs).
SERIES_COLOURS = {"f": (0x1F, 0x6F, 0xB4), "f'": (0xD9, 0x59, 0x1B), "accuracy": (0x2A, 0x9D, 0x4B)}


class Failed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failed(message)


# --- .npy files (float32, one dimension) --------------------------------------------------

def write_npy(path, values):
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d,), }" % len(values)
    header += " " * (-(len(header) + 11) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack(f"<{len(values)}f", *values))


def read_npy(path):
    with open(path, "rb") as f:
        raw = f.read()
    check(raw[:8] == b"\x93NUMPY\x01\x00", f"{path}: not a version 1.0 .npy file")
    (length,) = struct.unpack("<H", raw[8:10])
    header = ast.literal_eval(raw[10:10 + length].decode())
    check(header["descr"] == "<f4" and len(header["shape"]) == 1, f"{path}: {header}")
    n = header["shape"][0]
    return list(struct.unpack(f"<{n}f", raw[10 + length:10 + length + 4 * n]))


# --- the command line ------------------------------------------------------------------------

def cli(binary, *args):
    done = subprocess.run([binary, *args], capture_output=True, text=True)
    check(done.returncode == 0, f"gpu-activations {' '.join(args)}: exit {done.returncode}: "
          f"{done.stderr.strip()}")
    return done.stdout


def reference_curve(binary, op, params, x, tmp):
    """f(x) and f'(x) (upstream gradient of ones) from the CLI's CPU backend."""
    paths = {name: os.path.join(tmp, f"{name}.npy") for name in ("x", "ones", "y", "dy")}
    write_npy(paths["x"], x)
    write_npy(paths["ones"], [1.0] * len(x))
    name = op.replace("_", "-")
    flags = [a for p, v in params.items() for a in (f"--{p.replace('_', '-')}", repr(v))]
    cli(binary, "run", name, "--input", paths["x"], "--output", paths["y"], "--backend", "cpu",
        *flags)
    cli(binary, "run", f"{name}-backward", "--input", paths["x"], "--grad-output", paths["ones"],
        "--output", paths["dy"], "--backend", "cpu", *flags)
    return read_npy(paths["y"]), read_npy(paths["dy"])


def reference_training(binary):
    """(correct, test images, final loss) of `train --backend cpu` on the page's data file."""
    out = cli(binary, "train", "--data", DATA, "--backend", "cpu")
    accuracy = re.search(r"test accuracy: [\d.]+ % \((\d+) of (\d+)\)", out)
    loss = re.search(r"final loss ([\d.]+)", out)
    check(accuracy and loss, f"train printed no accuracy or loss:\n{out}")
    return int(accuracy[1]), int(accuracy[2]), float(loss[1])


# --- the page -----------------------------------------------------------------------------

SET_OP = """
const [op, params] = arguments;
const select = document.getElementById("op");
select.value = op;
select.dispatchEvent(new Event("change"));
for (const [name, value] of Object.entries(params)) {
  const field = document.getElementById("param-" + name);
  field.value = String(value);
  field.dispatchEvent(new Event("input", { bubbles: true }));
}
"""

READ_CURVE = """
const d = document.getElementById("curve").dataset;
return d.op === undefined ? null : { op: d.op, params: JSON.parse(d.params),
  x: JSON.parse(d.x), y: JSON.parse(d.y), dy: JSON.parse(d.dy) };
"""


def f32(v):
    return struct.unpack("<f", struct.pack("<f", v))[0]


def plotted(b, op, params, timeout=120):
    """What `#curve` shows once it shows `op` with `params` (as f32)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        c = b.run(READ_CURVE)
        if c and c["op"] == op and all(c["params"].get(p) == f32(v) for p, v in params.items()):
            return c
        error = b.run('return document.getElementById("curve-error").textContent;')
        check(not error, f"{op} {params}: the page says: {error}")
        time.sleep(0.2)
    raise Failed(f"the page did not plot {op} {params} in {timeout} s")


def compare_curve(binary, b, op, params, tmp):
    b.run(SET_OP, op, params)
    c = plotted(b, op, params)
    x = c["x"]
    check(len(x) == len(c["y"]) == len(c["dy"]) > 100 and x[0] < 0 < x[-1],
          f"{op}: {len(x)} x values from {x[0]} to {x[-1]}")
    want_y, want_dy = reference_curve(binary, op, c["params"], x, tmp)
    for what, got, want in (("f", c["y"], want_y), ("f'", c["dy"], want_dy)):
        for xi, g, w in zip(x, got, want):
            check(g is not None and abs(g - w) <= ATOL + RTOL * abs(w),
                  f"{op} {params} {what}({xi}): the page plotted {g}, the CPU reference {w}")
    print(f"  {op} {params}: f and f' at {len(x)} points on [{x[0]}, {x[-1]}] match the "
          f"CPU reference")


def bad_parameter_is_reported(b):
    b.run(SET_OP, "softplus", {"beta": 0.0})
    deadline = time.time() + 60
    while time.time() < deadline:
        error = b.run('return document.getElementById("curve-error").textContent;')
        if error:
            check("beta" in error, f"softplus beta = 0: the page says {error!r}")
            print(f"  softplus beta = 0: the page says {error!r}")
            return
        time.sleep(0.2)
    raise Failed("softplus with beta = 0: the page showed no error")


# --- the screenshot -----------------------------------------------------------------------

def png_pixels(png):
    """(width, height, rows of RGB tuples) of an 8-bit RGB or RGBA, non-interlaced PNG."""
    check(png[:8] == b"\x89PNG\r\n\x1a\n", "the screenshot is not a PNG")
    pos, idat, header = 8, b"", None
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind, body = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    check(depth == 8 and colour in (2, 6) and interlace == 0, f"PNG header {header}")
    bpp = 4 if colour == 6 else 3
    raw, stride = zlib.decompress(idat), width * bpp
    rows, prev = [], bytearray(stride)
    for r in range(height):
        kind, line = raw[r * (stride + 1)], bytearray(raw[r * (stride + 1) + 1:(r + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            up = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + up) // 2) & 255
            elif kind == 4:
                p = a + up - c
                pa, pb, pc = abs(p - a), abs(p - up), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else up if pb <= pc else c)) & 255
        rows.append([tuple(line[i:i + 3]) for i in range(0, stride, bpp)])
        prev = line
    return width, height, rows


def check_screenshot(png):
    width, height, rows = png_pixels(png)
    colours = {p for row in rows for p in row}
    check(len(colours) >= 200, f"the screenshot has {len(colours)} colours: blank?")
    for name, target in SERIES_COLOURS.items():
        near = sum(1 for row in rows for p in row
                   if max(abs(p[i] - target[i]) for i in range(3)) <= 12)
        check(near >= 100, f"the screenshot shows {near} pixels of the {name} curve's colour")
    print(f"  screenshot {width} x {height}: {len(colours)} colours, every curve's colour shows")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", help="the built page (scripts/web-build.sh)")
    parser.add_argument("cli", help="the gpu-activations binary")
    parser.add_argument("--screenshot", help="where to write the page's screenshot")
    args = parser.parse_args()
    start = time.time()
    try:
        correct_cli, images_cli, loss_cli = reference_training(args.cli)
        with Browser(timeout=300) as b, Serve(args.page) as url, \
                tempfile.TemporaryDirectory() as tmp:
            b.resize(1000, 1400)
            b.open(url + "/index.html")
            r = b.wait_for("window.result")
            check("error" not in r, f"the page failed: {r.get('error')}")
            status = b.run('return document.getElementById("status").textContent;')
            adapter = b.run('return document.getElementById("adapter").textContent;')
            check(status == "done", f"#status is {status!r}")
            check("WebGPU" in adapter and adapter == r["adapter"], f"#adapter is {adapter!r}")
            shown = b.run('const a = document.getElementById("accuracy"); '
                          'return [Number(a.dataset.correct), Number(a.dataset.total)];')
            check(shown == [r["correct"], r["test_images"]], f"#accuracy shows {shown}, "
                  f"window.result {r['correct']} of {r['test_images']}")
            print(f"web-test: {adapter}: trained {r['epochs']} epochs in {r['seconds']:.1f} s; "
                  f"test accuracy {r['accuracy']:.2f} % ({r['correct']} of {r['test_images']}), "
                  f"final loss {r['loss']:.6f}")
            print(f"  train --backend cpu: {100 * correct_cli / images_cli:.2f} % "
                  f"({correct_cli} of {images_cli}), final loss {loss_cli}")
            check(r["test_images"] == images_cli and r["epochs"] == 300,
                  f"the page scored {r['test_images']} images in {r['epochs']} epochs")
            check(abs(r["correct"] - correct_cli) <= IMAGES_TOLERANCE,
                  f"the page classified {r['correct']} test images right, train {correct_cli}")
            check(abs(r["loss"] - loss_cli) <= LOSS_TOLERANCE,
                  f"final loss {r['loss']} in the page, {loss_cli} from train")
            bad_parameter_is_reported(b)
            for op, params in CURVES:
                compare_curve(args.cli, b, op, params, tmp)
            # The whole page in the window: its content's height, plus what the window has
            # beside its viewport.
            height, frame = b.run("return [Math.ceil(document.body.getBoundingClientRect()"
                                  ".bottom) + 8, window.outerHeight - window.innerHeight];")
            b.resize(1000, min(max(height, 600), 2400) + frame)
            png = b.screenshot(args.screenshot or os.path.join(tmp, "page.png"))
            check_screenshot(png)
            if args.screenshot:
                print(f"  wrote {args.screenshot}")
    except (Failed, BrowserError) as e:
        sys.exit(f"web-test: FAILED: {e}")
    print(f"web-test: passed in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
