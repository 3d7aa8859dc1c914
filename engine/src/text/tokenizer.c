/* text/tokenizer.c - loading a Hugging Face tokenizer.json (Qwen2/Qwen3 byte-level BPE), token
 * lookups, and the encode pipeline:
 *
 *   text -> split on added tokens (leftmost-longest, HF AddedVocabulary semantics incl. the
 *           special / single_word / lstrip / rstrip flags and split_special_tokens)
 *        -> each remaining segment: NFC (pretok.c) -> split on normalized added tokens
 *        -> the Qwen2 regex pre-tokenizer (pretok.c) -> byte-level BPE per piece (tokenizer_bpe.c)
 *
 * Load validates everything it relies on and rejects, with ENG_ERR_UNSUPPORTED and the name of
 * the part, whatever it does not implement (other model types, normalizers, pre-tokenizers,
 * decoders, post-processors, truncation/padding). The JSON is parsed with cJSON and dropped after
 * load; the tokenizer keeps compact pools and open-addressing tables (tokenizer_impl.h).
 *
 * Added tokens flagged normalized are matched (and reported by eng_tokenizer_token_str, and
 * decoded) in their NFC form, as HF tokenizers 0.23 does; eng_tokenizer_token_id finds them by
 * the content written in the file, as HF's token_to_id does.
 *
 * Deviations from HF, all for files HF itself would treat oddly, each rejected or documented:
 *   - a vocab string given twice, two vocab strings with one id, an added token whose id is a
 *     different model token or whose content is empty or repeated, ids far above the number of
 *     tokens: ENG_ERR_FORMAT (HF silently overwrites, skips or renumbers);
 *   - an added token whose content is a model token keeps the model's id (as HF does);
 *   - after an rstrip match the search resumes after the stripped spaces (HF resumes inside them);
 *   - single_word uses \w approximated from general categories (L, M, Nd, Nl, Pc, ZWJ/ZWNJ),
 *     where HF's Rust regex uses Alphabetic (a few Other_Alphabetic symbols differ).
 */
#include "text/tokenizer_impl.h" /* defines: eng_tokenizer, maps, qn_bpe_piece */

