/* tests/unit/engine/test_tokenizer_util.h - helpers shared by the tokenizer test suites: fixture
 * paths, reading the JSONL fixtures written by tests/fixtures/tokenizer/gen_corpus.py, printing
 * strings and id lists readably in failure messages. Header-only (static functions).
 */
#ifndef QN_TEST_TOKENIZER_UTIL_H
#define QN_TEST_TOKENIZER_UTIL_H

#include "core/core.h"       /* defines: eng_file_read, eng_buf */
#include "qnext/tokenizer.h" /* defines: eng_tokenizer_* */

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Path of a file in tests/fixtures/tokenizer (QNEXT_FIXTURES, else QNEXT_SOURCE_DIR/tests/fixtures,
 * else the path relative to this source file). Returns a static buffer. */
static inline const char *tk_fixture(const char *name)
{
    static char path[4096];
    const char *fx = getenv("QNEXT_FIXTURES");
    const char *src = getenv("QNEXT_SOURCE_DIR");
    if (fx && *fx)
        snprintf(path, sizeof path, "%s/tokenizer/%s", fx, name);
    else if (src && *src)
        snprintf(path, sizeof path, "%s/tests/fixtures/tokenizer/%s", src, name);
    else { /* relative to this source file (an absolute path in CMake builds) */
        const char *f = __FILE__, *slash = strrchr(f, '/');
        int dl = slash ? (int)(slash - f) : 1;
        snprintf(path, sizeof path, "%.*s/../../fixtures/tokenizer/%s", dl, slash ? f : ".", name);
    }
    return path;
}

/* A string value: a JSON string, or {"hex": "..."} for text with U+0000. Returns a heap copy
 * (free()) and its length, or NULL if v is neither. */
static inline char *tk_val_str(const cJSON *v, size_t *len)
{
    if (!v) return NULL;
    if (cJSON_IsString(v)) {
        *len = strlen(v->valuestring);
        char *s = malloc(*len + 1);
        memcpy(s, v->valuestring, *len + 1);
        return s;
    }
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(v, "hex");
    if (!cJSON_IsString(h)) return NULL;
    size_t n = strlen(h->valuestring) / 2;
    char *s = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned x;
        sscanf(h->valuestring + 2 * i, "%2x", &x);
        s[i] = (char)x;
    }
    s[n] = '\0';
    *len = n;
    return s;
}

/* A string field of object o (see tk_val_str); NULL if absent. */
static inline char *tk_get_str(const cJSON *o, const char *key, size_t *len)
{
    return tk_val_str(cJSON_GetObjectItemCaseSensitive(o, key), len);
}

/* An id list field; NULL (and *n = 0) if absent. free() the result. */
static inline int32_t *tk_get_ids(const cJSON *o, const char *key, size_t *n)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key), *it;
    *n = 0;
    if (!cJSON_IsArray(v)) return NULL;
    int32_t *ids = malloc(((size_t)cJSON_GetArraySize(v) + 1) * sizeof *ids);
    cJSON_ArrayForEach(it, v) ids[(*n)++] = (int32_t)it->valuedouble;
    return ids;
}

/* Reads a JSONL fixture into an array of parsed objects (NULL-terminated; free with tk_jsonl_free). */
static inline cJSON **tk_jsonl_read(const char *path, size_t *count)
{
    char *data = NULL;
    size_t len = 0;
    *count = 0;
    if (eng_file_read(path, (size_t)1 << 30, &data, &len) != ENG_OK) return NULL;
    size_t cap = 1024, n = 0;
    cJSON **v = malloc(cap * sizeof *v);
    char *p = data, *end = data + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (ll) {
            if (n + 2 > cap) v = realloc(v, (cap *= 2) * sizeof *v);
            v[n] = cJSON_ParseWithLength(p, ll);
            if (v[n]) n++;
        }
        p += ll + 1;
    }
    v[n] = NULL;
    eng_free(data);
    *count = n;
    return v;
}

static inline void tk_jsonl_free(cJSON **v)
{
    if (!v) return;
    for (size_t i = 0; v[i]; i++) cJSON_Delete(v[i]);
    free(v);
}

/* C-escaped, truncated rendering of bytes for messages (static buffer, one at a time per slot). */
static inline const char *tk_show(const void *p, size_t n, int slot)
{
    static char buf[4][700];
    char *o = buf[slot & 3];
    size_t k = 0;
    const unsigned char *s = p;
    for (size_t i = 0; i < n && k < sizeof buf[0] - 16; i++) {
        unsigned char c = s[i];
        if (c == '\n')
            k += (size_t)sprintf(o + k, "\\n");
        else if (c == '\r')
            k += (size_t)sprintf(o + k, "\\r");
        else if (c == '\t')
            k += (size_t)sprintf(o + k, "\\t");
        else if (c == '"' || c == '\\')
            k += (size_t)sprintf(o + k, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            k += (size_t)sprintf(o + k, "\\x%02x", c);
        else
            o[k++] = (char)c;
    }
    if (k >= sizeof buf[0] - 16) k += (size_t)sprintf(o + k, "...");
    o[k] = '\0';
    return o;
}

/* "[1, 2, 3 ...]" for messages */
static inline const char *tk_show_ids(const int32_t *ids, size_t n, int slot)
{
    static char buf[4][700];
    char *o = buf[slot & 3];
    size_t k = 0;
    k += (size_t)sprintf(o, "[");
    for (size_t i = 0; i < n && k < sizeof buf[0] - 32; i++)
        k += (size_t)sprintf(o + k, i ? ", %d" : "%d", (int)ids[i]);
    if (k >= sizeof buf[0] - 32) k += (size_t)sprintf(o + k, " ...");
    sprintf(o + k, "] (%zu ids)", n);
    return o;
}

/* index of the first difference of two id lists (== min length if one is a prefix) */
static inline size_t tk_first_diff(const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

#endif /* QN_TEST_TOKENIZER_UTIL_H */
