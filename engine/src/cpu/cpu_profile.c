/* cpu/cpu_profile.c - optional per-op wall-clock timers for the CPU backend, for finding where a
 * forward pass spends its time (bench/cpu/bench_cpu --profile).
 *
 * Set QNEXT_CPU_PROFILE=<n> before creating a backend: every op of the table is then wrapped by a
 * timer, the first n forward passes are skipped (a forward starts with its `embed` call), and when
 * the backend is destroyed a table goes to stderr with, per op (matmuls per weight, the layer
 * number folded away), the calls and milliseconds of one-token calls (decode at batch 1) and of
 * longer calls (prefill), and their shares. The wrappers only read the clock around the real op,
 * so results are bitwise the same as without them. Unset (the default), nothing is wrapped.
 */
#include "cpu/cpu_impl.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROF_MAX 64

typedef struct prof_entry {
    char name[96];
    long calls[2];   /* [0] one-token calls, [1] longer */
    double secs[2];
} prof_entry;

struct cpu_prof {
    int skip;        /* forwards to skip */
    int forwards;    /* forwards started (embed calls) */
    prof_entry e[PROF_MAX];
    int n;
    /* the real ops */
    eng_backend real;
};

/* "layer 12 mlp.experts.down" / "model.layers.3.linear_attn.out_proj.weight" -> with the layer
 * number replaced by '*'. */
static void fold_name(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; in[i] && o + 1 < cap;) {
        if (isdigit((unsigned char)in[i]) && i > 0 && (in[i - 1] == ' ' || in[i - 1] == '.')) {
            out[o++] = '*';
            while (isdigit((unsigned char)in[i])) i++;
        } else {
            out[o++] = in[i++];
        }
    }
    out[o] = '\0';
    /* "model.layers.*.x.weight" -> "layer * x", as the model's own fused-weight names */
    const char *pre = "model.layers.*.", *suf = ".weight";
    size_t lp = strlen(pre), ls = strlen(suf);
    if (o > ls && !strcmp(out + o - ls, suf)) out[o -= ls] = '\0';
    if (!strncmp(out, pre, lp) && cap > 8) {
        memmove(out + 8, out + lp, o - lp + 1);
        memcpy(out, "layer * ", 8);
    }
}

static void prof_add(cpu_ctx *c, const char *name, int T, double secs)
{
    cpu_prof *p = c->prof;
    if (p->forwards <= p->skip) return;
    int i = 0;
    while (i < p->n && strcmp(p->e[i].name, name) != 0) i++;
    if (i == p->n) {
        if (p->n == PROF_MAX) return;
        snprintf(p->e[p->n++].name, sizeof p->e[0].name, "%s", name);
    }
    p->e[i].calls[T > 1]++;
    p->e[i].secs[T > 1] += secs;
}

static int seq_rows(const qn_seq_desc *s, int n)
{
    int r = 0;
    for (int i = 0; i < n; i++) r += s[i].n_new;
    return r;
}

#define REAL(ctx) (((cpu_ctx *)(ctx))->prof->real)
#define TIMED(ctx, name, T, call)                                                                                \
    do {                                                                                                         \
        double t0_ = eng_now_s();                                                                                \
        call;                                                                                                    \
        prof_add((cpu_ctx *)(ctx), name, T, eng_now_s() - t0_);                                                  \
    } while (0)

static void p_embed(void *ctx, const qn_weight *w, const int32_t *ids, int T, float *out)
{
    ((cpu_ctx *)ctx)->prof->forwards++;
    TIMED(ctx, "embed", T, REAL(ctx).embed(ctx, w, ids, T, out));
}

static void p_matmul(void *ctx, const qn_weight *w, int mat, const float *x, int64_t ldx, int T, float *y, int64_t ldy)
{
    char name[96];
    fold_name(cpu_w(w)->name, name, sizeof name);
    TIMED(ctx, name, T, REAL(ctx).matmul(ctx, w, mat, x, ldx, T, y, ldy));
}

