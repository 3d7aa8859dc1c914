/* sched/engine.c - the public engine API (qnext/eng.h; its defaults are in api/eng_defaults.c):
 * eng_create / eng_destroy (model, tokenizer, template, cache sizing), the thread-safe eng_submit /
 * eng_cancel, statistics and model info. The step loop is engine_step.c; token post-processing engine_out.c (see engine_impl.h).
 *
 * Devices (engine_device.c): eng_config.device picks the CPU or the CUDA backend ("auto": CUDA when
 * built in and a GPU is present); tensor parallelism makes one backend per rank (GPU r for CUDA
 * rank r, with NCCL collectives on the backends' streams).
 *
 * Cache sizing (eng_create, policy in engine_size.c): KV blocks from kv_cache_bytes, or by default
 * on the CPU min(max_running x context, 10% of RAM, 4 GiB), on a GPU from the memory the weights
 * left (the backend's mem_info); state slots n_state_slots or max_running + 1 (a GPU may lower
 * max_running to what fits); max_model_len is lowered to what the pool holds when it came from the
 * model. Prefix-cache snapshots live in host memory inside prefix_cache_bytes, not in slots.
 */
#include "sched/engine_impl.h"

#include "backend/backend.h" /* defines: eng_backend_destroy */
#include "sample/rng.h"      /* defines: eng_rng_entropy_seed */
#include "text/pretok.h"     /* defines: qn_utf8_valid_prefix */

#include <math.h>
#include <string.h>
#include <unistd.h>

#define ENG_MAX_CHOICES 128

/* ==== payloads ================================================================================ */

void eng_payload_free(eng_payload *p)
{
    if (!p) return;
    eng_free(p->text);
    eng_free(p->messages_json);
    eng_free(p->tools_json);
    eng_free(p->kwargs_json);
    eng_free(p->client_id);
    eng_free(p->tokens);
    if (p->stop)
        for (size_t i = 0; i < p->req.sampling.n_stop; i++) eng_free(p->stop[i]);
    eng_free(p->stop);
    eng_free(p->stop_ids);
    eng_free(p->bias);
    eng_free(p);
}

static void payload_free_cb(void *p)
{
    eng_payload_free(p);
}

/* ==== lifecycle =============================================================================== */

static size_t phys_mem_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (size_t)pages * (size_t)page : 0;
}

static const char *dtype_name(const qn_config *c)
{
    if (c->quant.fp8) return "fp8";
    if (!strcmp(c->torch_dtype, "bfloat16")) return "bf16";
    if (!strcmp(c->torch_dtype, "float16")) return "f16";
    if (!strcmp(c->torch_dtype, "float32")) return "f32";
    return c->torch_dtype[0] ? c->torch_dtype : "bf16";
}

static eng_status check_config(const eng_config *c)
{
    if (!c->model_dir || !c->model_dir[0])
        return eng_err_set(ENG_ERR_INVALID, "engine: model_dir is required");
    if (c->tp < 0 || c->tp > 64)
        return eng_err_set(ENG_ERR_INVALID, "engine: tp %d is out of range 1..64", c->tp);
    if (c->max_running < 1 || c->max_running > (1 << 20) || c->max_batch_tokens < 1 ||
        c->max_batch_tokens > (1 << 24) || c->max_queue < 0 || c->max_model_len < 0 || c->n_threads < 0 ||
        c->kv_block_size < 1 || c->kv_block_size > (1 << 16) || c->n_state_slots < 0 ||
        c->prefix_snapshot_every < 0)
        return eng_err_set(
            ENG_ERR_INVALID,
            "engine: bad limits (max_running %d, max_batch_tokens %d, max_queue %d, max_model_len %d, "
            "kv_block_size %d, n_state_slots %d)",
            c->max_running, c->max_batch_tokens, c->max_queue, c->max_model_len, c->kv_block_size,
            c->n_state_slots);
    if (c->n_state_slots > 0 && c->n_state_slots < c->max_running)
        return eng_err_set(ENG_ERR_INVALID, "engine: n_state_slots (%d) must be at least max_running (%d)",
                           c->n_state_slots, c->max_running);
    if (!(c->gpu_memory_fraction >= 0 && c->gpu_memory_fraction <= 1)) /* (0: the backend's default) */
        return eng_err_set(ENG_ERR_INVALID, "engine: gpu_memory_fraction %g is outside [0, 1]",
                           c->gpu_memory_fraction);
    return ENG_OK;
}

