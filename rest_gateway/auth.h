/* auth.h - API keys: SHA-256 digests compared in constant time, reloadable from a file.
 *
 * Keys come from --api-key (repeatable, or QNEXT_API_KEY) and --api-keys-file (one key per line,
 * blank lines and lines starting with '#' skipped, surrounding spaces/tabs/CR trimmed). Only the
 * SHA-256 digests are kept. A presented key is hashed and compared with CRYPTO_memcmp against
 * every stored digest, OR-ing the results, so the time taken does not depend on which key matched
 * or how many leading bytes agreed (docs/serving-notes.md §6.1). Keys are never logged.
 *
 * gw_keys is an immutable set once built; gw_auth holds the current set behind a read-write lock
 * so SIGHUP can swap in a freshly read file while event loops keep checking requests.
 */
#ifndef GW_AUTH_H
#define GW_AUTH_H

#include "qnext/status.h" /* defines: eng_status */

#include <stdbool.h>
#include <stddef.h>

typedef struct gw_keys gw_keys;

/* Creates an empty key set. */
eng_status gw_keys_create(gw_keys **out);
/* Frees a key set. NULL-safe. */
void gw_keys_destroy(gw_keys *k);
/* Adds one key (its digest). Empty keys are rejected (ENG_ERR_INVALID). */
eng_status gw_keys_add(gw_keys *k, const char *key, size_t len);
/* Adds every key in the text of a keys file (format above). ENG_ERR_INVALID names the line of a
 * key that is too long (> 4096 bytes). */
eng_status gw_keys_add_text(gw_keys *k, const char *text, size_t len);
/* Reads `path` (at most 1 MiB) and adds its keys. ENG_ERR_IO if unreadable. */
eng_status gw_keys_add_file(gw_keys *k, const char *path);
/* Number of keys. */
size_t gw_keys_count(const gw_keys *k);
/* True if `key` is one of the set's keys. Compares against all keys, in constant time per key. */
bool gw_keys_match(const gw_keys *k, const char *key, size_t len);

/* Extracts the token of an "Authorization: Bearer <token>" value (scheme case-insensitive,
 * surrounding spaces ignored). Returns false if the value is not a non-empty Bearer token. */
bool gw_auth_parse_bearer(const char *value, size_t len, const char **token, size_t *token_len);

/* ---- thread-safe holder ------------------------------------------------------------------- */

typedef struct gw_auth gw_auth;

/* Builds the holder from command-line keys (may be NULL/0) and an optional keys file (may be
 * NULL). When both are empty, authentication is off. */
eng_status gw_auth_create(const char *const *keys, size_t n_keys, const char *keys_file, gw_auth **out);
/* Frees the holder. NULL-safe. Not while other threads still call gw_auth_check. */
void gw_auth_destroy(gw_auth *a);
/* Re-reads the keys file (command-line keys are kept). On failure the old set stays in force and
 * the error is returned. Safe to call while other threads check. */
eng_status gw_auth_reload(gw_auth *a);
/* True if keys are configured (authentication required). */
bool gw_auth_enabled(gw_auth *a);
/* True if the Authorization header value (may be NULL) carries a valid key, or auth is off. */
bool gw_auth_check(gw_auth *a, const char *authorization, size_t len);
/* Number of keys currently in force. */
size_t gw_auth_count(gw_auth *a);

#endif /* GW_AUTH_H */
