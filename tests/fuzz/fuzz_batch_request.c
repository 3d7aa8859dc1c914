/* tests/fuzz/fuzz_batch_request.c - arbitrary bytes as one line of an OpenAI batch input file, through
 * `qnext batch`'s line parser (engine/cli/cmd_batch.c, included whole: its parser is file-static).
 * Invariants: a line is either mapped onto a request that eng_submit's own checks would see (chat
 * or text input present, n in 1..128, logprobs in -1..20, max_tokens >= 1) or gets an error code
 * and message; the error line it would produce is valid output; nothing leaks (ASan). */
#include "../../engine/cli/cli_engine.c"
#include "../../engine/cli/cmd_batch.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = malloc(size + 1);
    if (!line) return 0;
    memcpy(line, data, size);
    line[size] = '\0';
    breq b;
    memset(&b, 0, sizeof b);
    b.line = 1;
    parse_line(&b, line, 1024);
    if (b.error_code) {
        if (!b.error_msg) abort();
        FILE *devnull = fopen("/dev/null", "w");
        if (devnull) {
            write_error(devnull, 1, &b);
            fclose(devnull);
        }
    } else {
        const eng_request *r = &b.req;
        if (r->input == ENG_INPUT_CHAT && !r->messages_json) abort();
        if (r->input == ENG_INPUT_TEXT && (!r->text || !r->text[0])) abort();
        if (r->sampling.n < 1 || r->sampling.n > 128) abort();
        if (r->sampling.logprobs < -1 || r->sampling.logprobs > 20) abort();
        if (r->sampling.max_tokens < 1) abort();
        if (!b.custom_id) abort();
    }
    breq_free(&b);
    free(line);
    return 0;
}