static eng_status load_template(eng_engine *e, const char *t)
{
    if (t && *t && strcmp(t, "auto")) return eng_template_parse(t, &e->tmpl);
    eng_status st = eng_template_detect(e->model_dir, &e->tmpl);
    if (st == ENG_ERR_NOT_FOUND) {
        eng_log(ENG_LOG_INFO, "%s has no chat template: using the Instruct template for chat requests",
                e->model_dir);
        e->tmpl = ENG_TEMPLATE_INSTRUCT;
        eng_err_clear();
        return ENG_OK;
    }
    return st;
}

static void free_snapshot(void *ctx, uint64_t snapshot)
{
    (void)ctx;
    eng_free((void *)(uintptr_t)snapshot);
}

/* Sizes (engine_size.c) and allocates the KV pool, the state slots, the block pool and the prefix
 * cache. */
static eng_status size_caches(eng_engine *e)
{
    const qn_config *mc = qn_model_config(e->m);
    eng_config *c = &e->cfg;
    qn_cache *probe = NULL;
    eng_status st;
    e->block_size = c->kv_block_size;
    qn_cache_params pp = {1, 1, e->block_size};
    if ((st = qn_cache_create(e->m, &pp, &probe)) != ENG_OK) return st;
    const size_t block_bytes = qn_cache_block_bytes(probe);
    e->slot_bytes = qn_cache_slot_bytes(probe);
    qn_cache_destroy(probe);

    eng_cache_plan plan = {
        .block_bytes = block_bytes,
        .slot_bytes = e->slot_bytes,
        .world = qn_model_tp(e->m),
        .block_size = e->block_size,
        .n_state_slots = c->n_state_slots,
        .kv_cache_bytes = c->kv_cache_bytes,
        .len_explicit = c->max_model_len > 0,
        .phys_bytes = phys_mem_bytes(),
        .max_running = c->max_running,
        .max_model_len = c->max_model_len > 0 ? c->max_model_len : mc->max_position_embeddings,
    };
    plan.device = eng_device_room(e, &plan.room);
    if ((st = eng_cache_plan_make(&plan)) != ENG_OK) return st;
    if (plan.note[0]) eng_log(ENG_LOG_INFO, "%s", plan.note);
    if (plan.len_limited)
        eng_log(ENG_LOG_INFO, "context limited to %d tokens by the KV cache (the model allows %d)",
                plan.max_model_len, plan.len_limited);
    c->max_running = plan.max_running;
    e->max_model_len = plan.max_model_len;
    e->n_blocks = plan.n_blocks;
    e->n_slots = plan.n_slots;

    qn_cache_params cp = {e->n_slots, e->n_blocks, e->block_size};
    if ((st = qn_cache_create(e->m, &cp, &e->cache)) != ENG_OK) return st;
    if ((st = eng_block_pool_create(e->n_blocks, e->block_size, &e->pool)) != ENG_OK) return st;
    e->kv_watermark = e->n_blocks / 100;
    int chunk_blocks = e->n_blocks - e->kv_watermark - 1;
    if (eng_blocks_for_tokens(e->block_size, c->max_batch_tokens) > chunk_blocks)
        e->max_prefill_chunk = chunk_blocks * e->block_size;

    if (c->prefix_cache_bytes > 0 && e->slot_bytes + 4096 <= c->prefix_cache_bytes) {
        eng_prefix_cache_config pc = {c->prefix_cache_bytes, block_bytes, free_snapshot, NULL, NULL};
        if ((st = eng_prefix_cache_create(&pc, e->pool, &e->pc)) != ENG_OK) return st;
    } else if (c->prefix_cache_bytes > 0) {
        eng_log(ENG_LOG_WARN,
                "prefix cache off: its budget (%zu bytes) is smaller than one state snapshot (%zu)",
                c->prefix_cache_bytes, e->slot_bytes);
    }
    char kb[32], sb[32];
    eng_log(ENG_LOG_INFO,
            "caches on %s: %d KV blocks of %d tokens (%s), %d state slots (%s), context %d, prefix cache %s",
            eng_device_name(e->device), e->n_blocks, e->block_size,
            eng_fmt_bytes((double)e->n_blocks * (double)block_bytes, kb, sizeof kb), e->n_slots,
            eng_fmt_bytes((double)e->n_slots * (double)e->slot_bytes, sb, sizeof sb), e->max_model_len,
            e->pc ? "on" : "off");
    return ENG_OK;
}

