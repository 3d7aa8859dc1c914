/* tests/support/fake_engine.c - the deterministic fake engine (behaviour: fake_engine.h).
 *
 * Structure: one mutex guards everything (requests are few and steps are tiny); eng_step holds it
 * while it generates a step's events and releases it only to sleep QNEXT_FAKE_STEP_MS. Event
 * payloads live in a per-step arena that is freed when the next step is generated, which honours
 * eng.h's "valid until the next eng_step call" (events of one step may span several calls when
 * `cap` is small; the arena lives until all of them were returned).
 */
#include "fake_engine.h"

#include "qnext/tokenizer.h" /* defines: eng_tokenizer_load, eng_tokenizer_destroy */

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ==== helpers ================================================================================= */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms)
{
    if (ms <= 0) return;
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

static int env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001B3ull;
    }
    return h;
}

#define FNV_INIT 0xCBF29CE484222325ull

/* ==== engine state ============================================================================ */

typedef struct fake_choice {
    uint64_t seed;
    int n_gen;        /* token ids emitted */
    int natural_len;  /* EOS (or the tool call) after this many tokens */
    int n_reasoning;
    int tool_phase;   /* 0: none yet, 1: the call's first fragments went out */
    bool done;
    char *text;       /* everything generated so far */
    size_t len, cap, emitted; /* bytes of text already sent in events */
    double t_first, t_last, itl_sum;
} fake_choice;

typedef struct fake_req {
    uint64_t id, seq;
    int priority;
    int n;
    bool greedy, chat, tools, parse_output, ignore_eos, cancel;
    int max_tokens, min_tokens, logprobs;
    int prompt_len;
    uint64_t hash;
    char **stop;
    size_t n_stop;
    int32_t *stop_ids;
    size_t n_stop_ids;
    double t_submit, t_admit;
    fake_choice *ch;
    int n_open;
    struct fake_req *next;
} fake_req;

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} arena_block;

struct eng_engine {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    eng_config cfg;
    char *model_dir, *model_id;
    const char *template_kind;
    int step_ms;
    eng_tokenizer *tok;

    fake_req *waiting, *running; /* singly linked; waiting unsorted, picked by (priority, seq) */
    int n_waiting, n_running;
    uint64_t next_id, next_seq;

    eng_event *ev; /* events of the last generated step */
    size_t n_ev, cap_ev, ev_pos;
    arena_block *arena;

    uint64_t prompt_tokens_total, generation_tokens_total, steps_total;
    double rate_t0;
    uint64_t rate_gen0, rate_prompt0;
    double gen_rate, prompt_rate;
};

