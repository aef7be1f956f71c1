/* test_proto_frame.c — the wire framing and envelope codecs (proto/frame.h): whole frames,
 * frames split at every byte, frames back to back, the size limit, empty frames, the
 * encode → parse → decode round trip of every message of both envelopes (filled field by
 * field from the protobuf-c descriptors, so a message added to the .proto files is covered
 * without touching this file), garbage and truncated bodies, envelopes without a body, and
 * the field validators.
 */
#include "frame.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a bump allocator for the sample messages (one per test, on the stack of the test) ---- */

typedef struct pf_arena {
  _Alignas(16) uint8_t buf[1 << 16];
  size_t used;
} pf_arena;

static void *pf_alloc(pf_arena *a, size_t n) {
  n = (n + 15) & ~(size_t)15;
  cr_assert_leq(n, sizeof a->buf - a->used, "test arena exhausted");
  void *p = a->buf + a->used;
  a->used += n;
  memset(p, 0, n);
  return p;
}

/* ---- filling any message, field by field, with non-default values ---- */

static size_t pf_elem_size(ProtobufCType t) {
  switch (t) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
  case PROTOBUF_C_TYPE_ENUM:
    return 4;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64:
    return 8;
  case PROTOBUF_C_TYPE_FLOAT:
    return sizeof(float);
  case PROTOBUF_C_TYPE_DOUBLE:
    return sizeof(double);
  case PROTOBUF_C_TYPE_BOOL:
    return sizeof(protobuf_c_boolean);
  case PROTOBUF_C_TYPE_STRING:
    return sizeof(char *);
  case PROTOBUF_C_TYPE_BYTES:
    return sizeof(ProtobufCBinaryData);
  case PROTOBUF_C_TYPE_MESSAGE:
    return sizeof(ProtobufCMessage *);
  }
  cr_assert_fail("unknown protobuf-c type %d", (int)t);
  return 0;
}

static ProtobufCMessage *pf_new_message(pf_arena *a, const ProtobufCMessageDescriptor *d,
                                        unsigned seed, int depth);

/* Sets one value (a singular field, or one element of a repeated one) at `member`. */
static void pf_fill_value(pf_arena *a, const ProtobufCFieldDescriptor *f, void *member,
                          unsigned seed, int depth) {
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
    *(int32_t *)member = -1 - (int32_t)seed;
    break;
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
    *(uint32_t *)member = 0x80000000u + seed;
    break;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
    *(int64_t *)member = -1 - (int64_t)seed;
    break;
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64:
    *(uint64_t *)member = 0x8000000000000000ull + seed;
    break;
  case PROTOBUF_C_TYPE_FLOAT:
    *(float *)member = 1.5f + (float)seed;
    break;
  case PROTOBUF_C_TYPE_DOUBLE:
    *(double *)member = 2.5 + seed;
    break;
  case PROTOBUF_C_TYPE_BOOL:
    *(protobuf_c_boolean *)member = 1;
    break;
  case PROTOBUF_C_TYPE_ENUM: {
    const ProtobufCEnumDescriptor *e = f->descriptor;
    *(int *)member = e->values[e->n_values - 1].value;
    break;
  }
  case PROTOBUF_C_TYPE_STRING: {
    char *s = pf_alloc(a, 24);
    snprintf(s, 24, "%s-%u", f->name, seed);
    *(char **)member = s;
    break;
  }
  case PROTOBUF_C_TYPE_BYTES: {
    ProtobufCBinaryData *b = member;
    b->len = 16;
    b->data = pf_alloc(a, 16);
    for (size_t i = 0; i < 16; i++)
      b->data[i] = (uint8_t)(seed * 31 + i + 1);
    break;
  }
  case PROTOBUF_C_TYPE_MESSAGE:
    *(ProtobufCMessage **)member = pf_new_message(a, f->descriptor, seed + 1, depth + 1);
    break;
  }
}

