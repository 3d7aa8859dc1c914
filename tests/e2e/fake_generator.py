#!/usr/bin/env python3
"""fake_generator.py - a fake qnext-engine: the qnext.v1.Generator gRPC service of
proto/qnext/v1/generator.proto plus grpc.health.v1, with scripted outputs for gateway tests.

It follows the proto's contract: a Generate stream carries Delta messages (choices interleaved)
and exactly one Final per choice, then ends OK; errors are gRPC statuses; RESOURCE_EXHAUSTED
carries `retry-after-ms` trailing metadata; cancelling the call ends the request.

Default output (no marker): deterministic word tokens ("Hello from the fake engine ...") up to
max_tokens (finish "length") or 8 tokens (finish "stop"); stop strings, n, logprobs and usage are
honoured. A prompt, or the last user message of a chat, that starts with "@@fake:<scenario>
[key=value ...]" selects a scripted output instead:

  params                 content = the received GenerateRequest as JSON (checks the gateway's mapping)
  reasoning              reasoning deltas, then content (reasoning_tokens counted)
  tool [parallel=1] [noid=1] [content=1]
                         tool-call fragments (id+name first, then argument pieces), finish TOOL_CALLS
  error_mid              two deltas, then the call fails with INTERNAL
  final_error            one delta, then Final{FINISH_REASON_ERROR}
  slow [n=50] [delay=0.05]  n tokens, `delay` seconds apart
  silent [secs=5]        nothing for `secs` (a long prefill), then one token
  exhausted [ms=1500]    RESOURCE_EXHAUSTED with retry-after-ms
  unavailable            UNAVAILABLE
  invalid                INVALID_ARGUMENT
  utf8                   multi-byte content, and logprobs whose token bytes split a character
  bad_choice             a Delta for a choice index >= n (protocol violation)
  no_final               ends OK without any Final (protocol violation)

Observability for tests: GetLoad reports open Generate calls in `active_streams`/`running`, and
with --stats-file the server rewrites a JSON file {"requests", "active", "cancelled", "completed",
"last_request"} after every change.

Needs grpcio, grpcio-tools (stubs are generated from the .proto at start-up into a temp folder) and
grpcio-health-checking. Run: python fake_generator.py --port 0  (prints "listening on HOST:PORT").
"""
import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))


def load_stubs(proto_dir=PROTO_DIR):
    """Generates the Python stubs of generator.proto into a temp dir and imports them."""
    from grpc_tools import protoc
    import importlib

    out = tempfile.mkdtemp(prefix="qnext-proto-")
    rc = protoc.main(["protoc", "-I" + proto_dir, "--python_out=" + out, "--grpc_python_out=" + out,
                      os.path.join(proto_dir, "qnext", "v1", "generator.proto")])
    if rc != 0:
        raise RuntimeError("protoc failed on generator.proto")
    sys.path.insert(0, out)
    pb = importlib.import_module("qnext.v1.generator_pb2")
    pbg = importlib.import_module("qnext.v1.generator_pb2_grpc")
    return pb, pbg


pb, pbg = load_stubs()
FR = pb.FinishReason
WORDS = ["Hello", " from", " the", " fake", " engine", ".", " How", " are", " you", "?"]


def token_id(text):
    return 100 + (sum(text.encode()) % 900)


class Stats:
    def __init__(self, path):
        self.path = path
        self.requests = 0
        self.active = 0
        self.cancelled = 0
        self.completed = 0
        self.last_request = None

    def save(self):
        if not self.path:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"requests": self.requests, "active": self.active, "cancelled": self.cancelled,
                       "completed": self.completed, "last_request": self.last_request}, f)
        os.replace(tmp, self.path)


def request_text(req):
    """The text that may carry a marker: the prompt, or the last user message of a chat."""
    kind = req.WhichOneof("input")
    if kind == "prompt":
        return req.prompt
    if kind == "token_ids":
        return " ".join(str(i) for i in req.token_ids.ids)
    msgs = []
    if req.chat.messages_json:
        msgs = json.loads(req.chat.messages_json)
    else:
        msgs = [{"role": m.role, "content": m.content} for m in req.chat.messages]
    for m in reversed(msgs):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, list):
                return "\n".join(p.get("text", "") for p in c if isinstance(p, dict))
            return c or ""
    return ""


