/* cli/cmd_batch.c - `qnext batch`: an OpenAI batch input file in, a batch output file out.
 *
 * Input: one JSON object per line, {"custom_id": "...", "method": "POST", "url":
 * "/v1/chat/completions", "body": {chat completion request}} (also "/v1/completions" with a string
 * prompt). Every valid line becomes an engine request and all of them are scheduled together
 * (continuous batching; submissions wait when the engine queue is full).
 * Output: one line per input line, in completion order, as OpenAI writes them:
 *     {"id": "batch_req_<n>", "custom_id": ..., "response": {"status_code": 200, "request_id": ...,
 *      "body": {chat.completion object}}, "error": null}
 * A line that cannot be used (bad JSON, missing custom_id, unsupported parameter, a prompt the
 * engine rejects) gives {"id", "custom_id", "response": null, "error": {"code", "message"}} for
 * that line only. A progress line (requests/s, tokens/s) is drawn on stderr when it is a terminal
 * (or QNEXT_PROGRESS=1); a summary line is always printed. Exit status 0 when the output was
 * written, even if some lines failed (the error lines say which).
 */
#include "cli.h"
#include "cli_engine.h" /* defines: cli_engine_opts, cli_engine_open */

#include "core/core.h"       /* defines: eng_buf, eng_now_s */
#include "qnext/tokenizer.h" /* defines: eng_tokenizer_token_bytes */

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qnext batch --model DIR IN.jsonl OUT.jsonl [options]\n"
            "\n"
            "Runs an OpenAI batch input file (chat completions) and writes the batch output file.\n"
            "\n"
            "options:\n"
            "  --max-tokens-default N   max_tokens for requests that set none (default 1024)\n"
            "%s",
            cli_engine_flags_help);
}

/* ==== one request ============================================================================= */

typedef struct tool_out {
    char *id, *name;
    eng_buf args;
} tool_out;

typedef struct choice_out {
    eng_buf content, reasoning;
    tool_out *tools;
    int n_tools;
    cJSON *logprobs; /* array of content logprob objects, or NULL */
    eng_finish_reason finish;
    bool done;
} choice_out;

typedef struct breq {
    int line;
    char *custom_id; /* NULL if the line had none */
    char *model;
    bool chat;
    eng_request req;
    /* owned inputs */
    char *messages, *tools, *kwargs, *prompt;
    char **stop;
    int n_stop;
    eng_logit_bias *bias;
    int32_t *stop_ids;
    /* state */
    char *error_code, *error_msg; /* a line-level error: no engine request */
    uint64_t id;
    bool submitted, finished;
    choice_out *ch;
    int n_open;
    eng_usage usage;
    int completion_total, reasoning_total;
} breq;

static void breq_free(breq *b)
{
    free(b->custom_id);
    free(b->model);
    free(b->messages);
    free(b->tools);
    free(b->kwargs);
    free(b->prompt);
    for (int i = 0; i < b->n_stop; i++) free(b->stop[i]);
    free(b->stop);
    free(b->bias);
    free(b->stop_ids);
    free(b->error_code);
    free(b->error_msg);
    if (b->ch)
        for (int c = 0; c < b->req.sampling.n; c++) {
            eng_buf_free(&b->ch[c].content);
            eng_buf_free(&b->ch[c].reasoning);
            for (int k = 0; k < b->ch[c].n_tools; k++) {
                free(b->ch[c].tools[k].id);
                free(b->ch[c].tools[k].name);
                eng_buf_free(&b->ch[c].tools[k].args);
            }
            free(b->ch[c].tools);
            cJSON_Delete(b->ch[c].logprobs);
        }
    free(b->ch);
}

static bool fail(breq *b, const char *code, const char *fmt, const char *arg)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, arg ? arg : "");
    b->error_code = strdup(code);
    b->error_msg = strdup(msg);
    return false;
}

static bool num_in(const cJSON *v, double lo, double hi, double *out)
{
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi)
        return false;
    *out = v->valuedouble;
    return true;
}

