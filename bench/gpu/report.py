#!/usr/bin/env python3
"""bench/gpu/report.py OUT - turns the GPU check's stage outputs in OUT (env.txt, stages.tsv,
ops*.json, golden*.json, engine*.json, bench_*.json, hf.json; see run.sh) into OUT/gpu_results.md (a section
ready for bench/RESULTS.md) and OUT/gpu_results.json (everything, machine-readable). Standard
library only; missing or broken inputs are reported as such, never fatal.
"""
import json
import os
import sys


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f), None
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError) as e:
        return None, f"unreadable ({e})"


def load_env(path):
    env = {}
    try:
        with open(path) as f:
            for line in f:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    env[k] = v
    except OSError:
        pass
    return env


def load_stages(path):
    rows = []
    try:
        with open(path) as f:
            for line in f:
                p = line.rstrip("\n").split("\t")
                if len(p) >= 3:
                    rows.append({"stage": p[0], "status": p[1], "seconds": p[2], "log": p[3] if len(p) > 3 else ""})
    except OSError:
        pass
    return rows


def fmt(x, spec=".3g"):
    return "-" if x is None else format(x, spec)


def ops_section(md, name, ops, err):
    if ops is None:
        md.append(f"- {name}: no results ({err})")
        return
    fails = [c for c in ops["checks"] if not c["pass"]]
    md.append(f"- {name}: {ops['n_checks'] - ops['n_failed']} of {ops['n_checks']} checks passed "
              f"({ops['backend']} against {ops['reference']})")
    worst = {}
    for c in ops["checks"]:
        w = worst.get(c["op"])
        if w is None or (c["tol"] > 0 and c["rel_err"] / c["tol"] > w["rel_err"] / max(w["tol"], 1e-30)):
            worst[c["op"]] = c
    md.append("")
    md.append("| op | worst rel err | tol | shape | ms |")
    md.append("|---|---|---|---|---|")
    for op, c in worst.items():
        md.append(f"| {op} | {fmt(c['rel_err'])} | {fmt(c['tol'], '.1g')} | {c['shape']} | {fmt(c['ms'], '.3f')} |")
    if fails:
        md.append("")
        md.append("Failures:")
        for c in fails[:40]:
            md.append(f"- {c['op']} {c['what']} [{c['shape']}]: rel err {fmt(c['rel_err'])} > {fmt(c['tol'], '.1g')}"
                      f"{': ' + c['detail'] if c['detail'] else ''}")
    md.append("")


def golden_section(md, name, g, err):
    if g is None:
        md.append(f"- {name}: no results ({err})")
        return
    md.append(f"- {name} (GEMM path {g['gemm']}, tolerance {g['tol']:g}; the CPU reaches ~2e-6):")
    md.append("")
    md.append("| model | prefill | decode | chunked | greedy = transformers (eager / graphs) | graphs vs eager | ok |")
    md.append("|---|---|---|---|---|---|---|")
    for m in g["models"]:
        md.append(f"| {m['model']} | {fmt(m['prefill_err'], '.2e')} | {fmt(m['decode_err'], '.2e')} | "
                  f"{fmt(m['chunked_err'], '.2e')} | {m['tokens_ok']} / {m['tokens_ok_graph']} of {m['tokens_total']} | "
                  f"{fmt(m['graph_vs_eager'], '.1e')} | {'yes' if m['pass'] else 'NO: ' + m['error']} |")
    md.append("")


