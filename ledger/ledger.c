/* ledger.c — opening and closing a ledger, result names and error codes, and the storage
 * readers shared by the writer (apply.c) and the queries (query.c). Layout: store.h. */
#include "ledger.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store.h"

#define DEFAULT_MAP_SIZE (64ull << 20)
#define DEFAULT_MAP_SIZE_MAX (1ull << 40)

_Static_assert(sizeof(ledger_account) == 128, "account layout");
_Static_assert(sizeof(ledger_transfer) == 128, "transfer layout");
_Static_assert(sizeof(account_state) == 48, "account state layout");

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

int ledger_result_is_success(ledger_result r) {
  return r == LEDGER_OK || r == LEDGER_EXISTS;
}

const char *ledger_strerror(int err) {
  switch (err) {
  case LEDGER_E_OK:
    return "ok";
  case LEDGER_E_NOMEM:
    return "out of memory";
  case LEDGER_E_INVAL:
    return "invalid argument";
  case LEDGER_E_NOTFOUND:
    return "not found";
  case LEDGER_E_AGAIN:
    return "queue full (would block)";
  case LEDGER_E_FULL:
    return "storage full (map size limit or disk)";
  case LEDGER_E_IO:
    return "storage I/O error; the batch was not committed";
  case LEDGER_E_CORRUPT:
    return "journal record does not verify";
  case LEDGER_E_VERSION:
    return "data directory has another format version";
  case LEDGER_E_CLOSED:
    return "queue is closed";
  case LEDGER_E_LMDB:
    return "LMDB error";
  default:
    return "unknown ledger error";
  }
}

int store_error(int rc) {
  switch (rc) {
  case 0:
    return 0;
  case MDB_NOTFOUND:
    return LEDGER_E_NOTFOUND;
  case MDB_MAP_FULL:
  case ENOSPC:
  case EDQUOT:
    return LEDGER_E_FULL;
  case ENOMEM:
    return LEDGER_E_NOMEM;
  case EIO:
  case MDB_PANIC:
    return LEDGER_E_IO;
  case MDB_VERSION_MISMATCH:
  case MDB_INVALID:
    return LEDGER_E_VERSION;
  case MDB_CORRUPTED:
    return LEDGER_E_CORRUPT;
  default:
    return rc > 0 ? LEDGER_E_IO : LEDGER_E_LMDB;
  }
}

/* ---------------------------------------------------------------- shared readers */

static int get_u64_row(MDB_txn *txn, MDB_dbi dbi, uint64_t key, void *out, size_t size) {
  MDB_val k = {sizeof key, &key}, v;
  int rc = mdb_get(txn, dbi, &k, &v);
  if (rc)
    return rc;
  if (v.mv_size != size)
    return MDB_CORRUPTED;
  memcpy(out, v.mv_data, size);
  return 0;
}

int store_get_id(MDB_txn *txn, const ledger *l, ledger_id id, uint64_t *value) {
  id_key key = store_id_key(id);
  MDB_val k = {sizeof key, key.b}, v;
  int rc = mdb_get(txn, l->db_ids, &k, &v);
  if (rc)
    return rc;
  if (v.mv_size != sizeof *value)
    return MDB_CORRUPTED;
  memcpy(value, v.mv_data, sizeof *value);
  return 0;
}

int store_get_transfer_row(MDB_txn *txn, const ledger *l, uint64_t ts, transfer_row *out) {
  return get_u64_row(txn, l->db_transfers, ts, out, sizeof *out);
}

int store_get_pending_row(MDB_txn *txn, const ledger *l, uint64_t ts, pending_row *out) {
  return get_u64_row(txn, l->db_pending, ts, out, sizeof *out);
}

int store_find_transfer(MDB_txn *txn, const ledger *l, ledger_id id, transfer_row *row) {
  uint64_t v;
  int rc = store_get_id(txn, l, id, &v);
  if (rc)
    return rc;
  if (v & STORE_FAILED_BIT)
    return MDB_NOTFOUND;
  return store_get_transfer_row(txn, l, v, row);
}

int store_get_account(MDB_txn *txn, const ledger *l, ledger_id id, ledger_account *out,
                      uint64_t *number, account_state *state) {
  id_key key = store_id_key(id);
  MDB_val k = {sizeof key, key.b}, v;
  int rc = mdb_get(txn, l->db_accounts, &k, &v);
  if (rc)
    return rc;
  account_static st;
  account_state s;
  if (v.mv_size != sizeof st)
    return MDB_CORRUPTED;
  memcpy(&st, v.mv_data, sizeof st);
  rc = get_u64_row(txn, l->db_balances, st.number, &s, sizeof s);
  if (rc)
    return rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc;
  *out = st.account;
  out->debits_pending = s.debits_pending;
  out->debits_posted = s.debits_posted;
  out->credits_pending = s.credits_pending;
  out->credits_posted = s.credits_posted;
  out->flags = s.flags;
  if (number)
    *number = st.number;
  if (state)
    *state = s;
  return 0;
}

