#!/usr/bin/env python3
"""tests/golden/gen_golden.py - builds the golden fixtures: small random Qwen3-Next models and the
float32 logits Hugging Face transformers computes for them.

Run by a developer (never by CI) with torch + transformers installed (scripts/requirements-dev.txt):

    python tests/golden/gen_golden.py            # writes tests/golden/fixtures/<model>/
    python tests/golden/gen_golden.py --check    # regenerates in memory and diffs against the committed files

Each fixture folder holds what a real checkpoint folder holds, in the real checkpoint's tensor names
and layout (per-expert MoE tensors, interleaved in_proj_qkvz/in_proj_ba, per-head [query|gate]
q_proj): config.json, generation_config.json, model.safetensors; plus golden.json (the cases) and
golden.bin (float32 logits rows, little-endian, offsets in golden.json are in floats).

Models (docs/qwen3-next.md; every one seeded, weights normal std 0.02 rounded to bf16, never zero):
  a_realdims  the real per-head dims: head_dim 256, rotary 64, GDN key/value head dims 128, value
              heads = 2 x key heads; full attention every 4th layer; bf16.
  b_fp8       the block-FP8 format: F8_E4M3 weights + F32 weight_scale_inv in 128x128 blocks
              (hidden 192, so some blocks are partial), quantized as docs/qwen3-next.md section 5
              lists; bf16 for the tensors the real FP8 checkpoint leaves unquantized. The reference
              is transformers in float32 on the exactly dequantized weights (fp8 * scale_inv in
              float32): transformers does not run FP8 on CPU, and that is the correct reference
              for an engine that dequantizes at load.
  c_vocab     a 30007-token vocab (lm_head tiling and tails), tied embeddings, 16 experts with 4
              per token, a dense-MLP layer (mlp_only_layers), small heads (head_dim 32, rotary 8).

Cases per model (all run by transformers in float32, eager attention):
  prefill  fresh prompts of 1, 3, 63, 64, 65 and 130 tokens; logits of every position, or of a
           subset when the vocab is large (the rows are listed in golden.json)
  decode   a 10-token prompt then 32 greedy steps through transformers' own cache: the tokens and
           the logits each token was chosen from; the tied c_vocab model repeats one token
           (its own embedding dominates), the untied ones give 30+ distinct tokens
  chunked  the C test feeds the 130-token prompt in pieces and compares with the one-shot logits

Decision margins: a greedy token whose top-2 logit gap is tiny, or a router whose k-th/(k+1)-th
expert logits nearly tie, would make an exact comparison depend on rounding. The script re-draws a
prompt until every greedy gap is >= 1e-3 * max|logit| and every router gap >= 2e-5, so a
correct engine in float32 cannot legitimately disagree.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import save_file

try:
    import transformers
    from transformers import Qwen3NextForCausalLM
except ImportError:  # pragma: no cover
    sys.exit("gen_golden.py needs torch + transformers >= 5 (scripts/requirements-dev.txt)")

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_ROOT = os.path.join(HERE, "fixtures")

PREFILL_LENS = [1, 3, 63, 64, 65, 130]
DECODE_PROMPT = 10
DECODE_STEPS = 32
ALL_ROWS_MAX_VOCAB = 4096  # store every row below this vocab size
GREEDY_MIN_REL_GAP = 1e-3
ROUTER_MIN_GAP = 2e-5


def base_config(**kw):
    """A config.json in the real checkpoint's style (docs/qwen3-next.md section 1.1)."""
    c = dict(
        architectures=["Qwen3NextForCausalLM"],
        model_type="qwen3_next",
        attention_dropout=0.0,
        bos_token_id=0,
        eos_token_id=1,
        hidden_act="silu",
        initializer_range=0.02,
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        rope_scaling=None,
        rope_theta=10000000,
        partial_rotary_factor=0.25,
        linear_conv_kernel_dim=4,
        norm_topk_prob=True,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        use_cache=True,
        use_sliding_window=False,
        router_aux_loss_coef=0.001,
        output_router_logits=False,
        torch_dtype="bfloat16",
        transformers_version="4.57.0.dev0",
    )
    c.update(kw)
    return c


