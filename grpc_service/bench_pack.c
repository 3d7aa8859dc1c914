/* grpc_service/bench_pack.c - protobuf-c vs nanopb on the service's two hot messages.
 *
 * The decision it informs (docs/decisions.md): which library encodes the per-token GenerateResponse
 * (server -> client, once per token per stream) and which decodes the GenerateRequest (client ->
 * server, once per call). Measured:
 *   1. pack a typical Delta GenerateResponse (request_id, 1 token id, text + content of one token):
 *      protobuf-c get_packed_size + pack, the way wire.c does it; nanopb pb_get_encoded_size +
 *      pb_encode with string / packed-int callbacks (the only way to send unbounded strings without
 *      PB_ENABLE_MALLOC, which Debian's runtime lacks);
 *   2. pack a Final GenerateResponse (usage + timings);
 *   3. unpack a chat request: protobuf-c unpack + free of a GenerateRequest whose ChatInput holds
 *      2 KiB of messages_json, two tools and template kwargs, plus sampling and stop params; the same
 *      with the service's wire check (UTF-8 / NUL scan) first; nanopb decode of the ChatInput part
 *      with callbacks that copy each string to the heap (what protobuf-c gives: owned C strings)
 *      and with zero-copy callbacks that only record (pointer, length);
 *   4. for scale: what gRPC itself costs per message on our side (grpc_slice_malloc + raw byte
 *      buffer create + destroy), before any HTTP/2 framing or syscalls.
 * Output: ns per operation (best of 5 runs) and the encoded sizes, which must agree between the
 * two libraries (same wire format; the program checks the bytes are identical).
 */
#include "qnext/v1/generator.pb-c.h"
#include "qnext/v1/generator.pb.h"
#include "wire.h" /* defines: gsvc_unpack, gsvc_msg_free */

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>
#include <pb_decode.h>
#include <pb_encode.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static volatile size_t sink;

#define BENCH(label, iters, ...)                                                                                     \
    do {                                                                                                             \
        double best = 1e300;                                                                                         \
        for (int run_ = 0; run_ < 5; run_++) {                                                                       \
            double t0_ = now_ns();                                                                                   \
            for (long it_ = 0; it_ < (iters); it_++) { __VA_ARGS__; }                                                     \
            double t_ = (now_ns() - t0_) / (double)(iters);                                                          \
            if (t_ < best) best = t_;                                                                                \
        }                                                                                                            \
        printf("  %-58s %8.1f ns\n", label, best);                                                                   \
    } while (0)

/* ==== the messages ============================================================================ */

static const char *REQUEST_ID = "chatcmpl-7f3a9c2e4b1d4e8f9a0b1c2d3e4f5a6b";
static int32_t TOKEN[1] = {21340};
static const char *TOKEN_TEXT = " hello";

static size_t pc_pack_delta(uint8_t *out)
{
    Qnext__V1__GenerateResponse r = QNEXT__V1__GENERATE_RESPONSE__INIT;
    Qnext__V1__Delta d = QNEXT__V1__DELTA__INIT;
    d.n_token_ids = 1;
    d.token_ids = TOKEN;
    d.text = (char *)TOKEN_TEXT;
    d.content = (char *)TOKEN_TEXT;
    r.request_id = (char *)REQUEST_ID;
    r.kind_case = QNEXT__V1__GENERATE_RESPONSE__KIND_DELTA;
    r.delta = &d;
    size_t n = qnext__v1__generate_response__get_packed_size(&r);
    return qnext__v1__generate_response__pack(&r, out) == n ? n : 0;
}

static size_t pc_pack_final(uint8_t *out)
{
    Qnext__V1__GenerateResponse r = QNEXT__V1__GENERATE_RESPONSE__INIT;
    Qnext__V1__Final f = QNEXT__V1__FINAL__INIT;
    Qnext__V1__Usage u = QNEXT__V1__USAGE__INIT;
    Qnext__V1__Timings t = QNEXT__V1__TIMINGS__INIT;
    u.prompt_tokens = 812;
    u.completion_tokens = 256;
    t.queue_seconds = 0.0012;
    t.ttft_seconds = 0.084;
    t.total_seconds = 3.21;
    t.mean_itl_seconds = 0.0122;
    f.finish_reason = QNEXT__V1__FINISH_REASON__FINISH_REASON_STOP;
    f.usage = &u;
    f.timings = &t;
    r.request_id = (char *)REQUEST_ID;
    r.kind_case = QNEXT__V1__GENERATE_RESPONSE__KIND_FINAL;
    r.final = &f;
    size_t n = qnext__v1__generate_response__get_packed_size(&r);
    return qnext__v1__generate_response__pack(&r, out) == n ? n : 0;
}