int store_read_head(MDB_txn *txn, const ledger *l, journal_head *h) {
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
  h->is_checkpoint = jv.kind == JOURNAL_KIND_CHECKPOINT;
  /* A checkpoint uses one timestamp, its own; a batch one per expiry and event. */
  h->last_timestamp =
      h->is_checkpoint ? jv.timestamp : jv.timestamp + jv.expired_count + jv.event_count - 1;
  return 0;
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

/* Loads the writer state: journal head and account count. */
static int load_writer_state(ledger *l, MDB_txn *txn) {
  journal_head h;
  int rc = store_read_head(txn, l, &h);
  if (rc)
    return rc;
  l->journal_seq = h.seq;
  l->head_is_checkpoint = h.is_checkpoint;
  l->last_timestamp = h.last_timestamp;
  memcpy(l->journal_head, h.hash, JOURNAL_HASH_SIZE);
  MDB_cursor *cur;
  rc = mdb_cursor_open(txn, l->db_balances, &cur);
  if (rc)
    return rc;
  MDB_val k, v;
  rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
  mdb_cursor_close(cur);
  l->account_count = 0;
  if (rc == MDB_NOTFOUND)
    return 0;
  if (rc)
    return rc;
  memcpy(&l->account_count, k.mv_data, sizeof l->account_count);
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
      {"balances", &l->db_balances, MDB_INTEGERKEY},
      {"transfers", &l->db_transfers, MDB_INTEGERKEY},
      {"ids", &l->db_ids, 0},
      {"pending", &l->db_pending, MDB_INTEGERKEY},
      {"expiry", &l->db_expiry, 0},
      {"history", &l->db_history, MDB_INTEGERKEY},
      {"journal", &l->db_journal, MDB_INTEGERKEY},
  };
  for (size_t i = 0; i < sizeof dbs / sizeof dbs[0] && !rc; i++)
    rc = mdb_dbi_open(txn, dbs[i].name, dbs[i].flags | create, dbs[i].dbi);
  MDB_val k = {6, "format"}, v;
  if (!rc)
    rc = mdb_get(txn, l->db_meta, &k, &v);
  if (rc == MDB_NOTFOUND && !l->read_only) {
    uint32_t version = STORE_FORMAT_VERSION;
    MDB_val nv = {sizeof version, &version};
    rc = mdb_put(txn, l->db_meta, &k, &nv, 0);
  } else if (rc == 0) {
    uint32_t version = 0;
    if (v.mv_size == sizeof version)
      memcpy(&version, v.mv_data, sizeof version);
    if (version != STORE_FORMAT_VERSION)
      rc = MDB_VERSION_MISMATCH;
  }
  if (!rc) {
    rc = load_writer_state(l, txn);
    /* Read-only (an auditor): the writer state is never used, and a journal whose last record
     * does not verify must still open, so that the audit can say which record it is. */
    if (rc == MDB_CORRUPTED && l->read_only)
      rc = 0;
  }
  if (rc) {
    mdb_txn_abort(txn);
    return rc;
  }
  return mdb_txn_commit(txn); /* also for read-only: an aborted txn would close the handles */
}

/* Allocates the writer's scratch (apply.c). */
static int alloc_writer(ledger *l) {
  l->slots = malloc(CACHE_CAPACITY * sizeof *l->slots);
  l->index = calloc(CACHE_INDEX_SIZE, sizeof *l->index);
  l->dirty = malloc(ACCOUNTS_PER_BATCH_MAX * sizeof *l->dirty);
  l->sort_keys = malloc(ACCOUNTS_PER_BATCH_MAX * sizeof *l->sort_keys);
  l->sort_tmp = malloc(ACCOUNTS_PER_BATCH_MAX * sizeof *l->sort_tmp);
  l->undo = malloc(ACCOUNTS_PER_BATCH_MAX * sizeof *l->undo);
  l->expired = malloc(LEDGER_BATCH_MAX * sizeof *l->expired);
  return l->slots && l->index && l->dirty && l->sort_keys && l->sort_tmp && l->undo && l->expired
             ? 0
             : ENOMEM;
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
  int rc = l->read_only ? 0 : alloc_writer(l);
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
    int err = store_error(rc);
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
  free(l->slots);
  free(l->index);
  free(l->dirty);
  free(l->sort_keys);
  free(l->sort_tmp);
  free(l->undo);
  free(l->expired);
  free(l);
}
