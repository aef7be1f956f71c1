/* audit.c — checkpoint keys, journal sources and the replay audit (see audit.h, JOURNAL.md).
 *
 * The replay is built for speed (≥ 1M events/s on 2 cores): records are read in place from
 * LMDB's map or the export file's mapping, each is hashed once (SHA-256, OpenSSL), and only
 * the effects of successful events touch the scratch state: an open-addressing table of
 * accounts, one of pending transfers, and a binary heap of pending expiries.
 */
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "journal.h"
#include "store.h"

#define TRANSFER_FLAGS_KNOWN 0xffu
#define ACCOUNT_FLAGS_CREATE                                                                       \
  (LEDGER_ACCOUNT_LINKED | LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS |                         \
   LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS | LEDGER_ACCOUNT_HISTORY)

static void set_err(char *err, size_t errlen, const char *fmt, const char *a, const char *b) {
  if (err && errlen)
    snprintf(err, errlen, fmt, a, b);
}

/* ================================================================ keys */

struct ledger_audit_key {
  EVP_PKEY *pkey;
  int is_private;
  uint8_t fingerprint[32];
};

static int key_wrap(EVP_PKEY *pkey, int is_private, ledger_audit_key **out) {
  uint8_t raw[32];
  size_t rawlen = sizeof raw;
  if (EVP_PKEY_get_raw_public_key(pkey, raw, &rawlen) != 1 || rawlen != sizeof raw)
    return LEDGER_E_INVAL;
  ledger_audit_key *k = calloc(1, sizeof *k);
  if (!k)
    return LEDGER_E_NOMEM;
  k->pkey = pkey;
  k->is_private = is_private;
  SHA256(raw, sizeof raw, k->fingerprint);
  *out = k;
  return 0;
}

int ledger_audit_keygen(const char *priv_path, const char *pub_path, char *err, size_t errlen) {
  if (!priv_path || !pub_path)
    return LEDGER_E_INVAL;
  EVP_PKEY *pkey = NULL;
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
  int rc = LEDGER_E_NOMEM;
  FILE *fpriv = NULL, *fpub = NULL;
  int fd = -1;
  if (!ctx || EVP_PKEY_keygen_init(ctx) != 1 || EVP_PKEY_keygen(ctx, &pkey) != 1) {
    set_err(err, errlen, "%s%s", "cannot generate an Ed25519 key", "");
    goto out;
  }
  fd = open(priv_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    set_err(err, errlen, "%s: %s", priv_path, strerror(errno));
    rc = errno == EEXIST ? LEDGER_E_INVAL : LEDGER_E_IO;
    goto out;
  }
  fpriv = fdopen(fd, "w");
  if (!fpriv)
    goto out;
  fd = -1;
  rc = LEDGER_E_IO;
  if (PEM_write_PrivateKey(fpriv, pkey, NULL, NULL, 0, NULL, NULL) != 1 || fflush(fpriv)) {
    set_err(err, errlen, "%s: %s", priv_path, "cannot write the private key");
    goto out;
  }
  fpub = fopen(pub_path, "w");
  if (!fpub || PEM_write_PUBKEY(fpub, pkey) != 1 || fflush(fpub)) {
    set_err(err, errlen, "%s: %s", pub_path, "cannot write the public key");
    goto out;
  }
  rc = 0;
out:
  if (fd >= 0)
    close(fd);
  if (fpriv && fclose(fpriv) && !rc)
    rc = LEDGER_E_IO;
  if (fpub && fclose(fpub) && !rc)
    rc = LEDGER_E_IO;
  EVP_PKEY_free(pkey);
  EVP_PKEY_CTX_free(ctx);
  return rc;
}

int ledger_audit_key_load(const char *path, int want_private, ledger_audit_key **out, char *err,
                          size_t errlen) {
  if (!path || !out)
    return LEDGER_E_INVAL;
  *out = NULL;
  FILE *f = fopen(path, "r");
  if (!f) {
    set_err(err, errlen, "%s: %s", path, strerror(errno));
    return LEDGER_E_IO;
  }
  EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
  int is_private = pkey != NULL;
  if (!pkey && !want_private) {
    rewind(f);
    pkey = PEM_read_PUBKEY(f, NULL, NULL, NULL);
  }
  fclose(f);
  if (!pkey || EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) {
    set_err(err, errlen, "%s: %s", path,
            want_private ? "not an Ed25519 private key (PEM)" : "not an Ed25519 key (PEM)");
    EVP_PKEY_free(pkey);
    return LEDGER_E_INVAL;
  }
  int rc = key_wrap(pkey, is_private, out);
  if (rc)
    EVP_PKEY_free(pkey);
  return rc;
}

void ledger_audit_key_free(ledger_audit_key *k) {
  if (!k)
    return;
  EVP_PKEY_free(k->pkey);
  free(k);
}

const uint8_t *ledger_audit_key_fingerprint(const ledger_audit_key *k) {
  return k->fingerprint;
}

int ledger_audit_key_sign_cb(const uint8_t *msg, size_t len, uint8_t sig[64], void *arg) {
  ledger_audit_key *k = arg;
  if (!k || !k->is_private)
    return -1;
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  size_t siglen = 64;
  int ok = ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, k->pkey) == 1 &&
           EVP_DigestSign(ctx, sig, &siglen, msg, len) == 1 && siglen == 64;
  EVP_MD_CTX_free(ctx);
  return ok ? 0 : -1;
}

static int key_verify(const ledger_audit_key *k, const uint8_t *msg, size_t len,
                      const uint8_t *sig) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int ok = ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, k->pkey) == 1 &&
           EVP_DigestVerify(ctx, sig, JOURNAL_SIGNATURE_SIZE, msg, len) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

/* ================================================================ sources */

struct ledger_audit_source {
  ledger *l; /* directory: read-only ledger and its snapshot */
  MDB_txn *txn;
  const uint8_t *map; /* file: the mapped bytes */
  size_t map_len;
};

static int is_file(const char *path, int want_dir) {
  struct stat st;
  if (stat(path, &st))
    return 0;
  return want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode);
}

int ledger_audit_source_open(const char *path, ledger_audit_source **out, char *err,
                             size_t errlen) {
  if (!path || !out)
    return LEDGER_E_INVAL;
  *out = NULL;
  struct stat st;
  if (stat(path, &st)) {
    set_err(err, errlen, "%s: %s", path, strerror(errno));
    return LEDGER_E_NOTFOUND;
  }
  ledger_audit_source *s = calloc(1, sizeof *s);
  if (!s)
    return LEDGER_E_NOMEM;
  int rc;
  if (S_ISDIR(st.st_mode)) {
    char dir[4096], probe[4200];
    snprintf(probe, sizeof probe, "%s/data.mdb", path);
    if (is_file(probe, 0)) {
      snprintf(dir, sizeof dir, "%s", path);
    } else {
      snprintf(dir, sizeof dir, "%s/ledger", path);
      snprintf(probe, sizeof probe, "%s/data.mdb", dir);
      if (!is_file(probe, 0)) {
        set_err(err, errlen, "%s: %s", path,
                "not a data directory (no data.mdb nor ledger/data.mdb)");
        free(s);
        return LEDGER_E_NOTFOUND;
      }
    }
    ledger_options lo = {0};
    lo.flags = LEDGER_OPEN_READ_ONLY;
    rc = ledger_open(dir, &lo, &s->l);
    if (!rc) {
      rc = mdb_txn_begin(s->l->env, NULL, MDB_RDONLY, &s->txn);
      if (rc == MDB_MAP_RESIZED && !mdb_env_set_mapsize(s->l->env, 0))
        rc = mdb_txn_begin(s->l->env, NULL, MDB_RDONLY, &s->txn);
      rc = store_error(rc);
    }
    if (rc) {
      set_err(err, errlen, "%s: %s", dir, ledger_strerror(rc));
      ledger_audit_source_close(s);
      return rc;
    }
  } else if (S_ISREG(st.st_mode)) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      set_err(err, errlen, "%s: %s", path, strerror(errno));
      free(s);
      return LEDGER_E_IO;
    }
    s->map_len = (size_t)st.st_size;
    if (s->map_len) {
      void *m = mmap(NULL, s->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
      if (m == MAP_FAILED) {
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        free(s);
        return LEDGER_E_IO;
      }
      madvise(m, s->map_len, MADV_SEQUENTIAL);
      s->map = m;
    }
    close(fd);
  } else {
    set_err(err, errlen, "%s: %s", path, "neither a directory nor a regular file");
    free(s);
    return LEDGER_E_INVAL;
  }
  *out = s;
  return 0;
}

void ledger_audit_source_close(ledger_audit_source *s) {
  if (!s)
    return;
  if (s->txn)
    mdb_txn_abort(s->txn);
  ledger_close(s->l);
  if (s->map)
    munmap((void *)s->map, s->map_len);
  free(s);
}

int ledger_audit_source_is_dir(const ledger_audit_source *s) {
  return s && s->l != NULL;
}

static uint64_t rd_u64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

static uint32_t rd_u32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

int ledger_audit_scan_buffer(const void *buf, size_t buf_len, uint64_t from_seq, uint64_t to_seq,
                             ledger_journal_cb cb, void *arg) {
  if ((!buf && buf_len) || !cb)
    return LEDGER_E_INVAL;
  const uint8_t *map = buf;
  size_t off = 0;
  while (off < buf_len) {
    size_t left = buf_len - off;
    if (left < 4) /* not even a length: hand the remains over, they will not parse */
      return cb(0, map + off, left, arg);
    size_t len = rd_u32(map + off);
    off += 4;
    left -= 4;
    if (len > left)
      return cb(0, map + off, left, arg);
    const uint8_t *rec = map + off;
    off += len;
    uint64_t seq = len >= 48 ? rd_u64(rec + 40) : 0;
    if (seq < from_seq && seq != 0)
      continue;
    if (to_seq && seq > to_seq)
      return 0;
    int stop = cb(seq, rec, len, arg);
    if (stop)
      return stop;
  }
  return 0;
}

