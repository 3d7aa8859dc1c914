/* cli/cmd_inspect.c - `qnext inspect`: validates a model folder's tensors (names, shapes, dtypes,
 * FP8 scales) against its config.json without reading weights, and prints a summary: architecture,
 * parameters (total, per MTP, active per token), dtype mix, bytes, bytes per device at a TP size,
 * and whether the weights fit a device memory. Exit 0 if valid, 1 with the list of problems (or an
 * error) otherwise, 2 on usage errors.
 */
#include "cli.h"

#include "model/config.h"      /* defines: qn_config_load */
#include "model/safetensors.h" /* defines: eng_st_open */
#include "model/spec.h"        /* defines: qn_spec_check, qn_spec_check_tp */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: qnext inspect --model DIR [--tp N] [--device-memory GB] [--max-problems N]\n"
               "Checks every tensor's name, shape and dtype (and FP8 scales) against config.json without reading\n"
               "weights, and prints parameters, dtypes, bytes, bytes per device at tensor-parallel size N (default 1)\n"
               "and whether the weights fit GB (10^9 bytes) of device memory (default: this machine's RAM).\n"
               "Exit status: 0 valid, 1 invalid or unreadable, 2 usage error.\n");
}

/* 81324862720 -> "81,324,862,720" */
static const char *commas(uint64_t v, char *buf, size_t cap)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v), o = 0;
    for (int i = 0; i < n && o + 2 < (int)cap; i++) {
        if (i && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = '\0';
    return buf;
}

static bool parse_pos_double(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v > 0) || v > 1e9) return false;
    *out = v;
    return true;
}

