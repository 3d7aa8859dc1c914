/* cli/cmd_chat.c - `qnext chat`: an interactive multi-turn chat with the engine in-process.
 *
 * Every turn sends the whole conversation through the chat template; the engine's prefix cache
 * holds the previous turns (KV blocks + recurrent-state snapshot), so a turn prefills only what
 * is new: /stats shows it. Lines are read with libedit (history, line editing) when stdin is a
 * terminal and the build found libedit, else with fgets, so a pipe can drive a session:
 *
 *     printf 'Hello\n/stats\n/quit\n' | qnext chat --model DIR
 *
 * Thinking models: the reasoning is printed apart from the answer (dimmed on a terminal, between
 * "[thinking]" and "[/thinking]" lines otherwise); --hide-reasoning shows one summary line instead.
 * Ctrl-C stops the answer being generated (what was written stays in the conversation); at the
 * prompt, Ctrl-D, /quit or a second Ctrl-C ends the session.
 */
#include "cli.h"
#include "cli_engine.h" /* defines: cli_engine_opts, cli_engine_open, cli_interrupted */

#include "core/core.h" /* defines: eng_buf */

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#ifdef QN_HAVE_LIBEDIT
#include <editline/readline.h>
#endif

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: qnext chat --model DIR [options]\n"
        "\n"
        "Interactive multi-turn chat through the model's chat template. Commands:\n"
        "  /reset                       forget the conversation (keeps the system message)\n"
        "  /system TEXT                 set the system message (and reset)\n"
        "  /set temperature|top_p|top_k|max_tokens V\n"
        "  /stats                       tokens, prefix-cache reuse and speed of the last turn and session\n"
        "  /help, /quit\n"
        "\n"
        "options:\n"
        "  --system TEXT        a system message\n"
        "  --max-tokens N       tokens per answer at most (default 1024)\n"
        "  --temperature T, --top-p P, --top-k K   sampling (default: the model's generation_config)\n"
        "  --seed S             random seed (each turn uses S + turn number)\n"
        "  --hide-reasoning     collapse a Thinking model's reasoning into one line\n"
        "%s",
        cli_engine_flags_help);
}

typedef struct chat_session {
    eng_engine *e;
    cJSON *history; /* user / assistant messages */
    char *system;
    double temperature, top_p;
    long top_k, max_tokens;
    bool has_seed;
    unsigned long long seed;
    bool hide_reasoning, tty;
    /* last turn and totals */
    int turns;
    eng_usage last;
    eng_timings last_tm;
    long prompt_total, cached_total, completion_total;
} chat_session;

static char *read_line(bool interactive)
{
#ifdef QN_HAVE_LIBEDIT
    if (interactive) {
        char *l = readline("you> ");
        if (l && *l) add_history(l);
        return l;
    }
#endif
    if (interactive) {
        fputs("you> ", stdout);
        fflush(stdout);
    }
    eng_buf b;
    eng_buf_init(&b);
    char chunk[4096];
    bool got = false;
    while (fgets(chunk, sizeof chunk, stdin)) {
        got = true;
        size_t n = strlen(chunk);
        eng_buf_append(&b, chunk, n);
        if (n && chunk[n - 1] == '\n') break;
    }
    if (!got || b.oom) {
        eng_buf_free(&b);
        return NULL;
    }
    size_t len;
    char *s = eng_buf_take(&b, &len);
    while (len && (s[len - 1] == '\n' || s[len - 1] == '\r')) s[--len] = '\0';
    char *out = strdup(s); /* the caller frees with free(), like readline's lines */
    eng_free(s);
    return out;
}

static char *messages_json(const chat_session *cs)
{
    cJSON *arr = cJSON_CreateArray();
    if (!arr) return NULL;
    if (cs->system) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddItemToArray(arr, m);
        cJSON_AddStringToObject(m, "role", "system");
        cJSON_AddStringToObject(m, "content", cs->system);
    }
    cJSON *it;
    cJSON_ArrayForEach(it, cs->history) cJSON_AddItemToArray(arr, cJSON_Duplicate(it, true));
    char *s = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    return s;
}

static void add_message(chat_session *cs, const char *role, const char *content)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", role);
    cJSON_AddStringToObject(m, "content", content);
    cJSON_AddItemToArray(cs->history, m);
}

