/* cli/cmd_demo_model.c - `qnext demo-model`: writes a small random-weight Qwen3-Next (bf16 or
 * block-FP8) with config.json, generation_config.json and the real tokenizer files; the writer is
 * qn_demo_write (model/demo.h). `--config FILE` writes random weights for the architecture of any
 * Qwen3-Next config.json instead (the benchmark model, bench/model/config.json).
 *
 * Tokenizer files are found, in order, at --tokenizer-dir, $QNEXT_TOKENIZER_DIR, the installed
 * location <prefix>/share/qnext/tokenizer (next to <prefix>/bin/qnext), and the source tree's
 * tests/fixtures/tokenizer (QN_SOURCE_DIR when the build defines it, else derived from this file's
 * compile-time path). --no-tokenizer writes the model alone.
 */
#include "cli.h"

#include "model/demo.h" /* defines: qn_demo_write */

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: qnext demo-model --out DIR [--seed S] [--dtype bf16|fp8] [--tokenizer-dir DIR | --no-tokenizer]\n"
               "                        [--shard-mb N] [--config FILE]\n"
               "Writes a small random-weight Qwen3-Next (hidden 256, 8 layers, every 4th full attention, 8 experts,\n"
               "one MTP layer, vocab 151936) with the real tokenizer and the Instruct chat template.\n"
               "  --seed S          weights are a pure function of the seed (default 0)\n"
               "  --dtype fp8       block-FP8 e4m3 weights with 128x128 F32 scales, as the official FP8 checkpoint\n"
               "  --shard-mb N      shard size in MB with a model.safetensors.index.json (default 100; 0: one file)\n"
               "  --tokenizer-dir   folder with tokenizer.json, tokenizer_config.json, chat_template.*.jinja\n"
               "  --config FILE     random weights for the architecture of this Qwen3-Next config.json instead (copied,\n"
               "                    with a generation_config.json next to it if any; fp8 iff it has a quantization_config)\n");
}

static bool has_tokenizer(const char *dir)
{
    char *p = eng_path_join(dir, "tokenizer.json");
    bool r = p && eng_file_exists(p);
    eng_free(p);
    return r;
}

/* The source tree's tokenizer fixtures, from the compile-time location of this file. */
static bool source_tokenizer_dir(char *buf, size_t cap)
{
#ifdef QN_SOURCE_DIR
    int w = snprintf(buf, cap, "%s/tests/fixtures/tokenizer", QN_SOURCE_DIR);
    return w > 0 && (size_t)w < cap;
#else
    const char *f = __FILE__, *tail = "engine/cli/cmd_demo_model.c";
    size_t fl = strlen(f), tl = strlen(tail);
    if (fl < tl || strcmp(f + fl - tl, tail) != 0 || f[0] != '/') return false;
    int w = snprintf(buf, cap, "%.*stests/fixtures/tokenizer", (int)(fl - tl), f);
    return w > 0 && (size_t)w < cap;
#endif
}

static bool find_tokenizer(char *buf, size_t cap, char *tried, size_t tcap)
{
    tried[0] = '\0';
    const char *env = getenv("QNEXT_TOKENIZER_DIR");
    if (env && *env) {
        int w = snprintf(buf, cap, "%s", env);
        if (w > 0 && (size_t)w < cap && has_tokenizer(buf)) return true;
        snprintf(tried + strlen(tried), tcap - strlen(tried), " %s", buf);
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            int w = snprintf(buf, cap, "%s/../share/qnext/tokenizer", exe);
            if (w > 0 && (size_t)w < cap && has_tokenizer(buf)) return true;
            snprintf(tried + strlen(tried), tcap - strlen(tried), " %s", buf);
        }
    }
    if (source_tokenizer_dir(buf, cap)) {
        if (has_tokenizer(buf)) return true;
        snprintf(tried + strlen(tried), tcap - strlen(tried), " %s", buf);
    }
    return false;
}

