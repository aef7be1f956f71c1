/* store.c — the simulated operator's durable state in its own LMDB environment (store.h).
 *
 * Records are encoded field by field in little-endian order (never struct images), so a data
 * directory does not depend on the compiler's layout. Keys: wallets by 4-byte big-endian index
 * (LMDB's byte order is then the numeric order), pending and settled by the 16-byte transfer id,
 * meta by the names "meta" and "counters".
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define STORE_VERSION 1u
#define MAP_INITIAL ((size_t)64 << 20)
#define MAP_MAX ((size_t)1 << 40)

enum { META_SIZE = 4 * 4 + 3 * 8 + OPSIM_PARTICIPANT_MAX + OPSIM_PREFIX_MAX + 4 };
enum { WALLET_SIZE = 8 + 8 + 4, PENDING_SIZE = 3 * 4 + 3 * 8, SETTLED_SIZE = 4 * 4 + 2 * 8 };

struct opsim_store {
  MDB_env *env;
  MDB_dbi meta, wallets, pending, settled;
  int lock_fd;
  int readonly;
};

typedef enum { OP_PUT_PENDING, OP_DEL_PENDING, OP_PUT_SETTLED } op_type;

struct opsim_batch_op {
  op_type type;
  union {
    opsim_pending pending;
    opsim_settled settled;
    uint8_t id[16];
  } u;
};

const char *opsim_store_strerror(int err) {
  switch (err) {
  case OPSIM_STORE_OK:
    return "ok";
  case OPSIM_STORE_E_IO:
    return "storage error";
  case OPSIM_STORE_E_NOMEM:
    return "out of memory";
  case OPSIM_STORE_E_EMPTY:
    return "no wallets in this data directory yet";
  case OPSIM_STORE_E_EXISTS:
    return "the data directory already holds wallets";
  case OPSIM_STORE_E_CORRUPT:
    return "unexpected record in the data directory";
  case OPSIM_STORE_E_LOCKED:
    return "another tuma-opsim runs on this data directory";
  default:
    return "unknown error";
  }
}

const char *opsim_outcome_name(int outcome) {
  switch (outcome) {
  case OPSIM_OUTCOME_COMMITTED:
    return "COMMITTED";
  case OPSIM_OUTCOME_ABORTED:
    return "ABORTED";
  case OPSIM_OUTCOME_EXPIRED:
    return "EXPIRED";
  case OPSIM_OUTCOME_UNSENT:
    return "UNSENT";
  case OPSIM_OUTCOME_NOT_FOUND:
    return "NOT_FOUND";
  default:
    return "UNKNOWN";
  }
}

static const char *const counter_names[OPSIM_COUNTERS] = {
    "in_committed", "in_committed_amount", "in_aborted",    "in_expired",
    "in_not_found", "in_rejected",         "out_committed", "out_committed_amount",
    "out_aborted",  "out_expired",         "out_unsent",    "out_not_found",
};

const char *opsim_counter_name(int counter) {
  return counter >= 0 && counter < OPSIM_COUNTERS ? counter_names[counter] : "unknown";
}

static void seterr(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* ---------------------------------------------------------------- encoding */

static void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}
static uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

/* A fixed-size string field: copied NUL-padded; read back NUL-terminated. */
static void put_str(uint8_t *p, const char *s, size_t size) {
  memset(p, 0, size);
  size_t n = strnlen(s, size - 1);
  memcpy(p, s, n);
}
static int get_str(const uint8_t *p, char *out, size_t size) {
  if (memchr(p, 0, size) == NULL)
    return -1;
  memcpy(out, p, size);
  return 0;
}

static void encode_meta(const opsim_meta *m, uint8_t out[META_SIZE]) {
  uint8_t *p = out;
  put32(p, STORE_VERSION), p += 4;
  put32(p, m->digits), p += 4;
  put32(p, m->wallets), p += 4;
  put32(p, 0), p += 4;
  put64(p, m->initial_balance), p += 8;
  put64(p, m->initial_total), p += 8;
  put64(p, m->created_ms), p += 8;
  put_str(p, m->participant, OPSIM_PARTICIPANT_MAX), p += OPSIM_PARTICIPANT_MAX;
  put_str(p, m->prefix, OPSIM_PREFIX_MAX), p += OPSIM_PREFIX_MAX;
  put_str(p, m->currency, 4);
}