/* One turn: the user's line -> streamed answer. Returns false on an engine failure. */
static bool turn(chat_session *cs, const char *line)
{
    add_message(cs, "user", line);
    char *msgs = messages_json(cs);
    if (!msgs) {
        fprintf(stderr, "qnext chat: out of memory\n");
        return false;
    }
    eng_request r;
    eng_request_init(&r);
    r.input = ENG_INPUT_CHAT;
    r.messages_json = msgs;
    r.sampling.max_tokens = (int)cs->max_tokens;
    r.sampling.temperature = (float)cs->temperature;
    r.sampling.top_p = (float)cs->top_p;
    r.sampling.top_k = (int)cs->top_k;
    r.sampling.has_seed = cs->has_seed;
    r.sampling.seed = cs->seed + (unsigned long long)cs->turns;
    uint64_t id;
    eng_status st = eng_submit(cs->e, &r, &id);
    free(msgs);
    if (st != ENG_OK) {
        fprintf(stderr, "qnext chat: %s: %s\n", eng_status_str(st), eng_err_last());
        cJSON_DeleteItemFromArray(cs->history, cJSON_GetArraySize(cs->history) - 1);
        return true;
    }
    eng_buf answer;
    eng_buf_init(&answer);
    bool done = false, in_thought = false, ok = true, cancel_sent = false;
    int thought_tokens = 0;
    cli_interrupted = 0;
    while (!done) {
        if (cli_interrupted && !cancel_sent) {
            eng_cancel(cs->e, id);
            cancel_sent = true;
        }
        eng_event ev[64];
        size_t n = 0;
        if ((st = eng_step(cs->e, ev, 64, &n)) != ENG_OK) {
            fprintf(stderr, "\nqnext chat: engine failure: %s: %s\n", eng_status_str(st), eng_err_last());
            ok = false;
            break;
        }
        for (size_t k = 0; k < n; k++) {
            const eng_event *x = &ev[k];
            if (x->kind == ENG_EV_ERROR) {
                fprintf(stderr, "qnext chat: %s\n", x->error_message);
                done = true;
                continue;
            }
            if (x->kind == ENG_EV_DONE) {
                cs->last = x->usage;
                cs->last_tm = x->timings;
                done = true;
                if (x->finish == ENG_FINISH_CANCELLED) fputs(" [stopped]", stdout);
                continue;
            }
            if (x->reasoning[0]) {
                thought_tokens += (int)x->n_tokens;
                if (!in_thought) {
                    in_thought = true;
                    if (!cs->hide_reasoning) fputs(cs->tty ? "\x1b[2m" : "[thinking]\n", stdout);
                }
                if (!cs->hide_reasoning) fputs(x->reasoning, stdout);
            }
            if ((x->content[0] || x->n_tool_deltas) && in_thought) {
                in_thought = false;
                if (cs->hide_reasoning)
                    printf("[thought for %d tokens]\n", thought_tokens);
                else
                    fputs(cs->tty ? "\x1b[0m\n\n" : "\n[/thinking]\n", stdout);
            }
            fputs(x->content, stdout);
            eng_buf_puts(&answer, x->content);
            for (size_t i = 0; i < x->n_tool_deltas; i++) {
                const eng_tool_delta *t = &x->tool_deltas[i];
                if (t->name)
                    printf("[tool call] %s(", t->name);
                else
                    printf("%s)\n", t->arguments);
            }
            fflush(stdout);
        }
    }
    if (in_thought)
        fputs(cs->tty && !cs->hide_reasoning ? "\x1b[0m" : (cs->hide_reasoning ? "" : "\n[/thinking]"),
              stdout);
    fputs("\n", stdout);
    fflush(stdout);
    add_message(cs, "assistant", eng_buf_cstr(&answer) ? eng_buf_cstr(&answer) : "");
    eng_buf_free(&answer);
    cs->turns++;
    cs->prompt_total += cs->last.prompt_tokens;
    cs->cached_total += cs->last.cached_prompt_tokens;
    cs->completion_total += cs->last.completion_tokens;
    return ok;
}

static void show_stats(const chat_session *cs)
{
    if (cs->turns == 0) {
        printf("no turns yet\n");
        return;
    }
    const eng_usage *u = &cs->last;
    const eng_timings *t = &cs->last_tm;
    double decode_s = t->total_s - t->ttft_s;
    printf("last turn: prompt %d tokens = %d from the prefix cache + %d prefilled; answer %d tokens; TTFT "
           "%.3f s; "
           "%.1f tok/s\n",
           u->prompt_tokens, u->cached_prompt_tokens, u->prompt_tokens - u->cached_prompt_tokens,
           u->completion_tokens, t->ttft_s,
           decode_s > 0 && u->completion_tokens > 1 ? (u->completion_tokens - 1) / decode_s : 0.0);
    printf("session: %d turns, prompts %ld tokens, %ld served by the prefix cache (%.0f%%), %ld prefilled; "
           "answers %ld tokens\n",
           cs->turns, cs->prompt_total, cs->cached_total,
           cs->prompt_total ? 100.0 * (double)cs->cached_total / (double)cs->prompt_total : 0.0,
           cs->prompt_total - cs->cached_total, cs->completion_total);
    eng_stats st;
    eng_get_stats(cs->e, &st);
    printf("engine: prefix cache %llu of %llu looked-up prompt tokens hit; KV blocks %d/%d in use\n",
           (unsigned long long)st.prefix_cache_hit_tokens, (unsigned long long)st.prefix_cache_queries_tokens,
           st.kv_blocks_used, st.kv_blocks_total);
}

