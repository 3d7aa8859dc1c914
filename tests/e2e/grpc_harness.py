"""Fixtures and helpers for the qnext-engine gRPC suites (tests/e2e/test_grpc_*.py).

Clients are independent of the C code: Python grpcio stubs generated at test time from proto/
with grpcio-tools (into a temp folder), and grpcio-health-checking for grpc.health.v1.

Which server:
  QNEXT_ENGINE_BIN    the binary under test (default: $QNEXT_BIN/qnext-engine-fake)
  QNEXT_ENGINE_MODEL  its --model folder (default: a temp folder holding the tokenizer fixture,
                      which is what qnext-engine-fake needs); set it to a demo model folder when
                      QNEXT_ENGINE_BIN is the real qnext-engine
  QNEXT_ENGINE_ARGS   extra flags for it (shell words), e.g. "--threads 8"
API tests (`engine` fixture) run against that binary and make no assumption the real engine would
break (greedy + ignore_eos where lengths matter). Tests of the service's own mechanics that need
to slow down, stall or break the engine (load delay, load failure, step delay, tiny queues) use
the `fake_engine` factory, which always runs qnext-engine-fake with its QNEXT_FAKE_* controls.
Tests import this module with `from grpc_harness import *`.
"""
import atexit
import os
import shlex
import shutil
import sys
import tempfile
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import REPO, Proc, bin_path, free_port, wait_tcp

PROTO_DIR = os.path.join(REPO, "proto")
TOKENIZER_FIXTURE = os.path.join(REPO, "tests", "fixtures", "tokenizer", "tokenizer.json")
GENERATOR = "/qnext.v1.Generator/"

_stubs = None


def stubs():
    """(generator_pb2, generator_pb2_grpc), generated once per session from proto/."""
    global _stubs
    if _stubs is None:
        from grpc_tools import protoc

        out = tempfile.mkdtemp(prefix="qnext-grpc-stubs-")
        atexit.register(shutil.rmtree, out, True)
        rc = protoc.main(["protoc", "-I" + PROTO_DIR, "--python_out=" + out, "--grpc_python_out=" + out,
                          os.path.join(PROTO_DIR, "qnext", "v1", "generator.proto")])
        assert rc == 0, "grpcio-tools could not compile proto/qnext/v1/generator.proto"
        sys.path.insert(0, out)
        from qnext.v1 import generator_pb2, generator_pb2_grpc  # noqa: E402

        _stubs = (generator_pb2, generator_pb2_grpc)
    return _stubs


def pb():
    return stubs()[0]


class Engine:
    """A running qnext-engine process and clients for it."""

    def __init__(self, binary, model, args=(), env=None, wait_serving=True):
        self.port = free_port()
        self.binary = binary
        argv = [binary, "--model", model, "--listen", f"127.0.0.1:{self.port}"] + list(args)
        self.proc = Proc(argv, env=env, name=os.path.basename(binary))
        wait_tcp(self.port, timeout=60, proc=self.proc)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = stubs()[1].GeneratorStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        if wait_serving:
            self.wait_health(health_pb2.HealthCheckResponse.SERVING, timeout=120)

    def check(self, service=""):
        return self.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status

    def wait_health(self, want, timeout=30, service=""):
        t_end = time.time() + timeout
        last = None
        while time.time() < t_end:
            try:
                last = self.check(service)
                if last == want:
                    return
            except grpc.RpcError as e:
                last = e.code()
            if not self.proc.alive():
                pytest.fail(f"engine exited with {self.proc.p.returncode}:\n{self.proc.log()}")
            time.sleep(0.05)
        pytest.fail(f"health stayed {last}, wanted {want}; log:\n{self.proc.log()}")

    def load(self):
        return self.stub.GetLoad(pb().GetLoadRequest(), timeout=5)

    def wait_idle(self, timeout=10):
        """Waits until no request runs or waits and no stream is open; returns the last Load."""
        t_end = time.time() + timeout
        while True:
            l = self.load()
            if (l.running == 0 and l.waiting == 0 and l.active_streams == 0) or time.time() > t_end:
                return l
            time.sleep(0.02)

    def raw_unary(self, method, payload, timeout=5):
        """Sends raw bytes (no serializer) and returns the raw reply bytes."""
        call = self.channel.unary_unary(GENERATOR + method, request_serializer=None, response_deserializer=None)
        return call(payload, timeout=timeout)

    def raw_stream(self, method, payload, timeout=5):
        call = self.channel.unary_stream(GENERATOR + method, request_serializer=None, response_deserializer=None)
        return list(call(payload, timeout=timeout))

    def close(self, timeout=30):
        """Stops the server (SIGTERM); returns its exit code. The log is kept only on failure."""
        self.channel.close()
        rc = self.proc.stop(timeout=timeout)
        if rc == 0:
            os.unlink(self.proc.log_path)
        return rc


