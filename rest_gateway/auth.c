/* auth.c - API key digests and constant-time checks (see auth.h). */
#include "auth.h"

#include "core/core.h" /* defines: eng_malloc, eng_file_read */

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <pthread.h>
#include <string.h>
#include <strings.h>

#define DIGEST 32
#define MAX_KEY_BYTES 4096
#define MAX_FILE_BYTES (1u << 20)

struct gw_keys {
    unsigned char (*d)[DIGEST]; /* (n, 32) SHA-256 digests */
    size_t n, cap;
};

static bool sha256(const void *p, size_t n, unsigned char out[DIGEST])
{
    unsigned int len = 0;
    return EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) == 1 && len == DIGEST;
}

eng_status gw_keys_create(gw_keys **out)
{
    *out = eng_calloc(1, sizeof(gw_keys));
    return *out ? ENG_OK : eng_err_set(ENG_ERR_NOMEM, "out of memory");
}

void gw_keys_destroy(gw_keys *k)
{
    if (!k) return;
    if (k->d) OPENSSL_cleanse(k->d, k->cap * DIGEST);
    eng_free(k->d);
    eng_free(k);
}

/* Makes room for one more digest. */
static eng_status grow(gw_keys *k)
{
    if (k->n < k->cap) return ENG_OK;
    size_t cap = k->cap ? k->cap * 2 : 4;
    unsigned char(*d)[DIGEST] = eng_calloc(cap, DIGEST);
    if (!d) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    if (k->n) memcpy(d, k->d, k->n * DIGEST);
    if (k->d) OPENSSL_cleanse(k->d, k->cap * DIGEST);
    eng_free(k->d);
    k->d = d;
    k->cap = cap;
    return ENG_OK;
}

eng_status gw_keys_add(gw_keys *k, const char *key, size_t len)
{
    if (len == 0) return eng_err_set(ENG_ERR_INVALID, "an API key must not be empty");
    if (len > MAX_KEY_BYTES) return eng_err_set(ENG_ERR_INVALID, "an API key is longer than %d bytes", MAX_KEY_BYTES);
    eng_status st = grow(k);
    if (st) return st;
    if (!sha256(key, len, k->d[k->n])) return eng_err_set(ENG_ERR_INTERNAL, "SHA-256 failed");
    k->n++;
    return ENG_OK;
}

eng_status gw_keys_add_text(gw_keys *k, const char *text, size_t len)
{
    size_t line = 0, i = 0;
    while (i < len) {
        line++;
        size_t s = i;
        while (i < len && text[i] != '\n') i++;
        size_t e = i;
        if (i < len) i++; /* the '\n' */
        while (s < e && (text[s] == ' ' || text[s] == '\t' || text[s] == '\r')) s++;
        while (e > s && (text[e - 1] == ' ' || text[e - 1] == '\t' || text[e - 1] == '\r')) e--;
        if (s == e || text[s] == '#') continue;
        if (e - s > MAX_KEY_BYTES)
            return eng_err_set(ENG_ERR_INVALID, "line %zu: key longer than %d bytes", line, MAX_KEY_BYTES);
        eng_status st = gw_keys_add(k, text + s, e - s);
        if (st) return eng_err_wrap(st, "line %zu", line);
    }
    return ENG_OK;
}

eng_status gw_keys_add_file(gw_keys *k, const char *path)
{
    char *text = NULL;
    size_t len = 0;
    eng_status st = eng_file_read(path, MAX_FILE_BYTES, &text, &len);
    if (st) return st;
    st = gw_keys_add_text(k, text, len);
    if (st) eng_err_wrap(st, "%s", path);
    OPENSSL_cleanse(text, len);
    eng_free(text);
    return st;
}

size_t gw_keys_count(const gw_keys *k)
{
    return k ? k->n : 0;
}