int ledger_audit_source_scan(ledger_audit_source *s, uint64_t from_seq, uint64_t to_seq,
                             ledger_journal_cb cb, void *arg) {
  if (!s || !cb)
    return LEDGER_E_INVAL;
  if (!s->l)
    return ledger_audit_scan_buffer(s->map, s->map_len, from_seq, to_seq, cb, arg);
  MDB_cursor *cur;
  int rc = mdb_cursor_open(s->txn, s->l->db_journal, &cur);
  if (rc)
    return store_error(rc);
  int stop = 0;
  MDB_val k = {sizeof from_seq, &from_seq}, v;
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && !stop;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    uint64_t seq = k.mv_size == sizeof seq ? rd_u64(k.mv_data) : 0;
    if (to_seq && seq > to_seq)
      break;
    stop = cb(seq, v.mv_data, v.mv_size, arg);
  }
  mdb_cursor_close(cur);
  if (stop)
    return stop;
  return rc == 0 || rc == MDB_NOTFOUND ? 0 : store_error(rc);
}

/* ================================================================ backups */

int ledger_audit_backup(const char *env_dir, const char *dest_dir, int compact, char *err,
                        size_t errlen) {
  if (!env_dir || !dest_dir)
    return LEDGER_E_INVAL;
  char probe[4200];
  snprintf(probe, sizeof probe, "%s/data.mdb", env_dir);
  if (!is_file(probe, 0)) {
    set_err(err, errlen, "%s: %s", env_dir, "no data.mdb: not an LMDB environment");
    return LEDGER_E_NOTFOUND;
  }
  if (mkdir(dest_dir, 0750) && errno != EEXIST) {
    set_err(err, errlen, "%s: %s", dest_dir, strerror(errno));
    return LEDGER_E_IO;
  }
  snprintf(probe, sizeof probe, "%s/data.mdb", dest_dir);
  if (access(probe, F_OK) == 0) {
    set_err(err, errlen, "%s: %s", dest_dir, "already holds a data.mdb (will not overwrite)");
    return LEDGER_E_INVAL;
  }
  MDB_env *env = NULL;
  int rc = mdb_env_create(&env);
  if (!rc)
    rc = mdb_env_set_maxdbs(env, 32);
  if (!rc)
    rc = mdb_env_open(env, env_dir, MDB_RDONLY | MDB_NOTLS | MDB_NORDAHEAD, 0640);
  if (!rc)
    rc = mdb_env_copy2(env, dest_dir, compact ? MDB_CP_COMPACT : 0);
  if (env)
    mdb_env_close(env);
  if (rc) {
    set_err(err, errlen, "%s: %s", env_dir, mdb_strerror(rc));
    return store_error(rc) == LEDGER_E_LMDB ? LEDGER_E_LMDB : LEDGER_E_IO;
  }
  return 0;
}

/* ================================================================ the scratch ledger */

/* Laid out so that what a transfer touches (last_ts, last_seq, balances; ledger and flags) is in
 * the first two of its three cache lines. */
typedef struct scratch_account {
  uint64_t last_ts;  /* newest transfer touching it */
  uint64_t last_seq; /* record that last changed it */
  ledger_account a;  /* static fields with current balances and flags */
  uint64_t number;
  uint16_t static_flags;
} __attribute__((aligned(64))) scratch_account;

typedef struct scratch_pending {
  ledger_id id;
  ledger_id debit, credit;
  uint64_t amount;
  uint64_t ts;
  uint64_t expires_at;
  uint32_t ledger;
  uint16_t code;
  uint16_t flags;
  uint32_t debit_slot, credit_slot;
  uint8_t state; /* ledger_pending_state */
  uint64_t resolved_ts;
} scratch_pending;

typedef struct expiry_entry {
  uint64_t expires_at, ts;
  uint32_t pending;
} expiry_entry;

/* A stored row the replay expects, compared on the helper thread (see run_pipeline). */
typedef struct expect_row {
  uint64_t seq;
  uint32_t event;
  uint32_t has_history;
  transfer_row row;
  history_row hist;
} expect_row;

typedef struct expect_buf {
  expect_row *r;
  uint32_t n, cap;
} expect_buf;

/* The helper thread's first mismatch, merged into the report by record order at the end. */
typedef struct late_problem {
  int set;
  uint64_t seq;
  char detail[256];
} late_problem;

/* An open-addressing index (linear probing, load ≤ 1/2, size a power of two). Each entry holds
 * the id itself, so a probe reads one entry and never the item; slot1 = item + 1, 0 = empty. */
typedef struct ix_entry {
  uint64_t lo, hi;
  uint32_t slot1;
  uint32_t pad;
} ix_entry;

typedef struct id_index {
  ix_entry *e;
  uint32_t mask;
  uint32_t count;
} id_index;

struct ledger_audit {
  ledger_audit_options o;
  ledger_audit_report r;
  uint64_t expect_seq;
  uint8_t prev_hash[32];
  uint64_t last_ts;
  int started, stopped;

  scratch_account *acc;
  uint32_t n_acc, cap_acc;
  id_index acc_ix;
  uint32_t *created; /* accounts created in the current record */
  uint32_t n_created, cap_created;

  scratch_pending *pend;
  uint32_t n_pend, cap_pend;
  id_index pend_ix;

  expiry_entry *heap;
  uint32_t n_heap, cap_heap;

  /* ledger_audit_attach(): the stored rows compared as they are replayed */
  ledger_audit_source *src;
  MDB_cursor *c_transfers, *c_history;
  int transfers_begun, history_begun;
  /* Offloaded comparison: a second read transaction on the same snapshot owns the cursors;
   * the replay appends what it expects to *expect, the helper thread compares. */
  MDB_txn *txn2;
  expect_buf *expect;
  late_problem late;
};

static uint32_t id_hash(ledger_id id) {
  uint64_t h = id.lo * 0x9e3779b97f4a7c15ull ^ id.hi * 0xc2b2ae3d27d4eb4full;
  h ^= h >> 29;
  return (uint32_t)(h ^ (h >> 32));
}

/* The scratch arrays and indexes come from mmap (zeroed), with transparent huge pages asked
 * for once they are large: the replay reads them at random, and 2 MB pages spare it most of
 * the TLB misses of 4 KB ones. */
#define HUGE_FROM (2u << 20)

static void *big_alloc(size_t size) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return NULL;
#ifdef MADV_HUGEPAGE
  if (size >= HUGE_FROM)
    madvise(p, size, MADV_HUGEPAGE);
#endif
  return p;
}

static void big_free(void *p, size_t size) {
  if (p)
    munmap(p, size);
}

static int grow(void **p, uint32_t *cap, size_t item, uint32_t need) {
  if (need <= *cap)
    return 0;
  uint32_t ncap = *cap ? *cap : 1024;
  while (ncap < need) {
    if (ncap > UINT32_MAX / 2)
      return LEDGER_E_NOMEM;
    ncap *= 2;
  }
  void *n;
  if (*p) {
    n = mremap(*p, (size_t)*cap * item, (size_t)ncap * item, MREMAP_MAYMOVE);
    if (n == MAP_FAILED)
      return LEDGER_E_NOMEM;
#ifdef MADV_HUGEPAGE
    if ((size_t)ncap * item >= HUGE_FROM)
      madvise(n, (size_t)ncap * item, MADV_HUGEPAGE);
#endif
  } else {
    n = big_alloc((size_t)ncap * item);
    if (!n)
      return LEDGER_E_NOMEM;
  }
  *p = n;
  *cap = ncap;
  return 0;
}

static void ix_put(ix_entry *e, uint32_t mask, ledger_id id, uint32_t slot1) {
  uint32_t h = id_hash(id) & mask;
  while (e[h].slot1)
    h = (h + 1) & mask;
  e[h].lo = id.lo;
  e[h].hi = id.hi;
  e[h].slot1 = slot1;
}

/* Adds id → slot, doubling the table first when it would pass half full. */
static int index_insert(id_index *ix, ledger_id id, uint32_t slot) {
  if (!ix->e || (uint64_t)(ix->count + 1) * 2 > (uint64_t)ix->mask + 1) {
    uint64_t size = ix->e ? ((uint64_t)ix->mask + 1) * 2 : 1024;
    if (size > (1ull << 31))
      return LEDGER_E_NOMEM;
    ix_entry *e = big_alloc(size * sizeof *e);
    if (!e)
      return LEDGER_E_NOMEM;
    if (ix->e)
      for (uint64_t i = 0; i <= ix->mask; i++)
        if (ix->e[i].slot1)
          ix_put(e, (uint32_t)(size - 1), (ledger_id){ix->e[i].lo, ix->e[i].hi}, ix->e[i].slot1);
    if (ix->e)
      big_free(ix->e, ((size_t)ix->mask + 1) * sizeof *ix->e);
    ix->e = e;
    ix->mask = (uint32_t)(size - 1);
  }
  ix_put(ix->e, ix->mask, id, slot + 1);
  ix->count++;
  return 0;
}

/* The item of id, or UINT32_MAX. */
static uint32_t index_find(const id_index *ix, ledger_id id) {
  if (!ix->e)
    return UINT32_MAX;
  for (uint32_t h = id_hash(id) & ix->mask; ix->e[h].slot1; h = (h + 1) & ix->mask)
    if (ix->e[h].lo == id.lo && ix->e[h].hi == id.hi)
      return ix->e[h].slot1 - 1;
  return UINT32_MAX;
}

static void index_prefetch(const id_index *ix, ledger_id id) {
  if (ix->e)
    __builtin_prefetch(&ix->e[id_hash(id) & ix->mask]);
}

/* The item an id's home entry names, if that entry is the id's (a hint for prefetching: a
 * collision or a miss gives UINT32_MAX). */