def collect(stream):
    """Reads a Generate stream: {choice: {"tokens", "text", "content", "reasoning", "tools",
    "final", "deltas"}}, plus the request ids seen; checks the per-choice contract (no Delta
    after a choice's Final, exactly one Final)."""
    out, ids = {}, set()
    for r in stream:
        ids.add(r.request_id)
        c = out.setdefault(r.choice, {"tokens": [], "text": "", "content": "", "reasoning": "", "tools": [],
                                      "logprobs": [], "final": None, "deltas": 0})
        assert c["final"] is None, f"message for choice {r.choice} after its Final"
        if r.HasField("delta"):
            d = r.delta
            c["deltas"] += 1
            c["tokens"] += list(d.token_ids)
            c["text"] += d.text
            c["content"] += d.content
            c["reasoning"] += d.reasoning
            c["tools"] += list(d.tool_calls)
            c["logprobs"] += list(d.logprobs)
        else:
            assert r.HasField("final"), "a GenerateResponse without delta or final"
            c["final"] = r.final
    for k, c in out.items():
        assert c["final"] is not None, f"choice {k} has no Final"
    return out, ids


def gen_request(prompt="Hello", max_tokens=None, ignore_eos=False, **kw):
    r = pb().GenerateRequest(prompt=prompt, **kw)
    if max_tokens is not None:
        r.stop.max_tokens = max_tokens
    r.stop.ignore_eos = ignore_eos
    return r


def make_model_dir():
    d = tempfile.mkdtemp(prefix="qnext-fake-model-")
    shutil.copy(TOKENIZER_FIXTURE, os.path.join(d, "tokenizer.json"))
    return d


@pytest.fixture(scope="session")
def engine_bin():
    b = os.environ.get("QNEXT_ENGINE_BIN")
    return b if b else bin_path("qnext-engine-fake")


@pytest.fixture(scope="session")
def model_dir():
    m = os.environ.get("QNEXT_ENGINE_MODEL")
    if m:
        yield m  # a generator fixture must yield, even for a given folder
        return
    d = make_model_dir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def engine(engine_bin, model_dir):
    """One shared server for API tests (steps of the fake take 10 ms so streams last a while)."""
    extra = shlex.split(os.environ.get("QNEXT_ENGINE_ARGS", ""))
    e = Engine(engine_bin, model_dir, args=["--max-running", "128"] + extra, env={"QNEXT_FAKE_STEP_MS": "10"})
    yield e
    rc = e.close()
    assert rc == 0, f"engine exited with {rc}:\n{e.proc.log()}"


@pytest.fixture
def fake_engine():
    """Factory: fake_engine(args=[...], env={...}, wait_serving=True) -> Engine running
    qnext-engine-fake; every one started is stopped (and must exit 0 unless the test said
    otherwise by calling close() itself)."""
    started = []
    model = make_model_dir()

    def start(args=(), env=None, wait_serving=True):
        e = Engine(bin_path("qnext-engine-fake"), model, args=args, env=env, wait_serving=wait_serving)
        started.append(e)
        return e

    yield start
    for e in started:
        if e.proc.alive():
            rc = e.close()
            assert rc == 0, f"fake engine exited with {rc}:\n{e.proc.log()}"
        elif os.path.exists(e.proc.log_path):  # the test waited for its exit and checked the code
            e.channel.close()
            os.unlink(e.proc.log_path)
    shutil.rmtree(model, ignore_errors=True)


def run_in_thread(fn, *args):
    """Runs fn(*args) in a thread; returns (thread, result dict with "value" or "error")."""
    res = {}

    def body():
        try:
            res["value"] = fn(*args)
        except Exception as e:  # noqa: BLE001 - handed to the test
            res["error"] = e

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, res


__all__ = ["Engine", "collect", "gen_request", "pb", "stubs", "engine_bin", "model_dir", "engine", "fake_engine",
           "run_in_thread", "health_pb2", "health_pb2_grpc", "GENERATOR", "make_model_dir"]