/* A new message of descriptor d with every field set: repeated fields get two elements;
 * oneofs are left alone (the envelopes' bodies are chosen by the caller). */
static ProtobufCMessage *pf_new_message(pf_arena *a, const ProtobufCMessageDescriptor *d,
                                        unsigned seed, int depth) {
  cr_assert_lt(depth, 8, "message nesting too deep (recursive message?)");
  ProtobufCMessage *m = pf_alloc(a, d->sizeof_message);
  protobuf_c_message_init(d, m);
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
      continue;
    uint8_t *member = (uint8_t *)m + f->offset;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t es = pf_elem_size(f->type);
      uint8_t *arr = pf_alloc(a, 2 * es);
      for (unsigned k = 0; k < 2; k++)
        pf_fill_value(a, f, arr + k * es, seed + 10 * k, depth);
      *(size_t *)((uint8_t *)m + f->quantifier_offset) = 2;
      *(void **)member = arr;
    } else {
      if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset)
        *(protobuf_c_boolean *)((uint8_t *)m + f->quantifier_offset) = 1;
      pf_fill_value(a, f, member, seed, depth);
    }
  }
  return m;
}

/* An envelope (of descriptor d: Envelope or AdminEnvelope) whose body is a filled message of
 * the oneof field f. */
static ProtobufCMessage *pf_new_envelope(pf_arena *a, const ProtobufCMessageDescriptor *d,
                                         const ProtobufCFieldDescriptor *f, uint64_t corr) {
  ProtobufCMessage *env = pf_alloc(a, d->sizeof_message);
  protobuf_c_message_init(d, env);
  const ProtobufCFieldDescriptor *cf =
      protobuf_c_message_descriptor_get_field_by_name(d, "correlation_id");
  cr_assert_not_null(cf);
  *(uint64_t *)((uint8_t *)env + cf->offset) = corr;
  *(uint32_t *)((uint8_t *)env + f->quantifier_offset) = f->id;
  *(ProtobufCMessage **)((uint8_t *)env + f->offset) = pf_new_message(a, f->descriptor, f->id, 1);
  return env;
}

/* ---- framing ---- */

static size_t pf_frame(uint8_t *out, const void *body, uint32_t n) {
  proto_frame_put_header(out, n);
  memcpy(out + 4, body, n);
  return 4 + (size_t)n;
}

Test(proto_frame, header_is_big_endian) {
  uint8_t h[4];
  proto_frame_put_header(h, 0x01020304u);
  cr_assert(h[0] == 1 && h[1] == 2 && h[2] == 3 && h[3] == 4);
  proto_frame_put_header(h, 0xffffffffu);
  cr_assert(h[0] == 0xff && h[3] == 0xff);
}

Test(proto_frame, whole_frame) {
  uint8_t buf[64];
  size_t n = pf_frame(buf, "hello", 5);
  size_t off = 99, blen = 99, used = 99;
  cr_assert_eq(proto_frame_parse(buf, n, 1024, &off, &blen, &used), PROTO_FRAME_OK);
  cr_assert_eq(off, 4);
  cr_assert_eq(blen, 5);
  cr_assert_eq(used, 9);
  cr_assert_eq(memcmp(buf + off, "hello", 5), 0);
}

Test(proto_frame, split_at_every_byte) {
  uint8_t body[300];
  for (size_t i = 0; i < sizeof body; i++)
    body[i] = (uint8_t)(i * 7);
  uint8_t buf[4 + sizeof body];
  size_t n = pf_frame(buf, body, sizeof body);
  for (size_t k = 0; k < n; k++) {
    /* Copy the prefix so ASan would see any read past what "arrived". */
    uint8_t *part = malloc(k ? k : 1);
    cr_assert_not_null(part);
    memcpy(part, buf, k);
    size_t off = 99, blen = 99, used = 99;
    int rc = proto_frame_parse(k ? part : NULL, k, 1024, &off, &blen, &used);
    cr_assert_eq(rc, PROTO_FRAME_AGAIN, "prefix %zu: %s", k, proto_frame_strerror(rc));
    cr_assert_eq(used, 0);
    cr_assert_eq(off, 0);
    cr_assert_eq(blen, k < 4 ? 0 : sizeof body, "prefix %zu: announced length", k);
    free(part);
  }
  size_t off, blen, used;
  cr_assert_eq(proto_frame_parse(buf, n, 1024, &off, &blen, &used), PROTO_FRAME_OK);
  cr_assert_eq(blen, sizeof body);
  cr_assert_eq(used, n);
  cr_assert_eq(memcmp(buf + off, body, sizeof body), 0);
}

