/* openai_request.c - OpenAI request validation and mapping into gw_request (see openai_request.h).
 *
 * Order of checks: the raw body (size, UTF-8, NUL characters), JSON syntax (with the byte offset
 * of the error), then each top-level key through one table of known fields (unknown and duplicate
 * keys are 400s), then cross-field rules (top_logprobs needs logprobs, stream_options needs stream,
 * n * prompts, tool_choice needs tools, ...). Every message names the parameter the way OpenAI
 * does ("messages[1].content[0].type").
 */
#include "openai_request.h"

#include "core/core.h" /* defines: eng_malloc, eng_buf */
#include "json_write.h" /* defines: gw_utf8_valid */

#include <cjson/cJSON.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ==== errors ================================================================================== */

eng_status gw_error_set(gw_error *e, int status, const char *type, const char *code, const char *param,
                        const char *fmt, ...)
{
    e->status = status;
    e->type = type;
    e->code = code;
    e->retry_after_s = 0;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return ENG_ERR_INVALID;
}

#define INVALID "invalid_request_error"

/* A 400 naming parameter `param`. */
#define BAD(ctx, param, ...) gw_error_set((ctx)->err, 400, INVALID, NULL, (param), __VA_ARGS__)
#define OOM(ctx) (gw_error_set((ctx)->err, 500, "server_error", NULL, NULL, "out of memory"), ENG_ERR_NOMEM)

/* ==== limits ================================================================================== */

void gw_limits_default(gw_limits *l)
{
    memset(l, 0, sizeof *l);
    l->max_n = 128;
    l->max_messages = 4096;
    l->max_content_parts = 1024;
    l->max_prompts = 256;
    l->max_tools = 512;
    l->max_logit_bias = 1024;
    l->max_stop_bytes = 1024;
    l->max_stop_token_ids = 256;
}

/* ==== parse context and value helpers ========================================================= */

typedef struct pctx {
    gw_request *r;
    gw_error *err;
    const gw_limits *lim;
    bool saw_top_logprobs;
    int top_logprobs;
    bool logprobs_flag;     /* chat: logprobs true */
    bool has_stream_options;
    bool has_max_completion_tokens;
    int32_t max_tokens_field; /* chat: the deprecated max_tokens, used when max_completion_tokens is absent */
    bool has_max_tokens_field;
    const char *tool_choice; /* "none" / "auto" / NULL */
    bool has_tool_choice_obj;
} pctx;

static bool is_integer(const cJSON *v)
{
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble == floor(v->valuedouble);
}

/* An integer in [lo, hi]; otherwise a 400 naming `param`. */
static eng_status get_int(pctx *c, const cJSON *v, const char *param, double lo, double hi, int64_t *out)
{
    if (!is_integer(v)) return BAD(c, param, "'%s' must be an integer", param);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return BAD(c, param, "'%s' must be between %.0f and %.0f, got %.0f", param, lo, hi, v->valuedouble);
    *out = (int64_t)v->valuedouble;
    return ENG_OK;
}

/* A finite number in [lo, hi]. */
static eng_status get_num(pctx *c, const cJSON *v, const char *param, double lo, double hi, double *out)
{
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return BAD(c, param, "'%s' must be a number", param);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return BAD(c, param, "'%s' must be between %g and %g, got %g", param, lo, hi, v->valuedouble);
    *out = v->valuedouble;
    return ENG_OK;
}

static eng_status get_bool(pctx *c, const cJSON *v, const char *param, bool *out)
{
    if (!cJSON_IsBool(v)) return BAD(c, param, "'%s' must be a boolean", param);
    *out = cJSON_IsTrue(v);
    return ENG_OK;
}

static eng_status dup_str(pctx *c, const char *s, char **out)
{
    *out = eng_strdup(s);
    return *out ? ENG_OK : OOM(c);
}

/* Compact JSON text of `v` in eng_malloc'd memory. */
static eng_status print_json(pctx *c, const cJSON *v, char **out)
{
    char *p = cJSON_PrintUnformatted(v);
    if (!p) return OOM(c);
    *out = eng_strdup(p);
    cJSON_free(p);
    return *out ? ENG_OK : OOM(c);
}

/* Length in characters (code points) of a valid UTF-8 string. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static bool key_in(const char *k, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(k, *list)) return true;
    return false;
}

/* ==== chat messages =========================================================================== */

/* content: a string, or an array of {type:"text", text} parts. `required`: absent/null is an
 * error. Assistant content may also be null. */
static eng_status check_content(pctx *c, const cJSON *v, const char *param, bool required)
{
    char p[128];
    if (!v || cJSON_IsNull(v)) {
        if (required) return BAD(c, param, "'%s' is required", param);
        return ENG_OK;
    }
    if (cJSON_IsString(v)) return ENG_OK;
    if (!cJSON_IsArray(v)) return BAD(c, param, "'%s' must be a string or an array of content parts", param);
    int n = cJSON_GetArraySize(v);
    if (n == 0 && required) return BAD(c, param, "'%s' must not be an empty array", param);
    if ((size_t)n > c->lim->max_content_parts)
        return BAD(c, param, "'%s' has %d parts, more than the limit of %zu", param, n, c->lim->max_content_parts);
    int i = 0;
    for (const cJSON *part = v->child; part; part = part->next, i++) {
        snprintf(p, sizeof p, "%s[%d]", param, i);
        if (!cJSON_IsObject(part)) return BAD(c, p, "'%s' must be an object", p);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        if (!cJSON_IsString(type)) return BAD(c, p, "'%s.type' must be a string", p);
        if (strcmp(type->valuestring, "text") != 0) {
            char pt[160];
            snprintf(pt, sizeof pt, "%s.type", p);
            return BAD(c, pt, "content part type '%.40s' is not supported (only 'text')", type->valuestring);
        }
        for (const cJSON *k = part->child; k; k = k->next) {
            if (strcmp(k->string, "type") != 0 && strcmp(k->string, "text") != 0) {
                char pk[200];
                snprintf(pk, sizeof pk, "%s.%.40s", p, k->string);
                return BAD(c, pk, "unrecognized content part field '%.40s'", k->string);
            }
        }
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(text)) return BAD(c, p, "'%s.text' must be a string", p);
    }
    return ENG_OK;
}