static uint32_t index_peek(const id_index *ix, ledger_id id) {
  if (!ix->e)
    return UINT32_MAX;
  const ix_entry *e = &ix->e[id_hash(id) & ix->mask];
  return e->slot1 && e->lo == id.lo && e->hi == id.hi ? e->slot1 - 1 : UINT32_MAX;
}

static uint32_t acc_find(const ledger_audit *a, ledger_id id) {
  return index_find(&a->acc_ix, id);
}

static uint32_t pend_find(const ledger_audit *a, ledger_id id) {
  return index_find(&a->pend_ix, id);
}

static int acc_add(ledger_audit *a, const ledger_account *src, uint64_t ts, uint64_t seq) {
  if (grow((void **)&a->acc, &a->cap_acc, sizeof *a->acc, a->n_acc + 1) ||
      grow((void **)&a->created, &a->cap_created, sizeof *a->created, a->n_created + 1))
    return LEDGER_E_NOMEM;
  if (index_insert(&a->acc_ix, src->id, a->n_acc))
    return LEDGER_E_NOMEM;
  scratch_account *s = &a->acc[a->n_acc];
  memset(s, 0, sizeof *s);
  s->a = *src;
  s->a.timestamp = ts;
  s->number = a->n_acc + 1u;
  s->last_seq = seq;
  a->created[a->n_created++] = a->n_acc;
  a->n_acc++;
  return 0;
}

static int pend_add(ledger_audit *a, const scratch_pending *p) {
  if (grow((void **)&a->pend, &a->cap_pend, sizeof *a->pend, a->n_pend + 1))
    return LEDGER_E_NOMEM;
  if (index_insert(&a->pend_ix, p->id, a->n_pend))
    return LEDGER_E_NOMEM;
  a->pend[a->n_pend] = *p;
  a->n_pend++;
  return 0;
}

static int heap_less(const expiry_entry *x, const expiry_entry *y) {
  return x->expires_at < y->expires_at || (x->expires_at == y->expires_at && x->ts < y->ts);
}

static int heap_push(ledger_audit *a, expiry_entry e) {
  if (grow((void **)&a->heap, &a->cap_heap, sizeof *a->heap, a->n_heap + 1))
    return LEDGER_E_NOMEM;
  uint32_t i = a->n_heap++;
  while (i > 0) {
    uint32_t parent = (i - 1) / 2;
    if (!heap_less(&e, &a->heap[parent]))
      break;
    a->heap[i] = a->heap[parent];
    i = parent;
  }
  a->heap[i] = e;
  return 0;
}

static void heap_pop(ledger_audit *a) {
  expiry_entry last = a->heap[--a->n_heap];
  uint32_t i = 0, n = a->n_heap;
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= n)
      break;
    if (c + 1 < n && heap_less(&a->heap[c + 1], &a->heap[c]))
      c++;
    if (!heap_less(&a->heap[c], &last))
      break;
    a->heap[i] = a->heap[c];
    i = c;
  }
  if (n)
    a->heap[i] = last;
}

/* The earliest open pending expiry (closed ones are dropped on the way), or NULL. */
static const expiry_entry *heap_top_open(ledger_audit *a) {
  while (a->n_heap && a->pend[a->heap[0].pending].state != LEDGER_PENDING_OPEN)
    heap_pop(a);
  return a->n_heap ? &a->heap[0] : NULL;
}

/* ================================================================ problems */

static const char *const problem_names[] = {
    "ok",
    "bad record",
    "hash mismatch",
    "gap",
    "reordered record",
    "broken link",
    "replay mismatch",
    "bad checkpoint signature",
    "kept checkpoint missing",
    "unsigned tail",
    "balance mismatch",
    "account missing",
    "invariant broken",
    "storage error",
    "transfer mismatch",
};

const char *ledger_audit_problem_name(ledger_audit_problem p) {
  if ((unsigned)p >= sizeof problem_names / sizeof problem_names[0])
    return "unknown problem";
  return problem_names[p];
}

__attribute__((format(printf, 4, 5))) static int fail(ledger_audit *a, ledger_audit_problem p,
                                                      uint64_t seq, const char *fmt, ...) {
  if (a->r.problem == LEDGER_AUDIT_OK) {
    a->r.problem = p;
    a->r.bad_seq = seq;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->r.detail, sizeof a->r.detail, fmt, ap);
    va_end(ap);
  }
  return LEDGER_E_CORRUPT;
}

static void id_hex(ledger_id id, char out[33]) {
  snprintf(out, 33, "%016llx%016llx", (unsigned long long)id.hi, (unsigned long long)id.lo);
}

/* An id in hex as a value, for messages: only formatted on the failure paths. */
typedef struct hexbuf {
  char s[33];
} hexbuf;

static hexbuf hx(ledger_id id) {
  hexbuf h;
  id_hex(id, h.s);
  return h;
}

/* ================================================================ replay */

static int add_ok(uint64_t x, uint64_t y) {
  uint64_t s;
  return !__builtin_add_overflow(x, y, &s);
}

/* Next row of a stored table read in key order alongside the replay. */
static int next_row(MDB_cursor *cur, int *begun, uint64_t *key, MDB_val *v) {
  MDB_val k;
  int rc = mdb_cursor_get(cur, &k, v, *begun ? MDB_NEXT : MDB_FIRST);
  *begun = 1;
  if (!rc && k.mv_size != sizeof *key)
    rc = MDB_CORRUPTED;
  if (!rc)
    *key = rd_u64(k.mv_data);
  return rc;
}

/* Compares one expected row with the next stored ones; 0, or 1 with a message in detail. */
static int compare_row(ledger_audit *a, const expect_row *e, char *detail, size_t cap) {
  uint64_t key = 0;
  MDB_val v;
  int rc = next_row(a->c_transfers, &a->transfers_begun, &key, &v);
  if (rc || key != e->row.transfer.timestamp || v.mv_size != sizeof e->row ||
      memcmp(v.mv_data, &e->row, sizeof e->row)) {
    snprintf(detail, cap, "event %u: transfer %s (timestamp %llu): the stored transfer row %s",
             e->event, hx(e->row.transfer.id).s, (unsigned long long)e->row.transfer.timestamp,
             rc ? "is missing" : "differs from the replay");
    return 1;
  }
  if (!e->has_history)
    return 0;
  rc = next_row(a->c_history, &a->history_begun, &key, &v);
  if (rc || key != e->row.transfer.timestamp || v.mv_size != sizeof e->hist ||
      memcmp(v.mv_data, &e->hist, sizeof e->hist)) {
    snprintf(detail, cap, "event %u: transfer %s: the stored balance history row %s", e->event,
             hx(e->row.transfer.id).s, rc ? "is missing" : "differs from the replay");
    return 1;
  }
  return 0;
}

/* Compares a buffer of expected rows in order; the first mismatch goes to a->late. */
static void compare_buf(ledger_audit *a, expect_buf *b) {
  for (uint32_t i = 0; i < b->n && !a->late.set; i++)
    if (compare_row(a, &b->r[i], a->late.detail, sizeof a->late.detail)) {
      a->late.seq = b->r[i].seq;
      a->late.set = 1;
    }
  b->n = 0;
}

/* With ledger_audit_attach(): the next stored transfer row (and history row, when either
 * account keeps history) must be exactly the one this transfer makes. The accounts are as
 * they stand after it; prev_d and prev_c are their newest transfers before it. Compared at
 * once, or queued for the helper thread when the comparison is offloaded. */
static int check_stored_transfer(ledger_audit *a, uint64_t seq, uint32_t i,
                                 const ledger_transfer *stored, const scratch_account *d,
                                 const scratch_account *c, uint64_t prev_d, uint64_t prev_c) {
  if (!a->c_transfers)
    return 0;
  expect_row local, *e = &local;
  if (a->expect) {
    if (grow((void **)&a->expect->r, &a->expect->cap, sizeof *a->expect->r, a->expect->n + 1))
      return fail(a, LEDGER_AUDIT_STORAGE, seq, "out of memory");
    e = &a->expect->r[a->expect->n++];
  }
  e->seq = seq;
  e->event = i;
  e->row.transfer = *stored;
  e->row.prev_debit_ts = prev_d;
  e->row.prev_credit_ts = prev_c;
  e->has_history = ((d->a.flags | c->a.flags) & LEDGER_ACCOUNT_HISTORY) != 0;
  if (e->has_history) {
    history_row h = {
        {d->a.debits_pending, d->a.debits_posted, d->a.credits_pending, d->a.credits_posted},
        {c->a.debits_pending, c->a.debits_posted, c->a.credits_pending, c->a.credits_posted}};
    e->hist = h;
  }
  if (a->expect)
    return 0;
  char detail[256];
  if (compare_row(a, e, detail, sizeof detail))
    return fail(a, LEDGER_AUDIT_TRANSFER_MISMATCH, seq, "%s", detail);
  return 0;
}

static int replay_account(ledger_audit *a, uint64_t seq, uint32_t i, const ledger_account *acc,
                          uint64_t ts) {
#define hex (hx(acc->id).s)
  if (acc->timestamp || acc->reserved || (acc->flags & ~ACCOUNT_FLAGS_CREATE) ||
      ledger_id_is_zero(acc->id) || (acc->id.lo == UINT64_MAX && acc->id.hi == UINT64_MAX) ||
      acc->debits_pending || acc->debits_posted || acc->credits_pending || acc->credits_posted ||
      !acc->ledger || !acc->code)
    return fail(a, LEDGER_AUDIT_REPLAY, seq, "event %u: account %s recorded ok but is invalid", i,
                hex);
  for (size_t k = 0; k < sizeof acc->padding; k++)
    if (acc->padding[k])
      return fail(a, LEDGER_AUDIT_REPLAY, seq, "event %u: account %s has padding", i, hex);
  if (acc_find(a, acc->id) != UINT32_MAX)
    return fail(a, LEDGER_AUDIT_REPLAY, seq, "event %u: account %s created twice", i, hex);
  return acc_add(a, acc, ts, seq) ? fail(a, LEDGER_AUDIT_STORAGE, seq, "out of memory") : 0;
#undef hex
}

