/* disburse_store.c — the LMDB layout behind disburse_store.h.
 *
 *   meta        "format" → u32 1; "next_programme", "next_batch" → u64
 *   programmes  u32 number (native, MDB_INTEGERKEY) → sw_programme
 *   prog_ids    programme id text → u32 number
 *   benefs      token[32] → sw_beneficiary
 *   batches     u64 number BE → sw_batch
 *   files       programme BE32 ‖ cycle BE32 ‖ sha256[32] → u64 batch
 *   items       batch BE64 ‖ index BE32 → sw_batch_item
 *   rejects     batch BE64 ‖ line BE64 → reason text
 *   cycles      programme BE32 ‖ cycle BE32 ‖ token[32] → u64 batch, u64 line
 *   status      batch BE64 ‖ cycle BE32 ‖ index BE32 → sw_item_status
 * Big-endian keys keep a batch's records together and in order for cursor scans.
 */
#include "disburse_store.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAP_SIZE (64ull << 30) /* address space only: the file grows with its data */
#define FORMAT 1u

struct sw_dstore {
  MDB_env *env;
  MDB_dbi meta, programmes, prog_ids, benefs, batches, files, items, rejects, cycles, status;
};

struct sw_dstore_txn {
  sw_dstore *s;
  MDB_txn *txn;
};

const char *sw_dstore_strerror(int err) {
  switch (err) {
  case SW_DSTORE_E_OK:
    return "ok";
  case SW_DSTORE_E_NOTFOUND:
    return "not found";
  case SW_DSTORE_E_FULL:
    return "disbursement store full";
  case SW_DSTORE_E_IO:
    return "disbursement store I/O error";
  case SW_DSTORE_E_CORRUPT:
    return "disbursement store record corrupt";
  case SW_DSTORE_E_NOMEM:
    return "out of memory";
  case SW_DSTORE_E_EXISTS:
    return "already taken";
  default:
    return "disbursement store error";
  }
}

static int map_err(int rc) {
  switch (rc) {
  case 0:
    return 0;
  case MDB_NOTFOUND:
    return SW_DSTORE_E_NOTFOUND;
  case MDB_MAP_FULL:
  case ENOSPC:
    return SW_DSTORE_E_FULL;
  case EIO:
    return SW_DSTORE_E_IO;
  case ENOMEM:
    return SW_DSTORE_E_NOMEM;
  default:
    return SW_DSTORE_E_LMDB;
  }
}

static void put_be(uint8_t *p, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; i--, v >>= 8)
    p[i] = (uint8_t)v;
}

static uint64_t get_be(const uint8_t *p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++)
    v = v << 8 | p[i];
  return v;
}

/* ---------------------------------------------------------------- open and close */