static int decode_meta(const MDB_val *v, opsim_meta *m) {
  if (v->mv_size != META_SIZE)
    return OPSIM_STORE_E_CORRUPT;
  const uint8_t *p = v->mv_data;
  if (get32(p) != STORE_VERSION)
    return OPSIM_STORE_E_CORRUPT;
  memset(m, 0, sizeof *m);
  m->digits = get32(p + 4);
  m->wallets = get32(p + 8);
  m->initial_balance = get64(p + 16);
  m->initial_total = get64(p + 24);
  m->created_ms = get64(p + 32);
  p += 40;
  if (get_str(p, m->participant, OPSIM_PARTICIPANT_MAX) ||
      get_str(p + OPSIM_PARTICIPANT_MAX, m->prefix, OPSIM_PREFIX_MAX) ||
      get_str(p + OPSIM_PARTICIPANT_MAX + OPSIM_PREFIX_MAX, m->currency, 4))
    return OPSIM_STORE_E_CORRUPT;
  return 0;
}

static void encode_wallet(const opsim_wallet *w, uint8_t out[WALLET_SIZE]) {
  put64(out, w->balance);
  put64(out + 8, w->limit);
  put32(out + 16, w->status);
}

static int decode_wallet(const MDB_val *v, opsim_wallet *w) {
  if (v->mv_size != WALLET_SIZE)
    return OPSIM_STORE_E_CORRUPT;
  const uint8_t *p = v->mv_data;
  w->balance = get64(p);
  w->limit = get64(p + 8);
  w->status = get32(p + 16);
  return 0;
}

static void encode_pending(const opsim_pending *r, uint8_t out[PENDING_SIZE]) {
  put32(out, r->kind);
  put32(out + 4, r->wallet);
  put32(out + 8, r->flags);
  put64(out + 12, r->amount);
  put64(out + 20, r->expiration_ms);
  put64(out + 28, r->created_ms);
}

static int decode_pending(const MDB_val *k, const MDB_val *v, opsim_pending *r) {
  if (k->mv_size != 16 || v->mv_size != PENDING_SIZE)
    return OPSIM_STORE_E_CORRUPT;
  const uint8_t *p = v->mv_data;
  memcpy(r->id, k->mv_data, 16);
  r->kind = get32(p);
  r->wallet = get32(p + 4);
  r->flags = get32(p + 8);
  r->amount = get64(p + 12);
  r->expiration_ms = get64(p + 20);
  r->created_ms = get64(p + 28);
  return r->kind == OPSIM_CREDIT || r->kind == OPSIM_DEBIT ? 0 : OPSIM_STORE_E_CORRUPT;
}

static void encode_settled(const opsim_settled *r, uint8_t out[SETTLED_SIZE]) {
  put32(out, r->kind);
  put32(out + 4, r->wallet);
  put32(out + 8, r->outcome);
  put32(out + 12, r->code);
  put64(out + 16, r->amount);
  put64(out + 24, r->settled_ms);
}

static int decode_settled(const MDB_val *k, const MDB_val *v, opsim_settled *r) {
  if (k->mv_size != 16 || v->mv_size != SETTLED_SIZE)
    return OPSIM_STORE_E_CORRUPT;
  const uint8_t *p = v->mv_data;
  memcpy(r->id, k->mv_data, 16);
  r->kind = get32(p);
  r->wallet = get32(p + 4);
  r->outcome = get32(p + 8);
  r->code = get32(p + 12);
  r->amount = get64(p + 16);
  r->settled_ms = get64(p + 24);
  return 0;
}

static void wallet_key(uint32_t index, uint8_t out[4]) {
  out[0] = (uint8_t)(index >> 24);
  out[1] = (uint8_t)(index >> 16);
  out[2] = (uint8_t)(index >> 8);
  out[3] = (uint8_t)index;
}

/* ---------------------------------------------------------------- batch */

int opsim_batch_init(opsim_batch *b, uint32_t nwallets) {
  memset(b, 0, sizeof *b);
  b->is_dirty = calloc(nwallets ? nwallets : 1, 1);
  if (!b->is_dirty)
    return OPSIM_STORE_E_NOMEM;
  b->nwallets = nwallets;
  return 0;
}

void opsim_batch_free(opsim_batch *b) {
  if (!b)
    return;
  free(b->ops);
  free(b->dirty);
  free(b->is_dirty);
  memset(b, 0, sizeof *b);
}

int opsim_batch_pending(const opsim_batch *b) {
  return b->nops > 0 || b->ndirty > 0 || b->counters_dirty;
}

