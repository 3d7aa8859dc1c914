/* cli/cmd_run.c - `qnext run`: one prompt through the engine, the answer streamed to stdout.
 *
 * The prompt goes through the model's chat template as one user message (with an optional system
 * message) unless --raw makes it a plain completion. The answer streams to stdout as it is made;
 * reasoning (Thinking models) goes to stderr, dimmed on a terminal, so `qnext run ... > out.txt`
 * keeps only the answer. Tool calls are printed as `[tool call] name(arguments)`. Finally a summary
 * line on stderr: prompt tok/s, decode tok/s, peak memory. Ctrl-C stops the generation.
 */
#include "cli.h"
#include "cli_engine.h" /* defines: cli_engine_opts, cli_engine_open */

#include "core/core.h" /* defines: eng_peak_rss */

#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qnext run --model DIR --prompt TEXT [options]\n"
            "\n"
            "Generates an answer to one prompt and streams it to stdout (reasoning to stderr).\n"
            "\n"
            "options:\n"
            "  --prompt TEXT        the prompt ('-' or absent: read stdin)\n"
            "  --system TEXT        a system message (chat mode)\n"
            "  --raw                plain completion of the text, no chat template\n"
            "  --max-tokens N       generated tokens at most (default 512)\n"
            "  --temperature T      sampling temperature (default: the model's generation_config)\n"
            "  --top-p P            nucleus sampling (default: the model's)\n"
            "  --top-k K            top-k sampling, 0 = off (default: the model's)\n"
            "  --seed S             random seed (reproducible output)\n"
            "  --ignore-eos         keep going past end-of-sequence tokens\n"
            "%s"
            "\n"
            "exit status: 0 ok, 1 runtime error, 2 usage error\n",
            cli_engine_flags_help);
}

typedef struct run_state {
    bool done, raw, dim;
    bool in_reasoning;
    eng_finish_reason finish;
    eng_usage usage;
    eng_timings tm;
    char err[1100];
} run_state;

static void on_event(run_state *st, const eng_event *ev)
{
    if (ev->kind == ENG_EV_ERROR) {
        snprintf(st->err, sizeof st->err, "%s: %s", eng_status_str(ev->error),
                 ev->error_message ? ev->error_message : "");
        st->done = true;
        return;
    }
    if (ev->kind == ENG_EV_DONE) {
        st->finish = ev->finish;
        st->usage = ev->usage;
        st->tm = ev->timings;
        st->done = true;
        return;
    }
    if (st->raw) {
        fputs(ev->text, stdout);
    } else {
        if (ev->reasoning[0]) {
            if (st->dim && !st->in_reasoning) fputs("\x1b[2m", stderr);
            st->in_reasoning = true;
            fputs(ev->reasoning, stderr);
        }
        if ((ev->content[0] || ev->n_tool_deltas) && st->in_reasoning) {
            if (st->dim) fputs("\x1b[0m", stderr);
            fputs("\n", stderr);
            st->in_reasoning = false;
        }
        fputs(ev->content, stdout);
        for (size_t i = 0; i < ev->n_tool_deltas; i++) {
            const eng_tool_delta *t = &ev->tool_deltas[i];
            if (t->name)
                printf("[tool call] %s(", t->name);
            else
                printf("%s)\n", t->arguments);
        }
    }
    fflush(stdout);
}

