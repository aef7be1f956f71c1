/* fuzz_frame.c — libFuzzer target for what a peer's bytes meet first: the framing and the
 * envelope decoders (proto/frame.h).
 *
 * The input is a byte stream as a connection would deliver it. It is cut into frames with
 * proto_frame_parse() and a small maximum, twice: once with everything at hand, once arriving
 * in chunks (of a size taken from the last input byte), each time from a heap copy of exactly
 * the bytes that have arrived so that ASan sees any read past them. Both passes must find the
 * same frames and end the same way. Each body is decoded as an Envelope and as an
 * AdminEnvelope; what decodes must have a body, must encode again, and the re-encoding must be
 * a fixed point (decode(encode(m)) encodes to the same bytes). Any violation aborts.
 */
#include "frame.h"

#include <stdlib.h>
#include <string.h>

enum { FUZZ_MAX_BODY = 1024 }; /* small, so the fuzzer reaches the limit easily */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
  do {                                                                                             \
    if (!(cond))                                                                                   \
      abort();                                                                                     \
  } while (0)

/* Encodes m (an envelope whose type kind selects), decodes the result and checks that encoding
 * that gives the same bytes again. */
static void fuzz_reencode(const ProtobufCMessage *m, int admin) {
  size_t need = admin ? proto_admin_envelope_frame_size((const Tuma__V1__AdminEnvelope *)m)
                      : proto_envelope_frame_size((const Tuma__V1__Envelope *)m);
  FUZZ_CHECK(need > PROTO_FRAME_HEADER_BYTES);
  uint8_t *a = malloc(need), *b = malloc(need);
  FUZZ_CHECK(a && b);
  size_t alen = 0, blen = 0;
  int rc = admin ? proto_admin_envelope_encode((const Tuma__V1__AdminEnvelope *)m, a, need, &alen)
                 : proto_envelope_encode((const Tuma__V1__Envelope *)m, a, need, &alen);
  FUZZ_CHECK(rc == PROTO_FRAME_OK && alen == need);

  size_t off, body, used;
  FUZZ_CHECK(proto_frame_parse(a, alen, SIZE_MAX, &off, &body, &used) == PROTO_FRAME_OK);
  FUZZ_CHECK(used == alen);
  if (admin) {
    Tuma__V1__AdminEnvelope *again = proto_admin_envelope_decode(a + off, body);
    FUZZ_CHECK(again);
    rc = proto_admin_envelope_encode(again, b, need, &blen);
    tuma__v1__admin_envelope__free_unpacked(again, NULL);
  } else {
    Tuma__V1__Envelope *again = proto_envelope_decode(a + off, body);
    FUZZ_CHECK(again);
    rc = proto_envelope_encode(again, b, need, &blen);
    tuma__v1__envelope__free_unpacked(again, NULL);
  }
  FUZZ_CHECK(rc == PROTO_FRAME_OK && blen == alen && memcmp(a, b, alen) == 0);
  free(a);
  free(b);
}

/* The validators on whatever fields a decoded operator envelope offers them. */
static void fuzz_validate(const Tuma__V1__Envelope *e) {
  switch (e->body_case) {
  case TUMA__V1__ENVELOPE__BODY_TRANSFER_PREPARE:
    (void)proto_id16_valid(e->transfer_prepare->transfer_id);
    if (e->transfer_prepare->amount)
      (void)proto_currency_valid(e->transfer_prepare->amount->currency);
    break;
  case TUMA__V1__ENVELOPE__BODY_TRANSFER_FULFIL:
    (void)proto_id16_valid(e->transfer_fulfil->transfer_id);
    break;
  case TUMA__V1__ENVELOPE__BODY_TRANSFER_QUERY:
    (void)proto_id16_valid(e->transfer_query->transfer_id);
    break;
  default:
    break;
  }
}

