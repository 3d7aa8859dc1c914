/* tests/support/fake_engine.h - a deterministic stand-in for the engine behind qnext/eng.h.
 *
 * tests/support/fake_engine.c implements every function of qnext/eng.h (and nothing else), so a
 * program links either the real engine (qn_engine) or this file, never both. qnext-engine-fake
 * (grpc_service + this) lets the service and gateway suites run without a model. The behaviour
 * below is a contract the e2e suites rely on; keep it stable.
 *
 * Load (eng_create):
 *   - cfg->model_dir must name an existing folder (ENG_ERR_IO otherwise). If it holds a
 *     tokenizer.json, that tokenizer is loaded with eng_tokenizer_load and eng_get_tokenizer
 *     returns it (Tokenize/Detokenize then work); otherwise eng_get_tokenizer returns NULL.
 *   - QNEXT_FAKE_LOAD_MS=<ms>: sleep that long first (a slow model load).
 *   - QNEXT_FAKE_LOAD_FAIL=1: fail with ENG_ERR_FORMAT "fake engine: model load failed (QNEXT_FAKE_LOAD_FAIL)".
 *   - Defaults: max_running 64, max_queue 1024, max_model_len 0 -> 4096. Model info: model_id =
 *     the folder's base name, template_kind = cfg->chat_template when it is instruct / thinking /
 *     hybrid else "instruct", dtype "f32", device "cpu", tp 1, vocab_size FAKE_VOCAB_SIZE.
 *
 * Requests (eng_submit, thread-safe):
 *   - Prompt tokens: TEXT -> one token per byte; TOKENS -> the ids (each must be 0..vocab-1);
 *     CHAT -> one per byte of messages_json (which must start with '['), plus tools_json's bytes.
 *     An empty prompt, or one of >= max_model_len tokens, is ENG_ERR_INVALID; so are n outside
 *     1..128, logprobs > 20 and max_tokens == 0.
 *   - More than max_queue requests waiting: ENG_ERR_QUEUE_FULL.
 *   - Scheduling: up to max_running requests run at once (a request takes one slot whatever its
 *     n); waiting ones are admitted by priority (lower first), then arrival.
 *
 * Generation (eng_step; one token per running choice per step):
 *   - QNEXT_FAKE_STEP_MS=<ms>: each step that runs sequences first sleeps that long.
 *   - Choice c of a request has seed s = fnv1a64(prompt token ids as int32 LE), xor-ed with
 *     (c + 1) * 0x9E3779B97F4A7C15 unless temperature == 0 (greedy: all choices equal), xor-ed with
 *     seed * 0xD1B54A32D192ED03 when has_seed. Token i is FAKE_WORD_BASE + splitmix64(s + i) %
 *     FAKE_WORD_COUNT and its text is " w<id>" (e.g. " w1234"). So output depends only on the
 *     prompt, c, temperature == 0 and the seed: never on batching or timing.
 *   - Natural end: after 8 + (s % 25) tokens the choice emits EOS (finish STOP, no token for
 *     it), unless ignore_eos. min_tokens defers EOS and stops. max_tokens -> LENGTH; the context
 *     (prompt + output reaching max_model_len) -> LENGTH.
 *   - stop_token_ids: a sampled id in the list ends the choice (STOP, matched_stop_token = id, the
 *     id is not emitted). Stop strings: matched in the choice's text across token boundaries; the
 *     text before the match is emitted, finish STOP, matched_stop = the string; text that may be
 *     the start of a stop string is held back until it is not.
 *   - CHAT input with parse_output: the first 2 tokens' text is `reasoning`, later ones `content`;
 *     with tools_json, the natural end is a tool call instead of EOS: one TOKENS event with no
 *     tokens carrying the fragments {index 0, id "call_fake_<request id>_<c>", name "fake_tool",
 *     arguments ""} and {index 0, arguments "{\"n\": "}, then one with {index 0, arguments
 *     "<tokens so far>}"}, then DONE with finish TOOL_CALLS. Otherwise content = text, reasoning "".
 *   - logprobs >= 0: token t gets logprob -((t % 7) + 1) / 8 and logprobs alternatives
 *     (FAKE_WORD_BASE + (t - FAKE_WORD_BASE + j) % FAKE_WORD_COUNT, logprob - 0.25 * j), j = 1..k.
 *   - DONE usage: prompt_tokens, completion_tokens (emitted ids), reasoning_tokens, cached 0;
 *     timings from the clock.
 *   - eng_cancel (thread-safe): the request's open choices end with DONE CANCELLED at the next
 *     step; ENG_ERR_NOT_FOUND for unknown or finished ids.
 */
#ifndef QN_FAKE_ENGINE_H
#define QN_FAKE_ENGINE_H

#include "qnext/eng.h"

#define FAKE_VOCAB_SIZE 151936
#define FAKE_WORD_BASE 1000
#define FAKE_WORD_COUNT 1000
#define FAKE_DEFAULT_MAX_MODEL_LEN 4096

#endif /* QN_FAKE_ENGINE_H */
