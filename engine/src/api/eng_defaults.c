/* api/eng_defaults.c - the state-free value helpers of qnext/eng.h: eng_config_init,
 * eng_request_init and eng_finish_reason_str. They live apart from the engine (sched/engine.c) so
 * that every implementation of eng.h - the engine and the test fake (tests/support/fake_engine.c) -
 * shares one set of defaults instead of keeping copies that drift apart.
 */
#include "qnext/eng.h"

#include <string.h>

#define ENG_DEFAULT_PREFIX_BYTES (1ull << 30) /* prefix cache budget eng_config_init sets */

void eng_config_init(eng_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->device = "cpu";
    cfg->tp = 1;
    cfg->chat_template = "auto";
    cfg->max_running = 64;
    cfg->max_batch_tokens = 2048;
    cfg->max_queue = 1024;
    cfg->kv_block_size = 16;
    cfg->prefix_cache_bytes = ENG_DEFAULT_PREFIX_BYTES;
    cfg->prefix_snapshot_every = 1024;
    cfg->gpu_memory_fraction = 0.90;
    cfg->batch_invariant = true;
}

void eng_request_init(eng_request *r)
{
    memset(r, 0, sizeof *r);
    r->input = ENG_INPUT_TEXT;
    r->add_generation_prompt = true;
    r->sampling.temperature = -1;
    r->sampling.top_p = -1;
    r->sampling.top_k = -1;
    r->sampling.min_p = -1;
    r->sampling.repetition_penalty = -1;
    r->sampling.n = 1;
    r->sampling.logprobs = -1;
    r->sampling.max_tokens = -1;
    r->sampling.skip_special_tokens = true;
    r->parse_output = true;
}

const char *eng_finish_reason_str(eng_finish_reason r)
{
    switch (r) {
    case ENG_FINISH_NONE:
        return "none";
    case ENG_FINISH_STOP:
        return "stop";
    case ENG_FINISH_LENGTH:
        return "length";
    case ENG_FINISH_TOOL_CALLS:
        return "tool_calls";
    case ENG_FINISH_CANCELLED:
        return "cancelled";
    case ENG_FINISH_ERROR:
        return "error";
    }
    return "unknown";
}
