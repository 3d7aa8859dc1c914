/* tests/unit/engine/test_safetensors.c - the safetensors reader and writer: round trips (single
 * file, sharded with index, folder fallback, sparse), every malformed-input case of the contract
 * in safetensors.h (each bad file is written here), and an allocation-failure sweep. */
#include <check.h>

#include "model/safetensors.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/qn_st_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void rm_rf(const char *d)
{
    DIR *dp = opendir(d);
    if (!dp) return;
    struct dirent *de;
    while ((de = readdir(dp))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", d, de->d_name);
        unlink(p);
    }
    closedir(dp);
    rmdir(d);
}

static void teardown(void)
{
    rm_rf(dir);
}

static char *path_in(const char *name)
{
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

/* Writes a raw safetensors file: 8-byte length, the header text as given, data_len bytes (i, mod 251). */
static void write_raw(const char *name, const char *header, uint64_t hdr_len_override, size_t data_len)
{
    FILE *f = fopen(path_in(name), "wb");
    ck_assert_ptr_nonnull(f);
    uint64_t hl = hdr_len_override ? hdr_len_override : strlen(header);
    unsigned char pre[8];
    for (int i = 0; i < 8; i++) pre[i] = (unsigned char)(hl >> (8 * i));
    fwrite(pre, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    for (size_t i = 0; i < data_len; i++) fputc((int)(i % 251), f);
    fclose(f);
}

static void write_text(const char *name, const char *text)
{
    FILE *f = fopen(path_in(name), "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* Opens `path` expecting failure `want`; the detail must contain each of the given fragments. */
static void expect_fail(const char *path, eng_status want, const char *frag1, const char *frag2)
{
    eng_st_model *m = (eng_st_model *)0x1;
    eng_err_clear();
    eng_status st = eng_st_open(path, false, &m);
    ck_assert_msg(st == want, "status %s (%s), wanted %s", eng_status_str(st), eng_err_last(), eng_status_str(want));
    ck_assert_ptr_null(m);
    if (frag1) ck_assert_msg(strstr(eng_err_last(), frag1), "detail '%s' lacks '%s'", eng_err_last(), frag1);
    if (frag2) ck_assert_msg(strstr(eng_err_last(), frag2), "detail '%s' lacks '%s'", eng_err_last(), frag2);
}

/* ==== round trips ============================================================================= */

/* Writes a.safetensors with three tensors through the writer; returns the data it wrote. */
static void write_small(const char *name, bool sparse)
{
    eng_st_writer *w;
    ck_assert_int_eq(eng_st_writer_create(path_in(name), &w), ENG_OK);
    int64_t s1[2] = {2, 3}, s2[1] = {5}, s3[3] = {1, 2, 2};
    ck_assert_int_eq(eng_st_writer_add(w, "w.bf16", ENG_DTYPE_BF16, 2, s1), ENG_OK);
    ck_assert_int_eq(eng_st_writer_add(w, "w.f32", ENG_DTYPE_F32, 1, s2), ENG_OK);
    ck_assert_int_eq(eng_st_writer_add(w, "w.\"quoted\"\\name", ENG_DTYPE_F8_E4M3, 3, s3), ENG_OK);
    ck_assert_int_eq(eng_st_writer_set_metadata(w, "note", "a \"test\""), ENG_OK);
    ck_assert_int_eq(eng_st_writer_begin_data(w, sparse), ENG_OK);
    if (!sparse) {
        uint16_t a[6];
        for (int i = 0; i < 6; i++) a[i] = eng_f32_to_bf16((float)i - 2.5f);
        float b[5] = {1, 2, 3, 4, 5};
        uint8_t c[4] = {0x38, 0x40, 0xb8, 0x7e};
        ck_assert_int_eq(eng_st_writer_data(w, a, 4), ENG_OK); /* split one tensor in two calls */
        ck_assert_int_eq(eng_st_writer_data(w, (char *)a + 4, 8), ENG_OK);
        ck_assert_int_eq(eng_st_writer_data(w, b, sizeof b), ENG_OK);
        ck_assert_int_eq(eng_st_writer_data(w, c, sizeof c), ENG_OK);
    }
    ck_assert_int_eq(eng_st_writer_finish(w), ENG_OK);
}

START_TEST(test_roundtrip_single)
{
    write_small("a.safetensors", false);
    eng_st_model *m;
    ck_assert_int_eq(eng_st_open(path_in("a.safetensors"), true, &m), ENG_OK);
    ck_assert_uint_eq(eng_st_count(m), 3);
    ck_assert_int_eq(eng_st_file_count(m), 1);
    ck_assert(eng_st_has_data(m));
    ck_assert_uint_eq(eng_st_total_bytes(m), 12 + 20 + 4);
    const eng_st_tensor *t = eng_st_find(m, "w.bf16");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, ENG_DTYPE_BF16);
    ck_assert_int_eq(t->n_dims, 2);
    ck_assert_int_eq(t->shape[0], 2);
    ck_assert_int_eq(t->shape[1], 3);
    ck_assert_uint_eq(t->numel, 6);
    for (int i = 0; i < 6; i++) {
        uint16_t v;
        memcpy(&v, (const char *)t->data + 2 * i, 2);
        ck_assert_float_eq(eng_bf16_to_f32(v), (float)i - 2.5f);
    }
    t = eng_st_find(m, "w.f32");
    ck_assert_ptr_nonnull(t);
    float f[5];
    memcpy(f, t->data, sizeof f);
    ck_assert_float_eq(f[4], 5.0f);
    t = eng_st_find(m, "w.\"quoted\"\\name");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, ENG_DTYPE_F8_E4M3);
    ck_assert_float_eq(eng_fp8e4m3_to_f32(((const uint8_t *)t->data)[1]), 2.0f);
    ck_assert_float_eq(eng_fp8e4m3_to_f32(((const uint8_t *)t->data)[3]), 448.0f);
    ck_assert_ptr_null(eng_st_find(m, "w"));
    ck_assert_ptr_null(eng_st_find(m, "nope"));
    /* the data section starts 8-byte aligned, as HF writers do */
    ck_assert_uint_eq(eng_st_find(m, "w.bf16")->file_offset % 8, 0);
    eng_st_prefetch(m, eng_st_find(m, "w.f32"));
    ck_assert_str_eq(eng_st_file_path(m, 0), path_in("a.safetensors"));
    eng_st_close(m);

    /* headers only: same tensors, no data */
    ck_assert_int_eq(eng_st_open(path_in("a.safetensors"), false, &m), ENG_OK);
    ck_assert(!eng_st_has_data(m));
    ck_assert_ptr_null(eng_st_find(m, "w.f32")->data);
    ck_assert_uint_eq(eng_st_find(m, "w.f32")->n_bytes, 20);
    eng_st_close(m);
    eng_st_close(NULL);
}
END_TEST

/* A header written by hand in the style of the Python writer (spaces, metadata, unordered offsets). */
START_TEST(test_handwritten_header)
{
    write_raw("model.safetensors",
              "{ \"__metadata__\" : {\"format\": \"pt\"},\n \"b\": {\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[4,20]},"
              " \"a\": {\"shape\": [2, 1], \"dtype\": \"F16\", \"data_offsets\": [0, 4], \"extra\": [1, {\"x\": null}]},"
              " \"empty\": {\"dtype\": \"BOOL\", \"shape\": [0, 3], \"data_offsets\": [4, 4]},"
              " \"scalar\": {\"dtype\": \"U8\", \"shape\": [], \"data_offsets\": [20, 21]},"
              " \"caf\\u00e9\\ud83d\\ude00\": {\"dtype\": \"I8\", \"shape\": [1], \"data_offsets\": [21, 22]}}   ",
              0, 22);
    eng_st_model *m;
    ck_assert_int_eq(eng_st_open(dir, true, &m), ENG_OK);
    ck_assert_uint_eq(eng_st_count(m), 5);
    const eng_st_tensor *b = eng_st_find(m, "b");
    ck_assert_int_eq(b->dtype, ENG_DTYPE_I64);
    ck_assert_uint_eq(b->n_bytes, 16);
    ck_assert_int_eq(((const unsigned char *)b->data)[0], 4); /* data byte i holds i % 251 */
    ck_assert_uint_eq(eng_st_find(m, "empty")->numel, 0);
    ck_assert_uint_eq(eng_st_find(m, "scalar")->numel, 1);
    ck_assert_int_eq(eng_st_find(m, "scalar")->n_dims, 0);
    ck_assert_ptr_nonnull(eng_st_find(m, "caf\xc3\xa9\xf0\x9f\x98\x80"));
    eng_st_close(m);
}
END_TEST

static void write_shard(const char *name, const char *const *tensors, int n)
{
    eng_st_writer *w;
    ck_assert_int_eq(eng_st_writer_create(path_in(name), &w), ENG_OK);
    int64_t s[1] = {4};
    for (int i = 0; i < n; i++) ck_assert_int_eq(eng_st_writer_add(w, tensors[i], ENG_DTYPE_F32, 1, s), ENG_OK);
    ck_assert_int_eq(eng_st_writer_begin_data(w, false), ENG_OK);
    for (int i = 0; i < n; i++) {
        float v[4] = {(float)i, (float)i, (float)i, (float)i};
        ck_assert_int_eq(eng_st_writer_data(w, v, sizeof v), ENG_OK);
    }
    ck_assert_int_eq(eng_st_writer_finish(w), ENG_OK);
}

static const char *const shard1[] = {"x.0", "x.1"};
static const char *const shard2[] = {"y.0"};

static void write_sharded(void)
{
    write_shard("model-00001-of-00002.safetensors", shard1, 2);
    write_shard("model-00002-of-00002.safetensors", shard2, 1);
}

START_TEST(test_sharded_index)
{
    write_sharded();
    write_text("model.safetensors.index.json",
               "{\"metadata\": {\"total_size\": 48}, \"weight_map\": {\"x.0\": \"model-00001-of-00002.safetensors\","
               " \"y.0\": \"model-00002-of-00002.safetensors\", \"x.1\": \"model-00001-of-00002.safetensors\"}}");
    /* a stray file that the index does not name is ignored */
    write_raw("stray.safetensors", "{\"z\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 0, 4);
    eng_st_model *m;
    ck_assert_int_eq(eng_st_open(dir, true, &m), ENG_OK);
    ck_assert_int_eq(eng_st_file_count(m), 2);
    ck_assert_uint_eq(eng_st_count(m), 3);
    ck_assert_ptr_null(eng_st_find(m, "z"));
    const eng_st_tensor *t = eng_st_find(m, "y.0");
    ck_assert_ptr_nonnull(strstr(eng_st_file_path(m, t->file_index), "model-00002-of-00002"));
    float v;
    memcpy(&v, eng_st_find(m, "x.1")->data, 4);
    ck_assert_float_eq(v, 1.0f);
    eng_st_close(m);
}
END_TEST

START_TEST(test_folder_fallback)
{
    write_sharded();
    eng_st_model *m;
    ck_assert_int_eq(eng_st_open(dir, false, &m), ENG_OK);
    ck_assert_int_eq(eng_st_file_count(m), 2);
    ck_assert_uint_eq(eng_st_count(m), 3);
    ck_assert_ptr_nonnull(strstr(eng_st_file_path(m, 0), "model-00001-of-00002"));
    eng_st_close(m);
}
END_TEST

START_TEST(test_sparse_writer)
{
    eng_st_writer *w;
    ck_assert_int_eq(eng_st_writer_create(path_in("big.safetensors"), &w), ENG_OK);
    int64_t s[2] = {65536, 16384}; /* 2 GiB of bf16 */
    ck_assert_int_eq(eng_st_writer_add(w, "big", ENG_DTYPE_BF16, 2, s), ENG_OK);
    ck_assert_int_eq(eng_st_writer_begin_data(w, true), ENG_OK);
    ck_assert_int_eq(eng_st_writer_data(w, "x", 1), ENG_ERR_INVALID); /* no data into a sparse file */
    ck_assert_int_eq(eng_st_writer_finish(w), ENG_OK);
    struct stat sb;
    ck_assert_int_eq(stat(path_in("big.safetensors"), &sb), 0);
    ck_assert_int_gt(sb.st_size, (off_t)2 << 30);
    eng_st_model *m;
    ck_assert_int_eq(eng_st_open(path_in("big.safetensors"), false, &m), ENG_OK);
    ck_assert_uint_eq(eng_st_find(m, "big")->n_bytes, (uint64_t)2 << 30);
    ck_assert_uint_eq((uint64_t)sb.st_size, eng_st_find(m, "big")->file_offset + ((uint64_t)2 << 30));
    eng_st_close(m);
}
END_TEST

START_TEST(test_writer_errors)
{
    eng_st_writer *w;
    int64_t s[1] = {2}, neg[1] = {-1};
    ck_assert_int_eq(eng_st_writer_create(path_in("w.safetensors"), &w), ENG_OK);
    ck_assert_int_eq(eng_st_writer_add(w, "a", ENG_DTYPE_F32, 1, s), ENG_OK);
    ck_assert_int_eq(eng_st_writer_add(w, "a", ENG_DTYPE_F32, 1, s), ENG_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(eng_err_last(), "'a'"));
    ck_assert_int_eq(eng_st_writer_add(w, "b", ENG_DTYPE_F32, 1, neg), ENG_ERR_INVALID);
    ck_assert_int_eq(eng_st_writer_add(w, "", ENG_DTYPE_F32, 1, s), ENG_ERR_INVALID);
    ck_assert_int_eq(eng_st_writer_add(w, "c", ENG_DTYPE_F32, 9, s), ENG_ERR_INVALID);
    ck_assert_int_eq(eng_st_writer_begin_data(w, false), ENG_OK);
    ck_assert_int_eq(eng_st_writer_add(w, "late", ENG_DTYPE_F32, 1, s), ENG_ERR_INVALID);
    float v[3] = {0};
    ck_assert_int_eq(eng_st_writer_data(w, v, 12), ENG_ERR_INVALID); /* past the declared 8 bytes */
    ck_assert_int_eq(eng_st_writer_data(w, v, 4), ENG_OK);
    /* finish with 4 of 8 bytes: error, and the file is gone */
    ck_assert_int_eq(eng_st_writer_finish(w), ENG_ERR_INVALID);
    ck_assert(!eng_file_exists(path_in("w.safetensors")));

    ck_assert_int_eq(eng_st_writer_create(path_in("w2.safetensors"), &w), ENG_OK);
    eng_st_writer_abort(w);
    ck_assert(!eng_file_exists(path_in("w2.safetensors")));
    eng_st_writer_abort(NULL);
    ck_assert_int_eq(eng_st_writer_create("/nonexistent-dir/x.safetensors", &w), ENG_ERR_IO);

    /* many tensors: the duplicate check must scale (hash) */
    ck_assert_int_eq(eng_st_writer_create(path_in("many.safetensors"), &w), ENG_OK);
    for (int i = 0; i < 20000; i++) {
        char nm[32];
        snprintf(nm, sizeof nm, "t.%d", i);
        ck_assert_int_eq(eng_st_writer_add(w, nm, ENG_DTYPE_U8, 1, s), ENG_OK);
    }
    ck_assert_int_eq(eng_st_writer_add(w, "t.12345", ENG_DTYPE_U8, 1, s), ENG_ERR_INVALID);
    ck_assert_int_eq(eng_st_writer_begin_data(w, true), ENG_OK);
    ck_assert_int_eq(eng_st_writer_finish(w), ENG_OK);
    eng_st_model *m;
    ck_assert_int_eq(eng_st_open(path_in("many.safetensors"), false, &m), ENG_OK);
    ck_assert_uint_eq(eng_st_count(m), 20000);
    ck_assert_ptr_nonnull(eng_st_find(m, "t.19999"));
    eng_st_close(m);
}
END_TEST

/* ==== malformed files ========================================================================= */

#define T1 "\"t\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}"

START_TEST(test_bad_header_length)
{
    write_raw("a.safetensors", "{" T1 "}", 1000, 8); /* length beyond the file */
    expect_fail(path_in("a.safetensors"), ENG_ERR_FORMAT, "a.safetensors", "beyond the file size");
    write_raw("b.safetensors", "{" T1 "}", (uint64_t)200 << 20, 8); /* above 100 MiB */
    expect_fail(path_in("b.safetensors"), ENG_ERR_FORMAT, "b.safetensors", "above the limit");
    write_raw("c.safetensors", "{" T1 "}", ~(uint64_t)0, 8);
    expect_fail(path_in("c.safetensors"), ENG_ERR_FORMAT, "c.safetensors", NULL);
    write_text("d.safetensors", "abc"); /* shorter than 8 bytes */
    expect_fail(path_in("d.safetensors"), ENG_ERR_FORMAT, "d.safetensors", "truncated");
    write_raw("e.safetensors", "", 0, 0); /* zero-length header */
    expect_fail(path_in("e.safetensors"), ENG_ERR_FORMAT, "e.safetensors", NULL);
}
END_TEST

START_TEST(test_malformed_json)
{
    static const char *bad[] = {
        "{" T1,                                /* unterminated object */
        "[" T1 "]",                            /* not an object */
        "{" T1 ",}",                           /* trailing comma */
        "{" T1 "} x",                          /* trailing garbage */
        "{\"t\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]",
        "{\"t\" {\"dtype\": \"F32\"}}",        /* missing colon */
        "{\"t\": {\"dtype\": F32, \"shape\": [2], \"data_offsets\": [0, 8]}}",
        "{\"t\": {\"dtype\": \"F32\", \"shape\": [2.5], \"data_offsets\": [0, 8]}}",
        "{\"t\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8e0]}}",
        "{\"t\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0]}}",
        "{\"t\": {\"dtype\": \"F32\", \"shape\": [2]}}", /* no offsets */
        "{\"t\": {\"shape\": [2], \"data_offsets\": [0, 8]}}", /* no dtype */
        "{\"t\": 5}",
        "{\"t\\q\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", /* bad escape */
        "{\"t\\ud800\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", /* lone surrogate */
        "{\"t\xff\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}",    /* invalid UTF-8 */
        "{\"__metadata__\": {\"k\": 5}, " T1 "}", /* metadata values must be strings */
        "{\"__metadata__\": [], " T1 "}",
        "{\"\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", /* empty name */
        "{\"t\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8], \"x\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
        "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}", /* nesting too deep */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char nm[32];
        snprintf(nm, sizeof nm, "m%zu.safetensors", i);
        write_raw(nm, bad[i], 0, 8);
        eng_st_model *m = NULL;
        eng_status st = eng_st_open(path_in(nm), false, &m);
        ck_assert_msg(st == ENG_ERR_FORMAT, "case %zu: %s (%s)", i, eng_status_str(st), eng_err_last());
        ck_assert_msg(strstr(eng_err_last(), nm), "case %zu: detail '%s' does not name the file", i, eng_err_last());
        ck_assert_ptr_null(m);
    }
}
END_TEST

START_TEST(test_bad_tensor_entries)
{
    struct {
        const char *hdr;
        size_t data;
        const char *frag;
    } cases[] = {
        {"{\"w\": {\"dtype\": \"F31\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8, "unknown dtype"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}", 8, "negative"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 8]}}", 8, "overflow"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [99999999999999999999], \"data_offsets\": [0, 8]}}", 8, "shape"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}", 8, "dimensions"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}", 8, "need 12"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 0]}}", 8, "begin > end"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [-1, 7]}}", 8, "negative"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}", 8, "truncated"}, /* outside */
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 12, "truncated"}, /* short file */
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
         " \"v\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 12, "overlap"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
         " \"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}", 16, "twice"},
        {"{\"w\": {\"dtype\": \"F32\", \"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8, "duplicate"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char nm[32];
        snprintf(nm, sizeof nm, "t%zu.safetensors", i);
        write_raw(nm, cases[i].hdr, 0, cases[i].data);
        eng_st_model *m = NULL;
        eng_status st = eng_st_open(path_in(nm), false, &m);
        ck_assert_msg(st == ENG_ERR_FORMAT, "case %zu: %s (%s)", i, eng_status_str(st), eng_err_last());
        ck_assert_msg(strstr(eng_err_last(), nm), "case %zu: detail '%s' does not name the file", i, eng_err_last());
        ck_assert_msg(strstr(eng_err_last(), "'w'") || strstr(eng_err_last(), "'v'"), "case %zu: detail '%s' does not name the tensor", i,
                      eng_err_last());
        ck_assert_msg(strstr(eng_err_last(), cases[i].frag), "case %zu: detail '%s' lacks '%s'", i, eng_err_last(), cases[i].frag);
        ck_assert_ptr_null(m);
    }
}
END_TEST