static int replay_post_or_void(ledger_audit *a, uint64_t seq, uint32_t i, const ledger_transfer *t,
                               uint64_t ts) {
#define hex (hx(t->id).s)
  int post = (t->flags & LEDGER_TRANSFER_POST_PENDING) != 0;
  uint32_t pi = pend_find(a, t->pending_id);
  if (pi == UINT32_MAX)
    return fail(a, LEDGER_AUDIT_REPLAY, seq, "event %u: transfer %s resolves an unknown pending", i,
                hex);
  scratch_pending *p = &a->pend[pi];
  if (p->state != LEDGER_PENDING_OPEN || (p->expires_at && p->expires_at <= ts))
    return fail(a, LEDGER_AUDIT_REPLAY, seq,
                "event %u: transfer %s resolves a pending transfer that is not open", i, hex);
  if ((!ledger_id_is_zero(t->debit_account_id) && !ledger_id_eq(t->debit_account_id, p->debit)) ||
      (!ledger_id_is_zero(t->credit_account_id) &&
       !ledger_id_eq(t->credit_account_id, p->credit)) ||
      (t->ledger && t->ledger != p->ledger) || (t->code && t->code != p->code) || t->timeout ||
      (post && t->amount > p->amount) || (!post && t->amount && t->amount != p->amount) ||
      ledger_id_eq(t->pending_id, t->id))
    return fail(a, LEDGER_AUDIT_REPLAY, seq,
                "event %u: transfer %s does not match its pending transfer", i, hex);
  uint64_t amount = post && t->amount ? t->amount : p->amount;
  scratch_account *d = &a->acc[p->debit_slot], *c = &a->acc[p->credit_slot];
  if (post && (!add_ok(d->a.debits_posted, amount) || !add_ok(c->a.credits_posted, amount)))
    return fail(a, LEDGER_AUDIT_REPLAY, seq, "event %u: transfer %s overflows", i, hex);
  d->a.debits_pending -= p->amount;
  c->a.credits_pending -= p->amount;
  if (post) {
    d->a.debits_posted += amount;
    c->a.credits_posted += amount;
  } else {
    if (p->flags & LEDGER_TRANSFER_CLOSING_DEBIT)
      d->a.flags &= (uint16_t)~LEDGER_ACCOUNT_CLOSED;
    if (p->flags & LEDGER_TRANSFER_CLOSING_CREDIT)
      c->a.flags &= (uint16_t)~LEDGER_ACCOUNT_CLOSED;
  }
  ledger_transfer stored = *t;
  stored.debit_account_id = p->debit;
  stored.credit_account_id = p->credit;
  stored.ledger = p->ledger;
  stored.code = p->code;
  stored.amount = amount;
  stored.timestamp = ts;
  if (check_stored_transfer(a, seq, i, &stored, d, c, d->last_ts, c->last_ts))
    return LEDGER_E_CORRUPT;
  d->last_ts = c->last_ts = ts;
  d->last_seq = c->last_seq = seq;
  p->state = post ? LEDGER_PENDING_POSTED : LEDGER_PENDING_VOIDED;
  p->resolved_ts = ts;
  return 0;
#undef hex
}

static int replay_transfer(ledger_audit *a, uint64_t seq, uint32_t i, const ledger_transfer *t,
                           uint64_t ts) {
#define hex (hx(t->id).s)
  uint16_t f = t->flags;
  int phases = !!(f & LEDGER_TRANSFER_PENDING) + !!(f & LEDGER_TRANSFER_POST_PENDING) +
               !!(f & LEDGER_TRANSFER_VOID_PENDING);
  if (t->timestamp || t->reserved || (f & ~TRANSFER_FLAGS_KNOWN) || phases > 1 ||
      ledger_id_is_zero(t->id) || (t->id.lo == UINT64_MAX && t->id.hi == UINT64_MAX))
    return fail(a, LEDGER_AUDIT_REPLAY, seq, "event %u: transfer %s recorded ok but is invalid", i,
                hex);
  if (f & (LEDGER_TRANSFER_POST_PENDING | LEDGER_TRANSFER_VOID_PENDING))
    return replay_post_or_void(a, seq, i, t, ts);
  int pending = (f & LEDGER_TRANSFER_PENDING) != 0;
  uint32_t di = acc_find(a, t->debit_account_id), ci = acc_find(a, t->credit_account_id);
  if (di == UINT32_MAX || ci == UINT32_MAX || di == ci || !ledger_id_is_zero(t->pending_id))
    return fail(a, LEDGER_AUDIT_REPLAY, seq,
                "event %u: transfer %s recorded ok but its accounts do not exist", i, hex);
  scratch_account *d = &a->acc[di], *c = &a->acc[ci];
  if (d->a.ledger != c->a.ledger || t->ledger != d->a.ledger || !t->code ||
      ((d->a.flags | c->a.flags) & LEDGER_ACCOUNT_CLOSED) || (t->timeout && !pending))
    return fail(a, LEDGER_AUDIT_REPLAY, seq, "event %u: transfer %s recorded ok but refused", i,
                hex);
  uint64_t amount = t->amount, used;
  if (f & LEDGER_TRANSFER_BALANCING_DEBIT) {
    uint64_t avail = 0;
    if (!__builtin_add_overflow(d->a.debits_pending, d->a.debits_posted, &used) &&
        used < d->a.credits_posted)
      avail = d->a.credits_posted - used;
    amount = amount < avail ? amount : avail;
  }
  if (f & LEDGER_TRANSFER_BALANCING_CREDIT) {
    uint64_t avail = 0;
    if (!__builtin_add_overflow(c->a.credits_pending, c->a.credits_posted, &used) &&
        used < c->a.debits_posted)
      avail = c->a.debits_posted - used;
    amount = amount < avail ? amount : avail;
  }
  int balancing = (f & (LEDGER_TRANSFER_BALANCING_DEBIT | LEDGER_TRANSFER_BALANCING_CREDIT)) != 0;
  uint64_t d_total = d->a.debits_pending + d->a.debits_posted;
  uint64_t c_total = c->a.credits_pending + c->a.credits_posted;
  if ((!t->amount && !balancing) ||
      !add_ok(pending ? d->a.debits_pending : d->a.debits_posted, amount) ||
      !add_ok(pending ? c->a.credits_pending : c->a.credits_posted, amount) ||
      !add_ok(d->a.debits_pending, d->a.debits_posted) ||
      !add_ok(c->a.credits_pending, c->a.credits_posted) || !add_ok(d_total, amount) ||
      !add_ok(c_total, amount))
    return fail(a, LEDGER_AUDIT_REPLAY, seq, "event %u: transfer %s recorded ok but overflows", i,
                hex);
  if ((d->a.flags & LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) &&
      d_total + amount > d->a.credits_posted)
    return fail(a, LEDGER_AUDIT_REPLAY, seq,
                "event %u: transfer %s recorded ok but exceeds the debit account's credits", i,
                hex);
  if ((c->a.flags & LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS) &&
      c_total + amount > c->a.debits_posted)
    return fail(a, LEDGER_AUDIT_REPLAY, seq,
                "event %u: transfer %s recorded ok but exceeds the credit account's debits", i,
                hex);
  uint64_t expires_at = 0;
  if (pending && t->timeout &&
      __builtin_add_overflow(ts, (uint64_t)t->timeout * NS_PER_S, &expires_at))
    return fail(a, LEDGER_AUDIT_REPLAY, seq, "event %u: transfer %s timeout overflows", i, hex);
  if (pending) {
    if (pend_find(a, t->id) != UINT32_MAX)
      return fail(a, LEDGER_AUDIT_REPLAY, seq, "event %u: pending transfer %s created twice", i,
                  hex);
    scratch_pending p = {t->id,     d->a.id, c->a.id, amount, ts, expires_at,
                         t->ledger, t->code, f,       di,     ci, LEDGER_PENDING_OPEN,
                         0};
    if (pend_add(a, &p) ||
        (expires_at && heap_push(a, (expiry_entry){expires_at, ts, a->n_pend - 1})))
      return fail(a, LEDGER_AUDIT_STORAGE, seq, "out of memory");
    d = &a->acc[di];
    c = &a->acc[ci];
    d->a.debits_pending += amount;
    c->a.credits_pending += amount;
    if (f & LEDGER_TRANSFER_CLOSING_DEBIT)
      d->a.flags |= LEDGER_ACCOUNT_CLOSED;
    if (f & LEDGER_TRANSFER_CLOSING_CREDIT)
      c->a.flags |= LEDGER_ACCOUNT_CLOSED;
  } else {
    d->a.debits_posted += amount;
    c->a.credits_posted += amount;
  }
  ledger_transfer stored = *t;
  stored.amount = amount;
  stored.timestamp = ts;
  if (check_stored_transfer(a, seq, i, &stored, d, c, d->last_ts, c->last_ts))
    return LEDGER_E_CORRUPT;
  d->last_ts = c->last_ts = ts;
  d->last_seq = c->last_seq = seq;
  return 0;
#undef hex
}

/* The record's expiries: exactly the open pending transfers due at its base time, in order of
 * (expires_at, timestamp), at most LEDGER_BATCH_MAX of them. */
