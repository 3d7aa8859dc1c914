/* tests/fuzz/fuzz_safetensors.c - arbitrary bytes as a whole safetensors file: the 8-byte header
 * length, the header JSON through eng_st_parse_header, and the offset checks against the data
 * section that follows. Invariants on success: every tensor lies inside the file, its byte size is
 * numel * dtype size, and names are unique and non-empty. */
#include "model/safetensors.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8) return 0;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | data[i];
    /* as eng_st_open does: the length must fit the file (the fuzzer's inputs are small, so the
     * 100 MiB limit is exercised by the unit tests) */
    if (hl > size - 8 || hl > ENG_ST_MAX_HEADER) hl = size - 8;
    eng_st_tensor *t = NULL;
    size_t n = 0;
    /* the header is not NUL-terminated in a file: copy it to an exact-size buffer so ASan catches
     * any read past its end */
    char *hdr = malloc(hl ? hl : 1);
    if (!hdr) return 0;
    memcpy(hdr, data + 8, hl);
    eng_status st = eng_st_parse_header(hdr, hl, size - 8 - hl, "fuzz.safetensors", &t, &n);
    if (st == ENG_OK) {
        for (size_t i = 0; i < n; i++) {
            if (!t[i].name[0]) abort();
            if (t[i].file_offset < 8 + hl || t[i].file_offset + t[i].n_bytes > size) abort();
            if (t[i].n_bytes != t[i].numel * eng_dtype_size(t[i].dtype)) abort();
            if (t[i].n_dims < 0 || t[i].n_dims > ENG_ST_MAX_DIMS) abort();
        }
        for (size_t i = 1; i < n && n < 64; i++)
            for (size_t j = 0; j < i; j++)
                if (!strcmp(t[i].name, t[j].name)) abort();
    } else if (t || n) {
        abort();
    }
    eng_st_tensors_free(t, n);
    free(hdr);
    return 0;
}