Test(proto_frame, frames_back_to_back) {
  uint8_t buf[64];
  size_t n = pf_frame(buf, "one", 3);
  n += pf_frame(buf + n, "second", 6);
  n += pf_frame(buf + n, "x", 1);
  n += 2; /* the start of a fourth frame's header */
  buf[n - 2] = 0;
  buf[n - 1] = 0;
  const char *want[] = {"one", "second", "x"};
  size_t pos = 0;
  for (int i = 0; i < 3; i++) {
    size_t off, blen, used;
    cr_assert_eq(proto_frame_parse(buf + pos, n - pos, 16, &off, &blen, &used), PROTO_FRAME_OK);
    cr_assert_eq(blen, strlen(want[i]));
    cr_assert_eq(memcmp(buf + pos + off, want[i], blen), 0);
    pos += used;
  }
  size_t off, blen, used;
  cr_assert_eq(proto_frame_parse(buf + pos, n - pos, 16, &off, &blen, &used), PROTO_FRAME_AGAIN);
  cr_assert_eq(pos + 2, n);
}

Test(proto_frame, too_large_from_header_alone) {
  uint8_t h[4];
  size_t off, blen, used;
  proto_frame_put_header(h, 1025);
  cr_assert_eq(proto_frame_parse(h, 4, 1024, &off, &blen, &used), PROTO_FRAME_TOO_LARGE);
  cr_assert_eq(blen, 1025);
  cr_assert_eq(used, 0);
  /* Three header bytes are not enough to know. */
  cr_assert_eq(proto_frame_parse(h, 3, 1024, &off, &blen, &used), PROTO_FRAME_AGAIN);
  proto_frame_put_header(h, 0xffffffffu);
  cr_assert_eq(proto_frame_parse(h, 4, 1024, &off, &blen, &used), PROTO_FRAME_TOO_LARGE);
  cr_assert_eq(blen, 0xffffffffu);
  /* A length of 2^32 - 1 with no limit at all is simply incomplete. */
  cr_assert_eq(proto_frame_parse(h, 4, SIZE_MAX, &off, &blen, &used), PROTO_FRAME_AGAIN);
}

Test(proto_frame, zero_length_is_empty) {
  uint8_t buf[8] = {0, 0, 0, 0, 0, 0, 0, 5};
  size_t off, blen, used;
  cr_assert_eq(proto_frame_parse(buf, 8, 1024, &off, &blen, &used), PROTO_FRAME_EMPTY);
  cr_assert_eq(used, 0);
  cr_assert_eq(blen, 0);
  /* Even with max_body 0. */
  cr_assert_eq(proto_frame_parse(buf, 4, 0, &off, &blen, &used), PROTO_FRAME_EMPTY);
}

Test(proto_frame, length_exactly_max) {
  enum { MAX = 1000 };
  uint8_t *buf = calloc(1, 4 + MAX);
  cr_assert_not_null(buf);
  proto_frame_put_header(buf, MAX);
  size_t off, blen, used;
  cr_assert_eq(proto_frame_parse(buf, 4 + MAX - 1, MAX, &off, &blen, &used), PROTO_FRAME_AGAIN);
  cr_assert_eq(proto_frame_parse(buf, 4 + MAX, MAX, &off, &blen, &used), PROTO_FRAME_OK);
  cr_assert_eq(blen, MAX);
  cr_assert_eq(used, 4 + MAX);
  cr_assert_eq(proto_frame_parse(buf, 4 + MAX, MAX - 1, &off, &blen, &used), PROTO_FRAME_TOO_LARGE);
  free(buf);
}