static int replay_expiries(ledger_audit *a, const journal_view *v) {
  for (uint32_t k = 0; k < v->expired_count; k++) {
    ledger_id id = journal_expired_at(v, k);
    const expiry_entry *top = heap_top_open(a);
    if (!top || top->expires_at > v->timestamp || !ledger_id_eq(a->pend[top->pending].id, id))
      return fail(a, LEDGER_AUDIT_REPLAY, v->seq,
                  "expiry %u: pending transfer %s is not the next one due", k, hx(id).s);
    scratch_pending *p = &a->pend[top->pending];
    heap_pop(a);
    scratch_account *d = &a->acc[p->debit_slot], *c = &a->acc[p->credit_slot];
    d->a.debits_pending -= p->amount;
    c->a.credits_pending -= p->amount;
    if (p->flags & LEDGER_TRANSFER_CLOSING_DEBIT)
      d->a.flags &= (uint16_t)~LEDGER_ACCOUNT_CLOSED;
    if (p->flags & LEDGER_TRANSFER_CLOSING_CREDIT)
      c->a.flags &= (uint16_t)~LEDGER_ACCOUNT_CLOSED;
    d->last_seq = c->last_seq = v->seq;
    p->state = LEDGER_PENDING_EXPIRED;
    p->resolved_ts = v->timestamp + k;
  }
  if (v->expired_count < LEDGER_BATCH_MAX) {
    const expiry_entry *top = heap_top_open(a);
    if (top && top->expires_at <= v->timestamp) {
      char hex[33];
      id_hex(a->pend[top->pending].id, hex);
      return fail(a, LEDGER_AUDIT_REPLAY, v->seq, "pending transfer %s was due but not expired",
                  hex);
    }
  }
  return 0;
}

/* Whether event i belongs to a linked chain: it carries the linked flag, or the event before it
 * does (a chain ends with its first unlinked event). */
static int event_linked(const journal_view *v, uint32_t i) {
  const uint8_t *out = v->outcomes + (size_t)i * JOURNAL_OUTCOME_SIZE;
  const uint8_t *body = v->events + (size_t)i * JOURNAL_EVENT_SIZE;
  uint16_t kind = (uint16_t)(out[0] | out[1] << 8);
  if (kind == LEDGER_EVENT_CREATE_ACCOUNT)
    return body[86] & LEDGER_ACCOUNT_LINKED;
  if (kind == LEDGER_EVENT_CREATE_TRANSFER)
    return body[110] & LEDGER_TRANSFER_LINKED;
  return 0;
}

/* A transfer outside any linked chain that was refused for a reason that depends on the state
 * (ledger.h's transient results, and a pending transfer's state): the replayed state must give
 * that reason too. A switch cannot claim "insufficient funds" for a payer who had them. */
static int check_refusal(ledger_audit *a, uint64_t seq, uint32_t i, const ledger_transfer *t,
                         uint64_t ts, unsigned result) {
  int resolves = (t->flags & (LEDGER_TRANSFER_POST_PENDING | LEDGER_TRANSFER_VOID_PENDING)) != 0;
  uint32_t di = acc_find(a, t->debit_account_id), ci = acc_find(a, t->credit_account_id);
  const scratch_account *d = di == UINT32_MAX ? NULL : &a->acc[di];
  const scratch_account *c = ci == UINT32_MAX ? NULL : &a->acc[ci];
  uint32_t pi = resolves ? pend_find(a, t->pending_id) : UINT32_MAX;
  const scratch_pending *p = pi == UINT32_MAX ? NULL : &a->pend[pi];
  int holds = 1;
  switch (result) {
  case LEDGER_DEBIT_ACCOUNT_NOT_FOUND:
    holds = resolves || !d;
    break;
  case LEDGER_CREDIT_ACCOUNT_NOT_FOUND:
    holds = resolves || (d && !c);
    break;
  case LEDGER_DEBIT_ACCOUNT_ALREADY_CLOSED:
    holds = resolves || (d && c && (d->a.flags & LEDGER_ACCOUNT_CLOSED));
    break;
  case LEDGER_CREDIT_ACCOUNT_ALREADY_CLOSED:
    holds = resolves || (d && c && (c->a.flags & LEDGER_ACCOUNT_CLOSED));
    break;
  case LEDGER_EXCEEDS_CREDITS:
  case LEDGER_EXCEEDS_DEBITS: {
    if (resolves || !d || !c) {
      holds = resolves;
      break;
    }
    uint64_t amount = t->amount, used;
    if (t->flags & LEDGER_TRANSFER_BALANCING_DEBIT) {
      uint64_t avail = 0;
      if (!__builtin_add_overflow(d->a.debits_pending, d->a.debits_posted, &used) &&
          used < d->a.credits_posted)
        avail = d->a.credits_posted - used;
      amount = amount < avail ? amount : avail;
    }
    if (t->flags & LEDGER_TRANSFER_BALANCING_CREDIT) {
      uint64_t avail = 0;
      if (!__builtin_add_overflow(c->a.credits_pending, c->a.credits_posted, &used) &&
          used < c->a.debits_posted)
        avail = c->a.debits_posted - used;
      amount = amount < avail ? amount : avail;
    }
    unsigned __int128 d_total = (unsigned __int128)d->a.debits_pending + d->a.debits_posted;
    unsigned __int128 c_total = (unsigned __int128)c->a.credits_pending + c->a.credits_posted;
    if (result == LEDGER_EXCEEDS_CREDITS)
      holds = (d->a.flags & LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) &&
              d_total + amount > d->a.credits_posted;
    else
      holds = (c->a.flags & LEDGER_ACCOUNT_CREDITS_MUST_NOT_EXCEED_DEBITS) &&
              c_total + amount > c->a.debits_posted;
    break;
  }
  case LEDGER_PENDING_TRANSFER_NOT_FOUND:
    holds = !resolves || !p;
    break;
  case LEDGER_PENDING_TRANSFER_ALREADY_POSTED:
    holds = !resolves || (p && p->state == LEDGER_PENDING_POSTED);
    break;
  case LEDGER_PENDING_TRANSFER_ALREADY_VOIDED:
    holds = !resolves || (p && p->state == LEDGER_PENDING_VOIDED);
    break;
  case LEDGER_PENDING_TRANSFER_EXPIRED:
    holds = !resolves ||
            (p && (p->state == LEDGER_PENDING_EXPIRED ||
                   (p->state == LEDGER_PENDING_OPEN && p->expires_at && p->expires_at <= ts)));
    break;
  default:
    break;
  }
  if (holds)
    return 0;
  return fail(a, LEDGER_AUDIT_REPLAY, seq,
              "event %u: transfer %s recorded %s, which the replayed state does not give", i,
              hx(t->id).s, ledger_result_name((ledger_result)result));
}

static int replay_record(ledger_audit *a, const journal_view *v) {
  a->n_created = 0;
  int rc = replay_expiries(a, v);
  uint64_t ts0 = v->timestamp + v->expired_count;
  for (uint32_t i = 0; i < v->event_count && !rc; i++) {
    /* Prefetch in two stages: the index entries event i + 16 will look up, then (their
     * entries cached by now) the accounts and pending transfer event i + 8 will touch. */
    if (i + 16 < v->event_count) {
      const uint8_t *ahead = v->events + (size_t)(i + 16) * JOURNAL_EVENT_SIZE;
      ledger_id ids[3];
      memcpy(ids, ahead + 16, sizeof ids);        /* debit, credit (transfers) */
      memcpy(&ids[2], ahead + 56, sizeof ids[2]); /* pending_id */
      index_prefetch(&a->acc_ix, ids[0]);
      index_prefetch(&a->acc_ix, ids[1]);
      if (!ledger_id_is_zero(ids[2]))
        index_prefetch(&a->pend_ix, ids[2]);
      else if (ahead[110] & LEDGER_TRANSFER_PENDING) { /* a new pending: its own id */
        ledger_id own;
        memcpy(&own, ahead, sizeof own);
        index_prefetch(&a->pend_ix, own);
      }
    }
    if (i + 8 < v->event_count) {
      const uint8_t *ahead = v->events + (size_t)(i + 8) * JOURNAL_EVENT_SIZE;
      ledger_id ids[3];
      memcpy(ids, ahead + 16, sizeof ids);
      memcpy(&ids[2], ahead + 56, sizeof ids[2]);
      for (int k = 0; k < 2; k++) {
        uint32_t slot = index_peek(&a->acc_ix, ids[k]);
        if (slot != UINT32_MAX) { /* the two cache lines a transfer touches */
          __builtin_prefetch(&a->acc[slot]);
          __builtin_prefetch((const char *)&a->acc[slot] + 64);
        }
      }
      if (!ledger_id_is_zero(ids[2])) {
        uint32_t slot = index_peek(&a->pend_ix, ids[2]);
        if (slot != UINT32_MAX)
          for (size_t off = 0; off < sizeof a->pend[slot]; off += 64)
            __builtin_prefetch((const char *)&a->pend[slot] + off);
      }
    }
    const uint8_t *out = v->outcomes + (size_t)i * JOURNAL_OUTCOME_SIZE;
    const uint8_t *body = v->events + (size_t)i * JOURNAL_EVENT_SIZE;
    uint16_t kind = (uint16_t)(out[0] | out[1] << 8);
    if (out[2] != LEDGER_OK || out[3] != 0) { /* failed, or "exists": no effect */
      unsigned result = (unsigned)(out[2] | out[3] << 8);
      if (kind == LEDGER_EVENT_CREATE_TRANSFER && result != LEDGER_EXISTS && !event_linked(v, i) &&
          !(i > 0 && event_linked(v, i - 1))) {
        ledger_transfer t;
        memcpy(&t, body, sizeof t);
        rc = check_refusal(a, v->seq, i, &t, ts0 + i, result);
      }
      continue;
    }
    if (kind == LEDGER_EVENT_CREATE_TRANSFER) {
      ledger_transfer t;
      memcpy(&t, body, sizeof t);
      rc = replay_transfer(a, v->seq, i, &t, ts0 + i);
    } else if (kind == LEDGER_EVENT_CREATE_ACCOUNT) {
      ledger_account acc;
      memcpy(&acc, body, sizeof acc);
      rc = replay_account(a, v->seq, i, &acc, ts0 + i);
    } else {
      rc = fail(a, LEDGER_AUDIT_REPLAY, v->seq, "event %u: unknown kind recorded ok", i);
    }
  }
  /* The stored static row keeps the flags as they were when the creating batch ended. */
  for (uint32_t k = 0; k < a->n_created; k++)
    a->acc[a->created[k]].static_flags = a->acc[a->created[k]].a.flags;
  return rc;
}