int sw_dstore_open(const char *data_dir, sw_dstore **out, char *err, size_t errlen) {
  char path[4096];
  *out = NULL;
  if (snprintf(path, sizeof path, "%s/disburse", data_dir) >= (int)sizeof path) {
    snprintf(err, errlen, "disburse store: path too long");
    return SW_DSTORE_E_LMDB;
  }
  if (mkdir(path, 0750) != 0 && errno != EEXIST) {
    snprintf(err, errlen, "disburse store: mkdir %s: %s", path, strerror(errno));
    return SW_DSTORE_E_IO;
  }
  sw_dstore *s = calloc(1, sizeof *s);
  if (!s)
    return SW_DSTORE_E_NOMEM;
  MDB_txn *txn = NULL;
  int rc = mdb_env_create(&s->env);
  if (!rc)
    rc = mdb_env_set_maxdbs(s->env, 16);
  if (!rc)
    rc = mdb_env_set_mapsize(s->env, MAP_SIZE);
  if (!rc)
    rc = mdb_env_open(s->env, path, MDB_NOTLS, 0640);
  if (!rc)
    rc = mdb_txn_begin(s->env, NULL, 0, &txn);
  struct {
    const char *name;
    MDB_dbi *dbi;
    unsigned flags;
  } dbs[] = {{"meta", &s->meta, 0},        {"programmes", &s->programmes, MDB_INTEGERKEY},
             {"prog_ids", &s->prog_ids, 0}, {"benefs", &s->benefs, 0},
             {"batches", &s->batches, 0},   {"files", &s->files, 0},
             {"items", &s->items, 0},       {"rejects", &s->rejects, 0},
             {"cycles", &s->cycles, 0},     {"status", &s->status, 0}};
  for (size_t i = 0; !rc && i < sizeof dbs / sizeof dbs[0]; i++)
    rc = mdb_dbi_open(txn, dbs[i].name, MDB_CREATE | dbs[i].flags, dbs[i].dbi);
  if (!rc) {
    MDB_val k = {6, (void *)"format"}, v;
    rc = mdb_get(txn, s->meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
      uint32_t f = FORMAT;
      v.mv_size = sizeof f;
      v.mv_data = &f;
      rc = mdb_put(txn, s->meta, &k, &v, 0);
    } else if (!rc && (v.mv_size != 4 || *(const uint32_t *)v.mv_data != FORMAT)) {
      mdb_txn_abort(txn);
      mdb_env_close(s->env);
      free(s);
      snprintf(err, errlen, "disburse store %s: unknown format", path);
      return SW_DSTORE_E_CORRUPT;
    }
  }
  if (!rc) {
    rc = mdb_txn_commit(txn);
    txn = NULL;
  }
  if (rc) {
    snprintf(err, errlen, "disburse store %s: %s", path, mdb_strerror(rc));
    if (txn)
      mdb_txn_abort(txn);
    mdb_env_close(s->env);
    free(s);
    return map_err(rc);
  }
  *out = s;
  return 0;
}

void sw_dstore_close(sw_dstore *s) {
  if (!s)
    return;
  mdb_env_close(s->env);
  free(s);
}

int sw_dstore_begin(sw_dstore *s, int rdonly, sw_dstore_txn **out) {
  sw_dstore_txn *t = calloc(1, sizeof *t);
  if (!t)
    return SW_DSTORE_E_NOMEM;
  int rc = mdb_txn_begin(s->env, NULL, rdonly ? MDB_RDONLY : 0, &t->txn);
  if (rc) {
    free(t);
    return map_err(rc);
  }
  t->s = s;
  *out = t;
  return 0;
}

int sw_dstore_commit(sw_dstore_txn *t) {
  int rc = mdb_txn_commit(t->txn);
  free(t);
  return map_err(rc);
}

int sw_dstore_commit_lazy(sw_dstore_txn *t) {
  MDB_env *env = t->s->env;
  int rc = mdb_env_set_flags(env, MDB_NOMETASYNC, 1);
  if (rc) {
    mdb_txn_abort(t->txn);
    free(t);
    return map_err(rc);
  }
  rc = mdb_txn_commit(t->txn);
  free(t);
  int rc2 = mdb_env_set_flags(env, MDB_NOMETASYNC, 0);
  return map_err(rc ? rc : rc2);
}

void sw_dstore_abort(sw_dstore_txn *t) {
  if (!t)
    return;
  mdb_txn_abort(t->txn);
  free(t);
}

/* ---------------------------------------------------------------- helpers */

static int put(sw_dstore_txn *t, MDB_dbi dbi, const void *key, size_t klen, const void *val,
               size_t vlen) {
  MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
  return map_err(mdb_put(t->txn, dbi, &k, &v, 0));
}

/* Copies the record at key into out (exactly n bytes expected). */
static int get(sw_dstore_txn *t, MDB_dbi dbi, const void *key, size_t klen, void *out, size_t n) {
  MDB_val k = {klen, (void *)key}, v;
  int rc = mdb_get(t->txn, dbi, &k, &v);
  if (rc)
    return map_err(rc);
  if (v.mv_size != n)
    return SW_DSTORE_E_CORRUPT;
  memcpy(out, v.mv_data, n);
  return 0;
}

static int del(sw_dstore_txn *t, MDB_dbi dbi, const void *key, size_t klen) {
  MDB_val k = {klen, (void *)key};
  return map_err(mdb_del(t->txn, dbi, &k, NULL));
}

