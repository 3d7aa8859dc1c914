/* cli/main.c - `qnext`: the engine in-process, no server. Dispatches to cmd_<name>.c. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"run", cmd_run, "generate an answer to one prompt (through the chat template unless --raw)"},
    {"chat", cmd_chat, "interactive multi-turn chat"},
    {"batch", cmd_batch, "OpenAI batch JSONL in, batch-output JSONL out, all requests scheduled together"},
    {"bench", cmd_bench, "offline throughput at 1, 4 and 16 concurrent sequences"},
    {"logits", cmd_logits, "float32 logits for every position of a token-id sequence"},
    {"inspect", cmd_inspect, "validate a model folder's tensors against its config without reading weights"},
    {"demo-model", cmd_demo_model, "write a small random-weight Qwen3-Next with the real tokenizer"},
    {"tokenize", cmd_tokenize, "text on stdin -> token ids"},
    {"detokenize", cmd_detokenize, "token ids on stdin -> text"},
    {"template", cmd_template, "OpenAI chat request JSON on stdin -> rendered prompt"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: qnext <command> [options]   (qnext <command> --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("qnext 0.1.0\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "qnext: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