static eng_status check_opt_string(pctx *c, const cJSON *msg, const char *key, const char *mp)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(msg, key);
    if (!v || cJSON_IsNull(v) || cJSON_IsString(v)) return ENG_OK;
    char p[160];
    snprintf(p, sizeof p, "%s.%s", mp, key);
    return BAD(c, p, "'%s' must be a string", p);
}

static eng_status check_tool_calls(pctx *c, const cJSON *v, const char *mp)
{
    char p[160];
    snprintf(p, sizeof p, "%s.tool_calls", mp);
    if (!v || cJSON_IsNull(v)) return ENG_OK;
    if (!cJSON_IsArray(v)) return BAD(c, p, "'%s' must be an array", p);
    int i = 0;
    for (const cJSON *tc = v->child; tc; tc = tc->next, i++) {
        char q[192];
        snprintf(q, sizeof q, "%s[%d]", p, i);
        if (!cJSON_IsObject(tc)) return BAD(c, q, "'%s' must be an object", q);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(tc, "type");
        if (type && !cJSON_IsNull(type) && (!cJSON_IsString(type) || strcmp(type->valuestring, "function") != 0))
            return BAD(c, q, "'%s.type' must be 'function'", q);
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(tc, "id");
        if (id && !cJSON_IsNull(id) && !cJSON_IsString(id)) return BAD(c, q, "'%s.id' must be a string", q);
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
        if (!cJSON_IsObject(fn)) return BAD(c, q, "'%s.function' must be an object", q);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        if (!cJSON_IsString(name)) return BAD(c, q, "'%s.function.name' must be a string", q);
        if (!cJSON_IsString(args)) return BAD(c, q, "'%s.function.arguments' must be a string (JSON text)", q);
        for (const cJSON *k = tc->child; k; k = k->next)
            if (strcmp(k->string, "type") && strcmp(k->string, "id") && strcmp(k->string, "function") &&
                strcmp(k->string, "index"))
                return BAD(c, q, "unrecognized field '%.40s' in '%s'", k->string, q);
    }
    return ENG_OK;
}

static eng_status check_message(pctx *c, const cJSON *m, int i)
{
    static const char *const sys_keys[] = {"role", "content", "name", NULL};
    static const char *const asst_keys[] = {"role",      "content",           "name",      "tool_calls",
                                            "refusal",   "reasoning_content", "reasoning", "annotations",
                                            "audio",     "function_call",     NULL};
    static const char *const tool_keys[] = {"role", "content", "tool_call_id", "name", NULL};
    char mp[64];
    snprintf(mp, sizeof mp, "messages[%d]", i);
    if (!cJSON_IsObject(m)) return BAD(c, mp, "'%s' must be an object", mp);
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
    char p[160];
    snprintf(p, sizeof p, "%s.role", mp);
    if (!cJSON_IsString(role)) return BAD(c, p, "'%s' must be a string", p);
    const char *r = role->valuestring;
    const char *const *keys;
    eng_status st;
    snprintf(p, sizeof p, "%s.content", mp);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
    if (!strcmp(r, "system") || !strcmp(r, "developer") || !strcmp(r, "user")) {
        keys = sys_keys;
        if ((st = check_content(c, content, p, true))) return st;
    } else if (!strcmp(r, "assistant")) {
        keys = asst_keys;
        if ((st = check_content(c, content, p, false))) return st;
        if ((st = check_tool_calls(c, cJSON_GetObjectItemCaseSensitive(m, "tool_calls"), mp))) return st;
        if ((st = check_opt_string(c, m, "refusal", mp))) return st;
        if ((st = check_opt_string(c, m, "reasoning_content", mp))) return st;
        if ((st = check_opt_string(c, m, "reasoning", mp))) return st;
        const cJSON *audio = cJSON_GetObjectItemCaseSensitive(m, "audio");
        const cJSON *fc = cJSON_GetObjectItemCaseSensitive(m, "function_call");
        if (audio && !cJSON_IsNull(audio)) {
            snprintf(p, sizeof p, "%s.audio", mp);
            return BAD(c, p, "'%s' is not supported", p);
        }
        if (fc && !cJSON_IsNull(fc)) {
            snprintf(p, sizeof p, "%s.function_call", mp);
            return BAD(c, p, "'%s' is not supported (use tool_calls)", p);
        }
    } else if (!strcmp(r, "tool")) {
        keys = tool_keys;
        if ((st = check_content(c, content, p, true))) return st;
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "tool_call_id");
        if (!cJSON_IsString(id)) {
            snprintf(p, sizeof p, "%s.tool_call_id", mp);
            return BAD(c, p, "'%s' is required for role 'tool' and must be a string", p);
        }
    } else {
        snprintf(p, sizeof p, "%s.role", mp);
        return BAD(c, p, "'%s' must be one of system, developer, user, assistant, tool (got '%.40s')", p, r);
    }
    if ((st = check_opt_string(c, m, "name", mp))) return st;
    for (const cJSON *k = m->child; k; k = k->next) {
        if (!key_in(k->string, keys)) {
            snprintf(p, sizeof p, "%s.%.40s", mp, k->string);
            return BAD(c, p, "unrecognized field '%.40s' in a '%s' message", k->string, r);
        }
    }
    return ENG_OK;
}