static bool int_in(const cJSON *v, double lo, double hi, long *out)
{
    double d;
    if (!num_in(v, lo, hi, &d) || d != floor(d)) return false;
    *out = (long)d;
    return true;
}

/* Maps one request body onto b->req. false with b->error_* set. */
static bool map_body(breq *b, const cJSON *body, long max_tokens_default)
{
    static const char *ignored[] = {"user", "metadata", "stream_options", "service_tier", "store"};
    eng_request *r = &b->req;
    eng_sampling *s = &r->sampling;
    eng_request_init(r);
    s->max_tokens = (int)max_tokens_default;
    const cJSON *f;
    double d;
    long l;
    cJSON_ArrayForEach(f, body)
    {
        const char *k = f->string;
        if (cJSON_IsNull(f)) continue;
        if (!strcmp(k, "model")) {
            if (!cJSON_IsString(f)) return fail(b, "invalid_request", "model: must be a string%s", NULL);
            free(b->model); /* a repeated key: the last one wins, as in Python's json */
            b->model = strdup(f->valuestring);
        } else if (!strcmp(k, "messages") && b->chat) {
            if (!cJSON_IsArray(f) || !cJSON_GetArraySize(f))
                return fail(b, "invalid_request", "messages: must be a non-empty array%s", NULL);
            free(b->messages);
            b->messages = cJSON_PrintUnformatted(f);
        } else if (!strcmp(k, "prompt") && !b->chat) {
            if (!cJSON_IsString(f) || !f->valuestring[0])
                return fail(b, "invalid_request", "prompt: must be a non-empty string%s", NULL);
            free(b->prompt);
            b->prompt = strdup(f->valuestring);
        } else if (!strcmp(k, "tools") && b->chat) {
            if (!cJSON_IsArray(f)) return fail(b, "invalid_request", "tools: must be an array%s", NULL);
            free(b->tools);
            b->tools = cJSON_PrintUnformatted(f);
        } else if (!strcmp(k, "tool_choice")) {
            if (!cJSON_IsString(f) || strcmp(f->valuestring, "auto"))
                return fail(b, "invalid_request", "tool_choice: only \"auto\" is supported%s", NULL);
        } else if (!strcmp(k, "chat_template_kwargs") && b->chat) {
            if (!cJSON_IsObject(f))
                return fail(b, "invalid_request", "chat_template_kwargs: must be an object%s", NULL);
            free(b->kwargs);
            b->kwargs = cJSON_PrintUnformatted(f);
        } else if (!strcmp(k, "max_tokens") || !strcmp(k, "max_completion_tokens")) {
            if (!int_in(f, 1, 1 << 24, &l))
                return fail(b, "invalid_request", "%s: must be an integer >= 1", k);
            if (!strcmp(k, "max_completion_tokens") ||
                !cJSON_GetObjectItemCaseSensitive(body, "max_completion_tokens"))
                s->max_tokens = (int)l;
        } else if (!strcmp(k, "temperature")) {
            if (!num_in(f, 0, 2, &d))
                return fail(b, "invalid_request", "temperature: must be in [0, 2]%s", NULL);
            s->temperature = (float)d;
        } else if (!strcmp(k, "top_p")) {
            if (!num_in(f, 0, 1, &d)) return fail(b, "invalid_request", "top_p: must be in [0, 1]%s", NULL);
            s->top_p = d > 0 ? (float)d : 1e-9f;
        } else if (!strcmp(k, "top_k")) {
            if (!int_in(f, -1, 1 << 24, &l))
                return fail(b, "invalid_request", "top_k: must be an integer >= -1%s", NULL);
            s->top_k = l < 0 ? 0 : (int)l;
        } else if (!strcmp(k, "min_p")) {
            if (!num_in(f, 0, 1, &d)) return fail(b, "invalid_request", "min_p: must be in [0, 1]%s", NULL);
            s->min_p = (float)d;
        } else if (!strcmp(k, "presence_penalty") || !strcmp(k, "frequency_penalty")) {
            if (!num_in(f, -2, 2, &d)) return fail(b, "invalid_request", "%s: must be in [-2, 2]", k);
            if (k[0] == 'p')
                s->presence_penalty = (float)d;
            else
                s->frequency_penalty = (float)d;
        } else if (!strcmp(k, "repetition_penalty")) {
            if (!num_in(f, 1e-6, 100, &d))
                return fail(b, "invalid_request", "repetition_penalty: must be in (0, 100]%s", NULL);
            s->repetition_penalty = (float)d;
        } else if (!strcmp(k, "seed")) {
            if (!int_in(f, -9.2e18, 9.2e18, &l))
                return fail(b, "invalid_request", "seed: must be an integer%s", NULL);
            s->has_seed = true;
            s->seed = (uint64_t)l;
        } else if (!strcmp(k, "n")) {
            if (!int_in(f, 1, 128, &l)) return fail(b, "invalid_request", "n: must be in 1..128%s", NULL);
            s->n = (int)l;
        } else if (!strcmp(k, "logprobs")) {
            if (b->chat) {
                if (!cJSON_IsBool(f))
                    return fail(b, "invalid_request", "logprobs: must be a boolean%s", NULL);
                if (cJSON_IsTrue(f) && s->logprobs < 0) s->logprobs = 0;
            } else {
                if (!int_in(f, 0, 20, &l))
                    return fail(b, "invalid_request", "logprobs: must be in 0..20%s", NULL);
                s->logprobs = (int)l;
            }
        } else if (!strcmp(k, "top_logprobs")) {
            const cJSON *lp = cJSON_GetObjectItemCaseSensitive(body, "logprobs");
            if (!int_in(f, 0, 20, &l))
                return fail(b, "invalid_request", "top_logprobs: must be in 0..20%s", NULL);
            if (!cJSON_IsTrue(lp))
                return fail(b, "invalid_request", "top_logprobs: needs logprobs: true%s", NULL);
            s->logprobs = (int)l;
        } else if (!strcmp(k, "stop")) {
            int n = cJSON_IsString(f) ? 1 : cJSON_IsArray(f) ? cJSON_GetArraySize(f) : -1;
            if (n < 0 || n > 16)
                return fail(b, "invalid_request", "stop: a string or up to 16 strings%s", NULL);
            for (int i = 0; i < b->n_stop; i++) free(b->stop[i]);
            free(b->stop);
            b->n_stop = 0;
            b->stop = calloc((size_t)n + 1, sizeof *b->stop);
            for (int i = 0; b->stop && i < n; i++) {
                const cJSON *x = cJSON_IsString(f) ? f : cJSON_GetArrayItem(f, i);
                if (!cJSON_IsString(x) || !x->valuestring[0])
                    return fail(b, "invalid_request", "stop: entries must be non-empty strings%s", NULL);
                b->stop[b->n_stop++] = strdup(x->valuestring);
            }
            s->stop = (const char *const *)b->stop;
            s->n_stop = (size_t)b->n_stop;
        } else if (!strcmp(k, "stop_token_ids")) {
            int n = cJSON_IsArray(f) ? cJSON_GetArraySize(f) : -1;
            if (n < 0 || n > 64) return fail(b, "invalid_request", "stop_token_ids: up to 64 ids%s", NULL);
            free(b->stop_ids);
            b->stop_ids = calloc((size_t)n + 1, sizeof *b->stop_ids);
            for (int i = 0; b->stop_ids && i < n; i++) {
                if (!int_in(cJSON_GetArrayItem(f, i), 0, 1 << 30, &l))
                    return fail(b, "invalid_request", "stop_token_ids: entries must be token ids%s", NULL);
                b->stop_ids[i] = (int32_t)l;
            }
            s->stop_token_ids = b->stop_ids;
            s->n_stop_token_ids = (size_t)n;
        } else if (!strcmp(k, "logit_bias")) {
            int n = cJSON_IsObject(f) ? cJSON_GetArraySize(f) : -1;
            if (n < 0 || n > 300)
                return fail(b, "invalid_request", "logit_bias: an object of up to 300 entries%s", NULL);
            free(b->bias);
            b->bias = calloc((size_t)n + 1, sizeof *b->bias);
            int i = 0;
            const cJSON *x;
            cJSON_ArrayForEach(x, f)
            {
                char *end;
                long tok = strtol(x->string, &end, 10);
                if (!b->bias || *end || end == x->string || tok < 0 || !num_in(x, -100, 100, &d))
                    return fail(b, "invalid_request",
                                "logit_bias: keys are token ids, values in [-100, 100]%s", NULL);
                b->bias[i++] = (eng_logit_bias){(int32_t)tok, (float)d};
            }
            s->logit_bias = b->bias;
            s->n_logit_bias = (size_t)n;
        } else if (!strcmp(k, "ignore_eos")) {
            if (!cJSON_IsBool(f)) return fail(b, "invalid_request", "ignore_eos: must be a boolean%s", NULL);
            s->ignore_eos = cJSON_IsTrue(f);
        } else if (!strcmp(k, "min_tokens")) {
            if (!int_in(f, 0, 1 << 24, &l))
                return fail(b, "invalid_request", "min_tokens: must be an integer >= 0%s", NULL);
            s->min_tokens = (int)l;
        } else if (!strcmp(k, "stream")) {
            if (cJSON_IsTrue(f))
                return fail(b, "invalid_request", "stream: not supported in a batch%s", NULL);
        } else {
            bool ok = false;
            for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++) ok |= !strcmp(k, ignored[i]);
            if (!ok) return fail(b, "invalid_request", "unsupported parameter: %s", k);
        }
    }
    if (b->chat && !b->messages) return fail(b, "invalid_request", "messages: required%s", NULL);
    if (!b->chat && !b->prompt) return fail(b, "invalid_request", "prompt: required (a string)%s", NULL);
    if (b->chat) {
        r->input = ENG_INPUT_CHAT;
        r->messages_json = b->messages;
        r->tools_json = b->tools;
        r->template_kwargs_json = b->kwargs;
    } else {
        r->input = ENG_INPUT_TEXT;
        r->text = b->prompt;
        r->parse_output = false;
    }
    r->client_id = b->custom_id;
    if (s->min_tokens > s->max_tokens && s->max_tokens > 0)
        return fail(b, "invalid_request", "min_tokens is larger than max_tokens%s", NULL);
    return true;
}