static opsim_batch_op *batch_add(opsim_batch *b) {
  if (b->nops == b->capops) {
    size_t cap = b->capops ? b->capops * 2 : 64;
    opsim_batch_op *ops = realloc(b->ops, cap * sizeof *ops);
    if (!ops)
      return NULL;
    b->ops = ops;
    b->capops = cap;
  }
  return &b->ops[b->nops++];
}

int opsim_batch_put_pending(opsim_batch *b, const opsim_pending *p) {
  opsim_batch_op *op = batch_add(b);
  if (!op)
    return OPSIM_STORE_E_NOMEM;
  op->type = OP_PUT_PENDING;
  op->u.pending = *p;
  return 0;
}

int opsim_batch_del_pending(opsim_batch *b, const uint8_t id[16]) {
  opsim_batch_op *op = batch_add(b);
  if (!op)
    return OPSIM_STORE_E_NOMEM;
  op->type = OP_DEL_PENDING;
  memcpy(op->u.id, id, 16);
  return 0;
}

int opsim_batch_put_settled(opsim_batch *b, const opsim_settled *s) {
  opsim_batch_op *op = batch_add(b);
  if (!op)
    return OPSIM_STORE_E_NOMEM;
  op->type = OP_PUT_SETTLED;
  op->u.settled = *s;
  return 0;
}

int opsim_batch_touch_wallet(opsim_batch *b, uint32_t index) {
  if (index >= b->nwallets || b->is_dirty[index])
    return 0;
  if (b->ndirty == b->capdirty) {
    size_t cap = b->capdirty ? b->capdirty * 2 : 64;
    uint32_t *d = realloc(b->dirty, cap * sizeof *d);
    if (!d)
      return OPSIM_STORE_E_NOMEM;
    b->dirty = d;
    b->capdirty = cap;
  }
  b->dirty[b->ndirty++] = index;
  b->is_dirty[index] = 1;
  return 0;
}

void opsim_batch_touch_counters(opsim_batch *b) {
  b->counters_dirty = 1;
}

static void batch_reset(opsim_batch *b) {
  for (size_t i = 0; i < b->ndirty; i++)
    b->is_dirty[b->dirty[i]] = 0;
  b->ndirty = 0;
  b->nops = 0;
  b->counters_dirty = 0;
}

/* ---------------------------------------------------------------- environment */

static int lmdb_err(int rc, const char *what, char *err, size_t errlen) {
  seterr(err, errlen, "%s: %s", what, mdb_strerror(rc));
  return OPSIM_STORE_E_IO;
}

/* Takes DIR/opsim.lock exclusively (released when the descriptor closes, also on a crash). */
static int take_lock(const char *dir, int *fd_out, char *err, size_t errlen) {
  char path[4096];
  if (snprintf(path, sizeof path, "%s/opsim.lock", dir) >= (int)sizeof path) {
    seterr(err, errlen, "data directory path too long");
    return OPSIM_STORE_E_IO;
  }
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    seterr(err, errlen, "%s: %s", path, strerror(errno));
    return OPSIM_STORE_E_IO;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    close(fd);
    if (e == EWOULDBLOCK) {
      seterr(err, errlen, "%s: another tuma-opsim runs on this data directory", dir);
      return OPSIM_STORE_E_LOCKED;
    }
    seterr(err, errlen, "%s: %s", path, strerror(e));
    return OPSIM_STORE_E_IO;
  }
  *fd_out = fd;
  return 0;
}

