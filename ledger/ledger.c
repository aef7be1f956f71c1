/* ledger.c — the double-entry ledger on LMDB: storage layout, batch apply, queries.
 *
 * Storage (one LMDB environment, named databases; ids as 16-byte big-endian keys so that
 * byte order is numeric order and time-ordered ids append at the right edge):
 *   meta       "format" → u32 format version
 *   accounts   id → account_row (the 128-byte account + the timestamp of its newest transfer)
 *   transfers  timestamp (u64, integer key) → transfer_row (the 128-byte transfer + the
 *              timestamps of the previous transfers of its debit and credit accounts: each
 *              account's transfers form a chain, newest first, that queries walk)
 *   ids        transfer id → u64: the transfer's timestamp, or FAILED_BIT | result for an id
 *              that failed transiently (kept small: 24 bytes an entry)
 *   pending    pending transfer timestamp (integer key) → pending_row (state, resolution)
 *   expiry     expires_at ‖ timestamp (big endian) → nothing: pending transfers by due time
 *   history    transfer timestamp (integer key) → both accounts' balances after it, for
 *              transfers touching an account with the history flag
 *   journal    seq (integer key) → record (journal.h)
 *
 * One batch = one write transaction: expire due pending transfers, apply events through a
 * batch-local account cache (each account read and written once per batch), append the
 * journal record, commit with sync. Linked chains run in a nested transaction plus an undo
 * log of the cache, so a failed chain leaves no trace.
 */
#include "ledger.h"

#include <errno.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "journal.h"

#define FORMAT_VERSION 1u
#define FAILED_BIT (1ull << 63)
#define DEFAULT_MAP_SIZE (64ull << 20)
#define DEFAULT_MAP_SIZE_MAX (1ull << 40)
#define NS_PER_S 1000000000ull
/* One batch touches at most 2 accounts per event and 2 per expiry. */
#define ACCOUNTS_PER_BATCH_MAX (4 * LEDGER_BATCH_MAX)
#define CACHE_SLOTS 65536 /* power of two, about 2 × ACCOUNTS_PER_BATCH_MAX */

#define ACCOUNT_FLAGS_KNOWN                                                                        \
  (LEDGER_ACCOUNT_LINKED | LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS |                         \
   LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS | LEDGER_ACCOUNT_HISTORY)
#define TRANSFER_FLAGS_KNOWN 0xffu

_Static_assert(sizeof(ledger_account) == 128, "account layout");
_Static_assert(sizeof(ledger_transfer) == 128, "transfer layout");

typedef struct account_row {
  ledger_account account;
  uint64_t last_transfer_ts; /* newest transfer touching this account, 0 if none */
} account_row;

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

typedef struct id_key {
  uint8_t b[16];
} id_key;

/* One slot of the batch-local account cache. */
typedef struct cache_slot {
  ledger_id id;
  account_row row;
  uint8_t used;    /* slot holds an id */
  uint8_t present; /* the account exists (loaded or created in this batch) */
  uint8_t dirty;   /* must be written back */
} cache_slot;

/* Undo log entry: a slot's content before a change made inside a linked chain. */
typedef struct undo_entry {
  uint32_t slot;
  account_row row;
  uint8_t present;
  uint8_t dirty;
} undo_entry;

struct ledger {
  MDB_env *env;
  MDB_dbi db_meta, db_accounts, db_transfers, db_ids, db_pending, db_expiry, db_history,
      db_journal;
  ledger_options opts;
  size_t map_size;
  unsigned read_only;
  pthread_rwlock_t resize_lock; /* readers hold it shared; growing the map takes it exclusive */
  char *dir;

  /* Writer state, as of the last commit (derived from the journal head at open). */
  uint64_t last_timestamp;
  uint64_t journal_seq;
  uint8_t journal_head[JOURNAL_HASH_SIZE];

  /* Batch scratch, allocated once. */
  cache_slot *cache;
  uint32_t *cache_used; /* indices of used slots */
  uint32_t cache_used_n;
  undo_entry *undo;
  uint32_t undo_n;
  int in_chain;
  ledger_id *expired;
  uint32_t expired_n;
};

/* The write context of one batch. */
typedef struct batch {
  ledger *l;
  MDB_txn *txn; /* the batch's transaction, or the nested one of a running chain */
  int err;      /* first LMDB error; the batch fails with it */
} batch;

/* ---------------------------------------------------------------- names and errors */

static const char *const result_names[LEDGER_RESULT_COUNT_] = {
    "ok",
    "linked_event_failed",
    "linked_event_chain_open",
    "timestamp_must_be_zero",
    "reserved_field",
    "reserved_flag",
    "id_must_not_be_zero",
    "id_must_not_be_int_max",
    "unknown_event_kind",
    "flags_are_mutually_exclusive",
    "debits_pending_must_be_zero",
    "debits_posted_must_be_zero",
    "credits_pending_must_be_zero",
    "credits_posted_must_be_zero",
    "ledger_must_not_be_zero",
    "code_must_not_be_zero",
    "exists_with_different_flags",
    "exists_with_different_pending_id",
    "exists_with_different_timeout",
    "exists_with_different_debit_account_id",
    "exists_with_different_credit_account_id",
    "exists_with_different_amount",
    "exists_with_different_user_data_128",
    "exists_with_different_user_data_64",
    "exists_with_different_user_data_32",
    "exists_with_different_ledger",
    "exists_with_different_code",
    "exists",
    "id_already_failed",
    "pending_id_must_not_be_zero",
    "pending_id_must_not_be_int_max",
    "pending_id_must_be_different",
    "timeout_reserved_for_pending_transfer",
    "pending_transfer_not_found",
    "pending_transfer_not_pending",
    "pending_transfer_has_different_debit_account_id",
    "pending_transfer_has_different_credit_account_id",
    "pending_transfer_has_different_ledger",
    "pending_transfer_has_different_code",
    "exceeds_pending_transfer_amount",
    "pending_transfer_has_different_amount",
    "pending_transfer_already_posted",
    "pending_transfer_already_voided",
    "pending_transfer_expired",
    "pending_id_must_be_zero",
    "debit_account_id_must_not_be_zero",
    "debit_account_id_must_not_be_int_max",
    "credit_account_id_must_not_be_zero",
    "credit_account_id_must_not_be_int_max",
    "accounts_must_be_different",
    "amount_must_not_be_zero",
    "debit_account_not_found",
    "credit_account_not_found",
    "accounts_must_have_the_same_ledger",
    "transfer_must_have_the_same_ledger_as_accounts",
    "debit_account_already_closed",
    "credit_account_already_closed",
    "overflows_debits_pending",
    "overflows_credits_pending",
    "overflows_debits_posted",
    "overflows_credits_posted",
    "overflows_debits",
    "overflows_credits",
    "overflows_timeout",
    "exceeds_credits",
    "exceeds_debits",
    "batch_storage_full",
    "batch_storage_error",
};

const char *ledger_result_name(ledger_result r) {
  if ((unsigned)r >= LEDGER_RESULT_COUNT_)
    return "unknown_result";
  return result_names[r];
}

int ledger_result_is_success(ledger_result r) { return r == LEDGER_OK || r == LEDGER_EXISTS; }

const char *ledger_strerror(int err) {
  switch (err) {
  case LEDGER_E_OK: return "ok";
  case LEDGER_E_NOMEM: return "out of memory";
  case LEDGER_E_INVAL: return "invalid argument";
  case LEDGER_E_NOTFOUND: return "not found";
  case LEDGER_E_AGAIN: return "queue full (would block)";
  case LEDGER_E_FULL: return "storage full (map size limit or disk)";
  case LEDGER_E_IO: return "storage I/O error; the batch was not committed";
  case LEDGER_E_CORRUPT: return "journal record does not verify";
  case LEDGER_E_VERSION: return "data directory has another format version";
  case LEDGER_E_CLOSED: return "queue is closed";
  case LEDGER_E_LMDB: return "LMDB error";
  default: return "unknown ledger error";
  }
}

/* Whether a failed transfer's id is remembered (its result depended on changeable state). */
static int result_is_transient(ledger_result r) {
  switch (r) {
  case LEDGER_PENDING_TRANSFER_NOT_FOUND:
  case LEDGER_DEBIT_ACCOUNT_NOT_FOUND:
  case LEDGER_CREDIT_ACCOUNT_NOT_FOUND:
  case LEDGER_DEBIT_ACCOUNT_ALREADY_CLOSED:
  case LEDGER_CREDIT_ACCOUNT_ALREADY_CLOSED:
  case LEDGER_OVERFLOWS_DEBITS_PENDING:
  case LEDGER_OVERFLOWS_CREDITS_PENDING:
  case LEDGER_OVERFLOWS_DEBITS_POSTED:
  case LEDGER_OVERFLOWS_CREDITS_POSTED:
  case LEDGER_OVERFLOWS_DEBITS:
  case LEDGER_OVERFLOWS_CREDITS:
  case LEDGER_EXCEEDS_CREDITS:
  case LEDGER_EXCEEDS_DEBITS: return 1;
  default: return 0;
  }
}

