#!/usr/bin/env python3
"""bench/gpu/hf_baseline.py - Hugging Face transformers on the same random Qwen3-Next config as
gpu_bench (docs/qwen3-next.md 1.1 dims), fewer layers so bf16 fits next to nothing else: the
baseline of the GPU check's stage 4. Compare per layer with `gpu_bench --dtype bf16 --layers N`.

    python bench/gpu/hf_baseline.py --layers 4 --json out.json [--device cuda] [--tiny]

Measures, in bf16 with random weights (transformers' own initialiser, std 0.02):
  decode   batch 1 greedy `generate` after a 32-token prompt: (t(1 + n new) - t(1 new)) / n, so the
           prompt's prefill cancels out; min_new_tokens forces the length;
  prefill  one forward over a 4096-token prompt (use_cache=False).
Without flash-linear-attention / causal-conv1d installed, transformers runs its torch fallbacks for
the Gated DeltaNet (reported in the JSON): that is what a plain `pip install transformers` gives.
Needs torch + transformers >= 5 (scripts/requirements-dev.txt); no internet, no checkpoint.
"""
import argparse
import importlib.util
import json
import sys
import time


def config_dict(layers, tiny):
    if tiny:
        dims = dict(hidden_size=256, vocab_size=1024, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                    linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=64,
                    linear_value_head_dim=64, num_experts=16, num_experts_per_tok=4, moe_intermediate_size=128,
                    shared_expert_intermediate_size=128)
    else:
        dims = dict(hidden_size=2048, vocab_size=151936, num_attention_heads=16, num_key_value_heads=2, head_dim=256,
                    linear_num_key_heads=16, linear_num_value_heads=32, linear_key_head_dim=128,
                    linear_value_head_dim=128, num_experts=512, num_experts_per_tok=10, moe_intermediate_size=512,
                    shared_expert_intermediate_size=512)
    return dict(model_type="qwen3_next", num_hidden_layers=layers, full_attention_interval=4,
                partial_rotary_factor=0.25, rope_theta=10000000, rope_scaling=None, linear_conv_kernel_dim=4,
                intermediate_size=5120, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
                rms_norm_eps=1e-6, tie_word_embeddings=False, max_position_embeddings=262144, hidden_act="silu",
                initializer_range=0.02, bos_token_id=0, eos_token_id=1, pad_token_id=0, **dims)


def sync(dev):
    import torch
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--prefill", type=int, default=4096)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="small dims (a CPU smoke test of this script)")
    ap.add_argument("--json")
    a = ap.parse_args()

    import torch
    import transformers
    from transformers import Qwen3NextConfig, Qwen3NextForCausalLM

    out = {"transformers": transformers.__version__, "torch": torch.__version__, "layers": a.layers,
           "dtype": "bf16", "device": a.device, "tiny": a.tiny,
           "fla": importlib.util.find_spec("fla") is not None,
           "causal_conv1d": importlib.util.find_spec("causal_conv1d") is not None}
    if a.device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name(0)
    torch.manual_seed(0)
    cfg = Qwen3NextConfig.from_dict(config_dict(a.layers, a.tiny))
    t0 = time.time()
    torch.set_default_dtype(torch.bfloat16)
    with torch.device(a.device):
        model = Qwen3NextForCausalLM(cfg)
    model.eval()
    out["build_s"] = round(time.time() - t0, 2)
    V = cfg.vocab_size
    g = torch.Generator(device="cpu").manual_seed(1)
    ids = torch.randint(0, V, (1, a.prompt), generator=g).to(a.device)

    def gen(n):
        sync(a.device)
        t = time.time()
        with torch.no_grad():
            model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
        sync(a.device)
        return time.time() - t

    gen(2)  # warm-up (kernels, caches)
    t1 = min(gen(1) for _ in range(2))
    tn = gen(1 + a.new)
    dec = (tn - t1) / a.new
    out["decode_tok_s"] = round(1.0 / dec, 3)
    out["decode_ms_per_step"] = round(dec * 1e3, 3)
    out["decode_ms_per_layer"] = round(dec * 1e3 / a.layers, 4)
    print(f"hf_baseline: decode {1.0 / dec:.2f} tok/s ({dec * 1e3:.2f} ms/step, {dec * 1e3 / a.layers:.3f} ms/layer)",
          flush=True)

    pids = torch.randint(0, V, (1, a.prefill), generator=g).to(a.device)
    with torch.no_grad():
        model(pids[:, :256], use_cache=False)  # warm-up
        sync(a.device)
        t = time.time()
        model(pids, use_cache=False, logits_to_keep=1)
        sync(a.device)
    pf = time.time() - t
    out["prefill_tokens"] = a.prefill
    out["prefill_tok_s"] = round(a.prefill / pf, 1)
    out["prefill_ms_per_layer"] = round(pf * 1e3 / a.layers, 3)
    print(f"hf_baseline: prefill {a.prefill} tokens {pf:.3f} s, {a.prefill / pf:.0f} tok/s", flush=True)
    if a.device.startswith("cuda"):
        out["peak_mem_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