static void parse_line(breq *b, const char *line, long max_tokens_default)
{
    cJSON *j = cJSON_Parse(line);
    if (!j || !cJSON_IsObject(j)) {
        fail(b, "invalid_json", "line is not a JSON object%s", NULL);
        goto out;
    }
    const cJSON *cid = cJSON_GetObjectItemCaseSensitive(j, "custom_id");
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(j, "method");
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(j, "url");
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(j, "body");
    if (cJSON_IsString(cid)) b->custom_id = strdup(cid->valuestring);
    if (!cJSON_IsString(cid) || !cid->valuestring[0]) {
        fail(b, "invalid_request", "custom_id: required (a non-empty string)%s", NULL);
    } else if (!cJSON_IsString(method) || strcmp(method->valuestring, "POST")) {
        fail(b, "invalid_request", "method: must be \"POST\"%s", NULL);
    } else if (!cJSON_IsString(url) || (strcmp(url->valuestring, "/v1/chat/completions") &&
                                        strcmp(url->valuestring, "/v1/completions"))) {
        fail(b, "invalid_url", "url: %s is not supported (/v1/chat/completions, /v1/completions)",
             cJSON_IsString(url) ? url->valuestring : "(missing)");
    } else if (!cJSON_IsObject(body)) {
        fail(b, "invalid_request", "body: required (an object)%s", NULL);
    } else {
        b->chat = !strcmp(url->valuestring, "/v1/chat/completions");
        map_body(b, body, max_tokens_default);
    }
out:
    cJSON_Delete(j);
}