/* Calls cb on every record whose key starts with prefix[plen], from key `from` (which must
 * start with the prefix; NULL = the prefix itself). */
typedef int (*scan_cb)(const MDB_val *k, const MDB_val *v, void *arg);

static int scan(sw_dstore_txn *t, MDB_dbi dbi, const uint8_t *prefix, size_t plen,
                const uint8_t *from, size_t flen, scan_cb cb, void *arg) {
  MDB_cursor *c;
  int rc = mdb_cursor_open(t->txn, dbi, &c);
  if (rc)
    return map_err(rc);
  MDB_val k = {from ? flen : plen, (void *)(from ? from : prefix)}, v;
  int r = 0;
  for (rc = mdb_cursor_get(c, &k, &v, k.mv_size ? MDB_SET_RANGE : MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)
      break;
    if ((r = cb(&k, &v, arg)) != 0)
      break;
  }
  mdb_cursor_close(c);
  if (r)
    return r;
  return rc == MDB_NOTFOUND || rc == 0 ? 0 : map_err(rc);
}

/* ---------------------------------------------------------------- counters, programmes */

int sw_dstore_next(sw_dstore_txn *t, const char *counter, uint64_t *out) {
  uint64_t n = 0;
  int rc = get(t, t->s->meta, counter, strlen(counter), &n, sizeof n);
  if (rc && rc != SW_DSTORE_E_NOTFOUND)
    return rc;
  n = n ? n : 1;
  *out = n;
  n++;
  return put(t, t->s->meta, counter, strlen(counter), &n, sizeof n);
}

int sw_dstore_programme_put(sw_dstore_txn *t, const sw_programme *p) {
  unsigned int key = p->number;
  int rc = put(t, t->s->programmes, &key, sizeof key, p, sizeof *p);
  if (!rc)
    rc = put(t, t->s->prog_ids, p->id, strlen(p->id), &p->number, sizeof p->number);
  return rc;
}

int sw_dstore_programme_get(sw_dstore_txn *t, uint32_t number, sw_programme *out) {
  unsigned int key = number;
  return get(t, t->s->programmes, &key, sizeof key, out, sizeof *out);
}

int sw_dstore_programme_find(sw_dstore_txn *t, const char *id, sw_programme *out) {
  uint32_t number;
  size_t n = strlen(id);
  if (n == 0 || n > 63)
    return SW_DSTORE_E_NOTFOUND;
  int rc = get(t, t->s->prog_ids, id, n, &number, sizeof number);
  return rc ? rc : sw_dstore_programme_get(t, number, out);
}

/* ---------------------------------------------------------------- beneficiaries */

int sw_dstore_beneficiary_put(sw_dstore_txn *t, const uint8_t token[32], const sw_beneficiary *b) {
  return put(t, t->s->benefs, token, 32, b, sizeof *b);
}

int sw_dstore_beneficiary_get(sw_dstore_txn *t, const uint8_t token[32], sw_beneficiary *out) {
  return get(t, t->s->benefs, token, 32, out, sizeof *out);
}

/* ---------------------------------------------------------------- batches */

int sw_dstore_batch_put(sw_dstore_txn *t, const sw_batch *b) {
  uint8_t k[8];
  put_be(k, b->number, 8);
  return put(t, t->s->batches, k, 8, b, sizeof *b);
}

int sw_dstore_batch_get(sw_dstore_txn *t, uint64_t number, sw_batch *out) {
  uint8_t k[8];
  put_be(k, number, 8);
  return get(t, t->s->batches, k, 8, out, sizeof *out);
}

typedef struct batch_scan {
  int (*cb)(const sw_batch *b, void *arg);
  void *arg;
} batch_scan;

static int batch_scan_cb(const MDB_val *k, const MDB_val *v, void *arg) {
  (void)k;
  batch_scan *bs = arg;
  sw_batch b;
  if (v->mv_size != sizeof b)
    return SW_DSTORE_E_CORRUPT;
  memcpy(&b, v->mv_data, sizeof b);
  return bs->cb(&b, bs->arg);
}

