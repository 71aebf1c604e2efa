"""Render a tufl report in headless Chromium; fail on console errors, failed loads or broken images.

    python benchmarks/report_browser_check.py [PAGE] [--chromium PATH] [--timeout S] [--screenshot PNG]

PAGE is a report's ``index.html`` or its folder (``tufl report ... --out DIR``, ``tufl
demo``); without it a report of made-up runs is written to a temporary folder first
(every section: samples with ground truth, curves, thresholds, an absent class, a run
without scores). The browser is driven over the DevTools protocol on a pipe (no
packages beyond the standard library): it loads the page from disk, waits for the load
event, then reports every console error, uncaught exception, failed resource load and
every ``<img>`` that did not decode (``naturalWidth == 0``).

Exit status: 0 the page renders cleanly, 1 problems (listed), 2 no browser or no page.
Chromium: ``--chromium``, else ``$CHROMIUM``, else ``chromium``, ``chromium-browser``,
``google-chrome`` on the PATH (Debian: ``apt-get install chromium``). ``TUFL_BROWSER_LOG=1``
shows the browser's own messages (its stderr).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import signal
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", "--hide-scrollbars", "--remote-debugging-pipe", "--window-size=1280,900")
IMAGES_JS = """Array.from(document.images).map(i => ({src: i.getAttribute('src'), complete: i.complete,
    width: i.naturalWidth, height: i.naturalHeight}))"""
HEADINGS_JS = "Array.from(document.querySelectorAll('h1, h2')).map(h => h.textContent.trim())"


def find_chromium(given: str | None = None) -> str | None:
    """The browser to run: ``given``, ``$CHROMIUM``, or the first of :data:`BROWSERS` on the PATH."""
    for name in (given, os.environ.get("CHROMIUM"), *BROWSERS):
        if name and (shutil.which(name) or Path(name).is_file()):
            return shutil.which(name) or name
    return None


# Starts the browser with the pipe ends given as arguments on fds 3 and 4, where
# --remote-debugging-pipe expects them (moved out of the way first: they may be 3 or 4).
LAUNCH = """import fcntl, os, sys
ends = [fcntl.fcntl(int(fd), fcntl.F_DUPFD_CLOEXEC, 10) for fd in sys.argv[1:3]]
for fd in {int(fd) for fd in sys.argv[1:3]} - {3, 4}:
    os.close(fd)
for fd, end in zip((3, 4), ends):
    os.dup2(end, fd)  # inheritable
os.execv(sys.argv[3], sys.argv[3:])"""


class DevTools:
    """A Chromium process and its DevTools protocol connection over fds 3 (in) and 4 (out)."""

    def __init__(self, chromium: str, profile: str) -> None:
        to_browser_r, self._write = os.pipe()
        self._read, from_browser_w = os.pipe()
        command = [sys.executable, "-c", LAUNCH, str(to_browser_r), str(from_browser_w), chromium, *FLAGS,
                   f"--user-data-dir={profile}", "about:blank"]
        # its own process group: closing it ends its helper processes too (they write to the profile)
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=None if os.environ.get("TUFL_BROWSER_LOG") else subprocess.DEVNULL,
                                        pass_fds=(to_browser_r, from_browser_w), start_new_session=True)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        """Call ``method`` and return its result (events arriving meanwhile are kept)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self.receive(deadline)
            if reply is None:
                raise TimeoutError(f"no answer to {method} within {timeout:.0f} s")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def receive(self, deadline: float) -> dict[str, Any] | None:
        """The next message, or None at the deadline."""
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                return None
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError("the browser closed the DevTools pipe (did it start?)")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def wait_for(self, method: str, timeout: float) -> bool:
        """Collect events until ``method`` arrives (True) or the time is up (False)."""
        if any(e.get("method") == method for e in self.events):
            return True
        deadline = time.monotonic() + timeout
        while (event := self.receive(deadline)) is not None:
            self.events.append(event)
            if event.get("method") == method:
                return True
        return False

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # helper processes left behind
        os.close(self._read)
        os.close(self._write)


