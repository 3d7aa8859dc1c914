/* pack.h - gw_request -> qnext.v1.GenerateRequest, and protobuf-c <-> gRPC byte buffers.
 *
 * The mapping of OpenAI fields onto the proto (docs/decisions.md, gateway entries):
 *   chat: input.chat.messages_json = the validated messages array, tools_json = each tool,
 *         template_kwargs_json = chat_template_kwargs;  completions: input.prompt or token_ids
 *   temperature/top_p/top_k/min_p/repetition_penalty/seed -> the *_opt oneofs only when set;
 *   presence/frequency penalties, n, logit_bias, logprobs (absent / 0 / top k) -> SamplingParams;
 *   max_tokens (max_completion_tokens wins), min_tokens, ignore_eos, stop, stop_token_ids -> StopParams;
 *   skip_special_tokens=false -> OutputOptions.keep_special_tokens.
 */
#ifndef GW_PACK_H
#define GW_PACK_H

#include "openai_request.h"          /* defines: gw_request */
#include "qnext/v1/generator.pb-c.h" /* defines: Qnext__V1__* */

#include <grpc/byte_buffer.h>

#include <stddef.h>
#include <stdint.h>

/* Serialises the GenerateRequest for prompt `prompt_idx` of `r` (0 for chat) with `request_id`.
 * *out is eng_malloc'd (free with eng_free). ENG_ERR_NOMEM on allocation failure. */
eng_status gw_pack_generate(const gw_request *r, size_t prompt_idx, const char *request_id, uint8_t **out,
                            size_t *len);

/* Wraps bytes in a new gRPC byte buffer (copied). NULL on allocation failure. */
grpc_byte_buffer *gw_pack_to_bb(const uint8_t *data, size_t len);

/* Unpacks a gRPC byte buffer as message type `d`. Returns a protobuf-c message (free with
 * protobuf_c_message_free_unpacked(m, NULL)), or NULL if the bytes are malformed. */
ProtobufCMessage *gw_unpack_bb(const ProtobufCMessageDescriptor *d, grpc_byte_buffer *bb);

#endif /* GW_PACK_H */