int sw_dstore_batch_each(sw_dstore_txn *t, int (*cb)(const sw_batch *b, void *arg), void *arg) {
  batch_scan bs = {cb, arg};
  uint8_t none = 0;
  return scan(t, t->s->batches, &none, 0, NULL, 0, batch_scan_cb, &bs);
}

static void file_key(uint8_t k[40], uint32_t programme, uint32_t cycle, const uint8_t sha[32]) {
  put_be(k, programme, 4);
  put_be(k + 4, cycle, 4);
  memcpy(k + 8, sha, 32);
}

int sw_dstore_file_put(sw_dstore_txn *t, uint32_t programme, uint32_t cycle,
                       const uint8_t sha[32], uint64_t batch) {
  uint8_t k[40];
  file_key(k, programme, cycle, sha);
  return put(t, t->s->files, k, sizeof k, &batch, sizeof batch);
}

int sw_dstore_file_get(sw_dstore_txn *t, uint32_t programme, uint32_t cycle,
                       const uint8_t sha[32], uint64_t *batch) {
  uint8_t k[40];
  file_key(k, programme, cycle, sha);
  return get(t, t->s->files, k, sizeof k, batch, sizeof *batch);
}

/* ---------------------------------------------------------------- items */

int sw_dstore_item_put(sw_dstore_txn *t, uint64_t batch, uint32_t index, const sw_batch_item *it) {
  uint8_t k[12];
  put_be(k, batch, 8);
  put_be(k + 8, index, 4);
  MDB_val key = {12, k}, v = {sizeof *it, (void *)it};
  /* items of a batch are written in index order: append when that holds */
  return map_err(mdb_put(t->txn, t->s->items, &key, &v, 0));
}

int sw_dstore_item_get(sw_dstore_txn *t, uint64_t batch, uint32_t index, sw_batch_item *out) {
  uint8_t k[12];
  put_be(k, batch, 8);
  put_be(k + 8, index, 4);
  return get(t, t->s->items, k, 12, out, sizeof *out);
}

typedef struct item_scan {
  int (*cb)(uint32_t index, const sw_batch_item *it, void *arg);
  void *arg;
} item_scan;

static int item_scan_cb(const MDB_val *k, const MDB_val *v, void *arg) {
  item_scan *is = arg;
  sw_batch_item it;
  if (k->mv_size != 12 || v->mv_size != sizeof it)
    return SW_DSTORE_E_CORRUPT;
  memcpy(&it, v->mv_data, sizeof it);
  return is->cb((uint32_t)get_be((const uint8_t *)k->mv_data + 8, 4), &it, is->arg);
}

int sw_dstore_item_each(sw_dstore_txn *t, uint64_t batch, uint32_t from,
                        int (*cb)(uint32_t index, const sw_batch_item *it, void *arg), void *arg) {
  uint8_t k[12];
  put_be(k, batch, 8);
  put_be(k + 8, from, 4);
  item_scan is = {cb, arg};
  return scan(t, t->s->items, k, 8, k, 12, item_scan_cb, &is);
}

static int purge_prefix(sw_dstore_txn *t, MDB_dbi dbi, const uint8_t *prefix, size_t plen) {
  MDB_cursor *c;
  int rc = mdb_cursor_open(t->txn, dbi, &c);
  if (rc)
    return map_err(rc);
  MDB_val k, v;
  for (;;) { /* seek again after each delete: simple, and O(log n) each */
    k.mv_size = plen;
    k.mv_data = (void *)prefix;
    rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
    if (rc || k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)
      break;
    if ((rc = mdb_cursor_del(c, 0)) != 0)
      break;
  }
  mdb_cursor_close(c);
  return rc == MDB_NOTFOUND || rc == 0 ? 0 : map_err(rc);
}

int sw_dstore_batch_purge(sw_dstore_txn *t, uint64_t batch, int keep_rejects) {
  uint8_t k[8];
  put_be(k, batch, 8);
  int rc = purge_prefix(t, t->s->items, k, 8);
  if (!rc)
    rc = purge_prefix(t, t->s->status, k, 8);
  if (!rc && !keep_rejects)
    rc = purge_prefix(t, t->s->rejects, k, 8);
  return rc;
}

/* ---------------------------------------------------------------- rejects */

