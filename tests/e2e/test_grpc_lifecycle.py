"""qnext-engine's lifecycle: health while the model loads (NOT_SERVING, probes answered, Generate
UNAVAILABLE), SERVING once loaded, the drain on SIGTERM (the running stream completes, health turns
NOT_SERVING, new calls fail, clean exit), the grace period running out, a second signal, and a
model that fails to load. Uses qnext-engine-fake's QNEXT_FAKE_* controls to slow things down."""
import os
import queue
import signal
import threading
import time

import grpc
import pytest

from grpc_harness import *  # noqa: F401,F403

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


def watch(engine, service=""):
    """Starts a health Watch; returns (queue of statuses or exceptions, call)."""
    q = queue.Queue()
    call = engine.health.Watch(health_pb2.HealthCheckRequest(service=service), timeout=60)

    def reader():
        try:
            for r in call:
                q.put(r.status)
        except grpc.RpcError as e:
            q.put(e)

    threading.Thread(target=reader, daemon=True).start()
    return q, call


def next_status(q, timeout=10):
    v = q.get(timeout=timeout)
    return v


def test_health_through_load(fake_engine):
    e = fake_engine(env={"QNEXT_FAKE_LOAD_MS": "3000"}, wait_serving=False)
    # the server answers probes while the model loads
    assert e.check() == NOT_SERVING
    assert e.check("qnext.v1.Generator") == NOT_SERVING
    assert e.check("liveness") == SERVING
    q, call = watch(e)
    qu, call_u = watch(e, "no.such.service")
    assert next_status(q) == NOT_SERVING
    assert next_status(qu) == SERVICE_UNKNOWN
    with pytest.raises(grpc.RpcError) as err:
        list(e.stub.Generate(gen_request("too early", max_tokens=1), timeout=5))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "loading" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        e.load()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # then it turns SERVING, and the Watch stream reports the change
    assert next_status(q, timeout=30) == SERVING
    assert e.check() == SERVING
    out, _ = collect(e.stub.Generate(gen_request("now", max_tokens=2, ignore_eos=True), timeout=10))
    assert len(out[0]["tokens"]) == 2
    call.cancel()
    call_u.cancel()
    assert qu.empty() or isinstance(qu.get(timeout=5), grpc.RpcError)  # no second status for it


def test_sigterm_drains(fake_engine):
    e = fake_engine(env={"QNEXT_FAKE_STEP_MS": "20"}, args=["--grace-period", "30"])
    q, wcall = watch(e)
    assert next_status(q) == SERVING
    req = gen_request("drain me", max_tokens=200, ignore_eos=True, request_id="draining-1")
    req.sampling.temperature = 0
    stream = e.stub.Generate(req, timeout=60)
    first = next(stream)
    e.proc.signal(signal.SIGTERM)
    assert next_status(q) == NOT_SERVING  # the Watch sees the drain at once
    assert e.check() == NOT_SERVING
    assert e.check("liveness") == SERVING
    with pytest.raises(grpc.RpcError) as err:
        list(e.stub.Generate(gen_request("new work", max_tokens=2), timeout=5))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert e.load().draining
    # the running stream completes normally
    out, _ = collect(stream)
    tokens = list(first.delta.token_ids) + out[0]["tokens"]
    assert len(tokens) == 200
    assert out[0]["final"].finish_reason == pb().FINISH_REASON_LENGTH
    assert e.proc.wait(timeout=30) == 0
    log = e.proc.log()
    assert "draining" in log and "stopped" in log


def test_grace_period_aborts_remaining(fake_engine):
    e = fake_engine(env={"QNEXT_FAKE_STEP_MS": "20"}, args=["--grace-period", "1"])
    stream = e.stub.Generate(gen_request("endless", max_tokens=100000, ignore_eos=True), timeout=60)
    next(stream)
    t0 = time.time()
    e.proc.signal(signal.SIGTERM)
    out, _ = collect(stream)  # aborted after the grace period: a CANCELLED Final, status OK
    assert out[0]["final"].finish_reason == pb().FINISH_REASON_CANCELLED
    assert e.proc.wait(timeout=30) == 0
    assert 0.9 < time.time() - t0 < 15
    assert "grace period over" in e.proc.log()


def test_second_signal_skips_grace(fake_engine):
    e = fake_engine(env={"QNEXT_FAKE_STEP_MS": "20"}, args=["--grace-period", "60"])
    stream = e.stub.Generate(gen_request("endless", max_tokens=100000, ignore_eos=True), timeout=120)
    next(stream)
    t0 = time.time()
    e.proc.signal(signal.SIGTERM)
    time.sleep(0.5)
    assert e.proc.alive()
    e.proc.signal(signal.SIGINT)
    out, _ = collect(stream)
    assert out[0]["final"].finish_reason == pb().FINISH_REASON_CANCELLED
    assert e.proc.wait(timeout=30) == 0
    assert time.time() - t0 < 20
    assert "second signal" in e.proc.log()


def test_load_failure_exits_nonzero(fake_engine):
    e = fake_engine(env={"QNEXT_FAKE_LOAD_MS": "300", "QNEXT_FAKE_LOAD_FAIL": "1"}, wait_serving=False)
    assert e.proc.wait(timeout=30) == 1
    assert "model load failed" in e.proc.log()
    e.close()


def test_bad_flags_exit_2():
    from conftest import Proc, bin_path
    p = Proc([bin_path("qnext-engine-fake"), "--max-queue", "lots"], name="badflags")
    assert p.wait(timeout=10) == 2
    assert "--max-queue: 'lots' is not an integer" in p.log()
    p.stop()
    os.unlink(p.log_path)
    p = Proc([bin_path("qnext-engine-fake"), "--help"], name="help")
    assert p.wait(timeout=10) == 0
    assert "QNEXT_GRACE_PERIOD" in p.log()
    p.stop()
    os.unlink(p.log_path)


def test_port_in_use_exits_1(fake_engine):
    e = fake_engine()
    from conftest import Proc, bin_path
    p = Proc([bin_path("qnext-engine-fake"), "--model", "/tmp", "--listen", f"127.0.0.1:{e.port}"], name="dup")
    assert p.wait(timeout=10) == 1
    assert "cannot listen" in p.log()
    p.stop()
    os.unlink(p.log_path)
