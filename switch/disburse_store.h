/* disburse_store.h — the durable state of disbursements beside the ledger: programmes, the
 * beneficiary registry (the "ID mapper"), batches, their frozen item lists, the rows refused at
 * validation, per-cycle item statuses and the index that stops a beneficiary from being in two
 * batches of the same programme and cycle (switch/DISBURSE.md).
 *
 * Storage: its own LMDB environment in DATA_DIR/disburse. Money is not here — the ledger holds
 * every movement; item statuses here are a cache of what the ledger says, rebuilt from it after
 * a restart (payout.c). Identifiers are stored only as tokens (registry.h sw_registry_token)
 * and as masked text for reports, never in plain.
 *
 * Transactions: the caller opens one (sw_dstore_begin), makes any number of calls and commits
 * (full sync) or aborts; a failed call leaves the transaction usable only for abort. Records
 * read are copied out. One thread (the event loop) uses a store at a time.
 */
#ifndef TUMA_SW_DISBURSE_STORE_H
#define TUMA_SW_DISBURSE_STORE_H

#include <stddef.h>
#include <stdint.h>

enum {
  SW_DSTORE_E_OK = 0,
  SW_DSTORE_E_NOTFOUND = 1,
  SW_DSTORE_E_FULL = 2, /* the map reached its size or the disk is full */
  SW_DSTORE_E_IO = 3,
  SW_DSTORE_E_CORRUPT = 4, /* a record of an unexpected size */
  SW_DSTORE_E_LMDB = 5,
  SW_DSTORE_E_NOMEM = 6,
  SW_DSTORE_E_EXISTS = 7, /* sw_dstore_cycle_add: the entry is taken */
};

const char *sw_dstore_strerror(int err);

/* Batch states; the values are those of tuma.v1.BatchState. */
enum {
  SW_BATCH_VALIDATING = 0, /* being uploaded; discarded at the next start if not finished */
  SW_BATCH_SUBMITTED = 1,
  SW_BATCH_APPROVED = 2,
  SW_BATCH_RUNNING = 3,
  SW_BATCH_COMPLETED = 4,
  SW_BATCH_CANCELLED = 5,
  SW_BATCH_REFUSED = 6,
  SW_BATCH_WAITING_FUNDS = 7,
};

/* Item statuses; the values are those of tuma.v1.ItemStatus. */
enum {
  SW_ITEM_PENDING = 1,
  SW_ITEM_IN_FLIGHT = 2,
  SW_ITEM_PAID = 3,
  SW_ITEM_FAILED = 4,
  SW_ITEM_CANCELLED = 5,
};

typedef struct sw_programme {
  uint32_t number;  /* dense from 1 */
  uint32_t funding; /* the funding participant's number */
  uint16_t currency; /* ISO 4217 numeric = ledger */
  uint8_t exponent;
  uint8_t _pad;
  char id[64];
  char name[128];
  char funding_id[64];
  uint64_t cap;    /* per beneficiary per cycle, minor units; 0 = none */
  uint64_t end_ms; /* 0 = none */
  uint64_t created_ms;
} sw_programme;

typedef struct sw_beneficiary {
  uint32_t operator_no; /* 0 = resolve the MSISDN through the party directory */
  uint32_t id_type;
  char msisdn[16];
  char masked[32];
} sw_beneficiary;

typedef struct sw_batch {
  uint64_t number;
  uint32_t programme;
  uint32_t first_cycle;
  uint32_t cycles;
  uint32_t current_cycle; /* running, or next to run */
  uint8_t state;          /* SW_BATCH_* */
  uint8_t exclude_invalid;
  uint8_t cycle_funded; /* the current cycle's reservation is posted to its escrow */
  uint8_t _pad;
  uint32_t rate; /* items per second */
  uint64_t every_ms;
  uint64_t start_at_ms;
  uint64_t cycle_start_ms; /* the current cycle's scheduled start */
  uint64_t items, total;   /* valid rows, per cycle */
  uint64_t invalid;
  uint64_t expect_count, expect_total;
  uint8_t file_sha256[32];
  char submitted_by[64];
  char approved_by[64];
  uint64_t submitted_ms, approved_ms, finished_ms;
  uint32_t reserve_try; /* the current cycle's reservation attempt (a refused one burns its id) */
  uint32_t _pad2;
  char refusal[160];
} sw_batch;

typedef struct sw_batch_item {
  uint8_t token[32];
  uint64_t amount;
  uint64_t line;
  uint32_t operator_no;
  uint32_t id_type;
  char masked[32];
  char msisdn[16];
  char reference[65];
  char sex;
  char age_band[16];
  char region[49];
} sw_batch_item;

typedef struct sw_item_status {
  uint8_t status; /* SW_ITEM_* */
  uint8_t attempt;         /* tries made */
  uint16_t ledger_attempt; /* the attempt whose transfer the report shows; 0 = none recorded */
  uint32_t code;           /* the reason of a failure */
  uint64_t completed_ms;
  uint64_t elapsed_ms; /* from the cycle's scheduled start to the credit */
} sw_item_status;