static eng_status f_messages(pctx *c, const cJSON *v)
{
    if (!cJSON_IsArray(v)) return BAD(c, "messages", "'messages' must be an array");
    int n = cJSON_GetArraySize(v);
    if (n < 1) return BAD(c, "messages", "'messages' must contain at least one message");
    if ((size_t)n > c->lim->max_messages)
        return BAD(c, "messages", "'messages' has %d entries, more than the limit of %zu", n, c->lim->max_messages);
    int i = 0;
    eng_status st;
    for (const cJSON *m = v->child; m; m = m->next, i++)
        if ((st = check_message(c, m, i))) return st;
    return print_json(c, v, &c->r->messages_json);
}

/* ==== tools =================================================================================== */

static bool valid_fn_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
              ch == '-'))
            return false;
    }
    return true;
}

static eng_status f_tools(pctx *c, const cJSON *v)
{
    if (!cJSON_IsArray(v)) return BAD(c, "tools", "'tools' must be an array");
    size_t n = (size_t)cJSON_GetArraySize(v);
    if (n > c->lim->max_tools)
        return BAD(c, "tools", "'tools' has %zu entries, more than the limit of %zu", n, c->lim->max_tools);
    c->r->tools_json = eng_calloc(n ? n : 1, sizeof(char *));
    if (!c->r->tools_json) return OOM(c);
    char p[96];
    size_t i = 0;
    for (const cJSON *t = v->child; t; t = t->next, i++) {
        snprintf(p, sizeof p, "tools[%zu]", i);
        if (!cJSON_IsObject(t)) return BAD(c, p, "'%s' must be an object", p);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "function") != 0) {
            snprintf(p, sizeof p, "tools[%zu].type", i);
            return BAD(c, p, "'%s' must be 'function' (other tool types are not supported)", p);
        }
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        snprintf(p, sizeof p, "tools[%zu].function", i);
        if (!cJSON_IsObject(fn)) return BAD(c, p, "'%s' must be an object", p);
        for (const cJSON *k = t->child; k; k = k->next) {
            if (strcmp(k->string, "type") && strcmp(k->string, "function")) {
                snprintf(p, sizeof p, "tools[%zu].%.40s", i, k->string);
                return BAD(c, p, "unrecognized field '%s'", p);
            }
        }
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        snprintf(p, sizeof p, "tools[%zu].function.name", i);
        if (!cJSON_IsString(name) || !valid_fn_name(name->valuestring))
            return BAD(c, p, "'%s' must be a string of 1 to 64 letters, digits, '_' or '-'", p);
        for (const cJSON *k = fn->child; k; k = k->next) {
            snprintf(p, sizeof p, "tools[%zu].function.%.40s", i, k->string);
            if (!strcmp(k->string, "name")) continue;
            if (!strcmp(k->string, "description")) {
                if (!cJSON_IsString(k) && !cJSON_IsNull(k)) return BAD(c, p, "'%s' must be a string", p);
            } else if (!strcmp(k->string, "parameters")) {
                if (!cJSON_IsObject(k) && !cJSON_IsNull(k)) return BAD(c, p, "'%s' must be a JSON Schema object", p);
            } else if (!strcmp(k->string, "strict")) {
                if (cJSON_IsTrue(k))
                    return BAD(c, p, "'%s': strict (schema-constrained) tool calls are not supported", p);
                if (!cJSON_IsFalse(k) && !cJSON_IsNull(k)) return BAD(c, p, "'%s' must be a boolean", p);
            } else {
                return BAD(c, p, "unrecognized field '%s'", p);
            }
        }
        eng_status st = print_json(c, t, &c->r->tools_json[i]);
        if (st) return st;
        c->r->n_tools = i + 1;
    }
    return ENG_OK;
}

static eng_status f_tool_choice(pctx *c, const cJSON *v)
{
    if (cJSON_IsString(v)) {
        if (!strcmp(v->valuestring, "none") || !strcmp(v->valuestring, "auto")) {
            c->tool_choice = !strcmp(v->valuestring, "none") ? "none" : "auto";
            return ENG_OK;
        }
        if (!strcmp(v->valuestring, "required"))
            return BAD(c, "tool_choice", "tool_choice 'required' is not supported (use 'auto' or 'none')");
        return BAD(c, "tool_choice", "'tool_choice' must be 'none', 'auto' or 'required'");
    }
    if (cJSON_IsObject(v))
        return BAD(c, "tool_choice", "forcing a named tool with 'tool_choice' is not supported (use 'auto' or 'none')");
    return BAD(c, "tool_choice", "'tool_choice' must be a string or an object");
}

/* ==== stop, logit_bias, prompts ================================================================ */

static eng_status add_stop(pctx *c, const cJSON *s, const char *param)
{
    if (!cJSON_IsString(s)) return BAD(c, param, "'%s' must be a string", param);
    size_t len = strlen(s->valuestring);
    if (len == 0) return BAD(c, param, "'%s' must not be an empty string", param);
    if (len > c->lim->max_stop_bytes)
        return BAD(c, param, "'%s' is longer than %zu bytes", param, c->lim->max_stop_bytes);
    return dup_str(c, s->valuestring, &c->r->stop[c->r->n_stop++]);
}

