/* frame.h — Tuma's wire framing (DESIGN §5, proto/README.md) and the envelope codecs.
 *
 * A frame is a 4-byte big-endian body length, then the body: one protobuf message, a
 * tuma.v1.Envelope on the operator listener or a tuma.v1.AdminEnvelope on the admin listener.
 * A length of zero is invalid (an envelope always has a body); a length above the receiver's
 * maximum is refused before the body arrives.
 *
 * The framing functions allocate nothing and keep no state: the caller owns the bytes and
 * calls proto_frame_parse() again on what is left after each whole frame. The encoders write
 * into buffers the caller owns. The decoders allocate through protobuf-c's default allocator;
 * the caller frees the result with tuma__v1__envelope__free_unpacked(env, NULL) (or the admin
 * twin). Every function is thread-safe (no state at all).
 */
#ifndef TUMA_PROTO_FRAME_H
#define TUMA_PROTO_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "tuma/v1/admin.pb-c.h"
#include "tuma/v1/operator.pb-c.h"

/* The header: the body length, 4 bytes, big endian. */
enum { PROTO_FRAME_HEADER_BYTES = 4 };

/* Return codes of the functions below (0 = ok). */
typedef enum proto_frame_status {
  PROTO_FRAME_OK = 0,
  PROTO_FRAME_AGAIN = 1,     /* would block: not a whole frame yet, read more bytes */
  PROTO_FRAME_TOO_LARGE = 2, /* the length exceeds the maximum (or the output buffer) */
  PROTO_FRAME_EMPTY = 3,     /* a length of zero: invalid, an envelope always has a body */
  PROTO_FRAME_INVAL = 4,     /* bad argument: NULL, or an envelope without a body to encode */
} proto_frame_status;

/* A static message for a proto_frame_status; never NULL (unknown codes get a generic text). */
const char *proto_frame_strerror(int status);

/* Looks for one whole frame at the start of buf[0..len). O(1): reads the header only.
 *
 *   PROTO_FRAME_OK         a whole frame is there: its body is buf[*body_off .. *body_off +
 *                          *body_len), and the frame took *consumed bytes; parse again from
 *                          buf + *consumed for the next one.
 *   PROTO_FRAME_AGAIN      not yet: read more bytes and call again with all of them. Once the
 *                          header is in, *body_len is the announced length (so the caller can
 *                          size a read), else 0.
 *   PROTO_FRAME_TOO_LARGE  the announced length (in *body_len) exceeds max_body. Decided from
 *                          the header alone; the connection must get an error frame (3104)
 *                          and be closed, since the stream cannot be resynchronised.
 *   PROTO_FRAME_EMPTY      the announced length is 0: a malformed frame (3101), close.
 *
 * Every out-parameter is always written (0 where nothing applies); *consumed is 0 unless OK.
 * buf may be NULL when len is 0; the out-parameters must not be NULL. The body stays the
 * caller's: it is a view into buf, valid as long as buf is. */
int proto_frame_parse(const uint8_t *buf, size_t len, size_t max_body, size_t *body_off,
                      size_t *body_len, size_t *consumed);

/* Writes the header of a frame whose body is body_len bytes. */
void proto_frame_put_header(uint8_t out[PROTO_FRAME_HEADER_BYTES], uint32_t body_len);

/* The number of bytes proto_envelope_encode() writes for env (header + body), or 0 when env
 * is NULL. O(size of env): protobuf-c walks the message. */
size_t proto_envelope_frame_size(const Tuma__V1__Envelope *env);
size_t proto_admin_envelope_frame_size(const Tuma__V1__AdminEnvelope *env);

/* Encodes env as one whole frame (header + body) into out[0..cap), and sets *len to the bytes
 * written. The maximum frame size is the caller's cap: pass at most max_body + 4. out may be
 * NULL when cap is 0 (then the call only reports the size, as PROTO_FRAME_TOO_LARGE).
 *   PROTO_FRAME_TOO_LARGE  the frame does not fit in cap (nothing is written; *len is the
 *                          size it needs), or its body exceeds 2^32 - 1 bytes.
 *   PROTO_FRAME_INVAL      env is NULL, has no body (oneof case NOT_SET or a NULL body
 *                          pointer), or fails protobuf_c_message_check(); or len is NULL, or out
 *                          is NULL with a non-zero cap.
 * O(size of env). env is borrowed for the call; out stays the caller's. */
int proto_envelope_encode(const Tuma__V1__Envelope *env, uint8_t *out, size_t cap, size_t *len);
int proto_admin_envelope_encode(const Tuma__V1__AdminEnvelope *env, uint8_t *out, size_t cap,
                                size_t *len);

/* Decodes one frame body (what proto_frame_parse() pointed at) into a new envelope, or returns
 * NULL for anything that does not decode, that has no body (oneof case NOT_SET), that uses a
 * field number of 0 or above 2^29 - 1 (protobuf-c would accept it), or when allocation fails.
 * Unknown fields (a newer peer's additions) are accepted and dropped, at every depth: what the
 * switch re-encodes from a decoded message carries only the fields it knows. O(len). The caller
 * owns the result: free it with tuma__v1__envelope__free_unpacked(env, NULL) /
 * tuma__v1__admin_envelope__free_unpacked(). The result does not point into body (protobuf-c
 * copies), so body may go right after. A decoded envelope is only well-formed protobuf: the
 * receiver still validates every field (proto_id16_valid, proto_currency_valid, missing
 * sub-messages are NULL pointers, …). */
Tuma__V1__Envelope *proto_envelope_decode(const uint8_t *body, size_t len);
Tuma__V1__AdminEnvelope *proto_admin_envelope_decode(const uint8_t *body, size_t len);

/* Validation helpers for decoded fields. These return 1 (valid) or 0 (invalid), not a status.
 *
 * proto_id16_valid: a transfer or adjustment id: exactly 16 bytes, not all zero. */
int proto_id16_valid(ProtobufCBinaryData b);

/* proto_currency_valid: an ISO 4217 alphabetic code: exactly three ASCII letters A-Z, nothing
 * else. NULL is invalid. Whether the scheme knows the currency is the caller's business. */
int proto_currency_valid(const char *s);

#endif
