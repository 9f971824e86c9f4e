"""Headless Chromium with WebGPU, driven through chromedriver's WebDriver HTTP API, and a static
file server on 127.0.0.1 for the pages it opens. Standard library only.

    with Browser() as b, Serve(root) as url:
        b.open(url + "/page.html")
        result = b.wait_for("window.result")   # a JSON value the page sets when done
        b.screenshot("page.png")

`python3 scripts/browser.py serve DIR [PORT]` serves DIR alone (scripts/web-demo.sh).
"""

import base64
import contextlib
import functools
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

# What Chromium needs on a headless machine without network: WebGPU on (SwiftShader), no GPU
# process for drawing, no background connections (refused here, and slow to fail).
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--enable-unsafe-webgpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrowserError(RuntimeError):
    pass


class Browser:
    """One chromedriver process and one Chromium session."""

    def __init__(self, chromium=None, chromedriver=None, timeout=600):
        self.chromium = chromium or os.environ.get("CHROMIUM", "/usr/bin/chromium")
        self.chromedriver = chromedriver or os.environ.get("CHROMEDRIVER") or shutil.which(
            "chromedriver") or "/usr/bin/chromedriver"
        for path, package in [(self.chromium, "chromium"), (self.chromedriver, "chromium-driver")]:
            if not os.path.exists(path):
                raise BrowserError(f"{path} is missing: apt-get install {package}")
        self.timeout = timeout
        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="gpu-activations-chromium-")
        self.driver = subprocess.Popen(
            [self.chromedriver, f"--port={self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 30
        while True:
            try:
                self._call("GET", "/status")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.time() > deadline:
                    self.driver.kill()
                    raise BrowserError("chromedriver did not start")
                time.sleep(0.2)
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": self.chromium,
                "args": CHROMIUM_ARGS + [f"--user-data-dir={self.profile}"],
                "excludeSwitches": ["enable-automation"],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
            "timeouts": {"script": timeout * 1000, "pageLoad": 120_000},
        }}}
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout + 60) as r:
                return json.loads(r.read() or b"{}").get("value")
        except urllib.error.HTTPError as e:
            detail = json.loads(e.read() or b"{}").get("value", {})
            raise BrowserError(f"{method} {path}: {detail.get('error')}: "
                               f"{str(detail.get('message', ''))[:2000]}") from None

    def _s(self, path):
        return f"/session/{self.session}{path}"

    def open(self, url):
        self._call("POST", self._s("/url"), {"url": url})

    def run(self, script, *args):
        """Runs `script` (a function body) and returns its value."""
        return self._call("POST", self._s("/execute/sync"), {"script": script, "args": list(args)})

    def wait_for(self, expression, poll=0.5):
        """Waits until the page's `expression` is not undefined, and returns it."""
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            value = self.run(f"return (typeof ({expression}) === 'undefined') ? null : "
                             f"JSON.stringify({expression});")
            if value is not None:
                return json.loads(value)
            time.sleep(poll)
        raise BrowserError(f"the page did not set {expression} in {self.timeout} s")

    def console(self):
        """The browser console's lines since the last call."""
        try:
            return [e.get("message", "") for e in
                    self._call("POST", self._s("/se/log"), {"type": "browser"}) or []]
        except BrowserError:
            return []

    def resize(self, width, height):
        """Sets the window's size (headless: the page's viewport)."""
        self._call("POST", self._s("/window/rect"), {"width": width, "height": height})

    def screenshot(self, path):
        png = base64.b64decode(self._call("GET", self._s("/screenshot")))
        with open(path, "wb") as f:
            f.write(png)
        return png

    def close(self):
        with contextlib.suppress(Exception):
            self._call("DELETE", self._s(""))
        self.driver.terminate()
        with contextlib.suppress(Exception):
            self.driver.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".js": "text/javascript",
                      ".wgsl": "text/plain", ".json": "application/json"}

    def log_message(self, *args):
        pass

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


class Serve:
    """Serves `root` on 127.0.0.1 (a secure context, as WebGPU needs) from a thread."""

    def __init__(self, root, port=0):
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self.url

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def main(argv):
    """`browser.py serve DIR [PORT]`: serves DIR on 127.0.0.1 until interrupted."""
    if len(argv) not in (2, 3) or argv[0] != "serve":
        raise SystemExit("usage: browser.py serve DIR [PORT]")
    port = int(argv[2]) if len(argv) == 3 else 0
    try:
        serve = Serve(argv[1], port)
    except OSError as e:
        raise SystemExit(f"browser.py: cannot serve on 127.0.0.1:{port}: {e.strerror}")
    with serve as url:
        print(f"serving {argv[1]} at {url}/ (Ctrl-C stops)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main(sys.argv[1:])
