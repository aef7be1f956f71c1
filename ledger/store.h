/* store.h — the ledger's storage layout in LMDB, shared by ledger.c, apply.c and query.c.
 * Internal to ledger/; the public interface is ledger.h.
 *
 * One LMDB environment, named databases. Ids are 16-byte big-endian keys, so byte order is
 * numeric order and time-ordered ids append at the right edge of their B+tree.
 *   meta       "format" → u32 format version
 *   accounts   id → account_static: the account as created, and its number (written once)
 *   balances   number (u64 integer key, dense from 1) → account_state: balances, current
 *              flags, newest transfer. Small rows on pages filled in creation order, so a
 *              batch rewrites few pages however its accounts are spread.
 *   transfers  timestamp (u64 integer key) → transfer_row: the stored transfer, and the
 *              timestamps of the previous transfers of its debit and credit accounts (each
 *              account's transfers form a chain, newest first, that queries walk)
 *   ids        transfer id → u64: its timestamp, or FAILED_BIT | result for an id that failed
 *              with a transient result (24 bytes an entry: the only per-transfer index keyed
 *              by a client-chosen value)
 *   pending    pending transfer timestamp (integer key) → pending_row
 *   expiry     expires_at ‖ timestamp (big endian) → empty: open pending transfers by due time
 *   history    transfer timestamp (integer key) → history_row, for transfers touching an
 *              account with the history flag
 *   journal    seq (integer key) → journal record (journal.h)
 */
#ifndef TUMA_LEDGER_STORE_H
#define TUMA_LEDGER_STORE_H

#include <lmdb.h>
#include <pthread.h>
#include <stdint.h>

#include "journal.h"
#include "ledger.h"

#define STORE_FORMAT_VERSION 2u
#define STORE_FAILED_BIT (1ull << 63)
#define NS_PER_S 1000000000ull

/* One batch touches at most 2 accounts per event and 2 per expiry. */
#define ACCOUNTS_PER_BATCH_MAX (4 * LEDGER_BATCH_MAX)
/* The writer's account cache: slots kept across batches, and its hash index. */
#define CACHE_CAPACITY (1u << 17)
#define CACHE_INDEX_SIZE (1u << 18) /* power of two, 2 × CACHE_CAPACITY */

typedef struct account_static {
  ledger_account account; /* as created: balances zero, flags as given, timestamp set */
  uint64_t number;        /* the key of its balances row */
} account_static;

typedef struct account_state {
  uint64_t debits_pending;
  uint64_t debits_posted;
  uint64_t credits_pending;
  uint64_t credits_posted;
  uint64_t last_transfer_ts; /* newest transfer touching the account, 0 if none */
  uint16_t flags;            /* current flags (closing transfers change `closed`) */
  uint16_t reserved16;
  uint32_t reserved32;
} account_state;

typedef struct transfer_row {
  ledger_transfer transfer;
  uint64_t prev_debit_ts;  /* previous transfer of the debit account */
  uint64_t prev_credit_ts; /* previous transfer of the credit account */
} transfer_row;

typedef struct pending_row {
  uint32_t state; /* ledger_pending_state */
  uint32_t reserved;
  uint64_t resolved_ts;
  uint64_t expires_at; /* 0 = no timeout */
} pending_row;

typedef struct history_row {
  uint64_t debit_balances[4];  /* dp, dpo, cp, cpo of the debit account after the transfer */
  uint64_t credit_balances[4]; /* the same for the credit account */
} history_row;

/* One account in the writer's cache: its current state, as committed plus this batch. */
typedef struct cache_slot {
  ledger_id id;
  ledger_account account; /* static fields, current balances and flags */
  uint64_t number;
  uint64_t last_transfer_ts;
  uint8_t present; /* the account exists (committed, or created in this batch) */
  uint8_t dirty;   /* changed in this batch: written back at its end */
  uint8_t created; /* created in this batch: its static row is written too */
  uint8_t listed;  /* on the batch's dirty list (never undone) */
} cache_slot;

/* Undo log entry: a slot before a change made inside a linked chain. */
typedef struct undo_entry {
  uint32_t slot;
  cache_slot before;
} undo_entry;

struct ledger {
  MDB_env *env;
  MDB_dbi db_meta, db_accounts, db_balances, db_transfers, db_ids, db_pending, db_expiry,
      db_history, db_journal;
  ledger_options opts;
  size_t map_size;
  unsigned read_only;
  pthread_rwlock_t resize_lock; /* read transactions hold it shared; growing the map, exclusive */

  /* Writer state as of the last commit (read from storage at open). */
  uint64_t last_timestamp;
  uint64_t journal_seq;
  uint8_t journal_head[JOURNAL_HASH_SIZE];
  int head_is_checkpoint; /* the last record is a checkpoint (another one would sign nothing new) */
  uint64_t account_count; /* accounts are numbered 1..account_count */

  /* Writer scratch (apply.c), allocated at open, NULL when read-only. */
  cache_slot *slots;
  uint32_t n_slots;
  uint32_t *index; /* CACHE_INDEX_SIZE entries: 0 empty, else slot + 1 */
  uint32_t *dirty; /* slots listed in this batch */
  uint32_t n_dirty;
  uint64_t *sort_keys, *sort_tmp; /* write-back order: number << 32 | slot (radix sorted) */
  undo_entry *undo;
  uint32_t n_undo;
  int in_chain;
  uint64_t batch_account_count;
  ledger_id *expired;
  uint32_t expired_n;
};

/* The stored head of the journal. */
typedef struct journal_head {
  uint64_t seq;
  uint64_t last_timestamp;
  uint8_t hash[JOURNAL_HASH_SIZE];
  int is_checkpoint;
} journal_head;

/* ---- keys */

typedef struct id_key {
  uint8_t b[16];
} id_key;

static inline void store_be64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8)
    p[i] = (uint8_t)v;
}

static inline uint64_t store_read_be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = (v << 8) | p[i];
  return v;
}

static inline id_key store_id_key(ledger_id id) {
  id_key k;
  store_be64(k.b, id.hi);
  store_be64(k.b + 8, id.lo);
  return k;
}

/* ---- shared readers (any transaction); each returns 0, MDB_NOTFOUND or an LMDB error, and
 * MDB_CORRUPTED for a row of the wrong size. */

/* The ids entry of transfer `id` into *value. */
int store_get_id(MDB_txn *txn, const ledger *l, ledger_id id, uint64_t *value);
int store_get_transfer_row(MDB_txn *txn, const ledger *l, uint64_t ts, transfer_row *out);
int store_get_pending_row(MDB_txn *txn, const ledger *l, uint64_t ts, pending_row *out);
/* A transfer by id (MDB_NOTFOUND also for an id that only failed). */
int store_find_transfer(MDB_txn *txn, const ledger *l, ledger_id id, transfer_row *row);
/* An account by id, as it stands: static fields with current balances and flags. number and
 * state may be NULL. */
int store_get_account(MDB_txn *txn, const ledger *l, ledger_id id, ledger_account *out,
                      uint64_t *number, account_state *state);
/* The journal head as stored. */
int store_read_head(MDB_txn *txn, const ledger *l, journal_head *h);

/* Maps an LMDB or errno code to a ledger_error. */
int store_error(int mdb_rc);

#endif
