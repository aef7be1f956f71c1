/* apply.c — the ledger's writer: one batch of events in one LMDB write transaction.
 *
 * A batch first expires the pending transfers that are due, then applies each event in order
 * (the rules and their precedence are the table in ledger.h), writes back every account it
 * changed, appends one journal record, and commits with a full sync. Accounts go through the
 * writer's cache, which keeps committed accounts across batches, so a busy account is read
 * from LMDB once and written once per batch. Linked chains run in a nested transaction with
 * an undo log of the cache, so a failed chain leaves no trace. Storage layout: store.h.
 */
#include "ledger.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store.h"

#define ACCOUNT_FLAGS_KNOWN                                                                        \
  (LEDGER_ACCOUNT_LINKED | LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS |                         \
   LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS | LEDGER_ACCOUNT_HISTORY)
#define TRANSFER_FLAGS_KNOWN 0xffu

/* Chains up to this long are first tried without a nested transaction (see apply_chain). */
#define DRY_RUN_CHAIN_MAX 64

/* The write context of one batch. Cursors stay open for the whole batch: inserts at the
 * right edge of a tree (time-ordered keys) then find their page without a descent. */
typedef struct batch {
  ledger *l;
  MDB_txn *txn; /* the batch's transaction, or the nested one of a running chain */
  MDB_cursor *c_ids, *c_transfers, *c_pending, *c_history;
  int err; /* first LMDB error; the batch fails with it */
  /* A dry run of a linked chain: accounts change in the cache (undone after), rows are not
   * written; `conflict` is set when an event reads what an earlier event of the chain would
   * have written (then the chain runs in a nested transaction instead). */
  int dry_run, conflict;
  uint32_t n_chain_ids, n_chain_pendings;
  ledger_id chain_ids[DRY_RUN_CHAIN_MAX];     /* transfer ids the chain creates */
  uint64_t chain_pendings[DRY_RUN_CHAIN_MAX]; /* pending transfers the chain resolves */
} batch;

/* ---------------------------------------------------------------- small helpers */

static uint64_t clock_realtime_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

uint64_t ledger_time(const ledger *l) {
  return l->opts.clock ? l->opts.clock(l->opts.clock_arg) : clock_realtime_ns();
}

static int id_is_max(ledger_id id) {
  return id.lo == UINT64_MAX && id.hi == UINT64_MAX;
}

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

static void store_expiry_key(uint8_t out[16], uint64_t expires_at, uint64_t ts) {
  store_be64(out, expires_at);
  store_be64(out + 8, ts);
}

static void batch_fail(batch *b, int rc) {
  if (rc && !b->err)
    b->err = rc;
}

static int chain_has_id(const batch *b, ledger_id id) {
  for (uint32_t i = 0; i < b->n_chain_ids; i++)
    if (ledger_id_eq(b->chain_ids[i], id))
      return 1;
  return 0;
}

static void batch_put_u64(batch *b, MDB_cursor *cur, uint64_t key, const void *val, size_t len) {
  if (b->dry_run)
    return;
  MDB_val k = {sizeof key, &key}, v = {len, (void *)val};
  batch_fail(b, mdb_cursor_put(cur, &k, &v, 0));
}

static int batch_get_id(batch *b, ledger_id id, uint64_t *value) {
  if (b->dry_run && chain_has_id(b, id)) {
    b->conflict = 1;
    return MDB_NOTFOUND;
  }
  id_key key = store_id_key(id);
  MDB_val k = {sizeof key, key.b}, v;
  int rc = mdb_cursor_get(b->c_ids, &k, &v, MDB_SET_KEY);
  if (rc)
    return rc;
  if (v.mv_size != sizeof *value)
    return MDB_CORRUPTED;
  memcpy(value, v.mv_data, sizeof *value);
  return 0;
}

