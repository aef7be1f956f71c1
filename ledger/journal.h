/* journal.h — the journal record: one per committed batch, hash-chained (ledger/JOURNAL.md).
 *
 * A stored record is `body ‖ hash`, hash = SHA-256(body), and the body begins with the hash
 * of the previous record, so hash = SHA-256(prev_hash ‖ rest of the record). All integers are
 * little endian. This module only lays out and checks bytes; ledger.c decides what goes in.
 */
#ifndef TUMA_LEDGER_JOURNAL_H
#define TUMA_LEDGER_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "ledger.h"

#define JOURNAL_HASH_SIZE 32
#define JOURNAL_MAGIC "TUMAJRN1"
#define JOURNAL_HEADER_SIZE 64 /* prev_hash 32, magic 8, seq 8, timestamp 8, counts 4 + 4 */
#define JOURNAL_EVENT_SIZE 128
#define JOURNAL_EXPIRED_SIZE 16
#define JOURNAL_OUTCOME_SIZE 4 /* kind u16, result u16 */

/* A checkpoint record (JOURNAL.md): the writer's Ed25519 signature over the chain head it
 * follows. prev_hash 32, magic 8, seq 8, timestamp 8, key fingerprint 32, signature 64, hash 32. */
#define JOURNAL_CHECKPOINT_MAGIC "TUMACKP1"
#define JOURNAL_FINGERPRINT_SIZE 32
#define JOURNAL_SIGNATURE_SIZE 64
#define JOURNAL_CHECKPOINT_SIGNED_SIZE 88 /* the signature covers bytes 0 .. 88 */
#define JOURNAL_CHECKPOINT_SIZE                                                                    \
  (JOURNAL_CHECKPOINT_SIGNED_SIZE + JOURNAL_SIGNATURE_SIZE + JOURNAL_HASH_SIZE)

/* The kinds of record. */
enum {
  JOURNAL_KIND_BATCH = 1,      /* a committed batch: expiries, events, results */
  JOURNAL_KIND_CHECKPOINT = 2, /* a signature over the head before it; changes no state */
};

/* A parsed record: pointers borrowed from the bytes given to journal_parse(). The arrays are
 * not necessarily aligned for their types: read them with memcpy (journal_event_at & co). */
typedef struct journal_view {
  int kind; /* JOURNAL_KIND_* */
  const uint8_t *prev_hash;
  uint64_t seq;
  uint64_t timestamp; /* the batch's base timestamp */
  uint32_t event_count;
  uint32_t expired_count;
  const uint8_t *expired;     /* expired_count × 16-byte ids */
  const uint8_t *events;      /* event_count × 128-byte bodies */
  const uint8_t *outcomes;    /* event_count × (kind u16, result u16) */
  const uint8_t *fingerprint; /* checkpoint only: SHA-256 of the raw 32-byte public key */
  const uint8_t *signature;   /* checkpoint only: Ed25519 over bytes 0 .. 88 */
  const uint8_t *hash;
  size_t size; /* whole stored record, hash included */
} journal_view;

/* Size in bytes of a stored record with these counts, hash included. */
size_t journal_record_size(uint32_t event_count, uint32_t expired_count);

/* Writes a complete record into out[0 .. journal_record_size()), hash included. events and
 * results are the batch's; expired holds expired_count ids. Cost: one SHA-256 over the record. */
void journal_write(uint8_t *out, const uint8_t prev_hash[JOURNAL_HASH_SIZE], uint64_t seq,
                   uint64_t timestamp, const ledger_event *events, const ledger_result *results,
                   uint32_t event_count, const ledger_id *expired, uint32_t expired_count);

/* Writes a checkpoint record into out[0 .. JOURNAL_CHECKPOINT_SIZE) except its signature and
 * hash: the caller signs out[0 .. JOURNAL_CHECKPOINT_SIGNED_SIZE), stores the signature at
 * out + JOURNAL_CHECKPOINT_SIGNED_SIZE and calls journal_seal(). */
void journal_write_checkpoint(uint8_t *out, const uint8_t prev_hash[JOURNAL_HASH_SIZE],
                              uint64_t seq, uint64_t timestamp,
                              const uint8_t fingerprint[JOURNAL_FINGERPRINT_SIZE]);

/* Sets the last 32 bytes of the record out[0 .. len) to SHA-256 of the bytes before them. */
void journal_seal(uint8_t *out, size_t len);

/* Checks framing (magic, sizes consistent with len) and the record's own hash, and fills *v;
 * either kind of record. Returns 0 or LEDGER_E_CORRUPT. Does not check the link to the
 * previous record, nor a checkpoint's signature (ledger/audit.h does). */
int journal_parse(const void *record, size_t len, journal_view *v);

/* The same with the SHA-256 of the record's bytes before its hash already computed (by
 * another thread): no hashing here. */
int journal_parse_hashed(const void *record, size_t len, const uint8_t body_hash[JOURNAL_HASH_SIZE],
                         journal_view *v);

/* Accessors for the parsed arrays (i < the matching count). */
ledger_event journal_event_at(const journal_view *v, uint32_t i);
ledger_result journal_result_at(const journal_view *v, uint32_t i);
ledger_id journal_expired_at(const journal_view *v, uint32_t i);

#endif
