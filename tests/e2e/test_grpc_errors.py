"""qnext-engine's error handling seen from a grpcio client: malformed and oversize messages, invalid
arguments, unknown methods, client cancellation and deadlines (the engine slot is freed again,
visible through GetLoad), and a full engine queue (RESOURCE_EXHAUSTED with retry-after-ms)."""
import time

import grpc
import pytest

from grpc_harness import *  # noqa: F401,F403


def code_of(fn):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value


def test_garbage_bytes_rejected(engine):
    for payload in [b"\x12\x05ab", b"\xff\xff\xff", b"\x0b", b"\x12\x02\xc3\x28", b"\x12\x03a\x00b"]:
        err = code_of(lambda: engine.raw_stream("Generate", payload))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, payload
        assert err.details(), payload
    for method in ["Tokenize", "Detokenize", "Abort", "GetLoad", "GetModelInfo"]:
        err = code_of(lambda: engine.raw_unary(method, b"\x0a\x05ab"))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, method
    # a valid empty message is fine where every field is optional
    assert engine.raw_unary("GetLoad", b"") is not None
    # the server is unharmed
    assert engine.check() == health_pb2.HealthCheckResponse.SERVING


def test_oversize_message_rejected(engine):
    big = gen_request("x" * (5 << 20), max_tokens=1)
    err = code_of(lambda: list(engine.stub.Generate(big, timeout=30)))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    raw = b"\x12" + bytes([0x80, 0x80, 0x80, 0x03]) + b"y" * (6 << 20)  # prompt of 6 MiB, raw
    err = code_of(lambda: engine.raw_stream("Generate", raw, timeout=30))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert engine.check() == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("mutate,needle", [
    (lambda r: r.ClearField("prompt"), "input"),
    (lambda r: setattr(r, "prompt", ""), "prompt: empty"),
    (lambda r: setattr(r.sampling, "n", 129), "sampling.n"),
    (lambda r: setattr(r.sampling, "temperature", -1.0), "sampling.temperature"),
    (lambda r: setattr(r.sampling, "top_p", 1.5), "sampling.top_p"),
    (lambda r: setattr(r.sampling, "logprobs", 21), "sampling.logprobs"),
    (lambda r: setattr(r.stop, "max_tokens", 0), "stop.max_tokens"),
    (lambda r: r.stop.stop.extend(["s"] * 17), "stop.stop"),
    (lambda r: r.stop.stop.append(""), "stop.stop[0]: empty"),
    (lambda r: setattr(r, "request_id", "x" * 300), "request_id"),
    (lambda r: r.chat.messages.add(role="wizard", content="hi"), "role"),
    (lambda r: setattr(r.chat, "messages_json", "[{"), "messages_json"),
    (lambda r: (r.chat.messages.add(role="user", content="hi"), r.chat.tools_json.append("[]")), "tools_json"),
    (lambda r: (r.chat.messages.add(role="user", content="hi"), setattr(r.chat, "template_kwargs_json", "1")),
     "template_kwargs_json"),
    (lambda r: r.token_ids.ids.extend([1, -7]), "token_ids"),
])
def test_invalid_arguments(engine, mutate, needle):
    req = gen_request("valid", max_tokens=2)
    mutate(req)
    err = code_of(lambda: list(engine.stub.Generate(req, timeout=10)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in err.details()


def test_engine_rejections_are_invalid_argument(engine):
    # token ids outside the vocabulary and prompts longer than the context: the engine's checks
    info = engine.stub.GetModelInfo(pb().GetModelInfoRequest(), timeout=5)
    req = pb().GenerateRequest(token_ids=pb().TokenIds(ids=[info.vocab_size + 5]))
    err = code_of(lambda: list(engine.stub.Generate(req, timeout=10)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    req = pb().GenerateRequest(token_ids=pb().TokenIds(ids=[100] * (info.max_model_len + 1)))
    err = code_of(lambda: list(engine.stub.Generate(req, timeout=10)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_method(engine):
    call = engine.channel.unary_unary("/qnext.v1.Generator/Nope", request_serializer=None, response_deserializer=None)
    err = code_of(lambda: call(b"", timeout=5))
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED


def test_unknown_health_service(engine):
    err = code_of(lambda: engine.check("no.such.Service"))
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_cancel_mid_stream_frees_slot(engine):
    req = gen_request("cancel me", max_tokens=100000, ignore_eos=True)
    call = engine.stub.Generate(req, timeout=60)
    got = 0
    for _ in call:
        got += 1
        if got == 3:
            break
    l = engine.load()
    assert l.running >= 1 and l.active_streams >= 1
    call.cancel()
    l = engine.wait_idle()
    assert l.running == 0 and l.waiting == 0 and l.active_streams == 0


def test_deadline_exceeded_frees_slot(engine):
    req = gen_request("slow answer", max_tokens=100000, ignore_eos=True)
    n = 0
    with pytest.raises(grpc.RpcError) as e:
        for _ in engine.stub.Generate(req, timeout=1.5):
            n += 1
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert n > 0
    l = engine.wait_idle()
    assert l.running == 0 and l.active_streams == 0


def test_queue_full_retry_after(fake_engine):
    e = fake_engine(args=["--max-running", "1", "--max-queue", "1", "--retry-after-ms", "750"],
                    env={"QNEXT_FAKE_STEP_MS": "20"})
    a = e.stub.Generate(gen_request("A", max_tokens=100000, ignore_eos=True), timeout=60)
    next(a)  # A is running
    b = e.stub.Generate(gen_request("B", max_tokens=2, ignore_eos=True), timeout=60)
    t_end = time.time() + 10
    while e.load().waiting != 1 and time.time() < t_end:  # B is queued
        time.sleep(0.01)
    c = e.stub.Generate(gen_request("C", max_tokens=2), timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        list(c)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(err.value.trailing_metadata() or ())
    assert trailers.get("retry-after-ms") == "750"
    a.cancel()
    out, _ = collect(b)  # B runs once A's slot is free
    assert len(out[0]["tokens"]) == 2
    assert e.wait_idle().active_streams == 0
