/* store.h — the simulated operator's durable state: its own LMDB environment in a data
 * directory, holding
 *   meta     who the operator is and how its wallets were made (participant, MSISDN prefix and
 *            length, wallet count, initial balance, currency), and its counters;
 *   wallets  wallet index → balance, limit, status;
 *   pending  transfer id → a credit or debit whose outcome is not settled yet;
 *   settled  transfer id → the final outcome of each transfer this operator took part in.
 *
 * Changes are collected in an opsim_batch and written by opsim_store_commit() in one LMDB
 * write transaction with the default (synchronous) commit: when it returns 0 they are on disk.
 * A wallet change and the removal of the pending record it settles always travel in the same
 * batch, so a transfer is applied to a wallet at most once, whatever the moment of a crash.
 *
 * A running operator holds an exclusive lock on DIR/opsim.lock (flock), so two processes never
 * drive one data directory; readers (opsim_store_open with readonly) do not take it and may
 * read while it runs.
 */
#ifndef TUMA_ADAPTERS_OPSIM_STORE_H
#define TUMA_ADAPTERS_OPSIM_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct opsim_store opsim_store;

typedef enum opsim_store_error {
  OPSIM_STORE_OK = 0,
  OPSIM_STORE_E_IO = 1,      /* LMDB or the file system failed: see the error text */
  OPSIM_STORE_E_NOMEM = 2,   /* an allocation failed */
  OPSIM_STORE_E_EMPTY = 3,   /* the directory holds no operator yet (opsim_store_create) */
  OPSIM_STORE_E_EXISTS = 4,  /* opsim_store_create on an initialised directory */
  OPSIM_STORE_E_CORRUPT = 5, /* a record of unexpected size or content */
  OPSIM_STORE_E_LOCKED = 6,  /* another process runs on this directory */
} opsim_store_error;

/* A static text for an opsim_store_error; never NULL. */
const char *opsim_store_strerror(int err);

enum { OPSIM_PARTICIPANT_MAX = 64, OPSIM_PREFIX_MAX = 16 };

/* How the wallets were made; fixed at creation. */
typedef struct opsim_meta {
  char participant[OPSIM_PARTICIPANT_MAX]; /* the certificate's participant id */
  char prefix[OPSIM_PREFIX_MAX];           /* MSISDN prefix (msisdn.h) */
  char currency[4];                        /* ISO 4217 alphabetic */
  uint32_t digits;                         /* MSISDN length */
  uint32_t wallets;                        /* count; indexes 0 … wallets-1 */
  uint64_t initial_balance;                /* of each wallet, minor units */
  uint64_t initial_total;                  /* Σ initial balances */
  uint64_t created_ms;                     /* Unix ms */
} opsim_meta;

typedef enum opsim_wallet_status {
  OPSIM_WALLET_ACTIVE = 0,
  OPSIM_WALLET_FROZEN = 1, /* may neither pay nor be paid (5300) */
} opsim_wallet_status;

typedef struct opsim_wallet {
  uint64_t balance; /* minor units; debits reserved for payments in flight are already out */
  uint64_t limit;   /* most the balance may reach, counting what is in flight; UINT64_MAX = none */
  uint32_t status;  /* opsim_wallet_status */
} opsim_wallet;

typedef enum opsim_kind {
  OPSIM_CREDIT = 1, /* this operator is the payee: the wallet gains the amount if committed */
  OPSIM_DEBIT = 2,  /* this operator is the payer: the amount is already taken from the wallet */
} opsim_kind;

enum { OPSIM_PENDING_CONDITION = 1 }; /* flags: the transfer carries a condition */

/* A transfer whose outcome this operator has not settled yet. */
typedef struct opsim_pending {
  uint8_t id[16];
  uint32_t kind;   /* opsim_kind */
  uint32_t wallet; /* index */
  uint32_t flags;
  uint64_t amount;
  uint64_t expiration_ms; /* the transfer's, Unix ms */
  uint64_t created_ms;
} opsim_pending;

/* How a transfer ended for this operator. */
typedef enum opsim_outcome {
  OPSIM_OUTCOME_COMMITTED = 1, /* the switch committed it */
  OPSIM_OUTCOME_ABORTED = 2,   /* the switch aborted it (code says why) */
  OPSIM_OUTCOME_EXPIRED = 3,   /* the switch expired it */
  OPSIM_OUTCOME_UNSENT = 4,    /* a debit never sent (the client refused it): refunded */
  OPSIM_OUTCOME_NOT_FOUND = 5, /* the switch does not know it, after its expiration: released */
} opsim_outcome;

/* A static name ("COMMITTED", …) for an opsim_outcome; never NULL. */
const char *opsim_outcome_name(int outcome);

typedef struct opsim_settled {
  uint8_t id[16];
  uint32_t kind, wallet, outcome, code; /* code: the switch's error code, 0 if none */
  uint64_t amount, settled_ms;
} opsim_settled;