static eng_status f_stop(pctx *c, const cJSON *v)
{
    c->r->stop = eng_calloc(4, sizeof(char *));
    if (!c->r->stop) return OOM(c);
    if (cJSON_IsString(v)) return add_stop(c, v, "stop");
    if (!cJSON_IsArray(v)) return BAD(c, "stop", "'stop' must be a string or an array of strings");
    int n = cJSON_GetArraySize(v);
    if (n > 4) return BAD(c, "stop", "'stop' may hold at most 4 sequences, got %d", n);
    int i = 0;
    char p[32];
    for (const cJSON *s = v->child; s; s = s->next, i++) {
        snprintf(p, sizeof p, "stop[%d]", i);
        eng_status st = add_stop(c, s, p);
        if (st) return st;
    }
    return ENG_OK;
}

static eng_status f_stop_token_ids(pctx *c, const cJSON *v)
{
    if (!cJSON_IsArray(v)) return BAD(c, "stop_token_ids", "'stop_token_ids' must be an array of integers");
    size_t n = (size_t)cJSON_GetArraySize(v);
    if (n > c->lim->max_stop_token_ids)
        return BAD(c, "stop_token_ids", "'stop_token_ids' has more than %zu entries", c->lim->max_stop_token_ids);
    c->r->stop_token_ids = eng_calloc(n ? n : 1, sizeof(int32_t));
    if (!c->r->stop_token_ids) return OOM(c);
    double hi = c->lim->vocab_size > 0 ? c->lim->vocab_size - 1 : INT32_MAX;
    for (const cJSON *e = v->child; e; e = e->next) {
        int64_t id;
        eng_status st = get_int(c, e, "stop_token_ids", 0, hi, &id);
        if (st) return st;
        c->r->stop_token_ids[c->r->n_stop_token_ids++] = (int32_t)id;
    }
    return ENG_OK;
}

static eng_status f_logit_bias(pctx *c, const cJSON *v)
{
    if (!cJSON_IsObject(v)) return BAD(c, "logit_bias", "'logit_bias' must be an object mapping token ids to biases");
    size_t n = (size_t)cJSON_GetArraySize(v);
    if (n > c->lim->max_logit_bias)
        return BAD(c, "logit_bias", "'logit_bias' has %zu entries, more than the limit of %zu", n, c->lim->max_logit_bias);
    c->r->bias_tokens = eng_calloc(n ? n : 1, sizeof(int32_t));
    c->r->bias_values = eng_calloc(n ? n : 1, sizeof(float));
    if (!c->r->bias_tokens || !c->r->bias_values) return OOM(c);
    for (const cJSON *e = v->child; e; e = e->next) {
        const char *k = e->string;
        char *end;
        long long id = (*k >= '0' && *k <= '9') ? strtoll(k, &end, 10) : -1;
        if (id < 0 || *end || id > INT32_MAX || (c->lim->vocab_size > 0 && id >= c->lim->vocab_size))
            return BAD(c, "logit_bias", "'logit_bias' key '%.40s' is not a valid token id", k);
        double b = 0;
        eng_status st = get_num(c, e, "logit_bias", -100, 100, &b);
        if (st) return st;
        c->r->bias_tokens[c->r->n_bias] = (int32_t)id;
        c->r->bias_values[c->r->n_bias++] = (float)b;
    }
    return ENG_OK;
}

/* Token ids of a prompt: an array of integers in [0, vocab). */
static eng_status get_ids(pctx *c, const cJSON *arr, const char *param, gw_prompt *pr)
{
    size_t n = (size_t)cJSON_GetArraySize(arr);
    if (n == 0) return BAD(c, param, "'%s' must not be empty", param);
    pr->ids = eng_malloc(n * sizeof(int32_t));
    if (!pr->ids) return OOM(c);
    double hi = c->lim->vocab_size > 0 ? c->lim->vocab_size - 1 : INT32_MAX;
    for (const cJSON *e = arr->child; e; e = e->next) {
        int64_t id;
        if (!is_integer(e) || e->valuedouble < 0 || e->valuedouble > hi)
            return BAD(c, param, "'%s' must hold token ids (integers from 0 to %.0f)", param, hi);
        id = (int64_t)e->valuedouble;
        pr->ids[pr->n_ids++] = (int32_t)id;
    }
    return ENG_OK;
}

static eng_status f_prompt(pctx *c, const cJSON *v)
{
    gw_request *r = c->r;
    if (cJSON_IsString(v)) {
        r->prompts = eng_calloc(1, sizeof(gw_prompt));
        if (!r->prompts) return OOM(c);
        r->n_prompts = 1;
        return dup_str(c, v->valuestring, &r->prompts[0].text);
    }
    if (!cJSON_IsArray(v) || !v->child)
        return BAD(c, "prompt", "'prompt' must be a string, an array of strings, an array of token ids or an "
                                "array of token-id arrays, and not empty");
    const cJSON *first = v->child;
    if (cJSON_IsNumber(first)) { /* one prompt of token ids */
        r->prompts = eng_calloc(1, sizeof(gw_prompt));
        if (!r->prompts) return OOM(c);
        r->n_prompts = 1;
        return get_ids(c, v, "prompt", &r->prompts[0]);
    }
    size_t n = (size_t)cJSON_GetArraySize(v);
    if (n > c->lim->max_prompts)
        return BAD(c, "prompt", "'prompt' has %zu entries, more than the limit of %zu", n, c->lim->max_prompts);
    r->prompts = eng_calloc(n, sizeof(gw_prompt));
    if (!r->prompts) return OOM(c);
    size_t i = 0;
    char p[48];
    for (const cJSON *e = v->child; e; e = e->next, i++) {
        snprintf(p, sizeof p, "prompt[%zu]", i);
        r->n_prompts = i + 1;
        eng_status st;
        if (cJSON_IsString(first)) {
            if (!cJSON_IsString(e)) return BAD(c, p, "'%s' must be a string like the other prompts", p);
            st = dup_str(c, e->valuestring, &r->prompts[i].text);
        } else if (cJSON_IsArray(first)) {
            if (!cJSON_IsArray(e)) return BAD(c, p, "'%s' must be an array of token ids like the other prompts", p);
            st = get_ids(c, e, p, &r->prompts[i]);
        } else {
            return BAD(c, "prompt", "'prompt' must be a string, an array of strings, an array of token ids or "
                                    "an array of token-id arrays");
        }
        if (st) return st;
    }
    return ENG_OK;
}