eng_status eng_create(const eng_config *cfg, eng_engine **out)
{
    eng_status st;
    eng_engine *e = NULL;
    if (!out) return eng_err_set(ENG_ERR_INVALID, "engine: out is NULL");
    *out = NULL;
    if (!cfg) return eng_err_set(ENG_ERR_INVALID, "engine: config is NULL");
    if ((st = check_config(cfg)) != ENG_OK) return st;
    eng_device_kind dev;
    if ((st = eng_device_resolve(cfg->device, &dev)) != ENG_OK) return st;
    if (!(e = eng_calloc(1, sizeof *e))) return eng_err_set(ENG_ERR_NOMEM, "engine: out of memory");
    e->device = dev;
    e->cfg = *cfg;
    atomic_init(&e->busy, false);
    pthread_mutex_init(&e->stats_mu, NULL);
    eng_sched_plan_init(&e->plan);
    eng_deltas_init(&e->deltas);
    eng_buf_init(&e->text);
    e->model_dir = eng_strdup(cfg->model_dir);
    if (!e->model_dir) goto oom;
    size_t n = strlen(e->model_dir);
    while (n > 1 && e->model_dir[n - 1] == '/') e->model_dir[--n] = '\0';
    const char *base = strrchr(e->model_dir, '/');
    if (!(e->model_id = eng_strdup(base && base[1] ? base + 1 : e->model_dir))) goto oom;
    e->cfg.model_dir = e->model_dir;
    e->cfg.device = eng_device_name(e->device);
    e->cfg.chat_template = NULL; /* the caller's string may not outlive us; e->tmpl has the result */
    e->cfg.tokenizer = NULL;

    /* the backend(s): ranks on threads of their own (CPU: the cores split between them; CUDA: GPU r) */
    e->cfg.tp = cfg->tp > 1 ? cfg->tp : 1;
    qn_model_params mp = {.max_tokens = cfg->max_batch_tokens, .progress = true};
    if ((st = eng_device_open(e, &mp)) != ENG_OK) goto fail;
    if ((st = qn_model_load(e->model_dir, e->be, &mp, &e->m)) != ENG_OK) goto fail;
    const qn_config *mc = qn_model_config(e->m);
    e->vocab = qn_model_vocab(e->m);
    e->dtype = dtype_name(mc);
    if ((st = qn_gen_config_load(e->model_dir, mc, &e->gen)) != ENG_OK) goto fail;
    e->n_eos = e->gen.n_eos_token_ids;
    for (int i = 0; i < e->n_eos; i++) e->eos[i] = e->gen.eos_token_ids[i];

    if (cfg->tokenizer) {
        e->tok = cfg->tokenizer;
    } else {
        char *tpath = eng_path_join(e->model_dir, "tokenizer.json");
        if (!tpath) goto oom;
        bool has_tok = eng_file_exists(tpath);
        eng_free(tpath);
        if (!has_tok) {
            st = eng_err_set(ENG_ERR_NOT_FOUND, "engine: %s has no tokenizer.json", e->model_dir);
            goto fail;
        }
        if ((st = eng_tokenizer_load(e->model_dir, &e->tok_owned)) != ENG_OK) goto fail;
        e->tok = e->tok_owned;
    }
    if ((st = load_template(e, cfg->chat_template)) != ENG_OK) goto fail;
    if ((st = size_caches(e)) != ENG_OK) goto fail;
    if ((st = eng_sampler_create(e->vocab, &e->sampler)) != ENG_OK) goto fail;
    if ((st = eng_queue_create(cfg->max_queue > 0 ? cfg->max_queue : 1, payload_free_cb, &e->q)) != ENG_OK)
        goto fail;
    if ((st = eng_forced_load(e->tok, e->vocab, &e->forced)) != ENG_OK) goto fail;

    e->max_rows = e->cfg.max_running + 1; /* (size_caches may have lowered max_running) */
    e->block_mark = eng_calloc((size_t)e->n_blocks, sizeof *e->block_mark);
    e->free_slots = eng_malloc((size_t)e->n_slots * sizeof *e->free_slots);
    e->b_tok = eng_malloc((size_t)cfg->max_batch_tokens * sizeof *e->b_tok);
    e->b_seqs = eng_malloc((size_t)e->max_rows * sizeof *e->b_seqs);
    e->b_rows = eng_malloc((size_t)e->max_rows * sizeof *e->b_rows);
    e->b_rowseq = eng_malloc((size_t)e->max_rows * sizeof *e->b_rowseq);
    e->logits = eng_malloc((size_t)e->max_rows * (size_t)e->vocab * sizeof *e->logits);
    if (!e->block_mark || !e->free_slots || !e->b_tok || !e->b_seqs || !e->b_rows || !e->b_rowseq ||
        !e->logits)
        goto oom;
    for (int i = 0; i < e->n_slots; i++) e->free_slots[i] = e->n_slots - 1 - i; /* pop gives slot 0 first */
    e->n_free_slots = e->n_slots;
    e->rate_t0 = eng_now_s();
    e->stats.kv_blocks_total = e->n_blocks;
    e->stats.state_slots_total = e->n_slots;
    *out = e;
    return ENG_OK;
oom:
    st = eng_err_set(ENG_ERR_NOMEM, "engine: out of memory");
fail:
    eng_destroy(e);
    return st;
}