/* ==== output ================================================================================== */

/* The token's bytes as a JSON-safe string (invalid UTF-8 -> U+FFFD) and as a byte array. */
static void add_token_fields(cJSON *o, const eng_tokenizer *tok, int32_t id)
{
    size_t n = 0;
    const uint8_t *p = eng_tokenizer_token_bytes(tok, id, &n);
    eng_buf s;
    eng_buf_init(&s);
    cJSON *bytes = cJSON_CreateArray();
    for (size_t i = 0; i < n;) {
        cJSON_AddItemToArray(bytes, cJSON_CreateNumber(p[i]));
        size_t k = 1;
        unsigned char c = p[i];
        size_t want = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = want > 0 && i + want <= n;
        for (size_t j = 1; ok && j < want; j++) ok = (p[i + j] & 0xC0) == 0x80;
        if (ok) {
            eng_buf_append(&s, p + i, want);
            for (size_t j = 1; j < want; j++) cJSON_AddItemToArray(bytes, cJSON_CreateNumber(p[i + j]));
            k = want;
        } else {
            eng_buf_puts(&s, "\xEF\xBF\xBD");
        }
        i += k;
    }
    cJSON_AddStringToObject(o, "token", eng_buf_cstr(&s) ? eng_buf_cstr(&s) : "");
    eng_buf_free(&s);
    cJSON_AddItemToObject(o, "bytes", bytes);
}

