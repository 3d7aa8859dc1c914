#!/usr/bin/env python3
"""Single-thread encode throughput of Hugging Face `tokenizers` on the same corpus as
bench_tokenizer.c (tests/fixtures/tokenizer/corpus.jsonl), for bench/RESULTS.md.

    python bench/tokenizer/bench_hf.py [--tokenizer PATH] [--corpus FILE.jsonl] [--runs N] [--repeat R]

One thread: RAYON_NUM_THREADS=1 and TOKENIZERS_PARALLELISM=false are set before tokenizers is
imported. Three ways are timed, each after an untimed warm-up pass (HF's word cache is warm, as the C
tokenizer's caches are):
  encode_batch_fast  one call per pass with all strings, no offsets (HF's fastest path, where the
                     installed version has it): the fairest comparison
  encode_batch       the same with offsets (HF's usual Encoding objects)
  encode             one Python call per string (adds per-call Python overhead)
Special-token text is matched (HF's default), as bench_tokenizer does by default. Each pass is
timed by wall clock and by process CPU time (steadier on a shared, busy machine).
Needs the `tokenizers` package (scripts/requirements-dev.txt).
"""
import argparse
import json
import os
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

from tokenizers import Tokenizer  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def load_texts(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            t = r.get("t")
            if t is None:
                continue
            out.append(bytes.fromhex(t["hex"]).decode("utf-8") if isinstance(t, dict) else t)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "tests/fixtures/tokenizer/tokenizer.json"))
    ap.add_argument("--corpus", default=os.path.join(ROOT, "tests/fixtures/tokenizer/corpus.jsonl"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    tok = Tokenizer.from_file(a.tokenizer)
    texts = load_texts(a.corpus)
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    work = texts * a.repeat
    t = time.perf_counter()
    n_tokens = sum(len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False))  # warm-up
    t = time.perf_counter() - t
    print(f"corpus: {a.corpus}: {len(texts)} strings, {nbytes} bytes, x{a.repeat} per pass; {n_tokens} tokens")
    print(f"cold pass (fresh tokenizer, encode_batch, x1): {t:.3f} s  {nbytes / t / 1e6:.2f} MB/s")
    best, best_cpu = {}, {}
    names = (["encode_batch_fast"] if hasattr(tok, "encode_batch_fast") else []) + ["encode_batch", "encode"]
    for name in names:
        for r in range(a.runs):
            t, c = time.perf_counter(), time.process_time()
            if name == "encode_batch_fast":
                tok.encode_batch_fast(work, add_special_tokens=False)
            elif name == "encode_batch":
                tok.encode_batch(work, add_special_tokens=False)
            else:
                for s in work:
                    tok.encode(s, add_special_tokens=False)
            t, c = time.perf_counter() - t, time.process_time() - c
            mbs, mbc = nbytes * a.repeat / t / 1e6, nbytes * a.repeat / c / 1e6
            print(f"{name} pass {r + 1}: {t:.3f} s  {mbs:.2f} MB/s  {n_tokens * a.repeat / t:.0f} tokens/s  (cpu {c:.3f} s: {mbc:.2f} MB/s)")
            best[name] = max(best.get(name, 0), mbs)
            best_cpu[name] = max(best_cpu.get(name, 0), mbc)
    print("best wall: " + ", ".join(f"{k} {v:.2f} MB/s" for k, v in best.items()))
    print("best per CPU second: " + ", ".join(f"{k} {v:.2f} MB/s" for k, v in best_cpu.items()))


if __name__ == "__main__":
    main()
