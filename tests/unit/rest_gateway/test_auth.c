/* tests/unit/rest_gateway/test_auth.c - API keys: Bearer parsing, key files, matching, reload.
 *
 * Matching goes through SHA-256 digests compared with CRYPTO_memcmp over every key; the tests
 * check the observable contract (which keys match, the last of many keys too, empty and partial
 * keys never match) and the key-file grammar.
 */
#include <check.h>

#include "auth.h"
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

START_TEST(test_bearer_parsing)
{
    const char *t;
    size_t n;
    ck_assert(gw_auth_parse_bearer("Bearer abc", 10, &t, &n));
    ck_assert_uint_eq(n, 3);
    ck_assert(!strncmp(t, "abc", 3));
    ck_assert(gw_auth_parse_bearer("  bearer   k-1  ", 16, &t, &n));
    ck_assert_uint_eq(n, 3);
    ck_assert(!strncmp(t, "k-1", 3));
    ck_assert(gw_auth_parse_bearer("BEARER x", 8, &t, &n));
    ck_assert(!gw_auth_parse_bearer("Bearer ", 7, &t, &n));
    ck_assert(!gw_auth_parse_bearer("Bearer    ", 10, &t, &n));
    ck_assert(!gw_auth_parse_bearer("Basic abc", 9, &t, &n));
    ck_assert(!gw_auth_parse_bearer("Bearerabc", 9, &t, &n));
    ck_assert(!gw_auth_parse_bearer("abc", 3, &t, &n));
    ck_assert(!gw_auth_parse_bearer(NULL, 0, &t, &n));
}
END_TEST

START_TEST(test_key_file_text)
{
    gw_keys *k;
    ck_assert_int_eq(gw_keys_create(&k), ENG_OK);
    const char *text = "# team keys\n\n  key-one  \r\nkey two\n\t# indented comment\nkey-three";
    ck_assert_int_eq(gw_keys_add_text(k, text, strlen(text)), ENG_OK);
    ck_assert_uint_eq(gw_keys_count(k), 3);
    ck_assert(gw_keys_match(k, "key-one", 7));
    ck_assert(gw_keys_match(k, "key two", 7));
    ck_assert(gw_keys_match(k, "key-three", 9));
    ck_assert(!gw_keys_match(k, " key-one", 8));
    ck_assert(!gw_keys_match(k, "key-on", 6));
    ck_assert(!gw_keys_match(k, "# team keys", 11));
    ck_assert(!gw_keys_match(k, "", 0));
    gw_keys_destroy(k);
}
END_TEST

START_TEST(test_many_keys_last_matches)
{
    gw_keys *k;
    ck_assert_int_eq(gw_keys_create(&k), ENG_OK);
    char key[32];
    for (int i = 0; i < 100; i++) {
        int n = snprintf(key, sizeof key, "sk-%03d", i);
        ck_assert_int_eq(gw_keys_add(k, key, (size_t)n), ENG_OK);
    }
    ck_assert(gw_keys_match(k, "sk-099", 6));
    ck_assert(gw_keys_match(k, "sk-000", 6));
    ck_assert(!gw_keys_match(k, "sk-100", 6));
    ck_assert_int_eq(gw_keys_add(k, "", 0), ENG_ERR_INVALID);
    gw_keys_destroy(k);
    gw_keys_destroy(NULL);
}
END_TEST

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

START_TEST(test_holder_reload)
{
    char path[] = "/tmp/gw_keys_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    write_file(path, "alpha\nbeta\n");
    const char *argv_keys[] = {"cli-key"};
    gw_auth *a;
    ck_assert_int_eq(gw_auth_create(argv_keys, 1, path, &a), ENG_OK);
    ck_assert(gw_auth_enabled(a));
    ck_assert_uint_eq(gw_auth_count(a), 3);
    ck_assert(gw_auth_check(a, "Bearer alpha", 12));
    ck_assert(gw_auth_check(a, "Bearer cli-key", 14));
    ck_assert(!gw_auth_check(a, "Bearer gamma", 12));
    ck_assert(!gw_auth_check(a, NULL, 0));
    write_file(path, "# rotated\ngamma\n");
    ck_assert_int_eq(gw_auth_reload(a), ENG_OK);
    ck_assert_uint_eq(gw_auth_count(a), 2);
    ck_assert(gw_auth_check(a, "Bearer gamma", 12));
    ck_assert(!gw_auth_check(a, "Bearer alpha", 12));
    ck_assert(gw_auth_check(a, "Bearer cli-key", 14));
    /* a failed reload keeps the keys in force */
    unlink(path);
    ck_assert_int_eq(gw_auth_reload(a), ENG_ERR_IO);
    ck_assert(gw_auth_check(a, "Bearer gamma", 12));
    gw_auth_destroy(a);
}
END_TEST

START_TEST(test_holder_disabled)
{
    gw_auth *a;
    ck_assert_int_eq(gw_auth_create(NULL, 0, NULL, &a), ENG_OK);
    ck_assert(!gw_auth_enabled(a));
    ck_assert(gw_auth_check(a, NULL, 0));
    gw_auth_destroy(a);
    ck_assert_int_eq(gw_auth_create(NULL, 0, "/nonexistent/keys", &a), ENG_ERR_IO);
    ck_assert_ptr_null(a);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("keys");
    tcase_add_test(tc, test_bearer_parsing);
    tcase_add_test(tc, test_key_file_text);
    tcase_add_test(tc, test_many_keys_last_matches);
    tcase_add_test(tc, test_holder_reload);
    tcase_add_test(tc, test_holder_disabled);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
