"""Every error status the gateway produces, in OpenAI's error shape, through the SDK and raw HTTP.

Each error response must be JSON (`Content-Type: application/json`, else the SDK returns a string)
with {"error": {"message", "type", "param", "code"}}; 429 and 503 carry Retry-After. Errors after
SSE headers went out arrive as a `data: {"error": ...}` event, then the stream ends (no [DONE]).
"""
from gw_fixtures import *  # noqa: F401,F403


def user(text):
    return [{"role": "user", "content": text}]


def check_error(r, status, param=None, code=None, type_=None):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/json"
    e = r.json()["error"]
    assert set(e) == {"message", "type", "param", "code"}
    assert isinstance(e["message"], str) and e["message"]
    if param is not None:
        assert e["param"] == param, e
    if code is not None:
        assert e["code"] == code, e
    if type_ is not None:
        assert e["type"] == type_, e
    return e


# ==== 400 ======================================================================================

def test_400_unsupported_fields_name_the_param(gw, model):
    c = gw.client()
    cases = [
        (dict(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}), "response_format"),
        (dict(response_format={"type": "json_object"}), "response_format"),
        (dict(tool_choice="required", tools=[{"type": "function", "function": {"name": "f"}}]), "tool_choice"),
        (dict(tool_choice={"type": "function", "function": {"name": "f"}},
              tools=[{"type": "function", "function": {"name": "f"}}]), "tool_choice"),
        (dict(functions=[{"name": "f"}]), "functions"),
        (dict(modalities=["text", "audio"]), "modalities"),
        (dict(reasoning_effort="low"), "reasoning_effort"),
        (dict(extra_body={"frobnicate": 1}), "frobnicate"),
        (dict(n=129), "n"),
        (dict(temperature=2.5), "temperature"),
        (dict(top_logprobs=3), "top_logprobs"),
        (dict(stop=["a", "b", "c", "d", "e"]), "stop"),
        (dict(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]),
         "messages[0].content[0].type"),
    ]
    for kw, param in cases:
        kw.setdefault("messages", user("hi"))
        with pytest.raises(openai.BadRequestError) as ei:
            c.chat.completions.create(model=model, **kw)
        assert ei.value.status_code == 400
        assert ei.value.body["param"] == param, (kw, ei.value.body)
        assert ei.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as ei:
        c.completions.create(model=model, prompt="x", suffix="tail")
    assert ei.value.body["param"] == "suffix"
    with pytest.raises(openai.BadRequestError) as ei:
        c.completions.create(model=model, prompt="x", best_of=3)
    assert ei.value.body["param"] == "best_of"


def test_400_malformed_bodies(gw):
    with gw.http() as h:
        for body in [b"", b"{", b"[]", b'{"model": "m", "messages": [}', b"\xff\xfe", b'{"model":"m"} trailing']:
            r = h.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
            check_error(r, 400, type_="invalid_request_error")
        r = h.post("/v1/completions", json={"model": "x"})
        check_error(r, 400, param="prompt")


# ==== 401 ======================================================================================

def test_401_auth(gw, model):
    with pytest.raises(openai.AuthenticationError) as ei:
        gw.client(key="sk-wrong").chat.completions.create(model=model, messages=user("hi"))
    assert ei.value.body["code"] == "invalid_api_key"
    with httpx.Client(base_url=gw.url, timeout=10) as h:
        e = check_error(h.get("/v1/models"), 401, code="invalid_api_key")
        assert "didn't provide an API key" in e["message"]
        check_error(h.get("/v1/models", headers={"Authorization": "Basic " + API_KEY}), 401)
        check_error(h.get("/v1/models", headers={"Authorization": "Bearer " + API_KEY + "x"}), 401)
        check_error(h.get("/v1/unknown"), 401)  # all of /v1 is guarded, known route or not
        r = h.get("/v1/models", headers={"Authorization": "bearer  " + API_KEY})
        assert r.status_code == 200
        assert h.get("/health").status_code == 200  # open
        assert h.get("/ready").status_code == 200
        assert h.get("/metrics").status_code == 200
        assert h.get("/openapi.json").status_code == 200
    assert API_KEY not in gw.proc.log(), "keys are never logged"