void eng_destroy(eng_engine *e)
{
    if (!e) return;
    for (int i = 0; i < e->n_reqs; i++) {
        ereq *r = e->reqs[i];
        for (int c = 0; c < r->n_choices; c++) {
            if (!r->ch[c]) continue;
            eng_block_table_free(&r->ch[c]->bt, e->pool);
            eng_seq_destroy(r->ch[c]);
        }
        eng_free(r->ch);
        eng_free(r->prompt);
        eng_payload_free(r->p);
        eng_free(r);
    }
    eng_free(e->reqs);
    eng_free(e->seqs);
    eng_free(e->desc);
    eng_queue_destroy(e->q);
    eng_prefix_cache_destroy(e->pc);
    eng_block_pool_destroy(e->pool);
    qn_cache_destroy(e->cache);
    qn_model_destroy(e->m);
    eng_backend_destroy(e->be);
    eng_device_close(e);
    eng_tokenizer_destroy(e->tok_owned);
    eng_sampler_destroy(e->sampler);
    eng_forced_destroy(e->forced);
    eng_sched_plan_free(&e->plan);
    eng_deltas_free(&e->deltas);
    eng_buf_free(&e->text);
    eng_free(e->block_mark);
    eng_free(e->free_slots);
    eng_free(e->b_tok);
    eng_free(e->b_seqs);
    eng_free(e->b_rows);
    eng_free(e->b_rowseq);
    eng_free(e->logits);
    eng_free(e->ev);
    eng_arena_free(e);
    eng_free(e->model_dir);
    eng_free(e->model_id);
    pthread_mutex_destroy(&e->stats_mu);
    eng_free(e);
}