static int map_mdb_error(int rc) {
  switch (rc) {
  case 0: return 0;
  case MDB_NOTFOUND: return LEDGER_E_NOTFOUND;
  case MDB_MAP_FULL:
  case ENOSPC:
  case EDQUOT: return LEDGER_E_FULL;
  case ENOMEM: return LEDGER_E_NOMEM;
  case EIO:
  case MDB_PANIC: return LEDGER_E_IO;
  case MDB_VERSION_MISMATCH:
  case MDB_INVALID: return LEDGER_E_VERSION;
  case MDB_CORRUPTED: return LEDGER_E_CORRUPT;
  default: return rc > 0 ? LEDGER_E_IO : LEDGER_E_LMDB;
  }
}

/* ---------------------------------------------------------------- keys and small helpers */

static void be64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8)
    p[i] = (uint8_t)v;
}

static id_key key_of(ledger_id id) {
  id_key k;
  be64(k.b, id.hi);
  be64(k.b + 8, id.lo);
  return k;
}

static int id_is_max(ledger_id id) { return id.lo == UINT64_MAX && id.hi == UINT64_MAX; }

static uint64_t clock_realtime_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static uint64_t ledger_now(const ledger *l) {
  return l->opts.clock ? l->opts.clock(l->opts.clock_arg) : clock_realtime_ns();
}

uint64_t ledger_time(const ledger *l) { return ledger_now(l); }

static int is_zero_bytes(const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i])
      return 0;
  return 1;
}

static void balances_of(const ledger_account *a, uint64_t out[4]) {
  out[0] = a->debits_pending;
  out[1] = a->debits_posted;
  out[2] = a->credits_pending;
  out[3] = a->credits_posted;
}

/* ---------------------------------------------------------------- low-level LMDB access */

static int get_u64_key(MDB_txn *txn, MDB_dbi dbi, uint64_t key, MDB_val *val) {
  MDB_val k = {sizeof key, &key};
  return mdb_get(txn, dbi, &k, val);
}

static int put_u64_key(batch *b, MDB_dbi dbi, uint64_t key, const void *val, size_t len,
                       unsigned flags) {
  MDB_val k = {sizeof key, &key}, v = {len, (void *)val};
  int rc = mdb_put(b->txn, dbi, &k, &v, flags);
  if (rc && !b->err)
    b->err = rc;
  return rc;
}

static int put_id_key(batch *b, MDB_dbi dbi, ledger_id id, const void *val, size_t len) {
  id_key key = key_of(id);
  MDB_val k = {sizeof key, key.b}, v = {len, (void *)val};
  int rc = mdb_put(b->txn, dbi, &k, &v, 0);
  if (rc && !b->err)
    b->err = rc;
  return rc;
}

/* The ids entry of a transfer id: 0 found (*value set), MDB_NOTFOUND, or an error. */
static int get_id_entry(MDB_txn *txn, const ledger *l, ledger_id id, uint64_t *value) {
  id_key key = key_of(id);
  MDB_val k = {sizeof key, key.b}, v;
  int rc = mdb_get(txn, l->db_ids, &k, &v);
  if (rc)
    return rc;
  if (v.mv_size != sizeof *value)
    return MDB_CORRUPTED;
  memcpy(value, v.mv_data, sizeof *value);
  return 0;
}

static int get_transfer_row(MDB_txn *txn, const ledger *l, uint64_t ts, transfer_row *out) {
  MDB_val v;
  int rc = get_u64_key(txn, l->db_transfers, ts, &v);
  if (rc)
    return rc;
  if (v.mv_size != sizeof *out)
    return MDB_CORRUPTED;
  memcpy(out, v.mv_data, sizeof *out);
  return 0;
}

static int get_pending_row(MDB_txn *txn, const ledger *l, uint64_t ts, pending_row *out) {
  MDB_val v;
  int rc = get_u64_key(txn, l->db_pending, ts, &v);
  if (rc)
    return rc;
  if (v.mv_size != sizeof *out)
    return MDB_CORRUPTED;
  memcpy(out, v.mv_data, sizeof *out);
  return 0;
}

/* Looks a transfer up by id: 0 (row set), MDB_NOTFOUND (also for failed ids), or an error. */
static int find_transfer(MDB_txn *txn, const ledger *l, ledger_id id, transfer_row *row) {
  uint64_t v;
  int rc = get_id_entry(txn, l, id, &v);
  if (rc)
    return rc;
  if (v & FAILED_BIT)
    return MDB_NOTFOUND;
  return get_transfer_row(txn, l, v, row);
}

static void expiry_key(uint8_t out[16], uint64_t expires_at, uint64_t ts) {
  be64(out, expires_at);
  be64(out + 8, ts);
}

/* ---------------------------------------------------------------- the batch account cache */

static uint32_t cache_hash(ledger_id id) {
  uint64_t h = id.lo * 0x9e3779b97f4a7c15ull ^ id.hi * 0xc2b2ae3d27d4eb4full;
  h ^= h >> 29;
  return (uint32_t)h & (CACHE_SLOTS - 1);
}

static void cache_reset(ledger *l) {
  for (uint32_t i = 0; i < l->cache_used_n; i++)
    l->cache[l->cache_used[i]].used = 0;
  l->cache_used_n = 0;
  l->undo_n = 0;
  l->in_chain = 0;
}

/* The slot of account `id`, loading it from LMDB on first use in the batch. Returns NULL
 * only on an LMDB error (recorded in b->err); check slot->present for existence. */
static cache_slot *cache_get(batch *b, ledger_id id) {
  ledger *l = b->l;
  uint32_t i = cache_hash(id);
  while (l->cache[i].used) {
    if (ledger_id_eq(l->cache[i].id, id))
      return &l->cache[i];
    i = (i + 1) & (CACHE_SLOTS - 1);
  }
  cache_slot *s = &l->cache[i];
  id_key key = key_of(id);
  MDB_val k = {sizeof key, key.b}, v;
  int rc = mdb_get(b->txn, l->db_accounts, &k, &v);
  if (rc && rc != MDB_NOTFOUND) {
    if (!b->err)
      b->err = rc;
    return NULL;
  }
  if (!rc && v.mv_size != sizeof(account_row)) {
    if (!b->err)
      b->err = MDB_CORRUPTED;
    return NULL;
  }
  s->used = 1;
  s->id = id;
  s->dirty = 0;
  s->present = rc == 0;
  if (s->present)
    memcpy(&s->row, v.mv_data, sizeof s->row);
  l->cache_used[l->cache_used_n++] = i;
  return s;
}

/* Records a slot's state before it changes, when inside a linked chain. */
static void cache_will_change(ledger *l, cache_slot *s) {
  if (!l->in_chain)
    return;
  undo_entry *u = &l->undo[l->undo_n++];
  u->slot = (uint32_t)(s - l->cache);
  u->row = s->row;
  u->present = s->present;
  u->dirty = s->dirty;
}

static void cache_undo(ledger *l) {
  while (l->undo_n > 0) {
    undo_entry *u = &l->undo[--l->undo_n];
    cache_slot *s = &l->cache[u->slot];
    s->row = u->row;
    s->present = u->present;
    s->dirty = u->dirty;
  }
}

static int compare_slots_by_key(const void *a, const void *b, void *arg) {
  const cache_slot *cache = arg;
  ledger_id x = cache[*(const uint32_t *)a].id, y = cache[*(const uint32_t *)b].id;
  if (x.hi != y.hi)
    return x.hi < y.hi ? -1 : 1;
  if (x.lo != y.lo)
    return x.lo < y.lo ? -1 : 1;
  return 0;
}

/* Writes every changed account back, in key order (B-tree friendly). */
static void cache_flush(batch *b) {
  ledger *l = b->l;
  qsort_r(l->cache_used, l->cache_used_n, sizeof *l->cache_used, compare_slots_by_key, l->cache);
  for (uint32_t i = 0; i < l->cache_used_n && !b->err; i++) {
    cache_slot *s = &l->cache[l->cache_used[i]];
    if (s->dirty && s->present)
      put_id_key(b, l->db_accounts, s->id, &s->row, sizeof s->row);
  }
}

/* ---------------------------------------------------------------- accounts */

