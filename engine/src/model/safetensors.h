/* model/safetensors.h - read (mmap) and write Hugging Face safetensors checkpoints.
 *
 * File format: u64 little-endian header length N, then N bytes of UTF-8 JSON
 *   {"__metadata__": {str: str}, "<name>": {"dtype": "BF16", "shape": [..], "data_offsets": [b, e]}, ...}
 * then the data section; offsets are relative to the data section start (8 + N), b <= e, and
 * e - b == numel * dtype size. A model folder holds either `model.safetensors`, or shards listed
 * by `model.safetensors.index.json` ({"metadata": {...}, "weight_map": {tensor: file}}), or (as a
 * fallback) every *.safetensors file in the folder.
 *
 * Hostile input: header length beyond the file or above 100 MiB, malformed JSON, unknown dtype,
 * negative or overflowing shapes, offsets outside the file or overlapping, duplicate names, a
 * shard missing from the folder, a tensor listed in the index but absent from its shard: each is
 * ENG_ERR_FORMAT / ENG_ERR_IO with a detail naming the file (and tensor). Never a crash.
 */
#ifndef QN_SAFETENSORS_H
#define QN_SAFETENSORS_H

#include "core/core.h"
#include "core/dtype.h"

#define ENG_ST_MAX_DIMS 8
#define ENG_ST_MAX_HEADER (100u << 20)

/* One tensor of an opened model (or of a parsed header). `data` is NOT aligned beyond what the
 * file gives: safetensors aligns only the data section start (to 8 bytes when HF wrote it), so a
 * bf16 tensor after an odd-sized one may sit at any even address; copy or use unaligned loads. */
typedef struct eng_st_tensor {
    const char *name;
    eng_dtype dtype;
    int n_dims;
    int64_t shape[ENG_ST_MAX_DIMS];
    uint64_t numel;
    uint64_t n_bytes;
    uint64_t file_offset; /* absolute offset of the data in its file */
    const void *data;     /* mmapped pointer, or NULL when opened headers-only */
    int file_index;       /* which shard (eng_st_file_path) */
} eng_st_tensor;

typedef struct eng_st_model eng_st_model;

/* Opens a model folder (or a single .safetensors file). With map_data, every shard is mmapped
 * read-only (MAP_PRIVATE) and tensor->data is set; without it only headers are read and the
 * file sizes are still checked against the offsets (so sparse replicas validate completely).
 * Folder resolution: model.safetensors.index.json if present (every shard it names must exist,
 * every tensor it lists must be in the shard it names, and every tensor of those shards must be
 * listed), else model.safetensors, else every *.safetensors file (sorted by name); a tensor name
 * present in two files is an error. On failure *out is NULL and the error detail is set.
 * The model is immutable after open: lookups are safe from any number of threads. */
eng_status eng_st_open(const char *path, bool map_data, eng_st_model **out);
void eng_st_close(eng_st_model *m); /* NULL-safe; unmaps */

size_t eng_st_count(const eng_st_model *m);
const eng_st_tensor *eng_st_at(const eng_st_model *m, size_t i);
/* NULL if absent (no error detail is set). O(1) average (hash). */
const eng_st_tensor *eng_st_find(const eng_st_model *m, const char *name);
const char *eng_st_file_path(const eng_st_model *m, int file_index);
int eng_st_file_count(const eng_st_model *m);
/* Sum of all tensor bytes. */
uint64_t eng_st_total_bytes(const eng_st_model *m);
/* true if the model was opened with map_data (tensor->data is set). */
bool eng_st_has_data(const eng_st_model *m);
/* madvise(WILLNEED) + touch the pages of one tensor (no-op headers-only); callers count t->n_bytes
 * into their own progress bar. */
void eng_st_prefetch(const eng_st_model *m, const eng_st_tensor *t);

/* Parses one header (the JSON text, not the 8-byte prefix) against a data section of data_len
 * bytes; used by eng_st_open and by the fuzz target. On success fills a heap array of tensors
 * (names are heap strings; free with eng_st_tensors_free). */
eng_status eng_st_parse_header(const char *json, size_t json_len, uint64_t data_len, const char *file_name,
                               eng_st_tensor **out, size_t *n_out);
void eng_st_tensors_free(eng_st_tensor *t, size_t n);

/* ==== writer ================================================================================== */

/* Streams a safetensors file: add every tensor's metadata first, then write the data in the same
 * order. `sparse` writes no data (ftruncate leaves holes): replicas of large checkpoints for
 * loader tests. */
typedef struct eng_st_writer eng_st_writer;
eng_status eng_st_writer_create(const char *path, eng_st_writer **out);
eng_status eng_st_writer_add(eng_st_writer *w, const char *name, eng_dtype dtype, int n_dims, const int64_t *shape);
eng_status eng_st_writer_set_metadata(eng_st_writer *w, const char *key, const char *value);
/* Writes the header (padded with spaces to a multiple of 8 bytes; "__metadata__" always has
 * "format": "pt" unless set otherwise); then eng_st_writer_data for each tensor in add order (or
 * none if sparse). eng_st_writer_data appends to the concatenated data stream: one call per tensor
 * or any split into chunks is fine; writing past the declared total is ENG_ERR_INVALID.
 * Errors leave the writer usable only for eng_st_writer_abort. A duplicate name, a negative shape
 * or adding after begin_data is ENG_ERR_INVALID. */
eng_status eng_st_writer_begin_data(eng_st_writer *w, bool sparse);
eng_status eng_st_writer_data(eng_st_writer *w, const void *data, uint64_t n_bytes);
eng_status eng_st_writer_finish(eng_st_writer *w); /* closes and frees; checks all data was written */
void eng_st_writer_abort(eng_st_writer *w);        /* NULL-safe; closes and removes the file */
/* (eng_st_writer_finish frees the writer in every case; on error it also removes the file.) */

#endif /* QN_SAFETENSORS_H */