Test(proto_frame, strerror_never_null) {
  for (int s = -2; s < 10; s++)
    cr_assert_not_null(proto_frame_strerror(s));
  cr_assert_str_neq(proto_frame_strerror(PROTO_FRAME_TOO_LARGE),
                    proto_frame_strerror(PROTO_FRAME_EMPTY));
}

/* ---- encode → parse → decode, every message of both envelopes ---- */

typedef struct pf_kind {
  const ProtobufCMessageDescriptor *d;
  int (*encode)(const ProtobufCMessage *env, uint8_t *out, size_t cap, size_t *len);
  ProtobufCMessage *(*decode)(const uint8_t *body, size_t len);
  size_t (*size)(const ProtobufCMessage *env);
} pf_kind;

static int pf_op_encode(const ProtobufCMessage *env, uint8_t *out, size_t cap, size_t *len) {
  return proto_envelope_encode((const Tuma__V1__Envelope *)env, out, cap, len);
}
static ProtobufCMessage *pf_op_decode(const uint8_t *body, size_t len) {
  Tuma__V1__Envelope *e = proto_envelope_decode(body, len);
  return e ? &e->base : NULL;
}
static size_t pf_op_size(const ProtobufCMessage *env) {
  return proto_envelope_frame_size((const Tuma__V1__Envelope *)env);
}
static int pf_adm_encode(const ProtobufCMessage *env, uint8_t *out, size_t cap, size_t *len) {
  return proto_admin_envelope_encode((const Tuma__V1__AdminEnvelope *)env, out, cap, len);
}
static ProtobufCMessage *pf_adm_decode(const uint8_t *body, size_t len) {
  Tuma__V1__AdminEnvelope *e = proto_admin_envelope_decode(body, len);
  return e ? &e->base : NULL;
}
static size_t pf_adm_size(const ProtobufCMessage *env) {
  return proto_admin_envelope_frame_size((const Tuma__V1__AdminEnvelope *)env);
}

static const pf_kind pf_kinds[] = {
    {&tuma__v1__envelope__descriptor, pf_op_encode, pf_op_decode, pf_op_size},
    {&tuma__v1__admin_envelope__descriptor, pf_adm_encode, pf_adm_decode, pf_adm_size},
};

/* Encodes env, parses the frame, decodes it, checks the decoded envelope re-encodes to the
 * same bytes (so no field was lost or changed), and that every proper prefix of the body
 * decodes to NULL. */
static void pf_round_trip(const pf_kind *k, const ProtobufCMessage *env, const char *what) {
  uint8_t buf[8192], again[8192];
  size_t len = 0;
  size_t need = k->size(env);
  cr_assert_eq(k->encode(env, buf, need - 1, &len), PROTO_FRAME_TOO_LARGE, "%s", what);
  cr_assert_eq(len, need, "%s: the size it needs", what);
  cr_assert_eq(k->encode(env, NULL, 0, &len), PROTO_FRAME_TOO_LARGE, "%s", what);
  cr_assert_eq(len, need);
  cr_assert_eq(k->encode(env, buf, sizeof buf, &len), PROTO_FRAME_OK, "%s", what);
  cr_assert_eq(len, need, "%s", what);

  size_t off, blen, used;
  cr_assert_eq(proto_frame_parse(buf, len, sizeof buf, &off, &blen, &used), PROTO_FRAME_OK);
  cr_assert_eq(used, len);
  ProtobufCMessage *dec = k->decode(buf + off, blen);
  cr_assert_not_null(dec, "%s does not decode", what);
  size_t len2 = 0;
  cr_assert_eq(k->encode(dec, again, sizeof again, &len2), PROTO_FRAME_OK, "%s", what);
  cr_assert_eq(len2, len, "%s: re-encoded size", what);
  cr_assert_eq(memcmp(buf, again, len), 0, "%s: re-encoded bytes differ", what);
  protobuf_c_message_free_unpacked(dec, NULL);

  for (size_t p = 0; p < blen; p++) {
    ProtobufCMessage *t = k->decode(buf + off, p);
    cr_assert_null(t, "%s: a body truncated to %zu of %zu bytes decodes", what, p, blen);
  }
}

