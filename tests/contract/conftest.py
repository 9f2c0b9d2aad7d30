"""Fixtures: the real `hubspot-operator emulator` binary and a local webhook target."""

import http.server
import json
import os
import pathlib
import queue
import subprocess
import threading
import time
import urllib.request

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 30


def binary_path() -> str:
    return os.environ.get("HUBSPOT_OPERATOR_BIN", str(REPO_ROOT / "target" / "debug" / "hubspot-operator"))


class Emulator:
    """A running emulator process; `base_url` is read from its startup log line."""

    def __init__(self, args):
        env = dict(os.environ, LOG_JSON="true", RUST_LOG="info")
        self.process = subprocess.Popen(
            [binary_path(), "emulator", "--listen", "127.0.0.1:0", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.base_url = self._read_url()
        # Keep draining the log so the process never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()

    def _read_url(self) -> str:
        found = queue.Queue()

        def scan():
            for line in self.process.stderr:
                try:
                    fields = json.loads(line).get("fields", {})
                except ValueError:
                    continue
                if "url" in fields:
                    found.put(fields["url"])
                    return
            found.put(None)

        threading.Thread(target=scan, daemon=True).start()
        try:
            url = found.get(timeout=STARTUP_TIMEOUT_S)
        except queue.Empty:
            url = None
        if url is None:
            self.stop()
            raise RuntimeError("the emulator did not report its URL")
        return url

    def _drain(self):
        for _ in self.process.stderr:
            pass

    def admin(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, (json.loads(raw) if raw else None)

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def start_emulator():
    started = []

    def start(*args):
        emulator = Emulator(list(args))
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


class WebhookTarget:
    """An HTTP server on 127.0.0.1 that answers 200 and keeps every request it receives."""

    def __init__(self):
        self.requests = queue.Queue()
        received = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                received.put({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def next_request(self, timeout_s: float = 30):
        return self.requests.get(timeout=timeout_s)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_target():
    target = WebhookTarget()
    yield target
    target.stop()


def wait_for(condition, timeout_s: float = 30, interval_s: float = 0.05):
    """Polls `condition` until it returns something truthy; fails after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError("condition not reached in time")
