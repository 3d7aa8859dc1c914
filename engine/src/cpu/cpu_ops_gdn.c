/* cpu/cpu_ops_gdn.c - CPU ops of the Gated DeltaNet layer (docs/qwen3-next.md section 3.5):
 * causal conv with conv state, gates, the gated delta rule (recurrent for one token, chunked for
 * more, both from the slot's fp32 state) and the gated RMSNorm.
 *
 * Delta rule, per value head h with K-head h / (Hv/Hk), state S [dk][dv] (row kd is a dv vector):
 *   recurrent:  S *= exp(g); u = S^T k; d = beta (v - u); S += k d^T; o = S^T q
 *               (computed as one read pass for S^T k and S^T q, then one update pass)
 *   chunked (section 3.5.6), chunks of up to 64 tokens whose boundaries are the multiples of 64 of
 *   the absolute position: gamma = cumsum(g); L_ij = beta_i (k_i.k_j) exp(gamma_i - gamma_j) (i > j);
 *   U = (I+L)^-1 diag(beta) V; W = (I+L)^-1 diag(beta exp(gamma)) K; U' = U - W S;
 *   O_i = exp(gamma_i) q_i S + sum_{j<=i} (q_i.k_j) exp(gamma_i - gamma_j) U'_j;
 *   S = exp(gamma_last) S + sum_i exp(gamma_last - gamma_i) k_i U'_i^T,
 *   all as small matrix products (the kernel table's mm) with (I+L)^-1 formed explicitly.
 * q and k are L2-normalised (x / sqrt(sum x^2 + 1e-6)) and q scaled by dk^-0.5 first. Every sum
 * runs in a fixed order over the sequence's own tokens, so results are independent of the batch.
 */
#include "cpu/cpu_impl.h"

#include <math.h>
#include <string.h>

#define CONV_BLOCK 256 /* channels per conv task */

/* ==== conv ==================================================================================== */

typedef struct conv_job {
    const cpu_kernels *k;
    const qn_seq_desc *seqs;
    const float *x, *w;
    int64_t ldx;
    int C, n_blocks;
    const qn_gdn_dims *d;
    const qn_state_view *st;
    float *out;
} conv_job;

static void conv_task(void *arg, int task, int thread)
{
    (void)thread;
    const conv_job *j = arg;
    const qn_seq_desc *s = &j->seqs[task / j->n_blocks];
    const int C = j->C, K = j->d->conv_k;
    const int c0 = (task % j->n_blocks) * CONV_BLOCK, c1 = c0 + CONV_BLOCK < C ? c0 + CONV_BLOCK : C;
    const int nc = c1 - c0;
    CPU_ASSERT(s->slot >= 0 && s->slot < j->st->n_slots && K >= 1 && K <= 16);
    float *state = j->st->conv + ((size_t)s->slot * j->st->n_layers + j->d->layer) * (size_t)(K - 1) * C;
    const bool fresh = s->pos == 0;
    static const float zeros[CONV_BLOCK];
    for (int t = 0; t < s->n_new; t++) {
        float *o = j->out + (size_t)(s->row0 + t) * C + c0;
        memset(o, 0, (size_t)nc * sizeof *o);
        for (int tap = 0; tap < K; tap++) {
            const int idx = t - (K - 1) + tap; /* input token relative to the first new one */
            const float *src = idx >= 0 ? j->x + (size_t)(s->row0 + idx) * j->ldx + c0
                               : fresh  ? zeros
                                        : state + (size_t)(K - 1 + idx) * C + c0;
            const float *wt = j->w + (size_t)tap * C + c0;
            for (int c = 0; c < nc; c++) o[c] += wt[c] * src[c];
        }
        j->k->silu(o, o, nc);
    }
    /* New state: the last K-1 inputs. Row i takes input n_new-(K-1)+i, which is either a new
     * input or the old state row i + n_new > i, not yet overwritten. */
    for (int i = 0; i < K - 1; i++) {
        const int idx = s->n_new - (K - 1) + i;
        float *dst = state + (size_t)i * C + c0;
        if (idx >= 0)
            memcpy(dst, j->x + (size_t)(s->row0 + idx) * j->ldx + c0, (size_t)nc * sizeof *dst);
        else if (fresh)
            memset(dst, 0, (size_t)nc * sizeof *dst);
        else
            memmove(dst, state + (size_t)(K - 1 + idx) * C + c0, (size_t)nc * sizeof *dst);
    }
}

