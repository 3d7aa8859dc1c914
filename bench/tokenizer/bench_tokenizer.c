/* bench/tokenizer/bench_tokenizer.c - single-thread encode (and decode) throughput of the qnext
 * tokenizer on the strings of tests/fixtures/tokenizer/corpus.jsonl (or any JSONL with "t"
 * fields), encoded one string per call, as bench_hf.py does with HF tokenizers.
 *
 *   bench_tokenizer [--tokenizer PATH] [--corpus FILE.jsonl] [--runs N] [--repeat R] [--no-special]
 *
 * One warm-up pass (timed as "cold": the tokenizer's caches start empty, as HF's word cache does),
 * then N timed passes over the corpus repeated R times; prints every pass and the best, by wall
 * clock and by process CPU time (the CPU figure is steadier on a shared, busy machine).
 * Check-and-die error handling (bench code, docs/style.md rule 3).
 */
#include "core/core.h"       /* defines: eng_file_read, eng_now_s */
#include "qnext/tokenizer.h" /* defines: eng_tokenizer_* */

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "bench_tokenizer: " __VA_ARGS__);                                                \
            fprintf(stderr, "\n");                                                                           \
            exit(1);                                                                                         \
        }                                                                                                    \
    } while (0)

typedef struct text {
    char *s;
    size_t len;
} text;

/* the "t" strings of a corpus JSONL ({"hex": ...} values included) */
static text *read_corpus(const char *path, size_t *n_out, size_t *bytes)
{
    char *data;
    size_t len, cap = 1024, n = 0;
    CHECK(eng_file_read(path, (size_t)1 << 31, &data, &len) == ENG_OK, "%s", eng_err_last());
    text *v = malloc(cap * sizeof *v);
    *bytes = 0;
    for (char *p = data, *end = data + len; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        cJSON *o = ll ? cJSON_ParseWithLength(p, ll) : NULL;
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "t");
        if (t) {
            if (n == cap) v = realloc(v, (cap *= 2) * sizeof *v);
            if (cJSON_IsString(t)) {
                v[n].len = strlen(t->valuestring);
                v[n].s = malloc(v[n].len + 1);
                memcpy(v[n].s, t->valuestring, v[n].len + 1);
            } else {
                const cJSON *h = cJSON_GetObjectItemCaseSensitive(t, "hex");
                CHECK(cJSON_IsString(h), "%s: bad \"t\"", path);
                v[n].len = strlen(h->valuestring) / 2;
                v[n].s = malloc(v[n].len + 1);
                for (size_t i = 0; i < v[n].len; i++) {
                    unsigned x;
                    sscanf(h->valuestring + 2 * i, "%2x", &x);
                    v[n].s[i] = (char)x;
                }
            }
            *bytes += v[n].len;
            n++;
        }
        cJSON_Delete(o);
        p += ll + 1;
    }
    eng_free(data);
    *n_out = n;
    return v;
}

int main(int argc, char **argv)
{
    const char *tok_path = QN_SOURCE_DIR "/tests/fixtures/tokenizer/tokenizer.json";
    const char *corpus = QN_SOURCE_DIR "/tests/fixtures/tokenizer/corpus.jsonl";
    int runs = 3, repeat = 3;
    bool special = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc)
            tok_path = argv[++i];
        else if (!strcmp(argv[i], "--corpus") && i + 1 < argc)
            corpus = argv[++i];
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-special"))
            special = false;
        else {
            fprintf(stderr, "usage: bench_tokenizer [--tokenizer PATH] [--corpus FILE.jsonl] [--runs N] "
                            "[--repeat R] [--no-special]\n");
            return 2;
        }
    }
    CHECK(runs > 0 && repeat > 0, "--runs and --repeat must be positive");
    double t0 = eng_now_s();
    eng_tokenizer *tok;
    CHECK(eng_tokenizer_load(tok_path, &tok) == ENG_OK, "%s", eng_err_last());
    double t_load = eng_now_s() - t0;
    size_t n, bytes;
    text *texts = read_corpus(corpus, &n, &bytes);
    CHECK(n > 0, "%s: no strings", corpus);
    printf("tokenizer: %s (load %.3f s)\ncorpus: %s: %zu strings, %zu bytes, x%d per pass\n", tok_path,
           t_load, corpus, n, bytes, repeat);

    size_t n_tokens = 0;
    int32_t **all_ids = calloc(n, sizeof *all_ids);
    size_t *all_n = calloc(n, sizeof *all_n);
    double t_cold = eng_now_s();
    for (size_t i = 0; i < n; i++) { /* warm-up (caches empty), and ids for the decode pass */
        CHECK(eng_tokenizer_encode(tok, texts[i].s, texts[i].len, special, &all_ids[i], &all_n[i]) == ENG_OK,
              "%s", eng_err_last());
        n_tokens += all_n[i];
    }
    t_cold = eng_now_s() - t_cold;
    printf("cold pass (fresh tokenizer, x1): %.3f s  %.2f MB/s\n", t_cold, (double)bytes / t_cold / 1e6);
    double best = 1e30, best_cpu = 1e30;
    for (int r = 0; r < runs; r++) {
        double t = eng_now_s(), c = cpu_s();
        for (int k = 0; k < repeat; k++)
            for (size_t i = 0; i < n; i++) {
                int32_t *ids;
                size_t m;
                CHECK(eng_tokenizer_encode(tok, texts[i].s, texts[i].len, special, &ids, &m) == ENG_OK, "%s",
                      eng_err_last());
                eng_free(ids);
            }
        t = eng_now_s() - t;
        c = cpu_s() - c;
        printf("encode pass %d: %.3f s  %.2f MB/s  %.0f tokens/s  (cpu %.3f s: %.2f MB/s)\n", r + 1, t,
               (double)bytes * repeat / t / 1e6, (double)n_tokens * repeat / t, c,
               (double)bytes * repeat / c / 1e6);
        if (t < best) best = t;
        if (c < best_cpu) best_cpu = c;
    }
    double best_dec = 1e30;
    for (int r = 0; r < runs; r++) {
        double t = eng_now_s();
        for (int k = 0; k < repeat; k++)
            for (size_t i = 0; i < n; i++) {
                char *s;
                size_t l;
                CHECK(eng_tokenizer_decode(tok, all_ids[i], all_n[i], false, &s, &l) == ENG_OK, "%s",
                      eng_err_last());
                eng_free(s);
            }
        t = eng_now_s() - t;
        if (t < best_dec) best_dec = t;
    }
    printf("best encode: %.2f MB/s wall, %.2f MB/s per CPU second (%.0f tokens/s, %zu tokens per pass); "
           "best decode: %.2f MB/s\n",
           (double)bytes * repeat / best / 1e6, (double)bytes * repeat / best_cpu / 1e6,
           (double)n_tokens * repeat / best, n_tokens, (double)bytes * repeat / best_dec / 1e6);
    for (size_t i = 0; i < n; i++) {
        free(texts[i].s);
        eng_free(all_ids[i]);
    }
    free(texts);
    free(all_ids);
    free(all_n);
    eng_tokenizer_destroy(tok);
    return 0;
}