static void p_rmsnorm(void *ctx, const float *x, int64_t ldx, int T, int n, const float *w, float eps, float *y,
                      int64_t ldy)
{
    TIMED(ctx, "rmsnorm", T, REAL(ctx).rmsnorm(ctx, x, ldx, T, n, w, eps, y, ldy));
}

static void p_add_rmsnorm(void *ctx, float *res, const float *delta, int T, int n, const float *w, float eps, float *y)
{
    TIMED(ctx, "add_rmsnorm", T, REAL(ctx).add_rmsnorm(ctx, res, delta, T, n, w, eps, y));
}

static void p_add(void *ctx, float *x, const float *delta, int T, int n)
{
    TIMED(ctx, "add", T, REAL(ctx).add(ctx, x, delta, T, n));
}

static void p_silu_mul(void *ctx, const float *gu, int64_t ldgu, int T, int inter, float *out)
{
    TIMED(ctx, "silu_mul", T, REAL(ctx).silu_mul(ctx, gu, ldgu, T, inter, out));
}

static void p_gdn_conv(void *ctx, const qn_seq_desc *seqs, int n_seqs, const float *x, int64_t ldx, int conv_dim,
                       const float *w, const qn_gdn_dims *d, const qn_state_view *st, float *out)
{
    TIMED(ctx, "gdn_conv", seq_rows(seqs, n_seqs), REAL(ctx).gdn_conv(ctx, seqs, n_seqs, x, ldx, conv_dim, w, d, st, out));
}

static void p_gdn_gates(void *ctx, const float *ba, int64_t ldba, int T, int n_v_heads, const float *A_log,
                        const float *dt_bias, float *beta, float *g)
{
    TIMED(ctx, "gdn_gates", T, REAL(ctx).gdn_gates(ctx, ba, ldba, T, n_v_heads, A_log, dt_bias, beta, g));
}

static void p_gdn(void *ctx, const qn_seq_desc *seqs, int n_seqs, const float *qkv, const float *beta, const float *g,
                  const qn_gdn_dims *d, const qn_state_view *st, float *out)
{
    TIMED(ctx, "gdn", seq_rows(seqs, n_seqs), REAL(ctx).gdn(ctx, seqs, n_seqs, qkv, beta, g, d, st, out));
}

static void p_gated_rmsnorm(void *ctx, const float *o, const float *z, int64_t ldz, int T, int n_heads, int dv,
                            const float *w, float eps, float *out)
{
    TIMED(ctx, "gated_rmsnorm", T, REAL(ctx).gated_rmsnorm(ctx, o, z, ldz, T, n_heads, dv, w, eps, out));
}

static void p_qk_norm_rope(void *ctx, float *q, int64_t ldq, int n_q, float *k, int64_t ldk, int n_k, int T,
                           int head_dim, const float *qw, const float *kw, float eps, const int32_t *pos, int rot_dim,
                           const float *inv_freq, float rope_scale)
{
    TIMED(ctx, "qk_norm_rope", T,
          REAL(ctx).qk_norm_rope(ctx, q, ldq, n_q, k, ldk, n_k, T, head_dim, qw, kw, eps, pos, rot_dim, inv_freq,
                                 rope_scale));
}

static void p_kv_write(void *ctx, const qn_seq_desc *seqs, int n_seqs, const float *k, int64_t ldk, const float *v,
                       int64_t ldv, const qn_attn_dims *d, const qn_kv_view *kv)
{
    TIMED(ctx, "kv_write", seq_rows(seqs, n_seqs), REAL(ctx).kv_write(ctx, seqs, n_seqs, k, ldk, v, ldv, d, kv));
}

static void p_attention(void *ctx, const qn_seq_desc *seqs, int n_seqs, const float *q, int64_t ldq, const float *gate,
                        int64_t ldgate, const qn_attn_dims *d, const qn_kv_view *kv, float *out)
{
    TIMED(ctx, "attention", seq_rows(seqs, n_seqs),
          REAL(ctx).attention(ctx, seqs, n_seqs, q, ldq, gate, ldgate, d, kv, out));
}