#include "core/core.h" /* defines: eng_malloc, eng_file_read, eng_path_join, eng_log */

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* The Split regex of the Qwen2 pre-tokenizer, exactly as tokenizer.json spells it. */
static const char QWEN2_SPLIT_REGEX[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                                        "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

#define TOKENIZER_JSON_MAX (1u << 30) /* 1 GiB: far above any real tokenizer.json */

/* ==== byte-level alphabet ===================================================================== */

/* GPT-2's bytes_to_unicode: printable bytes map to themselves, the 68 others to U+0100.. in order */
static void byte_level_tables(int32_t byte_cp[256], int16_t cp_byte[324])
{
    for (int i = 0; i < 324; i++) cp_byte[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        byte_cp[b] = printable ? b : 256 + extra++;
        cp_byte[byte_cp[b]] = (int16_t)b;
    }
}

/* Raw bytes of a token string, as HF's ByteLevel decoder gives them: every char mapped back
 * through the alphabet, or (if any char is outside it) the string's own UTF-8. Writes <= len. */
static size_t token_string_bytes(const int16_t cp_byte[324], const uint8_t *s, size_t len, uint8_t *out)
{
    size_t i = 0, k = 0;
    while (i < len) {
        int32_t cp;
        size_t l = qn_utf8_unit(s, len, i, &cp);
        if (cp < 0 || cp >= 324 || cp_byte[cp] < 0) {
            memcpy(out, s, len);
            return len;
        }
        out[k++] = (uint8_t)cp_byte[cp];
        i += l;
    }
    return k;
}

/* ==== id maps ================================================================================= */

static bool map_init(qn_id_map *m, size_t n_items)
{
    size_t cap = 16;
    while (cap < n_items * 2) cap *= 2;
    if (cap > (1u << 30)) return false;
    m->slots = eng_malloc(cap * sizeof *m->slots);
    if (!m->slots) return false;
    for (size_t i = 0; i < cap; i++) m->slots[i].id = -1;
    m->mask = (uint32_t)(cap - 1);
    return true;
}

static void map_free(qn_id_map *m)
{
    eng_free(m->slots);
    m->slots = NULL;
}

static inline const uint8_t *entry_str(const eng_tokenizer *t, int32_t id, size_t *len)
{
    *len = t->entries[id].str_len;
    return (const uint8_t *)t->str_pool + t->entries[id].str_off;
}

static inline const uint8_t *entry_bytes(const eng_tokenizer *t, int32_t id, size_t *len)
{
    *len = t->entries[id].bytes_len;
    return t->bytes_pool + t->entries[id].bytes_off;
}

enum { KEY_STR = 0, KEY_BYTES = 1, KEY_ADDED = 2 };

/* key of slot value v: the entry string or bytes of id v, or the file content of added[v] */
static inline const uint8_t *map_key(const eng_tokenizer *t, int kind, int32_t v, size_t *len)
{
    if (kind == KEY_STR) return entry_str(t, v, len);
    if (kind == KEY_BYTES) return entry_bytes(t, v, len);
    *len = t->added[v].content_len;
    return t->pat_pool + t->added[v].content_off;
}

/* Finds the value whose key equals s[0..n); -1 if none. With insert_id >= 0 and no match, inserts
 * insert_id. */
static int32_t map_find_or_insert(const eng_tokenizer *t, qn_id_map *m, int kind, const uint8_t *s, size_t n,
                                  int32_t insert_id)
{
    uint64_t h = qn_hash_bytes(s, n);
    uint32_t h32 = (uint32_t)h, i = (uint32_t)(h >> 32) & m->mask;
    for (;;) {
        int32_t id = m->slots[i].id;
        if (id < 0) {
            if (insert_id >= 0) {
                m->slots[i].id = insert_id;
                m->slots[i].hash = h32;
            }
            return -1;
        }
        if (m->slots[i].hash == h32) {
            size_t kl;
            const uint8_t *k = map_key(t, kind, id, &kl);
            if (kl == n && memcmp(k, s, n) == 0) return id;
        }
        i = (i + 1) & m->mask;
    }
}

/* ==== JSON helpers ============================================================================ */

static const cJSON *obj_get(const cJSON *o, const char *key)
{
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

static bool is_absent(const cJSON *v)
{
    return v == NULL || cJSON_IsNull(v);
}

/* reads an optional bool (absent/null = dflt); false if present with another type */
static bool get_bool(const cJSON *o, const char *key, bool dflt, bool *out)
{
    const cJSON *v = obj_get(o, key);
    if (is_absent(v)) {
        *out = dflt;
        return true;
    }
    if (!cJSON_IsBool(v)) return false;
    *out = cJSON_IsTrue(v);
    return true;
}

static const char *get_type(const cJSON *o)
{
    const cJSON *v = obj_get(o, "type");
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* an integer id in [0, QN_TOK_MAX_ID) */
static bool get_id(const cJSON *v, int32_t *out)
{
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!(d >= 0 && d < QN_TOK_MAX_ID) || floor(d) != d) return false;
    *out = (int32_t)d;
    return true;
}

/* ==== component validation ==================================================================== */

static eng_status check_normalizer(const cJSON *n, bool *nfc)
{
    *nfc = false;
    if (is_absent(n)) return ENG_OK;
    const char *type = get_type(n);
    if (!type) return eng_err_set(ENG_ERR_FORMAT, "normalizer: missing \"type\"");
    if (!strcmp(type, "NFC")) {
        *nfc = true;
        return ENG_OK;
    }
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = obj_get(n, "normalizers"), *it;
        if (!cJSON_IsArray(list))
            return eng_err_set(ENG_ERR_FORMAT, "normalizer: Sequence without a \"normalizers\" array");
        cJSON_ArrayForEach(it, list)
        {
            const char *ty = get_type(it);
            if (!ty || strcmp(ty, "NFC"))
                return eng_err_set(ENG_ERR_UNSUPPORTED,
                                   "normalizer: Sequence member of type '%s' is not supported (only NFC)",
                                   ty ? ty : "?");
            *nfc = true;
        }
        return ENG_OK;
    }
    return eng_err_set(ENG_ERR_UNSUPPORTED, "normalizer: type '%s' is not supported (only NFC or null)",
                       type);
}

static eng_status check_byte_level(const cJSON *b, const char *where, bool need_no_regex)
{
    bool aps, use_regex;
    if (!get_bool(b, "add_prefix_space", false, &aps) || !get_bool(b, "use_regex", true, &use_regex))
        return eng_err_set(ENG_ERR_FORMAT, "%s: ByteLevel has a non-boolean option", where);
    if (aps)
        return eng_err_set(ENG_ERR_UNSUPPORTED, "%s: ByteLevel add_prefix_space=true is not supported",
                           where);
    if (need_no_regex && use_regex)
        return eng_err_set(
            ENG_ERR_UNSUPPORTED,
            "%s: ByteLevel use_regex=true (the GPT-2 regex) is not supported (only the Qwen2 Split regex)",
            where);
    return ENG_OK;
}

static eng_status check_pre_tokenizer(const cJSON *p)
{
    const char *type = get_type(p);
    if (!type)
        return eng_err_set(ENG_ERR_UNSUPPORTED,
                           "pre_tokenizer: missing or null (need the Qwen2 Split + ByteLevel sequence)");
    if (strcmp(type, "Sequence"))
        return eng_err_set(ENG_ERR_UNSUPPORTED,
                           "pre_tokenizer: type '%s' is not supported (need Sequence[Split, ByteLevel])",
                           type);
    const cJSON *list = obj_get(p, "pretokenizers");
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) != 2)
        return eng_err_set(ENG_ERR_UNSUPPORTED,
                           "pre_tokenizer: Sequence must hold exactly [Split, ByteLevel]");
    const cJSON *split = cJSON_GetArrayItem(list, 0), *bl = cJSON_GetArrayItem(list, 1);
    const char *t0 = get_type(split), *t1 = get_type(bl);
    if (!t0 || strcmp(t0, "Split"))
        return eng_err_set(ENG_ERR_UNSUPPORTED,
                           "pre_tokenizer: first member of type '%s' is not supported (need Split)",
                           t0 ? t0 : "?");
    const cJSON *pat = obj_get(obj_get(split, "pattern"), "Regex");
    if (!cJSON_IsString(pat))
        return eng_err_set(
            ENG_ERR_UNSUPPORTED,
            "pre_tokenizer: Split needs a \"pattern\": {\"Regex\": ...} (string patterns are not supported)");
    if (strcmp(pat->valuestring, QWEN2_SPLIT_REGEX))
        return eng_err_set(ENG_ERR_UNSUPPORTED,
                           "pre_tokenizer: Split regex '%.200s' is not supported (only the Qwen2 regex)",
                           pat->valuestring);
    const cJSON *beh = obj_get(split, "behavior");
    if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated"))
        return eng_err_set(ENG_ERR_UNSUPPORTED,
                           "pre_tokenizer: Split behavior '%s' is not supported (only Isolated)",
                           cJSON_IsString(beh) ? beh->valuestring : "?");
    bool invert;
    if (!get_bool(split, "invert", false, &invert))
        return eng_err_set(ENG_ERR_FORMAT, "pre_tokenizer: Split invert is not a boolean");
    if (invert) return eng_err_set(ENG_ERR_UNSUPPORTED, "pre_tokenizer: Split invert=true is not supported");
    if (!t1 || strcmp(t1, "ByteLevel"))
        return eng_err_set(ENG_ERR_UNSUPPORTED,
                           "pre_tokenizer: second member of type '%s' is not supported (need ByteLevel)",
                           t1 ? t1 : "?");
    return check_byte_level(bl, "pre_tokenizer", true);
}