static void fmt_count(uint64_t v, char *buf, size_t cap)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v), o = 0;
    for (int i = 0; i < n && o + 2 < (int)cap; i++) {
        if (i && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = '\0';
}

int cmd_demo_model(int argc, char **argv)
{
    qn_demo_options o = {.seed = 0, .max_shard_bytes = 100000000ull, .progress = true};
    const char *tok = NULL;
    bool no_tok = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--out") && has_val) {
            o.out_dir = argv[++i];
        } else if (!strcmp(a, "--seed") && has_val) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(argv[++i], &end, 10);
            if (errno || *end || argv[i][0] == '-' || !argv[i][0]) {
                fprintf(stderr, "qnext demo-model: --seed needs a non-negative integer, got '%s'\n", argv[i]);
                return 2;
            }
            o.seed = s;
        } else if (!strcmp(a, "--dtype") && has_val) {
            const char *d = argv[++i];
            if (!strcmp(d, "bf16"))
                o.fp8 = false;
            else if (!strcmp(d, "fp8"))
                o.fp8 = true;
            else {
                fprintf(stderr, "qnext demo-model: --dtype must be bf16 or fp8, got '%s'\n", d);
                return 2;
            }
        } else if (!strcmp(a, "--tokenizer-dir") && has_val) {
            tok = argv[++i];
        } else if (!strcmp(a, "--config") && has_val) {
            o.config_path = argv[++i];
        } else if (!strcmp(a, "--no-tokenizer")) {
            no_tok = true;
        } else if (!strcmp(a, "--shard-mb") && has_val) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 0 || v > 1000000) {
                fprintf(stderr, "qnext demo-model: --shard-mb needs an integer in [0, 1000000], got '%s'\n", argv[i]);
                return 2;
            }
            o.max_shard_bytes = (uint64_t)v * 1000000ull;
        } else {
            fprintf(stderr, "qnext demo-model: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!o.out_dir) {
        fprintf(stderr, "qnext demo-model: --out DIR is required\n");
        usage(stderr);
        return 2;
    }
    char tok_buf[PATH_MAX], tried[4 * PATH_MAX];
    if (!no_tok) {
        if (tok) {
            if (!has_tokenizer(tok)) {
                fprintf(stderr, "qnext demo-model: %s has no tokenizer.json\n", tok);
                return 1;
            }
            o.tokenizer_dir = tok;
        } else if (find_tokenizer(tok_buf, sizeof tok_buf, tried, sizeof tried)) {
            o.tokenizer_dir = tok_buf;
        } else {
            fprintf(stderr,
                    "qnext demo-model: no tokenizer files found (looked in:%s); pass --tokenizer-dir DIR or --no-tokenizer\n",
                    tried[0] ? tried : " nowhere");
            return 1;
        }
    }
    double t0 = eng_now_s();
    qn_demo_summary s;
    eng_status st = qn_demo_write(&o, &s);
    if (st) {
        fprintf(stderr, "qnext demo-model: %s: %s\n", eng_status_str(st), eng_err_last());
        return 1;
    }
    char params[32], bytes[32];
    fmt_count(s.n_params, params, sizeof params);
    printf("qnext: wrote a demo Qwen3-Next (%s, seed %llu) to %s: %d layers (%d linear + %d full attention) + %d MTP layer%s, "
           "%d experts top-%d, %s params in %zu tensors, %d shard%s, %s, %s, %.1f s\n",
           s.fp8 ? "fp8" : "bf16", (unsigned long long)o.seed, o.out_dir, s.n_layers, s.n_linear, s.n_full, s.n_mtp,
           s.n_mtp == 1 ? "" : "s", s.n_experts, s.top_k, params, s.n_tensors, s.n_shards, s.n_shards == 1 ? "" : "s",
           eng_fmt_bytes((double)s.n_bytes, bytes, sizeof bytes), o.tokenizer_dir ? "with tokenizer" : "no tokenizer",
           eng_now_s() - t0);
    return 0;
}
