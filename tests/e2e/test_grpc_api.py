"""qnext-engine's qnext.v1.Generator API through independent grpcio clients: streaming Generate with
text, token and chat inputs, n choices, stop strings, logprobs, request ids, Abort, and the unary
RPCs (Tokenize, Detokenize, GetModelInfo, GetLoad). Runs against QNEXT_ENGINE_BIN (default the
fake engine); expectations hold for any deterministic engine (greedy decoding, ignore_eos where a
length is asserted)."""
import json
import time

import grpc
import pytest

from grpc_harness import *  # noqa: F401,F403


def test_stream_text_prompt(engine):
    req = gen_request("The quick brown fox", max_tokens=6, ignore_eos=True, request_id="api-text-1")
    out, ids = collect(engine.stub.Generate(req, timeout=30))
    assert ids == {"api-text-1"}
    assert list(out) == [0]
    c = out[0]
    assert len(c["tokens"]) == 6
    assert c["final"].finish_reason == pb().FINISH_REASON_LENGTH
    assert c["final"].usage.completion_tokens == 6
    assert c["final"].usage.prompt_tokens > 0
    assert c["final"].timings.total_seconds >= c["final"].timings.ttft_seconds >= 0
    assert c["text"] != ""


def test_server_assigns_request_id(engine):
    out, ids = collect(engine.stub.Generate(gen_request("id please", max_tokens=2, ignore_eos=True), timeout=30))
    assert len(ids) == 1
    rid = ids.pop()
    assert rid != ""


def test_token_input_and_determinism(engine):
    req = pb().GenerateRequest(token_ids=pb().TokenIds(ids=[9707, 1879, 0, 151643]))
    req.sampling.temperature = 0
    req.stop.max_tokens = 5
    req.stop.ignore_eos = True
    a, _ = collect(engine.stub.Generate(req, timeout=30))
    b, _ = collect(engine.stub.Generate(req, timeout=30))
    assert a[0]["tokens"] == b[0]["tokens"]
    assert len(a[0]["tokens"]) == 5
    assert a[0]["final"].usage.prompt_tokens == 4


def test_chat_messages_and_json_forms(engine):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}]
    r1 = pb().GenerateRequest()
    for m in msgs:
        r1.chat.messages.add(role=m["role"], content=m["content"])
    r1.sampling.temperature = 0
    r1.stop.max_tokens = 4
    r1.stop.ignore_eos = True
    out1, _ = collect(engine.stub.Generate(r1, timeout=30))
    assert out1[0]["final"].finish_reason == pb().FINISH_REASON_LENGTH
    assert len(out1[0]["tokens"]) == 4
    # content + reasoning carry the parsed text of a chat answer
    assert out1[0]["content"] + out1[0]["reasoning"] != "" or out1[0]["tools"]

    r2 = pb().GenerateRequest()
    r2.chat.messages_json = json.dumps(msgs, separators=(",", ":"))
    r2.sampling.temperature = 0
    r2.stop.max_tokens = 4
    r2.stop.ignore_eos = True
    out2, _ = collect(engine.stub.Generate(r2, timeout=30))
    assert out2[0]["final"].finish_reason == pb().FINISH_REASON_LENGTH
    assert len(out2[0]["tokens"]) == 4


def test_n_choices_each_end_once(engine):
    req = gen_request("several answers", max_tokens=5, ignore_eos=True)
    req.sampling.n = 3
    req.sampling.temperature = 0.8
    req.sampling.seed = 1234
    out, _ = collect(engine.stub.Generate(req, timeout=30))
    assert sorted(out) == [0, 1, 2]
    for c in out.values():
        assert len(c["tokens"]) == 5
        assert c["final"].finish_reason == pb().FINISH_REASON_LENGTH