int sw_dstore_reject_put(sw_dstore_txn *t, uint64_t batch, uint64_t line, const char *reason) {
  uint8_t k[16];
  put_be(k, batch, 8);
  put_be(k + 8, line, 8);
  return put(t, t->s->rejects, k, 16, reason, strlen(reason));
}

typedef struct reject_scan {
  int (*cb)(uint64_t line, const char *reason, void *arg);
  void *arg;
} reject_scan;

static int reject_scan_cb(const MDB_val *k, const MDB_val *v, void *arg) {
  reject_scan *rs = arg;
  char text[256];
  size_t n = v->mv_size < sizeof text - 1 ? v->mv_size : sizeof text - 1;
  memcpy(text, v->mv_data, n);
  text[n] = 0;
  return rs->cb(get_be((const uint8_t *)k->mv_data + 8, 8), text, rs->arg);
}

int sw_dstore_reject_each(sw_dstore_txn *t, uint64_t batch,
                          int (*cb)(uint64_t line, const char *reason, void *arg), void *arg) {
  uint8_t k[8];
  put_be(k, batch, 8);
  reject_scan rs = {cb, arg};
  return scan(t, t->s->rejects, k, 8, NULL, 0, reject_scan_cb, &rs);
}

/* ---------------------------------------------------------------- cycle index */

static void cycle_key(uint8_t k[40], uint32_t programme, uint32_t cycle, const uint8_t token[32]) {
  put_be(k, programme, 4);
  put_be(k + 4, cycle, 4);
  memcpy(k + 8, token, 32);
}

int sw_dstore_cycle_get(sw_dstore_txn *t, uint32_t programme, uint32_t cycle,
                        const uint8_t token[32], uint64_t *batch, uint64_t *line) {
  uint8_t k[40];
  uint64_t v[2];
  cycle_key(k, programme, cycle, token);
  int rc = get(t, t->s->cycles, k, sizeof k, v, sizeof v);
  if (!rc) {
    *batch = v[0];
    *line = v[1];
  }
  return rc;
}

int sw_dstore_cycle_add(sw_dstore_txn *t, uint32_t programme, uint32_t cycle,
                        const uint8_t token[32], uint64_t batch, uint64_t line) {
  uint8_t k[40];
  uint64_t v[2] = {batch, line};
  cycle_key(k, programme, cycle, token);
  MDB_val key = {sizeof k, k}, val = {sizeof v, v};
  int rc = mdb_put(t->txn, t->s->cycles, &key, &val, MDB_NOOVERWRITE);
  return rc == MDB_KEYEXIST ? SW_DSTORE_E_EXISTS : map_err(rc);
}

int sw_dstore_cycle_del(sw_dstore_txn *t, uint32_t programme, uint32_t cycle,
                        const uint8_t token[32]) {
  uint8_t k[40];
  cycle_key(k, programme, cycle, token);
  int rc = del(t, t->s->cycles, k, sizeof k);
  return rc == SW_DSTORE_E_NOTFOUND ? 0 : rc;
}

/* ---------------------------------------------------------------- statuses */

static void status_key(uint8_t k[16], uint64_t batch, uint32_t cycle, uint32_t index) {
  put_be(k, batch, 8);
  put_be(k + 8, cycle, 4);
  put_be(k + 12, index, 4);
}

int sw_dstore_status_put(sw_dstore_txn *t, uint64_t batch, uint32_t cycle, uint32_t index,
                         const sw_item_status *st) {
  uint8_t k[16];
  status_key(k, batch, cycle, index);
  return put(t, t->s->status, k, 16, st, sizeof *st);
}

int sw_dstore_status_get(sw_dstore_txn *t, uint64_t batch, uint32_t cycle, uint32_t index,
                         sw_item_status *out) {
  uint8_t k[16];
  status_key(k, batch, cycle, index);
  int rc = get(t, t->s->status, k, 16, out, sizeof *out);
  if (rc == SW_DSTORE_E_NOTFOUND) {
    memset(out, 0, sizeof *out);
    out->status = SW_ITEM_PENDING;
    return 0;
  }
  return rc;
}
