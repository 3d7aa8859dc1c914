"""Operations: client disconnects cancel the engine call, SSE heartbeats, HTTP/2 and TLS, load
(200 concurrent streams, memory back near baseline), wrk, schemathesis, metrics, graceful
shutdown, key reload on SIGHUP, and the OpenAPI document.
"""
import asyncio
import re
import shutil
import socket

from gw_fixtures import *  # noqa: F401,F403


def user(text):
    return [{"role": "user", "content": text}]


def chat_body(text, **kw):
    b = {"model": FAKE_MODEL, "messages": user(text)}
    b.update(kw)
    return json.dumps(b).encode()


def raw_request(port, body, path="/v1/chat/completions"):
    """An HTTP/1.1 request on a plain socket (so the test controls exactly when it disconnects)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % (path.encode(), API_KEY.encode(), len(body)) + body)
    return s


def read_until(s, token, timeout=10):
    s.settimeout(timeout)
    buf = b""
    while token not in buf:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    return buf


# ==== disconnects ==============================================================================

def test_disconnect_mid_stream_cancels_upstream(fgw, fake):
    before = fake.stats()
    s = raw_request(fgw.port, chat_body("@@fake:slow n=400 delay=0.02", stream=True))
    got = read_until(s, b'"content":" the"')
    assert b"HTTP/1.1 200" in got and b"text/event-stream" in got
    fake.wait_stats(lambda st: st["active"] == before["active"] + 1, timeout=5)
    s.close()
    st = fake.wait_stats(lambda st: st["cancelled"] >= before["cancelled"] + 1, timeout=5)
    assert st["active"] == before["active"]


def test_disconnect_during_silent_prefill_http1(fgw, fake):
    """HTTP/1.1 disconnects are only seen on write: the SSE heartbeats make that happen."""
    before = fake.stats()
    s = raw_request(fgw.port, chat_body("@@fake:silent secs=30", stream=True))
    got = read_until(s, b": ping\n\n", timeout=5)  # --sse-ping-interval 0.3 in the fixtures
    assert b"HTTP/1.1 200" in got
    t0 = time.time()
    s.close()
    fake.wait_stats(lambda st: st["cancelled"] >= before["cancelled"] + 1, timeout=10)
    assert time.time() - t0 < 10  # seen within a few heartbeats (the prefill would last 30 s)


def test_disconnect_http2(fgw, fake):
    before = fake.stats()
    r = curl("--http2-prior-knowledge", "-N", "--max-time", "1", "-H", "Authorization: Bearer " + API_KEY,
             "-H", "Content-Type: application/json", "--data-binary", chat_body("@@fake:silent secs=30", stream=True),
             fgw.url + "/v1/chat/completions")
    assert r.returncode == 28  # curl's timeout: it hung up
    fake.wait_stats(lambda st: st["cancelled"] >= before["cancelled"] + 1, timeout=5)


def test_http2_streaming(fgw):
    r = curl("--http2-prior-knowledge", "-N", "-i", "-H", "Authorization: Bearer " + API_KEY, "-H",
             "Content-Type: application/json", "--data-binary",
             chat_body("hi", stream=True, stream_options={"include_usage": True}), fgw.url + "/v1/chat/completions")
    out = r.stdout.decode()
    assert out.startswith("HTTP/2 200")
    ev = sse_events(out.split("\r\n\r\n", 1)[1])
    assert ev[-1] == "[DONE]"
    assert json.loads(ev[-2])["usage"]["completion_tokens"] == 8


def test_heartbeats_do_not_disturb_the_sdk(fgw):
    chunks = list(fgw.client().chat.completions.create(model=FAKE_MODEL, messages=user("@@fake:silent secs=1"),
                                                       stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "late"


# ==== TLS ======================================================================================

def test_tls(fake):
    # a self-signed test certificate for localhost / 127.0.0.1, valid until 2126 (test use only)
    here = os.path.dirname(os.path.abspath(__file__))
    cert, key = os.path.join(here, "gw_tls_cert.pem"), os.path.join(here, "gw_tls_key.pem")
    g = start_gateway([fake.target], args=["--tls-cert", cert, "--tls-key", key], scheme="https")
    try:
        c = g.client(http_client=httpx.Client(verify=False))
        r = c.chat.completions.create(model=FAKE_MODEL, messages=user("hi"))
        assert r.choices[0].message.content == "Hello from the fake engine. How are"
        r = curl("-k", "--http2", "-o", "/dev/null", "-w", "%{http_version}", g.url + "/health")
        assert r.stdout == b"2"  # h2 via ALPN
    finally:
        g.stop()


# ==== load =====================================================================================

def test_200_concurrent_streams_and_memory(fake):
    g = start_gateway([fake.target], args=["--max-concurrent-requests", "150"])
    try:
        async def run(n, text):
            c = g.aclient(http_client=httpx.AsyncClient(limits=httpx.Limits(max_connections=400), timeout=60))
            async def one():
                try:
                    s = await c.chat.completions.create(model=FAKE_MODEL, messages=user(text), stream=True)
                    content, fin = "", None
                    async for ch in s:
                        for x in ch.choices:
                            content += x.delta.content or ""
                            fin = x.finish_reason or fin
                    return ("ok", content, fin)
                except openai.RateLimitError as e:
                    return ("429", e.response.headers.get("retry-after"), None)
                except openai.APIError as e:
                    return ("error", repr(e), repr(e.__cause__))
            res = await asyncio.gather(*[one() for _ in range(n)])
            await c.close()
            return res

        warm = asyncio.run(run(20, "@@fake:slow n=5 delay=0.01"))
        assert all(r[0] == "ok" for r in warm)
        time.sleep(0.3)
        base = g.rss_kib()
        res = asyncio.run(run(200, "@@fake:slow n=20 delay=0.05"))
        ok = [r for r in res if r[0] == "ok"]
        limited = [r for r in res if r[0] == "429"]
        assert len(ok) + len(limited) == 200, ([r for r in res if r[0] == "error"][:3], g.proc.alive(), g.proc.log())
        assert len(ok) >= 150
        expected = "".join(["Hello", " from", " the", " fake", " engine", ".", " How", " are", " you", "?"] * 2)
        assert all(r[1] == expected and r[2] == "stop" for r in ok)
        assert all(r[1] and int(r[1]) >= 1 for r in limited)  # clean 429s with Retry-After
        time.sleep(0.5)
        after = g.rss_kib()
        with g.http() as h:
            m = h.get("/metrics").text
        assert "qnext_gateway_requests_running 0" in m
        assert after - base < 32 * 1024, (base, after)  # KiB: back near the baseline
        assert g.proc.alive()
    finally:
        g.stop()
    fake.wait_stats(lambda s: s["active"] == 0)


def test_wrk_models(gw):
    wrk = shutil.which("wrk")
    assert wrk, "wrk is required (apt package wrk)"
    r = subprocess.run([wrk, "-t2", "-c32", "-d2s", "-H", "Authorization: Bearer " + API_KEY, gw.url + "/v1/models"],
                       capture_output=True, timeout=30)
    out = r.stdout.decode()
    assert r.returncode == 0, out
    assert "Non-2xx" not in out and "Socket errors" not in out, out
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    assert rps > 1000, out
    print("\nwrk /v1/models: %.0f requests/s" % rps)


# ==== schemathesis =============================================================================

def test_schemathesis(fgw, tmp_path):
    """Property-based requests from /openapi.json: no 5xx, documented statuses, content types and
    response shapes, invalid data rejected, auth enforced. positive_data_acceptance is left out: the
    cross-field rules (top_logprobs needs logprobs, echo excludes logprobs) are 400s that
    OpenAPI 3.0 cannot express."""
    with fgw.http() as h:
        doc = h.get("/openapi.json").json()
    for n in ("ChatCompletionRequest", "CompletionRequest"):  # let requests reach the engine
        doc["components"]["schemas"][n]["properties"]["model"] = {"type": "string", "enum": [FAKE_MODEL]}
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(doc))
    st = os.path.join(os.path.dirname(sys.executable), "schemathesis")
    r = subprocess.run([st, "run", str(path), "--url", fgw.url, "-H", "Authorization: Bearer " + API_KEY,
                        "--checks", "all", "--exclude-checks", "positive_data_acceptance", "-n", "10",
                        "--max-time", "20", "--seed", "1", "--no-color", "--generation-database", "none",
                        "--workers", "2"], capture_output=True, timeout=120, cwd=str(tmp_path))
    out = r.stdout.decode() + r.stderr.decode()
    assert r.returncode == 0, out[-6000:]
    assert fgw.proc.alive()


def test_openapi_document_matches_generator(gw):
    with gw.http() as h:
        served = h.get("/openapi.json")
    assert served.headers["content-type"] == "application/json"
    gen = subprocess.run([sys.executable, os.path.join(REPO, "rest_gateway", "openapi_gen.py")], capture_output=True,
                         check=True)
    assert served.json() == json.loads(gen.stdout)
    assert set(served.json()["paths"]) >= {"/v1/chat/completions", "/v1/completions", "/v1/models",
                                           "/v1/models/{model}", "/health", "/ready", "/metrics"}


# ==== metrics ==================================================================================

def parse_metrics(text):
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$", line)
        assert m, "bad exposition line: %r" % line
        samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return samples


def test_metrics(fake):
    g = start_gateway([fake.target])
    try:
        c = g.client()
        c.chat.completions.create(model=FAKE_MODEL, messages=user("hi"))
        list(c.chat.completions.create(model=FAKE_MODEL, messages=user("hi"), stream=True, max_tokens=3))
        with pytest.raises(openai.BadRequestError):
            c.chat.completions.create(model=FAKE_MODEL, messages=user("hi"), n=0)
        with g.http() as h:
            r = h.get("/metrics")
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        m = parse_metrics(r.text)
        lbl = '{model_name="%s"}' % FAKE_MODEL
        assert m["vllm:generation_tokens_total" + lbl] == 8 + 3
        assert m["vllm:prompt_tokens_total" + lbl] == 4 + 4
        assert m['vllm:request_success_total{model_name="%s",finished_reason="stop"}' % FAKE_MODEL] == 1
        assert m['vllm:request_success_total{model_name="%s",finished_reason="length"}' % FAKE_MODEL] == 1
        assert m["vllm:time_to_first_token_seconds_count" + lbl] == 2
        assert m["vllm:e2e_request_latency_seconds_count" + lbl] == 2
        assert m["vllm:inter_token_latency_seconds_count" + lbl] == 7 + 2
        assert m['http_requests_total{handler="/v1/chat/completions",method="POST",status="200"}'] == 2
        assert m['http_requests_total{handler="/v1/chat/completions",method="POST",status="400"}'] == 1
        eng = '{model_name="%s",engine="%s"}' % (FAKE_MODEL, fake.target)
        assert m["qnext_gateway_engine_up" + eng] == 1
        assert m["vllm:num_requests_running" + eng] >= 0
        assert 0 <= m["vllm:kv_cache_usage_perc" + eng] <= 1
    finally:
        g.stop()


# ==== lifecycle ================================================================================

def test_sigterm_drains_in_flight_requests(fake):
    g = start_gateway([fake.target], args=["--shutdown-timeout", "10"])
    with g.http() as h:
        with h.stream("POST", "/v1/chat/completions",
                      json={"model": FAKE_MODEL, "messages": user("@@fake:slow n=100 delay=0.05"), "stream": True}) as s:
            lines = s.iter_lines()
            next(lines)
            g.proc.signal(signal.SIGTERM)
            # new connections are refused while the stream (5 s) finishes; on a loaded machine the
            # gateway may take a moment to close its listeners, so poll instead of one fixed sleep
            t_end = time.time() + 4
            refused = False
            while not refused and time.time() < t_end:
                try:
                    httpx.get(g.url + "/health", timeout=2)
                    time.sleep(0.05)
                except httpx.ConnectError:
                    refused = True
            assert refused, "the gateway still accepts connections 4 s after SIGTERM"
            assert g.proc.alive(), "the gateway must not exit while a stream is in flight"
            rest = "\n".join(lines)
    assert rest.rstrip().endswith("data: [DONE]")
    assert '"finish_reason":"stop"' in rest
    assert g.proc.wait(timeout=10) == 0
    g.stop()


def test_sigterm_with_timeout_cancels(fake):
    before = fake.stats()
    g = start_gateway([fake.target], args=["--shutdown-timeout", "0.5"])
    s = raw_request(g.port, chat_body("@@fake:slow n=1000 delay=0.02", stream=True))
    read_until(s, b'"content":" the"')
    t0 = time.time()
    g.proc.signal(signal.SIGTERM)
    assert g.proc.wait(timeout=15) == 0
    assert time.time() - t0 < 10  # the 0.5 s shutdown timeout, not the 20 s stream (slack for a loaded machine)
    tail = read_until(s, b"\n\n\x00never", timeout=5)  # to EOF
    assert b'"error"' in tail and b"[DONE]" not in tail  # the client learns the stream was cut
    s.close()
    fake.wait_stats(lambda st: st["cancelled"] >= before["cancelled"] + 1)
    g.stop()


def test_sighup_reloads_keys_file(fake, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("# rotated by ops\nsk-old\n")
    g = start_gateway([fake.target], args=["--api-keys-file", str(keys)], api_keys=())
    try:
        assert g.client(key="sk-old").models.list()
        with pytest.raises(openai.AuthenticationError):
            g.client(key="sk-new").models.list()
        keys.write_text("sk-new\n")
        g.proc.signal(signal.SIGHUP)
        t_end = time.time() + 5
        while time.time() < t_end:
            try:
                g.client(key="sk-new").models.list()
                break
            except openai.AuthenticationError:
                time.sleep(0.05)
        assert g.client(key="sk-new").models.list()
        with pytest.raises(openai.AuthenticationError):
            g.client(key="sk-old").models.list()
        assert "reloaded" in g.proc.log() and "sk-new" not in g.proc.log()
    finally:
        g.stop()


def test_help_and_bad_flags():
    from conftest import bin_path
    r = subprocess.run([bin_path("qnext-gateway"), "--help"], capture_output=True, timeout=10)
    assert r.returncode == 0 and b"--engine HOST:PORT" in r.stdout and b"QNEXT_API_KEYS_FILE" in r.stdout
    r = subprocess.run([bin_path("qnext-gateway")], capture_output=True, timeout=10)
    assert r.returncode == 2 and b"no engine given" in r.stderr
    r = subprocess.run([bin_path("qnext-gateway"), "--engine", "x:1", "--api-keys-file", "/nonexistent"],
                       capture_output=True, timeout=10)
    assert r.returncode == 1 and b"/nonexistent" in r.stderr