void cpu_op_gdn_conv(void *ctx, const qn_seq_desc *seqs, int n_seqs, const float *x, int64_t ldx, int conv_dim,
                     const float *w, const qn_gdn_dims *d, const qn_state_view *st, float *out)
{
    cpu_ctx *c = ctx;
    CPU_ASSERT(conv_dim == st->conv_dim && d->conv_k == st->conv_k && d->layer >= 0 && d->layer < st->n_layers);
    conv_job j = {c->k, seqs, x, w, ldx, conv_dim, (conv_dim + CONV_BLOCK - 1) / CONV_BLOCK, d, st, out};
    double rows = 0;
    for (int i = 0; i < n_seqs; i++) rows += seqs[i].n_new;
    cpu_run(c, n_seqs * j.n_blocks, conv_task, &j, rows * conv_dim * d->conv_k);
}

/* ==== gates =================================================================================== */

void cpu_op_gdn_gates(void *ctx, const float *ba, int64_t ldba, int T, int n_v_heads, const float *A_log,
                      const float *dt_bias, float *beta, float *g)
{
    (void)ctx;
    for (int t = 0; t < T; t++) {
        const float *b = ba + (size_t)t * ldba, *a = b + n_v_heads;
        for (int h = 0; h < n_v_heads; h++) {
            beta[(size_t)t * n_v_heads + h] = cpu_sigmoid(b[h]);
            float xa = a[h] + dt_bias[h];
            float sp = xa > 20.0f ? xa : log1pf(expf(xa));
            g[(size_t)t * n_v_heads + h] = -expf(A_log[h]) * sp;
        }
    }
}

/* ==== delta rule ============================================================================== */

size_t cpu_gdn_scratch_floats(const qn_op_limits *lim)
{
    if (lim->gdn_dk <= 0 || lim->gdn_dv <= 0) return 0;
    size_t dk = (size_t)lim->gdn_dk, dv = (size_t)lim->gdn_dv, C = CPU_GDN_CHUNK;
    return C * (5 * dk + 2 * dv) + 3 * C * C + 3 * C + 2 * dv + 64;
}

typedef struct gdn_job {
    const cpu_kernels *k;
    cpu_scratch *scratch;
    const qn_seq_desc *seqs;
    const float *qkv, *beta, *g;
    const qn_gdn_dims *d;
    const qn_state_view *st;
    float *out;
} gdn_job;

/* dst = x / sqrt(sum x^2 + 1e-6) * scale */
static void l2norm(const cpu_kernels *k, const float *x, int n, float scale, float *dst)
{
    float inv = 1.0f / sqrtf(k->dot(x, x, n) + 1e-6f);
    for (int i = 0; i < n; i++) dst[i] = (x[i] * inv) * scale;
}

/* One token: with S' = e^g S + k d^T and d = beta (v - e^g S^T k),
 *   o = S'^T q = e^g S^T q + d (k . q),
 * so one read pass over S gives S^T k and S^T q, and one read-write pass applies the update. */