def engine_section(md, name, g, err):
    if g is None:
        md.append(f"- {name}: no results ({err})")
        return
    md.append(f"- {name} ({g['requests']} requests x {g['tokens']} greedy tokens, all submitted at once):")
    md.append("")
    md.append("| model | requests equal to the CPU engine | first 8 tokens equal | earliest divergence | steps | "
              "CPU tok/s | GPU tok/s | ok |")
    md.append("|---|---|---|---|---|---|---|---|")
    for m in g["models"]:
        div = "-" if m["first_divergence"] < 0 else f"token {m['first_divergence']}"
        md.append(f"| {m['name']} | {m['equal']}/{g['requests']} | {m['first_equal']}/{g['requests']} | {div} | "
                  f"{m['steps']} | {m['cpu_tok_s']:.0f} | {m['device_tok_s']:.0f} | "
                  f"{'yes' if m['pass'] else 'NO' + (' (' + m['error'] + ')' if m['error'] else '')} |")
    md.append("")


def bench_section(md, b, err, title):
    if b is None:
        md.append(f"- {title}: no results ({err})")
        return
    d = b["decode_b1"]
    md.append(f"**{title}**: {b['gpu']}, {b['dtype'].upper()} weights, {b['layers']} of {b['layers_full']} layers "
              f"({b['weights_gb']:.1f} GB of weights, loaded in {b['load_s']:.0f} s; GPU memory peak "
              f"{b['gpu_mem_peak_gb']:.1f} of {b['gpu_mem_budget_gb']:.1f} GB budget; {b['graph_captures']} graph "
              f"captures, {b['graph_replays']} replays)")
    md.append("")
    md.append("| measure | value |")
    md.append("|---|---|")
    md.append(f"| device read bandwidth (measured / theoretical) | {b['read_bw_gbs']:.0f} / {b['peak_bw_gbs']:.0f} GB/s |")
    md.append(f"| bytes read per decoded token (B=1) | {d['bytes_per_token_gb']:.3f} GB |")
    md.append(f"| decode B=1, CUDA graphs | **{d['tok_s']:.1f} tok/s** ({d['ms_per_step']:.3f} ms/step, "
              f"{d['ms_per_layer'] * 1e3:.1f} us/layer) |")
    md.append(f"| bandwidth ceiling at B=1 | {d['ceiling_tok_s']:.1f} tok/s -> **{100 * d['ratio']:.0f}%** reached |")
    md.append(f"| decode B=1, eager (no graphs) | {d['eager_tok_s']:.1f} tok/s |")
    if b["layers"] < b["layers_full"] and d["ms_per_layer"] > 0:
        est = 1e3 / (d["ms_per_layer"] * b["layers_full"])
        md.append(f"| decode B=1 extrapolated to {b['layers_full']} layers (per-layer time x "
                  f"{b['layers_full']}, lm_head counted {b['layers_full'] / b['layers']:.1f}x) | ~{est:.0f} tok/s |")
    for s in b["batched"]:
        md.append(f"| {s['streams']} concurrent streams | **{s['tok_s']:.0f} tok/s** ({s['ms_per_step']:.2f} ms/step; "
                  f"{s['ms_per_step_no_logits']:.2f} ms without lm_head + logits copy) |")
    p = b["prefill"]
    md.append(f"| prefill {p['tokens']} tokens | **{p['tok_s']:.0f} tok/s** ({p['seconds']:.3f} s, "
              f"{p['ms_per_layer']:.2f} ms/layer) |")
    md.append("")


def hf_section(md, hf, herr, bb, berr):
    if hf is None:
        md.append(f"- transformers baseline: no results ({herr})")
        md.append("")
        return
    md.append(f"**transformers baseline** ({hf['transformers']}, torch {hf['torch']}, bf16, {hf['layers']} layers, "
              f"random init; flash-linear-attention {'yes' if hf['fla'] else 'no'}, causal-conv1d "
              f"{'yes' if hf['causal_conv1d'] else 'no'}: without them transformers runs its torch fallbacks)")
    md.append("")
    md.append("| per layer | transformers | qnext (same bf16 config) | speed-up |")
    md.append("|---|---|---|---|")
    q_dec = bb["decode_b1"]["ms_per_layer"] if bb else None
    q_pf = bb["prefill"]["ms_per_layer"] if bb else None
    sp = lambda a, b: f"{a / b:.1f}x" if a and b else "-"
    md.append(f"| decode B=1, ms/layer | {hf['decode_ms_per_layer']:.3f} | {fmt(q_dec, '.4f')} | "
              f"{sp(hf['decode_ms_per_layer'], q_dec)} |")
    md.append(f"| prefill {hf['prefill_tokens']} tokens, ms/layer | {hf['prefill_ms_per_layer']:.2f} | "
              f"{fmt(q_pf, '.2f')} | {sp(hf['prefill_ms_per_layer'], q_pf)} |")
    if bb is None:
        md.append(f"| (qnext bf16 run: {berr}) | | | |")
    md.append("")