/* ==== submit / cancel ========================================================================= */

/* Fills p->sp from the request and the model's generation defaults, and checks it. */
static eng_status resolve_sampling(const eng_engine *e, const eng_sampling *s, eng_payload *p)
{
    eng_sampler_params *sp = &p->sp;
    eng_sampler_params_init(sp);
    const qn_gen_config *g = &e->gen;
    sp->temperature = s->temperature >= 0 ? s->temperature : (g->do_sample ? g->temperature : 0.0f);
    sp->top_p = s->top_p >= 0 ? s->top_p : g->top_p;
    sp->top_k = s->top_k >= 0 ? s->top_k : g->top_k;
    sp->min_p = s->min_p >= 0 ? s->min_p : g->min_p;
    sp->repetition_penalty = s->repetition_penalty > 0 ? s->repetition_penalty : g->repetition_penalty;
    sp->presence_penalty = s->presence_penalty;
    sp->frequency_penalty = s->frequency_penalty;
    sp->logit_bias = s->logit_bias;
    sp->n_logit_bias = s->n_logit_bias;
    sp->seed = s->has_seed ? s->seed : eng_rng_entropy_seed();
    sp->n_logprobs = s->logprobs < 0 ? -1 : s->logprobs;
    eng_status st = eng_sampler_params_check(sp, e->vocab);
    sp->logit_bias = NULL; /* re-pointed at the copy */
    sp->n_logit_bias = 0;
    p->max_tokens = s->max_tokens > 0 ? s->max_tokens : (g->max_new_tokens > 0 ? g->max_new_tokens : -1);
    return st;
}