Test(proto_frame, round_trip_every_message) {
  pf_arena *a = calloc(1, sizeof *a);
  cr_assert_not_null(a);
  for (size_t ki = 0; ki < sizeof pf_kinds / sizeof pf_kinds[0]; ki++) {
    const pf_kind *k = &pf_kinds[ki];
    unsigned bodies = 0;
    for (unsigned i = 0; i < k->d->n_fields; i++) {
      const ProtobufCFieldDescriptor *f = &k->d->fields[i];
      if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
        continue;
      cr_assert_eq(f->type, PROTOBUF_C_TYPE_MESSAGE, "%s.%s", k->d->name, f->name);
      a->used = 0;
      char what[128];
      snprintf(what, sizeof what, "%s.%s", k->d->name, f->name);
      pf_round_trip(k, pf_new_envelope(a, k->d, f, 0xfedcba9876543210ull + i), what);
      /* The same with every body field at its default (an empty sub-message), and a zero
       * correlation id: still a body, still a frame. */
      ProtobufCMessage *env = pf_alloc(a, k->d->sizeof_message);
      protobuf_c_message_init(k->d, env);
      ProtobufCMessage *sub =
          pf_alloc(a, ((const ProtobufCMessageDescriptor *)f->descriptor)->sizeof_message);
      protobuf_c_message_init(f->descriptor, sub);
      *(uint32_t *)((uint8_t *)env + f->quantifier_offset) = f->id;
      *(ProtobufCMessage **)((uint8_t *)env + f->offset) = sub;
      snprintf(what, sizeof what, "%s.%s (empty)", k->d->name, f->name);
      pf_round_trip(k, env, what);
      bodies++;
    }
    cr_assert_geq(bodies, 10, "%s: too few bodies found", k->d->name);
  }
  free(a);
}

/* One message written out by hand, its fields checked by name. */
Test(proto_frame, transfer_prepare_fields) {
  uint8_t id[16] = {0x01, 0x8f, 0x3a, 0x00, 0, 0, 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, 1};
  uint8_t cond[32];
  memset(cond, 0xab, sizeof cond);
  Tuma__V1__Party payee = TUMA__V1__PARTY__INIT;
  payee.type = TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_MSISDN;
  payee.id = "254700000001";
  Tuma__V1__Money amount = TUMA__V1__MONEY__INIT;
  amount.currency = "KES";
  amount.amount = 150000;
  Tuma__V1__TransferPrepare tp = TUMA__V1__TRANSFER_PREPARE__INIT;
  tp.transfer_id.data = id;
  tp.transfer_id.len = sizeof id;
  tp.payee = &payee;
  tp.amount = &amount;
  tp.expiration_ms = 1767225600000ull;
  tp.condition.data = cond;
  tp.condition.len = sizeof cond;
  tp.reference = "invoice 42";
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  env.correlation_id = 42;
  env.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_PREPARE;
  env.transfer_prepare = &tp;

  uint8_t buf[512];
  size_t len, off, blen, used;
  cr_assert_eq(proto_envelope_encode(&env, buf, sizeof buf, &len), PROTO_FRAME_OK);
  cr_assert_eq(proto_frame_parse(buf, len, 512, &off, &blen, &used), PROTO_FRAME_OK);
  Tuma__V1__Envelope *d = proto_envelope_decode(buf + off, blen);
  cr_assert_not_null(d);
  cr_assert_eq(d->correlation_id, 42);
  cr_assert_eq(d->body_case, TUMA__V1__ENVELOPE__BODY_TRANSFER_PREPARE);
  const Tuma__V1__TransferPrepare *g = d->transfer_prepare;
  cr_assert(proto_id16_valid(g->transfer_id));
  cr_assert_eq(memcmp(g->transfer_id.data, id, 16), 0);
  cr_assert_not_null(g->payee);
  cr_assert_str_eq(g->payee->id, "254700000001");
  cr_assert_eq(g->payee->type, TUMA__V1__PARTY_ID_TYPE__PARTY_ID_TYPE_MSISDN);
  cr_assert_null(g->payer, "an absent sub-message decodes as NULL");
  cr_assert_str_eq(g->payee_participant, "", "an absent string decodes as empty");
  cr_assert(proto_currency_valid(g->amount->currency));
  cr_assert_eq(g->amount->amount, 150000);
  cr_assert_eq(g->expiration_ms, 1767225600000ull);
  cr_assert_eq(g->condition.len, 32);
  cr_assert_str_eq(g->reference, "invoice 42");
  tuma__v1__envelope__free_unpacked(d, NULL);

  /* The admin decoder sees these bytes as an admin envelope without a known body. */
  cr_assert_null(proto_admin_envelope_decode(buf + off, blen));
}