static ledger_result create_account_exists(const ledger_account *a, const ledger_account *e) {
  if ((a->flags & ~LEDGER_ACCOUNT_CLOSED) != (e->flags & ~LEDGER_ACCOUNT_CLOSED))
    return LEDGER_EXISTS_WITH_DIFFERENT_FLAGS;
  if (!ledger_id_eq(a->user_data_128, e->user_data_128))
    return LEDGER_EXISTS_WITH_DIFFERENT_USER_DATA_128;
  if (a->user_data_64 != e->user_data_64)
    return LEDGER_EXISTS_WITH_DIFFERENT_USER_DATA_64;
  if (a->user_data_32 != e->user_data_32)
    return LEDGER_EXISTS_WITH_DIFFERENT_USER_DATA_32;
  if (a->ledger != e->ledger)
    return LEDGER_EXISTS_WITH_DIFFERENT_LEDGER;
  if (a->code != e->code)
    return LEDGER_EXISTS_WITH_DIFFERENT_CODE;
  return LEDGER_EXISTS;
}

static ledger_result create_account(batch *b, const ledger_account *a, uint64_t ts) {
  if (a->timestamp)
    return LEDGER_TIMESTAMP_MUST_BE_ZERO;
  if (a->reserved || !is_zero_bytes(a->padding, sizeof a->padding))
    return LEDGER_RESERVED_FIELD;
  if (a->flags & ~ACCOUNT_FLAGS_KNOWN)
    return LEDGER_RESERVED_FLAG;
  if (ledger_id_is_zero(a->id))
    return LEDGER_ID_MUST_NOT_BE_ZERO;
  if (id_is_max(a->id))
    return LEDGER_ID_MUST_NOT_BE_INT_MAX;
  if ((a->flags & LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) &&
      (a->flags & LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS))
    return LEDGER_FLAGS_ARE_MUTUALLY_EXCLUSIVE;
  if (a->debits_pending)
    return LEDGER_DEBITS_PENDING_MUST_BE_ZERO;
  if (a->debits_posted)
    return LEDGER_DEBITS_POSTED_MUST_BE_ZERO;
  if (a->credits_pending)
    return LEDGER_CREDITS_PENDING_MUST_BE_ZERO;
  if (a->credits_posted)
    return LEDGER_CREDITS_POSTED_MUST_BE_ZERO;
  if (!a->ledger)
    return LEDGER_LEDGER_MUST_NOT_BE_ZERO;
  if (!a->code)
    return LEDGER_CODE_MUST_NOT_BE_ZERO;

  cache_slot *s = cache_get(b, a->id);
  if (!s)
    return LEDGER_BATCH_STORAGE_ERROR;
  if (s->present)
    return create_account_exists(a, &s->row.account);
  cache_will_change(b->l, s);
  memset(&s->row, 0, sizeof s->row);
  s->row.account = *a;
  s->row.account.timestamp = ts;
  s->present = 1;
  s->dirty = 1;
  return LEDGER_OK;
}

/* ---------------------------------------------------------------- transfers */

static int is_post_or_void(const ledger_transfer *t) {
  return (t->flags & (LEDGER_TRANSFER_POST_PENDING | LEDGER_TRANSFER_VOID_PENDING)) != 0;
}

static ledger_result create_transfer_exists(const ledger_transfer *t, const ledger_transfer *e) {
  int resolves = is_post_or_void(t);
  if (t->flags != e->flags)
    return LEDGER_EXISTS_WITH_DIFFERENT_FLAGS;
  if (!ledger_id_eq(t->pending_id, e->pending_id))
    return LEDGER_EXISTS_WITH_DIFFERENT_PENDING_ID;
  if (t->timeout != e->timeout)
    return LEDGER_EXISTS_WITH_DIFFERENT_TIMEOUT;
  if ((!resolves || !ledger_id_is_zero(t->debit_account_id)) &&
      !ledger_id_eq(t->debit_account_id, e->debit_account_id))
    return LEDGER_EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID;
  if ((!resolves || !ledger_id_is_zero(t->credit_account_id)) &&
      !ledger_id_eq(t->credit_account_id, e->credit_account_id))
    return LEDGER_EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID;
  if (t->flags & (LEDGER_TRANSFER_BALANCING_DEBIT | LEDGER_TRANSFER_BALANCING_CREDIT)) {
    if (t->amount < e->amount)
      return LEDGER_EXISTS_WITH_DIFFERENT_AMOUNT;
  } else if ((!resolves || t->amount != 0) && t->amount != e->amount) {
    return LEDGER_EXISTS_WITH_DIFFERENT_AMOUNT;
  }
  if (!ledger_id_eq(t->user_data_128, e->user_data_128))
    return LEDGER_EXISTS_WITH_DIFFERENT_USER_DATA_128;
  if (t->user_data_64 != e->user_data_64)
    return LEDGER_EXISTS_WITH_DIFFERENT_USER_DATA_64;
  if (t->user_data_32 != e->user_data_32)
    return LEDGER_EXISTS_WITH_DIFFERENT_USER_DATA_32;
  if ((!resolves || t->ledger) && t->ledger != e->ledger)
    return LEDGER_EXISTS_WITH_DIFFERENT_LEDGER;
  if ((!resolves || t->code) && t->code != e->code)
    return LEDGER_EXISTS_WITH_DIFFERENT_CODE;
  return LEDGER_EXISTS;
}

static int add_overflows(uint64_t a, uint64_t b) {
  uint64_t sum;
  return __builtin_add_overflow(a, b, &sum);
}

/* Stores a created transfer: its row (linking it into both accounts' chains), its id, and
 * its history snapshot when either account keeps history. Accounts already updated. */
static void store_transfer(batch *b, const ledger_transfer *t, cache_slot *dr, cache_slot *cr) {
  ledger *l = b->l;
  transfer_row row;
  row.transfer = *t;
  row.prev_debit_ts = dr->row.last_transfer_ts;
  row.prev_credit_ts = cr->row.last_transfer_ts;
  dr->row.last_transfer_ts = t->timestamp;
  cr->row.last_transfer_ts = t->timestamp;
  dr->dirty = cr->dirty = 1;
  put_u64_key(b, l->db_transfers, t->timestamp, &row, sizeof row, MDB_APPEND);
  put_id_key(b, l->db_ids, t->id, &t->timestamp, sizeof t->timestamp);
  if ((dr->row.account.flags | cr->row.account.flags) & LEDGER_ACCOUNT_HISTORY) {
    history_row h;
    balances_of(&dr->row.account, h.debit_balances);
    balances_of(&cr->row.account, h.credit_balances);
    put_u64_key(b, l->db_history, t->timestamp, &h, sizeof h, MDB_APPEND);
  }
}

