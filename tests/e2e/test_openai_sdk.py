"""The gateway through the official `openai` Python SDK (sync and async).

Tests taking `gw` run against the selected engine (the fake by default, qnext-engine with
QNEXT_ENGINE_BIN) and check only what any model satisfies: shapes, ids, usage arithmetic,
stream == non-stream at temperature 0, stop strings honoured, max_tokens. Tests taking `fgw` use
the fake engine's scripted outputs (markers "@@fake:...", see fake_generator.py) to drive exact
contents: tool calls, reasoning, parameter mapping, UTF-8.
"""
import asyncio

from gw_fixtures import *  # noqa: F401,F403


def user(text):
    return [{"role": "user", "content": text}]


# ==== models ===================================================================================

def test_models_list_and_retrieve(gw):
    c = gw.client()
    models = list(c.models.list())
    assert len(models) == 1
    m = models[0]
    assert m.object == "model" and m.owned_by == "qnext" and isinstance(m.created, int)
    got = c.models.retrieve(m.id)
    assert got.id == m.id


def test_served_model_name_override(fake):
    g = start_gateway([fake.target], args=["--served-model-name", "my-org/renamed"])
    try:
        c = g.client()
        assert [m.id for m in c.models.list()] == ["my-org/renamed"]
        assert c.models.retrieve("my-org/renamed").id == "my-org/renamed"  # an id with '/'
        r = c.chat.completions.create(model="my-org/renamed", messages=user("hi"), max_tokens=2)
        assert r.model == "my-org/renamed"
        with pytest.raises(openai.NotFoundError):
            c.chat.completions.create(model=FAKE_MODEL, messages=user("hi"))
    finally:
        g.stop()


# ==== chat =====================================================================================

def test_chat_non_streaming(gw, model):
    r = gw.client().chat.completions.create(model=model, messages=user("Say hello."), max_tokens=8, temperature=0)
    assert r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-")
    assert r.model == model
    assert len(r.choices) == 1
    ch = r.choices[0]
    assert ch.index == 0 and ch.message.role == "assistant"
    assert isinstance(ch.message.content, str)
    assert ch.finish_reason in ("stop", "length")
    u = r.usage
    assert u.prompt_tokens > 0 and 0 < u.completion_tokens <= 8
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert u.prompt_tokens_details.cached_tokens >= 0
    assert u.completion_tokens_details.reasoning_tokens >= 0


