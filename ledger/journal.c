/* journal.c — lays out and checks the bytes of journal records (see journal.h, JOURNAL.md). */
#include "journal.h"

#include <openssl/sha.h>
#include <string.h>

_Static_assert(sizeof(ledger_account) == JOURNAL_EVENT_SIZE, "account body is 128 bytes");
_Static_assert(sizeof(ledger_transfer) == JOURNAL_EVENT_SIZE, "transfer body is 128 bytes");
_Static_assert(sizeof(ledger_id) == JOURNAL_EXPIRED_SIZE, "an id is 16 bytes");

#define OFF_MAGIC 32
#define OFF_SEQ 40
#define OFF_TIMESTAMP 48
#define OFF_EVENT_COUNT 56
#define OFF_EXPIRED_COUNT 60

static void put_u16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_u16(const uint8_t *p) {
  return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_u32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static uint64_t get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

size_t journal_record_size(uint32_t event_count, uint32_t expired_count) {
  return JOURNAL_HEADER_SIZE + (size_t)expired_count * JOURNAL_EXPIRED_SIZE +
         (size_t)event_count * (JOURNAL_EVENT_SIZE + JOURNAL_OUTCOME_SIZE) + JOURNAL_HASH_SIZE;
}

/* The structs are stored as their in-memory bytes: the layout is fixed by the static asserts
 * above and by the little-endian targets this ledger is built for. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the record layout is little endian");

void journal_write(uint8_t *out, const uint8_t prev_hash[JOURNAL_HASH_SIZE], uint64_t seq,
                   uint64_t timestamp, const ledger_event *events, const ledger_result *results,
                   uint32_t event_count, const ledger_id *expired, uint32_t expired_count) {
  memcpy(out, prev_hash, JOURNAL_HASH_SIZE);
  memcpy(out + OFF_MAGIC, JOURNAL_MAGIC, 8);
  put_u64(out + OFF_SEQ, seq);
  put_u64(out + OFF_TIMESTAMP, timestamp);
  put_u32(out + OFF_EVENT_COUNT, event_count);
  put_u32(out + OFF_EXPIRED_COUNT, expired_count);
  uint8_t *p = out + JOURNAL_HEADER_SIZE;
  if (expired_count) {
    memcpy(p, expired, (size_t)expired_count * JOURNAL_EXPIRED_SIZE);
    p += (size_t)expired_count * JOURNAL_EXPIRED_SIZE;
  }
  for (uint32_t i = 0; i < event_count; i++, p += JOURNAL_EVENT_SIZE)
    memcpy(p, &events[i].account, JOURNAL_EVENT_SIZE); /* the union's bytes, either kind */
  for (uint32_t i = 0; i < event_count; i++, p += JOURNAL_OUTCOME_SIZE) {
    uint32_t kind = events[i].kind; /* an unknown kind is stored as 0: it fails either way */
    put_u16(p, kind == LEDGER_EVENT_CREATE_ACCOUNT || kind == LEDGER_EVENT_CREATE_TRANSFER
                   ? (uint16_t)kind
                   : 0);
    put_u16(p + 2, (uint16_t)results[i]);
  }
  SHA256(out, (size_t)(p - out), p);
}

void journal_write_checkpoint(uint8_t *out, const uint8_t prev_hash[JOURNAL_HASH_SIZE],
                              uint64_t seq, uint64_t timestamp,
                              const uint8_t fingerprint[JOURNAL_FINGERPRINT_SIZE]) {
  memset(out, 0, JOURNAL_CHECKPOINT_SIZE);
  memcpy(out, prev_hash, JOURNAL_HASH_SIZE);
  memcpy(out + OFF_MAGIC, JOURNAL_CHECKPOINT_MAGIC, 8);
  put_u64(out + OFF_SEQ, seq);
  put_u64(out + OFF_TIMESTAMP, timestamp);
  memcpy(out + OFF_EVENT_COUNT, fingerprint, JOURNAL_FINGERPRINT_SIZE);
}

void journal_seal(uint8_t *out, size_t len) {
  SHA256(out, len - JOURNAL_HASH_SIZE, out + len - JOURNAL_HASH_SIZE);
}