static ledger_result post_or_void(batch *b, const ledger_transfer *t, uint64_t ts) {
  ledger *l = b->l;
  int post = (t->flags & LEDGER_TRANSFER_POST_PENDING) != 0;
  if (ledger_id_is_zero(t->pending_id))
    return LEDGER_PENDING_ID_MUST_NOT_BE_ZERO;
  if (id_is_max(t->pending_id))
    return LEDGER_PENDING_ID_MUST_NOT_BE_INT_MAX;
  if (ledger_id_eq(t->pending_id, t->id))
    return LEDGER_PENDING_ID_MUST_BE_DIFFERENT;
  if (t->timeout)
    return LEDGER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER;

  transfer_row prow;
  int rc = find_transfer(b->txn, l, t->pending_id, &prow);
  if (rc == MDB_NOTFOUND)
    return LEDGER_PENDING_TRANSFER_NOT_FOUND;
  if (rc) {
    b->err = b->err ? b->err : rc;
    return LEDGER_BATCH_STORAGE_ERROR;
  }
  const ledger_transfer *p = &prow.transfer;
  if (!(p->flags & LEDGER_TRANSFER_PENDING))
    return LEDGER_PENDING_TRANSFER_NOT_PENDING;
  if (!ledger_id_is_zero(t->debit_account_id) &&
      !ledger_id_eq(t->debit_account_id, p->debit_account_id))
    return LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID;
  if (!ledger_id_is_zero(t->credit_account_id) &&
      !ledger_id_eq(t->credit_account_id, p->credit_account_id))
    return LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID;
  if (t->ledger && t->ledger != p->ledger)
    return LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_LEDGER;
  if (t->code && t->code != p->code)
    return LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_CODE;
  uint64_t amount = p->amount;
  if (post) {
    if (t->amount > p->amount)
      return LEDGER_EXCEEDS_PENDING_TRANSFER_AMOUNT;
    if (t->amount)
      amount = t->amount;
  } else if (t->amount && t->amount != p->amount) {
    return LEDGER_PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT;
  }

  pending_row pr;
  rc = get_pending_row(b->txn, l, p->timestamp, &pr);
  if (rc) {
    b->err = b->err ? b->err : (rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc);
    return LEDGER_BATCH_STORAGE_ERROR;
  }
  if (pr.state == LEDGER_PENDING_POSTED)
    return LEDGER_PENDING_TRANSFER_ALREADY_POSTED;
  if (pr.state == LEDGER_PENDING_VOIDED)
    return LEDGER_PENDING_TRANSFER_ALREADY_VOIDED;
  if (pr.state == LEDGER_PENDING_EXPIRED || (pr.expires_at && pr.expires_at <= ts))
    return LEDGER_PENDING_TRANSFER_EXPIRED;

  cache_slot *dr = cache_get(b, p->debit_account_id);
  cache_slot *cr = dr ? cache_get(b, p->credit_account_id) : NULL;
  if (!dr || !cr || !dr->present || !cr->present) {
    b->err = b->err ? b->err : MDB_CORRUPTED;
    return LEDGER_BATCH_STORAGE_ERROR;
  }
  ledger_account *d = &dr->row.account, *c = &cr->row.account;
  if (post && add_overflows(d->debits_posted, amount))
    return LEDGER_OVERFLOWS_DEBITS_POSTED;
  if (post && add_overflows(c->credits_posted, amount))
    return LEDGER_OVERFLOWS_CREDITS_POSTED;

  cache_will_change(l, dr);
  cache_will_change(l, cr);
  d->debits_pending -= p->amount;
  c->credits_pending -= p->amount;
  if (post) {
    d->debits_posted += amount;
    c->credits_posted += amount;
  } else {
    if (p->flags & LEDGER_TRANSFER_CLOSING_DEBIT)
      d->flags &= (uint16_t)~LEDGER_ACCOUNT_CLOSED;
    if (p->flags & LEDGER_TRANSFER_CLOSING_CREDIT)
      c->flags &= (uint16_t)~LEDGER_ACCOUNT_CLOSED;
  }

  ledger_transfer stored = *t;
  stored.debit_account_id = p->debit_account_id;
  stored.credit_account_id = p->credit_account_id;
  stored.ledger = p->ledger;
  stored.code = p->code;
  stored.amount = amount;
  stored.timestamp = ts;
  store_transfer(b, &stored, dr, cr);

  pr.state = post ? LEDGER_PENDING_POSTED : LEDGER_PENDING_VOIDED;
  pr.resolved_ts = ts;
  put_u64_key(b, l->db_pending, p->timestamp, &pr, sizeof pr, 0);
  if (pr.expires_at) {
    uint8_t ek[16];
    expiry_key(ek, pr.expires_at, p->timestamp);
    MDB_val k = {sizeof ek, ek};
    rc = mdb_del(b->txn, l->db_expiry, &k, NULL);
    if (rc && !b->err)
      b->err = rc;
  }
  return LEDGER_OK;
}

static ledger_result create_transfer(batch *b, const ledger_transfer *t, uint64_t ts) {
  ledger *l = b->l;
  if (t->timestamp)
    return LEDGER_TIMESTAMP_MUST_BE_ZERO;
  if (t->reserved)
    return LEDGER_RESERVED_FIELD;
  if (t->flags & ~TRANSFER_FLAGS_KNOWN)
    return LEDGER_RESERVED_FLAG;
  if (ledger_id_is_zero(t->id))
    return LEDGER_ID_MUST_NOT_BE_ZERO;
  if (id_is_max(t->id))
    return LEDGER_ID_MUST_NOT_BE_INT_MAX;

  uint64_t idv;
  int rc = get_id_entry(b->txn, l, t->id, &idv);
  if (rc == 0 && (idv & FAILED_BIT))
    return LEDGER_ID_ALREADY_FAILED;
  if (rc == 0) {
    transfer_row e;
    rc = get_transfer_row(b->txn, l, idv, &e);
    if (rc == 0)
      return create_transfer_exists(t, &e.transfer);
  }
  if (rc != MDB_NOTFOUND) {
    b->err = b->err ? b->err : rc;
    return LEDGER_BATCH_STORAGE_ERROR;
  }

  uint16_t f = t->flags;
  int phases = !!(f & LEDGER_TRANSFER_PENDING) + !!(f & LEDGER_TRANSFER_POST_PENDING) +
               !!(f & LEDGER_TRANSFER_VOID_PENDING);
  uint16_t extras = LEDGER_TRANSFER_BALANCING_DEBIT | LEDGER_TRANSFER_BALANCING_CREDIT |
                    LEDGER_TRANSFER_CLOSING_DEBIT | LEDGER_TRANSFER_CLOSING_CREDIT;
  uint16_t closing = LEDGER_TRANSFER_CLOSING_DEBIT | LEDGER_TRANSFER_CLOSING_CREDIT;
  if (phases > 1 || (is_post_or_void(t) && (f & extras)) ||
      ((f & closing) && !(f & LEDGER_TRANSFER_PENDING)))
    return LEDGER_FLAGS_ARE_MUTUALLY_EXCLUSIVE;
  if (is_post_or_void(t))
    return post_or_void(b, t, ts);

  int pending = (f & LEDGER_TRANSFER_PENDING) != 0;
  int balancing = (f & (LEDGER_TRANSFER_BALANCING_DEBIT | LEDGER_TRANSFER_BALANCING_CREDIT)) != 0;
  if (!ledger_id_is_zero(t->pending_id))
    return LEDGER_PENDING_ID_MUST_BE_ZERO;
  if (ledger_id_is_zero(t->debit_account_id))
    return LEDGER_DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO;
  if (id_is_max(t->debit_account_id))
    return LEDGER_DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX;
  if (ledger_id_is_zero(t->credit_account_id))
    return LEDGER_CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO;
  if (id_is_max(t->credit_account_id))
    return LEDGER_CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX;
  if (ledger_id_eq(t->debit_account_id, t->credit_account_id))
    return LEDGER_ACCOUNTS_MUST_BE_DIFFERENT;
  if (t->timeout && !pending)
    return LEDGER_TIMEOUT_RESERVED_FOR_PENDING_TRANSFER;
  if (!t->amount && !balancing)
    return LEDGER_AMOUNT_MUST_NOT_BE_ZERO;
  if (!t->ledger)
    return LEDGER_LEDGER_MUST_NOT_BE_ZERO;
  if (!t->code)
    return LEDGER_CODE_MUST_NOT_BE_ZERO;

  cache_slot *dr = cache_get(b, t->debit_account_id);
  if (!dr)
    return LEDGER_BATCH_STORAGE_ERROR;
  if (!dr->present)
    return LEDGER_DEBIT_ACCOUNT_NOT_FOUND;
  cache_slot *cr = cache_get(b, t->credit_account_id);
  if (!cr)
    return LEDGER_BATCH_STORAGE_ERROR;
  if (!cr->present)
    return LEDGER_CREDIT_ACCOUNT_NOT_FOUND;
  ledger_account *d = &dr->row.account, *c = &cr->row.account;
  if (d->ledger != c->ledger)
    return LEDGER_ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER;
  if (t->ledger != d->ledger)
    return LEDGER_TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS;
  if (d->flags & LEDGER_ACCOUNT_CLOSED)
    return LEDGER_DEBIT_ACCOUNT_ALREADY_CLOSED;
  if (c->flags & LEDGER_ACCOUNT_CLOSED)
    return LEDGER_CREDIT_ACCOUNT_ALREADY_CLOSED;

  uint64_t amount = t->amount, used;
  if (f & LEDGER_TRANSFER_BALANCING_DEBIT) {
    uint64_t avail = 0;
    if (!__builtin_add_overflow(d->debits_pending, d->debits_posted, &used) &&
        used < d->credits_posted)
      avail = d->credits_posted - used;
    amount = amount < avail ? amount : avail;
  }
  if (f & LEDGER_TRANSFER_BALANCING_CREDIT) {
    uint64_t avail = 0;
    if (!__builtin_add_overflow(c->credits_pending, c->credits_posted, &used) &&
        used < c->debits_posted)
      avail = c->debits_posted - used;
    amount = amount < avail ? amount : avail;
  }

  if (pending && add_overflows(d->debits_pending, amount))
    return LEDGER_OVERFLOWS_DEBITS_PENDING;
  if (pending && add_overflows(c->credits_pending, amount))
    return LEDGER_OVERFLOWS_CREDITS_PENDING;
  if (!pending && add_overflows(d->debits_posted, amount))
    return LEDGER_OVERFLOWS_DEBITS_POSTED;
  if (!pending && add_overflows(c->credits_posted, amount))
    return LEDGER_OVERFLOWS_CREDITS_POSTED;
  uint64_t d_total, c_total;
  if (__builtin_add_overflow(d->debits_pending, d->debits_posted, &d_total) ||
      add_overflows(d_total, amount))
    return LEDGER_OVERFLOWS_DEBITS;
  if (__builtin_add_overflow(c->credits_pending, c->credits_posted, &c_total) ||
      add_overflows(c_total, amount))
    return LEDGER_OVERFLOWS_CREDITS;
  uint64_t expires_at = 0;
  if (pending && t->timeout &&
      __builtin_add_overflow(ts, (uint64_t)t->timeout * NS_PER_S, &expires_at))
    return LEDGER_OVERFLOWS_TIMEOUT;
  if ((d->flags & LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) &&
      d_total + amount > d->credits_posted)
    return LEDGER_EXCEEDS_CREDITS;
  if ((c->flags & LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS) &&
      c_total + amount > c->debits_posted)
    return LEDGER_EXCEEDS_DEBITS;

  cache_will_change(l, dr);
  cache_will_change(l, cr);
  if (pending) {
    d->debits_pending += amount;
    c->credits_pending += amount;
    if (f & LEDGER_TRANSFER_CLOSING_DEBIT)
      d->flags |= LEDGER_ACCOUNT_CLOSED;
    if (f & LEDGER_TRANSFER_CLOSING_CREDIT)
      c->flags |= LEDGER_ACCOUNT_CLOSED;
  } else {
    d->debits_posted += amount;
    c->credits_posted += amount;
  }
  ledger_transfer stored = *t;
  stored.amount = amount;
  stored.timestamp = ts;
  store_transfer(b, &stored, dr, cr);
  if (pending) {
    pending_row pr = {LEDGER_PENDING_OPEN, 0, 0, expires_at};
    put_u64_key(b, l->db_pending, ts, &pr, sizeof pr, MDB_APPEND);
    if (expires_at) {
      uint8_t ek[16];
      expiry_key(ek, expires_at, ts);
      MDB_val k = {sizeof ek, ek}, v = {0, NULL};
      rc = mdb_put(b->txn, l->db_expiry, &k, &v, 0);
      if (rc && !b->err)
        b->err = rc;
    }
  }
  return LEDGER_OK;
}