static void *arena_alloc(eng_engine *e, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    arena_block *b = e->arena;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = e->arena;
        b->used = 0;
        b->cap = cap;
        e->arena = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

static char *arena_strndup(eng_engine *e, const char *s, size_t n)
{
    char *d = arena_alloc(e, n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static void arena_reset(eng_engine *e)
{
    while (e->arena) {
        arena_block *n = e->arena->next;
        free(e->arena);
        e->arena = n;
    }
}

static void req_free(fake_req *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->stop);
    free(r->stop_ids);
    if (r->ch)
        for (int c = 0; c < r->n; c++) free(r->ch[c].text);
    free(r->ch);
    free(r);
}

/* ==== public: defaults ======================================================================== */

/* eng_config_init, eng_request_init, eng_finish_reason_str: the engine's own (engine/src/api). */

/* ==== lifecycle =============================================================================== */

eng_status eng_create(const eng_config *cfg, eng_engine **out)
{
    *out = NULL;
    if (!cfg || !cfg->model_dir || !cfg->model_dir[0])
        return eng_err_set(ENG_ERR_INVALID, "fake engine: model_dir is required");
    struct stat st;
    if (stat(cfg->model_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return eng_err_set(ENG_ERR_IO, "fake engine: %s: not a folder", cfg->model_dir);
    sleep_ms(env_int("QNEXT_FAKE_LOAD_MS", 0));
    if (env_int("QNEXT_FAKE_LOAD_FAIL", 0) == 1)
        return eng_err_set(ENG_ERR_FORMAT, "fake engine: model load failed (QNEXT_FAKE_LOAD_FAIL)");
    if (cfg->max_running < 1 || cfg->max_queue < 0 || cfg->max_model_len < 0)
        return eng_err_set(ENG_ERR_INVALID, "fake engine: bad limits (max_running %d, max_queue %d, max_model_len %d)",
                           cfg->max_running, cfg->max_queue, cfg->max_model_len);

    eng_engine *e = calloc(1, sizeof *e);
    if (!e) return eng_err_set(ENG_ERR_NOMEM, "fake engine: out of memory");
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->cfg = *cfg;
    if (!e->cfg.max_model_len) e->cfg.max_model_len = FAKE_DEFAULT_MAX_MODEL_LEN;
    e->model_dir = strdup(cfg->model_dir);
    size_t n = strlen(e->model_dir);
    while (n > 1 && e->model_dir[n - 1] == '/') e->model_dir[--n] = '\0';
    const char *base = strrchr(e->model_dir, '/');
    e->model_id = strdup(base ? base + 1 : e->model_dir);
    e->template_kind = "instruct";
    const char *ct = cfg->chat_template;
    if (ct && (!strcmp(ct, "thinking") || !strcmp(ct, "hybrid"))) e->template_kind = !strcmp(ct, "thinking") ? "thinking" : "hybrid";
    e->step_ms = env_int("QNEXT_FAKE_STEP_MS", 0);
    e->next_id = 1;
    e->rate_t0 = now_s();
    eng_status s = ENG_OK;
    if (!e->model_dir || !e->model_id) {
        s = eng_err_set(ENG_ERR_NOMEM, "fake engine: out of memory");
        goto fail;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", e->model_dir);
    if (stat(path, &st) == 0 && (s = eng_tokenizer_load(path, &e->tok)) != ENG_OK) goto fail;
    *out = e;
    return ENG_OK;
fail:
    eng_destroy(e);
    return s;
}

void eng_destroy(eng_engine *e)
{
    if (!e) return;
    for (int pass = 0; pass < 2; pass++) {
        fake_req *r = pass ? e->running : e->waiting;
        while (r) {
            fake_req *n = r->next;
            req_free(r);
            r = n;
        }
    }
    arena_reset(e);
    free(e->ev);
    eng_tokenizer_destroy(e->tok);
    free(e->model_dir);
    free(e->model_id);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

/* ==== submit / cancel ========================================================================= */

static eng_status prompt_of(eng_engine *e, const eng_request *r, uint64_t *hash, int *len)
{
    uint64_t h = FNV_INIT;
    size_t n = 0;
    switch (r->input) {
    case ENG_INPUT_TEXT:
        if (!r->text || !r->text[0]) return eng_err_set(ENG_ERR_INVALID, "fake engine: empty prompt");
        n = strlen(r->text);
        for (size_t i = 0; i < n; i++) {
            int32_t t = (unsigned char)r->text[i];
            h = fnv1a(h, &t, 4);
        }
        break;
    case ENG_INPUT_TOKENS:
        if (!r->tokens || !r->n_tokens) return eng_err_set(ENG_ERR_INVALID, "fake engine: empty prompt");
        for (size_t i = 0; i < r->n_tokens; i++) {
            if (r->tokens[i] < 0 || r->tokens[i] >= FAKE_VOCAB_SIZE)
                return eng_err_set(ENG_ERR_INVALID, "token id %d at position %zu is outside the vocabulary (0..%d)",
                                   r->tokens[i], i, FAKE_VOCAB_SIZE - 1);
            h = fnv1a(h, &r->tokens[i], 4);
        }
        n = r->n_tokens;
        break;
    case ENG_INPUT_CHAT: {
        const char *m = r->messages_json;
        while (m && (*m == ' ' || *m == '\n' || *m == '\t' || *m == '\r')) m++;
        if (!m || *m != '[') return eng_err_set(ENG_ERR_INVALID, "fake engine: messages_json must be a JSON array");
        for (int part = 0; part < 2; part++) {
            const char *s = part ? r->tools_json : r->messages_json;
            for (size_t i = 0; s && s[i]; i++, n++) {
                int32_t t = (unsigned char)s[i];
                h = fnv1a(h, &t, 4);
            }
        }
        break;
    }
    default: return eng_err_set(ENG_ERR_INVALID, "fake engine: unknown input kind %d", (int)r->input);
    }
    if (n >= (size_t)e->cfg.max_model_len)
        return eng_err_set(ENG_ERR_INVALID, "the prompt is %zu tokens but the context is %d", n, e->cfg.max_model_len);
    *hash = h;
    *len = (int)n;
    return ENG_OK;
}

eng_status eng_submit(eng_engine *e, const eng_request *r, uint64_t *id)
{
    const eng_sampling *sp = &r->sampling;
    if (sp->n < 1 || sp->n > 128) return eng_err_set(ENG_ERR_INVALID, "n must be 1..128 (got %d)", sp->n);
    if (sp->logprobs > 20) return eng_err_set(ENG_ERR_INVALID, "logprobs must be at most 20 (got %d)", sp->logprobs);
    if (sp->max_tokens == 0) return eng_err_set(ENG_ERR_INVALID, "max_tokens must be at least 1");
    uint64_t hash = 0;
    int plen = 0;
    eng_status s = prompt_of(e, r, &hash, &plen);
    if (s != ENG_OK) return s;

    fake_req *q = calloc(1, sizeof *q);
    if (!q) return eng_err_set(ENG_ERR_NOMEM, "fake engine: out of memory");
    q->n = sp->n;
    q->greedy = sp->temperature == 0.0f;
    q->chat = r->input == ENG_INPUT_CHAT;
    q->tools = q->chat && r->tools_json && strcmp(r->tools_json, "[]") && strcmp(r->tools_json, "null");
    q->parse_output = r->parse_output;
    q->ignore_eos = sp->ignore_eos;
    q->max_tokens = sp->max_tokens;
    q->min_tokens = sp->min_tokens;
    q->logprobs = sp->logprobs;
    q->priority = r->priority;
    q->prompt_len = plen;
    q->hash = hash;
    q->ch = calloc((size_t)q->n, sizeof *q->ch);
    if (sp->n_stop) q->stop = calloc(sp->n_stop, sizeof *q->stop);
    if (sp->n_stop_token_ids) q->stop_ids = malloc(sp->n_stop_token_ids * sizeof *q->stop_ids);
    if (!q->ch || (sp->n_stop && !q->stop) || (sp->n_stop_token_ids && !q->stop_ids)) goto oom;
    for (size_t i = 0; i < sp->n_stop; i++) {
        if (!sp->stop[i] || !sp->stop[i][0]) {
            q->n_stop = i;
            req_free(q);
            return eng_err_set(ENG_ERR_INVALID, "stop string %zu is empty", i);
        }
        if (!(q->stop[i] = strdup(sp->stop[i]))) {
            q->n_stop = i;
            goto oom;
        }
    }
    q->n_stop = sp->n_stop;
    if (sp->n_stop_token_ids) memcpy(q->stop_ids, sp->stop_token_ids, sp->n_stop_token_ids * sizeof *q->stop_ids);
    q->n_stop_ids = sp->n_stop_token_ids;
    for (int c = 0; c < q->n; c++) {
        uint64_t seed = hash;
        if (!q->greedy) seed ^= (uint64_t)(c + 1) * 0x9E3779B97F4A7C15ull;
        if (sp->has_seed) seed ^= sp->seed * 0xD1B54A32D192ED03ull;
        q->ch[c].seed = seed;
        q->ch[c].natural_len = 8 + (int)(seed % 25);
    }
    q->n_open = q->n;

    pthread_mutex_lock(&e->mu);
    if (e->n_waiting >= e->cfg.max_queue) {
        pthread_mutex_unlock(&e->mu);
        req_free(q);
        return eng_err_set(ENG_ERR_QUEUE_FULL, "the queue is full (%d waiting)", e->cfg.max_queue);
    }
    q->id = e->next_id++;
    q->seq = e->next_seq++;
    q->t_submit = now_s();
    q->next = e->waiting;
    e->waiting = q;
    e->n_waiting++;
    e->prompt_tokens_total += (uint64_t)plen;
    *id = q->id;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return ENG_OK;
oom:
    req_free(q);
    return eng_err_set(ENG_ERR_NOMEM, "fake engine: out of memory");
}

eng_status eng_cancel(eng_engine *e, uint64_t id)
{
    eng_status s = eng_err_set(ENG_ERR_NOT_FOUND, "no running request %llu", (unsigned long long)id);
    pthread_mutex_lock(&e->mu);
    for (int pass = 0; pass < 2; pass++)
        for (fake_req *r = pass ? e->running : e->waiting; r; r = r->next)
            if (r->id == id && !r->cancel) {
                r->cancel = true;
                s = ENG_OK;
            }
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return s;
}

/* ==== step ==================================================================================== */

static eng_event *ev_new(eng_engine *e, const fake_req *r, int c, eng_event_kind kind)
{
    if (e->n_ev == e->cap_ev) {
        size_t cap = e->cap_ev ? e->cap_ev * 2 : 64;
        eng_event *p = realloc(e->ev, cap * sizeof *p);
        if (!p) return NULL;
        e->ev = p;
        e->cap_ev = cap;
    }
    eng_event *ev = &e->ev[e->n_ev++];
    memset(ev, 0, sizeof *ev);
    ev->kind = kind;
    ev->request_id = r->id;
    ev->choice = c;
    ev->text = ev->content = ev->reasoning = "";
    ev->matched_stop_token = -1;
    return ev;
}

static int32_t token_at(const fake_choice *ch, int i)
{
    return FAKE_WORD_BASE + (int32_t)(splitmix64(ch->seed + (uint64_t)i) % FAKE_WORD_COUNT);
}

static bool text_append(fake_choice *ch, const char *s, size_t n)
{
    if (ch->len + n + 1 > ch->cap) {
        size_t cap = ch->cap ? ch->cap * 2 : 256;
        while (cap < ch->len + n + 1) cap *= 2;
        char *p = realloc(ch->text, cap);
        if (!p) return false;
        ch->text = p;
        ch->cap = cap;
    }
    memcpy(ch->text + ch->len, s, n);
    ch->len += n;
    ch->text[ch->len] = '\0';
    return true;
}

/* Earliest stop-string match at or after `from`; returns its index or -1 and sets *pos. */
static int stop_find(const fake_req *r, const fake_choice *ch, size_t from, size_t *pos)
{
    int best = -1;
    for (size_t i = 0; i < r->n_stop; i++) {
        const char *m = ch->text ? strstr(ch->text + from, r->stop[i]) : NULL;
        if (m && (best < 0 || (size_t)(m - ch->text) < *pos)) {
            best = (int)i;
            *pos = (size_t)(m - ch->text);
        }
    }
    return best;
}

/* Bytes at the end of the text that could begin a stop string. */
static size_t stop_holdback(const fake_req *r, const fake_choice *ch)
{
    size_t hold = 0;
    for (size_t i = 0; i < r->n_stop; i++) {
        size_t sl = strlen(r->stop[i]);
        for (size_t k = sl - 1; k > hold; k--)
            if (k <= ch->len - ch->emitted && !memcmp(ch->text + ch->len - k, r->stop[i], k)) {
                hold = k;
                break;
            }
    }
    return hold;
}

/* Fills the text fields of ev with text[emitted..upto) and advances `emitted`. */
static bool ev_text(eng_engine *e, const fake_req *r, fake_choice *ch, eng_event *ev, size_t upto)
{
    if (upto <= ch->emitted) return true;
    char *t = arena_strndup(e, ch->text + ch->emitted, upto - ch->emitted);
    if (!t) return false;
    ch->emitted = upto;
    ev->text = t;
    if (r->chat && r->parse_output && ch->n_gen <= 2) ev->reasoning = t;
    else ev->content = t;
    return true;
}

static void choice_done(eng_engine *e, fake_req *r, int c, eng_finish_reason why, const char *stop, int32_t stop_tok)
{
    fake_choice *ch = &r->ch[c];
    eng_event *ev = ev_new(e, r, c, ENG_EV_DONE);
    ch->done = true;
    r->n_open--;
    if (!ev) return;
    ev->finish = why;
    ev->matched_stop = stop ? arena_strndup(e, stop, strlen(stop)) : NULL; /* r may be freed this step */
    ev->matched_stop_token = stop_tok;
    ev->usage.prompt_tokens = r->prompt_len;
    ev->usage.completion_tokens = ch->n_gen;
    ev->usage.reasoning_tokens = ch->n_reasoning;
    double t = now_s();
    ev->timings.queue_s = r->t_admit > 0 ? r->t_admit - r->t_submit : t - r->t_submit;
    ev->timings.ttft_s = ch->t_first > 0 ? ch->t_first - r->t_submit : 0;
    ev->timings.total_s = t - r->t_submit;
    ev->timings.mean_itl_s = ch->n_gen > 1 ? ch->itl_sum / (ch->n_gen - 1) : 0;
}

/* Flushes held-back text in a TOKENS event (before a DONE). */
static void flush_text(eng_engine *e, fake_req *r, int c)
{
    fake_choice *ch = &r->ch[c];
    if (ch->emitted >= ch->len) return;
    eng_event *ev = ev_new(e, r, c, ENG_EV_TOKENS);
    if (ev) ev_text(e, r, ch, ev, ch->len);
}

static void step_choice(eng_engine *e, fake_req *r, int c)
{
    fake_choice *ch = &r->ch[c];
    if (r->cancel) {
        choice_done(e, r, c, ENG_FINISH_CANCELLED, NULL, -1);
        return;
    }
    if (ch->tool_phase == 1) {
        eng_event *ev = ev_new(e, r, c, ENG_EV_TOKENS);
        eng_tool_delta *td = arena_alloc(e, sizeof *td);
        char *args = arena_alloc(e, 32);
        if (ev && td && args) {
            snprintf(args, 32, "%d}", ch->n_gen);
            *td = (eng_tool_delta){0, NULL, NULL, args};
            ev->tool_deltas = td;
            ev->n_tool_deltas = 1;
        }
        choice_done(e, r, c, ENG_FINISH_TOOL_CALLS, NULL, -1);
        return;
    }
    bool stops_on = ch->n_gen >= r->min_tokens;
    if (r->prompt_len + ch->n_gen >= e->cfg.max_model_len) {
        flush_text(e, r, c);
        choice_done(e, r, c, ENG_FINISH_LENGTH, NULL, -1);
        return;
    }
    if (stops_on && !r->ignore_eos && ch->n_gen >= ch->natural_len) {
        flush_text(e, r, c);
        if (!r->tools) {
            choice_done(e, r, c, ENG_FINISH_STOP, NULL, -1);
            return;
        }
        eng_event *ev = ev_new(e, r, c, ENG_EV_TOKENS);
        eng_tool_delta *td = arena_alloc(e, 2 * sizeof *td);
        char *id = arena_alloc(e, 64);
        if (ev && td && id) {
            snprintf(id, 64, "call_fake_%llu_%d", (unsigned long long)r->id, c);
            td[0] = (eng_tool_delta){0, id, "fake_tool", ""};
            td[1] = (eng_tool_delta){0, NULL, NULL, "{\"n\": "};
            ev->tool_deltas = td;
            ev->n_tool_deltas = 2;
        }
        ch->tool_phase = 1;
        return;
    }
    int32_t t = token_at(ch, ch->n_gen);
    if (stops_on)
        for (size_t i = 0; i < r->n_stop_ids; i++)
            if (r->stop_ids[i] == t) {
                flush_text(e, r, c);
                choice_done(e, r, c, ENG_FINISH_STOP, NULL, t);
                return;
            }

    /* emit token t */
    eng_event *ev = ev_new(e, r, c, ENG_EV_TOKENS);
    if (!ev) return;
    int32_t *tp = arena_alloc(e, sizeof *tp);
    if (!tp) return;
    *tp = t;
    ev->tokens = tp;
    ev->n_tokens = 1;
    double now = now_s();
    if (ch->n_gen == 0) ch->t_first = now;
    else ch->itl_sum += now - ch->t_last;
    ch->t_last = now;
    ch->n_gen++;
    e->generation_tokens_total++;
    if (r->chat && r->parse_output && ch->n_gen <= 2) ch->n_reasoning++;
    if (r->logprobs >= 0) {
        eng_token_logprob *lp = arena_alloc(e, sizeof *lp);
        eng_top_logprob *top = r->logprobs ? arena_alloc(e, (size_t)r->logprobs * sizeof *top) : NULL;
        if (lp) {
            lp->token = t;
            lp->logprob = -(float)((t % 7) + 1) / 8.0f;
            lp->top = top;
            lp->n_top = top ? (size_t)r->logprobs : 0;
            for (int j = 1; top && j <= r->logprobs; j++)
                top[j - 1] = (eng_top_logprob){FAKE_WORD_BASE + (t - FAKE_WORD_BASE + j) % FAKE_WORD_COUNT,
                                               lp->logprob - 0.25f * (float)j};
            ev->logprobs = lp;
        }
    }
    char word[24];
    int wn = snprintf(word, sizeof word, " w%d", t);
    size_t from = ch->emitted;
    if (!text_append(ch, word, (size_t)wn)) return;
    size_t pos = 0;
    int m = stops_on ? stop_find(r, ch, from, &pos) : -1;
    if (m >= 0) {
        ev_text(e, r, ch, ev, pos);
        ch->len = pos; /* the stop string and anything after it are never emitted */
        choice_done(e, r, c, ENG_FINISH_STOP, r->stop[m], -1);
        return;
    }
    bool length = r->max_tokens > 0 && ch->n_gen >= r->max_tokens;
    ev_text(e, r, ch, ev, length ? ch->len : ch->len - (stops_on ? stop_holdback(r, ch) : 0));
    if (length) choice_done(e, r, c, ENG_FINISH_LENGTH, NULL, -1);
}

/* Admits waiting requests by (priority, seq) while slots are free. Lock held. */
static void admit(eng_engine *e)
{
    while (e->waiting && e->n_running < e->cfg.max_running) {
        fake_req **best = &e->waiting;
        for (fake_req **p = &e->waiting; *p; p = &(*p)->next)
            if ((*p)->priority < (*best)->priority ||
                ((*p)->priority == (*best)->priority && (*p)->seq < (*best)->seq))
                best = p;
        fake_req *r = *best;
        *best = r->next;
        e->n_waiting--;
        r->t_admit = now_s();
        /* append to keep admission order */
        r->next = NULL;
        fake_req **tail = &e->running;
        while (*tail) tail = &(*tail)->next;
        *tail = r;
        e->n_running++;
    }
}

/* Generates one step's events into e->ev. Lock held (released while sleeping). */
static void run_step(eng_engine *e)
{
    e->n_ev = e->ev_pos = 0;
    arena_reset(e);
    /* cancelled waiting requests finish without running */
    for (fake_req **p = &e->waiting; *p;) {
        fake_req *r = *p;
        if (!r->cancel) {
            p = &r->next;
            continue;
        }
        for (int c = 0; c < r->n; c++) choice_done(e, r, c, ENG_FINISH_CANCELLED, NULL, -1);
        *p = r->next;
        e->n_waiting--;
        req_free(r);
    }
    admit(e);
    if (!e->running) return;
    if (e->step_ms > 0) {
        pthread_mutex_unlock(&e->mu);
        sleep_ms(e->step_ms);
        pthread_mutex_lock(&e->mu);
    }
    for (fake_req *r = e->running; r; r = r->next)
        for (int c = 0; c < r->n; c++)
            if (!r->ch[c].done) step_choice(e, r, c);
    for (fake_req **p = &e->running; *p;) {
        fake_req *r = *p;
        if (r->n_open > 0) {
            p = &r->next;
            continue;
        }
        *p = r->next;
        e->n_running--;
        req_free(r);
    }
    e->steps_total++;
    double t = now_s();
    if (t - e->rate_t0 >= 1.0) {
        e->gen_rate = (double)(e->generation_tokens_total - e->rate_gen0) / (t - e->rate_t0);
        e->prompt_rate = (double)(e->prompt_tokens_total - e->rate_prompt0) / (t - e->rate_t0);
        e->rate_t0 = t;
        e->rate_gen0 = e->generation_tokens_total;
        e->rate_prompt0 = e->prompt_tokens_total;
    }
}

eng_status eng_step(eng_engine *e, eng_event *out, size_t cap, size_t *n)
{
    *n = 0;
    pthread_mutex_lock(&e->mu);
    if (e->ev_pos >= e->n_ev) run_step(e);
    size_t k = e->n_ev - e->ev_pos;
    if (k > cap) k = cap;
    memcpy(out, e->ev + e->ev_pos, k * sizeof *out);
    e->ev_pos += k;
    *n = k;
    pthread_mutex_unlock(&e->mu);
    return ENG_OK;
}

bool eng_has_work(eng_engine *e)
{
    pthread_mutex_lock(&e->mu);
    bool w = e->waiting || e->running || e->ev_pos < e->n_ev;
    pthread_mutex_unlock(&e->mu);
    return w;
}

bool eng_wait_work(eng_engine *e, int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&e->mu);
    while (!(e->waiting || e->running || e->ev_pos < e->n_ev))
        if (pthread_cond_timedwait(&e->cv, &e->mu, &ts) == ETIMEDOUT) break;
    bool w = e->waiting || e->running || e->ev_pos < e->n_ev;
    pthread_mutex_unlock(&e->mu);
    return w;
}

/* ==== introspection =========================================================================== */

void eng_get_stats(eng_engine *e, eng_stats *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&e->mu);
    out->n_waiting = e->n_waiting;
    out->n_running = e->n_running;
    out->kv_blocks_total = e->cfg.max_running * (e->cfg.max_model_len / 16);
    for (fake_req *r = e->running; r; r = r->next)
        for (int c = 0; c < r->n; c++) out->kv_blocks_used += (r->prompt_len + r->ch[c].n_gen + 15) / 16;
    out->state_slots_total = e->cfg.max_running + 1;
    out->state_slots_used = e->n_running;
    out->prompt_tokens_total = e->prompt_tokens_total;
    out->generation_tokens_total = e->generation_tokens_total;
    out->prompt_tok_per_s = e->prompt_rate;
    out->decode_tok_per_s = e->gen_rate;
    out->steps_total = e->steps_total;
    pthread_mutex_unlock(&e->mu);
}

void eng_get_model_info(eng_engine *e, eng_model_info *out)
{
    memset(out, 0, sizeof *out);
    out->model_id = e->model_id;
    out->template_kind = e->template_kind;
    out->dtype = "f32";
    out->device = "cpu";
    out->max_model_len = e->cfg.max_model_len;
    out->vocab_size = FAKE_VOCAB_SIZE;
    out->tp = 1;
}

const eng_tokenizer *eng_get_tokenizer(eng_engine *e)
{
    return e->tok;
}