/* nanopb encode callbacks */
static bool enc_str(pb_ostream_t *s, const pb_field_t *f, void *const *arg)
{
    const char *str = *arg;
    return pb_encode_tag_for_field(s, f) && pb_encode_string(s, (const pb_byte_t *)str, strlen(str));
}

static bool enc_one_token(pb_ostream_t *s, const pb_field_t *f, void *const *arg)
{
    const int32_t *v = *arg;
    pb_ostream_t sz = PB_OSTREAM_SIZING;
    pb_encode_varint(&sz, (uint64_t)(int64_t)v[0]);
    return pb_encode_tag(s, PB_WT_STRING, f->tag) && pb_encode_varint(s, sz.bytes_written) &&
           pb_encode_varint(s, (uint64_t)(int64_t)v[0]);
}

static size_t nb_pack_delta(uint8_t *out, size_t cap)
{
    qnext_v1_GenerateResponse r = qnext_v1_GenerateResponse_init_zero;
    r.request_id.funcs.encode = enc_str;
    r.request_id.arg = (void *)REQUEST_ID;
    r.which_kind = qnext_v1_GenerateResponse_delta_tag;
    r.kind.delta.token_ids.funcs.encode = enc_one_token;
    r.kind.delta.token_ids.arg = TOKEN;
    r.kind.delta.text.funcs.encode = enc_str;
    r.kind.delta.text.arg = (void *)TOKEN_TEXT;
    r.kind.delta.content.funcs.encode = enc_str;
    r.kind.delta.content.arg = (void *)TOKEN_TEXT;
    size_t n;
    if (!pb_get_encoded_size(&n, qnext_v1_GenerateResponse_fields, &r) || n > cap) return 0;
    pb_ostream_t os = pb_ostream_from_buffer(out, cap);
    return pb_encode(&os, qnext_v1_GenerateResponse_fields, &r) ? os.bytes_written : 0;
}

static size_t nb_pack_final(uint8_t *out, size_t cap)
{
    qnext_v1_GenerateResponse r = qnext_v1_GenerateResponse_init_zero;
    r.request_id.funcs.encode = enc_str;
    r.request_id.arg = (void *)REQUEST_ID;
    r.which_kind = qnext_v1_GenerateResponse_final_tag;
    qnext_v1_Final *f = &r.kind.final;
    f->finish_reason = qnext_v1_FinishReason_FINISH_REASON_STOP;
    f->has_usage = true;
    f->usage.prompt_tokens = 812;
    f->usage.completion_tokens = 256;
    f->has_timings = true;
    f->timings.queue_seconds = 0.0012;
    f->timings.ttft_seconds = 0.084;
    f->timings.total_seconds = 3.21;
    f->timings.mean_itl_seconds = 0.0122;
    size_t n;
    if (!pb_get_encoded_size(&n, qnext_v1_GenerateResponse_fields, &r) || n > cap) return 0;
    pb_ostream_t os = pb_ostream_from_buffer(out, cap);
    return pb_encode(&os, qnext_v1_GenerateResponse_fields, &r) ? os.bytes_written : 0;
}