int cmd_run(int argc, char **argv)
{
    cli_engine_opts eo;
    cli_engine_opts_init(&eo);
    const char *prompt = NULL, *system = NULL;
    bool raw = false, ignore_eos = false, has_seed = false;
    long max_tokens = 512, top_k = -1;
    double temperature = -1, top_p = -1;
    unsigned long long seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        int r = cli_engine_flag("run", argc, argv, &i, &eo);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--prompt") && has) {
            prompt = argv[++i];
        } else if (!strcmp(a, "--system") && has) {
            system = argv[++i];
        } else if (!strcmp(a, "--raw")) {
            raw = true;
        } else if (!strcmp(a, "--ignore-eos")) {
            ignore_eos = true;
        } else if (!strcmp(a, "--max-tokens") && has) {
            if (!cli_parse_long(argv[++i], 1, 1 << 24, &max_tokens)) {
                fprintf(stderr, "qnext run: --max-tokens needs an integer >= 1, got '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--temperature") && has) {
            if (!cli_parse_double(argv[++i], 0, 100, &temperature)) {
                fprintf(stderr, "qnext run: --temperature needs a number in [0, 100], got '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--top-p") && has) {
            if (!cli_parse_double(argv[++i], 1e-9, 1, &top_p)) {
                fprintf(stderr, "qnext run: --top-p needs a number in (0, 1], got '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--top-k") && has) {
            if (!cli_parse_long(argv[++i], 0, 1 << 24, &top_k)) {
                fprintf(stderr, "qnext run: --top-k needs an integer >= 0, got '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--seed") && has) {
            if (!cli_parse_u64(argv[++i], &seed)) {
                fprintf(stderr, "qnext run: --seed needs an unsigned integer, got '%s'\n", argv[i]);
                return 2;
            }
            has_seed = true;
        } else {
            fprintf(stderr, "qnext run: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!eo.model) {
        fprintf(stderr, "qnext run: --model is required\n");
        usage(stderr);
        return 2;
    }
    if (raw && system) {
        fprintf(stderr, "qnext run: --system needs chat mode (drop --raw)\n");
        return 2;
    }
    char *stdin_text = NULL;
    if (!prompt || !strcmp(prompt, "-")) {
        stdin_text = cli_read_all(stdin, NULL);
        if (!stdin_text) {
            fprintf(stderr, "qnext run: cannot read the prompt from stdin\n");
            return 1;
        }
        prompt = stdin_text;
    }
    if (!prompt[0]) {
        fprintf(stderr, "qnext run: the prompt is empty\n");
        free(stdin_text);
        return 2;
    }

    int rc = 1;
    char *messages = NULL;
    if (!eo.max_running) eo.max_running = 1; /* one prompt: size the caches for one sequence */
    eng_engine *e = cli_engine_open("run", &eo);
    if (!e) goto out;
    eng_request req;
    eng_request_init(&req);
    if (raw) {
        req.input = ENG_INPUT_TEXT;
        req.text = prompt;
        req.parse_output = false;
    } else {
        if (!(messages = cli_messages_json(system, prompt))) {
            fprintf(stderr, "qnext run: out of memory\n");
            goto out;
        }
        req.input = ENG_INPUT_CHAT;
        req.messages_json = messages;
    }
    req.sampling.max_tokens = (int)max_tokens;
    req.sampling.temperature = (float)temperature;
    req.sampling.top_p = (float)top_p;
    req.sampling.top_k = (int)top_k;
    req.sampling.has_seed = has_seed;
    req.sampling.seed = seed;
    req.sampling.ignore_eos = ignore_eos;
    uint64_t id;
    eng_status st = eng_submit(e, &req, &id);
    if (st != ENG_OK) {
        fprintf(stderr, "qnext run: %s: %s\n", eng_status_str(st), eng_err_last());
        goto out;
    }
    cli_sigint_install();
    run_state rs = {.raw = raw, .dim = cli_isatty(stderr)};
    bool cancel_sent = false;
    while (!rs.done) {
        if (cli_interrupted && !cancel_sent) {
            eng_cancel(e, id);
            cancel_sent = true;
        }
        eng_event ev[64];
        size_t n = 0;
        if ((st = eng_step(e, ev, 64, &n)) != ENG_OK) {
            fprintf(stderr, "\nqnext run: engine failure: %s: %s\n", eng_status_str(st), eng_err_last());
            goto out;
        }
        for (size_t k = 0; k < n; k++) on_event(&rs, &ev[k]);
    }
    if (rs.in_reasoning && rs.dim) fputs("\x1b[0m", stderr);
    if (rs.err[0]) {
        fprintf(stderr, "qnext run: %s\n", rs.err);
        goto out;
    }
    printf("\n");
    fflush(stdout);
    double prefill_s = rs.tm.ttft_s - rs.tm.queue_s;
    double decode_s = rs.tm.total_s - rs.tm.ttft_s;
    int computed = rs.usage.prompt_tokens - rs.usage.cached_prompt_tokens;
    char mem[32];
    fprintf(stderr,
            "[%s] prompt %d tokens (%d cached), %.1f tok/s | generated %d tokens, %.1f tok/s | "
            "TTFT %.3f s | peak memory %s\n",
            eng_finish_reason_str(rs.finish), rs.usage.prompt_tokens, rs.usage.cached_prompt_tokens,
            prefill_s > 0 ? computed / prefill_s : 0.0, rs.usage.completion_tokens,
            decode_s > 0 && rs.usage.completion_tokens > 1 ? (rs.usage.completion_tokens - 1) / decode_s
                                                           : 0.0,
            rs.tm.ttft_s, cli_fmt_bytes((double)eng_peak_rss(), mem, sizeof mem));
    rc = 0;
out:
    eng_destroy(e);
    free(messages);
    free(stdin_text);
    return rc;
}