int cmd_inspect(int argc, char **argv)
{
    const char *dir = NULL;
    long tp = 1, max_problems = 50;
    double dev_gb = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        char *end;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model") && has_val) {
            dir = argv[++i];
        } else if (!strcmp(a, "--tp") && has_val) {
            tp = strtol(argv[++i], &end, 10);
            if (*end || tp < 1 || tp > 1024) {
                fprintf(stderr, "qnext inspect: --tp needs an integer in [1, 1024], got '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--device-memory") && has_val) {
            if (!parse_pos_double(argv[++i], &dev_gb)) {
                fprintf(stderr, "qnext inspect: --device-memory needs a positive number of GB, got '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--max-problems") && has_val) {
            max_problems = strtol(argv[++i], &end, 10);
            if (*end || max_problems < 0) {
                fprintf(stderr, "qnext inspect: --max-problems needs a non-negative integer, got '%s'\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "qnext inspect: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "qnext inspect: --model DIR is required\n");
        usage(stderr);
        return 2;
    }

    qn_config cfg;
    eng_st_model *m = NULL;
    qn_spec_report r = {0};
    int rc = 1;
    eng_status st;
    double t0 = eng_now_s();
    if ((st = qn_config_load(dir, &cfg))) {
        fprintf(stderr, "qnext inspect: %s: %s\n", eng_status_str(st), eng_err_last());
        goto out;
    }
    if ((st = qn_spec_check_tp(&cfg, (int)tp))) {
        fprintf(stderr, "qnext inspect: --tp %ld: %s\n", tp, eng_err_last());
        goto out;
    }
    if ((st = eng_st_open(dir, false, &m))) {
        fprintf(stderr, "qnext inspect: %s: %s\n", eng_status_str(st), eng_err_last());
        goto out;
    }
    if ((st = qn_spec_check(&cfg, m, &r))) {
        fprintf(stderr, "qnext inspect: %s: %s\n", eng_status_str(st), eng_err_last());
        goto out;
    }

    char a[32], b[32], c[32], d[32];
    int n_moe = 0;
    for (int l = 0; l < cfg.n_layers; l++) n_moe += qn_config_layer_is_moe(&cfg, l);
    printf("model:         %s\n", dir);
    printf("architecture:  Qwen3-Next (%s), %d layers: %d linear attention (Gated DeltaNet) + %d full attention; "
           "MTP layers: %d\n",
           cfg.model_type, cfg.n_layers, cfg.n_linear_layers, cfg.n_full_layers, r.n_mtp_layers);
    printf("sizes:         hidden %d, vocab %d; attention %d q / %d kv heads x %d (rotary %d, theta %g%s); "
           "GDN %d k / %d v heads x %d/%d, conv %d\n",
           cfg.hidden_size, cfg.vocab_size, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.rotary_dim, cfg.rope_theta,
           cfg.rope_scaling.enabled ? ", yarn" : "", cfg.lin_n_k_heads, cfg.lin_n_v_heads, cfg.lin_k_head_dim, cfg.lin_v_head_dim,
           cfg.lin_conv_kernel);
    printf("mlp:           %d experts, top %d, expert FFN %d, shared expert %d; %d MoE + %d dense layers\n", cfg.n_experts,
           cfg.n_experts_per_tok, cfg.moe_intermediate, cfg.shared_intermediate, n_moe, cfg.n_layers - n_moe);
    if (cfg.quant.fp8)
        printf("quantization:  fp8 e4m3, %dx%d blocks, %s activations\n", cfg.quant.block_n, cfg.quant.block_k,
               cfg.quant.dynamic_activations ? "dynamic" : "static");
    else
        printf("quantization:  none\n");
    printf("tensors:       %s in %d file%s (%s expected weights + %s FP8 scales)\n", commas(r.n_tensors, a, sizeof a),
           eng_st_file_count(m), eng_st_file_count(m) == 1 ? "" : "s", commas(r.n_expected, b, sizeof b),
           commas(r.n_scales, c, sizeof c));
    printf("params:        %s total (main %s + MTP %s per config.json); active per token %s\n", commas(r.n_params, a, sizeof a),
           commas(r.n_params_main, b, sizeof b), commas(r.n_params_mtp, c, sizeof c), commas(r.n_params_active, d, sizeof d));
    if (r.n_scale_elems) printf("               + %s FP8 scale elements\n", commas(r.n_scale_elems, a, sizeof a));
    printf("dtypes:       ");
    for (int t = 0; t < ENG_DTYPE_COUNT; t++)
        if (r.dtype_tensors[t])
            printf(" %s %s tensors %s;", eng_dtype_name((eng_dtype)t), commas(r.dtype_tensors[t], a, sizeof a),
                   eng_fmt_bytes((double)r.dtype_bytes[t], b, sizeof b));
    printf("\n");
    printf("checkpoint:    %s of tensor data (%s bytes)\n", eng_fmt_bytes((double)r.n_bytes, a, sizeof a),
           commas(r.n_bytes, b, sizeof b));
    double per_dev = (double)r.n_bytes_split / (double)tp + (double)r.n_bytes_replicated;
    printf("per device:    %s at TP=%ld (weights only: split tensors / %ld + %s replicated on every device: norms, routers, "
           "shared-expert gates, unexpected tensors)\n",
           eng_fmt_bytes(per_dev, a, sizeof a), tp, tp, eng_fmt_bytes((double)r.n_bytes_replicated, b, sizeof b));
    if (cfg.quant.fp8 && tp > 1 && (cfg.moe_intermediate / tp) % cfg.quant.block_n)
        printf("warning:       at TP=%ld the expert FFN slice (%ld) is not a multiple of the %d-row FP8 block\n", tp,
               (long)(cfg.moe_intermediate / tp), cfg.quant.block_n);
    double mem;
    const char *mem_src;
    if (dev_gb > 0) {
        mem = dev_gb * 1e9;
        mem_src = "--device-memory";
    } else {
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGE_SIZE);
        mem = pages > 0 && psz > 0 ? (double)pages * (double)psz : 0;
        mem_src = "this machine's RAM";
    }
    if (mem > 0)
        printf("memory:        %s in %s (%s, %.0f%%); KV cache, recurrent state and activations need more\n",
               per_dev <= mem ? "fits" : "does NOT fit", eng_fmt_bytes(mem, a, sizeof a), mem_src, 100.0 * per_dev / mem);
    if (r.n_problems_total == 0) {
        printf("result:        valid (%.2f s)\n", eng_now_s() - t0);
        rc = 0;
    } else {
        printf("result:        INVALID, %s problem%s:\n", commas(r.n_problems_total, a, sizeof a), r.n_problems_total == 1 ? "" : "s");
        size_t shown = 0;
        for (size_t i = 0; i < r.n_problems && (long)shown < max_problems; i++, shown++)
            printf("  %-10s %s: %s\n", qn_problem_kind_str(r.problems[i].kind), r.problems[i].name, r.problems[i].detail);
        if (r.n_problems_total > shown) printf("  ... and %zu more\n", r.n_problems_total - shown);
    }
out:
    qn_spec_report_free(&r);
    eng_st_close(m);
    return rc;
}