/* A chat GenerateRequest as the gateway sends it. */
static size_t make_chat_request(uint8_t **out, size_t *chat_off, size_t *chat_len)
{
    static char messages[4096];
    const char *sys = "You are a helpful assistant. Answer concisely and cite the tool results you use. ";
    const char *user = "What is the weather like in Paris today, and should I take an umbrella to the museum? ";
    size_t k = (size_t)snprintf(messages, sizeof messages, "[{\"role\":\"system\",\"content\":\"");
    for (int i = 0; i < 6; i++) k += (size_t)snprintf(messages + k, sizeof messages - k, "%s", sys);
    k += (size_t)snprintf(messages + k, sizeof messages - k, "\"},{\"role\":\"user\",\"content\":\"");
    for (int i = 0; i < 12; i++) k += (size_t)snprintf(messages + k, sizeof messages - k, "%s", user);
    snprintf(messages + k, sizeof messages - k, "\"}]");
    static char *tools[2] = {
        "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Current weather for a "
        "city\",\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}}",
        "{\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"description\":\"Local time in a "
        "city\",\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}}",
    };
    static char *stops[2] = {"\nObservation:", "<|im_end|>"};
    Qnext__V1__GenerateRequest r = QNEXT__V1__GENERATE_REQUEST__INIT;
    Qnext__V1__ChatInput c = QNEXT__V1__CHAT_INPUT__INIT;
    Qnext__V1__SamplingParams sp = QNEXT__V1__SAMPLING_PARAMS__INIT;
    Qnext__V1__StopParams st = QNEXT__V1__STOP_PARAMS__INIT;
    c.messages_json = messages;
    c.n_tools_json = 2;
    c.tools_json = tools;
    c.template_kwargs_json = "{\"enable_thinking\": false}";
    sp.temperature_opt_case = QNEXT__V1__SAMPLING_PARAMS__TEMPERATURE_OPT_TEMPERATURE;
    sp.temperature = 0.7f;
    sp.top_p_opt_case = QNEXT__V1__SAMPLING_PARAMS__TOP_P_OPT_TOP_P;
    sp.top_p = 0.8f;
    sp.seed_opt_case = QNEXT__V1__SAMPLING_PARAMS__SEED_OPT_SEED;
    sp.seed = 42;
    st.max_tokens_opt_case = QNEXT__V1__STOP_PARAMS__MAX_TOKENS_OPT_MAX_TOKENS;
    st.max_tokens = 512;
    st.n_stop = 2;
    st.stop = stops;
    r.request_id = (char *)REQUEST_ID;
    r.input_case = QNEXT__V1__GENERATE_REQUEST__INPUT_CHAT;
    r.chat = &c;
    r.sampling = &sp;
    r.stop = &st;
    size_t n = qnext__v1__generate_request__get_packed_size(&r);
    *out = malloc(n);
    qnext__v1__generate_request__pack(&r, *out);
    /* locate the ChatInput (field 4, length-delimited) for the nanopb part */
    size_t i = 0;
    while (i < n) {
        uint8_t key = (*out)[i++];
        uint64_t len = 0;
        int shift = 0;
        uint8_t b;
        do {
            b = (*out)[i++];
            len |= (uint64_t)(b & 0x7F) << shift;
            shift += 7;
        } while (b & 0x80);
        if (key == ((4 << 3) | 2)) {
            *chat_off = i;
            *chat_len = (size_t)len;
            break;
        }
        i += (size_t)len;
    }
    return n;
}

/* nanopb decode callbacks: copy to a heap C string (as protobuf-c does) or record a span */
typedef struct span {
    const pb_byte_t *p;
    size_t n;
} span;

typedef struct copies {
    char *s[8];
    int n;
} copies;

static bool dec_copy(pb_istream_t *s, const pb_field_t *f, void **arg)
{
    copies *c = *arg;
    size_t n = s->bytes_left;
    char *d = malloc(n + 1);
    if (!d || c->n == 8 || !pb_read(s, (pb_byte_t *)d, n)) {
        free(d);
        return false;
    }
    d[n] = '\0';
    c->s[c->n++] = d;
    return true;
}