static eng_status check_decoder_and_post(const cJSON *root)
{
    const cJSON *d = obj_get(root, "decoder");
    const char *type = get_type(d);
    if (!type) return eng_err_set(ENG_ERR_UNSUPPORTED, "decoder: missing or null (need ByteLevel)");
    if (strcmp(type, "ByteLevel"))
        return eng_err_set(ENG_ERR_UNSUPPORTED, "decoder: type '%s' is not supported (only ByteLevel)", type);
    const cJSON *p = obj_get(root, "post_processor");
    if (!is_absent(p)) {
        type = get_type(p);
        if (!type || strcmp(type, "ByteLevel"))
            return eng_err_set(ENG_ERR_UNSUPPORTED,
                               "post_processor: type '%s' is not supported (only ByteLevel or null)",
                               type ? type : "?");
    }
    if (!is_absent(obj_get(root, "truncation")))
        return eng_err_set(ENG_ERR_UNSUPPORTED, "truncation: only null is supported");
    if (!is_absent(obj_get(root, "padding")))
        return eng_err_set(ENG_ERR_UNSUPPORTED, "padding: only null is supported");
    return ENG_OK;
}

static eng_status check_model_options(const cJSON *model, bool *ignore_merges)
{
    const char *type = get_type(model);
    if (!type) return eng_err_set(ENG_ERR_FORMAT, "model: missing \"type\"");
    if (strcmp(type, "BPE"))
        return eng_err_set(ENG_ERR_UNSUPPORTED, "model: type '%s' is not supported (only BPE)", type);
    const cJSON *dropout = obj_get(model, "dropout");
    if (!is_absent(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        return eng_err_set(ENG_ERR_UNSUPPORTED, "model: BPE dropout is not supported");
    static const char *const empty_only[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (size_t i = 0; i < 2; i++) {
        const cJSON *v = obj_get(model, empty_only[i]);
        if (!is_absent(v) && !(cJSON_IsString(v) && v->valuestring[0] == '\0'))
            return eng_err_set(ENG_ERR_UNSUPPORTED, "model: %s is not supported", empty_only[i]);
    }
    bool fuse, byte_fallback;
    if (!get_bool(model, "ignore_merges", false, ignore_merges) ||
        !get_bool(model, "fuse_unk", false, &fuse) ||
        !get_bool(model, "byte_fallback", false, &byte_fallback))
        return eng_err_set(ENG_ERR_FORMAT, "model: a BPE option is not a boolean");
    /* unk_token, fuse_unk and byte_fallback never act: every byte has a token (checked later) */
    return ENG_OK;
}

/* ==== loading ================================================================================= */

typedef struct added_src { /* one parsed added_tokens entry */
    const char *content;
    size_t len;
    int32_t id;
    bool special, normalized, lstrip, rstrip, single_word;
} added_src;

static eng_status parse_added(const cJSON *arr, added_src **out, uint32_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (is_absent(arr)) return ENG_OK;
    if (!cJSON_IsArray(arr)) return eng_err_set(ENG_ERR_FORMAT, "added_tokens: not an array");
    int n = cJSON_GetArraySize(arr);
    if (n <= 0) return ENG_OK;
    added_src *a = eng_calloc((size_t)n, sizeof *a);
    if (!a) return eng_err_set(ENG_ERR_NOMEM, "added_tokens: out of memory");
    eng_status st = ENG_OK;
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        added_src *s = &a[i];
        const cJSON *content = obj_get(it, "content");
        if (!cJSON_IsString(content) || !content->valuestring[0]) {
            st = eng_err_set(ENG_ERR_FORMAT, "added_tokens[%d]: missing or empty \"content\"", i);
            goto fail;
        }
        s->content = content->valuestring;
        s->len = strlen(s->content);
        if (!get_id(obj_get(it, "id"), &s->id)) {
            st = eng_err_set(ENG_ERR_FORMAT,
                             "added_tokens[%d] ('%.100s'): \"id\" is not an integer in [0, %d)", i,
                             s->content, QN_TOK_MAX_ID);
            goto fail;
        }
        if (!get_bool(it, "special", false, &s->special) ||
            !get_bool(it, "normalized", !s->special, &s->normalized) ||
            !get_bool(it, "lstrip", false, &s->lstrip) || !get_bool(it, "rstrip", false, &s->rstrip) ||
            !get_bool(it, "single_word", false, &s->single_word)) {
            st = eng_err_set(ENG_ERR_FORMAT, "added_tokens[%d] ('%.100s'): a flag is not a boolean", i,
                             s->content);
            goto fail;
        }
        i++;
    }
    *out = a;
    *n_out = (uint32_t)n;
    return ENG_OK;
fail:
    eng_free(a);
    return st;
}

/* Sorts set->order by (first byte, length descending) and fills set->first. */
static void build_added_set(eng_tokenizer *t, qn_added_set *set)
{
    /* insertion sort: few tokens, load time only */
    for (uint32_t i = 1; i < set->n; i++) {
        uint32_t x = set->order[i];
        const qn_added_token *a = &t->added[x];
        uint8_t ab = t->pat_pool[a->pat_off];
        uint32_t j = i;
        while (j > 0) {
            const qn_added_token *b = &t->added[set->order[j - 1]];
            uint8_t bb = t->pat_pool[b->pat_off];
            if (bb < ab || (bb == ab && b->pat_len >= a->pat_len)) break;
            set->order[j] = set->order[j - 1];
            j--;
        }
        set->order[j] = x;
    }
    uint32_t k = 0;
    for (int b = 0; b <= 256; b++) {
        while (k < set->n && t->pat_pool[t->added[set->order[k]].pat_off] < b) k++;
        set->first[b] = k;
    }
}

/* Copies the added tokens into t->added: file content and match pattern (NFC of the content for
 * normalized tokens when the normalizer is NFC), then buckets them into the raw and normalized
 * match sets. Ids are final only after load_vocab_and_added. */
static eng_status setup_added(eng_tokenizer *t, const added_src *src, uint32_t n_src)
{
    if (!n_src) return ENG_OK;
    size_t pool = 0;
    for (uint32_t i = 0; i < n_src; i++)
        pool += src[i].len * 4 + 16; /* content + NFC(content) (at most 3x) */
    t->added = eng_calloc(n_src, sizeof *t->added);
    t->pat_pool = eng_malloc(pool);
    t->raw_set.order = eng_calloc(n_src, sizeof(uint32_t));
    t->norm_set.order = eng_calloc(n_src, sizeof(uint32_t));
    if (!t->added || !t->pat_pool || !t->raw_set.order || !t->norm_set.order)
        return eng_err_set(ENG_ERR_NOMEM, "added_tokens: out of memory");
    qn_nfc_scratch sc = {0};
    size_t off = 0;
    eng_status st = ENG_OK;
    for (uint32_t i = 0; i < n_src; i++) {
        const added_src *s = &src[i];
        qn_added_token *a = &t->added[i];
        a->id = s->id;
        a->special = s->special;
        a->normalized = s->normalized;
        a->lstrip = s->lstrip;
        a->rstrip = s->rstrip;
        a->single_word = s->single_word;
        memcpy(t->pat_pool + off, s->content, s->len);
        a->content_off = (uint32_t)off;
        a->content_len = (uint32_t)s->len;
        off += s->len;
        const uint8_t *pat = (const uint8_t *)s->content;
        size_t plen = s->len;
        if (s->normalized && t->nfc) {
            st = qn_nfc(pat, plen, &sc, &pat, &plen);
            if (st != ENG_OK) goto out;
        }
        if (plen == 0 || off + plen > pool) {
            st = eng_err_set(ENG_ERR_FORMAT, "added_tokens: '%.100s' normalizes to an unusable pattern",
                             s->content);
            goto out;
        }
        memcpy(t->pat_pool + off, pat, plen);
        a->pat_off = (uint32_t)off;
        a->pat_len = (uint32_t)plen;
        off += plen;
        qn_added_set *set = s->normalized ? &t->norm_set : &t->raw_set;
        set->order[set->n++] = i;
    }
    t->n_added = n_src;
    build_added_set(t, &t->raw_set);
    build_added_set(t, &t->norm_set);
out:
    qn_nfc_scratch_free(&sc);
    return st;
}

static eng_status load_vocab_and_added(eng_tokenizer *t, const cJSON *vocab)
{
    int16_t cp_byte[324];
    int32_t byte_cp[256];
    byte_level_tables(byte_cp, cp_byte);

    /* sizes: largest id, pool bytes */
    size_t n_model = 0, pool = 0;
    int32_t max_id = -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab)
    {
        int32_t id;
        if (!get_id(it, &id))
            return eng_err_set(ENG_ERR_FORMAT,
                               "model.vocab: '%.100s' has an id that is not an integer in [0, %d)",
                               it->string ? it->string : "?", QN_TOK_MAX_ID);
        if (id > max_id) max_id = id;
        pool += strlen(it->string) + 1;
        n_model++;
    }
    uint32_t n_added = t->n_added;
    for (uint32_t i = 0; i < n_added; i++) {
        if (t->added[i].id > max_id) max_id = t->added[i].id;
        pool += t->added[i].pat_len + 1;
    }
    if (n_model == 0) return eng_err_set(ENG_ERR_FORMAT, "model.vocab: empty");
    if ((size_t)max_id >= 2 * (n_model + n_added) + 1024) /* ids index arrays: refuse absurdly sparse ones */
        return eng_err_set(ENG_ERR_FORMAT,
                           "token id %d is far above the %zu tokens defined (ids must be nearly dense)",
                           (int)max_id, n_model + n_added);
    if (pool > UINT32_MAX) return eng_err_set(ENG_ERR_FORMAT, "model.vocab: too large");
    t->n_vocab = max_id + 1;
    size_t nv = (size_t)t->n_vocab;
    t->entries = eng_calloc(nv, sizeof *t->entries);
    t->flags = eng_calloc(nv, 1);
    t->self_state = eng_calloc(nv, sizeof *t->self_state);
    t->str_pool = eng_malloc(pool);
    t->bytes_pool = eng_malloc(pool);
    if (!t->entries || !t->flags || !t->self_state || !t->str_pool || !t->bytes_pool ||
        !map_init(&t->vocab_str, n_model) || !map_init(&t->vocab_bytes, n_model) ||
        !map_init(&t->added_str, n_added))
        return eng_err_set(ENG_ERR_NOMEM, "out of memory for a vocabulary of %zu tokens", n_model);
    for (size_t i = 0; i < nv; i++) atomic_init(&t->self_state[i], QN_SELF_UNKNOWN);

    size_t off = 0;
    cJSON_ArrayForEach(it, vocab)
    {
        int32_t id = (int32_t)it->valuedouble;
        size_t len = strlen(it->string);
        const uint8_t *s = (const uint8_t *)it->string;
        if (t->flags[id] & QN_TOK_PRESENT) {
            size_t ol;
            const uint8_t *os = entry_str(t, id, &ol);
            return eng_err_set(ENG_ERR_FORMAT, "model.vocab: id %d is used by both '%.*s' and '%.100s'",
                               (int)id, (int)(ol > 100 ? 100 : ol), (const char *)os, it->string);
        }
        /* one probe: inserts id unless the string is already there (its entry is written next) */
        if (map_find_or_insert(t, &t->vocab_str, KEY_STR, s, len, id) >= 0)
            return eng_err_set(ENG_ERR_FORMAT, "model.vocab: '%.100s' appears twice", it->string);
        memcpy(t->str_pool + off, s, len + 1);
        t->entries[id].str_off = (uint32_t)off;
        t->entries[id].str_len = (uint32_t)len;
        size_t bl = token_string_bytes(cp_byte, s, len, t->bytes_pool + off);
        t->entries[id].bytes_off = (uint32_t)off;
        t->entries[id].bytes_len = (uint32_t)bl;
        off += len + 1;
        t->flags[id] = QN_TOK_PRESENT | QN_TOK_MODEL;
    }
    /* bytes map over the model tokens */
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!(t->flags[id] & QN_TOK_MODEL)) continue;
        size_t bl;
        const uint8_t *b = entry_bytes(t, id, &bl);
        map_find_or_insert(t, &t->vocab_bytes, KEY_BYTES, b, bl, id);
    }
    /* the byte alphabet */
    for (int b = 0; b < 256; b++) {
        uint8_t u[4];
        size_t ul = 0;
        int32_t cp = byte_cp[b];
        if (cp < 0x80) {
            u[ul++] = (uint8_t)cp;
        } else {
            u[ul++] = (uint8_t)(0xC0 | (cp >> 6));
            u[ul++] = (uint8_t)(0x80 | (cp & 0x3F));
        }
        t->byte_id[b] = map_find_or_insert(t, &t->vocab_str, KEY_STR, u, ul, -1);
        if (t->byte_id[b] < 0)
            return eng_err_set(ENG_ERR_UNSUPPORTED,
                               "model.vocab: no token for byte 0x%02X ('%.*s'); only complete byte-level "
                               "vocabularies are supported",
                               b, (int)ul, (const char *)u);
    }
    /* added tokens */
    for (uint32_t i = 0; i < n_added; i++) {
        qn_added_token *a = &t->added[i];
        const uint8_t *content = t->pat_pool + a->content_off, *pat = t->pat_pool + a->pat_off;
        int cl = (int)(a->content_len > 100 ? 100 : a->content_len);
        int32_t model_id = map_find_or_insert(t, &t->vocab_str, KEY_STR, content, a->content_len, -1);
        if (model_id >= 0 && model_id != a->id) {
            eng_log(ENG_LOG_WARN,
                    "tokenizer: added token '%.*s' has id %d in the file but is model token %d; using %d", cl,
                    (const char *)content, (int)a->id, (int)model_id, (int)model_id);
            a->id = model_id;
        }
        int32_t id = a->id;
        if (map_find_or_insert(t, &t->added_str, KEY_ADDED, content, a->content_len, -1) >= 0)
            return eng_err_set(ENG_ERR_FORMAT, "added_tokens: '%.*s' appears twice", cl,
                               (const char *)content);
        if ((t->flags[id] & QN_TOK_ADDED) || ((t->flags[id] & QN_TOK_MODEL) && model_id != id)) {
            size_t ol;
            const uint8_t *os = entry_str(t, id, &ol);
            return eng_err_set(ENG_ERR_FORMAT, "added_tokens: '%.*s' has id %d, which is already '%.*s'", cl,
                               (const char *)content, (int)id, (int)(ol > 100 ? 100 : ol), (const char *)os);
        }
        if (model_id < 0) { /* the token's string is what HF's id_to_token reports: the pattern */
            memcpy(t->str_pool + off, pat, a->pat_len);
            t->str_pool[off + a->pat_len] = '\0';
            t->entries[id].str_off = (uint32_t)off;
            t->entries[id].str_len = a->pat_len;
            size_t bl = token_string_bytes(cp_byte, pat, a->pat_len, t->bytes_pool + off);
            t->entries[id].bytes_off = (uint32_t)off;
            t->entries[id].bytes_len = (uint32_t)bl;
            off += a->pat_len + 1;
        }
        t->flags[id] |= QN_TOK_PRESENT | QN_TOK_ADDED | (a->special ? QN_TOK_SPECIAL : 0);
        map_find_or_insert(t, &t->added_str, KEY_ADDED, content, a->content_len, (int32_t)i);
    }
    return ENG_OK;
}