static eng_status f_stream_options(pctx *c, const cJSON *v)
{
    if (!cJSON_IsObject(v)) return BAD(c, "stream_options", "'stream_options' must be an object");
    c->has_stream_options = true;
    for (const cJSON *k = v->child; k; k = k->next) {
        if (!strcmp(k->string, "include_usage")) {
            if (cJSON_IsNull(k)) continue;
            eng_status st = get_bool(c, k, "stream_options.include_usage", &c->r->include_usage);
            if (st) return st;
        } else if (!strcmp(k->string, "include_obfuscation")) {
            /* padding against side channels; we never add it, which the spec allows */
            bool b;
            if (!cJSON_IsNull(k)) {
                eng_status st = get_bool(c, k, "stream_options.include_obfuscation", &b);
                if (st) return st;
            }
        } else {
            char p[96];
            snprintf(p, sizeof p, "stream_options.%.40s", k->string);
            return BAD(c, p, "'%s' is not supported", p);
        }
    }
    return ENG_OK;
}

/* ==== the field table ========================================================================= */

enum field_id {
    F_MODEL, F_MESSAGES, F_PROMPT, F_STREAM, F_STREAM_OPTIONS, F_MAX_TOKENS, F_MAX_COMPLETION_TOKENS,
    F_TEMPERATURE, F_TOP_P, F_TOP_K, F_MIN_P, F_REPETITION_PENALTY, F_PRESENCE_PENALTY, F_FREQUENCY_PENALTY,
    F_SEED, F_N, F_STOP, F_STOP_TOKEN_IDS, F_LOGIT_BIAS, F_LOGPROBS, F_TOP_LOGPROBS, F_USER,
    F_SAFETY_IDENTIFIER, F_PROMPT_CACHE_KEY, F_TOOLS, F_TOOL_CHOICE, F_PARALLEL_TOOL_CALLS, F_RESPONSE_FORMAT,
    F_CHAT_TEMPLATE_KWARGS, F_MIN_TOKENS, F_IGNORE_EOS, F_SKIP_SPECIAL_TOKENS, F_ECHO, F_SUFFIX, F_BEST_OF,
    F_STORE, F_MODALITIES, F_SERVICE_TIER,
    /* known but unsupported: a 400 naming the field unless null */
    F_UNSUPPORTED,
    F_COUNT
};

typedef struct field {
    const char *name;
    int id;
    int apis; /* GW_API_* mask */
} field;

#define BOTH (GW_API_CHAT | GW_API_COMPLETIONS)
static const field fields[] = {
    {"model", F_MODEL, BOTH},
    {"messages", F_MESSAGES, GW_API_CHAT},
    {"prompt", F_PROMPT, GW_API_COMPLETIONS},
    {"stream", F_STREAM, BOTH},
    {"stream_options", F_STREAM_OPTIONS, BOTH},
    {"max_tokens", F_MAX_TOKENS, BOTH},
    {"max_completion_tokens", F_MAX_COMPLETION_TOKENS, GW_API_CHAT},
    {"temperature", F_TEMPERATURE, BOTH},
    {"top_p", F_TOP_P, BOTH},
    {"top_k", F_TOP_K, BOTH},
    {"min_p", F_MIN_P, BOTH},
    {"repetition_penalty", F_REPETITION_PENALTY, BOTH},
    {"presence_penalty", F_PRESENCE_PENALTY, BOTH},
    {"frequency_penalty", F_FREQUENCY_PENALTY, BOTH},
    {"seed", F_SEED, BOTH},
    {"n", F_N, BOTH},
    {"stop", F_STOP, BOTH},
    {"stop_token_ids", F_STOP_TOKEN_IDS, BOTH},
    {"logit_bias", F_LOGIT_BIAS, BOTH},
    {"logprobs", F_LOGPROBS, BOTH},
    {"top_logprobs", F_TOP_LOGPROBS, GW_API_CHAT},
    {"user", F_USER, BOTH},
    {"safety_identifier", F_SAFETY_IDENTIFIER, GW_API_CHAT},
    {"prompt_cache_key", F_PROMPT_CACHE_KEY, GW_API_CHAT},
    {"tools", F_TOOLS, GW_API_CHAT},
    {"tool_choice", F_TOOL_CHOICE, GW_API_CHAT},
    {"parallel_tool_calls", F_PARALLEL_TOOL_CALLS, GW_API_CHAT},
    {"response_format", F_RESPONSE_FORMAT, GW_API_CHAT},
    {"chat_template_kwargs", F_CHAT_TEMPLATE_KWARGS, GW_API_CHAT},
    {"min_tokens", F_MIN_TOKENS, BOTH},
    {"ignore_eos", F_IGNORE_EOS, BOTH},
    {"skip_special_tokens", F_SKIP_SPECIAL_TOKENS, BOTH},
    {"echo", F_ECHO, GW_API_COMPLETIONS},
    {"suffix", F_SUFFIX, GW_API_COMPLETIONS},
    {"best_of", F_BEST_OF, GW_API_COMPLETIONS},
    {"store", F_STORE, GW_API_CHAT},
    {"modalities", F_MODALITIES, GW_API_CHAT},
    {"service_tier", F_SERVICE_TIER, GW_API_CHAT},
    {"functions", F_UNSUPPORTED, GW_API_CHAT},
    {"function_call", F_UNSUPPORTED, GW_API_CHAT},
    {"audio", F_UNSUPPORTED, GW_API_CHAT},
    {"prediction", F_UNSUPPORTED, GW_API_CHAT},
    {"reasoning_effort", F_UNSUPPORTED, GW_API_CHAT},
    {"verbosity", F_UNSUPPORTED, GW_API_CHAT},
    {"web_search_options", F_UNSUPPORTED, GW_API_CHAT},
    {"metadata", F_UNSUPPORTED, GW_API_CHAT},
};
#define N_FIELDS (sizeof fields / sizeof fields[0])

