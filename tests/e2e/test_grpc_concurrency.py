"""100 concurrent Generate streams against one qnext-engine: every stream completes, and each
produces exactly the tokens it produces when run alone (greedy decoding, ignore_eos)."""
import threading
import time

import grpc

from grpc_harness import *  # noqa: F401,F403

N_STREAMS = 100


def request(i):
    r = gen_request(f"concurrent prompt number {i}: tell me something", max_tokens=8 + i % 5, ignore_eos=True,
                    request_id=f"conc-{i}")
    r.sampling.temperature = 0
    return r


def test_100_concurrent_streams_match_solo_runs(engine):
    solo = {}
    for i in range(0, N_STREAMS, 10):  # a sample of solo runs first, one at a time
        out, _ = collect(engine.stub.Generate(request(i), timeout=60))
        solo[i] = out[0]["tokens"]
    assert engine.wait_idle().active_streams == 0

    results, errors = {}, {}
    barrier = threading.Barrier(N_STREAMS)

    def worker(i):
        try:
            barrier.wait(timeout=30)
            out, ids = collect(engine.stub.Generate(request(i), timeout=120))
            assert ids == {f"conc-{i}"}
            results[i] = (out[0]["tokens"], out[0]["final"].finish_reason)
        except Exception as e:  # noqa: BLE001 - reported below
            errors[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(N_STREAMS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not errors, f"{len(errors)} streams failed, e.g. {next(iter(errors.items()))}"
    assert len(results) == N_STREAMS
    for i, (tokens, finish) in results.items():
        assert finish == pb().FINISH_REASON_LENGTH
        assert len(tokens) == 8 + i % 5
    for i, tokens in solo.items():
        assert results[i][0] == tokens, f"stream {i} differs under concurrency"
    # a second solo round for the rest confirms every stream, not only the sample
    for i in range(N_STREAMS):
        if i in solo:
            continue
        out, _ = collect(engine.stub.Generate(request(i), timeout=60))
        assert results[i][0] == out[0]["tokens"], f"stream {i} differs under concurrency"
    l = engine.wait_idle()
    assert l.running == 0 and l.active_streams == 0


def test_fast_engine_slow_reader_coalesced(fake_engine):
    """When the engine produces tokens faster than the client takes them, the server merges the
    deltas queued behind the send in flight into one message: fewer, larger messages, yet every
    token and every byte of text arrives, in order."""
    e = fake_engine(env={"QNEXT_FAKE_STEP_MS": "0"})
    req = gen_request("coalesce", max_tokens=2000, ignore_eos=True)
    req.sampling.temperature = 0
    eager, _ = collect(e.stub.Generate(req, timeout=60))
    assert len(eager[0]["tokens"]) == 2000
    stream = e.stub.Generate(req, timeout=60)
    first = next(stream)
    time.sleep(1.0)  # the engine finishes meanwhile
    rest, _ = collect(stream)
    tokens = list(first.delta.token_ids) + rest[0]["tokens"]
    assert tokens == eager[0]["tokens"]
    assert first.delta.text + rest[0]["text"] == eager[0]["text"]
    assert 1 + rest[0]["deltas"] < 2000  # merged, not one message per token