def test_chat_streaming_matches_non_streaming(gw, model):
    c = gw.client()
    msgs = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "Count"}, {"type": "text", "text": "to three."}]}]
    full = c.chat.completions.create(model=model, messages=msgs, max_tokens=12, temperature=0, seed=7)
    chunks = list(c.chat.completions.create(model=model, messages=msgs, max_tokens=12, temperature=0, seed=7,
                                            stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(ch.id == chunks[0].id for ch in chunks), "the id stays the same across the stream"
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)
    assert all(ch.choices[0].delta.role is None for ch in chunks[1:] if ch.choices)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert text == full.choices[0].message.content
    assert finish == [full.choices[0].finish_reason]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == full.usage.completion_tokens
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(ch.usage is None for ch in chunks[:-1])


def test_chat_stream_helper(gw, model):
    """The SDK's stream() helper checks finish_reason and role of every choice."""
    with gw.client().chat.completions.stream(model=model, messages=user("hi"), max_tokens=4) as s:
        for _ in s:
            pass
        try:
            final = s.get_final_completion()
        except openai.LengthFinishReasonError as e:  # the helper refuses "length" but has checked the rest
            final = e.completion
    assert final.choices[0].finish_reason in ("stop", "length")
    assert final.choices[0].message.role == "assistant"


def test_chat_async_concurrent(gw, model):
    async def run():
        c = gw.aclient()
        async def one(i):
            if i % 2:
                r = await c.chat.completions.create(model=model, messages=user("hi %d" % i), max_tokens=4)
                return r.choices[0].finish_reason
            s = await c.chat.completions.create(model=model, messages=user("hi %d" % i), max_tokens=4, stream=True)
            fins = [ch.choices[0].finish_reason async for ch in s if ch.choices and ch.choices[0].finish_reason]
            return fins[0]
        res = await asyncio.gather(*[one(i) for i in range(8)])
        await c.close()
        return res
    assert all(f in ("stop", "length") for f in asyncio.run(run()))


def test_n_choices(gw, model):
    c = gw.client()
    r = c.chat.completions.create(model=model, messages=user("hi"), n=3, max_tokens=4, temperature=1.0)
    assert [ch.index for ch in r.choices] == [0, 1, 2]
    assert all(ch.finish_reason in ("stop", "length") for ch in r.choices)
    s = c.chat.completions.create(model=model, messages=user("hi"), n=3, max_tokens=4, stream=True)
    roles, finishes = set(), {}
    for ch in s:
        for x in ch.choices:
            if x.delta.role:
                roles.add(x.index)
            if x.finish_reason:
                assert x.index not in finishes, "one finish chunk per choice"
                finishes[x.index] = x.finish_reason
    assert roles == {0, 1, 2} and set(finishes) == {0, 1, 2}


def test_stop_strings(gw, model):
    c = gw.client()
    base = c.chat.completions.create(model=model, messages=user("Tell a story."), max_tokens=16, temperature=0,
                                     extra_body={"ignore_eos": True})
    text = base.choices[0].message.content
    words = text.split()
    assert len(words) >= 3, text
    stop = " " + words[2]
    r = c.chat.completions.create(model=model, messages=user("Tell a story."), max_tokens=16, temperature=0,
                                  stop=[stop, "@@never@@"], extra_body={"ignore_eos": True})
    out = r.choices[0].message.content
    assert stop not in out
    assert text.startswith(out)
    assert r.choices[0].finish_reason == "stop"


def test_max_tokens_length(gw, model):
    r = gw.client().chat.completions.create(model=model, messages=user("Write a long essay."),
                                            max_completion_tokens=3, max_tokens=100,
                                            extra_body={"ignore_eos": True})
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 3


def test_logprobs(gw, model):
    r = gw.client().chat.completions.create(model=model, messages=user("hi"), max_tokens=4, logprobs=True,
                                            top_logprobs=2)
    lp = r.choices[0].logprobs
    assert lp is not None and len(lp.content) >= 1
    for t in lp.content:
        assert isinstance(t.token, str) and t.logprob <= 0 and isinstance(t.bytes, list)
        assert len(t.top_logprobs) == 2
        assert all(isinstance(a.token, str) and a.logprob <= 0 for a in t.top_logprobs)


# ==== scripted by the fake engine ==============================================================

def test_parameter_mapping_and_seed_passthrough(fgw):
    r = fgw.client().chat.completions.create(
        model=FAKE_MODEL, messages=user("@@fake:params"), seed=1234, temperature=0.5, top_p=0.875,
        presence_penalty=0.25, frequency_penalty=-0.5, stop=["END"], max_completion_tokens=77, logprobs=True,
        top_logprobs=3, logit_bias={"17": -100}, user="someone",
        tools=[{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}],
        extra_body={"top_k": 5, "min_p": 0.125, "chat_template_kwargs": {"enable_thinking": False},
                    "repetition_penalty": 1.25, "min_tokens": 2, "stop_token_ids": [9]})
    g = json.loads(r.choices[0].message.content)
    s = g["sampling"]
    assert s["seed"] == "1234"  # uint64 travels as a JSON string in proto3 JSON
    assert s["temperature"] == 0.5 and s["top_p"] == 0.875 and s["top_k"] == 5 and s["min_p"] == 0.125
    assert s["presence_penalty"] == 0.25 and s["frequency_penalty"] == -0.5 and s["repetition_penalty"] == 1.25
    assert s["logprobs"] == 3
    assert s["logit_bias"] == [{"token": 17, "bias": -100.0}]
    assert g["stop"]["max_tokens"] == 77 and g["stop"]["stop"] == ["END"] and g["stop"]["min_tokens"] == 2
    assert g["stop"]["stop_token_ids"] == [9]
    assert json.loads(g["chat"]["messages_json"]) == user("@@fake:params")
    assert json.loads(g["chat"]["tools_json"][0])["function"]["name"] == "lookup"
    assert json.loads(g["chat"]["template_kwargs_json"]) == {"enable_thinking": False}
    assert g["request_id"] == r.id


def test_defaults_stay_unset(fgw):
    r = fgw.client().chat.completions.create(model=FAKE_MODEL, messages=user("@@fake:params"))
    g = json.loads(r.choices[0].message.content)
    for k in ("temperature", "top_p", "top_k", "min_p", "seed", "logprobs", "repetition_penalty"):
        assert k not in g.get("sampling", {}), k
    assert "max_tokens" not in g.get("stop", {})


def test_tool_calls_streaming(fgw):
    c = fgw.client()
    calls, finish, raw_tool_deltas = {}, None, []
    for ch in c.chat.completions.create(model=FAKE_MODEL, messages=user("@@fake:tool parallel=1"), stream=True,
                                        tools=[{"type": "function", "function": {"name": "get_weather"}}]):
        for x in ch.choices:
            for t in x.delta.tool_calls or []:
                raw_tool_deltas.append(t)
                cur = calls.setdefault(t.index, {"id": None, "name": None, "args": ""})
                if t.id:
                    cur["id"] = t.id
                if t.function and t.function.name:
                    cur["name"] = t.function.name
                if t.function and t.function.arguments:
                    cur["args"] += t.function.arguments
            if x.finish_reason:
                finish = x.finish_reason
    assert finish == "tool_calls"
    assert calls[0] == {"id": "call_fake0", "name": "get_weather", "args": '{"city": "Paris"}'}
    assert calls[1] == {"id": "call_fake1", "name": "get_time", "args": '{"tz": "CET"}'}
    assert all(t.function is not None for t in raw_tool_deltas), "every tool-call delta has a function object"
    firsts = [t for t in raw_tool_deltas if t.id]
    assert all(t.type == "function" and t.function.arguments == "" for t in firsts)


def test_tool_calls_non_streaming_and_helper(fgw):
    c = fgw.client()
    r = c.chat.completions.create(model=FAKE_MODEL, messages=user("@@fake:tool noid=1"))
    m = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls"
    assert m.content is None
    assert len(m.tool_calls) == 1
    tc = m.tool_calls[0]
    assert tc.type == "function" and tc.function.name == "get_weather"
    assert json.loads(tc.function.arguments) == {"city": "Paris"}
    assert tc.id.startswith("call_") and len(tc.id) == 29  # made by the gateway
    # the stream() helper validates every tool call (id, type, name, arguments)
    with c.chat.completions.stream(model=FAKE_MODEL, messages=user("@@fake:tool content=1")) as s:
        final = s.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert final.choices[0].message.content == "Let me check."
    # parallel_tool_calls=false passes only the first call on
    r = c.chat.completions.create(model=FAKE_MODEL, messages=user("@@fake:tool parallel=1"), parallel_tool_calls=False,
                                  tools=[{"type": "function", "function": {"name": "get_weather"}}])
    assert [t.function.name for t in r.choices[0].message.tool_calls] == ["get_weather"]


def test_reasoning_split(fgw):
    c = fgw.client()
    r = c.chat.completions.create(model=FAKE_MODEL, messages=user("@@fake:reasoning"))
    m = r.choices[0].message
    assert m.content == "The answer is 4."
    assert m.model_extra["reasoning_content"] == "Let me think."
    assert r.usage.completion_tokens_details.reasoning_tokens == 4
    order = []
    for ch in c.chat.completions.create(model=FAKE_MODEL, messages=user("@@fake:reasoning"), stream=True):
        for x in ch.choices:
            extra = x.delta.model_extra or {}
            if extra.get("reasoning_content"):
                order.append(("r", extra["reasoning_content"]))
            if x.delta.content:
                order.append(("c", x.delta.content))
    assert "".join(t for k, t in order if k == "r") == "Let me think."
    assert "".join(t for k, t in order if k == "c") == "The answer is 4."
    assert [k for k, _ in order] == ["r"] * 4 + ["c"] * 5


def test_mirror_reasoning_flag(fake):
    g = start_gateway([fake.target], args=["--mirror-reasoning"])
    try:
        r = g.client().chat.completions.create(model=FAKE_MODEL, messages=user("@@fake:reasoning"))
        assert r.choices[0].message.model_extra["reasoning"] == "Let me think."
    finally:
        g.stop()


def test_utf8_and_partial_token_bytes(fgw):
    r = fgw.client().chat.completions.create(model=FAKE_MODEL, messages=user("@@fake:utf8"), logprobs=True)
    ch = r.choices[0]
    assert ch.message.content == "h\u00e9llo \u4e16\u754c \U0001F389"
    last = ch.logprobs.content[-1]
    assert last.bytes == list("\u4e16".encode()[:2])  # half a character: exact bytes kept
    assert last.token == "\ufffd\ufffd"


def test_stop_and_n_on_fake(fgw):
    r = fgw.client().chat.completions.create(model=FAKE_MODEL, messages=user("hi"), stop=" fake", n=2)
    assert r.choices[0].message.content == "[0]Hello from the"
    assert all(c.finish_reason == "stop" for c in r.choices)


# ==== legacy completions ========================================================================

def test_completions(gw, model):
    c = gw.client()
    r = c.completions.create(model=model, prompt="Once upon a time", max_tokens=5, temperature=0)
    assert r.object == "text_completion" and r.id.startswith("cmpl-")
    assert isinstance(r.choices[0].text, str) and r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    s = list(c.completions.create(model=model, prompt="Once upon a time", max_tokens=5, temperature=0, stream=True,
                                  stream_options={"include_usage": True}))
    assert "".join(x.choices[0].text for x in s if x.choices) == r.choices[0].text
    assert s[-1].choices == [] and s[-1].usage.completion_tokens == r.usage.completion_tokens


def test_completions_prompt_forms(gw, model):
    c = gw.client()
    r = c.completions.create(model=model, prompt=["a b", "c d e"], n=2, max_tokens=3)
    assert [x.index for x in r.choices] == [0, 1, 2, 3]
    r1 = c.completions.create(model=model, prompt=[1, 2, 3], max_tokens=2)
    assert len(r1.choices) == 1
    r2 = c.completions.create(model=model, prompt=[[1, 2], [3]], max_tokens=2)
    assert len(r2.choices) == 2
    assert r2.usage.prompt_tokens >= 3


def test_completions_echo_and_logprobs(fgw):
    c = fgw.client()
    r = c.completions.create(model=FAKE_MODEL, prompt="Say:", max_tokens=2, echo=True)
    assert r.choices[0].text == "Say:Hello from"
    r = c.completions.create(model=FAKE_MODEL, prompt="Say:", max_tokens=2, logprobs=2)
    lp = r.choices[0].logprobs
    assert lp.tokens == ["Hello", " from"]
    assert lp.token_logprobs == [-0.25, -0.25]
    assert lp.top_logprobs == [{"alt0": -1.0, "alt1": -2.0}] * 2
    assert lp.text_offset == [0, 5]
    s = list(c.completions.create(model=FAKE_MODEL, prompt="Say:", max_tokens=2, echo=True, stream=True))
    assert "".join(x.choices[0].text for x in s) == "Say:Hello from"