static void batch_put_id(batch *b, ledger_id id, uint64_t value) {
  if (b->dry_run) {
    if (b->n_chain_ids < DRY_RUN_CHAIN_MAX)
      b->chain_ids[b->n_chain_ids++] = id;
    else
      b->conflict = 1;
    return;
  }
  id_key key = store_id_key(id);
  MDB_val k = {sizeof key, key.b}, v = {sizeof value, &value};
  batch_fail(b, mdb_cursor_put(b->c_ids, &k, &v, 0));
}

/* ---------------------------------------------------------------- the account cache */

static uint32_t cache_hash(ledger_id id) {
  uint64_t h = id.lo * 0x9e3779b97f4a7c15ull ^ id.hi * 0xc2b2ae3d27d4eb4full;
  return (uint32_t)(h >> 40) & (CACHE_INDEX_SIZE - 1);
}

/* Forgets every cached account (after a failed batch, or when the cache is full). */
static void cache_clear(ledger *l) {
  l->n_slots = 0;
  memset(l->index, 0, CACHE_INDEX_SIZE * sizeof *l->index);
}

static void cache_begin_batch(ledger *l) {
  if (l->n_slots > CACHE_CAPACITY - ACCOUNTS_PER_BATCH_MAX)
    cache_clear(l);
  l->n_dirty = 0;
  l->n_undo = 0;
  l->in_chain = 0;
  l->batch_account_count = l->account_count;
}

/* After the commit: the cache now holds committed state. */
static void cache_end_batch(ledger *l) {
  for (uint32_t i = 0; i < l->n_dirty; i++) {
    cache_slot *s = &l->slots[l->dirty[i]];
    s->dirty = s->created = s->listed = 0;
  }
  l->n_dirty = 0;
  l->account_count = l->batch_account_count;
}

/* The slot of account `id`, loaded from LMDB on first use. Returns NULL only on an LMDB error
 * (recorded in b->err); slot->present says whether the account exists. */
static cache_slot *cache_get(batch *b, ledger_id id) {
  ledger *l = b->l;
  uint32_t h = cache_hash(id);
  while (l->index[h]) {
    cache_slot *s = &l->slots[l->index[h] - 1];
    if (ledger_id_eq(s->id, id))
      return s;
    h = (h + 1) & (CACHE_INDEX_SIZE - 1);
  }
  cache_slot *s = &l->slots[l->n_slots];
  memset(s, 0, sizeof *s);
  account_state state;
  int rc = store_get_account(b->txn, l, id, &s->account, &s->number, &state);
  if (rc && rc != MDB_NOTFOUND) {
    batch_fail(b, rc);
    return NULL;
  }
  s->id = id;
  s->present = rc == 0;
  s->last_transfer_ts = s->present ? state.last_transfer_ts : 0;
  l->index[h] = ++l->n_slots;
  return s;
}

/* Starts loading the cache index entries and slots of the accounts an event will touch, 8
 * events ahead of it, so that its lookups hit the CPU cache (10k accounts do not fit it).
 * Hints only: the index entry read here is usually cached by the previous events already. */
static void cache_prefetch(const ledger *l, const ledger_event *ev) {
  if (ev->kind != LEDGER_EVENT_CREATE_TRANSFER)
    return;
  const ledger_id ids[2] = {ev->transfer.debit_account_id, ev->transfer.credit_account_id};
  for (int k = 0; k < 2; k++) {
    const uint32_t *entry = &l->index[cache_hash(ids[k])];
    __builtin_prefetch(entry);
    if (*entry)
      __builtin_prefetch(&l->slots[*entry - 1]);
  }
}

/* Marks a slot as about to change: saved for undo inside a chain, listed for write-back. */
static void cache_will_change(ledger *l, cache_slot *s) {
  uint32_t slot = (uint32_t)(s - l->slots);
  if (l->in_chain) {
    undo_entry *u = &l->undo[l->n_undo++];
    u->slot = slot;
    u->before = *s;
  }
  if (!s->listed) {
    s->listed = 1;
    l->dirty[l->n_dirty++] = slot;
  }
  s->dirty = 1;
}