/* one merge entry: "a b" or ["a", "b"] */
static bool merge_parts(const cJSON *m, const char **a, size_t *al, const char **b, size_t *bl)
{
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring, *sp = strchr(s, ' ');
        if (!sp || sp == s || !sp[1] || strchr(sp + 1, ' ')) return false;
        *a = s;
        *al = (size_t)(sp - s);
        *b = sp + 1;
        *bl = strlen(sp + 1);
        return true;
    }
    if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2) {
        const cJSON *x = cJSON_GetArrayItem(m, 0), *y = cJSON_GetArrayItem(m, 1);
        if (!cJSON_IsString(x) || !cJSON_IsString(y)) return false;
        *a = x->valuestring;
        *al = strlen(*a);
        *b = y->valuestring;
        *bl = strlen(*b);
        return *al && *bl;
    }
    return false;
}

static eng_status load_merges(eng_tokenizer *t, const cJSON *merges)
{
    if (!cJSON_IsArray(merges)) return eng_err_set(ENG_ERR_FORMAT, "model.merges: missing or not an array");
    size_t n = (size_t)cJSON_GetArraySize(merges), cap = 16;
    while (cap < n + n / 2 + 16) cap *= 2; /* load factor <= 2/3 */
    if (cap > (1u << 30)) return eng_err_set(ENG_ERR_FORMAT, "model.merges: %zu merges is too many", n);
    t->merges = eng_malloc(cap * sizeof *t->merges);
    t->merge_id = eng_malloc((n + 1) * sizeof *t->merge_id);
    if (!t->merges || !t->merge_id)
        return eng_err_set(ENG_ERR_NOMEM, "model.merges: out of memory for %zu merges", n);
    for (size_t i = 0; i < cap; i++) t->merges[i].a = UINT32_MAX;
    t->merge_mask = (uint32_t)(cap - 1);
    char *cat = NULL;
    size_t cat_cap = 0, rank = 0;
    eng_status st = ENG_OK;
    const cJSON *m;
    cJSON_ArrayForEach(m, merges)
    {
        const char *a, *b;
        size_t al, bl;
        if (!merge_parts(m, &a, &al, &b, &bl)) {
            st = eng_err_set(ENG_ERR_FORMAT, "model.merges[%zu]: not \"a b\" or [\"a\", \"b\"]", rank);
            goto out;
        }
        int32_t ia = map_find_or_insert(t, &t->vocab_str, KEY_STR, (const uint8_t *)a, al, -1);
        int32_t ib = map_find_or_insert(t, &t->vocab_str, KEY_STR, (const uint8_t *)b, bl, -1);
        if (ia < 0 || ib < 0) {
            st = eng_err_set(ENG_ERR_FORMAT, "model.merges[%zu]: token '%.*s' is not in the vocabulary", rank,
                             (int)(ia < 0 ? (al > 100 ? 100 : al) : (bl > 100 ? 100 : bl)), ia < 0 ? a : b);
            goto out;
        }
        if (al + bl > cat_cap) {
            cat_cap = (al + bl) * 2;
            char *p = eng_realloc(cat, cat_cap);
            if (!p) {
                st = eng_err_set(ENG_ERR_NOMEM, "model.merges: out of memory");
                goto out;
            }
            cat = p;
        }
        memcpy(cat, a, al);
        memcpy(cat + al, b, bl);
        int32_t im = map_find_or_insert(t, &t->vocab_str, KEY_STR, (const uint8_t *)cat, al + bl, -1);
        if (im < 0) {
            st =
                eng_err_set(ENG_ERR_FORMAT, "model.merges[%zu]: merged token '%.*s' is not in the vocabulary",
                            rank, (int)(al + bl > 100 ? 100 : al + bl), cat);
            goto out;
        }
        uint32_t i = qn_merge_hash((uint32_t)ia, (uint32_t)ib) & t->merge_mask;
        while (t->merges[i].a != UINT32_MAX &&
               !(t->merges[i].a == (uint32_t)ia && t->merges[i].b == (uint32_t)ib))
            i = (i + 1) & t->merge_mask;
        if (t->merges[i].a == UINT32_MAX) t->n_merges++;
        t->merges[i].a = (uint32_t)ia;
        t->merges[i].b = (uint32_t)ib;
        t->merges[i].rank =
            (int32_t)rank; /* a repeated pair takes its later rank, as HF's map collect does */
        t->merge_id[rank] = im;
        rank++;
    }
out:
    eng_free(cat);
    return st;
}