static ledger_result apply_event(batch *b, const ledger_event *ev, uint64_t ts) {
  switch (ev->kind) {
  case LEDGER_EVENT_CREATE_ACCOUNT: return create_account(b, &ev->account, ts);
  case LEDGER_EVENT_CREATE_TRANSFER: return create_transfer(b, &ev->transfer, ts);
  default: return LEDGER_UNKNOWN_EVENT_KIND;
  }
}

static int event_is_linked(const ledger_event *ev) {
  /* LEDGER_ACCOUNT_LINKED and LEDGER_TRANSFER_LINKED are the same bit at the same offset. */
  if (ev->kind == LEDGER_EVENT_CREATE_ACCOUNT)
    return (ev->account.flags & LEDGER_ACCOUNT_LINKED) != 0;
  if (ev->kind == LEDGER_EVENT_CREATE_TRANSFER)
    return (ev->transfer.flags & LEDGER_TRANSFER_LINKED) != 0;
  return 0;
}

/* Remembers that a transfer id failed with a transient result. */
static void remember_failure(batch *b, const ledger_event *ev, ledger_result r) {
  if (ev->kind != LEDGER_EVENT_CREATE_TRANSFER || !result_is_transient(r))
    return;
  uint64_t v = FAILED_BIT | (uint64_t)r;
  put_id_key(b, b->l->db_ids, ev->transfer.id, &v, sizeof v);
}

/* ---------------------------------------------------------------- expiry */

/* Voids every pending transfer due at or before `now`, at most LEDGER_BATCH_MAX of them; the
 * k-th gets timestamp base + k. Their ids go to l->expired. */
static void expire_due(batch *b, uint64_t now, uint64_t base) {
  ledger *l = b->l;
  l->expired_n = 0;
  MDB_cursor *cur;
  int rc = mdb_cursor_open(b->txn, l->db_expiry, &cur);
  if (rc) {
    b->err = rc;
    return;
  }
  MDB_val k, v;
  rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
  while (rc == 0 && l->expired_n < LEDGER_BATCH_MAX) {
    if (k.mv_size != 16) {
      rc = MDB_CORRUPTED;
      break;
    }
    const uint8_t *kb = k.mv_data;
    uint64_t expires_at = 0, pts = 0;
    for (int i = 0; i < 8; i++) {
      expires_at = (expires_at << 8) | kb[i];
      pts = (pts << 8) | kb[8 + i];
    }
    if (expires_at > now)
      break;
    transfer_row prow;
    pending_row pr;
    rc = get_transfer_row(b->txn, l, pts, &prow);
    if (!rc)
      rc = get_pending_row(b->txn, l, pts, &pr);
    if (rc)
      break;
    const ledger_transfer *p = &prow.transfer;
    cache_slot *dr = cache_get(b, p->debit_account_id);
    cache_slot *cr = dr ? cache_get(b, p->credit_account_id) : NULL;
    if (!dr || !cr || !dr->present || !cr->present || pr.state != LEDGER_PENDING_OPEN) {
      rc = b->err ? b->err : MDB_CORRUPTED;
      break;
    }
    dr->row.account.debits_pending -= p->amount;
    cr->row.account.credits_pending -= p->amount;
    if (p->flags & LEDGER_TRANSFER_CLOSING_DEBIT)
      dr->row.account.flags &= (uint16_t)~LEDGER_ACCOUNT_CLOSED;
    if (p->flags & LEDGER_TRANSFER_CLOSING_CREDIT)
      cr->row.account.flags &= (uint16_t)~LEDGER_ACCOUNT_CLOSED;
    dr->dirty = cr->dirty = 1;
    pr.state = LEDGER_PENDING_EXPIRED;
    pr.resolved_ts = base + l->expired_n;
    if (put_u64_key(b, l->db_pending, pts, &pr, sizeof pr, 0))
      break;
    l->expired[l->expired_n++] = p->id;
    rc = mdb_cursor_del(cur, 0);
    if (!rc) /* the deleted key was the first: start again from the new first */
      rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
  }
  mdb_cursor_close(cur);
  if (rc && rc != MDB_NOTFOUND && !b->err)
    b->err = rc;
}

/* ---------------------------------------------------------------- the batch */

/* Applies expiries and events at base timestamp `base` in transaction txn and appends the
 * journal record. Returns 0 or the first LMDB error (the caller aborts the transaction). */
static int apply_batch(ledger *l, MDB_txn *txn, const ledger_event *events, ledger_result *results,
                       size_t n, uint64_t base) {
  batch b = {l, txn, 0};
  cache_reset(l);
  expire_due(&b, base, base);
  if (b.err)
    return b.err;
  uint64_t ts0 = base + l->expired_n;

  size_t i = 0;
  while (i < n && !b.err) {
    if (!event_is_linked(&events[i])) {
      results[i] = apply_event(&b, &events[i], ts0 + i);
      remember_failure(&b, &events[i], results[i]);
      i++;
      continue;
    }
    size_t end = i; /* the chain is events[i..end] */
    while (end < n && event_is_linked(&events[end]))
      end++;
    if (end == n) { /* the batch ended inside the chain */
      for (size_t j = i; j < n; j++)
        results[j] = j + 1 == n ? LEDGER_LINKED_EVENT_CHAIN_OPEN : LEDGER_LINKED_EVENT_FAILED;
      break;
    }
    MDB_txn *child;
    int rc = mdb_txn_begin(l->env, txn, 0, &child);
    if (rc)
      return rc;
    b.txn = child;
    l->in_chain = 1;
    l->undo_n = 0;
    size_t failed = SIZE_MAX;
    for (size_t j = i; j <= end && !b.err; j++) {
      results[j] = apply_event(&b, &events[j], ts0 + j);
      if (results[j] != LEDGER_OK) {
        failed = j;
        break;
      }
    }
    l->in_chain = 0;
    b.txn = txn;
    if (b.err) {
      mdb_txn_abort(child);
      return b.err;
    }
    if (failed == SIZE_MAX) {
      rc = mdb_txn_commit(child);
      if (rc)
        return rc;
    } else {
      mdb_txn_abort(child);
      cache_undo(l);
      for (size_t j = i; j <= end; j++)
        if (j != failed)
          results[j] = LEDGER_LINKED_EVENT_FAILED;
      remember_failure(&b, &events[failed], results[failed]);
    }
    i = end + 1;
  }
  if (b.err)
    return b.err;
  cache_flush(&b);
  if (b.err)
    return b.err;

  uint64_t seq = l->journal_seq + 1;
  size_t size = journal_record_size((uint32_t)n, l->expired_n);
  MDB_val k = {sizeof seq, &seq}, v = {size, NULL};
  int rc = mdb_put(txn, l->db_journal, &k, &v, MDB_APPEND | MDB_RESERVE);
  if (rc)
    return rc;
  journal_write(v.mv_data, l->journal_head, seq, base, events, results, (uint32_t)n, l->expired,
                l->expired_n);
  return 0;
}

