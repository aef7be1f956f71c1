/* frame.c — the wire framing (4-byte big-endian length, then one envelope) and the envelope
 * codecs over protobuf-c. See frame.h for the contracts and proto/README.md for the protocol.
 */
#include "frame.h"

#include <assert.h>
#include <stdlib.h>

const char *proto_frame_strerror(int status) {
  switch (status) {
  case PROTO_FRAME_OK:
    return "ok";
  case PROTO_FRAME_AGAIN:
    return "incomplete frame: more bytes needed";
  case PROTO_FRAME_TOO_LARGE:
    return "frame too large";
  case PROTO_FRAME_EMPTY:
    return "empty frame: a length of zero is invalid";
  case PROTO_FRAME_INVAL:
    return "invalid argument or envelope without a body";
  default:
    return "unknown proto_frame status";
  }
}

int proto_frame_parse(const uint8_t *buf, size_t len, size_t max_body, size_t *body_off,
                      size_t *body_len, size_t *consumed) {
  assert(body_off && body_len && consumed);
  assert(buf || len == 0);
  *body_off = 0;
  *body_len = 0;
  *consumed = 0;
  if (len < PROTO_FRAME_HEADER_BYTES)
    return PROTO_FRAME_AGAIN;
  uint32_t n =
      (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | (uint32_t)buf[3];
  *body_len = n;
  if (n == 0)
    return PROTO_FRAME_EMPTY;
  if (n > max_body)
    return PROTO_FRAME_TOO_LARGE;
  /* Written so that nothing can overflow, whatever size_t is. */
  if (len - PROTO_FRAME_HEADER_BYTES < n)
    return PROTO_FRAME_AGAIN;
  *body_off = PROTO_FRAME_HEADER_BYTES;
  *consumed = PROTO_FRAME_HEADER_BYTES + (size_t)n;
  return PROTO_FRAME_OK;
}

void proto_frame_put_header(uint8_t out[PROTO_FRAME_HEADER_BYTES], uint32_t body_len) {
  out[0] = (uint8_t)(body_len >> 24);
  out[1] = (uint8_t)(body_len >> 16);
  out[2] = (uint8_t)(body_len >> 8);
  out[3] = (uint8_t)body_len;
}

/* Whether the oneof member numbered body_case is set and points at a message. Both envelopes
 * hold only message members in their oneof, and protobuf-c packs nothing for a NULL one, so a
 * frame encoded from a NULL member would decode as "no body". */
static int frame_has_body(const ProtobufCMessage *m, unsigned body_case) {
  if (body_case == 0)
    return 0;
  const ProtobufCFieldDescriptor *f =
      protobuf_c_message_descriptor_get_field(m->descriptor, body_case);
  if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE)
    return 0;
  const void *member = *(const void *const *)(const void *)((const char *)m + f->offset);
  return member != NULL;
}

static size_t frame_size(const ProtobufCMessage *m) {
  return PROTO_FRAME_HEADER_BYTES + protobuf_c_message_get_packed_size(m);
}

static int frame_encode(const ProtobufCMessage *m, unsigned body_case, uint8_t *out, size_t cap,
                        size_t *len) {
  if (!len)
    return PROTO_FRAME_INVAL;
  *len = 0;
  if (!out && cap)
    return PROTO_FRAME_INVAL;
  if (!frame_has_body(m, body_case) || !protobuf_c_message_check(m))
    return PROTO_FRAME_INVAL;
  size_t body = protobuf_c_message_get_packed_size(m);
  if (body > UINT32_MAX)
    return PROTO_FRAME_TOO_LARGE;
  if (body > cap || cap - body < PROTO_FRAME_HEADER_BYTES) {
    *len = PROTO_FRAME_HEADER_BYTES + body;
    return PROTO_FRAME_TOO_LARGE;
  }
  size_t packed = protobuf_c_message_pack(m, out + PROTO_FRAME_HEADER_BYTES);
  assert(packed == body);
  (void)packed;
  proto_frame_put_header(out, (uint32_t)body);
  *len = PROTO_FRAME_HEADER_BYTES + body;
  return PROTO_FRAME_OK;
}

size_t proto_envelope_frame_size(const Tuma__V1__Envelope *env) {
  return env ? frame_size(&env->base) : 0;
}