eng_status eng_tokenizer_load_json(const char *json, size_t len, eng_tokenizer **out)
{
    if (!out) return eng_err_set(ENG_ERR_INVALID, "eng_tokenizer_load_json: out is NULL");
    *out = NULL;
    if (!json) return eng_err_set(ENG_ERR_INVALID, "eng_tokenizer_load_json: json is NULL");
    qn_pretok_init();
    eng_status st = ENG_OK;
    added_src *added = NULL;
    uint32_t n_added = 0;
    eng_tokenizer *t = NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, false);
    if (!root) {
        size_t at = end && end >= json && end <= json + len ? (size_t)(end - json) : 0;
        st = eng_err_set(ENG_ERR_FORMAT, "not valid JSON (error near byte %zu)", at);
        goto fail;
    }
    if (end) {
        while (end < json + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
        if (end < json + len && *end) {
            st = eng_err_set(ENG_ERR_FORMAT, "trailing data after the JSON value (byte %zu)",
                             (size_t)(end - json));
            goto fail;
        }
    }
    if (!cJSON_IsObject(root)) {
        st = eng_err_set(ENG_ERR_FORMAT, "the top level is not a JSON object");
        goto fail;
    }
    t = eng_calloc(1, sizeof *t);
    if (!t) {
        st = eng_err_set(ENG_ERR_NOMEM, "out of memory");
        goto fail;
    }
    const cJSON *model = obj_get(root, "model");
    if (!cJSON_IsObject(model)) {
        st = eng_err_set(ENG_ERR_FORMAT, "model: missing or not an object");
        goto fail;
    }
    if ((st = check_model_options(model, &t->ignore_merges)) != ENG_OK) goto fail;
    if ((st = check_normalizer(obj_get(root, "normalizer"), &t->nfc)) != ENG_OK) goto fail;
    if ((st = check_pre_tokenizer(obj_get(root, "pre_tokenizer"))) != ENG_OK) goto fail;
    if ((st = check_decoder_and_post(root)) != ENG_OK) goto fail;
    const cJSON *vocab = obj_get(model, "vocab");
    if (!cJSON_IsObject(vocab)) {
        st = eng_err_set(ENG_ERR_FORMAT, "model.vocab: missing or not an object");
        goto fail;
    }
    if ((st = parse_added(obj_get(root, "added_tokens"), &added, &n_added)) != ENG_OK) goto fail;
    if ((st = setup_added(t, added, n_added)) != ENG_OK) goto fail;
    if ((st = load_vocab_and_added(t, vocab)) != ENG_OK) goto fail;
    if ((st = load_merges(t, obj_get(model, "merges"))) != ENG_OK) goto fail;
    t->wcache = eng_malloc(QN_WC_SLOTS * sizeof *t->wcache);
    if (!t->wcache) {
        st = eng_err_set(ENG_ERR_NOMEM, "out of memory for the word cache");
        goto fail;
    }
    for (size_t i = 0; i < QN_WC_SLOTS; i++)
        for (size_t k = 0; k < 16; k++) atomic_init(&t->wcache[i].w[k], 0);
    eng_free(added);
    cJSON_Delete(root);
    *out = t;
    return ENG_OK;
fail:
    eng_free(added);
    cJSON_Delete(root);
    eng_tokenizer_destroy(t);
    return st;
}

