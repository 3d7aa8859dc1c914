#!/usr/bin/env python3
"""gw_bench.py - qnext-gateway overhead: the same streaming load sent directly to qnext-engine over
gRPC and through the gateway (OpenAI SSE), plus wrk on GET /v1/models.

Reports, for each path: output tokens/s, requests/s, time to first token and inter-token latency
(p50/p99), end-to-end latency; then the gateway's added latency (TTFT and per token, p50/p99) as
the difference of the two paths' percentiles. Prints a Markdown table for bench/RESULTS.md.

  # against running servers (e.g. the real engine on the demo model)
  python bench/serving/gw_bench.py --engine 127.0.0.1:50051 --gateway http://127.0.0.1:8000 --api-key KEY

  # self-contained smoke run: starts tests/e2e/fake_generator.py and build/bin/qnext-gateway
  python bench/serving/gw_bench.py --start-fake

bench/serving/serving_bench.py reuses this file's helpers for the full measurement on the real
engine: in-process vs gRPC vs gateway on identical requests, interleaved rounds, CPU per token.

Needs the test venv (openai, grpcio, grpcio-tools; scripts/requirements-test.txt) and wrk. The
client runs in one Python process: on small machines it is the bottleneck for tokens/s, so
compare the two paths at the same concurrency rather than reading absolute numbers.
"""
import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def load_stubs():
    from grpc_tools import protoc
    import importlib
    out = tempfile.mkdtemp(prefix="qnext-bench-proto-")
    proto = os.path.join(REPO, "proto")
    rc = protoc.main(["protoc", "-I" + proto, "--python_out=" + out, "--grpc_python_out=" + out,
                      os.path.join(proto, "qnext", "v1", "generator.proto")])
    assert rc == 0
    sys.path.insert(0, out)
    return importlib.import_module("qnext.v1.generator_pb2"), importlib.import_module("qnext.v1.generator_pb2_grpc")


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


class Run:
    def __init__(self):
        self.ttft, self.itl, self.e2e, self.tokens, self.errors = [], [], [], 0, 0
        self.wall = 0.0


async def bench_grpc(target, prompt, n_req, conc, max_tokens, ignore_eos):
    import grpc
    pb, pbg = load_stubs()
    run = Run()
    sem = asyncio.Semaphore(conc)
    async with grpc.aio.insecure_channel(target) as ch:
        stub = pbg.GeneratorStub(ch)

        async def one(i):
            async with sem:
                req = pb.GenerateRequest(
                    chat=pb.ChatInput(messages_json=json.dumps([{"role": "user", "content": prompt}])),
                    sampling=pb.SamplingParams(temperature=0.0, n=1),
                    stop=pb.StopParams(max_tokens=max_tokens, ignore_eos=ignore_eos))
                t0 = time.perf_counter()
                last = None
                try:
                    async for m in stub.Generate(req):
                        if m.WhichOneof("kind") == "delta" and m.delta.token_ids:
                            now = time.perf_counter()
                            k = len(m.delta.token_ids)
                            if last is None:
                                run.ttft.append(now - t0)
                            else:
                                run.itl.extend([(now - last) / k] * k)
                            last = now
                            run.tokens += k
                    run.e2e.append(time.perf_counter() - t0)
                except grpc.RpcError:
                    run.errors += 1

        t = time.perf_counter()
        await asyncio.gather(*[one(i) for i in range(n_req)])
        run.wall = time.perf_counter() - t
    return run


async def bench_gateway(url, key, model, prompt, n_req, conc, max_tokens, ignore_eos):
    """Streams through the gateway with a thin SSE client (httpx2 + json): the openai SDK parses each
    chunk into pydantic objects, which costs more client CPU than the gateway adds."""
    import httpx2 as httpx
    run = Run()
    sem = asyncio.Semaphore(conc)
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": ignore_eos}
    headers = {"Authorization": "Bearer " + key} if key else {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600,
                                 limits=httpx.Limits(max_connections=conc * 2)) as c:
        async def one(i):
            async with sem:
                t0 = time.perf_counter()
                last = None
                try:
                    async with c.stream("POST", "/v1/chat/completions", json=body) as r:
                        if r.status_code != 200:
                            run.errors += 1
                            await r.aread()
                            return
                        async for line in r.aiter_lines():
                            if not line.startswith("data: ") or line == "data: [DONE]":
                                continue
                            ch = json.loads(line[6:])
                            if "error" in ch:
                                run.errors += 1
                                return
                            if ch.get("usage"):
                                run.tokens += ch["usage"]["completion_tokens"]
                            d = ch["choices"][0]["delta"] if ch["choices"] else {}
                            if d.get("content") or d.get("reasoning_content") or d.get("tool_calls"):
                                now = time.perf_counter()
                                if last is None:
                                    run.ttft.append(now - t0)
                                else:
                                    run.itl.append(now - last)
                                last = now
                    run.e2e.append(time.perf_counter() - t0)
                except httpx.HTTPError:
                    run.errors += 1

        t = time.perf_counter()
        await asyncio.gather(*[one(i) for i in range(n_req)])
        run.wall = time.perf_counter() - t
    return run