size_t proto_admin_envelope_frame_size(const Tuma__V1__AdminEnvelope *env) {
  return env ? frame_size(&env->base) : 0;
}

int proto_envelope_encode(const Tuma__V1__Envelope *env, uint8_t *out, size_t cap, size_t *len) {
  if (!env) {
    if (len)
      *len = 0;
    return PROTO_FRAME_INVAL;
  }
  return frame_encode(&env->base, (unsigned)env->body_case, out, cap, len);
}

int proto_admin_envelope_encode(const Tuma__V1__AdminEnvelope *env, uint8_t *out, size_t cap,
                                size_t *len) {
  if (!env) {
    if (len)
      *len = 0;
    return PROTO_FRAME_INVAL;
  }
  return frame_encode(&env->base, (unsigned)env->body_case, out, cap, len);
}

/* Drops the unknown fields of m and of every message inside it, so that nothing a peer sent
 * that the switch did not understand is ever relayed (a decoded Party reused in a forward, say),
 * and so that re-encoding a decoded message gives bytes that decode again. Returns -1 when one
 * of them has an invalid field number (0, or above 2^29 - 1): protobuf-c accepts those when the
 * tag is written as an overlong varint, and its own encoding of them would not decode.
 * Unknown fields come from the system allocator: decode unpacks with allocator NULL. */
static int frame_strip_unknown(ProtobufCMessage *m) {
  int rc = 0;
  for (unsigned i = 0; i < m->n_unknown_fields; i++) {
    uint32_t tag = m->unknown_fields[i].tag;
    if (tag == 0 || tag > 0x1fffffffu)
      rc = -1;
    free(m->unknown_fields[i].data);
  }
  free(m->unknown_fields);
  m->unknown_fields = NULL;
  m->n_unknown_fields = 0;

  const ProtobufCMessageDescriptor *d = m->descriptor;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (f->type != PROTOBUF_C_TYPE_MESSAGE)
      continue;
    void *member = (char *)m + f->offset;
    void *quantifier = (char *)m + f->quantifier_offset;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n = *(size_t *)quantifier;
      ProtobufCMessage **subs = *(ProtobufCMessage ***)member;
      for (size_t k = 0; k < n; k++)
        if (subs[k] && frame_strip_unknown(subs[k]) != 0)
          rc = -1;
      continue;
    }
    /* A oneof member's pointer is only its own when the case says so. */
    if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && *(uint32_t *)quantifier != f->id)
      continue;
    ProtobufCMessage *sub = *(ProtobufCMessage **)member;
    if (sub && frame_strip_unknown(sub) != 0)
      rc = -1;
  }
  return rc;
}

Tuma__V1__Envelope *proto_envelope_decode(const uint8_t *body, size_t len) {
  if (!body || len == 0)
    return NULL;
  Tuma__V1__Envelope *env = tuma__v1__envelope__unpack(NULL, len, body);
  if (!env)
    return NULL;
  if (env->body_case == TUMA__V1__ENVELOPE__BODY__NOT_SET || frame_strip_unknown(&env->base)) {
    tuma__v1__envelope__free_unpacked(env, NULL);
    return NULL;
  }
  return env;
}

Tuma__V1__AdminEnvelope *proto_admin_envelope_decode(const uint8_t *body, size_t len) {
  if (!body || len == 0)
    return NULL;
  Tuma__V1__AdminEnvelope *env = tuma__v1__admin_envelope__unpack(NULL, len, body);
  if (!env)
    return NULL;
  if (env->body_case == TUMA__V1__ADMIN_ENVELOPE__BODY__NOT_SET ||
      frame_strip_unknown(&env->base)) {
    tuma__v1__admin_envelope__free_unpacked(env, NULL);
    return NULL;
  }
  return env;
}

int proto_id16_valid(ProtobufCBinaryData b) {
  if (b.len != 16 || !b.data)
    return 0;
  for (size_t i = 0; i < 16; i++)
    if (b.data[i])
      return 1;
  return 0;
}

int proto_currency_valid(const char *s) {
  if (!s)
    return 0;
  for (int i = 0; i < 3; i++)
    if (s[i] < 'A' || s[i] > 'Z')
      return 0;
  return s[3] == '\0';
}