static void cache_undo(ledger *l) {
  while (l->n_undo > 0) {
    undo_entry *u = &l->undo[--l->n_undo];
    cache_slot *s = &l->slots[u->slot];
    uint8_t listed = s->listed;
    *s = u->before;
    s->listed = listed;
  }
}

static int compare_slots_by_number(const void *a, const void *b, void *arg) {
  const cache_slot *slots = arg;
  uint64_t x = slots[*(const uint64_t *)a].number, y = slots[*(const uint64_t *)b].number;
  return x < y ? -1 : x > y;
}

/* The dirty slots in account-number order, in l->sort_keys: each entry's low 32 bits are the
 * slot. Numbers below 2^32 (every realistic ledger) take an LSD radix sort of number << 32 |
 * slot, 8 bits a pass: O(n), no comparisons; beyond that, qsort of the slots by number. */
static void sort_dirty(ledger *l) {
  uint32_t n = l->n_dirty;
  uint64_t *a = l->sort_keys, *t = l->sort_tmp;
  int small = 1;
  for (uint32_t i = 0; i < n; i++) {
    uint64_t number = l->slots[l->dirty[i]].number;
    small &= number < (1ull << 32);
    a[i] = number << 32 | l->dirty[i];
  }
  if (!small) { /* the number does not fit the key: sort the slots by their numbers */
    for (uint32_t i = 0; i < n; i++)
      a[i] = l->dirty[i];
    qsort_r(a, n, sizeof *a, compare_slots_by_number, l->slots);
    return;
  }
  for (unsigned shift = 32; shift < 64; shift += 8) {
    uint32_t count[257] = {0};
    for (uint32_t i = 0; i < n; i++)
      count[((a[i] >> shift) & 0xff) + 1]++;
    for (unsigned k = 1; k < 257; k++)
      count[k] += count[k - 1];
    for (uint32_t i = 0; i < n; i++)
      t[count[(a[i] >> shift) & 0xff]++] = a[i];
    uint64_t *swap = a;
    a = t;
    t = swap;
  }
  /* Four passes: the sorted keys are back in l->sort_keys. */
}

/* Writes every changed account back: balances rows in number order through one cursor (new
 * accounts append), static rows for accounts created in this batch. */
static void cache_flush(batch *b) {
  ledger *l = b->l;
  sort_dirty(l);
  MDB_cursor *cur;
  int rc = mdb_cursor_open(b->txn, l->db_balances, &cur);
  if (rc) {
    batch_fail(b, rc);
    return;
  }
  for (uint32_t i = 0; i < l->n_dirty && !b->err; i++) {
    cache_slot *s = &l->slots[(uint32_t)l->sort_keys[i]];
    if (!s->dirty || !s->present)
      continue;
    if (s->created) {
      account_static st = {s->account, s->number};
      st.account.debits_pending = st.account.debits_posted = 0;
      st.account.credits_pending = st.account.credits_posted = 0;
      id_key key = store_id_key(s->id);
      MDB_val k = {sizeof key, key.b}, v = {sizeof st, &st};
      batch_fail(b, mdb_put(b->txn, l->db_accounts, &k, &v, MDB_NOOVERWRITE));
    }
    account_state state = {s->account.debits_pending,
                           s->account.debits_posted,
                           s->account.credits_pending,
                           s->account.credits_posted,
                           s->last_transfer_ts,
                           s->account.flags,
                           0,
                           0};
    batch_put_u64(b, cur, s->number, &state, sizeof state);
  }
  mdb_cursor_close(cur);
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
  case LEDGER_EXCEEDS_DEBITS:
    return 1;
  default:
    return 0;
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
    return create_account_exists(a, &s->account);
  cache_will_change(b->l, s);
  s->account = *a;
  s->account.timestamp = ts;
  s->number = ++b->l->batch_account_count;
  s->last_transfer_ts = 0;
  s->present = 1;
  s->created = 1;
  return LEDGER_OK;
}

