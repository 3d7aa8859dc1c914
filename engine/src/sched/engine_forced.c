/* sched/engine_forced.c - TEST HOOK: forced output for end-to-end tests (off by default).
 *
 * A random-weight demo model never writes a tool call, yet the gateway's tool-call path should be
 * tested with the real engine, the real streaming parsers and the real stop logic. When the
 * environment variable QNEXT_TEST_FORCED_OUTPUT names a file at eng_create, the engine reads
 * rules from it:
 *
 *     {"rules": [
 *         {"marker": "@@force-tool@@",
 *          "text": "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":
 * \"Paris\"}}\n</tool_call><|im_end|>"},
 *         {"marker": "@@force-ids@@", "tokens": [9707, 1879]}
 *     ]}
 *
 * A request whose prompt text (the text input, or the rendered chat prompt; token-id inputs are
 * never matched) contains a rule's marker emits the rule's tokens instead of sampling: output
 * position i gets token i ("text" is encoded with special tokens parsed, so "<|im_end|>" is the
 * EOS token and ends the choice as a real EOS would). Forced tokens go through the detokenizer,
 * stop matching, the reasoning / tool-call parsers, logprobs (the model's raw logprob of the forced
 * token) and the KV / state caches exactly like sampled ones; after the last forced token the
 * request samples normally. The first matching rule wins. Every id must be below the model's
 * vocabulary size (it is fed back into the model). The engine logs a warning when the hook is on.
 * Production deployments never set the variable; nothing else enables the hook.
 */
#include "sched/engine_impl.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define FORCED_MAX_BYTES (1u << 20)
#define FORCED_MAX_RULES 64

void eng_forced_destroy(eng_forced *f)
{
    if (!f) return;
    for (int i = 0; i < f->n_rules; i++) {
        eng_free(f->rules[i].marker);
        eng_free(f->rules[i].ids);
    }
    eng_free(f->rules);
    eng_free(f);
}

const eng_forced_rule *eng_forced_match(const eng_forced *f, const char *prompt, size_t len)
{
    if (!f || !prompt) return NULL;
    for (int i = 0; i < f->n_rules; i++) {
        const char *m = f->rules[i].marker;
        size_t ml = strlen(m);
        if (ml == 0 || ml > len) continue;
        for (size_t k = 0; k + ml <= len; k++)
            if (prompt[k] == m[0] && !memcmp(prompt + k, m, ml)) return &f->rules[i];
    }
    return NULL;
}

static eng_status parse_rule(const cJSON *j, const eng_tokenizer *tok, int vocab, const char *path, int idx,
                             eng_forced_rule *out)
{
    const cJSON *marker = cJSON_GetObjectItemCaseSensitive(j, "marker");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(j, "text");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(j, "tokens");
    if (!cJSON_IsObject(j) || !cJSON_IsString(marker) || !marker->valuestring[0])
        return eng_err_set(ENG_ERR_FORMAT, "%s: rules[%d] needs a non-empty string \"marker\"", path, idx);
    if (!!cJSON_IsString(text) == !!cJSON_IsArray(ids))
        return eng_err_set(ENG_ERR_FORMAT,
                           "%s: rules[%d] needs either \"text\" (a string) or \"tokens\" (ids)", path, idx);
    if (!(out->marker = eng_strdup(marker->valuestring))) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    if (cJSON_IsString(text)) {
        size_t n = 0;
        eng_status st =
            eng_tokenizer_encode(tok, text->valuestring, strlen(text->valuestring), true, &out->ids, &n);
        if (st != ENG_OK) return st;
        out->n_ids = (int)n;
    } else {
        int n = cJSON_GetArraySize(ids);
        if (!(out->ids = eng_malloc((size_t)(n ? n : 1) * sizeof *out->ids)))
            return eng_err_set(ENG_ERR_NOMEM, "out of memory");
        for (int k = 0; k < n; k++) {
            const cJSON *v = cJSON_GetArrayItem(ids, k);
            if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= vocab ||
                v->valuedouble != (double)(int32_t)v->valuedouble)
                return eng_err_set(ENG_ERR_FORMAT, "%s: rules[%d].tokens[%d] is not a token id in [0, %d)",
                                   path, idx, k, vocab);
            out->ids[k] = (int32_t)v->valuedouble;
        }
        out->n_ids = n;
    }
    for (int k = 0; k < out->n_ids; k++)
        if (out->ids[k] >= vocab)
            return eng_err_set(ENG_ERR_INVALID,
                               "%s: rules[%d]: token %d is outside the model's vocabulary (%d)", path, idx,
                               out->ids[k], vocab);
    return ENG_OK;
}

eng_status eng_forced_parse(const char *json, size_t len, const eng_tokenizer *tok, int vocab,
                            const char *source, eng_forced **out)
{
    *out = NULL;
    eng_forced *f = NULL;
    eng_status st = ENG_OK;
    cJSON *root = cJSON_ParseWithLength(json, len);
    const cJSON *rules = root ? cJSON_GetObjectItemCaseSensitive(root, "rules") : NULL;
    if (!cJSON_IsArray(rules) || cJSON_GetArraySize(rules) > FORCED_MAX_RULES) {
        st = eng_err_set(ENG_ERR_FORMAT, "%s: expected {\"rules\": [...]} with at most %d rules", source,
                         FORCED_MAX_RULES);
        goto out;
    }
    if (!(f = eng_calloc(1, sizeof *f)) ||
        !(f->rules = eng_calloc((size_t)cJSON_GetArraySize(rules) + 1, sizeof *f->rules))) {
        st = eng_err_set(ENG_ERR_NOMEM, "out of memory");
        goto out;
    }
    const cJSON *j;
    cJSON_ArrayForEach(j, rules)
    {
        st = parse_rule(j, tok, vocab, source, f->n_rules, &f->rules[f->n_rules]);
        f->n_rules++;
        if (st != ENG_OK) goto out;
    }
    *out = f;
    f = NULL;
out:
    eng_forced_destroy(f);
    cJSON_Delete(root);
    return st;
}

eng_status eng_forced_load(const eng_tokenizer *tok, int vocab, eng_forced **out)
{
    *out = NULL;
    const char *path = getenv("QNEXT_TEST_FORCED_OUTPUT");
    if (!path || !path[0]) return ENG_OK;
    char *data = NULL;
    size_t len = 0;
    eng_status st = eng_file_read(path, FORCED_MAX_BYTES, &data, &len);
    if (st != ENG_OK) return eng_err_wrap(st, "QNEXT_TEST_FORCED_OUTPUT");
    st = eng_forced_parse(data, len, tok, vocab, path, out);
    eng_free(data);
    if (st == ENG_OK)
        eng_log(ENG_LOG_WARN,
                "TEST HOOK ON: QNEXT_TEST_FORCED_OUTPUT=%s forces the output of %d prompt marker(s)", path,
                (*out)->n_rules);
    return st;
}
