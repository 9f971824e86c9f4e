#!/usr/bin/env python3
"""Every WGSL module the crate composes, and every pipeline it builds, through Chromium's WebGPU
(Dawn's Tint compiler): fails, listing the compiler's messages, when any does not compile.

    scripts/tint-check.py DIR     # DIR from `gpu-activations shaders --dump DIR`
"""

import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from browser import Browser, BrowserError, Serve  # noqa: E402


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = sys.argv[1]
    shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "web",
                             "compile-check.html"), root)
    try:
        with Browser(timeout=900) as b, Serve(root) as url:
            b.open(url + "/compile-check.html")
            r = b.wait_for("window.result")
    except BrowserError as e:
        sys.exit(f"tint-check: {e}")
    if "error" in r:
        sys.exit(f"tint-check: {r['error']}")
    a = r["adapter"]
    print(f"tint-check: Chromium WebGPU adapter {a.get('vendor')} {a.get('architecture')} "
          f"{a.get('description') or ''}".rstrip())
    if not r.get("canary_rejected"):
        sys.exit("tint-check: the browser compiled a module the WGSL grammar forbids (a comparison "
                 "mixed with &): its compiler is not checking what this check relies on")
    bad = 0
    for m in r["modules"]:
        if m.get("skipped"):
            print(f"  {m['file']}: not compiled ({m['skipped']})")
            continue
        for e in m["errors"]:
            bad += 1
            print(f"  {m['file']}:{e['line']}:{e['column']}: {e['message']}")
        if m.get("scope") and not m["errors"]:
            bad += 1
            print(f"  {m['file']}: {m['scope']}")
    failed_pipelines = [p for p in r["pipelines"] if p["error"]]
    for p in failed_pipelines:
        if p["error"] == "its module did not compile":
            continue
        bad += 1
        print(f"  {p['file']} {p['entry']} {json.dumps(p['constants'])}: {p['error']}")
    compiled = sum(1 for m in r["modules"] if not m.get("skipped") and not m["errors"])
    print(f"tint-check: {compiled} of {len(r['modules'])} modules compile, "
          f"{len(r['pipelines']) - len(failed_pipelines)} of {len(r['pipelines'])} pipelines build")
    sys.exit(1 if bad or failed_pipelines else 0)


if __name__ == "__main__":
    main()