static void gdn_recurrent(const gdn_job *j, const qn_seq_desc *s, int h, float *S, float *sc)
{
    const cpu_kernels *k = j->k;
    const qn_gdn_dims *d = j->d;
    const int dk = d->dk, dv = d->dv, Hv = d->n_v_heads, kh = h / (Hv / d->n_k_heads);
    const int C = 2 * d->n_k_heads * dk + Hv * dv;
    float *q = sc, *kk = q + dk, *u = kk + dk, *o = u + dv;
    const size_t t = (size_t)s->row0;
    const float *row = j->qkv + t * C;
    l2norm(k, row + kh * dk, dk, 1.0f / sqrtf((float)dk), q);
    l2norm(k, row + d->n_k_heads * dk + kh * dk, dk, 1.0f, kk);
    const float *v = row + 2 * d->n_k_heads * dk + h * dv;
    const float decay = expf(j->g[t * Hv + h]), beta = j->beta[t * Hv + h];
    memset(u, 0, (size_t)dv * sizeof *u);
    memset(o, 0, (size_t)dv * sizeof *o);
    for (int a = 0; a < dk; a++) {
        const float *Sr = S + (size_t)a * dv;
        k->axpy(u, kk[a], Sr, dv);
        k->axpy(o, q[a], Sr, dv);
    }
    const float kq = k->dot(kk, q, dk);
    for (int b = 0; b < dv; b++) u[b] = (v[b] - decay * u[b]) * beta; /* u becomes the delta d */
    for (int b = 0; b < dv; b++) o[b] = decay * o[b] + kq * u[b];
    for (int a = 0; a < dk; a++) k->axpby(S + (size_t)a * dv, kk[a], u, decay, dv);
    memcpy(j->out + t * (size_t)(Hv * dv) + (size_t)h * dv, o, (size_t)dv * sizeof *o);
}

/* One chunk of m tokens starting at batch row r0, as matrix products (the WY form):
 *   A = Q K^T, B = K K^T (m x m); P = A o D (lower with diagonal), L = diag(beta) B o D (strictly
 *   lower), D_ij = exp(gamma_i - gamma_j); T = (I + L)^-1 by rows;
 *   U = T diag(beta) V; W = T diag(beta e^gamma) K; U' = U - W S;
 *   O = diag(e^gamma) Q S + P U';  S = e^gamma_last S + (diag(e^(gamma_last - gamma)) K)^T U'.
 * The products run on the kernel table's mm (fixed order per element), so the result depends only
 * on this chunk's tokens and the incoming state. */
