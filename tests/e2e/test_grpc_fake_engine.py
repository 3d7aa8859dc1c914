"""The fake engine's documented behaviour (tests/support/fake_engine.h) as seen through the service:
reasoning and tool-call deltas of chat requests, stop token ids, min_tokens, priority order. These
pin the service's mapping of engine events onto GenerateResponse fields, with known answers."""
import json
import threading
import time

from grpc_harness import *  # noqa: F401,F403


def chat_request(tools=False, **stop):
    r = pb().GenerateRequest()
    r.chat.messages.add(role="user", content="What is the weather?")
    if tools:
        r.chat.tools_json.append(json.dumps({"type": "function", "function": {"name": "get_weather"}}))
    r.sampling.temperature = 0
    for k, v in stop.items():
        setattr(r.stop, k, v)
    return r


def test_reasoning_then_content(fake_engine):
    e = fake_engine()
    out, _ = collect(e.stub.Generate(chat_request(), timeout=30))
    c = out[0]
    f = c["final"]
    assert f.finish_reason == pb().FINISH_REASON_STOP  # the fake's natural end
    n = f.usage.completion_tokens
    assert n == len(c["tokens"]) and 8 <= n <= 32
    assert f.usage.reasoning_tokens == 2
    words = [f" w{t}" for t in c["tokens"]]
    assert c["reasoning"] == "".join(words[:2])
    assert c["content"] == "".join(words[2:])
    assert c["text"] == "".join(words)
    # raw_output: no split
    r = chat_request()
    r.output.raw_output = True
    out, _ = collect(e.stub.Generate(r, timeout=30))
    assert out[0]["reasoning"] == "" and out[0]["content"] == out[0]["text"]


def test_tool_call_deltas(fake_engine):
    e = fake_engine()
    out, ids = collect(e.stub.Generate(chat_request(tools=True), timeout=30))
    c = out[0]
    assert c["final"].finish_reason == pb().FINISH_REASON_TOOL_CALLS
    # fragments of call 0: the first carries id and name, the arguments concatenate to JSON
    frags = c["tools"]
    assert frags and all(t.index == 0 for t in frags)
    assert frags[0].id.startswith("call_fake_") and frags[0].name == "fake_tool"
    args = "".join(t.arguments for t in frags)
    assert json.loads(args) == {"n": len(c["tokens"])}


def test_stop_token_and_min_tokens(fake_engine):
    e = fake_engine()
    base = gen_request("stop ids", max_tokens=20, ignore_eos=True)
    base.sampling.temperature = 0
    full, _ = collect(e.stub.Generate(base, timeout=30))
    toks = full[0]["tokens"]
    stop_id = toks[5]
    first = toks.index(stop_id)
    r = pb().GenerateRequest()
    r.CopyFrom(base)
    r.stop.stop_token_ids.append(stop_id)
    out, _ = collect(e.stub.Generate(r, timeout=30))
    f = out[0]["final"]
    assert f.finish_reason == pb().FINISH_REASON_STOP
    assert f.HasField("matched_stop_token") and f.matched_stop_token == stop_id
    assert out[0]["tokens"] == toks[:first]  # the stop token itself is not emitted
    # min_tokens defers stops
    r.stop.min_tokens = first + 1
    out, _ = collect(e.stub.Generate(r, timeout=30))
    assert len(out[0]["tokens"]) > first


def test_priority_order(fake_engine):
    e = fake_engine(args=["--max-running", "1"], env={"QNEXT_FAKE_STEP_MS": "10"})
    blocker = e.stub.Generate(gen_request("blocker", max_tokens=100000, ignore_eos=True), timeout=60)
    next(blocker)
    finished = []
    lock = threading.Lock()

    def run(name, prio):
        req = gen_request(name, max_tokens=2, ignore_eos=True)
        req.priority = prio
        collect(e.stub.Generate(req, timeout=60))
        with lock:
            finished.append(name)

    threads = []
    for name, prio in [("low", 5), ("high", -5), ("mid", 0)]:
        t = threading.Thread(target=run, args=(name, prio))
        t.start()
        threads.append(t)
        t_end = time.time() + 10
        while e.load().waiting < len(threads) and time.time() < t_end:
            time.sleep(0.005)
    assert e.load().waiting == 3
    blocker.cancel()  # frees the only slot: the queue drains by priority, not arrival
    for t in threads:
        t.join(timeout=60)
    assert finished == ["high", "mid", "low"]