static void slash_set(chat_session *cs, const char *args)
{
    char key[32];
    char val[64];
    if (sscanf(args, "%31s %63s", key, val) != 2) {
        printf("usage: /set temperature|top_p|top_k|max_tokens VALUE\n");
        return;
    }
    double d;
    long l;
    if (!strcmp(key, "temperature") && cli_parse_double(val, 0, 100, &d))
        cs->temperature = d;
    else if (!strcmp(key, "top_p") && cli_parse_double(val, 1e-9, 1, &d))
        cs->top_p = d;
    else if (!strcmp(key, "top_k") && cli_parse_long(val, 0, 1 << 24, &l))
        cs->top_k = l;
    else if (!strcmp(key, "max_tokens") && cli_parse_long(val, 1, 1 << 24, &l))
        cs->max_tokens = l;
    else {
        printf("cannot set %s to '%s'\n", key, val);
        return;
    }
    printf("%s = %s\n", key, val);
}

int cmd_chat(int argc, char **argv)
{
    cli_engine_opts eo;
    cli_engine_opts_init(&eo);
    chat_session cs = {.temperature = -1, .top_p = -1, .top_k = -1, .max_tokens = 1024};
    const char *system = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        int r = cli_engine_flag("chat", argc, argv, &i, &eo);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--system") && has) {
            system = argv[++i];
        } else if (!strcmp(a, "--hide-reasoning")) {
            cs.hide_reasoning = true;
        } else if (!strcmp(a, "--max-tokens") && has) {
            if (!cli_parse_long(argv[++i], 1, 1 << 24, &cs.max_tokens)) {
                fprintf(stderr, "qnext chat: --max-tokens needs an integer >= 1, got '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--temperature") && has) {
            if (!cli_parse_double(argv[++i], 0, 100, &cs.temperature)) {
                fprintf(stderr, "qnext chat: --temperature needs a number in [0, 100], got '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--top-p") && has) {
            if (!cli_parse_double(argv[++i], 1e-9, 1, &cs.top_p)) {
                fprintf(stderr, "qnext chat: --top-p needs a number in (0, 1], got '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--top-k") && has) {
            if (!cli_parse_long(argv[++i], 0, 1 << 24, &cs.top_k)) {
                fprintf(stderr, "qnext chat: --top-k needs an integer >= 0, got '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--seed") && has) {
            if (!cli_parse_u64(argv[++i], &cs.seed)) {
                fprintf(stderr, "qnext chat: --seed needs an unsigned integer, got '%s'\n", argv[i]);
                return 2;
            }
            cs.has_seed = true;
        } else {
            fprintf(stderr, "qnext chat: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!eo.model) {
        fprintf(stderr, "qnext chat: --model is required\n");
        usage(stderr);
        return 2;
    }
    if (!eo.max_running) eo.max_running = 1; /* one conversation: size the caches for one sequence */
    int rc = 1;
    cs.e = cli_engine_open("chat", &eo);
    if (!cs.e) return 1;
    cs.history = cJSON_CreateArray();
    cs.system = system ? strdup(system) : NULL;
    cs.tty = cli_isatty(stdout);
    bool interactive = cli_isatty(stdin);
    if (!cs.history) goto out;
    eng_model_info mi;
    eng_get_model_info(cs.e, &mi);
    if (interactive)
        printf("qnext chat: %s (%s template, context %d). /help for commands, Ctrl-D to quit.\n", mi.model_id,
               mi.template_kind, mi.max_model_len);
    cli_sigint_install();
    for (;;) {
        cli_interrupted = 0;
        char *line = read_line(interactive);
        if (!line) break;
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        bool quit = false, ok = true;
        if (!*s) {
            /* empty line: nothing to do */
        } else if (!strcmp(s, "/quit") || !strcmp(s, "/exit")) {
            quit = true;
        } else if (!strcmp(s, "/help")) {
            printf("/reset  /system TEXT  /set temperature|top_p|top_k|max_tokens V  /stats  /quit\n");
        } else if (!strcmp(s, "/reset")) {
            cJSON_Delete(cs.history);
            cs.history = cJSON_CreateArray();
            printf("conversation cleared\n");
        } else if (!strncmp(s, "/system", 7) && (s[7] == ' ' || s[7] == '\0')) {
            free(cs.system);
            cs.system = s[7] && s[8] ? strdup(s + 8) : NULL;
            cJSON_Delete(cs.history);
            cs.history = cJSON_CreateArray();
            printf("system message %s; conversation cleared\n", cs.system ? "set" : "removed");
        } else if (!strncmp(s, "/set ", 5)) {
            slash_set(&cs, s + 5);
        } else if (!strcmp(s, "/stats")) {
            show_stats(&cs);
        } else if (s[0] == '/') {
            printf("unknown command %s (/help)\n", s);
        } else {
            ok = turn(&cs, s);
        }
        fflush(stdout);
        free(line);
        if (!cs.history) goto out;
        if (!ok) goto out;
        if (quit) break;
    }
    rc = 0;
out:
    cJSON_Delete(cs.history);
    free(cs.system);
    eng_destroy(cs.e);
    return rc;
}