MODELS = {
    "a_realdims": dict(
        seed=1001,
        fp8=False,
        config=base_config(
            hidden_size=128, num_hidden_layers=4, full_attention_interval=4,
            num_attention_heads=2, num_key_value_heads=1, head_dim=256,
            linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=128, linear_value_head_dim=128,
            num_experts=8, num_experts_per_tok=2, moe_intermediate_size=64, shared_expert_intermediate_size=64,
            intermediate_size=256, vocab_size=1024, tie_word_embeddings=False,
        ),
    ),
    "b_fp8": dict(
        seed=2002,
        fp8=True,
        config=base_config(
            hidden_size=192, num_hidden_layers=4, full_attention_interval=2,
            num_attention_heads=2, num_key_value_heads=1, head_dim=128,
            linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=128, linear_value_head_dim=128,
            num_experts=8, num_experts_per_tok=2, moe_intermediate_size=128, shared_expert_intermediate_size=128,
            intermediate_size=256, vocab_size=1024, tie_word_embeddings=False,
            quantization_config=dict(
                quant_method="fp8", fmt="e4m3", activation_scheme="dynamic", weight_block_size=[128, 128],
                modules_to_not_convert=["lm_head"],  # completed per layer below
            ),
        ),
    ),
    "c_vocab": dict(
        seed=3003,
        fp8=False,
        config=base_config(
            hidden_size=64, num_hidden_layers=4, full_attention_interval=4, mlp_only_layers=[1],
            num_attention_heads=4, num_key_value_heads=2, head_dim=32,
            linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=32, linear_value_head_dim=32,
            num_experts=16, num_experts_per_tok=4, moe_intermediate_size=32, shared_expert_intermediate_size=48,
            intermediate_size=96, vocab_size=30007, tie_word_embeddings=True,
        ),
    ),
}

# Tensors the real FP8 checkpoint stores as float8_e4m3fn with a weight_scale_inv (section 5).
FP8_SUFFIXES = (
    "linear_attn.in_proj_qkvz.weight", "linear_attn.out_proj.weight",
    "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
    "shared_expert.gate_proj.weight", "shared_expert.up_proj.weight", "shared_expert.down_proj.weight",
)


def is_fp8_tensor(name):
    if name.endswith(FP8_SUFFIXES):
        return True
    return ".mlp.experts." in name and name.endswith(("gate_proj.weight", "up_proj.weight", "down_proj.weight"))


def layer_types(cfg):
    n, iv = cfg["num_hidden_layers"], cfg["full_attention_interval"]
    return ["full" if (i + 1) % iv == 0 else "linear" for i in range(n)]


def is_moe_layer(cfg, i):
    return i not in cfg["mlp_only_layers"] and cfg["num_experts"] > 0 and (i + 1) % cfg["decoder_sparse_step"] == 0


