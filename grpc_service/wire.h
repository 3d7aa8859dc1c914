/* grpc_service/wire.h - protobuf-c messages <-> bytes <-> gRPC byte buffers.
 *
 * Unpacking outside bytes is strict: before protobuf-c sees them, gsvc_wire_check walks the wire
 * format against the message descriptor and rejects strings that are not UTF-8 or that contain
 * NUL (protobuf-c would silently cut a C string at an embedded NUL), unknown wire types and nesting
 * deeper than GSVC_WIRE_MAX_DEPTH. Then protobuf-c unpacks with gsvc_pb_allocator, so allocation
 * failures surface as a clean error (a NULL message) and the fault injector covers them.
 * Packing writes straight into a grpc_slice (one allocation, no copy) (sysrepo-gnmi gnmi_pack).
 */
#ifndef GSVC_WIRE_H
#define GSVC_WIRE_H

#include "qnext/status.h" /* defines: eng_status */

#include <grpc/byte_buffer.h>
#include <protobuf-c/protobuf-c.h>

#include <stddef.h>
#include <stdint.h>

#define GSVC_WIRE_MAX_DEPTH 16

/* protobuf-c allocator backed by gsvc_malloc/gsvc_free. */
extern ProtobufCAllocator gsvc_pb_allocator;

/* Checks data[0..len) as an encoding of `desc` (see the file comment). ENG_OK, or ENG_ERR_INVALID
 * with a detail naming the field ("ChatMessage.content: string is not valid UTF-8"). Pure. */
eng_status gsvc_wire_check(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len);

/* Checks, then unpacks data[0..len) into a new message (free with gsvc_msg_free). ENG_ERR_INVALID
 * ("malformed ...") on bad bytes, ENG_ERR_NOMEM on allocation failure. *out is NULL on failure. */
eng_status gsvc_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                       ProtobufCMessage **out);

/* The same from a received gRPC byte buffer (not consumed; NULL is an error: "no request message"). */
eng_status gsvc_unpack_bb(const ProtobufCMessageDescriptor *desc, grpc_byte_buffer *bb, ProtobufCMessage **out);

/* Frees a message from gsvc_unpack*. NULL-safe. */
void gsvc_msg_free(ProtobufCMessage *m);

/* Packs m into a new byte buffer (caller owns it: grpc_byte_buffer_destroy). NULL on OOM. */
grpc_byte_buffer *gsvc_pack_bb(const ProtobufCMessage *m);

#endif /* GSVC_WIRE_H */