eng_status eng_tokenizer_load(const char *path, eng_tokenizer **out)
{
    if (!out) return eng_err_set(ENG_ERR_INVALID, "eng_tokenizer_load: out is NULL");
    *out = NULL;
    if (!path) return eng_err_set(ENG_ERR_INVALID, "eng_tokenizer_load: path is NULL");
    char *file = NULL, *json = NULL;
    size_t len = 0;
    eng_status st;
    if (eng_dir_exists(path)) {
        file = eng_path_join(path, "tokenizer.json");
        if (!file) return eng_err_set(ENG_ERR_NOMEM, "out of memory");
    }
    const char *f = file ? file : path;
    st = eng_file_read(f, TOKENIZER_JSON_MAX, &json, &len);
    if (st == ENG_OK) {
        st = eng_tokenizer_load_json(json, len, out);
        if (st != ENG_OK) eng_err_wrap(st, "%s", f);
    }
    eng_free(json);
    eng_free(file);
    return st;
}

void eng_tokenizer_destroy(eng_tokenizer *t)
{
    if (!t) return;
    eng_free(t->entries);
    eng_free(t->flags);
    eng_free((void *)t->self_state);
    eng_free(t->str_pool);
    eng_free(t->bytes_pool);
    eng_free(t->pat_pool);
    map_free(&t->vocab_str);
    map_free(&t->vocab_bytes);
    map_free(&t->added_str);
    eng_free(t->merges);
    eng_free(t->merge_id);
    eng_free(t->wcache);
    eng_free(t->added);
    eng_free(t->raw_set.order);
    eng_free(t->norm_set.order);
    eng_free(t);
}

