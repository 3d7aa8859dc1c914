#!/usr/bin/env python3
"""serving_bench.py - what the serving layers cost: the engine in-process vs through qnext-engine
(gRPC) vs through qnext-gateway (OpenAI SSE) in front of it, on the same requests; plus wrk on
GET /v1/models. Starts everything it needs, prints a Markdown block for bench/RESULTS.md.

  python bench/serving/serving_bench.py --model DIR            # e.g. the benchmark model
  python bench/serving/serving_bench.py --demo                 # writes and uses the demo model

Paths (same engine flags on both engines; prefix cache off, so no run reuses another's prompt):
  in-process  bench/serving/serve_inproc (build target serve_inproc): eng_submit / eng_step in one
              process, the same loop as qnext-engine's engine-host thread; a token counts as
              received when eng_step returns its event.
  gRPC        qnext-engine; a grpcio (aio) client streams Generate; received = the client has the
              GenerateResponse.
  gateway     qnext-gateway in front of that qnext-engine; an httpx2 client streams
              POST /v1/completions (token-id prompt, so the engine does the same work as for the
              gRPC request; chat would differ only by the template); received = the SSE chunk is
              parsed.
Workload per run (as `qnext bench`): C concurrent requests, each PROMPT_LEN random token ids (the
`qnext bench` generator), greedy, exactly GEN_LEN tokens (ignore_eos), all submitted at once.

Metrics, per path and concurrency:
  decode tok/s   tokens received after every request had its first token / time from then to the
                 last token (`qnext bench`'s definition)
  TTFT           submit -> first token received, per request
  ITL            per token after a request's first: time since that request's previous message,
                 split evenly over the tokens it carried
  added latency  per request: TTFT(path) - TTFT(baseline) (medians); per streamed token:
                 ITL pXX(path) - ITL pXX(baseline). A constant per-message delay cancels out of
                 ITL and shows in the TTFT difference; ITL differences show queueing / jitter that
                 the layer adds between tokens.
  CPU            server CPU seconds (user + system, /proc) per 1000 generated tokens of qnext-engine
                 and of qnext-gateway, vs serve_inproc's; and the benchmark client's own. The
                 machine has 2 cores: client, gateway and engine share them, so the CPU figures are
                 the noise-robust view of the overhead, the tok/s ratios the end-to-end one.
Each round runs every (concurrency, path) once, paths in a rotating order; the table reports
medians over rounds (ratios are medians of per-round ratios) and pooled percentiles.

Needs: the build (qnext, qnext-engine, qnext-gateway, serve_inproc in QNEXT_BIN, default
build/bin), the test venv (grpcio, grpcio-tools, httpx2: scripts/requirements-test.txt), wrk.
"""
import argparse
import asyncio
import datetime
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
from gw_bench import free_port, load_stubs, pct, wait_port, wrk_models  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
pb = pbg = None


# ==== workload ====================================================================================

def prompt_ids(n, seed, c, vocab):
    """The prompt generator of `qnext bench` (cli/cmd_bench.c) and serve_inproc.c."""
    m = (1 << 64) - 1
    x = (seed * 0x9E3779B97F4A7C15 + c) & m
    hi = min(vocab, 150000)
    out = []
    for _ in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) & m
        out.append(100 + (x >> 33) % (hi - 100))
    return out


class Recorder:
    """Receive times of one run: ttft per request, itl per token, decode tok/s."""

    def __init__(self, c):
        self.c = c
        self.t_sub = [0.0] * c
        self.t_last = [None] * c
        self.ttft, self.itl = [], []
        self.tokens = self.after_first = self.n_first = self.messages = 0
        self.t_all_first = self.t_end = None

    def got(self, i, k, now):
        if k <= 0:
            return
        self.messages += 1
        all_first_before = self.n_first == self.c
        if self.t_last[i] is None:
            self.ttft.append(now - self.t_sub[i])
            self.n_first += 1
            if self.n_first == self.c:
                self.t_all_first = now
        else:
            self.itl.extend([(now - self.t_last[i]) / k] * k)
        self.t_last[i] = now
        self.tokens += k
        if all_first_before:
            self.after_first += k
        self.t_end = now

    def result(self, path, t0):
        dt = (self.t_end - self.t_all_first) if self.t_end and self.t_all_first else 0
        return {"path": path, "c": self.c, "tokens": self.tokens, "messages": self.messages,
                "decode_tps": self.after_first / dt if dt > 0 and self.after_first else 0.0,
                "wall_s": (self.t_end or t0) - t0, "ttft_s": self.ttft, "itl_s": self.itl}


def proc_cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def self_cpu():
    t = os.times()
    return t.user + t.system