static int parse_checkpoint(const uint8_t *b, size_t len, journal_view *v) {
  if (len != JOURNAL_CHECKPOINT_SIZE)
    return LEDGER_E_CORRUPT;
  v->kind = JOURNAL_KIND_CHECKPOINT;
  v->prev_hash = b;
  v->seq = get_u64(b + OFF_SEQ);
  v->timestamp = get_u64(b + OFF_TIMESTAMP);
  v->event_count = v->expired_count = 0;
  v->expired = v->events = v->outcomes = b + JOURNAL_CHECKPOINT_SIGNED_SIZE;
  v->fingerprint = b + OFF_EVENT_COUNT;
  v->signature = b + JOURNAL_CHECKPOINT_SIGNED_SIZE;
  v->hash = b + len - JOURNAL_HASH_SIZE;
  v->size = len;
  return 0;
}

/* Framing only: fills *v, no hash. */
static int parse_frame(const uint8_t *b, size_t len, journal_view *v) {
  if (len < JOURNAL_HEADER_SIZE + JOURNAL_HASH_SIZE)
    return LEDGER_E_CORRUPT;
  if (!memcmp(b + OFF_MAGIC, JOURNAL_CHECKPOINT_MAGIC, 8))
    return parse_checkpoint(b, len, v);
  if (memcmp(b + OFF_MAGIC, JOURNAL_MAGIC, 8))
    return LEDGER_E_CORRUPT;
  v->kind = JOURNAL_KIND_BATCH;
  v->fingerprint = v->signature = NULL;
  v->prev_hash = b;
  v->seq = get_u64(b + OFF_SEQ);
  v->timestamp = get_u64(b + OFF_TIMESTAMP);
  v->event_count = get_u32(b + OFF_EVENT_COUNT);
  v->expired_count = get_u32(b + OFF_EXPIRED_COUNT);
  if (v->event_count > LEDGER_BATCH_MAX || v->expired_count > LEDGER_BATCH_MAX ||
      journal_record_size(v->event_count, v->expired_count) != len)
    return LEDGER_E_CORRUPT;
  v->expired = b + JOURNAL_HEADER_SIZE;
  v->events = v->expired + (size_t)v->expired_count * JOURNAL_EXPIRED_SIZE;
  v->outcomes = v->events + (size_t)v->event_count * JOURNAL_EVENT_SIZE;
  v->hash = b + len - JOURNAL_HASH_SIZE;
  v->size = len;
  return 0;
}

int journal_parse_hashed(const void *record, size_t len, const uint8_t body_hash[JOURNAL_HASH_SIZE],
                         journal_view *v) {
  if (parse_frame(record, len, v))
    return LEDGER_E_CORRUPT;
  return memcmp(body_hash, v->hash, JOURNAL_HASH_SIZE) ? LEDGER_E_CORRUPT : 0;
}

int journal_parse(const void *record, size_t len, journal_view *v) {
  if (parse_frame(record, len, v))
    return LEDGER_E_CORRUPT;
  uint8_t hash[JOURNAL_HASH_SIZE];
  SHA256(record, len - JOURNAL_HASH_SIZE, hash);
  return memcmp(hash, v->hash, JOURNAL_HASH_SIZE) ? LEDGER_E_CORRUPT : 0;
}

ledger_event journal_event_at(const journal_view *v, uint32_t i) {
  ledger_event ev;
  memset(&ev, 0, sizeof ev);
  ev.kind = get_u16(v->outcomes + (size_t)i * JOURNAL_OUTCOME_SIZE);
  memcpy(&ev.account, v->events + (size_t)i * JOURNAL_EVENT_SIZE, JOURNAL_EVENT_SIZE);
  return ev;
}

ledger_result journal_result_at(const journal_view *v, uint32_t i) {
  return (ledger_result)get_u16(v->outcomes + (size_t)i * JOURNAL_OUTCOME_SIZE + 2);
}

ledger_id journal_expired_at(const journal_view *v, uint32_t i) {
  ledger_id id;
  memcpy(&id, v->expired + (size_t)i * JOURNAL_EXPIRED_SIZE, sizeof id);
  return id;
}