/* Grows the map (doubling, up to the maximum) so that `need` more bytes fit with room to spare.
 * Takes the resize lock exclusively: no read transaction of this process is open then. */
static int grow_map_for(ledger *l, size_t need) {
  MDB_envinfo info;
  MDB_stat st;
  int rc = mdb_env_info(l->env, &info);
  if (!rc)
    rc = mdb_env_stat(l->env, &st);
  if (rc)
    return rc;
  size_t used = (info.me_last_pgno + 1) * (size_t)st.ms_psize;
  size_t want = l->map_size;
  while (used + 2 * need > want - want / 4 && want < l->opts.map_size_max)
    want = want * 2 > l->opts.map_size_max ? l->opts.map_size_max : want * 2;
  if (want == l->map_size)
    return 0;
  pthread_rwlock_wrlock(&l->resize_lock);
  rc = mdb_env_set_mapsize(l->env, want);
  if (!rc)
    l->map_size = want;
  pthread_rwlock_unlock(&l->resize_lock);
  return rc;
}

/* One attempt: begin, apply, commit. Updates the writer state only after the commit. */
static int apply_once(ledger *l, const ledger_event *events, ledger_result *results, size_t n,
                      uint64_t base, const journal_view *expect) {
  MDB_txn *txn;
  int rc = mdb_txn_begin(l->env, NULL, 0, &txn);
  if (rc)
    return rc;
  rc = apply_batch(l, txn, events, results, n, base);
  if (rc) {
    mdb_txn_abort(txn);
    return rc;
  }
  if (n == 0 && l->expired_n == 0) { /* nothing happened: no record */
    mdb_txn_abort(txn);
    return 0;
  }
  uint64_t seq = l->journal_seq + 1;
  MDB_val k = {sizeof seq, &seq}, v;
  rc = mdb_get(txn, l->db_journal, &k, &v);
  if (rc) {
    mdb_txn_abort(txn);
    return rc;
  }
  if (expect && (v.mv_size != expect->size || memcmp(v.mv_data, expect->prev_hash, v.mv_size))) {
    mdb_txn_abort(txn);
    return MDB_CORRUPTED; /* the replayed batch does not reproduce the record */
  }
  uint8_t hash[JOURNAL_HASH_SIZE];
  memcpy(hash, (const uint8_t *)v.mv_data + v.mv_size - JOURNAL_HASH_SIZE, sizeof hash);
  uint64_t last = base + l->expired_n + n - 1;
  rc = mdb_txn_commit(txn);
  if (rc)
    return rc;
  l->journal_seq = seq;
  memcpy(l->journal_head, hash, sizeof hash);
  l->last_timestamp = last;
  return 0;
}

static int apply_with_retry(ledger *l, const ledger_event *events, ledger_result *results,
                            size_t n, uint64_t base, const journal_view *expect) {
  int rc = grow_map_for(l, n * 1024 + (1u << 20));
  if (!rc)
    rc = apply_once(l, events, results, n, base, expect);
  if (rc == MDB_MAP_FULL && l->map_size < l->opts.map_size_max && !grow_map_for(l, l->map_size))
    rc = apply_once(l, events, results, n, base, expect);
  return rc;
}

int ledger_apply(ledger *l, const ledger_event *events, ledger_result *results, size_t n) {
  if (!l || n > LEDGER_BATCH_MAX || (n && (!events || !results)) || l->read_only)
    return LEDGER_E_INVAL;
  uint64_t now = ledger_now(l);
  uint64_t base = now > l->last_timestamp ? now : l->last_timestamp + 1;
  int rc = apply_with_retry(l, events, results, n, base, NULL);
  if (!rc)
    return 0;
  int err = map_mdb_error(rc);
  if (err == LEDGER_E_NOTFOUND || err == LEDGER_E_LMDB || err == LEDGER_E_CORRUPT)
    err = LEDGER_E_IO;
  for (size_t i = 0; i < n; i++)
    results[i] = err == LEDGER_E_FULL ? LEDGER_BATCH_STORAGE_FULL : LEDGER_BATCH_STORAGE_ERROR;
  return err;
}

int ledger_replay_record(ledger *l, const void *record, size_t len) {
  if (!l || !record || l->read_only)
    return LEDGER_E_INVAL;
  journal_view v;
  if (journal_parse(record, len, &v))
    return LEDGER_E_CORRUPT;
  if (v.seq != l->journal_seq + 1 || memcmp(v.prev_hash, l->journal_head, JOURNAL_HASH_SIZE) ||
      (l->journal_seq && v.timestamp <= l->last_timestamp))
    return LEDGER_E_CORRUPT;
  ledger_event *events = NULL;
  ledger_result *results = NULL;
  if (v.event_count) {
    events = malloc(v.event_count * sizeof *events);
    results = malloc(v.event_count * sizeof *results);
    if (!events || !results) {
      free(events);
      free(results);
      return LEDGER_E_NOMEM;
    }
  }
  for (uint32_t i = 0; i < v.event_count; i++)
    events[i] = journal_event_at(&v, i);
  int rc = apply_with_retry(l, events, results, v.event_count, v.timestamp, &v);
  free(events);
  free(results);
  if (rc == MDB_CORRUPTED)
    return LEDGER_E_CORRUPT;
  return map_mdb_error(rc);
}

/* ---------------------------------------------------------------- open and close */

static int mkdir_p(const char *dir) {
  char path[4096];
  size_t len = strlen(dir);
  if (len == 0 || len >= sizeof path)
    return EINVAL;
  memcpy(path, dir, len + 1);
  for (char *p = path + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = 0;
    if (mkdir(path, 0750) && errno != EEXIST)
      return errno;
    *p = '/';
  }
  if (mkdir(path, 0750) && errno != EEXIST)
    return errno;
  return 0;
}

typedef struct journal_head {
  uint64_t seq;
  uint64_t last_timestamp;
  uint8_t hash[JOURNAL_HASH_SIZE];
} journal_head;

/* Reads the journal head as stored (seq 0 and a zero hash when the journal is empty). */
static int read_head(const ledger *l, MDB_txn *txn, journal_head *h) {
  MDB_cursor *cur;
  int rc = mdb_cursor_open(txn, l->db_journal, &cur);
  if (rc)
    return rc;
  MDB_val k, v;
  rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
  mdb_cursor_close(cur);
  memset(h, 0, sizeof *h);
  if (rc == MDB_NOTFOUND)
    return 0;
  if (rc)
    return rc;
  journal_view jv;
  if (journal_parse(v.mv_data, v.mv_size, &jv))
    return MDB_CORRUPTED;
  h->seq = jv.seq;
  memcpy(h->hash, jv.hash, JOURNAL_HASH_SIZE);
  h->last_timestamp = jv.timestamp + jv.expired_count + jv.event_count - 1;
  return 0;
}

/* Loads the writer state from the stored head. */
static int load_head(ledger *l, MDB_txn *txn) {
  journal_head h;
  int rc = read_head(l, txn, &h);
  if (rc)
    return rc;
  l->journal_seq = h.seq;
  l->last_timestamp = h.last_timestamp;
  memcpy(l->journal_head, h.hash, JOURNAL_HASH_SIZE);
  return 0;
}