async def run_grpc(stub, c, prompt_len, gen_len, seed, vocab):
    ids = prompt_ids(c * prompt_len, seed, c, vocab)
    rec = Recorder(c)

    async def one(i):
        req = pb.GenerateRequest(token_ids=pb.TokenIds(ids=ids[i * prompt_len:(i + 1) * prompt_len]),
                                 sampling=pb.SamplingParams(temperature=0.0),
                                 stop=pb.StopParams(max_tokens=gen_len, ignore_eos=True))
        rec.t_sub[i] = time.perf_counter()
        async for m in stub.Generate(req):
            if m.WhichOneof("kind") == "delta":
                rec.got(i, len(m.delta.token_ids), time.perf_counter())
            elif m.final.finish_reason != pb.FINISH_REASON_LENGTH:
                raise RuntimeError("gRPC request ended with %s" % m.final)

    t0 = time.perf_counter()
    await asyncio.gather(*[one(i) for i in range(c)])
    return rec.result("gRPC", t0)


async def run_gateway(client, model, c, prompt_len, gen_len, seed, vocab):
    ids = prompt_ids(c * prompt_len, seed, c, vocab)
    rec = Recorder(c)
    usage = [0]

    async def one(i):
        body = {"model": model, "prompt": ids[i * prompt_len:(i + 1) * prompt_len], "max_tokens": gen_len,
                "temperature": 0, "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True}
        rec.t_sub[i] = time.perf_counter()
        async with client.stream("POST", "/v1/completions", json=body) as r:
            if r.status_code != 200:
                raise RuntimeError("gateway answered %d: %s" % (r.status_code, (await r.aread())[:200]))
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                ch = json.loads(line[6:])
                if "error" in ch:
                    raise RuntimeError("gateway stream error: %s" % ch["error"])
                if ch.get("usage"):
                    usage[0] += ch["usage"]["completion_tokens"]
                if ch["choices"] and ch["choices"][0]["finish_reason"] is None:
                    # one chunk per engine message with text: a token ending in an incomplete UTF-8
                    # sequence gets no chunk (its bytes go out with the next), so that interval
                    # counts once for two tokens (reported: chunks vs tokens; see RESULTS.md)
                    rec.got(i, 1, time.perf_counter())

    t0 = time.perf_counter()
    await asyncio.gather(*[one(i) for i in range(c)])
    res = rec.result("gateway", t0)
    res["usage_tokens"] = usage[0]
    return res


class InProc:
    def __init__(self, argv):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = json.loads(self.p.stdout.readline() or "{}")
        if not ready.get("ready"):
            raise SystemExit("serve_inproc did not start (see its stderr)")
        self.vocab = ready["vocab"]

    def run(self, c, prompt_len, gen_len, seed):
        self.p.stdin.write("run %d %d %d %d\n" % (c, prompt_len, gen_len, seed))
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise SystemExit("serve_inproc failed (see its stderr)")
        return json.loads(line)

    def close(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.close()
            self.p.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            self.p.kill()


# ==== report ======================================================================================

def machine():
    model = "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return model, os.cpu_count(), load


def commit():
    try:
        h = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return h + (" + uncommitted changes" if dirty else "")
    except OSError:
        return "?"


def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def summarize(runs, path, c):
    rs = [r for r in runs if r["path"] == path and r["c"] == c]
    itl = [x for r in rs for x in r["itl_s"]]
    ttft = [x for r in rs for x in r["ttft_s"]]
    tok = sum(r["tokens"] for r in rs)
    cpu = sum(r.get("server_cpu_s", 0) for r in rs)
    gw_cpu = sum(r.get("gateway_cpu_s", 0) for r in rs)
    cl_cpu = sum(r.get("client_cpu_s", 0) for r in rs)
    return {"tps": [r["decode_tps"] for r in rs], "tps_med": med([r["decode_tps"] for r in rs]),
            "ttft50": pct(ttft, 50), "itl50": pct(itl, 50), "itl99": pct(itl, 99),
            "cpu_k": 1000 * cpu / tok if tok else float("nan"), "gw_cpu_k": 1000 * gw_cpu / tok if tok else 0,
            "client_k": 1000 * cl_cpu / tok if tok else float("nan"), "runs": rs}


def ratios(runs, a, b, c):
    """Per-round ratios decode_tps(a) / decode_tps(b)."""
    by = {}
    for r in runs:
        if r["c"] == c:
            by.setdefault(r["round"], {})[r["path"]] = r["decode_tps"]
    return [v[a] / v[b] for v in by.values() if a in v and b in v and v[b] > 0]


def report(a, runs, loads, info):
    ms = lambda x: "%.2f" % (x * 1000)
    model, cores, _ = machine()
    print()
    print("- Date %s, commit `%s`. Machine: `lscpu` \"%s\", %d cores; load average (1 min) before each "
          "round: %s." % (datetime.date.today().isoformat(), commit(), model, cores,
                          ", ".join("%.2f" % l for l in loads)))
    print("- Model: %s. Engine flags (both engines): `%s`. Workload: %s-token random-id prompts, %d greedy "
          "tokens (ignore_eos), %d rounds, paths in rotating order. %s" % (
              info["model"], " ".join(a.engine_args), a.prompt_len, a.gen_len, a.rounds,
              info.get("note", "")))
    print()
    print("| streams | path | decode tok/s median | per round | ratio to baseline (median of rounds) | "
          "TTFT p50 ms | ITL p50 / p99 ms | server CPU s / 1k tok | client CPU s / 1k tok |")
    print("|---:|---|---:|---|---:|---:|---:|---:|---:|")
    for c in a.concurrency:
        for path, base in (("in-process", None), ("gRPC", "in-process"), ("gateway", "gRPC")):
            s = summarize(runs, path, c)
            if not s["runs"]:
                continue
            rat = ratios(runs, path, base, c) if base else []
            cpu = "%.2f" % s["cpu_k"] if path != "gateway" else "%.2f + gateway %.2f" % (s["cpu_k"], s["gw_cpu_k"])
            print("| %d | %s | %.2f | %s | %s | %s | %s / %s | %s | %s |" % (
                c, path, s["tps_med"], ", ".join("%.1f" % x for x in s["tps"]),
                ("%.3f vs %s (%s)" % (med(rat), base, ", ".join("%.2f" % x for x in rat))) if base else "-",
                ms(s["ttft50"]), ms(s["itl50"]), ms(s["itl99"]), cpu,
                "%.2f" % s["client_k"] if path != "in-process" else "-"))
    print()
    print("| streams | layer | added TTFT p50 ms | added per token: ITL p50 / p99 ms | added server CPU ms / token |")
    print("|---:|---|---:|---:|---:|")
    for c in a.concurrency:
        for path, base in (("gRPC", "in-process"), ("gateway", "gRPC")):
            s, b = summarize(runs, path, c), summarize(runs, base, c)
            if not s["runs"] or not b["runs"]:
                continue
            cpu = s["gw_cpu_k"] if path == "gateway" else s["cpu_k"] - b["cpu_k"]
            print("| %d | %s vs %s | %+.2f | %+.3f / %+.3f | %+.3f |" % (
                c, path, base, (s["ttft50"] - b["ttft50"]) * 1000, (s["itl50"] - b["itl50"]) * 1000,
                (s["itl99"] - b["itl99"]) * 1000, cpu))
    gw = [r for r in runs if r["path"] == "gateway"]
    if gw:
        chunks, toks = sum(r["messages"] for r in gw), sum(r["usage_tokens"] for r in gw)
        print("\nGateway SSE chunks before the finish chunk / generated tokens (usage): %d / %d." % (chunks, toks))
    if info.get("wrk"):
        w = info["wrk"]
        print("wrk GET /v1/models (2 threads, 64 connections, %d s, %s): %s" % (
            a.wrk_seconds, "with a Bearer key" if a.api_key else "no key",
            ", ".join("%.0f req/s (p99 %s)" % x for x in w)))


# ==== main ========================================================================================

def main():
    global pb, pbg
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="model folder (e.g. the benchmark model)")
    ap.add_argument("--demo", action="store_true", help="write the demo model into the build folder and use it")
    ap.add_argument("--bin", default=os.environ.get("QNEXT_BIN", os.path.join(REPO, "build", "bin")))
    ap.add_argument("--concurrency", default="1,16")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--gen-len", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--paths", default="in-process,gRPC,gateway")
    ap.add_argument("--threads", type=int, default=2, help="engine worker threads (both engines)")
    ap.add_argument("--engine-args", default="--max-running 16 --max-model-len 4096 --kv-cache-size 512M "
                                             "--prefix-cache-size 0")
    ap.add_argument("--api-key", default="", help="start the gateway with this key (and send it)")
    ap.add_argument("--wrk-seconds", type=int, default=5)
    ap.add_argument("--wrk-runs", type=int, default=3)
    ap.add_argument("--json", help="also write every run's raw numbers here")
    a = ap.parse_args()
    a.concurrency = [int(x) for x in a.concurrency.split(",")]
    paths = a.paths.split(",")
    a.engine_args = ["--threads", str(a.threads)] + a.engine_args.split()
    info = {}
    if a.demo:
        a.model = os.path.join(os.path.dirname(a.bin), "demo-model")
        if not os.path.exists(os.path.join(a.model, "config.json")):
            subprocess.run([os.path.join(a.bin, "qnext"), "demo-model", "--out", a.model], check=True)
        info["model"] = "the demo model (`qnext demo-model`: hidden 256, 8 layers, 8 experts top-2)"
    elif not a.model:
        ap.error("give --model DIR (the benchmark model: qnext demo-model --config bench/model/config.json "
                 "--out DIR) or --demo")
    else:
        info.setdefault("model", "`%s`" % a.model)
    pb, pbg = load_stubs()
    import grpc
    import httpx2 as httpx

    procs, inproc = [], None
    try:
        eport, gport = free_port(), free_port()
        env = dict(os.environ)
        env.pop("QNEXT_TEST_FORCED_OUTPUT", None)
        eng = subprocess.Popen([os.path.join(a.bin, "qnext-engine"), "--model", a.model, "--listen",
                                "127.0.0.1:%d" % eport] + a.engine_args, env=env, stderr=subprocess.DEVNULL)
        procs.append(eng)
        wait_port(eport, timeout=600)
        gw_argv = [os.path.join(a.bin, "qnext-gateway"), "--engine", "127.0.0.1:%d" % eport, "--host", "127.0.0.1",
                   "--port", str(gport)] + (["--api-key", a.api_key] if a.api_key else [])
        gwp = subprocess.Popen(gw_argv, stderr=subprocess.DEVNULL)
        procs.append(gwp)
        wait_port(gport)
        if "in-process" in paths:
            inproc = InProc([os.path.join(a.bin, "serve_inproc"), "--model", a.model] +
                            [x for x in a.engine_args if x])
        url = "http://127.0.0.1:%d" % gport
        headers = {"Authorization": "Bearer " + a.api_key} if a.api_key else {}

        async def bench():
            runs, loads = [], []
            async with grpc.aio.insecure_channel("127.0.0.1:%d" % eport) as ch, \
                    httpx.AsyncClient(base_url=url, headers=headers, timeout=3600,
                                      limits=httpx.Limits(max_connections=256)) as hc:
                stub = pbg.GeneratorStub(ch)
                for _ in range(600):  # model load
                    try:
                        info_m = await stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
                        break
                    except grpc.RpcError:
                        await asyncio.sleep(0.5)
                vocab = info_m.vocab_size
                for _ in range(600):  # the gateway polls the engine before it is ready
                    r = await hc.get("/ready")
                    if r.status_code == 200:
                        break
                    await asyncio.sleep(0.2)
                model = (await hc.get("/v1/models")).json()["data"][0]["id"]
                # warm-up: weights paged in, kernels and connections warm, on every path
                await run_grpc(stub, 2, 16, 4, 999, vocab)
                await run_gateway(hc, model, 2, 16, 4, 998, vocab)
                if inproc:
                    inproc.run(2, 16, 4, 997)
                for rnd in range(a.rounds):
                    with open("/proc/loadavg") as f:
                        loads.append(float(f.read().split()[0]))
                    for ci, c in enumerate(a.concurrency):
                        order = paths[(rnd + ci) % len(paths):] + paths[:(rnd + ci) % len(paths)]
                        seed = 1000 * (rnd + 1) + c
                        for path in order:
                            e0, g0, s0 = proc_cpu(eng.pid), proc_cpu(gwp.pid), self_cpu()
                            if path == "in-process":
                                res = inproc.run(c, a.prompt_len, a.gen_len, seed)
                                res["server_cpu_s"] = res["cpu_s"]
                            elif path == "gRPC":
                                res = await run_grpc(stub, c, a.prompt_len, a.gen_len, seed, vocab)
                                res["server_cpu_s"] = proc_cpu(eng.pid) - e0
                                res["client_cpu_s"] = self_cpu() - s0
                            else:
                                res = await run_gateway(hc, model, c, a.prompt_len, a.gen_len, seed, vocab)
                                res["server_cpu_s"] = proc_cpu(eng.pid) - e0
                                res["gateway_cpu_s"] = proc_cpu(gwp.pid) - g0
                                res["client_cpu_s"] = self_cpu() - s0
                            res["round"] = rnd
                            runs.append(res)
                            print("round %d, %d streams, %-10s decode %7.2f tok/s, %d tokens, %.1f s" % (
                                rnd + 1, c, path, res["decode_tps"], res["tokens"], res["wall_s"]),
                                file=sys.stderr, flush=True)
                return runs, loads, model

        runs, loads, model = asyncio.run(bench())
        if "gateway" in paths and a.wrk_runs > 0:
            info["wrk"] = [w for w in (wrk_models(url, a.api_key, a.wrk_seconds) for _ in range(a.wrk_runs)) if w]
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"runs": runs, "loads": loads, "args": vars(a)}, f)
        report(a, runs, loads, info)
    finally:
        if inproc:
            inproc.close()
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