/* ==== lookups ================================================================================= */

int32_t eng_tokenizer_vocab_size(const eng_tokenizer *t)
{
    return t ? t->n_vocab : 0;
}

int32_t eng_tokenizer_token_id_n(const eng_tokenizer *t, const char *token, size_t len)
{
    if (!t || !token) return -1;
    const uint8_t *s = (const uint8_t *)token;
    int32_t k = map_find_or_insert(t, (qn_id_map *)&t->added_str, KEY_ADDED, s, len, -1);
    int32_t id = k >= 0 ? t->added[k].id : -1;
    if (id < 0) id = map_find_or_insert(t, (qn_id_map *)&t->vocab_str, KEY_STR, s, len, -1);
    return id;
}

int32_t eng_tokenizer_token_id(const eng_tokenizer *t, const char *token)
{
    return token ? eng_tokenizer_token_id_n(t, token, strlen(token)) : -1;
}

static inline bool id_ok(const eng_tokenizer *t, int32_t id)
{
    return t && id >= 0 && id < t->n_vocab && (t->flags[id] & QN_TOK_PRESENT);
}

const char *eng_tokenizer_token_str(const eng_tokenizer *t, int32_t id, size_t *len)
{
    if (!id_ok(t, id)) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->entries[id].str_len;
    return t->str_pool + t->entries[id].str_off;
}

const uint8_t *eng_tokenizer_token_bytes(const eng_tokenizer *t, int32_t id, size_t *len)
{
    if (!id_ok(t, id)) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->entries[id].bytes_len;
    return t->bytes_pool + t->entries[id].bytes_off;
}

bool eng_tokenizer_is_special(const eng_tokenizer *t, int32_t id)
{
    return id_ok(t, id) && (t->flags[id] & QN_TOK_SPECIAL);
}

bool eng_tokenizer_is_added(const eng_tokenizer *t, int32_t id)
{
    return id_ok(t, id) && (t->flags[id] & QN_TOK_ADDED);
}

/* ==== encode ================================================================================== */

typedef struct enc_ctx {
    const eng_tokenizer *t;
    bool parse_special;
    qn_ids out;
    qn_nfc_scratch nfc;
    qn_bpe_scratch bpe;
} enc_ctx;