static void write_line(FILE *out, cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    if (s) {
        fputs(s, out);
        fputc('\n', out);
        free(s);
    }
    cJSON_Delete(j);
}

static void write_error(FILE *out, int n, const breq *b)
{
    cJSON *j = cJSON_CreateObject();
    char id[48];
    snprintf(id, sizeof id, "batch_req_%d", n);
    cJSON_AddStringToObject(j, "id", id);
    if (b->custom_id)
        cJSON_AddStringToObject(j, "custom_id", b->custom_id);
    else
        cJSON_AddNullToObject(j, "custom_id");
    cJSON_AddNullToObject(j, "response");
    cJSON *e = cJSON_AddObjectToObject(j, "error");
    cJSON_AddStringToObject(e, "code", b->error_code ? b->error_code : "error");
    char msg[600];
    snprintf(msg, sizeof msg, "line %d: %s", b->line, b->error_msg ? b->error_msg : "");
    cJSON_AddStringToObject(e, "message", msg);
    write_line(out, j);
}

static void write_result(FILE *out, int n, const breq *b, const char *model_id)
{
    cJSON *j = cJSON_CreateObject();
    char id[64];
    snprintf(id, sizeof id, "batch_req_%d", n);
    cJSON_AddStringToObject(j, "id", id);
    cJSON_AddStringToObject(j, "custom_id", b->custom_id);
    cJSON *resp = cJSON_AddObjectToObject(j, "response");
    cJSON_AddNumberToObject(resp, "status_code", 200);
    snprintf(id, sizeof id, "req_%016llx", (unsigned long long)b->id * 0x9E3779B97F4A7C15ull);
    cJSON_AddStringToObject(resp, "request_id", id);
    cJSON *body = cJSON_AddObjectToObject(resp, "body");
    snprintf(id, sizeof id, "%s-%016llx", b->chat ? "chatcmpl" : "cmpl",
             (unsigned long long)(b->id * 0xD1B54A32D192ED03ull));
    cJSON_AddStringToObject(body, "id", id);
    cJSON_AddStringToObject(body, "object", b->chat ? "chat.completion" : "text_completion");
    cJSON_AddNumberToObject(body, "created", (double)time(NULL));
    cJSON_AddStringToObject(body, "model", b->model ? b->model : model_id);
    cJSON *choices = cJSON_AddArrayToObject(body, "choices");
    for (int c = 0; c < b->req.sampling.n; c++) {
        choice_out *co = &b->ch[c];
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddItemToArray(choices, ch);
        cJSON_AddNumberToObject(ch, "index", c);
        const char *content = eng_buf_cstr(&co->content) ? eng_buf_cstr(&co->content) : "";
        if (b->chat) {
            cJSON *m = cJSON_AddObjectToObject(ch, "message");
            cJSON_AddStringToObject(m, "role", "assistant");
            if (co->n_tools && !content[0])
                cJSON_AddNullToObject(m, "content");
            else
                cJSON_AddStringToObject(m, "content", content);
            if (co->reasoning.len)
                cJSON_AddStringToObject(m, "reasoning_content", eng_buf_cstr(&co->reasoning));
            if (co->n_tools) {
                cJSON *tc = cJSON_AddArrayToObject(m, "tool_calls");
                for (int k = 0; k < co->n_tools; k++) {
                    cJSON *t = cJSON_CreateObject();
                    cJSON_AddItemToArray(tc, t);
                    cJSON_AddStringToObject(t, "id", co->tools[k].id ? co->tools[k].id : "");
                    cJSON_AddStringToObject(t, "type", "function");
                    cJSON *fn = cJSON_AddObjectToObject(t, "function");
                    cJSON_AddStringToObject(fn, "name", co->tools[k].name ? co->tools[k].name : "");
                    cJSON_AddStringToObject(
                        fn, "arguments",
                        eng_buf_cstr(&co->tools[k].args) ? eng_buf_cstr(&co->tools[k].args) : "");
                }
            }
            if (co->logprobs) {
                cJSON *lp = cJSON_AddObjectToObject(ch, "logprobs");
                cJSON_AddItemToObject(lp, "content", cJSON_Duplicate(co->logprobs, true));
            } else {
                cJSON_AddNullToObject(ch, "logprobs");
            }
        } else {
            cJSON_AddStringToObject(ch, "text", content);
            cJSON_AddNullToObject(ch, "logprobs");
        }
        cJSON_AddStringToObject(ch, "finish_reason",
                                co->finish == ENG_FINISH_CANCELLED ? "abort"
                                                                   : eng_finish_reason_str(co->finish));
    }
    cJSON *u = cJSON_AddObjectToObject(body, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", b->usage.prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", b->completion_total);
    cJSON_AddNumberToObject(u, "total_tokens", b->usage.prompt_tokens + b->completion_total);
    cJSON *pd = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    cJSON_AddNumberToObject(pd, "cached_tokens", b->usage.cached_prompt_tokens);
    cJSON *cd = cJSON_AddObjectToObject(u, "completion_tokens_details");
    cJSON_AddNumberToObject(cd, "reasoning_tokens", b->reasoning_total);
    cJSON_AddNullToObject(j, "error");
    write_line(out, j);
}

