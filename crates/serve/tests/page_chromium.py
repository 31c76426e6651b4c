#!/usr/bin/env python3
"""Drives the server's page (`GET /`) in headless Chromium (Debian's `chromium` package) over the
DevTools protocol on a pipe (no extra Python packages): uploads an image, asks, and checks that the
streamed answer and the `V = … | TTFT …` line appear. Optionally saves a screenshot.

    python3 crates/serve/tests/page_chromium.py --url http://127.0.0.1:8080/ \
        --image crates/engine/tests/fixtures/images/chelsea.png [--screenshot page.png]

Prints `page: 1 passed, 0 failed`, or `page: skipped (...)` and exits 0 when Chromium is missing.
"""
import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


class Browser:
    """Chromium with --remote-debugging-pipe: JSON messages separated by NUL on fds 3 (in) / 4 (out)."""

    def __init__(self, exe):
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        # The child must see the pipes as fds 3 and 4.
        def setup():
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             f"--user-data-dir={self.profile}", "--window-size=900,900", "about:blank"],
            preexec_fn=setup, pass_fds=(3, 4),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        self.buf = b""
        self.next_id = 0

    def send(self, method, params=None, sid=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if sid:
            msg["sessionId"] = sid
        os.write(self.to_child, json.dumps(msg).encode() + b"\0")
        want = self.next_id
        deadline = time.time() + 30
        while time.time() < deadline:
            while b"\0" not in self.buf:
                chunk = os.read(self.from_child, 1 << 16)
                if not chunk:
                    raise RuntimeError("chromium closed the pipe")
                self.buf += chunk
            raw, self.buf = self.buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == want:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
        raise RuntimeError(f"{method}: no reply")

    def close(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--screenshot")
    a = ap.parse_args()
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        print("page: skipped (no chromium; apt-get install chromium)")
        return 0
    b = Browser(exe)
    try:
        target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        b.send("Page.enable", sid=s)
        b.send("Page.navigate", {"url": a.url}, sid=s)

        def js(expr):
            r = b.send("Runtime.evaluate", {"expression": expr, "returnByValue": True}, sid=s)
            return r.get("result", {}).get("value")

        def wait(expr, what):
            for _ in range(600):
                if js(expr):
                    return
                time.sleep(0.05)
            raise RuntimeError(f"timed out waiting for {what}")

        wait("document.readyState === 'complete' && document.getElementById('model').options.length > 1",
             "the model list")
        doc = b.send("DOM.getDocument", sid=s)["root"]["nodeId"]
        node = b.send("DOM.querySelector", {"nodeId": doc, "selector": "#image"}, sid=s)["nodeId"]
        b.send("DOM.setFileInputFiles", {"nodeId": node, "files": [os.path.abspath(a.image)]}, sid=s)
        js("document.getElementById('max').value = '8'; document.getElementById('ask').click(); true")
        wait("document.getElementById('stats').textContent.includes('TTFT')", "the V / TTFT line")
        answer = js("document.getElementById('answer').textContent")
        stats = js("document.getElementById('stats').textContent")
        if a.screenshot:
            png = b.send("Page.captureScreenshot", {"format": "png"}, sid=s)["data"]
            with open(a.screenshot, "wb") as f:
                f.write(base64.b64decode(png))
        ok = bool(answer) and "V = " in stats and "tokens/s" in stats
        print(f"answer {answer!r}\nstats  {stats}")
        print(f"page: {1 if ok else 0} passed, {0 if ok else 1} failed")
        return 0 if ok else 1
    finally:
        b.close()


if __name__ == "__main__":
    sys.exit(main())