static void gdn_chunk(const gdn_job *j, int r0, int m, int h, float *S, float *sc)
{
    const cpu_kernels *k = j->k;
    const qn_gdn_dims *d = j->d;
    const int dk = d->dk, dv = d->dv, Hv = d->n_v_heads, Hk = d->n_k_heads, kh = h / (Hv / Hk);
    const int C = 2 * Hk * dk + Hv * dv;
    const int CH = CPU_GDN_CHUNK, mp = (m + 15) & ~15; /* mp: m rounded up to whole vectors */
    float *Q = sc;            /* [CH][dk] normalised, scaled queries (later times e^gamma) */
    float *K = Q + CH * dk;   /* [CH][dk] normalised keys */
    float *KT = K + CH * dk;  /* [dk][CH] K transposed, columns m..mp-1 zero (later decayed) */
    float *Kb = KT + dk * CH; /* [CH][dk] diag(beta e^gamma) K */
    float *W = Kb + CH * dk;  /* [CH][dk] -T Kb */
    float *Vb = W + CH * dk;  /* [CH][dv] diag(beta) V, later O */
    float *U = Vb + CH * dv;  /* [CH][dv] T Vb, then U' */
    float *P = U + CH * dv;   /* [CH][CH] */
    float *L = P + CH * CH;   /* [CH][CH] */
    float *Tm = L + CH * CH;  /* [CH][CH] (I + L)^-1 */
    float *gam = Tm + CH * CH, *bet = gam + CH, *eg = bet + CH; /* [CH] gamma, beta, e^gamma */
    const float qscale = 1.0f / sqrtf((float)dk);
    float acc = 0.0f;
    for (int i = 0; i < m; i++) {
        const size_t t = (size_t)(r0 + i);
        const float *row = j->qkv + t * C;
        l2norm(k, row + kh * dk, dk, qscale, Q + i * dk);
        l2norm(k, row + Hk * dk + kh * dk, dk, 1.0f, K + i * dk);
        acc += j->g[t * Hv + h];
        gam[i] = acc;
        bet[i] = j->beta[t * Hv + h];
    }
    for (int a = 0; a < dk; a++)
        for (int i = 0; i < mp; i++) KT[a * CH + i] = i < m ? K[i * dk + a] : 0.0f;
    /* only the lower triangle is used: rows [i0, i0 + 16) need columns < i0 + 16 */
    for (int i0 = 0; i0 < m; i0 += 16) {
        const int mr = m - i0 < 16 ? m - i0 : 16, nc = i0 + 16 < mp ? i0 + 16 : mp;
        k->mm(P + i0 * CH, CH, Q + i0 * dk, dk, KT, CH, mr, nc, dk, false, false);
        k->mm(L + i0 * CH, CH, K + i0 * dk, dk, KT, CH, mr, nc, dk, false, false);
    }
    for (int i = 0; i < m; i++) {
        float *Pi = P + i * CH, *Li = L + i * CH, *dec = Tm + i * CH; /* Tm's row i as scratch */
        for (int jj = 0; jj <= i; jj++) dec[jj] = gam[i] - gam[jj];
        k->expv(dec, dec, i + 1);
        for (int jj = 0; jj <= i; jj++) {
            Pi[jj] *= dec[jj];
            Li[jj] = jj < i ? bet[i] * Li[jj] * dec[jj] : 0.0f;
        }
        for (int jj = i + 1; jj < mp; jj++) Pi[jj] = Li[jj] = 0.0f;
    }
    /* T = (I + L)^-1: row i = e_i - sum_{j<i} L_ij T_j (row j is zero beyond column j) */
    for (int i = 0; i < m; i++) {
        float *Ti = Tm + i * CH;
        memset(Ti, 0, (size_t)mp * sizeof *Ti);
        Ti[i] = 1.0f;
        for (int jj = 0; jj < i; jj++) k->axpy(Ti, -L[i * CH + jj], Tm + jj * CH, jj + 1);
    }
    k->expv(eg, gam, m);
    for (int i = 0; i < m; i++) {
        const float *v = j->qkv + (size_t)(r0 + i) * C + 2 * Hk * dk + h * dv;
        const float eb = bet[i] * eg[i];
        for (int b = 0; b < dv; b++) Vb[i * dv + b] = v[b] * bet[i];
        for (int a = 0; a < dk; a++) Kb[i * dk + a] = K[i * dk + a] * eb;
    }
    k->mm(U, dv, Tm, CH, Vb, dv, m, dv, m, false, true);
    k->mm(W, dk, Tm, CH, Kb, dk, m, dk, m, false, true);
    for (int i = 0; i < m * dk; i++) W[i] = -W[i];
    k->mm(U, dv, W, dk, S, dv, m, dv, dk, true, false); /* U' = U - W S */
    for (int i = 0; i < m; i++)
        for (int a = 0; a < dk; a++) Q[i * dk + a] *= eg[i];
    float *O = Vb;
    k->mm(O, dv, Q, dk, S, dv, m, dv, dk, false, false);
    k->mm(O, dv, P, CH, U, dv, m, dv, m, true, true);
    for (int i = 0; i < m; i++)
        memcpy(j->out + (size_t)(r0 + i) * (size_t)(Hv * dv) + (size_t)h * dv, O + i * dv, (size_t)dv * sizeof *O);
    /* state */
    const float glast = gam[m - 1], dlast = eg[m - 1];
    for (int i = 0; i < m; i++) bet[i] = glast - gam[i]; /* reuse: per-token key decay */
    k->expv(bet, bet, m);
    for (int a = 0; a < dk; a++)
        for (int i = 0; i < m; i++) KT[a * CH + i] *= bet[i];
    for (size_t i = 0; i < (size_t)dk * dv; i++) S[i] *= dlast;
    k->mm(S, dv, KT, CH, U, dv, dk, dv, m, true, false);
}