static eng_status check_request(const eng_engine *e, const eng_request *r)
{
    const eng_sampling *s = &r->sampling;
    const struct {
        float v;
        const char *name;
    } floats[] = {{s->temperature, "temperature"},
                  {s->top_p, "top_p"},
                  {s->min_p, "min_p"},
                  {s->presence_penalty, "presence_penalty"},
                  {s->frequency_penalty, "frequency_penalty"},
                  {s->repetition_penalty, "repetition_penalty"}};
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++)
        if (isnan(floats[i].v) || isinf(floats[i].v))
            return eng_err_set(ENG_ERR_INVALID, "sampling.%s: not a finite number", floats[i].name);
    switch (r->input) {
    case ENG_INPUT_TEXT:
        if (!r->text || !r->text[0]) return eng_err_set(ENG_ERR_INVALID, "prompt: empty");
        break;
    case ENG_INPUT_TOKENS:
        if (!r->tokens || r->n_tokens == 0) return eng_err_set(ENG_ERR_INVALID, "token_ids: empty");
        if (r->n_tokens >= (size_t)e->max_model_len)
            return eng_err_set(ENG_ERR_INVALID, "the prompt is %zu tokens but the context is %d", r->n_tokens,
                               e->max_model_len);
        for (size_t i = 0; i < r->n_tokens; i++)
            if (r->tokens[i] < 0 || r->tokens[i] >= e->vocab)
                return eng_err_set(ENG_ERR_INVALID,
                                   "token id %d at position %zu is outside the vocabulary (0..%d)",
                                   r->tokens[i], i, e->vocab - 1);
        break;
    case ENG_INPUT_CHAT:
        if (!r->messages_json || !r->messages_json[0])
            return eng_err_set(ENG_ERR_INVALID, "chat: messages_json is required");
        break;
    default:
        return eng_err_set(ENG_ERR_INVALID, "input: unknown kind %d", (int)r->input);
    }
    if (s->n < 1 || s->n > ENG_MAX_CHOICES)
        return eng_err_set(ENG_ERR_INVALID, "sampling.n: %d is out of range 1..%d", s->n, ENG_MAX_CHOICES);
    if (s->logprobs < -1 || s->logprobs > ENG_SAMPLER_MAX_LOGPROBS)
        return eng_err_set(ENG_ERR_INVALID, "sampling.logprobs: %d is out of range -1..%d", s->logprobs,
                           ENG_SAMPLER_MAX_LOGPROBS);
    if (s->max_tokens == 0)
        return eng_err_set(ENG_ERR_INVALID, "max_tokens: must be at least 1 (or < 0: no limit)");
    if (s->min_tokens < 0) return eng_err_set(ENG_ERR_INVALID, "min_tokens: %d is negative", s->min_tokens);
    if (s->max_tokens > 0 && s->min_tokens > s->max_tokens)
        return eng_err_set(ENG_ERR_INVALID, "min_tokens (%d) is larger than max_tokens (%d)", s->min_tokens,
                           s->max_tokens);
    if (s->n_stop > ENG_STOP_MAX_STRINGS)
        return eng_err_set(ENG_ERR_INVALID, "stop: %zu strings (at most %d)", s->n_stop,
                           ENG_STOP_MAX_STRINGS);
    if (s->n_stop && !s->stop) return eng_err_set(ENG_ERR_INVALID, "stop: NULL array");
    for (size_t i = 0; i < s->n_stop; i++) {
        size_t len = s->stop[i] ? strlen(s->stop[i]) : 0;
        if (len == 0) return eng_err_set(ENG_ERR_INVALID, "stop[%zu]: empty string", i);
        if (len > ENG_STOP_MAX_LEN)
            return eng_err_set(ENG_ERR_INVALID, "stop[%zu]: %zu bytes (at most %d)", i, len,
                               ENG_STOP_MAX_LEN);
        if (qn_utf8_valid_prefix((const uint8_t *)s->stop[i], len) != len)
            return eng_err_set(ENG_ERR_INVALID, "stop[%zu]: not valid UTF-8", i);
    }
    if (s->n_stop_token_ids && !s->stop_token_ids)
        return eng_err_set(ENG_ERR_INVALID, "stop_token_ids: NULL array");
    for (size_t i = 0; i < s->n_stop_token_ids; i++)
        if (s->stop_token_ids[i] < 0)
            return eng_err_set(ENG_ERR_INVALID, "stop_token_ids[%zu]: %d is negative", i,
                               s->stop_token_ids[i]);
    if (s->n_logit_bias && !s->logit_bias) return eng_err_set(ENG_ERR_INVALID, "logit_bias: NULL array");
    if (s->n_logit_bias > (size_t)e->vocab)
        return eng_err_set(ENG_ERR_INVALID, "logit_bias: %zu entries for a vocabulary of %d", s->n_logit_bias,
                           e->vocab);
    return ENG_OK;
}

static char *dup_opt(const char *s, bool *oom)
{
    if (!s) return NULL;
    char *d = eng_strdup(s);
    if (!d) *oom = true;
    return d;
}

static void *dup_mem(const void *src, size_t n, size_t size, bool *oom)
{
    if (!n) return NULL;
    void *d = eng_malloc(n * size);
    if (!d) {
        *oom = true;
        return NULL;
    }
    memcpy(d, src, n * size);
    return d;
}

