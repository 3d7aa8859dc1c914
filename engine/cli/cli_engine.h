/* cli/cli_engine.h - what the engine-driving subcommands (run, chat, batch, bench) share: the
 * engine flags, opening the engine, number parsing, a Ctrl-C flag, JSON message building and a few
 * terminal helpers. Every subcommand drives the engine in-process by looping eng_step (the caller
 * owns the loop, qnext/eng.h).
 */
#ifndef QN_CLI_ENGINE_H
#define QN_CLI_ENGINE_H

#include "qnext/eng.h" /* defines: eng_engine, eng_config, eng_request */

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Flags every engine subcommand accepts (cli_engine_flag parses them). */
typedef struct cli_engine_opts {
    const char *model;          /* --model DIR (required) */
    const char *device;         /* --device cpu|cuda|auto (NULL: the engine's default, cpu) */
    double gpu_memory_fraction; /* --gpu-memory-fraction F (0: the engine's default) */
    long threads;               /* --threads N (0: all cores) */
    long tp;                    /* --tp N tensor-parallel ranks (0: 1) */
    const char *template_name;  /* --template instruct|thinking|hybrid (NULL: auto) */
    long max_running;           /* --max-running N (0: engine default) */
    long max_batch_tokens;      /* --max-batch-tokens N (0: default) */
    long max_model_len;         /* --max-model-len N (0: the model's) */
    double kv_cache_mb;         /* --kv-cache-mb N (0: sized by the engine) */
    double prefix_cache_mb;     /* --prefix-cache-mb N (< 0: default; 0: off) */
} cli_engine_opts;

/* Help lines for the flags above (printed by each command's usage). */
extern const char cli_engine_flags_help[];

void cli_engine_opts_init(cli_engine_opts *o);

/* If argv[*i] is one of the engine flags, consumes it (and its value) and returns 1; returns 0 if
 * it is not one; returns -1 after printing "qnext <cmd>: ..." for a bad value. */
int cli_engine_flag(const char *cmd, int argc, char **argv, int *i, cli_engine_opts *o);

/* Opens the engine (prints the load error on stderr and returns NULL on failure). */
eng_engine *cli_engine_open(const char *cmd, const cli_engine_opts *o);

/* Strict number parsing: the whole string, within [lo, hi]. */
bool cli_parse_long(const char *s, long lo, long hi, long *out);
bool cli_parse_double(const char *s, double lo, double hi, double *out);
bool cli_parse_u64(const char *s, unsigned long long *out);

/* Set by SIGINT (Ctrl-C) once cli_sigint_install ran; cleared by the caller. A second Ctrl-C while
 * the flag is still set exits the process (130). */
extern volatile sig_atomic_t cli_interrupted;
void cli_sigint_install(void);

/* [{"role":"system","content":system}?, {"role":"user","content":user}] as JSON text (heap, free
 * with free()). NULL on out of memory. */
char *cli_messages_json(const char *system, const char *user);

/* True when f is a terminal (colour and cursor control are used only then). */
bool cli_isatty(FILE *f);

/* Prints "1.23 GB" style sizes. */
const char *cli_fmt_bytes(double bytes, char *buf, size_t cap);

/* Reads a whole stream into a heap string (free()); NULL on error. */
char *cli_read_all(FILE *f, size_t *len);

#endif /* QN_CLI_ENGINE_H */