bool gw_keys_match(const gw_keys *k, const char *key, size_t len)
{
    if (!k || k->n == 0) return false;
    unsigned char d[DIGEST];
    if (!sha256(key, len, d)) return false;
    int ok = 0;
    for (size_t i = 0; i < k->n; i++) ok |= CRYPTO_memcmp(d, k->d[i], DIGEST) == 0;
    OPENSSL_cleanse(d, sizeof d);
    return ok != 0;
}

bool gw_auth_parse_bearer(const char *value, size_t len, const char **token, size_t *token_len)
{
    if (!value) return false;
    size_t i = 0;
    while (i < len && value[i] == ' ') i++;
    if (len - i < 7 || strncasecmp(value + i, "bearer ", 7) != 0) return false;
    i += 7;
    while (i < len && value[i] == ' ') i++;
    size_t e = len;
    while (e > i && value[e - 1] == ' ') e--;
    if (e == i) return false;
    *token = value + i;
    *token_len = e - i;
    return true;
}

/* ==== holder ================================================================================== */

struct gw_auth {
    pthread_rwlock_t lock;
    gw_keys *cur;      /* under lock */
    gw_keys *argv;     /* command-line keys (kept across reloads) */
    char *keys_file;   /* or NULL */
};

/* A new set: the command-line keys plus the file's. */
static eng_status build(gw_auth *a, gw_keys **out)
{
    gw_keys *k;
    eng_status st = gw_keys_create(&k);
    if (st) return st;
    for (size_t i = 0; i < a->argv->n; i++) {
        if ((st = grow(k))) goto fail;
        memcpy(k->d[k->n++], a->argv->d[i], DIGEST);
    }
    if (a->keys_file && (st = gw_keys_add_file(k, a->keys_file))) goto fail;
    *out = k;
    return ENG_OK;
fail:
    gw_keys_destroy(k);
    return st;
}

eng_status gw_auth_create(const char *const *keys, size_t n_keys, const char *keys_file, gw_auth **out)
{
    *out = NULL;
    gw_auth *a = eng_calloc(1, sizeof *a);
    if (!a) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    eng_status st;
    pthread_rwlock_init(&a->lock, NULL);
    if ((st = gw_keys_create(&a->argv))) goto fail;
    for (size_t i = 0; i < n_keys; i++)
        if ((st = gw_keys_add(a->argv, keys[i], strlen(keys[i])))) goto fail;
    if (keys_file && !(a->keys_file = eng_strdup(keys_file))) {
        st = eng_err_set(ENG_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if ((st = build(a, &a->cur))) goto fail;
    *out = a;
    return ENG_OK;
fail:
    gw_auth_destroy(a);
    return st;
}

void gw_auth_destroy(gw_auth *a)
{
    if (!a) return;
    gw_keys_destroy(a->cur);
    gw_keys_destroy(a->argv);
    eng_free(a->keys_file);
    pthread_rwlock_destroy(&a->lock);
    eng_free(a);
}

eng_status gw_auth_reload(gw_auth *a)
{
    gw_keys *k;
    eng_status st = build(a, &k);
    if (st) return st;
    pthread_rwlock_wrlock(&a->lock);
    gw_keys *old = a->cur;
    a->cur = k;
    pthread_rwlock_unlock(&a->lock);
    gw_keys_destroy(old);
    return ENG_OK;
}

bool gw_auth_enabled(gw_auth *a)
{
    return a && (a->argv->n > 0 || a->keys_file);
}

size_t gw_auth_count(gw_auth *a)
{
    pthread_rwlock_rdlock(&a->lock);
    size_t n = a->cur->n;
    pthread_rwlock_unlock(&a->lock);
    return n;
}

bool gw_auth_check(gw_auth *a, const char *authorization, size_t len)
{
    if (!gw_auth_enabled(a)) return true;
    const char *tok;
    size_t tl;
    if (!gw_auth_parse_bearer(authorization, len, &tok, &tl)) return false;
    pthread_rwlock_rdlock(&a->lock);
    bool ok = gw_keys_match(a->cur, tok, tl);
    pthread_rwlock_unlock(&a->lock);
    return ok;
}