START_TEST(test_bad_folders)
{
    /* empty folder */
    expect_fail(dir, ENG_ERR_NOT_FOUND, dir, NULL);
    /* nonexistent path */
    expect_fail(path_in("nope"), ENG_ERR_IO, "nope", NULL);

    write_sharded();
    /* missing shard */
    write_text("model.safetensors.index.json",
               "{\"weight_map\": {\"x.0\": \"model-00001-of-00002.safetensors\", \"y.0\": \"model-00003-of-00002.safetensors\"}}");
    expect_fail(dir, ENG_ERR_IO, "model-00003-of-00002.safetensors", "missing");
    /* index names a tensor absent from its shard */
    write_text("model.safetensors.index.json",
               "{\"weight_map\": {\"x.0\": \"model-00001-of-00002.safetensors\", \"x.1\": \"model-00001-of-00002.safetensors\","
               " \"y.0\": \"model-00002-of-00002.safetensors\", \"y.1\": \"model-00002-of-00002.safetensors\"}}");
    expect_fail(dir, ENG_ERR_FORMAT, "'y.1'", "model-00002-of-00002.safetensors");
    /* index puts a tensor in the wrong shard */
    write_text("model.safetensors.index.json",
               "{\"weight_map\": {\"x.0\": \"model-00002-of-00002.safetensors\", \"x.1\": \"model-00001-of-00002.safetensors\","
               " \"y.0\": \"model-00002-of-00002.safetensors\"}}");
    expect_fail(dir, ENG_ERR_FORMAT, "'x.0'", "model-00001-of-00002");
    /* a shard tensor that the index does not list */
    write_text("model.safetensors.index.json",
               "{\"weight_map\": {\"x.0\": \"model-00001-of-00002.safetensors\", \"y.0\": \"model-00002-of-00002.safetensors\"}}");
    expect_fail(dir, ENG_ERR_FORMAT, "'x.1'", "not listed");
    /* path escapes */
    write_text("model.safetensors.index.json", "{\"weight_map\": {\"x.0\": \"../model-00001-of-00002.safetensors\"}}");
    expect_fail(dir, ENG_ERR_FORMAT, "not a plain file name", NULL);
    /* malformed index JSON, duplicates, empty map */
    write_text("model.safetensors.index.json", "{\"weight_map\": {\"x.0\": 3}}");
    expect_fail(dir, ENG_ERR_FORMAT, "model.safetensors.index.json", NULL);
    write_text("model.safetensors.index.json", "{\"weight_map\": {\"x.0\": \"model-00001-of-00002.safetensors\"");
    expect_fail(dir, ENG_ERR_FORMAT, "model.safetensors.index.json", NULL);
    write_text("model.safetensors.index.json",
               "{\"weight_map\": {\"x.0\": \"model-00001-of-00002.safetensors\", \"x.0\": \"model-00001-of-00002.safetensors\"}}");
    expect_fail(dir, ENG_ERR_FORMAT, "twice", NULL);
    write_text("model.safetensors.index.json", "{\"weight_map\": {}}");
    expect_fail(dir, ENG_ERR_FORMAT, "empty", NULL);
    write_text("model.safetensors.index.json", "{\"metadata\": {}}");
    expect_fail(dir, ENG_ERR_FORMAT, "weight_map", NULL);
    unlink(path_in("model.safetensors.index.json"));

    /* the same tensor in two shards (folder fallback) */
    write_shard("model-00003-of-00003.safetensors", shard2, 1);
    expect_fail(dir, ENG_ERR_FORMAT, "'y.0'", "model-00003-of-00003");
}
END_TEST

