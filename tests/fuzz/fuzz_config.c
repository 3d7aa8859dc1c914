/* tests/fuzz/fuzz_config.c - arbitrary bytes as config.json and as generation_config.json.
 * Invariants on success: the sizes the loader allocates from are within the documented bounds and
 * the derived fields are consistent. */
#include "model/config.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1);
    if (!text) return 0;
    memcpy(text, data, size);
    qn_config c;
    if (qn_config_parse(text, size, "config.json", &c) == ENG_OK) {
        if (c.n_layers < 1 || c.n_layers > QN_MAX_LAYERS) abort();
        if (c.n_full_layers + c.n_linear_layers != c.n_layers) abort();
        if (c.hidden_size < 1 || c.n_heads % c.n_kv_heads || c.lin_n_v_heads % c.lin_n_k_heads) abort();
        if (c.rotary_dim < 2 || c.rotary_dim > c.head_dim || c.rotary_dim % 2) abort();
        if (c.n_eos_token_ids < 0 || c.n_eos_token_ids > QN_MAX_EOS) abort();
        for (int i = 0; i < c.n_eos_token_ids; i++)
            if (c.eos_token_ids[i] < 0 || c.eos_token_ids[i] >= c.vocab_size) abort();
        qn_gen_config g;
        qn_gen_config_parse(text, size, "generation_config.json", &c, &g);
        if (g.n_eos_token_ids > QN_MAX_EOS) abort();
    }
    qn_gen_config g;
    if (qn_gen_config_parse(text, size, "generation_config.json", NULL, &g) == ENG_OK) {
        if (!(g.temperature >= 0) || !(g.top_p > 0 && g.top_p <= 1) || g.top_k < 0) abort();
    }
    free(text);
    return 0;
}