int opsim_store_open(const char *dir, int readonly, opsim_store **out, char *err, size_t errlen) {
  *out = NULL;
  struct stat st;
  if (stat(dir, &st) != 0) {
    if (errno != ENOENT || readonly || mkdir(dir, 0700) != 0) {
      seterr(err, errlen, "%s: %s", dir, strerror(errno));
      return OPSIM_STORE_E_IO;
    }
  } else if (!S_ISDIR(st.st_mode)) {
    seterr(err, errlen, "%s: not a directory", dir);
    return OPSIM_STORE_E_IO;
  }
  opsim_store *s = calloc(1, sizeof *s);
  if (!s) {
    seterr(err, errlen, "out of memory");
    return OPSIM_STORE_E_NOMEM;
  }
  s->lock_fd = -1;
  s->readonly = readonly;
  int rc = 0;
  if (!readonly && (rc = take_lock(dir, &s->lock_fd, err, errlen)) != 0)
    goto fail;
  int lrc = mdb_env_create(&s->env);
  if (lrc) {
    rc = lmdb_err(lrc, "mdb_env_create", err, errlen);
    goto fail;
  }
  if ((lrc = mdb_env_set_maxdbs(s->env, 4)) != 0 ||
      (lrc = mdb_env_set_mapsize(s->env, MAP_INITIAL)) != 0) {
    rc = lmdb_err(lrc, "mdb_env_set", err, errlen);
    goto fail;
  }
  lrc = mdb_env_open(s->env, dir, readonly ? MDB_RDONLY : 0, 0600);
  if (lrc) {
    if (readonly && lrc == ENOENT) {
      seterr(err, errlen, "%s: not a tuma-opsim data directory (no data.mdb)", dir);
      rc = OPSIM_STORE_E_EMPTY;
    } else {
      char what[4200];
      snprintf(what, sizeof what, "open %s", dir);
      rc = lmdb_err(lrc, what, err, errlen);
    }
    goto fail;
  }
  MDB_txn *txn = NULL;
  lrc = mdb_txn_begin(s->env, NULL, readonly ? MDB_RDONLY : 0, &txn);
  if (lrc == MDB_MAP_RESIZED && mdb_env_set_mapsize(s->env, 0) == 0)
    lrc = mdb_txn_begin(s->env, NULL, readonly ? MDB_RDONLY : 0, &txn);
  if (lrc) {
    rc = lmdb_err(lrc, "mdb_txn_begin", err, errlen);
    goto fail;
  }
  unsigned flags = readonly ? 0 : MDB_CREATE;
  if ((lrc = mdb_dbi_open(txn, "meta", flags, &s->meta)) != 0 ||
      (lrc = mdb_dbi_open(txn, "wallets", flags, &s->wallets)) != 0 ||
      (lrc = mdb_dbi_open(txn, "pending", flags, &s->pending)) != 0 ||
      (lrc = mdb_dbi_open(txn, "settled", flags, &s->settled)) != 0) {
    mdb_txn_abort(txn);
    if (lrc == MDB_NOTFOUND) {
      seterr(err, errlen, "%s: no wallets in this data directory yet", dir);
      rc = OPSIM_STORE_E_EMPTY;
    } else {
      rc = lmdb_err(lrc, "mdb_dbi_open", err, errlen);
    }
    goto fail;
  }
  if ((lrc = mdb_txn_commit(txn)) != 0) {
    rc = lmdb_err(lrc, "mdb_txn_commit", err, errlen);
    goto fail;
  }
  *out = s;
  return 0;
fail:
  opsim_store_close(s);
  return rc;
}

void opsim_store_close(opsim_store *s) {
  if (!s)
    return;
  if (s->env)
    mdb_env_close(s->env);
  if (s->lock_fd >= 0)
    close(s->lock_fd);
  free(s);
}

/* Begins a read transaction, adopting a map another process grew meanwhile. */
static int read_begin(opsim_store *s, MDB_txn **txn) {
  int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
  if (rc == MDB_MAP_RESIZED && mdb_env_set_mapsize(s->env, 0) == 0)
    rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
  return rc ? OPSIM_STORE_E_IO : 0;
}

static int read_counters(MDB_txn *txn, MDB_dbi dbi, uint64_t counters[OPSIM_COUNTERS]) {
  memset(counters, 0, OPSIM_COUNTERS * sizeof counters[0]);
  MDB_val k = {8, (void *)"counters"}, v;
  int rc = mdb_get(txn, dbi, &k, &v);
  if (rc == MDB_NOTFOUND)
    return 0;
  if (rc)
    return OPSIM_STORE_E_IO;
  if (v.mv_size % 8)
    return OPSIM_STORE_E_CORRUPT;
  size_t n = v.mv_size / 8; /* fewer (an older store) or more (a newer one): the common ones */
  for (size_t i = 0; i < n && i < OPSIM_COUNTERS; i++)
    counters[i] = get64((const uint8_t *)v.mv_data + 8 * i);
  return 0;
}