static void fuzz_body(const uint8_t *body, size_t len) {
  /* An exact-size copy: the decoders must not read past the body. */
  uint8_t *copy = malloc(len);
  FUZZ_CHECK(copy);
  memcpy(copy, body, len);
  Tuma__V1__Envelope *e = proto_envelope_decode(copy, len);
  if (e) {
    FUZZ_CHECK(e->body_case != TUMA__V1__ENVELOPE__BODY__NOT_SET);
    fuzz_validate(e);
    fuzz_reencode(&e->base, 0);
    tuma__v1__envelope__free_unpacked(e, NULL);
  }
  Tuma__V1__AdminEnvelope *ae = proto_admin_envelope_decode(copy, len);
  if (ae) {
    FUZZ_CHECK(ae->body_case != TUMA__V1__ADMIN_ENVELOPE__BODY__NOT_SET);
    fuzz_reencode(&ae->base, 1);
    tuma__v1__admin_envelope__free_unpacked(ae, NULL);
  }
  free(copy);
}

/* What the whole-input pass found: the frames (offset and length of each body) and how the
 * stream ended. */
typedef struct fuzz_frames {
  size_t n, cap;
  size_t *off, *len;
  int end;        /* AGAIN, TOO_LARGE or EMPTY */
  size_t end_pos; /* where the unparsed rest starts */
} fuzz_frames;

/* Parses data[0..size) from a heap copy of exactly avail bytes starting at pos; returns the
 * status and sets the frame's offsets relative to data. */
static int fuzz_parse_at(const uint8_t *data, size_t pos, size_t avail, size_t *off, size_t *len,
                         size_t *used) {
  uint8_t *copy = NULL;
  if (avail) {
    copy = malloc(avail);
    FUZZ_CHECK(copy);
    memcpy(copy, data + pos, avail);
  }
  int rc = proto_frame_parse(copy, avail, FUZZ_MAX_BODY, off, len, used);
  free(copy);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* A frame takes at least 5 bytes. */
  fuzz_frames w = {.cap = size / (PROTO_FRAME_HEADER_BYTES + 1) + 1};
  fuzz_frames *whole = &w;
  whole->off = calloc(whole->cap, sizeof *whole->off);
  whole->len = calloc(whole->cap, sizeof *whole->len);
  FUZZ_CHECK(whole->off && whole->len);

  /* Pass 1: everything has arrived. */
  size_t pos = 0;
  for (;;) {
    size_t off, len, used;
    int rc =
        proto_frame_parse(size ? data + pos : NULL, size - pos, FUZZ_MAX_BODY, &off, &len, &used);
    if (rc != PROTO_FRAME_OK) {
      FUZZ_CHECK(rc == PROTO_FRAME_AGAIN || rc == PROTO_FRAME_TOO_LARGE || rc == PROTO_FRAME_EMPTY);
      FUZZ_CHECK(used == 0);
      FUZZ_CHECK(rc != PROTO_FRAME_TOO_LARGE || len > FUZZ_MAX_BODY);
      whole->end = rc;
      whole->end_pos = pos;
      break;
    }
    FUZZ_CHECK(off == PROTO_FRAME_HEADER_BYTES && len >= 1 && len <= FUZZ_MAX_BODY);
    FUZZ_CHECK(used == off + len && used <= size - pos);
    FUZZ_CHECK(whole->n < whole->cap);
    whole->off[whole->n] = pos + off;
    whole->len[whole->n] = len;
    whole->n++;
    fuzz_body(data + pos + off, len);
    pos += used;
  }

  /* Pass 2: the same stream arriving in chunks. */
  size_t chunk = size ? 1 + data[size - 1] % 64 : 1;
  size_t arrived = 0, frame = 0;
  pos = 0;
  int end = PROTO_FRAME_AGAIN;
  while (end == PROTO_FRAME_AGAIN || end == PROTO_FRAME_OK) {
    if (end == PROTO_FRAME_AGAIN) {
      if (arrived == size)
        break;
      arrived += chunk < size - arrived ? chunk : size - arrived;
    }
    size_t off, len, used;
    end = fuzz_parse_at(data, pos, arrived - pos, &off, &len, &used);
    if (end == PROTO_FRAME_OK) {
      FUZZ_CHECK(frame < whole->n);
      FUZZ_CHECK(whole->off[frame] == pos + off && whole->len[frame] == len);
      frame++;
      pos += used;
    }
  }
  FUZZ_CHECK(frame == whole->n);
  FUZZ_CHECK(end == whole->end && pos == whole->end_pos);
  free(whole->off);
  free(whole->len);
  return 0;
}
