/* cli/cmd_logits.c - `qnext logits`: runs a token-id sequence through the model and writes the
 * float32 logits of every position, row-major [n_tokens][vocab], little-endian (the host's byte
 * order), to a file. Long inputs are fed in chunks of --max-tokens, which continues the recurrent
 * and KV state exactly as the engine's chunked prefill does. For golden comparisons and debugging.
 */
#include "cli.h"

#include "backend/backend.h" /* defines: eng_backend_cpu_create */
#include "core/threadpool.h" /* defines: eng_cpu_count */
#include "model/cache.h"     /* defines: qn_cache_create */
#include "model/model.h"     /* defines: qn_model_load, qn_model_forward */

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: qnext logits --model DIR --ids \"1 2 3 ...\" --out FILE [--threads N] [--simd PATH]\n"
               "                    [--max-tokens N] [--tp N]\n"
               "Writes the float32 logits of every position, row-major [n_tokens, vocab], to FILE.\n"
               "  --ids         token ids separated by spaces or commas\n"
               "  --threads N   worker threads (default: all CPUs)\n"
               "  --simd PATH   scalar, avx2, avx512 or auto (default auto; also QNEXT_SIMD)\n"
               "  --max-tokens  tokens per forward call (default 256); longer inputs run in chunks\n"
               "  --tp N        tensor parallel over N ranks (CPU: N thread groups sharing --threads)\n");
}

/* Parses "1 2, 3" into a heap array. Returns false with a message on bad input. */
static bool parse_ids(const char *s, int32_t **out, int *n_out)
{
    int cap = 64, n = 0;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    if (!ids) return false;
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && *end != ' ' && *end != ',' && *end != '\t' &&
                                                            *end != '\n')) {
            fprintf(stderr, "qnext logits: --ids: '%.20s' is not a token id\n", p);
            free(ids);
            return false;
        }
        if (n == cap) {
            if (cap > (1 << 26)) {
                fprintf(stderr, "qnext logits: --ids: too many ids\n");
                free(ids);
                return false;
            }
            cap *= 2;
            int32_t *g = realloc(ids, (size_t)cap * sizeof *g);
            if (!g) {
                free(ids);
                return false;
            }
            ids = g;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    *out = ids;
    *n_out = n;
    return true;
}

static bool parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) return false;
    *out = v;
    return true;
}

int cmd_logits(int argc, char **argv)
{
    const char *dir = NULL, *ids_s = NULL, *out_path = NULL;
    long threads = 0, max_tokens = 256, tp = 1;
    eng_simd simd = ENG_SIMD_AUTO;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--model") && has) {
            dir = argv[++i];
        } else if (!strcmp(a, "--ids") && has) {
            ids_s = argv[++i];
        } else if (!strcmp(a, "--out") && has) {
            out_path = argv[++i];
        } else if (!strcmp(a, "--threads") && has) {
            if (!parse_int(argv[++i], 1, 1024, &threads)) {
                fprintf(stderr, "qnext logits: --threads needs an integer in [1, 1024], got '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--max-tokens") && has) {
            if (!parse_int(argv[++i], 1, 65536, &max_tokens)) {
                fprintf(stderr, "qnext logits: --max-tokens needs an integer in [1, 65536], got '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--tp") && has) {
            if (!parse_int(argv[++i], 1, 1024, &tp)) {
                fprintf(stderr, "qnext logits: --tp needs an integer in [1, 1024], got '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--simd") && has) {
            int s = eng_simd_parse(argv[++i]);
            if (s < 0) {
                fprintf(stderr, "qnext logits: --simd needs scalar, avx2, avx512 or auto, got '%s'\n", argv[i]);
                return 2;
            }
            simd = (eng_simd)s;
        } else {
            fprintf(stderr, "qnext logits: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!dir || !ids_s || !out_path) {
        usage(stderr);
        return 2;
    }
    int32_t *ids = NULL;
    int n = 0;
    if (!parse_ids(ids_s, &ids, &n)) return 2;
    if (n == 0) {
        fprintf(stderr, "qnext logits: --ids is empty\n");
        free(ids);
        return 2;
    }
    int rc = 1;
    eng_backend *be = NULL;
    qn_model *m = NULL;
    qn_cache *c = NULL;
    float *logits = NULL;
    int32_t *blocks = NULL, *rows = NULL;
    FILE *f = NULL;
    /* with --tp, every rank gets an equal share of the threads (at least one) */
    long per_rank = (threads > 0 ? threads : eng_cpu_count()) / tp;
    eng_cpu_options bo = {tp > 1 ? (int)(per_rank > 0 ? per_rank : 1) : (int)threads, simd};
    eng_status st = eng_backend_cpu_create(&bo, &be);
    if (st != ENG_OK) goto err;
    qn_model_params mp = {.max_tokens = (int)max_tokens, .progress = true, .tp_world = (int)tp,
                          .tp_threads = bo.n_threads};
    if ((st = qn_model_load(dir, be, &mp, &m)) != ENG_OK) goto err;
    const int V = qn_model_vocab(m), bs = 16, nb = (n + bs - 1) / bs;
    qn_cache_params cp = {.n_slots = 1, .n_blocks = nb, .block_size = bs};
    if ((st = qn_cache_create(m, &cp, &c)) != ENG_OK) goto err;
    logits = malloc((size_t)n * (size_t)V * sizeof *logits);
    blocks = malloc((size_t)nb * sizeof *blocks);
    rows = malloc((size_t)max_tokens * sizeof *rows);
    if (!logits || !blocks || !rows) {
        fprintf(stderr, "qnext logits: out of memory for %d x %d logits\n", n, V);
        goto out;
    }
    for (int i = 0; i < nb; i++) blocks[i] = i;
    const double t0 = eng_now_s();
    for (int p = 0; p < n; p += (int)max_tokens) {
        const int k = n - p < max_tokens ? n - p : (int)max_tokens;
        for (int i = 0; i < k; i++) rows[i] = i;
        qn_seq s = {k, p, 0, blocks, nb};
        qn_batch b = {k, ids + p, 1, &s, k, rows};
        if ((st = qn_model_forward(m, c, &b, logits + (size_t)p * V)) != ENG_OK) goto err;
    }
    const double dt = eng_now_s() - t0;
    f = fopen(out_path, "wb");
    if (!f || fwrite(logits, sizeof *logits, (size_t)n * V, f) != (size_t)n * V || fclose(f) != 0) {
        fprintf(stderr, "qnext logits: cannot write %s: %s\n", out_path, strerror(errno));
        f = NULL;
        goto out;
    }
    f = NULL;
    fprintf(stderr, "qnext logits: %d tokens x %d logits -> %s (%.3f s, %.1f tok/s, %s, tp %ld)\n", n, V, out_path,
            dt, n / (dt > 0 ? dt : 1e-9), be->name, tp);
    rc = 0;
    goto out;
err:
    fprintf(stderr, "qnext logits: %s: %s\n", eng_status_str(st), eng_err_last());
out:
    if (f) fclose(f);
    free(ids);
    free(logits);
    free(blocks);
    free(rows);
    qn_cache_destroy(c);
    qn_model_destroy(m);
    eng_backend_destroy(be);
    return rc;
}