/* ==== the run ================================================================================= */

typedef struct progress {
    bool on;
    double t0, last;
} progress;

static void progress_draw(progress *p, int done, int total, long tokens, bool final)
{
    double now = eng_now_s();
    if (!p->on || (!final && now - p->last < 0.1)) return;
    p->last = now;
    double dt = now - p->t0 > 1e-9 ? now - p->t0 : 1e-9;
    int w = 30, fill = total ? (int)((double)done / total * w) : w;
    fprintf(stderr, "\rbatch [");
    for (int i = 0; i < w; i++) fputc(i < fill ? '=' : (i == fill ? '>' : ' '), stderr);
    fprintf(stderr, "] %d/%d requests  %.2f req/s  %.1f tok/s   ", done, total, done / dt, tokens / dt);
    if (final) fputc('\n', stderr);
}

static void on_event(breq *b, const eng_event *ev, const eng_tokenizer *tok)
{
    if (ev->kind == ENG_EV_ERROR) {
        fail(b, ev->error == ENG_ERR_INVALID ? "invalid_request" : "engine_error", "%s", ev->error_message);
        b->finished = true;
        return;
    }
    choice_out *co = &b->ch[ev->choice];
    if (ev->kind == ENG_EV_DONE) {
        co->done = true;
        co->finish = ev->finish;
        b->usage = ev->usage;
        b->completion_total += ev->usage.completion_tokens;
        b->reasoning_total += ev->usage.reasoning_tokens;
        if (--b->n_open == 0) b->finished = true;
        return;
    }
    eng_buf_puts(&co->content, ev->content);
    eng_buf_puts(&co->reasoning, ev->reasoning);
    for (size_t i = 0; i < ev->n_tool_deltas; i++) {
        const eng_tool_delta *t = &ev->tool_deltas[i];
        if (t->name) {
            tool_out *g = realloc(co->tools, (size_t)(co->n_tools + 1) * sizeof *g);
            if (!g) continue;
            co->tools = g;
            tool_out *x = &co->tools[co->n_tools++];
            x->id = strdup(t->id ? t->id : "");
            x->name = strdup(t->name);
            eng_buf_init(&x->args);
        }
        if (t->arguments && t->arguments[0] && co->n_tools)
            eng_buf_puts(&co->tools[co->n_tools - 1].args, t->arguments);
    }
    if (ev->logprobs && b->chat) {
        if (!co->logprobs) co->logprobs = cJSON_CreateArray();
        for (size_t i = 0; i < ev->n_tokens; i++) {
            const eng_token_logprob *l = &ev->logprobs[i];
            cJSON *o = cJSON_CreateObject();
            add_token_fields(o, tok, l->token);
            cJSON_AddNumberToObject(o, "logprob", l->logprob);
            cJSON *tops = cJSON_AddArrayToObject(o, "top_logprobs");
            for (size_t k = 0; k < l->n_top; k++) {
                cJSON *t = cJSON_CreateObject();
                add_token_fields(t, tok, l->top[k].token);
                cJSON_AddNumberToObject(t, "logprob", l->top[k].logprob);
                cJSON_AddItemToArray(tops, t);
            }
            cJSON_AddItemToArray(co->logprobs, o);
        }
    }
}