typedef struct sw_dstore sw_dstore;
typedef struct sw_dstore_txn sw_dstore_txn;

/* Opens (creating) DATA_DIR/disburse. err gets a one-line reason on failure. */
int sw_dstore_open(const char *data_dir, sw_dstore **out, char *err, size_t errlen);
void sw_dstore_close(sw_dstore *s);

/* A write (rdonly = 0) or read transaction. Only one write transaction at a time. */
int sw_dstore_begin(sw_dstore *s, int rdonly, sw_dstore_txn **out);
/* Commits with a full sync (a read transaction just ends); frees t either way. */
int sw_dstore_commit(sw_dstore_txn *t);
/* Commits syncing the data but not the meta page: a crash may undo this commit (never corrupt
 * the store). For work that is discarded when interrupted (an upload's chunks); the next full
 * commit makes it durable. */
int sw_dstore_commit_lazy(sw_dstore_txn *t);
void sw_dstore_abort(sw_dstore_txn *t); /* accepts NULL */

/* Counters ("programme", "batch"): *out = the next value (from 1), stored incremented. */
int sw_dstore_next(sw_dstore_txn *t, const char *counter, uint64_t *out);

int sw_dstore_programme_put(sw_dstore_txn *t, const sw_programme *p);
int sw_dstore_programme_get(sw_dstore_txn *t, uint32_t number, sw_programme *out);
int sw_dstore_programme_find(sw_dstore_txn *t, const char *id, sw_programme *out);

int sw_dstore_beneficiary_put(sw_dstore_txn *t, const uint8_t token[32], const sw_beneficiary *b);
int sw_dstore_beneficiary_get(sw_dstore_txn *t, const uint8_t token[32], sw_beneficiary *out);

int sw_dstore_batch_put(sw_dstore_txn *t, const sw_batch *b);
int sw_dstore_batch_get(sw_dstore_txn *t, uint64_t number, sw_batch *out);
/* Calls cb for every batch in number order (b borrowed for the call); stops at a non-zero. */
int sw_dstore_batch_each(sw_dstore_txn *t, int (*cb)(const sw_batch *b, void *arg), void *arg);

/* (programme, cycle, file SHA-256) → the batch submitted with that file. */
int sw_dstore_file_put(sw_dstore_txn *t, uint32_t programme, uint32_t cycle,
                       const uint8_t sha[32], uint64_t batch);
int sw_dstore_file_get(sw_dstore_txn *t, uint32_t programme, uint32_t cycle,
                       const uint8_t sha[32], uint64_t *batch);

/* Items of a batch by index from 0. */
int sw_dstore_item_put(sw_dstore_txn *t, uint64_t batch, uint32_t index, const sw_batch_item *it);
int sw_dstore_item_get(sw_dstore_txn *t, uint64_t batch, uint32_t index, sw_batch_item *out);
/* Calls cb(index, item) for the items of batch from index `from`, in order; stops at non-zero. */
int sw_dstore_item_each(sw_dstore_txn *t, uint64_t batch, uint32_t from,
                        int (*cb)(uint32_t index, const sw_batch_item *it, void *arg), void *arg);
/* Deletes every item and status of batch, and its refused rows unless keep_rejects. O(items). */
int sw_dstore_batch_purge(sw_dstore_txn *t, uint64_t batch, int keep_rejects);

/* Rows refused at validation: (batch, line) → reason text. */
int sw_dstore_reject_put(sw_dstore_txn *t, uint64_t batch, uint64_t line, const char *reason);
int sw_dstore_reject_each(sw_dstore_txn *t, uint64_t batch,
                          int (*cb)(uint64_t line, const char *reason, void *arg), void *arg);

/* (programme, cycle, beneficiary token) → (batch, line): who already pays this beneficiary in
 * this cycle. */
int sw_dstore_cycle_get(sw_dstore_txn *t, uint32_t programme, uint32_t cycle,
                        const uint8_t token[32], uint64_t *batch, uint64_t *line);
/* Takes the entry for (batch, line), or SW_DSTORE_E_EXISTS (nothing written) if another holds
 * it. Cheapest when called in token order. */
int sw_dstore_cycle_add(sw_dstore_txn *t, uint32_t programme, uint32_t cycle,
                        const uint8_t token[32], uint64_t batch, uint64_t line);
int sw_dstore_cycle_del(sw_dstore_txn *t, uint32_t programme, uint32_t cycle,
                        const uint8_t token[32]);

/* Item statuses per (batch, cycle, index); a missing one reads as SW_ITEM_PENDING. */
int sw_dstore_status_put(sw_dstore_txn *t, uint64_t batch, uint32_t cycle, uint32_t index,
                         const sw_item_status *st);
int sw_dstore_status_get(sw_dstore_txn *t, uint64_t batch, uint32_t cycle, uint32_t index,
                         sw_item_status *out);

#endif