def make_weights(cfg, gen):
    """Checkpoint-format tensors (float32 holding bf16-representable values), seeded."""
    H, V = cfg["hidden_size"], cfg["vocab_size"]
    std = 0.02

    def mat(n, k):
        w = torch.randn(n, k, generator=gen) * std
        w = torch.where(w == 0, torch.full_like(w, 1e-3), w)  # never an exact zero
        return w.to(torch.bfloat16).float()

    def vec(n, mean, s):
        return (torch.randn(n, generator=gen) * s + mean).to(torch.bfloat16).float()

    W = {}
    W["model.embed_tokens.weight"] = mat(V, H)
    for i, lt in enumerate(layer_types(cfg)):
        p = f"model.layers.{i}."
        W[p + "input_layernorm.weight"] = vec(H, 0.0, 0.1)  # zero-centred (applied as 1 + w)
        W[p + "post_attention_layernorm.weight"] = vec(H, 0.0, 0.1)
        if lt == "linear":
            hk, hv = cfg["linear_num_key_heads"], cfg["linear_num_value_heads"]
            dk, dv = cfg["linear_key_head_dim"], cfg["linear_value_head_dim"]
            kc = cfg["linear_conv_kernel_dim"]
            conv_dim = 2 * hk * dk + hv * dv
            a = p + "linear_attn."
            W[a + "in_proj_qkvz.weight"] = mat(2 * hk * dk + 2 * hv * dv, H)
            W[a + "in_proj_ba.weight"] = mat(2 * hv, H)
            cw = (torch.rand(conv_dim, 1, kc, generator=gen) - 0.5)  # like PyTorch's conv init, ~U(-0.5, 0.5)
            W[a + "conv1d.weight"] = cw.to(torch.bfloat16).float()
            # A in [1, 16) as transformers initialises it; dt_bias around 1.
            W[a + "A_log"] = torch.log(torch.rand(hv, generator=gen) * 15 + 1).to(torch.bfloat16).float()
            W[a + "dt_bias"] = vec(hv, 1.0, 0.3)
            W[a + "norm.weight"] = vec(dv, 1.0, 0.1)  # gated norm: plain weight around 1
            W[a + "out_proj.weight"] = mat(H, hv * dv)
        else:
            nq, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
            a = p + "self_attn."
            W[a + "q_proj.weight"] = mat(nq * hd * 2, H)
            W[a + "k_proj.weight"] = mat(nkv * hd, H)
            W[a + "v_proj.weight"] = mat(nkv * hd, H)
            W[a + "o_proj.weight"] = mat(H, nq * hd)
            W[a + "q_norm.weight"] = vec(hd, 0.0, 0.1)
            W[a + "k_norm.weight"] = vec(hd, 0.0, 0.1)
        m = p + "mlp."
        if is_moe_layer(cfg, i):
            E, I, Is = cfg["num_experts"], cfg["moe_intermediate_size"], cfg["shared_expert_intermediate_size"]
            W[m + "gate.weight"] = mat(E, H)
            for e in range(E):
                W[m + f"experts.{e}.gate_proj.weight"] = mat(I, H)
                W[m + f"experts.{e}.up_proj.weight"] = mat(I, H)
                W[m + f"experts.{e}.down_proj.weight"] = mat(H, I)
            W[m + "shared_expert.gate_proj.weight"] = mat(Is, H)
            W[m + "shared_expert.up_proj.weight"] = mat(Is, H)
            W[m + "shared_expert.down_proj.weight"] = mat(H, Is)
            W[m + "shared_expert_gate.weight"] = mat(1, H)
        else:
            I = cfg["intermediate_size"]
            W[m + "gate_proj.weight"] = mat(I, H)
            W[m + "up_proj.weight"] = mat(I, H)
            W[m + "down_proj.weight"] = mat(H, I)
    W["model.norm.weight"] = vec(H, 0.0, 0.1)
    if not cfg["tie_word_embeddings"]:
        W["lm_head.weight"] = mat(V, H)
    return W


def quantize_fp8(w, block=128):
    """Block-wise e4m3 (docs/qwen3-next.md section 5): scale = amax/448 per 128x128 block,
    q = fp8(w / scale) (round to nearest even), stored scale_inv = scale (a multiplier)."""
    n, k = w.shape
    bn, bk = (n + block - 1) // block, (k + block - 1) // block
    scale = torch.empty(bn, bk, dtype=torch.float32)
    q = torch.empty(n, k, dtype=torch.float8_e4m3fn)
    for i in range(bn):
        for j in range(bk):
            blk = w[i * block:(i + 1) * block, j * block:(j + 1) * block]
            amax = blk.abs().max().item()
            s = amax / 448.0 if amax > 0 else 1.0
            scale[i, j] = s
            q[i * block:(i + 1) * block, j * block:(j + 1) * block] = (blk / torch.tensor(s, dtype=torch.float32)).to(
                torch.float8_e4m3fn)
    return q, scale


def dequantize_fp8(q, scale, block=128):
    s = scale.repeat_interleave(block, 0)[: q.shape[0]].repeat_interleave(block, 1)[:, : q.shape[1]]
    return q.float() * s


def fp8_not_convert(cfg):
    out = ["lm_head"]
    for i, lt in enumerate(layer_types(cfg)):
        p = f"model.layers.{i}."
        out += [p + "input_layernorm", p + "post_attention_layernorm"]
        if is_moe_layer(cfg, i):
            out += [p + "mlp.gate", p + "mlp.shared_expert_gate"]
        if lt == "linear":
            out += [p + "linear_attn." + s for s in ("A_log", "conv1d", "dt_bias", "in_proj_ba", "norm")]
        else:
            out += [p + "self_attn.q_norm", p + "self_attn.k_norm"]
    return out