/* ---------------------------------------------------------------- transfers */

static int is_post_or_void(const ledger_transfer *t) {
  return (t->flags & (LEDGER_TRANSFER_POST_PENDING | LEDGER_TRANSFER_VOID_PENDING)) != 0;
}

/* The result for a transfer whose id exists as e. A post asking for 0 means the whole pending
 * amount, so it matches e only if e moved all of it: that takes a look at the pending one. */
static ledger_result create_transfer_exists(batch *b, const ledger_transfer *t,
                                            const ledger_transfer *e) {
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
  } else if (resolves && t->amount == 0 && (e->flags & LEDGER_TRANSFER_POST_PENDING)) {
    transfer_row p;
    int rc = store_find_transfer(b->txn, b->l, e->pending_id, &p);
    if (rc) {
      batch_fail(b, rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc);
      return LEDGER_BATCH_STORAGE_ERROR;
    }
    if (p.transfer.amount != e->amount)
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
  transfer_row row;
  row.transfer = *t;
  row.prev_debit_ts = dr->last_transfer_ts;
  row.prev_credit_ts = cr->last_transfer_ts;
  dr->last_transfer_ts = t->timestamp;
  cr->last_transfer_ts = t->timestamp;
  batch_put_u64(b, b->c_transfers, t->timestamp, &row, sizeof row);
  batch_put_id(b, t->id, t->timestamp);
  if ((dr->account.flags | cr->account.flags) & LEDGER_ACCOUNT_HISTORY) {
    history_row h;
    balances_of(&dr->account, h.debit_balances);
    balances_of(&cr->account, h.credit_balances);
    batch_put_u64(b, b->c_history, t->timestamp, &h, sizeof h);
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
  if (b->dry_run && chain_has_id(b, t->pending_id)) {
    b->conflict = 1; /* posts or voids a pending transfer of its own chain */
    return LEDGER_PENDING_TRANSFER_NOT_FOUND;
  }
  int rc = store_find_transfer(b->txn, l, t->pending_id, &prow);
  if (rc == MDB_NOTFOUND)
    return LEDGER_PENDING_TRANSFER_NOT_FOUND;
  if (rc) {
    batch_fail(b, rc);
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
  rc = store_get_pending_row(b->txn, l, p->timestamp, &pr);
  if (rc) {
    batch_fail(b, rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc);
    return LEDGER_BATCH_STORAGE_ERROR;
  }
  if (b->dry_run) { /* a second resolution in one chain must see the first: not in a dry run */
    for (uint32_t i = 0; i < b->n_chain_pendings; i++)
      if (b->chain_pendings[i] == p->timestamp)
        b->conflict = 1;
    if (b->n_chain_pendings < DRY_RUN_CHAIN_MAX)
      b->chain_pendings[b->n_chain_pendings++] = p->timestamp;
    else
      b->conflict = 1;
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
    batch_fail(b, MDB_CORRUPTED);
    return LEDGER_BATCH_STORAGE_ERROR;
  }
  ledger_account *d = &dr->account, *c = &cr->account;
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
  batch_put_u64(b, b->c_pending, p->timestamp, &pr, sizeof pr);
  if (pr.expires_at) {
    uint8_t ek[16];
    store_expiry_key(ek, pr.expires_at, p->timestamp);
    MDB_val k = {sizeof ek, ek};
    if (!b->dry_run)
      batch_fail(b, mdb_del(b->txn, l->db_expiry, &k, NULL));
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
  int rc = batch_get_id(b, t->id, &idv);
  if (rc == 0 && (idv & STORE_FAILED_BIT))
    return LEDGER_ID_ALREADY_FAILED;
  if (rc == 0) {
    transfer_row e;
    rc = store_get_transfer_row(b->txn, l, idv, &e);
    if (rc == 0)
      return create_transfer_exists(b, t, &e.transfer);
  }
  if (rc != MDB_NOTFOUND) {
    batch_fail(b, rc);
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
  ledger_account *d = &dr->account, *c = &cr->account;
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
    batch_put_u64(b, b->c_pending, ts, &pr, sizeof pr);
    if (expires_at) {
      uint8_t ek[16];
      store_expiry_key(ek, expires_at, ts);
      MDB_val k = {sizeof ek, ek}, v = {0, NULL};
      if (!b->dry_run)
        batch_fail(b, mdb_put(b->txn, l->db_expiry, &k, &v, 0));
    }
  }
  return LEDGER_OK;
}

static ledger_result apply_event(batch *b, const ledger_event *ev, uint64_t ts) {
  switch (ev->kind) {
  case LEDGER_EVENT_CREATE_ACCOUNT:
    return create_account(b, &ev->account, ts);
  case LEDGER_EVENT_CREATE_TRANSFER:
    return create_transfer(b, &ev->transfer, ts);
  default:
    return LEDGER_UNKNOWN_EVENT_KIND;
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
  batch_put_id(b, ev->transfer.id, STORE_FAILED_BIT | (uint64_t)r);
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
    batch_fail(b, rc);
    return;
  }
  MDB_val k, v;
  rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
  while (rc == 0 && l->expired_n < LEDGER_BATCH_MAX) {
    if (k.mv_size != 16) {
      rc = MDB_CORRUPTED;
      break;
    }
    uint64_t expires_at = store_read_be64(k.mv_data);
    uint64_t pts = store_read_be64((const uint8_t *)k.mv_data + 8);
    if (expires_at > now)
      break;
    transfer_row prow;
    pending_row pr;
    rc = store_get_transfer_row(b->txn, l, pts, &prow);
    if (!rc)
      rc = store_get_pending_row(b->txn, l, pts, &pr);
    if (rc)
      break;
    const ledger_transfer *p = &prow.transfer;
    cache_slot *dr = cache_get(b, p->debit_account_id);
    cache_slot *cr = dr ? cache_get(b, p->credit_account_id) : NULL;
    if (!dr || !cr || !dr->present || !cr->present || pr.state != LEDGER_PENDING_OPEN) {
      rc = b->err ? b->err : MDB_CORRUPTED;
      break;
    }
    cache_will_change(l, dr);
    cache_will_change(l, cr);
    dr->account.debits_pending -= p->amount;
    cr->account.credits_pending -= p->amount;
    if (p->flags & LEDGER_TRANSFER_CLOSING_DEBIT)
      dr->account.flags &= (uint16_t)~LEDGER_ACCOUNT_CLOSED;
    if (p->flags & LEDGER_TRANSFER_CLOSING_CREDIT)
      cr->account.flags &= (uint16_t)~LEDGER_ACCOUNT_CLOSED;
    pr.state = LEDGER_PENDING_EXPIRED;
    pr.resolved_ts = base + l->expired_n;
    batch_put_u64(b, b->c_pending, pts, &pr, sizeof pr);
    if (b->err)
      break;
    l->expired[l->expired_n++] = p->id;
    rc = mdb_cursor_del(cur, 0);
    if (!rc) /* the deleted key was the first: start again from the new first */
      rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
  }
  mdb_cursor_close(cur);
  if (rc != MDB_NOTFOUND)
    batch_fail(b, rc);
}

/* ---------------------------------------------------------------- the batch */

/* Marks a failed chain: the failing event keeps its result, the others are linked_event_failed.
 * Nothing of the chain is in the ledger (the caller made sure of that). */
static void chain_failed(batch *b, const ledger_event *events, ledger_result *results, size_t i,
                         size_t end, size_t failed) {
  for (size_t j = i; j <= end; j++)
    if (j != failed)
      results[j] = LEDGER_LINKED_EVENT_FAILED;
  remember_failure(b, &events[failed], results[failed]);
}

/* A short chain is first run dry: its events are checked against the cache with no row written
 * (accounts changed in the cache and then undone). If it fails, nothing needs rolling back; if
 * it succeeds, it is applied for real, straight into the batch's transaction — the same
 * results, as the rules are deterministic. Returns 1 if that settled the chain, 0 if the dry
 * run hit a conflict (an event reading what the chain itself writes) and the chain must run in
 * a nested transaction. Saves the nested transaction's page copies for the common case (a
 * payment's two linked legs). */
static int apply_chain_direct(batch *b, const ledger_event *events, ledger_result *results,
                              size_t i, size_t end, uint64_t ts0) {
  ledger *l = b->l;
  if (end - i + 1 > DRY_RUN_CHAIN_MAX)
    return 0;
  uint64_t count_before = l->batch_account_count;
  b->dry_run = 1;
  b->conflict = 0;
  b->n_chain_ids = b->n_chain_pendings = 0;
  l->in_chain = 1;
  l->n_undo = 0;
  size_t failed = SIZE_MAX;
  for (size_t j = i; j <= end && !b->err && !b->conflict; j++) {
    results[j] = apply_event(b, &events[j], ts0 + j);
    if (!b->conflict && results[j] != LEDGER_OK) {
      failed = j;
      break;
    }
  }
  l->in_chain = 0;
  b->dry_run = 0;
  cache_undo(l);
  l->batch_account_count = count_before;
  if (b->err || b->conflict)
    return b->err ? 1 : 0;
  if (failed != SIZE_MAX) {
    chain_failed(b, events, results, i, end, failed);
    return 1;
  }
  for (size_t j = i; j <= end && !b->err; j++) {
    results[j] = apply_event(b, &events[j], ts0 + j);
    if (results[j] != LEDGER_OK) /* cannot differ from the dry run: fail the whole batch */
      batch_fail(b, MDB_CORRUPTED);
  }
  return 1;
}

/* Applies the linked chain events[i..end] all or nothing: directly after a dry run when it
 * can, otherwise in a nested transaction. */
static int apply_chain(batch *b, const ledger_event *events, ledger_result *results, size_t i,
                       size_t end, uint64_t ts0) {
  ledger *l = b->l;
  if (apply_chain_direct(b, events, results, i, end, ts0))
    return b->err;
  MDB_txn *parent = b->txn, *child;
  int rc = mdb_txn_begin(l->env, parent, 0, &child);
  if (rc)
    return rc;
  uint64_t count_before = l->batch_account_count;
  b->txn = child; /* the batch's cursors follow into the child (LMDB shadows them) */
  l->in_chain = 1;
  l->n_undo = 0;
  size_t failed = SIZE_MAX;
  for (size_t j = i; j <= end && !b->err; j++) {
    results[j] = apply_event(b, &events[j], ts0 + j);
    if (results[j] != LEDGER_OK) {
      failed = j;
      break;
    }
  }
  l->in_chain = 0;
  b->txn = parent;
  if (b->err) {
    mdb_txn_abort(child);
    return b->err;
  }
  if (failed == SIZE_MAX)
    return mdb_txn_commit(child);
  mdb_txn_abort(child);
  cache_undo(l);
  l->batch_account_count = count_before;
  chain_failed(b, events, results, i, end, failed);
  return b->err;
}

static int open_cursors(batch *b) {
  ledger *l = b->l;
  int rc = mdb_cursor_open(b->txn, l->db_ids, &b->c_ids);
  if (!rc)
    rc = mdb_cursor_open(b->txn, l->db_transfers, &b->c_transfers);
  if (!rc)
    rc = mdb_cursor_open(b->txn, l->db_pending, &b->c_pending);
  if (!rc)
    rc = mdb_cursor_open(b->txn, l->db_history, &b->c_history);
  return rc;
}

static void close_cursors(batch *b) {
  MDB_cursor *all[] = {b->c_ids, b->c_transfers, b->c_pending, b->c_history};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    if (all[i])
      mdb_cursor_close(all[i]);
}

/* Applies expiries and events at base timestamp `base` in transaction txn and appends the
 * journal record (unless nothing happened: *recorded = 0). Returns 0 or the first LMDB
 * error; the caller then aborts the transaction. */
static int apply_events(batch *b, const ledger_event *events, ledger_result *results, size_t n,
                        uint64_t base, int *recorded) {
  ledger *l = b->l;
  expire_due(b, base, base);
  uint64_t ts0 = base + l->expired_n;
  size_t i = 0;
  while (i < n && !b->err) {
    if (i + 8 < n)
      cache_prefetch(l, &events[i + 8]);
    if (!event_is_linked(&events[i])) {
      results[i] = apply_event(b, &events[i], ts0 + i);
      remember_failure(b, &events[i], results[i]);
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
    batch_fail(b, apply_chain(b, events, results, i, end, ts0));
    i = end + 1;
  }
  if (!b->err)
    cache_flush(b);
  *recorded = n > 0 || l->expired_n > 0;
  if (b->err || !*recorded)
    return b->err;

  uint64_t seq = l->journal_seq + 1;
  size_t size = journal_record_size((uint32_t)n, l->expired_n);
  MDB_val k = {sizeof seq, &seq}, v = {size, NULL};
  int rc = mdb_put(b->txn, l->db_journal, &k, &v, MDB_APPEND | MDB_RESERVE);
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

/* One attempt: begin, apply, commit. The writer state changes only after the commit; on any
 * failure the cache is cleared, since it may hold uncommitted changes. When `expect` is given
 * (replay), the record written must equal it byte for byte. */
static int apply_once(ledger *l, const ledger_event *events, ledger_result *results, size_t n,
                      uint64_t base, const journal_view *expect) {
  MDB_txn *txn;
  int rc = mdb_txn_begin(l->env, NULL, 0, &txn);
  if (rc)
    return rc;
  batch b = {.l = l, .txn = txn};
  cache_begin_batch(l);
  int recorded = 0;
  rc = open_cursors(&b);
  if (!rc)
    rc = apply_events(&b, events, results, n, base, &recorded);
  close_cursors(&b);
  uint8_t hash[JOURNAL_HASH_SIZE];
  if (!rc && recorded) {
    uint64_t seq = l->journal_seq + 1;
    MDB_val k = {sizeof seq, &seq}, v;
    rc = mdb_get(txn, l->db_journal, &k, &v);
    if (!rc && expect &&
        (v.mv_size != expect->size || memcmp(v.mv_data, expect->prev_hash, v.mv_size)))
      rc = MDB_CORRUPTED; /* the replayed batch does not reproduce the record */
    if (!rc)
      memcpy(hash, (const uint8_t *)v.mv_data + v.mv_size - JOURNAL_HASH_SIZE, sizeof hash);
  }
  if (!rc && !recorded && expect)
    rc = MDB_CORRUPTED; /* the record's expiries are not due in this ledger */
  if (rc || !recorded) {
    mdb_txn_abort(txn);
    cache_clear(l);
    return rc;
  }
  uint64_t last = base + l->expired_n + n - 1;
  rc = mdb_txn_commit(txn);
  if (rc) {
    cache_clear(l);
    return rc;
  }
  cache_end_batch(l);
  l->journal_seq++;
  l->head_is_checkpoint = 0;
  memcpy(l->journal_head, hash, sizeof hash);
  l->last_timestamp = last;
  return 0;
}

static int apply_with_retry(ledger *l, const ledger_event *events, ledger_result *results, size_t n,
                            uint64_t base, const journal_view *expect) {
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
  uint64_t now = ledger_time(l);
  uint64_t base = now > l->last_timestamp ? now : l->last_timestamp + 1;
  int rc = apply_with_retry(l, events, results, n, base, NULL);
  if (!rc)
    return 0;
  int err = store_error(rc);
  if (err != LEDGER_E_FULL && err != LEDGER_E_NOMEM)
    err = LEDGER_E_IO;
  for (size_t i = 0; i < n; i++)
    results[i] = err == LEDGER_E_FULL ? LEDGER_BATCH_STORAGE_FULL : LEDGER_BATCH_STORAGE_ERROR;
  return err;
}

/* Appends a complete checkpoint record (its bytes in rec) as the next record, in its own
 * write transaction, and moves the writer state past it. */
static int append_checkpoint(ledger *l, const uint8_t *rec, uint64_t timestamp) {
  int rc = grow_map_for(l, JOURNAL_CHECKPOINT_SIZE + 4096);
  MDB_txn *txn = NULL;
  if (!rc)
    rc = mdb_txn_begin(l->env, NULL, 0, &txn);
  if (rc)
    return rc;
  uint64_t seq = l->journal_seq + 1;
  MDB_val k = {sizeof seq, &seq}, v = {JOURNAL_CHECKPOINT_SIZE, (void *)rec};
  rc = mdb_put(txn, l->db_journal, &k, &v, MDB_APPEND);
  if (rc) {
    mdb_txn_abort(txn);
    return rc;
  }
  rc = mdb_txn_commit(txn);
  if (rc)
    return rc;
  l->journal_seq = seq;
  memcpy(l->journal_head, rec + JOURNAL_CHECKPOINT_SIZE - JOURNAL_HASH_SIZE, JOURNAL_HASH_SIZE);
  l->last_timestamp = timestamp;
  l->head_is_checkpoint = 1;
  return 0;
}

int ledger_checkpoint(ledger *l, const uint8_t fingerprint[32], ledger_sign_cb sign, void *arg,
                      uint64_t *seq) {
  if (!l || !fingerprint || !sign || l->read_only)
    return LEDGER_E_INVAL;
  if (seq)
    *seq = 0;
  if (l->journal_seq == 0 || l->head_is_checkpoint)
    return 0; /* nothing new to sign */
  uint64_t now = ledger_time(l);
  uint64_t ts = now > l->last_timestamp ? now : l->last_timestamp + 1;
  uint8_t rec[JOURNAL_CHECKPOINT_SIZE];
  journal_write_checkpoint(rec, l->journal_head, l->journal_seq + 1, ts, fingerprint);
  if (sign(rec, JOURNAL_CHECKPOINT_SIGNED_SIZE, rec + JOURNAL_CHECKPOINT_SIGNED_SIZE, arg))
    return LEDGER_E_INVAL;
  journal_seal(rec, sizeof rec);
  int rc = append_checkpoint(l, rec, ts);
  if (rc)
    return store_error(rc) == LEDGER_E_FULL ? LEDGER_E_FULL : LEDGER_E_IO;
  if (seq)
    *seq = l->journal_seq;
  return 0;
}

int ledger_replay_record(ledger *l, const void *record, size_t len) {
  if (!l || !record || l->read_only)
    return LEDGER_E_INVAL;
  journal_view v;
  if (journal_parse(record, len, &v) ||
      (v.kind == JOURNAL_KIND_BATCH && v.event_count == 0 && v.expired_count == 0))
    return LEDGER_E_CORRUPT; /* a batch that did nothing is never recorded */
  if (v.seq != l->journal_seq + 1 || memcmp(v.prev_hash, l->journal_head, JOURNAL_HASH_SIZE) ||
      (l->journal_seq && v.timestamp <= l->last_timestamp))
    return LEDGER_E_CORRUPT;
  if (v.kind == JOURNAL_KIND_CHECKPOINT) /* copied as it is; its signature is the auditor's */
    return store_error(append_checkpoint(l, record, v.timestamp));
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
  return store_error(rc);
}