/* ================================================================ feeding */

int ledger_audit_new(const ledger_audit_options *o, ledger_audit **out) {
  if (!out)
    return LEDGER_E_INVAL;
  ledger_audit *a = calloc(1, sizeof *a);
  if (!a)
    return LEDGER_E_NOMEM;
  if (o)
    a->o = *o;
  a->expect_seq = 1;
  a->r.replayed = !a->o.chain_only;
  a->r.checkpoints_verified = a->o.pubkey != NULL;
  *out = a;
  return 0;
}

int ledger_audit_attach(ledger_audit *a, ledger_audit_source *src) {
  if (!a || !ledger_audit_source_is_dir(src) || a->c_transfers)
    return LEDGER_E_INVAL;
  int rc = mdb_cursor_open(src->txn, src->l->db_transfers, &a->c_transfers);
  if (!rc)
    rc = mdb_cursor_open(src->txn, src->l->db_history, &a->c_history);
  if (rc) {
    if (a->c_transfers)
      mdb_cursor_close(a->c_transfers);
    a->c_transfers = NULL;
    return store_error(rc);
  }
  a->src = src;
  return 0;
}

static void detach(ledger_audit *a) {
  if (a->c_transfers)
    mdb_cursor_close(a->c_transfers);
  if (a->c_history)
    mdb_cursor_close(a->c_history);
  a->c_transfers = a->c_history = NULL;
  if (a->txn2)
    mdb_txn_abort(a->txn2);
  a->txn2 = NULL;
}

void ledger_audit_free(ledger_audit *a) {
  if (!a)
    return;
  detach(a);
  big_free(a->acc, (size_t)a->cap_acc * sizeof *a->acc);
  if (a->acc_ix.e)
    big_free(a->acc_ix.e, ((size_t)a->acc_ix.mask + 1) * sizeof *a->acc_ix.e);
  big_free(a->created, (size_t)a->cap_created * sizeof *a->created);
  big_free(a->pend, (size_t)a->cap_pend * sizeof *a->pend);
  if (a->pend_ix.e)
    big_free(a->pend_ix.e, ((size_t)a->pend_ix.mask + 1) * sizeof *a->pend_ix.e);
  big_free(a->heap, (size_t)a->cap_heap * sizeof *a->heap);
  free(a);
}

const ledger_audit_report *ledger_audit_report_of(const ledger_audit *a) {
  return &a->r;
}

static int check_checkpoint(ledger_audit *a, const journal_view *v, const uint8_t *rec) {
  a->r.checkpoints++;
  a->r.last_checkpoint_seq = v->seq;
  a->r.unsigned_tail = 0;
  if (!a->o.pubkey)
    return 0;
  if (memcmp(v->fingerprint, ledger_audit_key_fingerprint(a->o.pubkey), 32))
    return fail(a, LEDGER_AUDIT_BAD_SIGNATURE, v->seq,
                "checkpoint signed by another key (fingerprint differs)");
  if (!key_verify(a->o.pubkey, rec, JOURNAL_CHECKPOINT_SIGNED_SIZE, v->signature))
    return fail(a, LEDGER_AUDIT_BAD_SIGNATURE, v->seq, "checkpoint signature does not verify");
  return 0;
}

/* One record; body_hash is the SHA-256 of its bytes before the hash when already computed
 * (the pipeline's hashing thread), else NULL. */
static int feed_record(ledger_audit *a, uint64_t seq, const void *record, size_t len,
                       const uint8_t *body_hash) {
  if (a->stopped)
    return 1;
  if (a->r.problem)
    return LEDGER_E_CORRUPT;
  const uint8_t *rec = record;
  uint64_t expect = a->expect_seq;
  /* Sequence first: a missing or moved record is named by where the chain breaks. */
  uint64_t own = len >= 48 ? rd_u64(rec + 40) : 0;
  static const uint8_t zero[32];
  if (!a->started && !a->o.require_genesis && !a->o.stop_seq && !a->o.stop_time && own > 1 &&
      (seq == own || seq == 0) && memcmp(rec, zero, 32)) {
    /* An export that does not begin at genesis: check its chain from its first record. */
    a->expect_seq = expect = own;
    memcpy(a->prev_hash, rec, 32);
    a->r.replayed = 0;
  }
  if (seq && seq != expect)
    return fail(a, seq > expect ? LEDGER_AUDIT_GAP : LEDGER_AUDIT_REORDERED, expect,
                seq > expect ? "record %llu missing (next stored is %llu)"
                             : "record %llu expected, found %llu again or out of order",
                (unsigned long long)expect, (unsigned long long)seq);
  journal_view v;
  if (len < JOURNAL_HEADER_SIZE + JOURNAL_HASH_SIZE)
    return fail(a, LEDGER_AUDIT_BAD_RECORD, expect, "record %llu truncated (%zu bytes)",
                (unsigned long long)expect, len);
  if (body_hash ? journal_parse_hashed(record, len, body_hash, &v)
                : journal_parse(record, len, &v)) {
    int framed = (!memcmp(rec + 32, JOURNAL_MAGIC, 8) &&
                  len == journal_record_size(rd_u32(rec + 56), rd_u32(rec + 60)) &&
                  rd_u32(rec + 56) <= LEDGER_BATCH_MAX && rd_u32(rec + 60) <= LEDGER_BATCH_MAX) ||
                 (!memcmp(rec + 32, JOURNAL_CHECKPOINT_MAGIC, 8) && len == JOURNAL_CHECKPOINT_SIZE);
    return framed ? fail(a, LEDGER_AUDIT_HASH_MISMATCH, expect,
                         "record %llu: hash does not match its bytes", (unsigned long long)expect)
                  : fail(a, LEDGER_AUDIT_BAD_RECORD, expect,
                         "record %llu: bad framing (magic, counts or length)",
                         (unsigned long long)expect);
  }
  if (v.seq != expect) /* stored under another key: moved */
    return fail(a, LEDGER_AUDIT_REORDERED, expect, "record %llu carries seq %llu",
                (unsigned long long)expect, (unsigned long long)v.seq);
  if (memcmp(v.prev_hash, a->prev_hash, 32))
    return fail(a, LEDGER_AUDIT_BROKEN_LINK, expect,
                "record %llu: prev_hash is not the hash of record %llu", (unsigned long long)expect,
                (unsigned long long)(expect - 1));
  if (a->started && v.timestamp <= a->last_ts)
    return fail(a, LEDGER_AUDIT_REORDERED, expect, "record %llu: timestamp does not increase",
                (unsigned long long)expect);
  if (a->o.stop_time && v.timestamp > a->o.stop_time) {
    a->stopped = 1;
    return 1;
  }
  if (v.kind == JOURNAL_KIND_BATCH && v.event_count == 0 && v.expired_count == 0)
    return fail(a, LEDGER_AUDIT_BAD_RECORD, expect, "record %llu is empty",
                (unsigned long long)expect);
  /* The auditor's kept checkpoint signs the hash of the record before it. */
  if (a->o.kept_checkpoint && a->o.kept_checkpoint_len == JOURNAL_CHECKPOINT_SIZE) {
    const uint8_t *kc = a->o.kept_checkpoint;
    uint64_t kseq = rd_u64(kc + 40);
    if (kseq == expect + 1 && memcmp(kc, v.hash, 32))
      return fail(a, LEDGER_AUDIT_CHECKPOINT_MISSING, expect,
                  "record %llu differs from the one the kept checkpoint %llu signed",
                  (unsigned long long)expect, (unsigned long long)kseq);
    if (kseq == expect && memcmp(kc, rec, JOURNAL_CHECKPOINT_SIZE))
      return fail(a, LEDGER_AUDIT_CHECKPOINT_MISSING, expect,
                  "record %llu is not the kept checkpoint", (unsigned long long)expect);
  }
  a->started = 1;
  if (v.kind == JOURNAL_KIND_CHECKPOINT) {
    if (check_checkpoint(a, &v, rec))
      return LEDGER_E_CORRUPT;
    a->last_ts = v.timestamp;
  } else {
    a->r.batches++;
    a->r.events += v.event_count;
    a->r.expiries += v.expired_count;
    a->r.unsigned_tail++;
    a->last_ts = v.timestamp + v.expired_count + v.event_count - 1;
    if (a->r.replayed && replay_record(a, &v))
      return LEDGER_E_CORRUPT;
  }
  if (a->r.records == 0)
    a->r.first_seq = v.seq;
  a->r.records++;
  a->r.head_seq = v.seq;
  a->r.head_timestamp = v.timestamp;
  memcpy(a->r.head_hash, v.hash, 32);
  memcpy(a->prev_hash, v.hash, 32);
  a->expect_seq = expect + 1;
  if (a->o.stop_seq && v.seq >= a->o.stop_seq) {
    a->stopped = 1;
    return 1;
  }
  return 0;
}

int ledger_audit_feed_cb(uint64_t seq, const void *record, size_t len, void *arg) {
  return feed_record(arg, seq, record, len, NULL);
}

/* ================================================================ the hashing pipeline */

/* ledger_audit_verify() runs on two threads: the scan collects windows of records (pointers
 * into the snapshot's map, valid until the source closes) and a second thread hashes one
 * window while this one checks and replays the window before it, with its hashes ready. The
 * records are still checked one by one in order, so the first bad one is the one reported. */

#define WINDOW_RECORDS 64
#define WINDOW_BYTES (8u << 20)

typedef struct window {
  uint64_t seq[WINDOW_RECORDS];
  const uint8_t *rec[WINDOW_RECORDS];
  size_t len[WINDOW_RECORDS];
  uint8_t hash[WINDOW_RECORDS][32];
  uint32_t n;
  size_t bytes;
} window;