def prompt_tokens(req):
    kind = req.WhichOneof("input")
    if kind == "token_ids":
        return len(req.token_ids.ids)
    if kind == "prompt":
        return max(1, len(req.prompt.split()))
    total = 0
    msgs = json.loads(req.chat.messages_json) if req.chat.messages_json else []
    for m in msgs:
        c = m.get("content")
        if isinstance(c, list):
            c = " ".join(p.get("text", "") for p in c if isinstance(p, dict))
        total += 3 + len((c or "").split())
    return max(1, total)


def parse_marker(text):
    if not text.startswith("@@fake:"):
        return None, {}
    parts = text[len("@@fake:"):].split()
    name = parts[0] if parts else ""
    args = {}
    for p in parts[1:]:
        if "=" in p:
            k, v = p.split("=", 1)
            args[k] = v
    return name, args


class Generator(pbg.GeneratorServicer):
    def __init__(self, opts, stats):
        self.opts = opts
        self.stats = stats
        self.draining = False

    # ---- helpers ----------------------------------------------------------------------------
    def delta(self, rid, choice, text, chat, lp_k=None, token_bytes=None, **kw):
        tid = token_id(text) if text else 0
        d = pb.Delta(token_ids=[tid] if text or token_bytes else [], text=text)
        if chat and "content" not in kw and "reasoning" not in kw and "tool_calls" not in kw:
            d.content = text
        for k, v in kw.items():
            if k == "tool_calls":
                d.tool_calls.extend(v)
            else:
                setattr(d, k, v)
        if lp_k is not None:
            tb = token_bytes if token_bytes is not None else text.encode()
            lp = pb.TokenLogprob(token=tid, logprob=-0.25, token_bytes=tb)
            for j in range(lp_k):
                alt = ("alt%d" % j).encode()
                lp.top.append(pb.TopLogprob(token=token_id(alt.decode()), logprob=-1.0 - j, token_bytes=alt))
            d.logprobs.append(lp)
        return pb.GenerateResponse(request_id=rid, choice=choice, delta=d)

    def final(self, rid, choice, reason, prompt, completion, reasoning=0, **kw):
        u = pb.Usage(prompt_tokens=prompt, completion_tokens=completion, cached_prompt_tokens=0,
                     reasoning_tokens=reasoning)
        return pb.GenerateResponse(request_id=rid, choice=choice,
                                   final=pb.Final(finish_reason=reason, usage=u, **kw))

    # ---- RPCs -------------------------------------------------------------------------------
    async def Generate(self, req, context):
        st = self.stats
        st.requests += 1
        if self.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "draining")
        if self.opts.max_running and st.active >= self.opts.max_running:
            context.set_trailing_metadata((("retry-after-ms", "1000"),))
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full")
        st.active += 1
        st.last_request = json.loads(_to_json(req))
        st.save()
        outcome = None
        try:
            async for m in self.generate(req, context):
                yield m
            outcome = "completed"
        except grpc.aio.AbortError:
            outcome = "aborted"  # a scripted error status
            raise
        finally:
            # anything else (CancelledError, or GeneratorExit when grpc closes the stream) means
            # the call was cancelled by the client or its deadline
            if outcome == "completed":
                st.completed += 1
            elif outcome is None:
                st.cancelled += 1
            st.active -= 1
            st.save()

    async def generate(self, req, context):
        rid = req.request_id or "fake-%d" % self.stats.requests
        chat = req.WhichOneof("input") == "chat"
        n = req.sampling.n or 1
        lp_k = req.sampling.logprobs if req.sampling.HasField("logprobs") else None
        max_tokens = req.stop.max_tokens if req.stop.HasField("max_tokens") else None
        ptoks = prompt_tokens(req)
        name, args = parse_marker(request_text(req))
        if self.opts.delay:
            await asyncio.sleep(self.opts.delay)

        if name == "params":
            text = _to_json(req)
            for c in range(n):
                yield self.delta(rid, c, text, chat)
                yield self.final(rid, c, FR.FINISH_REASON_STOP, ptoks, 1)
            return
        if name == "reasoning":
            r = ["Let", " me", " think", "."]
            a = ["The", " answer", " is", " 4", "."]
            for c in range(n):
                for w in r:
                    yield self.delta(rid, c, w, chat, reasoning=w)
                for w in a:
                    yield self.delta(rid, c, w, chat, lp_k=lp_k)
                yield self.final(rid, c, FR.FINISH_REASON_STOP, ptoks, len(r) + len(a), reasoning=len(r))
            return
        if name == "tool":
            calls = [("get_weather", ['{"city": ', '"Paris"', "}"])]
            if args.get("parallel") == "1":
                calls.append(("get_time", ['{"tz": ', '"CET"}']))
            noid = args.get("noid") == "1"
            for c in range(n):
                count = 0
                if args.get("content") == "1":
                    yield self.delta(rid, c, "Let me check.", chat)
                    count += 1
                for i, (fname, frags) in enumerate(calls):
                    first = pb.ToolCallDelta(index=i, id="" if noid else "call_fake%d" % i, name=fname,
                                             arguments="")
                    yield self.delta(rid, c, "<tool_call>", chat, tool_calls=[first])
                    for f in frags:
                        yield self.delta(rid, c, f, chat, tool_calls=[pb.ToolCallDelta(index=i, arguments=f)])
                    count += 1 + len(frags)
                yield self.final(rid, c, FR.FINISH_REASON_TOOL_CALLS, ptoks, count)
            return
        if name == "error_mid":
            yield self.delta(rid, 0, "Hello", chat)
            yield self.delta(rid, 0, " world", chat)
            await context.abort(grpc.StatusCode.INTERNAL, "boom: the engine failed mid-stream")
        if name == "final_error":
            yield self.delta(rid, 0, "Hello", chat)
            yield self.final(rid, 0, FR.FINISH_REASON_ERROR, ptoks, 1, error_message="model exploded")
            for c in range(1, n):
                yield self.final(rid, c, FR.FINISH_REASON_ERROR, ptoks, 0, error_message="model exploded")
            return
        if name == "exhausted":
            context.set_trailing_metadata((("retry-after-ms", args.get("ms", "1500")),))
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full")
        if name == "unavailable":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "model loading")
        if name == "invalid":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "prompt is too long for the context (4096 tokens)")
        if name == "bad_choice":
            yield self.delta(rid, n, "x", chat)
            return
        if name == "no_final":
            yield self.delta(rid, 0, "x", chat)
            return
        if name == "silent":
            await asyncio.sleep(float(args.get("secs", "5")))
            for c in range(n):
                yield self.delta(rid, c, "late", chat)
                yield self.final(rid, c, FR.FINISH_REASON_STOP, ptoks, 1)
            return
        if name == "utf8":
            pieces = ["h\u00e9llo", " \u4e16\u754c", " \U0001F389"]
            for c in range(n):
                for p in pieces:
                    yield self.delta(rid, c, p, chat, lp_k=lp_k)
                if lp_k is not None:  # a token that is the first 2 bytes of a 3-byte character
                    yield self.delta(rid, c, "", chat, lp_k=lp_k, token_bytes="\u4e16".encode()[:2])
                yield self.final(rid, c, FR.FINISH_REASON_STOP, ptoks, len(pieces) + (1 if lp_k is not None else 0))
            return

        # default and "slow": deterministic words, max_tokens, stop strings
        total = 8
        delay = 0.0
        if name == "slow":
            total = int(args.get("n", "50"))
            delay = float(args.get("delay", "0.05"))
        if name == "length":
            total = 1 << 30
        limit = total if max_tokens is None else min(total, max_tokens)
        stops = list(req.stop.stop)
        state = [{"text": "", "count": 0, "done": False} for _ in range(n)]
        k = 0
        while not all(s["done"] for s in state):
            for c in range(n):
                s = state[c]
                if s["done"]:
                    continue
                if s["count"] >= limit:
                    s["done"] = True
                    reason = FR.FINISH_REASON_LENGTH if limit < total or name == "length" else FR.FINISH_REASON_STOP
                    yield self.final(rid, c, reason, ptoks, s["count"])
                    continue
                w = WORDS[(k + c) % len(WORDS)] if n > 1 and k == 0 else WORDS[k % len(WORDS)]
                if n > 1 and k == 0:
                    w = "[%d]" % c + w
                s["count"] += 1
                new = s["text"] + w
                hit = next((x for x in stops if x in new), None)
                if hit is not None:
                    cut = new[: new.index(hit)]
                    piece = cut[len(s["text"]):]
                    if piece:
                        yield self.delta(rid, c, piece, chat, lp_k=lp_k)
                    s["done"] = True
                    yield self.final(rid, c, FR.FINISH_REASON_STOP, ptoks, s["count"], matched_stop=hit)
                    continue
                s["text"] = new
                yield self.delta(rid, c, w, chat, lp_k=lp_k)
            k += 1
            if delay:
                await asyncio.sleep(delay)

    async def Abort(self, req, context):
        return pb.AbortResponse(found=False)

    async def Tokenize(self, req, context):
        text = req.text if req.WhichOneof("input") == "text" else ""
        return pb.TokenizeResponse(ids=[token_id(w) for w in text.split()], max_model_len=self.opts.max_model_len)

    async def Detokenize(self, req, context):
        return pb.DetokenizeResponse(text=" ".join("t%d" % i for i in req.ids))

    async def GetModelInfo(self, req, context):
        return pb.ModelInfo(model_id=self.opts.model_id, max_model_len=self.opts.max_model_len,
                            template_kind="hybrid", dtype="f32", tensor_parallel_size=1,
                            vocab_size=self.opts.vocab_size, device="cpu", eos_token_ids=[2],
                            created_unix=self.opts.created)

    async def GetLoad(self, req, context):
        a = self.stats.active
        mr = self.opts.max_running or 256
        return pb.Load(waiting=0, running=a, max_running=mr, max_queue=0, kv_blocks_used=a, kv_blocks_total=mr,
                       kv_cache_usage=min(1.0, a / mr), active_streams=a, draining=self.draining,
                       prompt_tokens_total=0, generation_tokens_total=0)