int opsim_store_get_meta(opsim_store *s, opsim_meta *meta, uint64_t counters[OPSIM_COUNTERS]) {
  MDB_txn *txn;
  if (read_begin(s, &txn))
    return OPSIM_STORE_E_IO;
  MDB_val k = {4, (void *)"meta"}, v;
  int rc = mdb_get(txn, s->meta, &k, &v);
  if (rc == MDB_NOTFOUND)
    rc = OPSIM_STORE_E_EMPTY;
  else if (rc)
    rc = OPSIM_STORE_E_IO;
  else
    rc = decode_meta(&v, meta);
  if (!rc && counters)
    rc = read_counters(txn, s->meta, counters);
  mdb_txn_abort(txn);
  return rc;
}

/* Doubles the map (no transaction of ours may be open). */
static int grow_map(opsim_store *s) {
  MDB_envinfo info;
  if (mdb_env_info(s->env, &info) != 0 || info.me_mapsize >= MAP_MAX)
    return -1;
  return mdb_env_set_mapsize(s->env, info.me_mapsize * 2) == 0 ? 0 : -1;
}

static int write_counters(MDB_txn *txn, MDB_dbi dbi, const uint64_t counters[OPSIM_COUNTERS]) {
  uint8_t buf[8 * OPSIM_COUNTERS];
  for (int i = 0; i < OPSIM_COUNTERS; i++)
    put64(buf + 8 * i, counters[i]);
  MDB_val k = {8, (void *)"counters"}, v = {sizeof buf, buf};
  return mdb_put(txn, dbi, &k, &v, 0);
}

static int write_wallet(MDB_txn *txn, MDB_dbi dbi, uint32_t index, const opsim_wallet *w) {
  uint8_t key[4], val[WALLET_SIZE];
  wallet_key(index, key);
  encode_wallet(w, val);
  MDB_val k = {4, key}, v = {WALLET_SIZE, val};
  return mdb_put(txn, dbi, &k, &v, 0);
}

int opsim_store_create(opsim_store *s, const opsim_meta *meta, const opsim_wallet *wallets) {
  for (;;) {
    MDB_txn *txn;
    if (mdb_txn_begin(s->env, NULL, 0, &txn))
      return OPSIM_STORE_E_IO;
    MDB_val k = {4, (void *)"meta"}, v;
    int rc = mdb_get(txn, s->meta, &k, &v);
    if (rc != MDB_NOTFOUND) {
      mdb_txn_abort(txn);
      return rc == 0 ? OPSIM_STORE_E_EXISTS : OPSIM_STORE_E_IO;
    }
    uint8_t buf[META_SIZE];
    encode_meta(meta, buf);
    v.mv_size = META_SIZE;
    v.mv_data = buf;
    rc = mdb_put(txn, s->meta, &k, &v, 0);
    if (!rc) {
      uint64_t zero[OPSIM_COUNTERS] = {0};
      rc = write_counters(txn, s->meta, zero);
    }
    for (uint32_t i = 0; !rc && i < meta->wallets; i++)
      rc = write_wallet(txn, s->wallets, i, &wallets[i]);
    if (!rc)
      rc = mdb_txn_commit(txn);
    else
      mdb_txn_abort(txn);
    if (rc == MDB_MAP_FULL && grow_map(s) == 0)
      continue;
    return rc ? OPSIM_STORE_E_IO : 0;
  }
}

int opsim_store_load_wallets(opsim_store *s, opsim_wallet *out, uint32_t n) {
  MDB_txn *txn;
  if (read_begin(s, &txn))
    return OPSIM_STORE_E_IO;
  MDB_cursor *cur;
  if (mdb_cursor_open(txn, s->wallets, &cur)) {
    mdb_txn_abort(txn);
    return OPSIM_STORE_E_IO;
  }
  MDB_val k, v;
  uint32_t seen = 0;
  int rc = 0, lrc;
  for (lrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); lrc == 0;
       lrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    const uint8_t *kp = k.mv_data;
    uint32_t index = k.mv_size == 4 ? (uint32_t)kp[0] << 24 | (uint32_t)kp[1] << 16 |
                                          (uint32_t)kp[2] << 8 | kp[3]
                                    : UINT32_MAX;
    if (index != seen || index >= n || (rc = decode_wallet(&v, &out[index])) != 0) {
      rc = OPSIM_STORE_E_CORRUPT;
      break;
    }
    seen++;
  }
  if (!rc && lrc != MDB_NOTFOUND)
    rc = OPSIM_STORE_E_IO;
  if (!rc && seen != n)
    rc = OPSIM_STORE_E_CORRUPT;
  mdb_cursor_close(cur);
  mdb_txn_abort(txn);
  return rc;
}

