/* tests/unit/grpc_service/gsvc_wire_fixtures.h - qnext.v1 / grpc.health.v1 encodings computed with
 * the Python protobuf runtime (protobuf 7.36 via grpcio-tools' generated code), committed as literals so
 * the C side is checked against an independent encoder. The Python that made them is quoted above
 * each one. */
#ifndef GSVC_WIRE_FIXTURES_H
#define GSVC_WIRE_FIXTURES_H

/* GenerateResponse(request_id="gen-1", choice=0, delta=Delta(token_ids=[1965, 7], text=" w1965", content=" w1965")) */
#define FIX_DELTA_LEN 30
static const unsigned char fix_delta[] =
    "\x0a\x05\x67\x65\x6e\x2d\x31\x1a\x15\x0a\x03\xad\x0f\x07\x12\x06\x20\x77\x31\x39\x36\x35\x1a\x06"
    "\x20\x77\x31\x39\x36\x35";

/* GenerateResponse(request_id="r", choice=2, final=Final(finish_reason=FINISH_REASON_STOP, matched_stop="\n\n",
 *   matched_stop_token=0, usage=Usage(prompt_tokens=11, completion_tokens=5, reasoning_tokens=2),
 *   timings=Timings(ttft_seconds=0.5))) */
#define FIX_FINAL_LEN 34
static const unsigned char fix_final[] =
    "\x0a\x01\x72\x10\x02\x22\x1b\x08\x01\x12\x02\x0a\x0a\x18\x00\x22\x06\x08\x0b\x10\x05\x20\x02\x2a"
    "\x09\x11\x00\x00\x00\x00\x00\x00\xe0\x3f";

/* GenerateResponse(request_id="x", choice=1, delta=Delta(token_ids=[300], reasoning="\u00e9",
 *   tool_calls=[ToolCallDelta(index=0, id="call_1", name="f", arguments='{"a": 1}')],
 *   logprobs=[TokenLogprob(token=300, logprob=-0.5, top=[TopLogprob(token=301, logprob=-1.25)])])) */
#define FIX_TOOLS_LP_LEN 58
static const unsigned char fix_tools_lp[] =
    "\x0a\x01\x78\x10\x01\x1a\x33\x0a\x02\xac\x02\x22\x02\xc3\xa9\x2a\x15\x12\x06\x63\x61\x6c\x6c\x5f"
    "\x31\x1a\x01\x66\x22\x08\x7b\x22\x61\x22\x3a\x20\x31\x7d\x32\x12\x08\xac\x02\x15\x00\x00\x00\xbf"
    "\x22\x08\x08\xad\x02\x15\x00\x00\xa0\xbf";

/* GenerateResponse(request_id="e", choice=0, final=Final(finish_reason=FINISH_REASON_ERROR, error_message="boom",
 *   usage=Usage(), timings=Timings()))  (the service's Finals always carry usage and timings) */
#define FIX_FINAL_ERR_LEN 17
static const unsigned char fix_final_err[] =
    "\x0a\x01\x65\x22\x0c\x08\x05\x22\x00\x2a\x00\x3a\x04\x62\x6f\x6f\x6d";

/* HealthCheckResponse(status=SERVING) */
#define FIX_HEALTH_SERVING_LEN 2
static const unsigned char fix_health_serving[] =
    "\x08\x01";

/* GenerateRequest(request_id="abc", priority=-3, chat=ChatInput(
 *   messages=[ChatMessage(role="system", content="Be brief."),
 *             ChatMessage(role="assistant", reasoning_content="think",
 *                         tool_calls=[ChatToolCall(id="call_9", name="get", arguments='{"q": "a\\"b"}')]),
 *             ChatMessage(role="tool", content="42", tool_call_id="call_9"),
 *             ChatMessage(role="user", content="Line1\nTab\t\"q\" \u00e9 \x01")],
 *   tools_json=['{"type":"function","function":{"name":"get"}}'],
 *   template_kwargs_json='{"enable_thinking": false}'),
 *   sampling=SamplingParams(temperature=0, top_k=20, seed=7, n=2, logprobs=3,
 *                           logit_bias=[LogitBias(token=5, bias=-100)]),
 *   stop=StopParams(max_tokens=16, min_tokens=2, stop=["END"], stop_token_ids=[151645]),
 *   output=OutputOptions(skip_text=True)) */
#define FIX_CHAT_REQUEST_LEN 257
static const unsigned char fix_chat_request[] =
    "\x0a\x03\x61\x62\x63\x22\xc2\x01\x0a\x13\x0a\x06\x73\x79\x73\x74\x65\x6d\x12\x09\x42\x65\x20\x62"
    "\x72\x69\x65\x66\x2e\x0a\x30\x0a\x09\x61\x73\x73\x69\x73\x74\x61\x6e\x74\x1a\x05\x74\x68\x69\x6e"
    "\x6b\x22\x1c\x0a\x06\x63\x61\x6c\x6c\x5f\x39\x12\x03\x67\x65\x74\x1a\x0d\x7b\x22\x71\x22\x3a\x20"
    "\x22\x61\x5c\x22\x62\x22\x7d\x0a\x12\x0a\x04\x74\x6f\x6f\x6c\x12\x02\x34\x32\x2a\x06\x63\x61\x6c"
    "\x6c\x5f\x39\x0a\x1a\x0a\x04\x75\x73\x65\x72\x12\x12\x4c\x69\x6e\x65\x31\x0a\x54\x61\x62\x09\x22"
    "\x71\x22\x20\xc3\xa9\x20\x01\x1a\x2d\x7b\x22\x74\x79\x70\x65\x22\x3a\x22\x66\x75\x6e\x63\x74\x69"
    "\x6f\x6e\x22\x2c\x22\x66\x75\x6e\x63\x74\x69\x6f\x6e\x22\x3a\x7b\x22\x6e\x61\x6d\x65\x22\x3a\x22"
    "\x67\x65\x74\x22\x7d\x7d\x22\x1a\x7b\x22\x65\x6e\x61\x62\x6c\x65\x5f\x74\x68\x69\x6e\x6b\x69\x6e"
    "\x67\x22\x3a\x20\x66\x61\x6c\x73\x65\x7d\x2a\x16\x0d\x00\x00\x00\x00\x18\x14\x40\x07\x48\x02\x52"
    "\x07\x08\x05\x15\x00\x00\xc8\xc2\x58\x03\x32\x0e\x08\x10\x10\x02\x22\x03\x45\x4e\x44\x2a\x03\xdd"
    "\xa0\x09\x3a\x02\x18\x01\x40\xfd\xff\xff\xff\xff\xff\xff\xff\xff\x01";

/* GenerateRequest(prompt="Hello") */
#define FIX_PROMPT_REQUEST_LEN 7
static const unsigned char fix_prompt_request[] =
    "\x12\x05\x48\x65\x6c\x6c\x6f";

/* GenerateRequest(token_ids=TokenIds(ids=[1, 2, 151643])) */
#define FIX_TOKENS_REQUEST_LEN 9
static const unsigned char fix_tokens_request[] =
    "\x1a\x07\x0a\x05\x01\x02\xdb\xa0\x09";

#endif /* GSVC_WIRE_FIXTURES_H */