def problems_of(events: list[dict[str, Any]]) -> list[str]:
    """Console errors, uncaught exceptions and failed loads among the protocol's events."""
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            found.append(f"console {params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            found.append(f"uncaught exception: {details.get('exception', {}).get('description') or details.get('text')}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            found.append(f"browser log error: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            found.append(f"failed load: {params.get('errorText')} (request {params.get('requestId')})")
    return found


def check_page(page: Path, chromium: str, timeout: float = 60.0, screenshot: Path | None = None) -> dict[str, Any]:
    """Load ``page`` in Chromium; returns its headings, images and the problems found."""
    with tempfile.TemporaryDirectory(prefix="tufl-chromium-", ignore_cleanup_errors=True) as profile:
        browser = DevTools(chromium, profile)
        try:
            targets = browser.send("Target.getTargets", timeout=timeout)["targetInfos"]
            page_target = next(t for t in targets if t["type"] == "page")
            session = browser.send("Target.attachToTarget", {"targetId": page_target["targetId"], "flatten": True})[
                "sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                browser.send(f"{domain}.enable", session=session)
            browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
            loaded = browser.wait_for("Page.loadEventFired", timeout)
            browser.wait_for("(late events)", 1.0)  # errors reported just after the load event
            images = _evaluate(browser, session, IMAGES_JS)
            headings = _evaluate(browser, session, HEADINGS_JS)
            if screenshot is not None:
                shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                                    session=session)
                screenshot.write_bytes(base64.b64decode(shot["data"]))
        finally:
            browser.close()
    problems = problems_of(browser.events)
    if not loaded:
        problems.append(f"the page did not finish loading within {timeout:.0f} s")
    problems += [f"broken image: {i['src']} (complete={i['complete']}, naturalWidth={i['width']})"
                 for i in images if not (i["complete"] and i["width"] > 0)]
    if not images:
        problems.append("the page shows no images")
    return {"page": str(page), "headings": headings, "images": images, "problems": problems}


def _evaluate(browser: DevTools, session: str, expression: str) -> Any:
    result = browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
    if "exceptionDetails" in result:
        raise RuntimeError(f"evaluating {expression!r}: {result['exceptionDetails']}")
    return result["result"]["value"]


def made_up_report(folder: Path) -> Path:
    """A report of three made-up runs with every section (no training needed)."""
    import numpy as np

    from tufl.data.labels import class_names, palette
    from tufl.report.writer import ModelReport, QualitativeRow, write_report

    names, rng = class_names(19), np.random.default_rng(0)
    records = [{"iter": i, "kind": "train", "loss": 2.0 / i, "loss_sup": 1.5 / i, "loss_unsup": 0.1,
                "thresholds": {"0": 0.5 + i / 1000, "13": 0.6}} for i in range(10, 210, 10)]
    records += [{"iter": i, "kind": "val", "miou": 0.2 + i / 1000} for i in (100, 200)]
    models = [ModelReport(f"run {k}", 0.3 + 0.05 * k, [*rng.uniform(0, 1, 18), float("nan")], records, 60.0 * k)
              for k in range(2)]
    models.append(ModelReport("no val", None, None, records[:-2]))
    gt = rng.integers(0, 19, (32, 64)).astype(np.uint8)
    rows = [QualitativeRow(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8), gt, {m.name: gt for m in models})
            for _ in range(2)]
    return write_report(folder, models, rows, names, palette(19), {"seed": 0}, title="browser check")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", nargs="?", help="a report's index.html or its folder (default: a made-up report)")
    parser.add_argument("--chromium", help="the browser binary (default: $CHROMIUM or chromium on the PATH)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the browser (default 60)")
    parser.add_argument("--screenshot", type=Path, help="also save a full-page screenshot here (PNG)")
    args = parser.parse_args(argv)
    chromium = find_chromium(args.chromium)
    if chromium is None:
        print("error: no Chromium found (--chromium, $CHROMIUM or chromium on the PATH)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="tufl-report-") as scratch:
        page = Path(args.page) if args.page else made_up_report(Path(scratch))
        page = page / "index.html" if page.is_dir() else page
        if not page.is_file():
            print(f"error: {page}: no such report page", file=sys.stderr)
            return 2
        result = check_page(page, chromium, args.timeout, args.screenshot)
    print(f"{result['page']}: headings {result['headings']}")
    for image in result["images"]:
        print(f"  img {image['src']}: {image['width']}x{image['height']}")
    for problem in result["problems"]:
        print(f"PROBLEM: {problem}")
    print("ok" if not result["problems"] else f"{len(result['problems'])} problem(s)")
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