/* Walks dbi, decoding each record with decode and passing it to visit. */
static int walk(opsim_store *s, MDB_dbi dbi, int (*visit)(const MDB_val *, const MDB_val *, void *),
                void *arg) {
  MDB_txn *txn;
  if (read_begin(s, &txn))
    return OPSIM_STORE_E_IO;
  MDB_cursor *cur;
  if (mdb_cursor_open(txn, dbi, &cur)) {
    mdb_txn_abort(txn);
    return OPSIM_STORE_E_IO;
  }
  MDB_val k, v;
  int rc = 0, lrc;
  for (lrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); lrc == 0 && rc == 0;
       lrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    rc = visit(&k, &v, arg);
  if (!rc && lrc != MDB_NOTFOUND)
    rc = OPSIM_STORE_E_IO;
  mdb_cursor_close(cur);
  mdb_txn_abort(txn);
  return rc;
}

typedef struct visit_ctx {
  opsim_pending_cb pending_cb;
  opsim_settled_cb settled_cb;
  void *arg;
} visit_ctx;

static int visit_pending_cb(const MDB_val *k, const MDB_val *v, void *arg) {
  visit_ctx *c = arg;
  opsim_pending p;
  int rc = decode_pending(k, v, &p);
  return rc ? rc : c->pending_cb(&p, c->arg);
}

static int visit_settled_cb(const MDB_val *k, const MDB_val *v, void *arg) {
  visit_ctx *c = arg;
  opsim_settled r;
  int rc = decode_settled(k, v, &r);
  return rc ? rc : c->settled_cb(&r, c->arg);
}

int opsim_store_each_pending(opsim_store *s, opsim_pending_cb cb, void *arg) {
  visit_ctx c = {cb, NULL, arg};
  return walk(s, s->pending, visit_pending_cb, &c);
}

int opsim_store_each_settled(opsim_store *s, opsim_settled_cb cb, void *arg) {
  visit_ctx c = {NULL, cb, arg};
  return walk(s, s->settled, visit_settled_cb, &c);
}

/* Applies b in txn. Returns an LMDB code. */
static int apply_batch(opsim_store *s, MDB_txn *txn, const opsim_batch *b,
                       const opsim_wallet *wallets, const uint64_t counters[OPSIM_COUNTERS]) {
  int rc = 0;
  for (size_t i = 0; !rc && i < b->nops; i++) {
    const opsim_batch_op *op = &b->ops[i];
    if (op->type == OP_PUT_PENDING) {
      uint8_t val[PENDING_SIZE];
      encode_pending(&op->u.pending, val);
      MDB_val k = {16, (void *)op->u.pending.id}, v = {PENDING_SIZE, val};
      rc = mdb_put(txn, s->pending, &k, &v, 0);
    } else if (op->type == OP_DEL_PENDING) {
      MDB_val k = {16, (void *)op->u.id};
      rc = mdb_del(txn, s->pending, &k, NULL);
      if (rc == MDB_NOTFOUND)
        rc = 0;
    } else {
      uint8_t val[SETTLED_SIZE];
      encode_settled(&op->u.settled, val);
      MDB_val k = {16, (void *)op->u.settled.id}, v = {SETTLED_SIZE, val};
      rc = mdb_put(txn, s->settled, &k, &v, 0);
    }
  }
  for (size_t i = 0; !rc && i < b->ndirty; i++)
    rc = write_wallet(txn, s->wallets, b->dirty[i], &wallets[b->dirty[i]]);
  if (!rc && b->counters_dirty)
    rc = write_counters(txn, s->meta, counters);
  return rc;
}

int opsim_store_commit(opsim_store *s, opsim_batch *b, const opsim_wallet *wallets,
                       const uint64_t counters[OPSIM_COUNTERS], char *err, size_t errlen) {
  if (s->readonly) {
    seterr(err, errlen, "the store is open read-only");
    return OPSIM_STORE_E_IO;
  }
  if (!opsim_batch_pending(b))
    return 0;
  for (;;) {
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc)
      return lmdb_err(rc, "mdb_txn_begin", err, errlen);
    rc = apply_batch(s, txn, b, wallets, counters);
    if (rc)
      mdb_txn_abort(txn);
    else
      rc = mdb_txn_commit(txn); /* frees txn, also when it fails */
    if (rc == MDB_MAP_FULL && grow_map(s) == 0)
      continue;
    if (rc)
      return lmdb_err(rc, "write transaction", err, errlen);
    batch_reset(b);
    return 0;
  }
}