def _to_json(msg):
    from google.protobuf import json_format
    return json_format.MessageToJson(msg, preserving_proto_field_name=True, indent=None, sort_keys=True)


async def serve(opts):
    stats = Stats(opts.stats_file)
    stats.save()
    # like qnext-engine (docs/decisions.md D11): clients may keep idle connections alive with pings
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20),
                                      ("grpc.so_reuseport", 1),
                                      ("grpc.http2.min_ping_interval_without_data_ms", 10000),
                                      ("grpc.keepalive_permit_without_calls", 1)])
    gen = Generator(opts, stats)
    pbg.add_GeneratorServicer_to_server(gen, server)
    hs = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(hs, server)
    port = server.add_insecure_port("%s:%d" % (opts.host, opts.port))
    await hs.set("", health_pb2.HealthCheckResponse.SERVING)
    await server.start()
    print("fake_generator: listening on %s:%d" % (opts.host, port), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    gen.draining = True
    await hs.enter_graceful_shutdown()
    await server.stop(1.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--model-id", default="fake-model")
    ap.add_argument("--max-model-len", type=int, default=4096)
    ap.add_argument("--vocab-size", type=int, default=1000)
    ap.add_argument("--max-running", type=int, default=0, help="RESOURCE_EXHAUSTED above this many streams")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds before each stream's first output")
    ap.add_argument("--stats-file", default=None)
    ap.add_argument("--created", type=int, default=int(time.time()))
    opts = ap.parse_args()
    asyncio.run(serve(opts))


if __name__ == "__main__":
    main()