/* ---- what must not decode or encode ---- */

Test(proto_frame, envelope_without_body) {
  Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
  env.correlation_id = 7;
  uint8_t buf[64];
  size_t len = 99;
  cr_assert_eq(proto_envelope_encode(&env, buf, sizeof buf, &len), PROTO_FRAME_INVAL);
  cr_assert_eq(len, 0);
  /* A body case without its message is no body either. */
  env.body_case = TUMA__V1__ENVELOPE__BODY_PING;
  cr_assert_eq(proto_envelope_encode(&env, buf, sizeof buf, &len), PROTO_FRAME_INVAL);
  cr_assert_eq(proto_envelope_encode(NULL, buf, sizeof buf, &len), PROTO_FRAME_INVAL);
  Tuma__V1__Ping ping = TUMA__V1__PING__INIT;
  env.ping = &ping;
  cr_assert_eq(proto_envelope_encode(&env, NULL, 10, &len), PROTO_FRAME_INVAL);
  cr_assert_eq(proto_envelope_encode(&env, buf, sizeof buf, NULL), PROTO_FRAME_INVAL);
  cr_assert_eq(proto_envelope_encode(&env, buf, sizeof buf, &len), PROTO_FRAME_OK);

  Tuma__V1__AdminEnvelope adm = TUMA__V1__ADMIN_ENVELOPE__INIT;
  cr_assert_eq(proto_admin_envelope_encode(&adm, buf, sizeof buf, &len), PROTO_FRAME_INVAL);
  cr_assert_eq(proto_admin_envelope_encode(NULL, buf, sizeof buf, &len), PROTO_FRAME_INVAL);

  /* On the wire: correlation_id 7 alone (08 07), or nothing but an unknown field 99. */
  const uint8_t corr_only[] = {0x08, 0x07};
  cr_assert_null(proto_envelope_decode(corr_only, sizeof corr_only));
  cr_assert_null(proto_admin_envelope_decode(corr_only, sizeof corr_only));
  const uint8_t unknown_only[] = {0x98, 0x06, 0x01}; /* field 99, varint 1 */
  cr_assert_null(proto_envelope_decode(unknown_only, sizeof unknown_only));
  cr_assert_null(proto_admin_envelope_decode(unknown_only, sizeof unknown_only));
  cr_assert_null(proto_envelope_decode(corr_only, 0));
  cr_assert_null(proto_envelope_decode(NULL, 5));
  cr_assert_null(proto_admin_envelope_decode(NULL, 0));

  /* An empty Ping as the body (field 31, length 0) is a body. */
  const uint8_t empty_ping[] = {0xfa, 0x01, 0x00};
  Tuma__V1__Envelope *d = proto_envelope_decode(empty_ping, sizeof empty_ping);
  cr_assert_not_null(d);
  cr_assert_eq(d->body_case, TUMA__V1__ENVELOPE__BODY_PING);
  cr_assert_eq(d->correlation_id, 0);
  tuma__v1__envelope__free_unpacked(d, NULL);
}