int cmd_batch(int argc, char **argv)
{
    cli_engine_opts eo;
    cli_engine_opts_init(&eo);
    const char *in_path = NULL, *out_path = NULL;
    long max_tokens_default = 1024;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = cli_engine_flag("batch", argc, argv, &i, &eo);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--max-tokens-default") && i + 1 < argc) {
            if (!cli_parse_long(argv[++i], 1, 1 << 24, &max_tokens_default)) {
                fprintf(stderr, "qnext batch: --max-tokens-default needs an integer >= 1, got '%s'\n",
                        argv[i]);
                return 2;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "qnext batch: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!in_path) {
            in_path = a;
        } else if (!out_path) {
            out_path = a;
        } else {
            fprintf(stderr, "qnext batch: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (!eo.model || !in_path || !out_path) {
        usage(stderr);
        return 2;
    }
    FILE *in = !strcmp(in_path, "-") ? stdin : fopen(in_path, "rb");
    if (!in) {
        fprintf(stderr, "qnext batch: cannot open %s\n", in_path);
        return 1;
    }
    size_t len;
    char *text = cli_read_all(in, &len);
    if (in != stdin) fclose(in);
    if (!text) {
        fprintf(stderr, "qnext batch: cannot read %s\n", in_path);
        return 1;
    }
    int rc = 1, n = 0, cap = 0;
    int *by_id = NULL;
    breq *reqs = NULL;
    eng_engine *e = NULL;
    FILE *out = NULL;
    /* parse every line first: bad lines become error lines without touching the engine */
    int line_no = 0;
    for (char *p = text, *nl; p && *p; p = nl ? nl + 1 : NULL) {
        nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        line_no++;
        char *s = p;
        while (*s == ' ' || *s == '\t' || *s == '\r') s++;
        if (!*s) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            breq *g = realloc(reqs, (size_t)cap * sizeof *g);
            if (!g) {
                fprintf(stderr, "qnext batch: out of memory\n");
                goto out;
            }
            reqs = g;
        }
        breq *b = &reqs[n++];
        memset(b, 0, sizeof *b);
        b->line = line_no;
        parse_line(b, s, max_tokens_default);
    }
    if (!(out = fopen(out_path, "wb"))) {
        fprintf(stderr, "qnext batch: cannot write %s\n", out_path);
        goto out;
    }
    if (!(e = cli_engine_open("batch", &eo))) goto out;
    eng_model_info mi;
    eng_get_model_info(e, &mi);
    const eng_tokenizer *tok = eng_get_tokenizer(e);
    int n_done = 0, n_failed = 0, next = 0;
    by_id = calloc((size_t)n + 2, sizeof *by_id); /* engine ids are 1, 2, ... in submission order */
    if (!by_id) {
        fprintf(stderr, "qnext batch: out of memory\n");
        goto out;
    }
    long tokens = 0;
    progress pg = {cli_isatty(stderr) || (getenv("QNEXT_PROGRESS") && !strcmp(getenv("QNEXT_PROGRESS"), "1")),
                   eng_now_s(), 0};
    for (int i = 0; i < n; i++)
        if (reqs[i].error_code) {
            write_error(out, i + 1, &reqs[i]);
            reqs[i].finished = true;
            n_done++;
            n_failed++;
        }
    while (n_done < n) {
        /* submit what the queue takes */
        for (; next < n; next++) {
            breq *b = &reqs[next];
            if (b->error_code) continue;
            eng_status st = eng_submit(e, &b->req, &b->id);
            if (st == ENG_ERR_QUEUE_FULL) break;
            if (st != ENG_OK) {
                fail(b, "invalid_request", "%s", eng_err_last());
                write_error(out, next + 1, b);
                b->finished = true;
                n_done++;
                n_failed++;
                continue;
            }
            b->submitted = true;
            if (b->id <= (uint64_t)n) by_id[b->id] = next;
            b->n_open = b->req.sampling.n;
            b->ch = calloc((size_t)b->req.sampling.n, sizeof *b->ch);
            if (!b->ch) {
                fprintf(stderr, "qnext batch: out of memory\n");
                goto out;
            }
        }
        eng_event ev[256];
        size_t k = 0;
        eng_status st = eng_step(e, ev, 256, &k);
        if (st != ENG_OK) {
            fprintf(stderr, "\nqnext batch: engine failure: %s: %s\n", eng_status_str(st), eng_err_last());
            goto out;
        }
        for (size_t i = 0; i < k; i++) {
            if (ev[i].request_id == 0 || ev[i].request_id > (uint64_t)n) continue;
            breq *b = &reqs[by_id[ev[i].request_id]];
            if (!b->submitted || b->id != ev[i].request_id || b->finished) continue;
            tokens += (long)ev[i].n_tokens;
            on_event(b, &ev[i], tok);
            if (b->finished) {
                int idx = (int)(b - reqs) + 1;
                if (b->error_code) {
                    write_error(out, idx, b);
                    n_failed++;
                } else {
                    write_result(out, idx, b, mi.model_id);
                }
                fflush(out);
                n_done++;
            }
        }
        progress_draw(&pg, n_done, n, tokens, false);
    }
    progress_draw(&pg, n_done, n, tokens, true);
    double dt = eng_now_s() - pg.t0;
    fprintf(stderr,
            "qnext batch: %d requests (%d failed) in %.2f s: %.2f req/s, %.1f generated tok/s -> %s\n", n,
            n_failed, dt, dt > 0 ? n / dt : 0.0, dt > 0 ? tokens / dt : 0.0, out_path);
    rc = 0;
out:
    free(by_id);
    if (out && fclose(out) != 0 && rc == 0) {
        fprintf(stderr, "qnext batch: cannot write %s\n", out_path);
        rc = 1;
    }
    eng_destroy(e);
    for (int i = 0; i < n; i++) breq_free(&reqs[i]);
    free(reqs);
    free(text);
    return rc;
}
