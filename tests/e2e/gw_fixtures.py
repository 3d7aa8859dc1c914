"""Fixtures and helpers for the qnext-gateway suites (tests/e2e/test_gw_*.py, test_openai_*.py).

Processes:
  engine   the engine behind the API tests. By default the scripted Python fake
           (tests/e2e/fake_generator.py, gRPC via grpcio). With QNEXT_ENGINE_BIN set (e.g.
           build/bin/qnext-engine) and QNEXT_ENGINE_MODEL (its --model folder, e.g. the demo model)
           the real engine is started instead (`--model M --listen 127.0.0.1:PORT`); extra flags in
           QNEXT_ENGINE_ARGS. Tests on this engine assume nothing about the text a model writes.
  fake     always the Python fake: tests that need scripted outputs (tool calls, reasoning,
           errors, slow streams, cancellation counters) use it.
  gateways build/bin/qnext-gateway ($QNEXT_BIN) in front of one of them; `gw` (engine) and `fgw`
           (fake) are shared by the whole session; tests that need special flags start their own
           with start_gateway().

Shared processes are started once per session (module-level cache, stopped at exit), so every
test module can `from gw_fixtures import *` without starting them again.
"""
import atexit
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import httpx2 as httpx
import openai
import pytest

from conftest import REPO, Proc, bin_path, free_port, wait_tcp

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(HERE, "fake_generator.py")
API_KEY = "sk-qnext-test-key"
FAKE_MODEL = "fake-model"

_procs = []
_shared = {}


def _stop_all():
    for p in reversed(_procs):
        try:
            p.stop(timeout=5)
        except Exception:
            pass


atexit.register(_stop_all)


def _track(p):
    _procs.append(p)
    return p


# ---- engines ----------------------------------------------------------------------------------

class FakeEngine:
    """The Python fake generator on a port of its own; `stats()` reads its counters."""

    def __init__(self, port=None, args=()):
        self.port = port or free_port()
        tmp = os.environ.get("TMPDIR", "/tmp")
        self.stats_path = os.path.join(tmp, "qnext-fake-stats-%d-%d.json" % (os.getpid(), self.port))
        self.args = list(args)
        self.proc = None
        self.start()

    def start(self):
        argv = [sys.executable, FAKE, "--port", str(self.port), "--stats-file", self.stats_path,
                "--model-id", FAKE_MODEL] + self.args
        self.proc = _track(Proc(argv, name="fake-generator"))
        wait_tcp(self.port, timeout=60, proc=self.proc)

    def stop(self, sig=signal.SIGKILL):
        if self.proc.alive():
            self.proc.p.send_signal(sig)
            self.proc.p.wait(timeout=10)

    @property
    def target(self):
        return "127.0.0.1:%d" % self.port

    def stats(self):
        for _ in range(50):
            try:
                with open(self.stats_path) as f:
                    return json.load(f)
            except (OSError, ValueError):
                time.sleep(0.02)
        raise AssertionError("cannot read the fake engine's stats file " + self.stats_path)

    def wait_stats(self, pred, timeout=5.0):
        """Waits until pred(stats) holds; returns the stats (fails the test on timeout)."""
        t_end = time.time() + timeout
        s = self.stats()
        while time.time() < t_end:
            s = self.stats()
            if pred(s):
                return s
            time.sleep(0.05)
        pytest.fail("fake engine stats never matched: %s" % s)


class RealEngine:
    """qnext-engine (QNEXT_ENGINE_BIN) on a demo model (QNEXT_ENGINE_MODEL)."""

    def __init__(self):
        self.port = free_port()
        binary = os.environ["QNEXT_ENGINE_BIN"]
        model = os.environ.get("QNEXT_ENGINE_MODEL")
        if not model:
            pytest.fail("QNEXT_ENGINE_BIN is set but QNEXT_ENGINE_MODEL (its --model folder) is not")
        argv = [binary, "--model", model, "--listen", "127.0.0.1:%d" % self.port]
        argv += shlex.split(os.environ.get("QNEXT_ENGINE_ARGS", ""))
        self.proc = _track(Proc(argv, name="qnext-engine"))
        wait_tcp(self.port, timeout=300, proc=self.proc)

    @property
    def target(self):
        return "127.0.0.1:%d" % self.port