def write_model_dir(d, cfg, tensors):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    V = cfg["vocab_size"]
    gen_cfg = {"bos_token_id": 0, "eos_token_id": [1, 2], "pad_token_id": 0, "do_sample": False,
               "transformers_version": "4.57.0.dev0"}
    assert max(gen_cfg["eos_token_id"]) < V
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        json.dump(gen_cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    save_file({k: v.contiguous() for k, v in sorted(tensors.items())}, os.path.join(d, "model.safetensors"),
              metadata={"format": "pt"})


def load_hf(d):
    m = Qwen3NextForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    m.eval()
    return m


class RouterWatch:
    """Records the smallest gap between the k-th and (k+1)-th router logit of every token."""

    def __init__(self, model, k):
        self.k, self.min_gap, self.handles = k, float("inf"), []
        for layer in model.model.layers:
            gate = getattr(layer.mlp, "gate", None)
            if gate is not None and hasattr(gate, "top_k"):
                self.handles.append(gate.register_forward_hook(self._hook))

    def _hook(self, mod, inp, out):
        logits = out[0].float()
        s, _ = torch.sort(logits, dim=-1, descending=True)
        gap = (s[:, self.k - 1] - s[:, self.k]).min().item()
        self.min_gap = min(self.min_gap, gap)

    def reset(self):
        self.min_gap = float("inf")


def rows_to_store(n, vocab):
    if vocab <= ALL_ROWS_MAX_VOCAB:
        return list(range(n))
    rows = {0, n - 1, n // 2}
    rows |= {r for r in (1, 2, 31, 62, 63, 64, 65, 100, 127, 128, 129) if r < n}
    return sorted(rows)


def decode_rows_to_store(vocab):
    if vocab <= ALL_ROWS_MAX_VOCAB:
        return list(range(DECODE_STEPS))
    return [0, 1, 2, 3, 7, 15, 23, DECODE_STEPS - 1]


def draw_prompt(rng, n, vocab):
    # avoid the bos/eos ids 0..2 so prompts look like ordinary text
    return [int(x) for x in rng.integers(3, vocab, size=n)]


@torch.no_grad()
def run_prefill(model, watch, ids):
    watch.reset()
    out = model(input_ids=torch.tensor([ids]), use_cache=False)
    return out.logits[0].float().numpy(), watch.min_gap


@torch.no_grad()
def run_decode(model, watch, prompt, steps):
    watch.reset()
    out = model(input_ids=torch.tensor([prompt]), use_cache=True)
    cache = out.cache
    logits = out.logits[0, -1].float()
    toks, rows, min_rel = [], [], float("inf")
    for _ in range(steps):
        s, _ = torch.sort(logits, descending=True)
        min_rel = min(min_rel, ((s[0] - s[1]) / logits.abs().max()).item())
        t = int(torch.argmax(logits).item())
        toks.append(t)
        rows.append(logits.numpy().copy())
        out = model(input_ids=torch.tensor([[t]]), cache=cache, use_cache=True)
        cache = out.cache
        logits = out.logits[0, -1].float()
    return toks, np.stack(rows), min_rel, watch.min_gap


def build_model(name, spec, workdir):
    cfg = json.loads(json.dumps(spec["config"]))
    gen = torch.Generator().manual_seed(spec["seed"])
    W = make_weights(cfg, gen)
    ref_dir = os.path.join(workdir, name + "_ref")
    if spec["fp8"]:
        cfg["quantization_config"]["modules_to_not_convert"] = fp8_not_convert(cfg)
        ckpt, deq = {}, {}
        for k, w in W.items():
            if is_fp8_tensor(k):
                q, s = quantize_fp8(w)
                ckpt[k] = q
                ckpt[k + "_scale_inv"] = s
                deq[k] = dequantize_fp8(q, s)
            else:
                ckpt[k] = w.to(torch.bfloat16)
                deq[k] = w
        ref_cfg = {k: v for k, v in cfg.items() if k != "quantization_config"}
        ref_cfg["torch_dtype"] = "float32"
        write_model_dir(ref_dir, ref_cfg, deq)
    else:
        ckpt = {k: w.to(torch.bfloat16) for k, w in W.items()}
        write_model_dir(ref_dir, cfg, ckpt)
    return cfg, ckpt, ref_dir


def generate(name, spec, workdir):
    cfg, ckpt, ref_dir = build_model(name, spec, workdir)
    model = load_hf(ref_dir)
    V, k = cfg["vocab_size"], cfg["num_experts_per_tok"]
    watch = RouterWatch(model, k)
    rng = np.random.default_rng(spec["seed"])
    blobs, offset = [], 0
    index = {
        "model": name,
        "vocab_size": V,
        "reference": f"transformers {transformers.__version__}, torch {torch.__version__}, float32, eager attention",
        "fp8_reference": "transformers float32 on fp8 * scale_inv dequantized in float32" if spec["fp8"] else None,
        "prefill": [],
    }

    def put(arr):
        nonlocal offset
        arr = np.ascontiguousarray(arr, dtype="<f4")
        blobs.append(arr.tobytes())
        off = offset
        offset += arr.size
        return off

    for n in PREFILL_LENS:
        for attempt in range(100):
            ids = draw_prompt(rng, n, V)
            logits, rgap = run_prefill(model, watch, ids)
            if rgap >= ROUTER_MIN_GAP:
                break
        else:
            raise RuntimeError(f"{name}: no prompt of {n} tokens with safe router margins")
        rows = rows_to_store(n, V)
        index["prefill"].append({"n": n, "ids": ids, "rows": rows, "offset": put(logits[rows]),
                                 "router_min_gap": rgap})
    for attempt in range(200):
        prompt = draw_prompt(rng, DECODE_PROMPT, V)
        toks, rows_all, grel, rgap = run_decode(model, watch, prompt, DECODE_STEPS)
        if grel >= GREEDY_MIN_REL_GAP and rgap >= ROUTER_MIN_GAP:
            break
    else:
        raise RuntimeError(f"{name}: no decode prompt with safe margins")
    drows = decode_rows_to_store(V)
    index["decode"] = {"prompt": prompt, "tokens": toks, "rows": drows, "offset": put(rows_all[drows]),
                       "greedy_min_rel_gap": grel, "router_min_gap": rgap}
    index["chunked"] = {"prefill_case": PREFILL_LENS.index(130), "splits": [[0, 70, 130], [0, 1, 64, 65, 129, 130],
                                                                           [0, 64, 128, 130]]}
    index["n_floats"] = offset

    if spec["fp8"]:
        # How far a bf16 dequantization (what the engine keeps) is from the float32 reference.
        bf_dir = os.path.join(workdir, name + "_bf16deq")
        deq_bf = {}
        for kk, w in ckpt.items():
            if kk.endswith("_scale_inv"):
                continue
            if is_fp8_tensor(kk):
                deq_bf[kk] = dequantize_fp8(w, ckpt[kk + "_scale_inv"]).to(torch.bfloat16).float()
            else:
                deq_bf[kk] = w.float()
        ref_cfg = {kk: v for kk, v in cfg.items() if kk != "quantization_config"}
        write_model_dir(bf_dir, ref_cfg, deq_bf)
        m2 = load_hf(bf_dir)
        w2 = RouterWatch(m2, k)
        case = index["prefill"][-1]
        l2, _ = run_prefill(m2, w2, case["ids"])
        l1, _ = run_prefill(model, watch, case["ids"])
        rel = np.abs(l2 - l1).max() / np.abs(l1).max()
        index["fp8_bf16_dequant_rel_err"] = float(rel)
        print(f"{name}: bf16-dequantized weights vs float32 dequantized: max rel logit diff {rel:.2e}")
    return cfg, ckpt, index, b"".join(blobs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=OUT_ROOT)
    ap.add_argument("--only", nargs="*", help="model names to build (default: all)")
    ap.add_argument("--check", action="store_true", help="compare with the committed fixtures instead of writing")
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    total = 0
    with tempfile.TemporaryDirectory() as work:
        for name, spec in MODELS.items():
            if args.only and name not in args.only:
                continue
            cfg, ckpt, index, blob = generate(name, spec, work)
            d = os.path.join(work if args.check else args.out, name)
            if os.path.isdir(d) and not args.check:
                shutil.rmtree(d)
            write_model_dir(d, cfg, ckpt)
            with open(os.path.join(d, "golden.json"), "w") as f:
                json.dump(index, f, indent=1)
                f.write("\n")
            with open(os.path.join(d, "golden.bin"), "wb") as f:
                f.write(blob)
            size = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))
            total += size
            print(f"{name}: {size / 1e6:.2f} MB, decode tokens {index['decode']['tokens'][:8]}...")
            if args.check:
                ref = os.path.join(args.out, name)
                for fn in ("golden.bin", "model.safetensors"):
                    a = open(os.path.join(d, fn), "rb").read()
                    b = open(os.path.join(ref, fn), "rb").read()
                    print(f"  {fn}: {'identical' if a == b else 'DIFFERENT'}")
    print(f"total {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