static void gdn_task(void *arg, int task, int thread)
{
    const gdn_job *j = arg;
    const qn_gdn_dims *d = j->d;
    const int Hv = d->n_v_heads;
    const qn_seq_desc *s = &j->seqs[task / Hv];
    const int h = task % Hv;
    CPU_ASSERT(s->slot >= 0 && s->slot < j->st->n_slots);
    float *S = j->st->ssm + (((size_t)s->slot * j->st->n_layers + d->layer) * Hv + h) * (size_t)d->dk * d->dv;
    if (s->pos == 0) memset(S, 0, (size_t)d->dk * d->dv * sizeof *S);
    float *sc = j->scratch[thread].buf;
    if (s->n_new == 1) {
        gdn_recurrent(j, s, h, S, sc);
        return;
    }
    int t = 0, p = s->pos;
    while (t < s->n_new) {
        int m = CPU_GDN_CHUNK - p % CPU_GDN_CHUNK;
        if (m > s->n_new - t) m = s->n_new - t;
        gdn_chunk(j, s->row0 + t, m, h, S, sc);
        t += m;
        p += m;
    }
}

void cpu_op_gdn(void *ctx, const qn_seq_desc *seqs, int n_seqs, const float *qkv, const float *beta, const float *g,
                const qn_gdn_dims *d, const qn_state_view *st, float *out)
{
    cpu_ctx *c = ctx;
    CPU_ASSERT(d->n_k_heads > 0 && d->n_v_heads % d->n_k_heads == 0);
    CPU_ASSERT(d->dk <= c->lim.gdn_dk && d->dv <= c->lim.gdn_dv);
    CPU_ASSERT(st->n_v_heads == d->n_v_heads && st->dk == d->dk && st->dv == d->dv && d->layer < st->n_layers);
    gdn_job j = {c->k, c->scratch, seqs, qkv, beta, g, d, st, out};
    double rows = 0;
    for (int i = 0; i < n_seqs; i++) rows += seqs[i].n_new;
    cpu_run(c, n_seqs * d->n_v_heads, gdn_task, &j, 8.0 * rows * d->n_v_heads * d->dk * d->dv);
}

#define GNORM_CHUNK 256 /* SiLU(z) values computed at a time */

/* ==== gated RMSNorm =========================================================================== */

typedef struct gnorm_job {
    const cpu_kernels *k;
    const float *o, *z, *w;
    int64_t ldz;
    int n_heads, dv;
    float eps;
    float *out;
} gnorm_job;

static void gnorm_task(void *arg, int t, int thread)
{
    (void)thread;
    const gnorm_job *j = arg;
    for (int h = 0; h < j->n_heads; h++) {
        const size_t off = (size_t)t * (size_t)(j->n_heads * j->dv) + (size_t)h * j->dv;
        const float *x = j->o + off, *z = j->z + (size_t)t * j->ldz + (size_t)h * j->dv;
        float *y = j->out + off;
        float r = 1.0f / sqrtf(j->k->dot(x, x, j->dv) / (float)j->dv + j->eps);
        for (int i0 = 0; i0 < j->dv; i0 += GNORM_CHUNK) {
            float sz[GNORM_CHUNK];
            const int n = j->dv - i0 < GNORM_CHUNK ? j->dv - i0 : GNORM_CHUNK;
            j->k->silu(sz, z + i0, n);
            for (int i = i0; i < i0 + n; i++) y[i] = (j->w[i] * (x[i] * r)) * sz[i - i0];
        }
    }
}

void cpu_op_gated_rmsnorm(void *ctx, const float *o, const float *z, int64_t ldz, int T, int n_heads, int dv,
                          const float *w, float eps, float *out)
{
    cpu_ctx *c = ctx;
    gnorm_job j = {c->k, o, z, w, ldz, n_heads, dv, eps, out};
    cpu_run(c, T, gnorm_task, &j, 4.0 * T * n_heads * dv);
}