static eng_status set_float(pctx *c, const cJSON *v, const char *name, double lo, double hi, bool *has, float *out)
{
    double d = 0;
    eng_status st = get_num(c, v, name, lo, hi, &d);
    if (st) return st;
    *has = true;
    *out = (float)d;
    return ENG_OK;
}

static eng_status handle_field(pctx *c, const field *f, const cJSON *v)
{
    gw_request *r = c->r;
    const char *nm = f->name;
    int64_t i64;
    double d = 0;
    eng_status st = ENG_OK;
    bool chat = r->api == GW_API_CHAT;
    switch (f->id) {
    case F_MODEL:
        if (!cJSON_IsString(v)) return BAD(c, nm, "'model' must be a string");
        if (utf8_chars(v->valuestring) > 256) return BAD(c, nm, "'model' is longer than 256 characters");
        return dup_str(c, v->valuestring, &r->model);
    case F_MESSAGES: return f_messages(c, v);
    case F_PROMPT: return f_prompt(c, v);
    case F_STREAM: return get_bool(c, v, nm, &r->stream);
    case F_STREAM_OPTIONS: return f_stream_options(c, v);
    case F_MAX_TOKENS:
    case F_MAX_COMPLETION_TOKENS:
        if ((st = get_int(c, v, nm, 1, INT32_MAX, &i64))) return st;
        if (f->id == F_MAX_COMPLETION_TOKENS) {
            c->has_max_completion_tokens = true;
            r->has_max_tokens = true;
            r->max_tokens = (int32_t)i64;
        } else {
            c->has_max_tokens_field = true;
            c->max_tokens_field = (int32_t)i64;
        }
        return ENG_OK;
    case F_TEMPERATURE: return set_float(c, v, nm, 0, 2, &r->has_temperature, &r->temperature);
    case F_TOP_P:
        if ((st = set_float(c, v, nm, 0, 1, &r->has_top_p, &r->top_p))) return st;
        /* OpenAI accepts 0 ("only the most likely token"); the engine's range is (0, 1] */
        if (r->top_p < 1e-9f) r->top_p = 1e-9f;
        return ENG_OK;
    case F_MIN_P: return set_float(c, v, nm, 0, 1, &r->has_min_p, &r->min_p);
    case F_REPETITION_PENALTY: return set_float(c, v, nm, 0.01, 10, &r->has_repetition_penalty, &r->repetition_penalty);
    case F_PRESENCE_PENALTY:
        if ((st = get_num(c, v, nm, -2, 2, &d))) return st;
        r->presence_penalty = (float)d;
        return ENG_OK;
    case F_FREQUENCY_PENALTY:
        if ((st = get_num(c, v, nm, -2, 2, &d))) return st;
        r->frequency_penalty = (float)d;
        return ENG_OK;
    case F_TOP_K:
        if ((st = get_int(c, v, nm, -1, INT32_MAX, &i64))) return st;
        r->has_top_k = true;
        r->top_k = i64 < 0 ? 0 : (int32_t)i64;
        return ENG_OK;
    case F_SEED:
        /* int64 range; doubles above 2^63 are out of range */
        if ((st = get_int(c, v, nm, -9223372036854775808.0, 9223372036854774784.0, &i64))) return st;
        r->has_seed = true;
        r->seed = (uint64_t)i64;
        return ENG_OK;
    case F_N:
        if ((st = get_int(c, v, nm, 1, c->lim->max_n, &i64))) return st;
        r->n = (int)i64;
        return ENG_OK;
    case F_STOP: return f_stop(c, v);
    case F_STOP_TOKEN_IDS: return f_stop_token_ids(c, v);
    case F_LOGIT_BIAS: return f_logit_bias(c, v);
    case F_LOGPROBS:
        if (chat) return get_bool(c, v, nm, &c->logprobs_flag);
        if ((st = get_int(c, v, nm, 0, 5, &i64))) return st;
        r->logprobs = (int)i64;
        return ENG_OK;
    case F_TOP_LOGPROBS:
        if ((st = get_int(c, v, nm, 0, 20, &i64))) return st;
        c->saw_top_logprobs = true;
        c->top_logprobs = (int)i64;
        return ENG_OK;
    case F_USER:
    case F_SAFETY_IDENTIFIER:
    case F_PROMPT_CACHE_KEY:
        /* identifiers for the caller's own bookkeeping; they change nothing in the output */
        if (!cJSON_IsString(v)) return BAD(c, nm, "'%s' must be a string", nm);
        if (utf8_chars(v->valuestring) > 512) return BAD(c, nm, "'%s' is longer than 512 characters", nm);
        return ENG_OK;
    case F_TOOLS: return f_tools(c, v);
    case F_TOOL_CHOICE:
        if (cJSON_IsObject(v)) c->has_tool_choice_obj = true;
        return f_tool_choice(c, v);
    case F_PARALLEL_TOOL_CALLS: return get_bool(c, v, nm, &r->parallel_tool_calls);
    case F_RESPONSE_FORMAT: {
        if (!cJSON_IsObject(v)) return BAD(c, nm, "'response_format' must be an object");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(v, "type");
        if (!cJSON_IsString(t)) return BAD(c, "response_format.type", "'response_format.type' must be a string");
        if (strcmp(t->valuestring, "text") != 0)
            return BAD(c, "response_format", "response_format type '%.40s' is not supported (only 'text')",
                       t->valuestring);
        if (cJSON_GetArraySize(v) != 1)
            return BAD(c, "response_format", "'response_format' of type 'text' takes no other fields");
        return ENG_OK;
    }
    case F_CHAT_TEMPLATE_KWARGS:
        if (!cJSON_IsObject(v)) return BAD(c, nm, "'chat_template_kwargs' must be an object");
        return print_json(c, v, &r->template_kwargs_json);
    case F_MIN_TOKENS:
        if ((st = get_int(c, v, nm, 0, INT32_MAX, &i64))) return st;
        r->min_tokens = (int32_t)i64;
        return ENG_OK;
    case F_IGNORE_EOS: return get_bool(c, v, nm, &r->ignore_eos);
    case F_SKIP_SPECIAL_TOKENS: return get_bool(c, v, nm, &r->skip_special_tokens);
    case F_ECHO: return get_bool(c, v, nm, &r->echo);
    case F_SUFFIX:
        if (!cJSON_IsString(v)) return BAD(c, nm, "'suffix' must be a string");
        if (v->valuestring[0]) return BAD(c, nm, "'suffix' (insertion) is not supported");
        return ENG_OK;
    case F_BEST_OF:
        if ((st = get_int(c, v, nm, 1, c->lim->max_n, &i64))) return st;
        if (i64 > 1) return BAD(c, nm, "'best_of' greater than 1 is not supported");
        return ENG_OK;
    case F_STORE:
        if (!cJSON_IsBool(v)) return BAD(c, nm, "'store' must be a boolean");
        if (cJSON_IsTrue(v)) return BAD(c, nm, "'store' (stored completions) is not supported");
        return ENG_OK;
    case F_MODALITIES:
        if (!cJSON_IsArray(v)) return BAD(c, nm, "'modalities' must be an array");
        for (const cJSON *e = v->child; e; e = e->next)
            if (!cJSON_IsString(e) || strcmp(e->valuestring, "text") != 0)
                return BAD(c, nm, "only the 'text' modality is supported");
        return ENG_OK;
    case F_SERVICE_TIER:
        if (!cJSON_IsString(v) || (strcmp(v->valuestring, "auto") && strcmp(v->valuestring, "default")))
            return BAD(c, nm, "'service_tier' must be 'auto' or 'default'");
        return ENG_OK;
    case F_UNSUPPORTED: return BAD(c, nm, "'%s' is not supported", nm);
    }
    return BAD(c, nm, "'%s' is not supported", nm);
}

