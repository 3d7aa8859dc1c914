/* tests/unit/grpc_service/fuzz_gsvc_request.c - libFuzzer target for the service's parsers of
 * outside bytes: gsvc_unpack (wire check + protobuf-c) of every request type the server accepts,
 * then the request mapping and validation (gsvc_gen_req_init, gsvc_chat_to_json) on what unpacked.
 * The first input byte picks the message type. Built by grpc_service/CMakeLists.txt in QN_FUZZ
 * builds that include the service; seeds in tests/unit/grpc_service/fuzz_corpus/. */
#include "convert.h"
#include "util.h"
#include "wire.h"

#include "grpc/health/v1/health.pb-c.h"
#include "qnext/v1/generator.pb-c.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const ProtobufCMessageDescriptor *descs[] = {
        &qnext__v1__generate_request__descriptor, &qnext__v1__tokenize_request__descriptor,
        &qnext__v1__detokenize_request__descriptor, &qnext__v1__abort_request__descriptor,
        &grpc__health__v1__health_check_request__descriptor,
    };
    if (size < 1) return 0;
    const ProtobufCMessageDescriptor *d = descs[data[0] % (sizeof descs / sizeof descs[0])];
    ProtobufCMessage *m;
    if (gsvc_unpack(d, data + 1, size - 1, &m) != ENG_OK) {
        if (m) abort(); /* a failed unpack must not hand out a message */
        return 0;
    }
    if (d == &qnext__v1__generate_request__descriptor) {
        gsvc_gen_req g;
        if (gsvc_gen_req_init(&g, (const Qnext__V1__GenerateRequest *)m) == ENG_OK) {
            if (g.n_choices < 1 || g.n_choices > GSVC_MAX_CHOICES) abort();
            gsvc_stream st;
            if (gsvc_stream_init(&st, g.n_choices, 1 << 16, g.skip_text) == ENG_OK) gsvc_stream_free(&st);
        }
        gsvc_gen_req_free(&g);
    } else if (d == &qnext__v1__tokenize_request__descriptor) {
        const Qnext__V1__TokenizeRequest *t = (const Qnext__V1__TokenizeRequest *)m;
        if (t->input_case == QNEXT__V1__TOKENIZE_REQUEST__INPUT_CHAT) {
            char *mj = NULL, *tj = NULL;
            gsvc_chat_to_json(t->chat, "chat", &mj, &tj);
            if (mj && !gsvc_utf8_valid(mj, strlen(mj))) abort(); /* rendered JSON stays UTF-8 */
            gsvc_free(mj);
            gsvc_free(tj);
        }
    }
    gsvc_msg_free(m);
    return 0;
}