def test_metrics_require_key(fake):
    g = start_gateway([fake.target], args=["--metrics-require-key"])
    try:
        with httpx.Client(base_url=g.url, timeout=10) as h:
            check_error(h.get("/metrics"), 401)
            assert h.get("/metrics", headers={"Authorization": "Bearer " + API_KEY}).status_code == 200
    finally:
        g.stop()


def test_no_keys_means_open(fake):
    g = start_gateway([fake.target], api_keys=())
    try:
        with httpx.Client(base_url=g.url, timeout=10) as h:
            assert h.get("/v1/models").status_code == 200
    finally:
        g.stop()


# ==== 404 / 405 ================================================================================

def test_404_and_405(gw, model):
    c = gw.client()
    with pytest.raises(openai.NotFoundError) as ei:
        c.chat.completions.create(model="no-such-model", messages=user("hi"))
    assert ei.value.body["code"] == "model_not_found" and ei.value.body["param"] == "model"
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("no-such-model")
    with gw.http() as h:
        check_error(h.get("/v1/nothing"), 404, code="not_found")
        check_error(h.get("/nothing/at/all"), 404)
        check_error(h.post("/"), 404)
        r = h.get("/v1/chat/completions")
        check_error(r, 405)
        assert r.headers["allow"] == "POST"
        check_error(h.post("/v1/models"), 405)


# ==== 413 ======================================================================================

def test_413_body_limit(fake):
    g = start_gateway([fake.target], args=["--max-body-bytes", "4096"])
    try:
        big = {"model": FAKE_MODEL, "messages": user("x" * 6000)}
        with g.http() as h:
            check_error(h.post("/v1/chat/completions", json=big), 413, code="request_too_large")
            assert h.post("/v1/chat/completions", json={"model": FAKE_MODEL, "messages": user("hi")}).status_code == 200
        # HTTP/2 (prior knowledge): the same clean JSON 413
        r = curl("--http2-prior-knowledge", "-o", "-", "-w", "\n%{http_code} %{http_version}", "-H",
                 "Authorization: Bearer " + API_KEY, "-H", "Content-Type: application/json",
                 "--data-binary", json.dumps(big), g.url + "/v1/chat/completions")
        body, _, status = r.stdout.decode().rpartition("\n")
        assert status == "413 2", status
        assert json.loads(body)["error"]["code"] == "request_too_large"
    finally:
        g.stop()


# ==== 429 ======================================================================================

def test_429_engine_exhausted(fgw):
    with fgw.http() as h:
        r = h.post("/v1/chat/completions", json={"model": FAKE_MODEL, "messages": user("@@fake:exhausted ms=1500")})
        check_error(r, 429, code="rate_limit_exceeded")
        assert r.headers["retry-after"] == "2"  # from the engine's retry-after-ms, rounded up
        r = h.post("/v1/chat/completions",
                   json={"model": FAKE_MODEL, "messages": user("@@fake:exhausted"), "stream": True})
        check_error(r, 429)  # streaming requests too: the status comes before any SSE byte
    with pytest.raises(openai.RateLimitError):
        fgw.client().chat.completions.create(model=FAKE_MODEL, messages=user("@@fake:exhausted"))
    # the engine is used again right away (it answers for itself)
    r = fgw.client().chat.completions.create(model=FAKE_MODEL, messages=user("hi"))
    assert r.choices[0].finish_reason == "stop"


def test_429_gateway_concurrency_limit(fake):
    g = start_gateway([fake.target], args=["--max-concurrent-requests", "1"])
    try:
        with g.http() as h:
            with h.stream("POST", "/v1/chat/completions", json={
                    "model": FAKE_MODEL, "messages": user("@@fake:slow n=40 delay=0.05"), "stream": True}) as s:
                lines = s.iter_lines()
                next(lines)
                r = h.post("/v1/chat/completions", json={"model": FAKE_MODEL, "messages": user("hi")})
                check_error(r, 429, code="rate_limit_exceeded")
                assert int(r.headers["retry-after"]) >= 1
                for _ in lines:
                    pass
            # the slot is free again
            assert h.post("/v1/chat/completions", json={"model": FAKE_MODEL, "messages": user("hi")}).status_code == 200
    finally:
        g.stop()


# ==== 500 / 504 ================================================================================