def main():
    if len(sys.argv) != 2:
        print("usage: report.py OUT", file=sys.stderr)
        return 2
    out = sys.argv[1]
    env = load_env(os.path.join(out, "env.txt"))
    stages = load_stages(os.path.join(out, "stages.tsv"))
    data, errs = {}, {}
    for k in ["ops", "ops_fp32", "golden", "golden_fp32", "engine", "engine_tp2", "bench_fp8", "bench_bf16", "hf"]:
        data[k], errs[k] = load_json(os.path.join(out, k + ".json"))

    md = []
    md.append(f"## GPU check: CUDA backend on {env.get('gpu', 'unknown GPU')}")
    md.append("")
    md.append(f"- Date {env.get('date_utc', '?')}, commit `{env.get('commit', 'unknown')}` "
              f"({env.get('uncommitted_files', '?')} uncommitted files), host {env.get('host', '?')}")
    md.append(f"- GPU {env.get('gpu', '?')} ({env.get('gpu_memory', '?')}, compute capability "
              f"{env.get('compute_cap', '?')}), driver {env.get('driver', '?')} (CUDA {env.get('cuda_driver_api', '?')}), "
              f"nvcc {env.get('nvcc', '?')}, cmake {env.get('cmake', '?')}, {env.get('cc', '?')}")
    md.append(f"- Host: {env.get('cpu', '?')}, {env.get('cpus', '?')} CPUs, {env.get('host_mem_gb', '?')} GB")
    md.append("- Produced by `bench/gpu/run.sh` (bench/gpu/README.md)")
    md.append("")
    md.append("| stage | status | seconds |")
    md.append("|---|---|---|")
    for s in stages:
        md.append(f"| {s['stage']} | {s['status']} | {s['seconds']} |")
    md.append("")
    md.append("### Ops against the CPU reference")
    md.append("")
    ops_section(md, "split-bf16 tensor-core GEMM path (default)", data["ops"], errs["ops"])
    ops_section(md, "exact fp32 GEMM path (matmul, MoE)", data["ops_fp32"], errs["ops_fp32"])
    md.append("")
    md.append("### Golden fixtures (transformers float32 references)")
    md.append("")
    golden_section(md, "default path", data["golden"], errs["golden"])
    golden_section(md, "fp32 GEMM path, CPU tolerance", data["golden_fp32"], errs["golden_fp32"])
    md.append("")
    md.append("### The engine (eng_* API) against the CPU engine, golden fixtures")
    md.append("")
    engine_section(md, "one GPU", data["engine"], errs["engine"])
    engine_section(md, "tensor parallel 2 over NCCL", data["engine_tp2"], errs["engine_tp2"])
    md.append("")
    md.append("### Full-dimension Qwen3-Next-80B-A3B, random weights")
    md.append("")
    bench_section(md, data["bench_fp8"], errs["bench_fp8"], "FP8")
    hf_section(md, data["hf"], errs["hf"], data["bench_bf16"], errs["bench_bf16"])
    text = "\n".join(md) + "\n"
    with open(os.path.join(out, "gpu_results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "gpu_results.json"), "w") as f:
        json.dump({"env": env, "stages": stages, "results": data, "errors": {k: v for k, v in errs.items() if v}},
                  f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