/* Unknown fields (a newer peer's) decode and are dropped at every depth; invalid field
 * numbers that protobuf-c would accept through an overlong tag are refused. */
Test(proto_frame, unknown_fields) {
  /* Ping{nonce 5, field 100 = 1}, then field 99 = 1 at the top. */
  const uint8_t newer[] = {0xfa, 0x01, 0x05, 0x08, 0x05, 0xa0, 0x06, 0x01, 0x98, 0x06, 0x01};
  Tuma__V1__Envelope *e = proto_envelope_decode(newer, sizeof newer);
  cr_assert_not_null(e);
  cr_assert_eq(e->body_case, TUMA__V1__ENVELOPE__BODY_PING);
  cr_assert_eq(e->ping->nonce, 5);
  cr_assert_eq(e->base.n_unknown_fields, 0);
  cr_assert_eq(e->ping->base.n_unknown_fields, 0);
  uint8_t out[64];
  size_t len;
  cr_assert_eq(proto_envelope_encode(e, out, sizeof out, &len), PROTO_FRAME_OK);
  const uint8_t want[] = {0, 0, 0, 5, 0xfa, 0x01, 0x02, 0x08, 0x05};
  cr_assert_eq(len, sizeof want);
  cr_assert_eq(memcmp(out, want, len), 0);
  tuma__v1__envelope__free_unpacked(e, NULL);

  /* Inside a repeated sub-message of an admin envelope: ParticipantListResult{Participant{
   * participant_id "a", field 9 = 1}}. */
  const uint8_t adm[] = {0x6a, 0x07, 0x0a, 0x05, 0x0a, 0x01, 'a', 0x48, 0x01};
  Tuma__V1__AdminEnvelope *ae = proto_admin_envelope_decode(adm, sizeof adm);
  cr_assert_not_null(ae);
  cr_assert_eq(ae->body_case, TUMA__V1__ADMIN_ENVELOPE__BODY_PARTICIPANT_LIST_RESULT);
  cr_assert_eq(ae->participant_list_result->n_participants, 1);
  cr_assert_str_eq(ae->participant_list_result->participants[0]->participant_id, "a");
  cr_assert_eq(ae->participant_list_result->participants[0]->base.n_unknown_fields, 0);
  tuma__v1__admin_envelope__free_unpacked(ae, NULL);

  /* Field number 0 written as an overlong tag (80 00), found by fuzz_frame: protobuf-c takes
   * it, re-encodes it as 00, and then refuses its own output. */
  const uint8_t zero_in_ping[] = {0xfa, 0x01, 0x05, 0x08, 0x05, 0x80, 0x00, 0x16};
  cr_assert_null(proto_envelope_decode(zero_in_ping, sizeof zero_in_ping));
  const uint8_t zero_on_top[] = {0x08, 0x01, 0x80, 0x00, 0x01, 0xfa, 0x01, 0x00};
  cr_assert_null(proto_envelope_decode(zero_on_top, sizeof zero_on_top));
  cr_assert_null(proto_admin_envelope_decode(zero_on_top, sizeof zero_on_top));
  /* Field number 2^29, beyond protobuf's range. */
  const uint8_t too_big[] = {0x80, 0x80, 0x80, 0x80, 0x10, 0x01, 0xfa, 0x01, 0x00};
  cr_assert_null(proto_envelope_decode(too_big, sizeof too_big));
}