/* The counters kept with the wallets (each changed in the batch that causes it). */
typedef enum opsim_counter {
  OPSIM_C_IN_COMMITTED,        /* credits applied */
  OPSIM_C_IN_COMMITTED_AMOUNT, /* their sum */
  OPSIM_C_IN_ABORTED,          /* accepted by us, aborted by the switch */
  OPSIM_C_IN_EXPIRED,          /* accepted by us, expired at the switch */
  OPSIM_C_IN_NOT_FOUND,        /* accepted by us, unknown to the switch after expiry */
  OPSIM_C_IN_REJECTED,         /* forwards we refused (3204, 5200, 5300, 5105, …) */
  OPSIM_C_OUT_COMMITTED,       /* debits kept */
  OPSIM_C_OUT_COMMITTED_AMOUNT,
  OPSIM_C_OUT_ABORTED, /* debits refunded: aborted */
  OPSIM_C_OUT_EXPIRED, /* refunded: expired */
  OPSIM_C_OUT_UNSENT,  /* refunded: never sent */
  OPSIM_C_OUT_NOT_FOUND,
  OPSIM_COUNTERS
} opsim_counter;

/* The JSON name of a counter ("in_committed", …); never NULL. */
const char *opsim_counter_name(int counter);

/* Changes to write in one transaction. Initialise with opsim_batch_init(), release with
 * opsim_batch_free(). Records are copied in. */
typedef struct opsim_batch_op opsim_batch_op;
typedef struct opsim_batch {
  opsim_batch_op *ops; /* in order */
  size_t nops, capops;
  uint32_t *dirty; /* wallet indexes to write */
  size_t ndirty, capdirty;
  uint8_t *is_dirty; /* per wallet */
  uint32_t nwallets;
  int counters_dirty;
} opsim_batch;

/* Prepares an empty batch for nwallets wallets. Returns 0 or OPSIM_STORE_E_NOMEM. */
int opsim_batch_init(opsim_batch *b, uint32_t nwallets);
void opsim_batch_free(opsim_batch *b);
/* 1 if the batch holds something to write. */
int opsim_batch_pending(const opsim_batch *b);
/* Each returns 0 or OPSIM_STORE_E_NOMEM (the batch is then unchanged). Amortised O(1). */
int opsim_batch_put_pending(opsim_batch *b, const opsim_pending *p);
int opsim_batch_del_pending(opsim_batch *b, const uint8_t id[16]);
int opsim_batch_put_settled(opsim_batch *b, const opsim_settled *s);
int opsim_batch_touch_wallet(opsim_batch *b, uint32_t index); /* its current value is written */
void opsim_batch_touch_counters(opsim_batch *b);

/* Opens (creating the directory and the environment if needed, unless readonly) the store in
 * dir. Not readonly: takes the directory's lock (OPSIM_STORE_E_LOCKED if another process holds
 * it). Returns 0 and *out, or an error with a text in err[errlen]. Close with
 * opsim_store_close(). */
int opsim_store_open(const char *dir, int readonly, opsim_store **out, char *err, size_t errlen);

/* Closes the environment and releases the lock. Accepts NULL. */
void opsim_store_close(opsim_store *s);

/* Reads meta and (counters may be NULL) the counters. OPSIM_STORE_E_EMPTY when the directory
 * holds no operator yet. */
int opsim_store_get_meta(opsim_store *s, opsim_meta *meta, uint64_t counters[OPSIM_COUNTERS]);

/* Initialises an empty store: meta and meta->wallets wallets from wallets[], counters zero, in
 * one transaction. OPSIM_STORE_E_EXISTS if it was initialised already. O(wallets). */
int opsim_store_create(opsim_store *s, const opsim_meta *meta, const opsim_wallet *wallets);

/* Reads the n wallets (n = meta.wallets) into out[n]. O(n). */
int opsim_store_load_wallets(opsim_store *s, opsim_wallet *out, uint32_t n);

/* Calls cb for each pending record (in id order) inside one read transaction; p is borrowed for
 * the call. A non-zero return from cb stops the walk and is returned. */
typedef int (*opsim_pending_cb)(const opsim_pending *p, void *arg);
int opsim_store_each_pending(opsim_store *s, opsim_pending_cb cb, void *arg);

/* The same for the settled records. */
typedef int (*opsim_settled_cb)(const opsim_settled *r, void *arg);
int opsim_store_each_settled(opsim_store *s, opsim_settled_cb cb, void *arg);

/* Writes batch b in one durable write transaction: its operations in order, then the current
 * values wallets[i] of the wallets it touched and, if touched, counters. Grows the map when it
 * is full. On 0 the batch is emptied; on an error nothing was written and the batch is kept.
 * O(size of the batch) plus one fsync. */
int opsim_store_commit(opsim_store *s, opsim_batch *b, const opsim_wallet *wallets,
                       const uint64_t counters[OPSIM_COUNTERS], char *err, size_t errlen);

#endif