/* ==== entry point ============================================================================= */

/* True if the JSON text contains the escape \u0000 (cJSON would silently cut the string there).
 * Outside strings a backslash is a syntax error anyway, so no string tracking is needed. */
static bool has_nul_escape(const char *s, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] != '\\') continue;
        if (s[i + 1] == 'u' && i + 5 < n && s[i + 2] == '0' && s[i + 3] == '0' && s[i + 4] == '0' && s[i + 5] == '0')
            return true;
        i++; /* skip the escaped character (handles "\\\\") */
    }
    return false;
}

eng_status gw_request_parse(gw_api api, const char *body, size_t len, const gw_limits *lim, gw_request **out,
                            gw_error *err)
{
    *out = NULL;
    gw_limits deflim;
    if (!lim) {
        gw_limits_default(&deflim);
        lim = &deflim;
    }
    cJSON *root = NULL;
    gw_request *r = eng_calloc(1, sizeof *r);
    if (!r) return gw_error_set(err, 500, "server_error", NULL, NULL, "out of memory"), ENG_ERR_NOMEM;
    pctx c = {.r = r, .err = err, .lim = lim};
    eng_status st = ENG_OK;
    r->api = api;
    r->n = 1;
    r->logprobs = -1;
    r->parallel_tool_calls = true;
    r->skip_special_tokens = true;

    if (!body || len == 0) {
        st = BAD(&c, NULL, "the request body is empty; expected a JSON object");
        goto fail;
    }
    if (memchr(body, 0, len) || has_nul_escape(body, len)) {
        st = BAD(&c, NULL, "the request body contains a NUL character, which is not supported");
        goto fail;
    }
    if (!gw_utf8_valid(body, len)) {
        st = BAD(&c, NULL, "the request body is not valid UTF-8");
        goto fail;
    }
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!root) {
        size_t at = end && end >= body && end <= body + len ? (size_t)(end - body) : 0;
        st = BAD(&c, NULL, "the request body is not valid JSON (error near byte %zu)", at);
        goto fail;
    }
    for (const char *p = end; p < body + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            st = BAD(&c, NULL, "the request body has trailing data after the JSON value (byte %zu)",
                     (size_t)(p - body));
            goto fail;
        }
    }
    if (!cJSON_IsObject(root)) {
        st = BAD(&c, NULL, "the request body must be a JSON object");
        goto fail;
    }

    uint64_t seen = 0;
    for (const cJSON *kv = root->child; kv; kv = kv->next) {
        const field *f = NULL;
        size_t fi;
        for (fi = 0; fi < N_FIELDS; fi++) {
            if ((fields[fi].apis & (int)api) && !strcmp(fields[fi].name, kv->string)) {
                f = &fields[fi];
                break;
            }
        }
        if (!f) {
            st = BAD(&c, kv->string, "Unrecognized request argument supplied: %.64s", kv->string);
            goto fail;
        }
        if (seen & (1ull << fi)) {
            st = BAD(&c, kv->string, "duplicate key '%s' in the request body", kv->string);
            goto fail;
        }
        seen |= 1ull << fi;
        if (cJSON_IsNull(kv) && f->id != F_MODEL && f->id != F_MESSAGES && f->id != F_PROMPT) continue;
        if ((st = handle_field(&c, f, kv))) goto fail;
    }

    /* required fields */
    if (!r->model) {
        st = BAD(&c, "model", "you must provide a model parameter");
        goto fail;
    }
    if (api == GW_API_CHAT && !r->messages_json) {
        st = BAD(&c, "messages", "'messages' is a required property");
        goto fail;
    }
    if (api == GW_API_COMPLETIONS && !r->prompts) {
        st = BAD(&c, "prompt", "'prompt' is a required property");
        goto fail;
    }

    /* cross-field rules */
    if (c.has_stream_options && !r->stream) {
        st = BAD(&c, "stream_options", "'stream_options' is only allowed when 'stream' is true");
        goto fail;
    }
    if (api == GW_API_CHAT) {
        if (c.saw_top_logprobs && !c.logprobs_flag) {
            st = BAD(&c, "top_logprobs", "'logprobs' must be true when 'top_logprobs' is used");
            goto fail;
        }
        if (c.logprobs_flag) r->logprobs = c.saw_top_logprobs ? c.top_logprobs : 0;
        if (!c.has_max_completion_tokens && c.has_max_tokens_field) {
            r->has_max_tokens = true;
            r->max_tokens = c.max_tokens_field;
        }
        if (c.tool_choice && !strcmp(c.tool_choice, "none")) {
            /* honoured by not offering the tools to the model at all */
            for (size_t i = 0; i < r->n_tools; i++) eng_free(r->tools_json[i]);
            r->n_tools = 0;
        }
    } else {
        if (c.has_max_tokens_field) {
            r->has_max_tokens = true;
            r->max_tokens = c.max_tokens_field;
        } else {
            r->has_max_tokens = true;
            r->max_tokens = 16; /* OpenAI's default for /v1/completions */
        }
        if (r->echo) {
            for (size_t i = 0; i < r->n_prompts; i++) {
                if (!r->prompts[i].text) {
                    st = BAD(&c, "echo", "'echo' is supported only with text prompts, not token ids");
                    goto fail;
                }
            }
            if (r->logprobs >= 0) {
                st = BAD(&c, "echo", "'echo' together with 'logprobs' (prompt logprobs) is not supported");
                goto fail;
            }
        }
        if ((size_t)r->n * r->n_prompts > (size_t)lim->max_n) {
            st = BAD(&c, "n", "'n' times the number of prompts is %zu, more than the limit of %d",
                     (size_t)r->n * r->n_prompts, lim->max_n);
            goto fail;
        }
    }
    if (lim->max_tokens_clamp > 0 && (!r->has_max_tokens || r->max_tokens > lim->max_tokens_clamp)) {
        r->has_max_tokens = true;
        r->max_tokens = lim->max_tokens_clamp;
    }
    if (r->min_tokens > 0 && r->has_max_tokens && r->min_tokens > r->max_tokens) {
        st = BAD(&c, "min_tokens", "'min_tokens' (%d) is larger than the maximum number of tokens (%d)",
                 (int)r->min_tokens, (int)r->max_tokens);
        goto fail;
    }
    cJSON_Delete(root);
    *out = r;
    return ENG_OK;

fail:
    cJSON_Delete(root);
    gw_request_destroy(r);
    return st;
}

void gw_request_destroy(gw_request *r)
{
    if (!r) return;
    eng_free(r->model);
    eng_free(r->messages_json);
    for (size_t i = 0; r->tools_json && i < r->n_tools; i++) eng_free(r->tools_json[i]);
    eng_free(r->tools_json);
    eng_free(r->template_kwargs_json);
    for (size_t i = 0; r->prompts && i < r->n_prompts; i++) {
        eng_free(r->prompts[i].text);
        eng_free(r->prompts[i].ids);
    }
    eng_free(r->prompts);
    eng_free(r->bias_tokens);
    eng_free(r->bias_values);
    for (size_t i = 0; r->stop && i < r->n_stop; i++) eng_free(r->stop[i]);
    eng_free(r->stop);
    eng_free(r->stop_token_ids);
    eng_free(r);
}

size_t gw_request_n_choices(const gw_request *r)
{
    return (size_t)r->n * (r->api == GW_API_COMPLETIONS ? r->n_prompts : 1);
}