eng_status eng_submit(eng_engine *e, const eng_request *r, uint64_t *id)
{
    if (!e || !r || !id) return eng_err_set(ENG_ERR_INVALID, "eng_submit: NULL argument");
    eng_status st = check_request(e, r);
    if (st != ENG_OK) return st;
    eng_payload *p = eng_calloc(1, sizeof *p);
    if (!p) return eng_err_set(ENG_ERR_NOMEM, "out of memory copying the request");
    if ((st = resolve_sampling(e, &r->sampling, p)) != ENG_OK) {
        eng_payload_free(p);
        return st;
    }
    const eng_sampling *s = &r->sampling;
    bool oom = false;
    p->req = *r;
    p->t_submit = eng_now_s();
    p->text = r->input == ENG_INPUT_TEXT ? dup_opt(r->text, &oom) : NULL;
    p->messages_json = r->input == ENG_INPUT_CHAT ? dup_opt(r->messages_json, &oom) : NULL;
    p->tools_json = r->input == ENG_INPUT_CHAT ? dup_opt(r->tools_json, &oom) : NULL;
    p->kwargs_json = r->input == ENG_INPUT_CHAT ? dup_opt(r->template_kwargs_json, &oom) : NULL;
    p->client_id = dup_opt(r->client_id, &oom);
    p->tokens =
        r->input == ENG_INPUT_TOKENS ? dup_mem(r->tokens, r->n_tokens, sizeof *r->tokens, &oom) : NULL;
    p->stop_ids = dup_mem(s->stop_token_ids, s->n_stop_token_ids, sizeof *s->stop_token_ids, &oom);
    p->bias = dup_mem(s->logit_bias, s->n_logit_bias, sizeof *s->logit_bias, &oom);
    p->req.sampling.n_stop = 0;
    if (s->n_stop && !oom) {
        p->stop = eng_calloc(s->n_stop, sizeof *p->stop);
        if (!p->stop) oom = true;
        for (size_t i = 0; p->stop && i < s->n_stop; i++) {
            if (!(p->stop[i] = eng_strdup(s->stop[i]))) oom = true;
            p->req.sampling.n_stop = i + 1;
        }
    }
    if (oom) {
        eng_payload_free(p);
        return eng_err_set(ENG_ERR_NOMEM, "out of memory copying the request");
    }
    eng_request *q = &p->req;
    q->text = p->text;
    q->messages_json = p->messages_json;
    q->tools_json = p->tools_json;
    q->template_kwargs_json = p->kwargs_json;
    q->client_id = p->client_id;
    q->tokens = p->tokens;
    q->sampling.stop = (const char *const *)p->stop;
    q->sampling.stop_token_ids = p->stop_ids;
    q->sampling.logit_bias = p->bias;
    p->sp.logit_bias = p->bias;
    p->sp.n_logit_bias = s->n_logit_bias;
    if (e->cfg.max_queue == 0) {
        eng_payload_free(p);
        return eng_err_set(ENG_ERR_QUEUE_FULL, "the queue is full (max_queue is 0)");
    }
    if ((st = eng_queue_submit(e->q, p, id)) != ENG_OK) eng_payload_free(p);
    return st;
}

eng_status eng_cancel(eng_engine *e, uint64_t id)
{
    if (!e) return eng_err_set(ENG_ERR_INVALID, "eng_cancel: NULL engine");
    return eng_queue_cancel(e->q, id);
}

bool eng_has_work(eng_engine *e)
{
    if (atomic_load(&e->busy)) return true;
    eng_queue_stats qs;
    eng_queue_get_stats(e->q, &qs);
    return qs.n_pending > 0;
}

bool eng_wait_work(eng_engine *e, int timeout_ms)
{
    if (atomic_load(&e->busy)) return true;
    return eng_queue_wait(e->q, timeout_ms) || atomic_load(&e->busy);
}

/* ==== introspection =========================================================================== */

void eng_get_stats(eng_engine *e, eng_stats *out)
{
    eng_queue_stats qs;
    eng_queue_get_stats(e->q, &qs);
    pthread_mutex_lock(&e->stats_mu);
    *out = e->stats;
    pthread_mutex_unlock(&e->stats_mu);
    out->n_waiting = qs.n_waiting;
}

void eng_get_model_info(eng_engine *e, eng_model_info *out)
{
    memset(out, 0, sizeof *out);
    out->model_id = e->model_id;
    out->template_kind = eng_template_name(e->tmpl);
    out->dtype = e->dtype;
    out->device = eng_device_name(e->device);
    out->max_model_len = e->max_model_len;
    out->vocab_size = e->vocab;
    out->tp = e->cfg.tp;
    out->eos_token_ids = e->eos;
    out->n_eos_token_ids = e->n_eos;
}

const eng_tokenizer *eng_get_tokenizer(eng_engine *e)
{
    return e->tok;
}