/* start of the unit that ends at s[i] (i > lo); an invalid byte is its own unit */
static size_t prev_unit(const uint8_t *s, size_t lo, size_t i)
{
    size_t j = i - 1;
    while (j > lo && i - j < 4 && (s[j] & 0xC0) == 0x80) j--;
    int32_t cp;
    if (j < i - 1 && qn_utf8_unit(s, i, j, &cp) == i - j && cp >= 0) return j;
    return i - 1;
}

static uint8_t class_at(const uint8_t *s, size_t n, size_t i, size_t *len)
{
    int32_t cp;
    *len = qn_utf8_unit(s, n, i, &cp);
    return cp < 0 ? QN_CC_OTHER : qn_pretok_class_of(cp);
}

static bool is_space_class(uint8_t c)
{
    c &= QN_CC_MASK;
    return c == QN_CC_S || c == QN_CC_NL;
}

typedef struct added_match {
    size_t start, stop;
    int32_t id;
} added_match;

/* Next added-token match in s[from..n) (HF AddedVocabulary::find_matches on one MatchingSet):
 * leftmost-longest; a match that is then discarded (special text when !parse_special, or a
 * single_word violation) still consumes its span. `floor` bounds lstrip (the previous match end). */
static bool next_added(const eng_tokenizer *t, const qn_added_set *set, const uint8_t *s, size_t n,
                       size_t from, size_t floor, bool parse_special, added_match *m)
{
    size_t i = from;
    while (i < n) {
        uint8_t b = s[i];
        uint32_t lo = set->first[b], hi = set->first[b + 1];
        if (lo == hi) {
            i++;
            continue;
        }
        const qn_added_token *hit = NULL;
        for (uint32_t k = lo; k < hi; k++) {
            const qn_added_token *a = &t->added[set->order[k]];
            if (a->pat_len <= n - i && memcmp(t->pat_pool + a->pat_off, s + i, a->pat_len) == 0) {
                hit = a;
                break;
            }
        }
        if (!hit) {
            i++;
            continue;
        }
        size_t start = i, stop = i + hit->pat_len, l;
        if (!parse_special && hit->special) {
            i = stop;
            continue;
        }
        if (hit->single_word) {
            bool word_before = start > 0 && (class_at(s, n, prev_unit(s, 0, start), &l) & QN_CC_WORD);
            bool word_after = stop < n && (class_at(s, n, stop, &l) & QN_CC_WORD);
            if (word_before || word_after) {
                i = stop;
                continue;
            }
        }
        if (hit->lstrip) {
            while (start > floor) {
                size_t p = prev_unit(s, floor, start);
                if (!is_space_class(class_at(s, n, p, &l))) break;
                start = p;
            }
        }
        if (hit->rstrip) {
            while (stop < n && is_space_class(class_at(s, n, stop, &l))) stop += l;
        }
        m->start = start;
        m->stop = stop;
        m->id = hit->id;
        return true;
    }
    return false;
}

static eng_status encode_pretokenized(enc_ctx *c, const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t j = qn_pretok_next(s, n, i);
        eng_status st = qn_bpe_piece(c->t, s + i, j - i, &c->out, &c->bpe);
        if (st != ENG_OK) return st;
        i = j;
    }
    return ENG_OK;
}

/* one segment between raw-matched added tokens */
static eng_status encode_segment(enc_ctx *c, const uint8_t *s, size_t n)
{
    if (n == 0) return ENG_OK;
    const eng_tokenizer *t = c->t;
    eng_status st;
    if (t->nfc && (st = qn_nfc(s, n, &c->nfc, &s, &n)) != ENG_OK) return st;
    if (!t->norm_set.n) return encode_pretokenized(c, s, n);
    size_t seg = 0;
    added_match m;
    while (next_added(t, &t->norm_set, s, n, seg, seg, c->parse_special, &m)) {
        if ((st = encode_pretokenized(c, s + seg, m.start - seg)) != ENG_OK) return st;
        if (!qn_ids_push(&c->out, m.id)) return eng_err_set(ENG_ERR_NOMEM, "encode: out of memory");
        seg = m.stop;
    }
    return encode_pretokenized(c, s + seg, n - seg);
}

eng_status eng_tokenizer_encode(const eng_tokenizer *t, const char *text, size_t len, bool parse_special,
                                int32_t **ids, size_t *n)
{
    if (ids) *ids = NULL;
    if (n) *n = 0;
    if (!t || !ids || !n || (!text && len))
        return eng_err_set(ENG_ERR_INVALID, "eng_tokenizer_encode: NULL argument");
    enc_ctx c = {.t = t, .parse_special = parse_special};
    const uint8_t *s = text ? (const uint8_t *)text : (const uint8_t *)"";
    eng_status st = ENG_OK;
    if (!qn_ids_grow(&c.out, len / 4 + 16)) {
        st = eng_err_set(ENG_ERR_NOMEM, "encode: out of memory");
        goto out;
    }
    size_t seg = 0;
    added_match m;
    while (t->raw_set.n && next_added(t, &t->raw_set, s, len, seg, seg, parse_special, &m)) {
        if ((st = encode_segment(&c, s + seg, m.start - seg)) != ENG_OK) goto out;
        if (!qn_ids_push(&c.out, m.id)) {
            st = eng_err_set(ENG_ERR_NOMEM, "encode: out of memory");
            goto out;
        }
        seg = m.stop;
    }
    st = encode_segment(&c, s + seg, len - seg);
out:
    qn_nfc_scratch_free(&c.nfc);
    qn_bpe_scratch_free(&c.bpe);
    if (st != ENG_OK) {
        eng_free(c.out.v);
        return st;
    }
    *ids = c.out.v;
    *n = c.out.n;
    return ENG_OK;
}