static bool dec_span(pb_istream_t *s, const pb_field_t *f, void **arg)
{
    span *sp = *arg;
    /* buffer streams expose their position as state */
    sp->p = (const pb_byte_t *)s->state;
    sp->n = s->bytes_left;
    return pb_read(s, NULL, s->bytes_left);
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 1000000;
    grpc_init();
    uint8_t a[512], b[512];
    printf("pack/unpack cost, best of 5 runs of %ld iterations\n\n", iters);

    size_t na = pc_pack_delta(a), nb = nb_pack_delta(b, sizeof b);
    printf("Delta GenerateResponse: %zu bytes (protobuf-c) / %zu bytes (nanopb), %s\n", na, nb,
           na == nb && !memcmp(a, b, na) ? "identical" : "DIFFERENT");
    BENCH("Delta  protobuf-c  get_packed_size + pack", iters, sink += pc_pack_delta(a));
    BENCH("Delta  nanopb      pb_get_encoded_size + pb_encode", iters, sink += nb_pack_delta(b, sizeof b));

    na = pc_pack_final(a);
    nb = nb_pack_final(b, sizeof b);
    printf("\nFinal GenerateResponse: %zu bytes (protobuf-c) / %zu bytes (nanopb), %s\n", na, nb,
           na == nb && !memcmp(a, b, na) ? "identical" : "DIFFERENT");
    BENCH("Final  protobuf-c  get_packed_size + pack", iters, sink += pc_pack_final(a));
    BENCH("Final  nanopb      pb_get_encoded_size + pb_encode", iters, sink += nb_pack_final(b, sizeof b));

    uint8_t *req;
    size_t chat_off = 0, chat_len = 0;
    size_t nreq = make_chat_request(&req, &chat_off, &chat_len);
    long it2 = iters / 10 > 0 ? iters / 10 : 1;
    printf("\nchat GenerateRequest: %zu bytes (ChatInput part: %zu bytes)\n", nreq, chat_len);
    BENCH("Request  protobuf-c unpack + free (whole request)", it2, {
        Qnext__V1__GenerateRequest *m = qnext__v1__generate_request__unpack(NULL, nreq, req);
        sink += m->chat->n_tools_json;
        qnext__v1__generate_request__free_unpacked(m, NULL);
    });
    BENCH("Request  gsvc_unpack: wire check + unpack + free", it2, {
        ProtobufCMessage *m;
        sink += gsvc_unpack(&qnext__v1__generate_request__descriptor, req, nreq, &m);
        gsvc_msg_free(m);
    });
    BENCH("Request  gsvc_wire_check alone", it2, sink += gsvc_wire_check(&qnext__v1__generate_request__descriptor, req, nreq));
    BENCH("ChatInput  protobuf-c unpack + free", it2, {
        Qnext__V1__ChatInput *m = qnext__v1__chat_input__unpack(NULL, chat_len, req + chat_off);
        sink += m->n_tools_json;
        qnext__v1__chat_input__free_unpacked(m, NULL);
    });
    BENCH("ChatInput  nanopb decode, heap copies of strings", it2, {
        copies cp = {{0}, 0};
        qnext_v1_ChatInput m = qnext_v1_ChatInput_init_zero;
        m.messages_json.funcs.decode = dec_copy;
        m.messages_json.arg = &cp;
        m.tools_json.funcs.decode = dec_copy;
        m.tools_json.arg = &cp;
        m.template_kwargs_json.funcs.decode = dec_copy;
        m.template_kwargs_json.arg = &cp;
        pb_istream_t is = pb_istream_from_buffer(req + chat_off, chat_len);
        sink += pb_decode(&is, qnext_v1_ChatInput_fields, &m);
        for (int i = 0; i < cp.n; i++) free(cp.s[i]);
    });
    BENCH("ChatInput  nanopb decode, zero-copy spans", it2, {
        span sm = {0}, st = {0}, sk = {0};
        qnext_v1_ChatInput m = qnext_v1_ChatInput_init_zero;
        m.messages_json.funcs.decode = dec_span;
        m.messages_json.arg = &sm;
        m.tools_json.funcs.decode = dec_span;
        m.tools_json.arg = &st;
        m.template_kwargs_json.funcs.decode = dec_span;
        m.template_kwargs_json.arg = &sk;
        pb_istream_t is = pb_istream_from_buffer(req + chat_off, chat_len);
        sink += pb_decode(&is, qnext_v1_ChatInput_fields, &m) + sm.n;
    });

    printf("\nfor scale: gRPC's own per-message buffer handling on our side\n");
    BENCH("gRPC slice + byte buffer create/destroy", iters, {
        grpc_slice s = grpc_slice_malloc(na);
        memcpy(GRPC_SLICE_START_PTR(s), a, na);
        grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        grpc_byte_buffer_destroy(bb);
    });
    free(req);
    grpc_shutdown();
    return (int)(sink & 0);
}
