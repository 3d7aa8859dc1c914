"""Tool calls and reasoning from the REAL qnext-engine through qnext-gateway and the official
`openai` SDK (sync and async, streaming and not), driven by the forced-output hook (see
forced_output.py). Checks the OpenAI wire shapes of serving-notes §1: tool-call deltas (index; the
first fragment of a call with id, type "function", name and arguments ""; argument fragments that
concatenate to valid JSON), finish_reason "tool_calls" with an empty delta, content "Let me check."
or null (never whitespace) next to tool calls, reasoning_content on a Thinking-template engine.
Only runs against the real engine (QNEXT_ENGINE_BIN); fails in CI without it.
"""
import asyncio
import json
import shlex

from forced_output import (FORCED, TOOLS, _forced_output_hook_on, is_blank,  # noqa: F401 - autouse fixture
                           requires_real_engine, user)
from gw_fixtures import *  # noqa: F401,F403
from gw_fixtures import Proc, _track, wait_tcp
from conftest import free_port

pytestmark = requires_real_engine

ONE = "@@qnext-e2e-tool@@"
TWO = "@@qnext-e2e-tools@@"
EXPECTED_CALLS = {
    ONE: [("get_weather", {"city": "Paris"})],
    TWO: [("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})],
}
EXPECTED_CONTENT = {ONE: "Let me check.", TWO: None}


def ask(marker):
    return user("What is the weather in Paris? " + marker)


def check_message(r, marker, from_stream=False):
    """A non-streaming response for a tool-call marker (from_stream: rebuilt by the SDK's stream()
    helper, which starts the content from the first chunk's "" as it does with OpenAI's streams)."""
    ch = r.choices[0]
    assert ch.finish_reason == "tool_calls"
    assert ch.message.role == "assistant"
    want = EXPECTED_CONTENT[marker]
    assert ch.message.content == ("" if from_stream and want is None else want)
    got = [(t.function.name, json.loads(t.function.arguments)) for t in ch.message.tool_calls]
    assert got == EXPECTED_CALLS[marker]
    for t in ch.message.tool_calls:
        assert t.type == "function" and t.id.startswith("call_")
    assert len({t.id for t in ch.message.tool_calls}) == len(got)
    assert r.usage.completion_tokens > 0 and r.usage.completion_tokens_details.reasoning_tokens == 0


class StreamCheck:
    """Accumulates a chat stream's chunks and checks each one's shape as it arrives."""

    def __init__(self):
        self.calls, self.content, self.finish, self.n_chunks, self.role_seen = {}, [], None, 0, False
        self.ids, self.usage = set(), None

    def add(self, chunk):
        self.ids.add(chunk.id)
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage is not None:
            assert chunk.choices == []
            self.usage = chunk.usage
            return
        assert len(chunk.choices) == 1 and chunk.choices[0].index == 0
        x = chunk.choices[0]
        assert self.finish is None, "nothing after the finish chunk but usage"
        self.n_chunks += 1
        if self.n_chunks == 1:
            assert x.delta.role == "assistant" and x.delta.content == ""
            self.role_seen = True
            return
        assert x.delta.role is None
        if x.finish_reason:
            assert x.delta.content is None and x.delta.tool_calls is None, "the finish chunk has delta {}"
            self.finish = x.finish_reason
            return
        if x.delta.content is not None:
            assert not is_blank(x.delta.content), "whitespace-only content next to tool calls"
            self.content.append(x.delta.content)
        for t in x.delta.tool_calls or []:
            assert t.function is not None
            if t.index not in self.calls:
                # the first fragment of a call: index, id, type, name, arguments ""
                assert t.id and t.id.startswith("call_") and t.type == "function", t
                assert t.function.name and t.function.arguments == "", t
                assert not self.calls or t.index == max(self.calls) + 1, "calls are numbered 0, 1, ..."
                self.calls[t.index] = {"id": t.id, "name": t.function.name, "args": ""}
            else:
                assert t.id is None and t.function.name is None, "later fragments carry arguments only"
                self.calls[t.index]["args"] += t.function.arguments or ""

    def check(self, marker):
        assert self.role_seen and len(self.ids) == 1
        assert self.finish == "tool_calls"
        content = "".join(self.content)
        assert content == (EXPECTED_CONTENT[marker] or "")
        got = [(self.calls[i]["name"], json.loads(self.calls[i]["args"])) for i in sorted(self.calls)]
        assert got == EXPECTED_CALLS[marker], "argument fragments concatenate to the arguments JSON"
        assert len({c["id"] for c in self.calls.values()}) == len(got)


@pytest.mark.parametrize("marker", [ONE, TWO])
def test_tool_calls_sync_non_streaming(gw, model, marker):
    r = gw.client().chat.completions.create(model=model, messages=ask(marker), tools=TOOLS)
    check_message(r, marker)


@pytest.mark.parametrize("marker", [ONE, TWO])
def test_tool_calls_sync_streaming(gw, model, marker):
    s = StreamCheck()
    for chunk in gw.client().chat.completions.create(model=model, messages=ask(marker), tools=TOOLS, stream=True,
                                                     stream_options={"include_usage": True}):
        s.add(chunk)
    s.check(marker)
    assert s.usage is not None and s.usage.completion_tokens > 0


def test_tool_calls_async_streaming_and_not(gw, model):
    async def run():
        c = gw.aclient()

        async def streamed(marker):
            s = StreamCheck()
            async for chunk in await c.chat.completions.create(model=model, messages=ask(marker), tools=TOOLS,
                                                               stream=True):
                s.add(chunk)
            return s

        async def plain(marker):
            return await c.chat.completions.create(model=model, messages=ask(marker), tools=TOOLS)

        res = await asyncio.gather(streamed(ONE), streamed(TWO), plain(ONE), plain(TWO))
        await c.close()
        return res

    s1, s2, r1, r2 = asyncio.run(run())
    s1.check(ONE)
    s2.check(TWO)
    check_message(r1, ONE)
    check_message(r2, TWO)


def test_stream_helper_validates_tool_calls(gw, model):
    """The SDK's stream() helper rebuilds the message from the deltas and validates every call."""
    for marker in (ONE, TWO):
        with gw.client().chat.completions.stream(model=model, messages=ask(marker), tools=TOOLS,
                                                 stream_options={"include_usage": True}) as st:
            final = st.get_final_completion()
        check_message(final, marker, from_stream=True)


def test_raw_sse_tool_call_chunks(gw, model):
    """The exact wire shape (serving-notes §1.4): head fragment, then an arguments fragment."""
    with gw.http() as h:
        r = h.post("/v1/chat/completions", json={"model": model, "messages": ask(ONE), "tools": TOOLS,
                                                 "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    ev = sse_events(r.text)
    assert ev[-1] == "[DONE]"
    deltas = [json.loads(e)["choices"][0] for e in ev[:-1]]
    tool = [d["delta"]["tool_calls"] for d in deltas if "tool_calls" in d["delta"]]
    assert tool[0] == [{"index": 0, "id": tool[0][0]["id"], "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}]
    assert tool[1] == [{"index": 0, "function": {"arguments": '{"city": "Paris"}'}}]
    assert len(tool) == 2
    assert deltas[-1] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}


def test_non_streaming_wire_content_null(gw, model):
    with gw.http() as h:
        r = h.post("/v1/chat/completions", json={"model": model, "messages": ask(TWO), "tools": TOOLS})
    assert r.status_code == 200
    m = r.json()["choices"][0]["message"]
    assert "content" in m and m["content"] is None, "OpenAI sends content null next to tool calls"
    assert [t["function"]["name"] for t in m["tool_calls"]] == ["get_weather", "get_time"]


def test_text_after_call_and_plain_whitespace(gw, model):
    c = gw.client()
    r = c.chat.completions.create(model=model, messages=ask("@@qnext-e2e-tool-then-text@@"), tools=TOOLS)
    assert r.choices[0].finish_reason == "tool_calls"
    assert r.choices[0].message.content == "\n\nDone."
    assert json.loads(r.choices[0].message.tool_calls[0].function.arguments) == {"city": "Paris", "days": [1, 2]}
    # no tool call: every byte is content, trailing newline included (stream == non-stream)
    r = c.chat.completions.create(model=model, messages=ask("@@qnext-e2e-plain-ws@@"), tools=TOOLS)
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == FORCED["@@qnext-e2e-plain-ws@@"]
    assert r.choices[0].message.tool_calls is None
    text = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
        model=model, messages=ask("@@qnext-e2e-plain-ws@@"), tools=TOOLS, stream=True) if ch.choices)
    assert text == FORCED["@@qnext-e2e-plain-ws@@"]


def test_malformed_call_is_content(gw, model):
    r = gw.client().chat.completions.create(model=model, messages=ask("@@qnext-e2e-bad-tool@@"), tools=TOOLS)
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.tool_calls is None
    assert r.choices[0].message.content == FORCED["@@qnext-e2e-bad-tool@@"]


def test_tool_choice_none_and_parallel_false(gw, model):
    c = gw.client()
    # tool_choice "none": the gateway sends no tools, so the block is plain content
    r = c.chat.completions.create(model=model, messages=ask(TWO), tools=TOOLS, tool_choice="none")
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.tool_calls is None
    assert r.choices[0].message.content == FORCED[TWO]
    # parallel_tool_calls false: only the first call is passed on
    r = c.chat.completions.create(model=model, messages=ask(TWO), tools=TOOLS, parallel_tool_calls=False)
    assert [t.function.name for t in r.choices[0].message.tool_calls] == ["get_weather"]
    assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None


def test_tool_round_trip_request(gw, model):
    """The assistant turn as the SDK returned it, plus the tool's answer, is a valid next request."""
    c = gw.client()
    r = c.chat.completions.create(model=model, messages=ask(ONE), tools=TOOLS)
    m = r.choices[0].message
    msgs = ask(ONE) + [m.model_dump(exclude_none=True)] + [
        {"role": "tool", "tool_call_id": m.tool_calls[0].id, "content": '{"temp_c": 21}'},
        {"role": "user", "content": "Thanks."}]
    r2 = c.chat.completions.create(model=model, messages=msgs, tools=TOOLS, max_tokens=3)
    assert r2.choices[0].finish_reason in ("stop", "length", "tool_calls")
    assert r2.usage.prompt_tokens > r.usage.prompt_tokens


# ==== reasoning: qnext-engine with --chat-template thinking on the same demo model ================

@pytest.fixture(scope="module")
def thinking_gw():
    port = free_port()
    argv = [os.environ["QNEXT_ENGINE_BIN"], "--model", os.environ["QNEXT_ENGINE_MODEL"],
            "--listen", "127.0.0.1:%d" % port] + shlex.split(os.environ.get("QNEXT_ENGINE_ARGS", ""))
    argv += ["--chat-template", "thinking"]
    eng = _track(Proc(argv, name="qnext-engine-thinking"))
    wait_tcp(port, timeout=300, proc=eng)
    g = start_gateway(["127.0.0.1:%d" % port])
    yield g
    g.stop()
    eng.stop()


def test_reasoning_non_streaming_and_streaming(thinking_gw):
    c = thinking_gw.client()
    model = c.models.list().data[0].id
    r = c.chat.completions.create(model=model, messages=ask("@@qnext-e2e-think@@"))
    m = r.choices[0].message
    assert r.choices[0].finish_reason == "stop"
    assert m.content == "The answer is 4."
    assert m.model_extra["reasoning_content"] == "Let me think.\n2 + 2 = 4."
    rt = r.usage.completion_tokens_details.reasoning_tokens
    assert 0 < rt < r.usage.completion_tokens
    order = []
    for ch in c.chat.completions.create(model=model, messages=ask("@@qnext-e2e-think@@"), stream=True):
        for x in ch.choices:
            rc = (x.delta.model_extra or {}).get("reasoning_content")
            if rc:
                order.append(("r", rc))
            if x.delta.content:
                order.append(("c", x.delta.content))
    kinds = [k for k, _ in order]
    assert kinds == sorted(kinds, reverse=True), "all reasoning comes before the content"
    assert "".join(t for k, t in order if k == "r") == m.model_extra["reasoning_content"]
    assert "".join(t for k, t in order if k == "c") == m.content


def test_reasoning_then_tool_call(thinking_gw):
    c = thinking_gw.client()
    model = c.models.list().data[0].id
    r = c.chat.completions.create(model=model, messages=ask("@@qnext-e2e-think-tool@@"), tools=TOOLS)
    ch = r.choices[0]
    assert ch.finish_reason == "tool_calls"
    assert ch.message.content is None
    assert ch.message.model_extra["reasoning_content"] == "The user wants the weather."
    assert [(t.function.name, json.loads(t.function.arguments)) for t in ch.message.tool_calls] == \
        [("get_weather", {"city": "Paris"})]
    assert r.usage.completion_tokens_details.reasoning_tokens > 0