def test_500_engine_failures(fgw):
    with fgw.http() as h:
        for marker, text in [("final_error", "model exploded"), ("bad_choice", "choice"),
                             ("no_final", "before choice 0 finished"), ("error_mid", "boom")]:
            r = h.post("/v1/chat/completions", json={"model": FAKE_MODEL, "messages": user("@@fake:" + marker)})
            e = check_error(r, 500, type_="server_error")
            assert text in e["message"], (marker, e)
    with pytest.raises(openai.InternalServerError):
        fgw.client().chat.completions.create(model=FAKE_MODEL, messages=user("@@fake:final_error"))


def test_504_deadline(fake):
    g = start_gateway([fake.target], args=["--request-timeout", "0.5"])
    try:
        with g.http() as h:
            r = h.post("/v1/chat/completions", json={"model": FAKE_MODEL, "messages": user("@@fake:silent secs=3")})
            check_error(r, 504, code="timeout")
    finally:
        g.stop()
    fake.wait_stats(lambda s: s["active"] == 0)


# ==== errors after the SSE headers ==============================================================

def test_error_event_mid_stream(fgw):
    with fgw.http() as h:
        r = h.post("/v1/chat/completions",
                   json={"model": FAKE_MODEL, "messages": user("@@fake:error_mid"), "stream": True})
        assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
        ev = sse_events(r.text)
        assert json.loads(ev[1])["choices"][0]["delta"]["content"] == "Hello"
        err = json.loads(ev[-1])["error"]
        assert "boom" in err["message"] and err["type"] == "server_error"
        assert "[DONE]" not in ev
    s = fgw.client().chat.completions.create(model=FAKE_MODEL, messages=user("@@fake:error_mid"), stream=True)
    with pytest.raises(openai.APIError) as ei:
        for _ in s:
            pass
    assert "boom" in str(ei.value)


# ==== 503 ======================================================================================

def test_503_engine_unavailable_status(fgw):
    with fgw.http() as h:
        r = h.post("/v1/chat/completions", json={"model": FAKE_MODEL, "messages": user("@@fake:unavailable")})
        check_error(r, 503, code="service_unavailable")
        assert int(r.headers["retry-after"]) >= 1
        r = h.post("/v1/chat/completions", json={"model": FAKE_MODEL, "messages": user("@@fake:invalid")})
        check_error(r, 400)


def test_503_engine_down_then_back(tmp_path):
    eng = FakeEngine()
    g = start_gateway([eng.target])
    try:
        c = g.client()
        assert c.chat.completions.create(model=FAKE_MODEL, messages=user("hi")).choices[0].finish_reason == "stop"
        eng.stop()
        with g.http() as h:
            t_end = time.time() + 10
            while h.get("/ready").status_code != 503 and time.time() < t_end:
                time.sleep(0.05)
            check_error(h.get("/ready"), 503)
            r = h.post("/v1/chat/completions", json={"model": FAKE_MODEL, "messages": user("hi")})
            check_error(r, 503, code="service_unavailable")
            assert "retry-after" in r.headers
            with pytest.raises(openai.InternalServerError) as ei:
                c.chat.completions.create(model=FAKE_MODEL, messages=user("hi"))
            assert ei.value.status_code == 503
            eng.start()  # same port
            t0 = time.time()
            g.wait_ready(timeout=15)
            r = c.chat.completions.create(model=FAKE_MODEL, messages=user("hi"))
            assert r.choices[0].finish_reason == "stop"
            assert time.time() - t0 < 10
    finally:
        g.stop()
        eng.stop()


def test_two_engines_failover_and_balance():
    a, b = FakeEngine(), FakeEngine()
    g = start_gateway([a.target, b.target])
    try:
        c = g.client()
        for _ in range(6):
            c.chat.completions.create(model=FAKE_MODEL, messages=user("hi"))
        sa, sb = a.stats()["requests"], b.stats()["requests"]
        assert sa >= 1 and sb >= 1, (sa, sb)  # both used
        a.stop()
        for _ in range(4):  # no 5xx while one engine is left, even before the poller notices
            assert c.chat.completions.create(model=FAKE_MODEL, messages=user("hi")).choices[0].finish_reason == "stop"
    finally:
        g.stop()
        a.stop()
        b.stop()