static int open_databases(ledger *l) {
  MDB_txn *txn;
  unsigned create = l->read_only ? 0 : MDB_CREATE;
  int rc = mdb_txn_begin(l->env, NULL, l->read_only ? MDB_RDONLY : 0, &txn);
  if (rc)
    return rc;
  struct {
    const char *name;
    MDB_dbi *dbi;
    unsigned flags;
  } dbs[] = {
      {"meta", &l->db_meta, 0},
      {"accounts", &l->db_accounts, 0},
      {"transfers", &l->db_transfers, MDB_INTEGERKEY},
      {"ids", &l->db_ids, 0},
      {"pending", &l->db_pending, MDB_INTEGERKEY},
      {"expiry", &l->db_expiry, 0},
      {"history", &l->db_history, MDB_INTEGERKEY},
      {"journal", &l->db_journal, MDB_INTEGERKEY},
  };
  for (size_t i = 0; i < sizeof dbs / sizeof dbs[0] && !rc; i++)
    rc = mdb_dbi_open(txn, dbs[i].name, dbs[i].flags | create, dbs[i].dbi);
  if (rc) {
    mdb_txn_abort(txn);
    return rc;
  }
  MDB_val k = {6, "format"}, v;
  rc = mdb_get(txn, l->db_meta, &k, &v);
  if (rc == MDB_NOTFOUND && !l->read_only) {
    uint32_t version = FORMAT_VERSION;
    MDB_val nv = {sizeof version, &version};
    rc = mdb_put(txn, l->db_meta, &k, &nv, 0);
  } else if (rc == 0) {
    uint32_t version = 0;
    if (v.mv_size == sizeof version)
      memcpy(&version, v.mv_data, sizeof version);
    if (version != FORMAT_VERSION)
      rc = MDB_VERSION_MISMATCH;
  }
  if (!rc)
    rc = load_head(l, txn);
  if (rc) {
    mdb_txn_abort(txn);
    return rc;
  }
  return l->read_only ? (mdb_txn_abort(txn), 0) : mdb_txn_commit(txn);
}

int ledger_open(const char *dir, const ledger_options *opts, ledger **out) {
  if (!dir || !out)
    return LEDGER_E_INVAL;
  *out = NULL;
  ledger *l = calloc(1, sizeof *l);
  if (!l)
    return LEDGER_E_NOMEM;
  if (opts)
    l->opts = *opts;
  if (!l->opts.map_size)
    l->opts.map_size = DEFAULT_MAP_SIZE;
  if (!l->opts.map_size_max)
    l->opts.map_size_max = DEFAULT_MAP_SIZE_MAX;
  if (l->opts.map_size_max < l->opts.map_size)
    l->opts.map_size_max = l->opts.map_size;
  l->read_only = (l->opts.flags & LEDGER_OPEN_READ_ONLY) != 0;
  pthread_rwlock_init(&l->resize_lock, NULL);
  l->dir = strdup(dir);
  int rc = l->dir ? 0 : ENOMEM;
  if (!rc && !l->read_only) {
    l->cache = calloc(CACHE_SLOTS, sizeof *l->cache);
    l->cache_used = malloc(ACCOUNTS_PER_BATCH_MAX * sizeof *l->cache_used);
    l->undo = malloc(ACCOUNTS_PER_BATCH_MAX * sizeof *l->undo);
    l->expired = malloc(LEDGER_BATCH_MAX * sizeof *l->expired);
    if (!l->cache || !l->cache_used || !l->undo || !l->expired)
      rc = ENOMEM;
  }
  if (!rc && !l->read_only)
    rc = mkdir_p(dir);
  if (!rc)
    rc = mdb_env_create(&l->env);
  if (!rc)
    rc = mdb_env_set_maxdbs(l->env, 16);
  if (!rc)
    rc = mdb_env_set_mapsize(l->env, l->opts.map_size);
  unsigned flags = MDB_NOTLS | MDB_NORDAHEAD;
  if (l->read_only)
    flags |= MDB_RDONLY;
  if (l->opts.flags & LEDGER_OPEN_UNSAFE_NOSYNC_BENCH_ONLY)
    flags |= MDB_NOSYNC;
  if (!rc)
    rc = mdb_env_open(l->env, dir, flags, 0640);
  if (!rc) {
    MDB_envinfo info;
    rc = mdb_env_info(l->env, &info);
    l->map_size = info.me_mapsize;
  }
  if (!rc)
    rc = open_databases(l);
  if (rc) {
    ledger_close(l);
    int err = map_mdb_error(rc);
    return err == LEDGER_E_NOTFOUND ? LEDGER_E_VERSION : err;
  }
  *out = l;
  return 0;
}

void ledger_close(ledger *l) {
  if (!l)
    return;
  if (l->env)
    mdb_env_close(l->env);
  pthread_rwlock_destroy(&l->resize_lock);
  free(l->cache);
  free(l->cache_used);
  free(l->undo);
  free(l->expired);
  free(l->dir);
  free(l);
}

/* ---------------------------------------------------------------- queries */

/* Begins a read transaction under the shared resize lock; end it with read_end(). */
static int read_begin(ledger *l, MDB_txn **txn) {
  pthread_rwlock_rdlock(&l->resize_lock);
  int rc = mdb_txn_begin(l->env, NULL, MDB_RDONLY, txn);
  if (rc == MDB_MAP_RESIZED) { /* another process grew the map */
    rc = mdb_env_set_mapsize(l->env, 0);
    if (!rc)
      rc = mdb_txn_begin(l->env, NULL, MDB_RDONLY, txn);
  }
  if (rc)
    pthread_rwlock_unlock(&l->resize_lock);
  return rc;
}

static void read_end(ledger *l, MDB_txn *txn) {
  mdb_txn_abort(txn);
  pthread_rwlock_unlock(&l->resize_lock);
}

int ledger_lookup_account(ledger *l, ledger_id id, ledger_account *out) {
  if (!l || !out)
    return LEDGER_E_INVAL;
  MDB_txn *txn;
  int rc = read_begin(l, &txn);
  if (rc)
    return map_mdb_error(rc);
  id_key key = key_of(id);
  MDB_val k = {sizeof key, key.b}, v;
  rc = mdb_get(txn, l->db_accounts, &k, &v);
  if (!rc && v.mv_size != sizeof(account_row))
    rc = MDB_CORRUPTED;
  if (!rc)
    memcpy(out, v.mv_data, sizeof *out);
  read_end(l, txn);
  return map_mdb_error(rc);
}

int ledger_lookup_transfer(ledger *l, ledger_id id, ledger_transfer *out) {
  if (!l || !out)
    return LEDGER_E_INVAL;
  MDB_txn *txn;
  int rc = read_begin(l, &txn);
  if (rc)
    return map_mdb_error(rc);
  transfer_row row;
  rc = find_transfer(txn, l, id, &row);
  if (!rc)
    *out = row.transfer;
  read_end(l, txn);
  return map_mdb_error(rc);
}

int ledger_pending_state_of(ledger *l, ledger_id id, ledger_pending_state *state,
                            uint64_t *resolved_ts) {
  if (!l || !state)
    return LEDGER_E_INVAL;
  MDB_txn *txn;
  int rc = read_begin(l, &txn);
  if (rc)
    return map_mdb_error(rc);
  transfer_row row;
  pending_row pr = {LEDGER_PENDING_NONE, 0, 0, 0};
  rc = find_transfer(txn, l, id, &row);
  if (!rc && (row.transfer.flags & LEDGER_TRANSFER_PENDING))
    rc = get_pending_row(txn, l, row.transfer.timestamp, &pr);
  read_end(l, txn);
  if (rc)
    return map_mdb_error(rc);
  *state = (ledger_pending_state)pr.state;
  if (resolved_ts)
    *resolved_ts = pr.resolved_ts;
  return 0;
}

/* Walks the account's transfer chain newest first and hands each match in [min, max] to
 * visit(); stops when visit returns non-zero or the chain passes below min. */
typedef int (*chain_visit_fn)(MDB_txn *txn, const transfer_row *row, int as_debit, void *arg);

static int walk_account_chain(ledger *l, MDB_txn *txn, const ledger_account_filter *f,
                              chain_visit_fn visit, void *arg) {
  id_key key = key_of(f->account_id);
  MDB_val k = {sizeof key, key.b}, v;
  int rc = mdb_get(txn, l->db_accounts, &k, &v);
  if (rc)
    return rc;
  if (v.mv_size != sizeof(account_row))
    return MDB_CORRUPTED;
  account_row arow;
  memcpy(&arow, v.mv_data, sizeof arow);
  unsigned sides = f->flags & (LEDGER_FILTER_DEBITS | LEDGER_FILTER_CREDITS);
  if (!sides)
    sides = LEDGER_FILTER_DEBITS | LEDGER_FILTER_CREDITS;
  uint64_t ts = arow.last_transfer_ts;
  while (ts) {
    if (f->timestamp_min && ts < f->timestamp_min)
      break;
    transfer_row row;
    rc = get_transfer_row(txn, l, ts, &row);
    if (rc)
      return rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc;
    int as_debit = ledger_id_eq(row.transfer.debit_account_id, f->account_id);
    uint64_t prev = as_debit ? row.prev_debit_ts : row.prev_credit_ts;
    int wanted = (as_debit && (sides & LEDGER_FILTER_DEBITS)) ||
                 (!as_debit && (sides & LEDGER_FILTER_CREDITS));
    if (wanted && (!f->timestamp_max || ts <= f->timestamp_max) && visit(txn, &row, as_debit, arg))
      break;
    if (prev >= ts)
      return MDB_CORRUPTED; /* a chain must go back in time */
    ts = prev;
  }
  return 0;
}

