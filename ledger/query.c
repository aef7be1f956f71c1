/* query.c — the ledger's read side: lookups, account histories, totals and the journal.
 * Every function runs in its own LMDB read transaction, on any thread, beside the writer. */
#include "ledger.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

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
    return store_error(rc);
  rc = store_get_account(txn, l, id, out, NULL, NULL);
  read_end(l, txn);
  return store_error(rc);
}

int ledger_lookup_transfer(ledger *l, ledger_id id, ledger_transfer *out) {
  if (!l || !out)
    return LEDGER_E_INVAL;
  MDB_txn *txn;
  int rc = read_begin(l, &txn);
  if (rc)
    return store_error(rc);
  transfer_row row;
  rc = store_find_transfer(txn, l, id, &row);
  if (!rc)
    *out = row.transfer;
  read_end(l, txn);
  return store_error(rc);
}

int ledger_pending_state_of(ledger *l, ledger_id id, ledger_pending_state *state,
                            uint64_t *resolved_ts) {
  if (!l || !state)
    return LEDGER_E_INVAL;
  MDB_txn *txn;
  int rc = read_begin(l, &txn);
  if (rc)
    return store_error(rc);
  transfer_row row;
  pending_row pr = {LEDGER_PENDING_NONE, 0, 0, 0};
  rc = store_find_transfer(txn, l, id, &row);
  if (!rc && (row.transfer.flags & LEDGER_TRANSFER_PENDING))
    rc = store_get_pending_row(txn, l, row.transfer.timestamp, &pr);
  read_end(l, txn);
  if (rc)
    return store_error(rc);
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
  ledger_account account;
  account_state state;
  int rc = store_get_account(txn, l, f->account_id, &account, NULL, &state);
  if (rc)
    return rc;
  unsigned sides = f->flags & (LEDGER_FILTER_DEBITS | LEDGER_FILTER_CREDITS);
  if (!sides)
    sides = LEDGER_FILTER_DEBITS | LEDGER_FILTER_CREDITS;
  uint64_t ts = state.last_transfer_ts;
  while (ts) {
    if (f->timestamp_min && ts < f->timestamp_min)
      break;
    transfer_row row;
    rc = store_get_transfer_row(txn, l, ts, &row);
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
    uint64_t ts = row->transfer.timestamp;
    MDB_val k = {sizeof ts, &ts}, v;
    int rc = mdb_get(txn, c->l->db_history, &k, &v);
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
    return store_error(rc);
  collect c = {l,
               out,
               item_size,
               cap < f->limit ? cap : f->limit,
               0,
               (f->flags & LEDGER_FILTER_REVERSED) != 0,
               want_balances,
               0};
  rc = walk_account_chain(l, txn, f, collect_cb, &c);
  read_end(l, txn);
  if (!rc)
    rc = c.err;
  if (!rc)
    rc = collect_finish(&c, n);
  return store_error(rc);
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
    return store_error(rc);
  MDB_cursor *cur;
  rc = mdb_cursor_open(txn, l->db_balances, &cur);
  MDB_val k, v;
  if (!rc) {
    while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
      if (v.mv_size != sizeof(account_state)) {
        rc = MDB_CORRUPTED;
        break;
      }
      account_state a;
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
  return rc == MDB_NOTFOUND ? 0 : store_error(rc);
}

int ledger_scan_expiring(ledger *l, ledger_pending_cb cb, void *arg) {
  if (!l || !cb)
    return LEDGER_E_INVAL;
  MDB_txn *txn;
  int rc = read_begin(l, &txn);
  if (rc)
    return store_error(rc);
  MDB_cursor *cur;
  rc = mdb_cursor_open(txn, l->db_expiry, &cur);
  int stop = 0;
  if (!rc) {
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && !stop;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
      if (k.mv_size != 16) {
        rc = MDB_CORRUPTED;
        break;
      }
      transfer_row row;
      rc = store_get_transfer_row(txn, l, store_read_be64((const uint8_t *)k.mv_data + 8), &row);
      if (rc)
        break;
      stop = cb(&row.transfer, store_read_be64(k.mv_data), arg);
    }
    mdb_cursor_close(cur);
  }
  read_end(l, txn);
  if (stop)
    return stop;
  return rc == MDB_NOTFOUND ? 0 : store_error(rc);
}

int ledger_next_expiry(ledger *l, uint64_t *expires_at) {
  if (!l || !expires_at)
    return LEDGER_E_INVAL;
  *expires_at = 0;
  MDB_txn *txn;
  int rc = read_begin(l, &txn);
  if (rc)
    return store_error(rc);
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
  return rc == MDB_NOTFOUND ? 0 : store_error(rc);
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
    return store_error(rc);
  rc = store_read_head(txn, l, &h);
  read_end(l, txn);
  if (rc)
    return store_error(rc);
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
    return store_error(rc);
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
  return rc == MDB_NOTFOUND ? 0 : store_error(rc);
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
