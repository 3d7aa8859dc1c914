/* grpc_service/wire.c - strict unpacking and slice packing of protobuf-c messages (see wire.h). */
#include "wire.h"

#include "util.h" /* defines: gsvc_malloc, gsvc_utf8_valid */

#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

#include <string.h>

static void *pb_alloc(void *ctx, size_t n)
{
    (void)ctx;
    return gsvc_malloc(n);
}

static void pb_free(void *ctx, void *p)
{
    (void)ctx;
    gsvc_free(p);
}

ProtobufCAllocator gsvc_pb_allocator = {pb_alloc, pb_free, NULL};

/* ==== wire check ============================================================================== */

static bool read_varint(const uint8_t *p, size_t len, size_t *i, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*i >= len) return false;
        uint8_t b = p[(*i)++];
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false; /* more than 10 bytes */
}

static eng_status check_msg(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len, int depth)
{
    if (depth > GSVC_WIRE_MAX_DEPTH)
        return eng_err_set(ENG_ERR_INVALID, "malformed %s: nested deeper than %d", d->short_name, GSVC_WIRE_MAX_DEPTH);
    size_t i = 0;
    while (i < len) {
        uint64_t key, v;
        if (!read_varint(p, len, &i, &key)) return eng_err_set(ENG_ERR_INVALID, "malformed %s: truncated tag", d->short_name);
        uint64_t num = key >> 3;
        unsigned wt = (unsigned)(key & 7);
        if (num == 0 || num > 0x1FFFFFFF)
            return eng_err_set(ENG_ERR_INVALID, "malformed %s: invalid field number", d->short_name);
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(d, (unsigned)num);
        switch (wt) {
        case 0:
            if (!read_varint(p, len, &i, &v)) return eng_err_set(ENG_ERR_INVALID, "malformed %s: truncated varint", d->short_name);
            break;
        case 1:
        case 5: {
            size_t w = wt == 1 ? 8 : 4;
            if (len - i < w) return eng_err_set(ENG_ERR_INVALID, "malformed %s: truncated fixed field", d->short_name);
            i += w;
            break;
        }
        case 2: {
            if (!read_varint(p, len, &i, &v) || v > len - i)
                return eng_err_set(ENG_ERR_INVALID, "malformed %s: truncated length-delimited field", d->short_name);
            const uint8_t *q = p + i;
            size_t n = (size_t)v;
            i += n;
            if (!f) break;
            if (f->type == PROTOBUF_C_TYPE_STRING) {
                if (memchr(q, 0, n))
                    return eng_err_set(ENG_ERR_INVALID, "%s.%s: string contains a NUL character", d->short_name, f->name);
                if (!gsvc_utf8_valid((const char *)q, n))
                    return eng_err_set(ENG_ERR_INVALID, "%s.%s: string is not valid UTF-8", d->short_name, f->name);
            } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
                eng_status st = check_msg(f->descriptor, q, n, depth + 1);
                if (st != ENG_OK) return st;
            }
            break;
        }
        default:
            return eng_err_set(ENG_ERR_INVALID, "malformed %s: unsupported wire type %u", d->short_name, wt);
        }
    }
    return ENG_OK;
}

eng_status gsvc_wire_check(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len)
{
    if (len && !data) return eng_err_set(ENG_ERR_INVALID, "no data");
    return check_msg(desc, data, len, 0);
}

/* ==== unpack / pack =========================================================================== */

eng_status gsvc_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len, ProtobufCMessage **out)
{
    *out = NULL;
    eng_status st = gsvc_wire_check(desc, data, len);
    if (st != ENG_OK) return st;
    static const uint8_t empty[1];
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, &gsvc_pb_allocator, len, len ? data : empty);
    if (!m) {
        /* The wire check accepted the framing, so the rest is either a field of the wrong wire type
         * or an allocation failure; protobuf-c does not tell which. */
        return eng_err_set(ENG_ERR_INVALID, "malformed %s message (or out of memory)", desc->short_name);
    }
    *out = m;
    return ENG_OK;
}

eng_status gsvc_unpack_bb(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb, ProtobufCMessage **out)
{
    *out = NULL;
    if (!bb) return eng_err_set(ENG_ERR_INVALID, "no %s message in the request", desc->short_name);
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return eng_err_set(ENG_ERR_INVALID, "cannot read the %s message (bad compression?)", desc->short_name);
    grpc_slice s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    eng_status st = gsvc_unpack(desc, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), out);
    grpc_slice_unref(s);
    return st;
}

void gsvc_msg_free(ProtobufCMessage *m)
{
    if (m) protobuf_c_message_free_unpacked(m, &gsvc_pb_allocator);
}

grpc_byte_buffer *gsvc_pack_bb(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    grpc_slice s = grpc_slice_malloc(n);
    size_t w = protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = NULL;
    if (w == n) bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}