def test_stop_string(engine):
    base = gen_request("stop strings are matched across tokens", max_tokens=12, ignore_eos=True)
    base.sampling.temperature = 0
    full, _ = collect(engine.stub.Generate(base, timeout=30))
    text = full[0]["text"]
    assert len(text) >= 8
    stop = text[len(text) // 2: len(text) // 2 + 3]
    req = pb().GenerateRequest()
    req.CopyFrom(base)
    req.stop.stop.append(stop)
    out, _ = collect(engine.stub.Generate(req, timeout=30))
    f = out[0]["final"]
    assert f.finish_reason == pb().FINISH_REASON_STOP
    assert f.matched_stop == stop
    assert out[0]["text"] == text[: text.find(stop)]
    assert stop not in out[0]["text"]


def test_logprobs(engine):
    req = gen_request("logprobs", max_tokens=4, ignore_eos=True)
    req.sampling.logprobs = 2
    out, _ = collect(engine.stub.Generate(req, timeout=30))
    c = out[0]
    assert len(c["logprobs"]) == len(c["tokens"]) == 4
    for lp, tok in zip(c["logprobs"], c["tokens"]):
        assert lp.token == tok
        assert lp.logprob <= 0
        assert len(lp.top) == 2


def test_skip_text(engine):
    req = gen_request("ids only", max_tokens=3, ignore_eos=True)
    req.output.skip_text = True
    out, _ = collect(engine.stub.Generate(req, timeout=30))
    assert len(out[0]["tokens"]) == 3
    assert out[0]["text"] == out[0]["content"] == out[0]["reasoning"] == ""


def test_abort_by_request_id(engine):
    req = gen_request("abort me", max_tokens=100000, ignore_eos=True, request_id="api-abort-1")
    stream = engine.stub.Generate(req, timeout=60)
    first = next(stream)
    assert first.request_id == "api-abort-1"
    resp = engine.stub.Abort(pb().AbortRequest(request_id="api-abort-1"), timeout=5)
    assert resp.found
    out, _ = collect(stream)  # ends OK with a CANCELLED Final
    assert out[0]["final"].finish_reason == pb().FINISH_REASON_CANCELLED
    assert not engine.stub.Abort(pb().AbortRequest(request_id="api-abort-1"), timeout=5).found
    l = engine.wait_idle()
    assert l.running == 0 and l.active_streams == 0


def test_tokenize_detokenize(engine):
    # the Qwen tokenizer (tests/fixtures/tokenizer): "Hello world" is [9707, 1879]
    t = engine.stub.Tokenize(pb().TokenizeRequest(text="Hello world"), timeout=5)
    assert list(t.ids) == [9707, 1879]
    assert t.max_model_len > 0
    text = "Grüße, 世界! <|im_end|>"
    plain = engine.stub.Tokenize(pb().TokenizeRequest(text=text), timeout=5)
    special = engine.stub.Tokenize(pb().TokenizeRequest(text=text, parse_special=True), timeout=5)
    assert 151645 in special.ids and 151645 not in plain.ids
    back = engine.stub.Detokenize(pb().DetokenizeRequest(ids=list(plain.ids)), timeout=5)
    assert back.text == text
    skipped = engine.stub.Detokenize(pb().DetokenizeRequest(ids=list(special.ids), skip_special_tokens=True), timeout=5)
    assert skipped.text == "Grüße, 世界! "
    with pytest.raises(grpc.RpcError) as e:
        engine.stub.Detokenize(pb().DetokenizeRequest(ids=[-1]), timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_tokenize_chat(engine):
    req = pb().TokenizeRequest()
    req.chat.messages.add(role="user", content="Hello world")
    t = engine.stub.Tokenize(req, timeout=5)
    text = engine.stub.Detokenize(pb().DetokenizeRequest(ids=list(t.ids)), timeout=5).text
    assert text.startswith("<|im_start|>user\nHello world<|im_end|>\n")
    assert text.endswith("<|im_start|>assistant\n")
    req.chat.no_generation_prompt = True
    t2 = engine.stub.Tokenize(req, timeout=5)
    assert len(t2.ids) < len(t.ids)
    bad = pb().TokenizeRequest()
    bad.chat.messages_json = "not json"
    with pytest.raises(grpc.RpcError) as e:
        engine.stub.Tokenize(bad, timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_model_info_and_load(engine):
    info = engine.stub.GetModelInfo(pb().GetModelInfoRequest(), timeout=5)
    assert info.model_id != ""
    assert info.max_model_len > 0
    assert info.vocab_size > 0
    assert info.template_kind in ("instruct", "thinking", "hybrid")
    assert info.device in ("cpu", "cuda")
    assert 151645 in info.eos_token_ids
    assert info.created_unix > 1600000000
    l = engine.wait_idle()
    assert l.max_running == 128
    assert l.max_queue > 0
    assert not l.draining
    assert l.generation_tokens_total > 0  # earlier tests generated