static void p_moe_route(void *ctx, const float *logits, int64_t ldl, int T, int n_experts, int top_k, bool norm_topk,
                        int32_t *idx, float *wt)
{
    TIMED(ctx, "moe_route", T, REAL(ctx).moe_route(ctx, logits, ldl, T, n_experts, top_k, norm_topk, idx, wt));
}

static void p_moe_experts(void *ctx, const qn_weight *gate_up, const qn_weight *down, int inter, const float *x, int T,
                          int H, const int32_t *idx, const float *wt, int top_k, const float *shared,
                          const float *shared_gate, int64_t ld_sg, float *out)
{
    TIMED(ctx, "moe_experts", T,
          REAL(ctx).moe_experts(ctx, gate_up, down, inter, x, T, H, idx, wt, top_k, shared, shared_gate, ld_sg, out));
}

static void p_get_rows(void *ctx, const float *x, int64_t ldx, int cols, const int32_t *rows, int n, float *out)
{
    TIMED(ctx, "get_rows", n, REAL(ctx).get_rows(ctx, x, ldx, cols, rows, n, out));
}

bool cpu_prof_wrap(cpu_ctx *c, eng_backend *be)
{
    const char *e = getenv("QNEXT_CPU_PROFILE");
    if (!e || !*e) return true;
    c->prof = eng_calloc(1, sizeof *c->prof);
    if (!c->prof) return false;
    c->prof->skip = atoi(e) > 0 ? atoi(e) : 0;
    c->prof->real = *be;
    be->embed = p_embed;
    be->matmul = p_matmul;
    be->rmsnorm = p_rmsnorm;
    be->add_rmsnorm = p_add_rmsnorm;
    be->add = p_add;
    be->silu_mul = p_silu_mul;
    be->gdn_conv = p_gdn_conv;
    be->gdn_gates = p_gdn_gates;
    be->gdn = p_gdn;
    be->gated_rmsnorm = p_gated_rmsnorm;
    be->qk_norm_rope = p_qk_norm_rope;
    be->kv_write = p_kv_write;
    be->attention = p_attention;
    be->moe_route = p_moe_route;
    be->moe_experts = p_moe_experts;
    be->get_rows = p_get_rows;
    return true;
}

static int by_total(const void *a, const void *b)
{
    const prof_entry *x = a, *y = b;
    double tx = x->secs[0] + x->secs[1], ty = y->secs[0] + y->secs[1];
    return tx < ty ? 1 : tx > ty ? -1 : 0;
}

void cpu_prof_report(cpu_ctx *c)
{
    cpu_prof *p = c->prof;
    if (!p) return;
    double tot[2] = {0, 0};
    for (int i = 0; i < p->n; i++)
        for (int k = 0; k < 2; k++) tot[k] += p->e[i].secs[k];
    qsort(p->e, (size_t)p->n, sizeof p->e[0], by_total);
    fprintf(stderr, "qnext cpu profile (%s, %d threads)\n", c->name, c->n_threads);
    fprintf(stderr, "%-44s %8s %10s %6s | %8s %10s %6s\n", "op", "T>1 n", "T>1 ms", "%", "T=1 n", "T=1 ms", "%");
    for (int i = 0; i < p->n; i++) {
        const prof_entry *e = &p->e[i];
        fprintf(stderr, "%-44s %8ld %10.2f %6.1f | %8ld %10.2f %6.1f\n", e->name, e->calls[1], 1e3 * e->secs[1],
                tot[1] > 0 ? 100 * e->secs[1] / tot[1] : 0, e->calls[0], 1e3 * e->secs[0],
                tot[0] > 0 ? 100 * e->secs[0] / tot[0] : 0);
    }
    fprintf(stderr, "%-44s %8s %10.2f %6s | %8s %10.2f\n", "total", "", 1e3 * tot[1], "", "", 1e3 * tot[0]);
    eng_free(p);
    c->prof = NULL;
}