def real_engine_selected():
    return bool(os.environ.get("QNEXT_ENGINE_BIN"))


# ---- gateways ---------------------------------------------------------------------------------

class Gateway:
    """A qnext-gateway process; `url` is its base URL (http://127.0.0.1:PORT)."""

    def __init__(self, engines, args=(), api_keys=(API_KEY,), scheme="http", wait_ready=True, env=None):
        self.port = free_port()
        argv = [bin_path("qnext-gateway"), "--host", "127.0.0.1", "--port", str(self.port),
                "--threads", "2", "--load-poll-interval", "0.2", "--sse-ping-interval", "0.3"]
        for e in engines:
            argv += ["--engine", e]
        for k in api_keys:
            argv += ["--api-key", k]
        argv += list(args)
        self.argv = argv
        self.scheme = scheme
        self.url = "%s://127.0.0.1:%d" % (scheme, self.port)
        self.proc = _track(Proc(argv, name="qnext-gateway", env=env))
        wait_tcp(self.port, timeout=30, proc=self.proc)
        if wait_ready:
            self.wait_ready()

    def wait_ready(self, timeout=30):
        t_end = time.time() + timeout
        last = None
        while time.time() < t_end:
            try:
                r = httpx.get(self.url + "/ready", timeout=2, verify=False)
                last = r.status_code
                if r.status_code == 200:
                    return
            except httpx.HTTPError as e:
                last = e
            time.sleep(0.05)
        pytest.fail("gateway never became ready (%s):\n%s" % (last, self.proc.log()))

    def client(self, key=API_KEY, **kw):
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", 60)
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, **kw)

    def aclient(self, key=API_KEY, **kw):
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", 60)
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=key, **kw)

    def http(self, **kw):
        kw.setdefault("timeout", 30)
        kw.setdefault("headers", {"Authorization": "Bearer " + API_KEY})
        return httpx.Client(base_url=self.url, verify=False, **kw)

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.p.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self, timeout=30):
        return self.proc.stop(timeout=timeout)


def start_gateway(engines, args=(), **kw):
    return Gateway(engines, args=args, **kw)


def shared_fake():
    if "fake" not in _shared:
        _shared["fake"] = FakeEngine()
    return _shared["fake"]


def shared_engine():
    if "engine" not in _shared:
        _shared["engine"] = RealEngine() if real_engine_selected() else shared_fake()
    return _shared["engine"]


def shared_gateway(which):
    if which not in _shared:
        eng = shared_engine() if which == "gw" else shared_fake()
        if which == "gw" and not real_engine_selected() and "fgw" in _shared:
            _shared[which] = _shared["fgw"]
        elif which == "fgw" and not real_engine_selected() and "gw" in _shared:
            _shared[which] = _shared["gw"]
        else:
            _shared[which] = Gateway([eng.target])
    return _shared[which]


@pytest.fixture
def fake():
    return shared_fake()


@pytest.fixture
def engine():
    return shared_engine()


@pytest.fixture
def gw():
    """Gateway in front of `engine` (real or fake)."""
    return shared_gateway("gw")


@pytest.fixture
def fgw():
    """Gateway in front of the scripted fake engine."""
    return shared_gateway("fgw")


@pytest.fixture
def model(gw):
    with gw.http() as h:
        return h.get("/v1/models").json()["data"][0]["id"]


def sse_events(text):
    """The `data:` payloads of an SSE body, in order (comments skipped)."""
    out = []
    for block in text.split("\n\n"):
        lines = [l for l in block.split("\n") if l and not l.startswith(":")]
        data = "\n".join(l[len("data: "):] for l in lines if l.startswith("data: "))
        if lines:
            out.append(data)
    return out


def curl(*args, timeout=30):
    """Runs curl (HTTP/2 and raw-socket cases the Python clients cannot do); returns CompletedProcess."""
    return subprocess.run(["curl", "-sS"] + list(args), capture_output=True, timeout=timeout)


__all__ = ["API_KEY", "FAKE_MODEL", "FakeEngine", "Gateway", "REPO", "curl", "engine", "fake", "fgw", "gw", "model",
           "real_engine_selected", "sse_events", "start_gateway", "shared_fake", "httpx", "openai", "pytest", "json",
           "time", "signal", "os", "subprocess", "sys"]