def wrk_models(url, key, seconds=5, conns=64):
    wrk = shutil.which("wrk")
    if not wrk:
        return None
    args = [wrk, "-t2", "-c%d" % conns, "-d%ds" % seconds, "--latency"]
    if key:
        args += ["-H", "Authorization: Bearer " + key]
    out = subprocess.run(args + [url + "/v1/models"], capture_output=True, text=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99%\s+(\S+)", out)
    return (float(m.group(1)) if m else None, p99.group(1) if p99 else "?")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    t_end = time.time() + timeout
    while time.time() < t_end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("nothing listening on port %d" % port)


def row(name, r):
    ms = lambda x: "%.2f" % (x * 1000)
    return "| %s | %.0f | %.1f | %s / %s | %s / %s | %s / %s | %d |" % (
        name, r.tokens / r.wall if r.wall else 0, len(r.e2e) / r.wall if r.wall else 0,
        ms(pct(r.ttft, 50)), ms(pct(r.ttft, 99)), ms(pct(r.itl, 50)), ms(pct(r.itl, 99)),
        ms(pct(r.e2e, 50)), ms(pct(r.e2e, 99)), r.errors)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engine", help="qnext-engine gRPC address host:port")
    ap.add_argument("--gateway", help="qnext-gateway base URL, e.g. http://127.0.0.1:8000")
    ap.add_argument("--api-key", default=os.environ.get("QNEXT_API_KEY", ""))
    ap.add_argument("--model", help="model name (default: the gateway's first /v1/models entry)")
    ap.add_argument("--prompt", default="Write a short story about a lighthouse keeper.")
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--no-ignore-eos", action="store_true", help="let EOS end generations early")
    ap.add_argument("--wrk-seconds", type=int, default=5)
    ap.add_argument("--start-fake", action="store_true", help="start the fake engine and a gateway (smoke run)")
    a = ap.parse_args()

    procs = []
    try:
        if a.start_fake:
            ep, gp = free_port(), free_port()
            procs.append(subprocess.Popen([sys.executable, os.path.join(REPO, "tests", "e2e", "fake_generator.py"),
                                           "--port", str(ep)], stdout=subprocess.DEVNULL))
            wait_port(ep)
            gw_bin = os.path.join(os.environ.get("QNEXT_BIN", os.path.join(REPO, "build", "bin")), "qnext-gateway")
            procs.append(subprocess.Popen([gw_bin, "--engine", "127.0.0.1:%d" % ep, "--host", "127.0.0.1", "--port",
                                           str(gp)], stderr=subprocess.DEVNULL))
            wait_port(gp)
            time.sleep(0.5)
            a.engine, a.gateway = "127.0.0.1:%d" % ep, "http://127.0.0.1:%d" % gp
        if not a.engine or not a.gateway:
            ap.error("give --engine and --gateway, or --start-fake")
        if not a.model:
            import urllib.request
            req = urllib.request.Request(a.gateway + "/v1/models", headers={"Authorization": "Bearer " + a.api_key})
            a.model = json.load(urllib.request.urlopen(req))["data"][0]["id"]
        ie = not a.no_ignore_eos
        direct = asyncio.run(bench_grpc(a.engine, a.prompt, a.requests, a.concurrency, a.max_tokens, ie))
        via = asyncio.run(bench_gateway(a.gateway, a.api_key, a.model, a.prompt, a.requests, a.concurrency,
                                        a.max_tokens, ie))
        w = wrk_models(a.gateway, a.api_key, a.wrk_seconds)
        print("\n%d requests, concurrency %d, max_tokens %d, model %s\n" % (a.requests, a.concurrency, a.max_tokens,
                                                                         a.model))
        print("| path | output tok/s | req/s | TTFT p50 / p99 ms | ITL p50 / p99 ms | e2e p50 / p99 ms | errors |")
        print("|---|---|---|---|---|---|---|")
        print(row("direct gRPC", direct))
        print(row("gateway (SSE)", via))
        d = lambda f, p: (pct(f(via), p) - pct(f(direct), p)) * 1000
        print("\ngateway added latency: TTFT p50 %+.2f ms, p99 %+.2f ms; per token p50 %+.3f ms, p99 %+.3f ms" % (
            d(lambda r: r.ttft, 50), d(lambda r: r.ttft, 99), d(lambda r: r.itl, 50), d(lambda r: r.itl, 99)))
        if w:
            print("wrk GET /v1/models (64 connections, %d s): %.0f requests/s, p99 %s" % (a.wrk_seconds, w[0], w[1]))
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=10)


if __name__ == "__main__":
    main()