typedef struct pipeline {
  ledger_audit *a;
  window w[2];
  int fill;    /* the window being filled */
  int pending; /* the window handed to the hasher (or being processed), -1 none */
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int job;  /* window index the hasher must hash, -1 none */
  int cmp;  /* expected rows it must compare after hashing, -1 none */
  int busy; /* the hasher holds a window */
  int quit;
  int offload;        /* stored rows compared on the helper thread */
  int last_processed; /* the window whose expected rows are not compared yet, -1 none */
  expect_buf e[2];    /* expected rows of each window */
} pipeline;

static void hash_window(window *w) {
  for (uint32_t i = 0; i < w->n; i++)
    if (w->len[i] >= JOURNAL_HASH_SIZE)
      SHA256(w->rec[i], w->len[i] - JOURNAL_HASH_SIZE, w->hash[i]);
}

static void *hasher_main(void *arg) {
  pipeline *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (p->job < 0 && !p->quit)
      pthread_cond_wait(&p->cv, &p->mu);
    if (p->job < 0)
      break;
    window *w = &p->w[p->job];
    int cmp = p->cmp;
    p->job = p->cmp = -1;
    pthread_mutex_unlock(&p->mu);
    hash_window(w);
    if (cmp >= 0)
      compare_buf(p->a, &p->e[cmp]);
    pthread_mutex_lock(&p->mu);
    p->busy = 0;
    pthread_cond_broadcast(&p->cv);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

static void hasher_wait(pipeline *p) {
  pthread_mutex_lock(&p->mu);
  while (p->busy)
    pthread_cond_wait(&p->cv, &p->mu);
  pthread_mutex_unlock(&p->mu);
}

static void hasher_start(pipeline *p, int idx, int cmp) {
  pthread_mutex_lock(&p->mu);
  p->job = idx;
  p->cmp = cmp;
  p->busy = 1;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

/* Feeds every record of a hashed window (its expected rows into e[idx] when offloaded). */
static int process_window(pipeline *p, int idx) {
  window *w = &p->w[idx];
  if (p->offload) {
    p->e[idx].n = 0;
    p->a->expect = &p->e[idx];
    p->last_processed = idx;
  }
  for (uint32_t i = 0; i < w->n; i++) {
    int rc = feed_record(p->a, w->seq[i], w->rec[i], w->len[i],
                         w->len[i] >= JOURNAL_HASH_SIZE ? w->hash[i] : NULL);
    if (rc)
      return rc;
  }
  return 0;
}

/* The window being filled is complete: hash it on the other thread, and meanwhile process the
 * one hashed before. */
static int pipeline_step(pipeline *p) {
  hasher_wait(p);
  if (p->a->late.set)
    return LEDGER_E_CORRUPT; /* the helper found a stored row that differs: stop */
  int prev = p->pending;
  p->pending = p->fill;
  hasher_start(p, p->fill, p->offload ? p->last_processed : -1);
  int rc = 0;
  if (prev >= 0) {
    rc = process_window(p, prev);
    p->w[prev].n = 0;
    p->w[prev].bytes = 0;
    p->fill = prev;
  } else {
    p->fill = 1 - p->fill;
  }
  return rc;
}

static int collect_cb(uint64_t seq, const void *record, size_t len, void *arg) {
  pipeline *p = arg;
  window *w = &p->w[p->fill];
  w->seq[w->n] = seq;
  w->rec[w->n] = record;
  w->len[w->n] = len;
  w->n++;
  w->bytes += len;
  if (w->n == WINDOW_RECORDS || w->bytes >= WINDOW_BYTES)
    return pipeline_step(p);
  return 0;
}

/* Maps the pages of the source's snapshot in one call rather than one fault at a time (they are
 * all read once): a hint, errors ignored. */
static void prefault(ledger_audit_source *src) {
#ifdef MADV_POPULATE_READ
  if (src->l) {
    MDB_envinfo info;
    MDB_stat st;
    if (mdb_env_info(src->l->env, &info) || mdb_env_stat(src->l->env, &st) || !info.me_mapaddr)
      return;
    size_t used = ((size_t)info.me_last_pgno + 1) * st.ms_psize;
    madvise(info.me_mapaddr, used < info.me_mapsize ? used : info.me_mapsize, MADV_POPULATE_READ);
  } else if (src->map) {
    madvise((void *)src->map, src->map_len, MADV_POPULATE_READ);
  }
#else
  (void)src;
#endif
}

/* Moves the attached cursors to a second read transaction when it sees the same snapshot as
 * the source's (nothing committed in between), so that the helper thread may use them. */
static int offload_cursors(ledger_audit *a, ledger_audit_source *src) {
  if (!a->c_transfers || !src->l || a->transfers_begun)
    return 0;
  MDB_txn *t2;
  if (mdb_txn_begin(src->l->env, NULL, MDB_RDONLY, &t2))
    return 0;
  MDB_cursor *ct = NULL, *ch = NULL;
  if (mdb_txn_id(t2) != mdb_txn_id(src->txn) || mdb_cursor_open(t2, src->l->db_transfers, &ct) ||
      mdb_cursor_open(t2, src->l->db_history, &ch)) {
    if (ct)
      mdb_cursor_close(ct);
    mdb_txn_abort(t2);
    return 0;
  }
  mdb_cursor_close(a->c_transfers);
  mdb_cursor_close(a->c_history);
  a->c_transfers = ct;
  a->c_history = ch;
  a->txn2 = t2;
  return 1;
}

/* Scans src into a on two threads (on one if the thread cannot start): the helper hashes the
 * next window and, when the stored rows' cursors could move to a second transaction on the
 * same snapshot, compares the rows the replay expected from the window before. Returns what
 * the scan or the feed returned: 0, 1 (stopped at stop_seq/stop_time) or an error. */
static int run_pipeline(ledger_audit *a, ledger_audit_source *src) {
  prefault(src);
  pipeline *p = calloc(1, sizeof *p);
  if (!p)
    return ledger_audit_source_scan(src, 1, 0, ledger_audit_feed_cb, a);
  p->a = a;
  p->pending = p->job = p->cmp = p->last_processed = -1;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  int rc;
  if (pthread_create(&p->thread, NULL, hasher_main, p)) {
    rc = ledger_audit_source_scan(src, 1, 0, ledger_audit_feed_cb, a);
    goto out;
  }
  p->offload = offload_cursors(a, src);
  rc = ledger_audit_source_scan(src, 1, 0, collect_cb, p);
  hasher_wait(p);
  /* The rest on this thread, in record order: the expected rows not compared yet, then the
   * windows not processed yet (comparing at once). */
  if (p->offload && p->last_processed >= 0)
    compare_buf(a, &p->e[p->last_processed]);
  a->expect = NULL;
  p->offload = 0;
  if (a->late.set && !rc)
    rc = LEDGER_E_CORRUPT;
  if (!rc && p->pending >= 0)
    rc = process_window(p, p->pending);
  if (!rc && p->w[p->fill].n && p->fill != p->pending) {
    hash_window(&p->w[p->fill]);
    rc = process_window(p, p->fill);
  }
  pthread_mutex_lock(&p->mu);
  p->quit = 1;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  pthread_join(p->thread, NULL);
  /* A stored row that differs before the record the replay stopped at is the first problem. */
  if (a->late.set &&
      (a->r.problem == LEDGER_AUDIT_OK || a->r.bad_seq == 0 || a->late.seq <= a->r.bad_seq)) {
    a->r.problem = LEDGER_AUDIT_TRANSFER_MISMATCH;
    a->r.bad_seq = a->late.seq;
    memcpy(a->r.detail, a->late.detail, sizeof a->r.detail);
    rc = LEDGER_E_CORRUPT;
  }
out:
  big_free(p->e[0].r, (size_t)p->e[0].cap * sizeof *p->e[0].r);
  big_free(p->e[1].r, (size_t)p->e[1].cap * sizeof *p->e[1].r);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  free(p);
  return rc;
}

/* ================================================================ finishing */

/* With ledger_audit_attach(), after the last record: no stored transfer or history row is left
 * over, every pending-transfer row has the replayed state, and the expiry index lists exactly
 * the open pending transfers that have a timeout. */
static int compare_rest(ledger_audit *a, MDB_txn *txn, ledger *l) {
  uint64_t key = 0;
  MDB_val v;
  int rc = next_row(a->c_transfers, &a->transfers_begun, &key, &v);
  if (rc != MDB_NOTFOUND)
    return fail(a, LEDGER_AUDIT_TRANSFER_MISMATCH, 0,
                "a stored transfer (timestamp %llu) is in no journal record",
                (unsigned long long)key);
  rc = next_row(a->c_history, &a->history_begun, &key, &v);
  if (rc != MDB_NOTFOUND)
    return fail(a, LEDGER_AUDIT_TRANSFER_MISMATCH, 0,
                "a stored balance history row (timestamp %llu) is in no journal record",
                (unsigned long long)key);
  detach(a);
  MDB_cursor *cur;
  rc = mdb_cursor_open(txn, l->db_pending, &cur);
  if (rc)
    return fail(a, LEDGER_AUDIT_STORAGE, 0, "pending table: %s", mdb_strerror(rc));
  int begun = 0, out = 0;
  uint32_t i = 0;
  uint64_t with_timeout = 0;
  for (; !out; i++) {
    rc = next_row(cur, &begun, &key, &v);
    if (rc)
      break;
    pending_row row;
    if (i >= a->n_pend || v.mv_size != sizeof row) {
      out = fail(a, LEDGER_AUDIT_TRANSFER_MISMATCH, 0,
                 "a stored pending transfer (timestamp %llu) is in no journal record",
                 (unsigned long long)key);
      break;
    }
    memcpy(&row, v.mv_data, sizeof row);
    const scratch_pending *p = &a->pend[i];
    if (key != p->ts || row.state != p->state || row.reserved ||
        row.resolved_ts != p->resolved_ts || row.expires_at != p->expires_at)
      out = fail(a, LEDGER_AUDIT_TRANSFER_MISMATCH, 0,
                 "pending transfer %s: the stored state differs from the replay (state %u, "
                 "replayed %u)",
                 hx(p->id).s, row.state, p->state);
  }
  mdb_cursor_close(cur);
  if (out)
    return out;
  if (rc != MDB_NOTFOUND)
    return fail(a, LEDGER_AUDIT_STORAGE, 0, "pending table: %s", mdb_strerror(rc));
  if (i != a->n_pend)
    return fail(a, LEDGER_AUDIT_TRANSFER_MISMATCH, 0, "%u pending transfers stored, %u replayed", i,
                a->n_pend);
  for (uint32_t k = 0; k < a->n_pend; k++)
    with_timeout += a->pend[k].state == LEDGER_PENDING_OPEN && a->pend[k].expires_at;
  MDB_stat st;
  rc = mdb_stat(txn, l->db_expiry, &st);
  if (rc || st.ms_entries != with_timeout)
    return fail(a, LEDGER_AUDIT_TRANSFER_MISMATCH, 0,
                "the expiry index holds %llu entries, the replay %llu open pending transfers with "
                "a timeout",
                (unsigned long long)(rc ? 0 : st.ms_entries), (unsigned long long)with_timeout);
  return 0;
}

/* Compares every stored account (accounts and balances tables) with the replayed ones. */
static int compare_stored(ledger_audit *a, ledger_audit_source *src) {
  ledger *l = src->l;
  MDB_txn *txn = src->txn;
  MDB_cursor *cur;
  int rc = mdb_cursor_open(txn, l->db_accounts, &cur);
  if (rc)
    return fail(a, LEDGER_AUDIT_STORAGE, 0, "accounts table: %s", mdb_strerror(rc));
  uint64_t stored = 0;
  MDB_val k, v;
  int out = 0;
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && !out;
       rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    stored++;
    account_static st;
    if (v.mv_size != sizeof st || k.mv_size != 16) {
      out = fail(a, LEDGER_AUDIT_STORAGE, 0, "accounts table: a row of the wrong size");
      break;
    }
    memcpy(&st, v.mv_data, sizeof st);
    char hex[33];
    id_hex(st.account.id, hex);
    uint32_t si = acc_find(a, st.account.id);
    if (si == UINT32_MAX) {
      a->r.bad_account = st.account.id;
      out = fail(a, LEDGER_AUDIT_ACCOUNT_MISSING, 0,
                 "account %s is stored but no journal record creates it", hex);
      break;
    }
    const scratch_account *s = &a->acc[si];
    account_static want = {s->a, s->number};
    want.account.debits_pending = want.account.debits_posted = 0;
    want.account.credits_pending = want.account.credits_posted = 0;
    want.account.flags = s->static_flags;
    id_key key = store_id_key(s->a.id);
    account_state want_state = {s->a.debits_pending,
                                s->a.debits_posted,
                                s->a.credits_pending,
                                s->a.credits_posted,
                                s->last_ts,
                                s->a.flags,
                                0,
                                0};
    uint64_t number = st.number;
    MDB_val bk = {sizeof number, &number}, bv;
    int brc = mdb_get(txn, l->db_balances, &bk, &bv);
    if (memcmp(k.mv_data, key.b, 16) || memcmp(&st, &want, sizeof st) || brc ||
        bv.mv_size != sizeof want_state || memcmp(bv.mv_data, &want_state, sizeof want_state)) {
      a->r.bad_account = s->a.id;
      out = fail(a, LEDGER_AUDIT_BALANCE_MISMATCH, s->last_seq,
                 "balance mismatch for account %s (stored row differs from the replay; last "
                 "changed by record %llu)",
                 hex, (unsigned long long)s->last_seq);
    }
  }
  mdb_cursor_close(cur);
  if (out)
    return out;
  if (rc != MDB_NOTFOUND)
    return fail(a, LEDGER_AUDIT_STORAGE, 0, "accounts table: %s", mdb_strerror(rc));
  MDB_stat bst;
  rc = mdb_stat(txn, l->db_balances, &bst);
  if (rc)
    return fail(a, LEDGER_AUDIT_STORAGE, 0, "balances table: %s", mdb_strerror(rc));
  if (stored != a->n_acc || bst.ms_entries != a->n_acc) {
    for (uint32_t i = 0; i < a->n_acc; i++) {
      id_key key = store_id_key(a->acc[i].a.id);
      MDB_val ak = {16, key.b}, av;
      if (mdb_get(txn, l->db_accounts, &ak, &av)) {
        char hex[33];
        id_hex(a->acc[i].a.id, hex);
        a->r.bad_account = a->acc[i].a.id;
        return fail(a, LEDGER_AUDIT_ACCOUNT_MISSING, a->acc[i].last_seq,
                    "account %s is created by record %llu but not stored", hex,
                    (unsigned long long)a->acc[i].last_seq);
      }
    }
    return fail(a, LEDGER_AUDIT_ACCOUNT_MISSING, 0,
                "%llu accounts and %llu balance rows stored, %u replayed",
                (unsigned long long)stored, (unsigned long long)bst.ms_entries, a->n_acc);
  }
  if (a->c_transfers && compare_rest(a, txn, l))
    return LEDGER_E_CORRUPT;
  a->r.compared = 1;
  return 0;
}

int ledger_audit_finish(ledger_audit *a, ledger_audit_source *src) {
  if (!a)
    return LEDGER_E_INVAL;
  if (a->r.problem)
    return LEDGER_E_CORRUPT;
  if (a->o.kept_checkpoint) {
    const uint8_t *kc = a->o.kept_checkpoint;
    journal_view kv;
    if (journal_parse(kc, a->o.kept_checkpoint_len, &kv) || kv.kind != JOURNAL_KIND_CHECKPOINT)
      return fail(a, LEDGER_AUDIT_CHECKPOINT_MISSING, 0, "the kept checkpoint is not one");
    if (a->o.pubkey && (memcmp(kv.fingerprint, ledger_audit_key_fingerprint(a->o.pubkey), 32) ||
                        !key_verify(a->o.pubkey, kc, JOURNAL_CHECKPOINT_SIGNED_SIZE, kv.signature)))
      return fail(a, LEDGER_AUDIT_BAD_SIGNATURE, kv.seq,
                  "the kept checkpoint %llu does not verify with the key",
                  (unsigned long long)kv.seq);
    if (!a->stopped && a->r.head_seq < kv.seq)
      return fail(a, LEDGER_AUDIT_CHECKPOINT_MISSING, a->r.head_seq + 1,
                  "journal ends at record %llu: the tail up to the kept checkpoint %llu was cut "
                  "off",
                  (unsigned long long)a->r.head_seq, (unsigned long long)kv.seq);
  }
  if (a->o.require_signed_head && !a->stopped && a->r.unsigned_tail)
    return fail(a, LEDGER_AUDIT_UNSIGNED_TAIL, a->r.last_checkpoint_seq + 1,
                "records %llu..%llu follow the last checkpoint (%llu) unsigned",
                (unsigned long long)(a->r.last_checkpoint_seq + 1),
                (unsigned long long)a->r.head_seq, (unsigned long long)a->r.last_checkpoint_seq);
  a->r.accounts = a->n_acc;
  uint64_t open = 0;
  for (uint32_t i = 0; i < a->n_pend; i++)
    open += a->pend[i].state == LEDGER_PENDING_OPEN;
  a->r.open_pendings = open;
  if (!a->r.replayed)
    return 0;
  unsigned __int128 dp = 0, dpo = 0, cp = 0, cpo = 0;
  for (uint32_t i = 0; i < a->n_acc; i++) {
    dp += a->acc[i].a.debits_pending;
    dpo += a->acc[i].a.debits_posted;
    cp += a->acc[i].a.credits_pending;
    cpo += a->acc[i].a.credits_posted;
  }
  if (dp != cp || dpo != cpo)
    return fail(a, LEDGER_AUDIT_INVARIANT, 0, "sum of debits differs from sum of credits");
  if (src && ledger_audit_source_is_dir(src) && !a->stopped)
    return compare_stored(a, src);
  return 0;
}

int ledger_audit_accounts(const ledger_audit *a, ledger_audit_account_cb cb, void *arg) {
  if (!a || !cb)
    return LEDGER_E_INVAL;
  for (uint32_t i = 0; i < a->n_acc; i++) {
    int rc = cb(&a->acc[i].a, arg);
    if (rc)
      return rc;
  }
  return 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int ledger_audit_verify(const char *path, const ledger_audit_options *o,
                        ledger_audit_report *report, double *seconds, char *err, size_t errlen) {
  if (report)
    memset(report, 0, sizeof *report);
  if (seconds)
    *seconds = 0;
  ledger_audit_source *src = NULL;
  ledger_audit *a = NULL;
  double t0 = now_s();
  int rc = ledger_audit_source_open(path, &src, err, errlen);
  if (rc)
    return rc;
  ledger_audit_options opts = {0};
  if (o)
    opts = *o;
  if (ledger_audit_source_is_dir(src))
    opts.require_genesis = 1; /* a data directory's journal always starts at record 1 */
  rc = ledger_audit_new(&opts, &a);
  if (rc)
    goto out;
  if (ledger_audit_source_is_dir(src) && !(o && (o->chain_only || o->stop_seq || o->stop_time)))
    rc = ledger_audit_attach(a, src);
  if (rc)
    goto out;
  rc = run_pipeline(a, src);
  if (rc == 1)
    rc = 0;
  if (!rc || rc == LEDGER_E_CORRUPT)
    rc = ledger_audit_finish(a, src);
  else
    set_err(err, errlen, "%s: %s", path, ledger_strerror(rc));
out:
  if (seconds)
    *seconds = now_s() - t0;
  if (a && report)
    *report = a->r;
  ledger_audit_free(a);
  ledger_audit_source_close(src);
  return rc;
}