/* Collects up to m items newest first, or the oldest m in a ring (ascending queries). */
typedef struct collect {
  ledger *l;
  void *out;
  size_t item_size;
  size_t m;
  size_t seen;
  int reversed;
  int want_balances;
  int err;
} collect;

static int collect_cb(MDB_txn *txn, const transfer_row *row, int as_debit, void *arg) {
  collect *c = arg;
  uint8_t item[sizeof(ledger_transfer)];
  if (c->want_balances) {
    MDB_val v;
    int rc = get_u64_key(txn, c->l->db_history, row->transfer.timestamp, &v);
    if (rc == MDB_NOTFOUND)
      return 0;
    if (rc || v.mv_size != sizeof(history_row)) {
      c->err = rc ? rc : MDB_CORRUPTED;
      return 1;
    }
    history_row h;
    memcpy(&h, v.mv_data, sizeof h);
    const uint64_t *bal = as_debit ? h.debit_balances : h.credit_balances;
    ledger_balance b = {bal[0], bal[1], bal[2], bal[3], row->transfer.timestamp};
    memcpy(item, &b, sizeof b);
  } else {
    memcpy(item, &row->transfer, sizeof row->transfer);
  }
  uint8_t *out = c->out;
  memcpy(out + (c->seen % c->m) * c->item_size, item, c->item_size);
  c->seen++;
  return c->reversed && c->seen == c->m;
}

/* Puts the collected items in order (see collect): item j (the j-th match, newest first) sits
 * at out[j % m]; ascending output is j = seen-1, seen-2, … for the n kept. */
static int collect_finish(collect *c, size_t *n_out) {
  size_t n = c->seen < c->m ? c->seen : c->m;
  *n_out = n;
  if (c->reversed || n < 2)
    return 0;
  uint8_t *tmp = malloc(n * c->item_size), *out = c->out;
  if (!tmp)
    return ENOMEM;
  for (size_t a = 0; a < n; a++)
    memcpy(tmp + a * c->item_size, out + ((c->seen - 1 - a) % c->m) * c->item_size, c->item_size);
  memcpy(out, tmp, n * c->item_size);
  free(tmp);
  return 0;
}

static int account_query(ledger *l, const ledger_account_filter *f, void *out, size_t item_size,
                         size_t cap, size_t *n, int want_balances) {
  if (!l || !f || !n || (cap && !out) || f->limit == 0)
    return LEDGER_E_INVAL;
  *n = 0;
  if (cap == 0)
    return 0;
  MDB_txn *txn;
  int rc = read_begin(l, &txn);
  if (rc)
    return map_mdb_error(rc);
  collect c = {l, out, item_size, cap < f->limit ? cap : f->limit, 0,
               (f->flags & LEDGER_FILTER_REVERSED) != 0, want_balances, 0};
  rc = walk_account_chain(l, txn, f, collect_cb, &c);
  read_end(l, txn);
  if (!rc)
    rc = c.err;
  if (!rc)
    rc = collect_finish(&c, n);
  return map_mdb_error(rc);
}

int ledger_account_transfers(ledger *l, const ledger_account_filter *f, ledger_transfer *out,
                             size_t cap, size_t *n) {
  return account_query(l, f, out, sizeof *out, cap, n, 0);
}

int ledger_account_balances(ledger *l, const ledger_account_filter *f, ledger_balance *out,
                            size_t cap, size_t *n) {
  ledger_account a;
  int rc = l && f ? ledger_lookup_account(l, f->account_id, &a) : LEDGER_E_INVAL;
  if (rc)
    return rc;
  if (!(a.flags & LEDGER_ACCOUNT_HISTORY)) {
    if (!n || f->limit == 0)
      return LEDGER_E_INVAL;
    *n = 0;
    return 0;
  }
  return account_query(l, f, out, sizeof *out, cap, n, 1);
}

int ledger_totals_of(ledger *l, ledger_totals *out) {
  if (!l || !out)
    return LEDGER_E_INVAL;
  memset(out, 0, sizeof *out);
  MDB_txn *txn;
  int rc = read_begin(l, &txn);
  if (rc)
    return map_mdb_error(rc);
  MDB_cursor *cur;
  rc = mdb_cursor_open(txn, l->db_accounts, &cur);
  MDB_val k, v;
  if (!rc) {
    while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
      if (v.mv_size != sizeof(account_row)) {
        rc = MDB_CORRUPTED;
        break;
      }
      ledger_account a;
      memcpy(&a, v.mv_data, sizeof a);
      out->accounts++;
      out->debits_pending += a.debits_pending;
      out->debits_posted += a.debits_posted;
      out->credits_pending += a.credits_pending;
      out->credits_posted += a.credits_posted;
    }
    mdb_cursor_close(cur);
  }
  read_end(l, txn);
  return rc == MDB_NOTFOUND ? 0 : map_mdb_error(rc);
}

int ledger_next_expiry(ledger *l, uint64_t *expires_at) {
  if (!l || !expires_at)
    return LEDGER_E_INVAL;
  *expires_at = 0;
  MDB_txn *txn;
  int rc = read_begin(l, &txn);
  if (rc)
    return map_mdb_error(rc);
  MDB_cursor *cur;
  rc = mdb_cursor_open(txn, l->db_expiry, &cur);
  MDB_val k, v;
  if (!rc) {
    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    if (!rc && k.mv_size == 16) {
      const uint8_t *kb = k.mv_data;
      for (int i = 0; i < 8; i++)
        *expires_at = (*expires_at << 8) | kb[i];
    }
    mdb_cursor_close(cur);
  }
  read_end(l, txn);
  return rc == MDB_NOTFOUND ? 0 : map_mdb_error(rc);
}

int ledger_journal_head(ledger *l, uint64_t *seq, uint8_t hash[32]) {
  if (!l || !seq)
    return LEDGER_E_INVAL;
  /* Read from storage, not the writer's state: callable from any thread, and in read-only mode
   * while another process writes. */
  MDB_txn *txn;
  journal_head h;
  int rc = read_begin(l, &txn);
  if (rc)
    return map_mdb_error(rc);
  rc = read_head(l, txn, &h);
  read_end(l, txn);
  if (rc)
    return map_mdb_error(rc);
  *seq = h.seq;
  if (hash)
    memcpy(hash, h.hash, JOURNAL_HASH_SIZE);
  return 0;
}

int ledger_journal_scan(ledger *l, uint64_t from_seq, ledger_journal_cb cb, void *arg) {
  if (!l || !cb)
    return LEDGER_E_INVAL;
  MDB_txn *txn;
  int rc = read_begin(l, &txn);
  if (rc)
    return map_mdb_error(rc);
  MDB_cursor *cur;
  rc = mdb_cursor_open(txn, l->db_journal, &cur);
  int stop = 0;
  if (!rc) {
    MDB_val k = {sizeof from_seq, &from_seq}, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && !stop;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
      uint64_t seq;
      memcpy(&seq, k.mv_data, sizeof seq);
      stop = cb(seq, v.mv_data, v.mv_size, arg);
    }
    mdb_cursor_close(cur);
  }
  read_end(l, txn);
  if (stop)
    return stop;
  return rc == MDB_NOTFOUND ? 0 : map_mdb_error(rc);
}

typedef struct verify_state {
  uint64_t expect_seq;
  uint8_t prev[JOURNAL_HASH_SIZE];
  uint64_t bad_seq;
} verify_state;

static int verify_cb(uint64_t seq, const void *record, size_t len, void *arg) {
  verify_state *s = arg;
  journal_view v;
  if (seq != s->expect_seq || journal_parse(record, len, &v) || v.seq != seq ||
      memcmp(v.prev_hash, s->prev, JOURNAL_HASH_SIZE)) {
    s->bad_seq = seq != s->expect_seq && seq > s->expect_seq ? s->expect_seq : seq;
    return LEDGER_E_CORRUPT;
  }
  memcpy(s->prev, v.hash, JOURNAL_HASH_SIZE);
  s->expect_seq++;
  return 0;
}

int ledger_journal_verify(ledger *l, uint64_t *bad_seq) {
  verify_state s = {1, {0}, 0};
  int rc = ledger_journal_scan(l, 1, verify_cb, &s);
  if (bad_seq)
    *bad_seq = s.bad_seq;
  return rc;
}