/* Direct use of the header parser (as the fuzz target does). */
START_TEST(test_parse_header_direct)
{
    const char *h = "{" T1 ", \"u\": {\"dtype\": \"BF16\", \"shape\": [3], \"data_offsets\": [8, 14]}}";
    eng_st_tensor *t;
    size_t n;
    ck_assert_int_eq(eng_st_parse_header(h, strlen(h), 14, "x", &t, &n), ENG_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(t[1].name, "u");
    ck_assert_uint_eq(t[1].file_offset, 8 + strlen(h) + 8);
    eng_st_tensors_free(t, n);
    ck_assert_int_eq(eng_st_parse_header(h, strlen(h), 13, "x", &t, &n), ENG_ERR_FORMAT);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(eng_st_parse_header("{}", 2, 0, "x", &t, &n), ENG_OK);
    ck_assert_uint_eq(n, 0);
    eng_st_tensors_free(t, n);
    eng_st_tensors_free(NULL, 0);
}
END_TEST

/* Every allocation failure gives a clean ENG_ERR_NOMEM and no leak (ASan checks the leak part). */
START_TEST(test_alloc_failures)
{
    write_sharded();
    write_text("model.safetensors.index.json",
               "{\"weight_map\": {\"x.0\": \"model-00001-of-00002.safetensors\", \"x.1\": \"model-00001-of-00002.safetensors\","
               " \"y.0\": \"model-00002-of-00002.safetensors\"}}");
    int ok = 0;
    for (long k = 0; k < 400; k++) {
        eng_alloc_fail_after(k);
        eng_st_model *m = NULL;
        eng_status st = eng_st_open(dir, true, &m);
        eng_alloc_fail_after(-1);
        ck_assert_msg(st == ENG_OK || st == ENG_ERR_NOMEM, "k=%ld: %s (%s)", k, eng_status_str(st), eng_err_last());
        if (st == ENG_OK) {
            ck_assert_uint_eq(eng_st_count(m), 3);
            ok++;
        }
        eng_st_close(m);
        if (ok > 2) break;
    }
    ck_assert_int_gt(ok, 0);
    for (long k = 0; k < 200; k++) {
        eng_alloc_fail_after(k);
        eng_st_writer *w = NULL;
        eng_status st = eng_st_writer_create(path_in("f.safetensors"), &w);
        int64_t s[1] = {1};
        for (int i = 0; !st && i < 40; i++) {
            char nm[16];
            snprintf(nm, sizeof nm, "n%d", i);
            st = eng_st_writer_add(w, nm, ENG_DTYPE_F32, 1, s);
        }
        if (!st) st = eng_st_writer_set_metadata(w, "k", "v");
        if (!st) st = eng_st_writer_begin_data(w, true);
        if (!st) {
            st = eng_st_writer_finish(w);
        } else {
            eng_st_writer_abort(w);
        }
        eng_alloc_fail_after(-1);
        ck_assert_msg(st == ENG_OK || st == ENG_ERR_NOMEM, "writer k=%ld: %s", k, eng_status_str(st));
        if (st == ENG_OK) break;
    }
}
END_TEST

static Suite *safetensors_suite(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("roundtrip");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_roundtrip_single);
    tcase_add_test(tc, test_handwritten_header);
    tcase_add_test(tc, test_sharded_index);
    tcase_add_test(tc, test_folder_fallback);
    tcase_add_test(tc, test_sparse_writer);
    tcase_add_test(tc, test_writer_errors);
    tcase_add_test(tc, test_parse_header_direct);
    suite_add_tcase(s, tc);
    tc = tcase_create("malformed");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_bad_header_length);
    tcase_add_test(tc, test_malformed_json);
    tcase_add_test(tc, test_bad_tensor_entries);
    tcase_add_test(tc, test_bad_folders);
    suite_add_tcase(s, tc);
    tc = tcase_create("faults");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_alloc_failures);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(safetensors_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