Test(proto_frame, garbage_bodies) {
  static const struct {
    const char *what;
    uint8_t b[8];
    size_t n;
  } bad[] = {
      {"truncated varint", {0x08, 0xff}, 2},
      {"unterminated varint", {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 8},
      {"body length past the end", {0x52, 0x10, 0x01}, 3},
      {"invalid wire type 7", {0x0f, 0x00}, 2},
      {"invalid wire type 6", {0x0e, 0x00}, 2},
      {"field number 0", {0x00, 0x01}, 2},
      {"end group without start", {0x0c}, 1},
      {"body of the wrong wire type", {0xf8, 0x01, 0x05}, 3}, /* ping as varint */
      {"sub-message garbage", {0xfa, 0x01, 0x02, 0x08, 0xff}, 5},
      {"single byte", {0x80}, 1},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint8_t *copy = malloc(bad[i].n); /* exact size, for ASan */
    cr_assert_not_null(copy);
    memcpy(copy, bad[i].b, bad[i].n);
    cr_assert_null(proto_envelope_decode(copy, bad[i].n), "%s decodes", bad[i].what);
    cr_assert_null(proto_admin_envelope_decode(copy, bad[i].n), "%s decodes", bad[i].what);
    free(copy);
  }
  /* Random bodies: whatever decodes must re-encode; nothing may crash or leak. */
  unsigned long long x = 0x9e3779b97f4a7c15ull;
  for (int round = 0; round < 20000; round++) {
    uint8_t buf[48];
    size_t n = 1 + (size_t)(x % sizeof buf);
    for (size_t i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      buf[i] = (uint8_t)x;
    }
    if (round & 1)
      buf[0] = 0xfa; /* aim at the Ping body now and then */
    uint8_t out[256];
    size_t len;
    Tuma__V1__Envelope *e = proto_envelope_decode(buf, n);
    if (e) {
      cr_assert_neq(e->body_case, TUMA__V1__ENVELOPE__BODY__NOT_SET);
      int rc = proto_envelope_encode(e, out, sizeof out, &len);
      cr_assert(rc == PROTO_FRAME_OK || rc == PROTO_FRAME_TOO_LARGE);
      tuma__v1__envelope__free_unpacked(e, NULL);
    }
    Tuma__V1__AdminEnvelope *ae = proto_admin_envelope_decode(buf, n);
    if (ae) {
      cr_assert_neq(ae->body_case, TUMA__V1__ADMIN_ENVELOPE__BODY__NOT_SET);
      int rc = proto_admin_envelope_encode(ae, out, sizeof out, &len);
      cr_assert(rc == PROTO_FRAME_OK || rc == PROTO_FRAME_TOO_LARGE);
      tuma__v1__admin_envelope__free_unpacked(ae, NULL);
    }
  }
}

/* ---- validators ---- */

Test(proto_frame, id16_valid) {
  uint8_t id[17] = {0};
  ProtobufCBinaryData b = {16, id};
  cr_assert_not(proto_id16_valid(b), "all zero");
  id[15] = 1;
  cr_assert(proto_id16_valid(b));
  id[15] = 0;
  id[0] = 0x80;
  cr_assert(proto_id16_valid(b));
  b.len = 15;
  cr_assert_not(proto_id16_valid(b));
  b.len = 17;
  cr_assert_not(proto_id16_valid(b));
  b.len = 0;
  cr_assert_not(proto_id16_valid(b));
  b.len = 16;
  b.data = NULL;
  cr_assert_not(proto_id16_valid(b));
}

Test(proto_frame, currency_valid) {
  cr_assert(proto_currency_valid("KES"));
  cr_assert(proto_currency_valid("UGX"));
  cr_assert(proto_currency_valid("AZZ"));
  const char *bad[] = {"kes", "Kes",    "KE",  "KESS", "K1S", "",
                       "K S", "KE\xc3", "@AB", "AB[",  "KES "};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_not(proto_currency_valid(bad[i]), "\"%s\"", bad[i]);
  cr_assert_not(proto_currency_valid(NULL));
}
