/* registry.c — participants and the tokenised party directory in DATA_DIR/registry (registry.h).
 *
 * LMDB layout (format 1, little endian, this machine's struct layout like the ledger's):
 *   meta             "format" → u32 1, "next_number" → u32, "secret_check" → 32 bytes
 *   participants     u32 number (MDB_INTEGERKEY) → sw_participant, unused bytes zeroed
 *   participant_ids  id string → u32 number
 *   parties          HMAC-SHA-256(secret, type BE32 ‖ 0x00 ‖ id) → u32 participant number
 * secret_check is HMAC-SHA-256(secret, SECRET_CHECK_LABEL): it tells a wrong secret file from
 * the right one without storing anything that helps guess party identifiers.
 */
#include "registry.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "currency.h"

#define FORMAT_VERSION 1u
#define SECRET_SIZE 32
#define TOKEN_SIZE 32
#define DEFAULT_MAP_SIZE ((size_t)16 << 20)
#define DEFAULT_MAP_SIZE_MAX ((size_t)64 << 30)
#define SECRET_CHECK_LABEL "tuma.registry.secret-check.v1"
#define MASK_MIN_LEN 8

_Static_assert(sizeof(sw_participant) == 544, "participant record layout");
_Static_assert(sizeof(unsigned int) == sizeof(uint32_t), "MDB_INTEGERKEY on u32 numbers");

/* One MSISDN prefix of the in-memory routing table, sorted by digits. */
typedef struct prefix_entry {
  char digits[16];
  uint32_t number;
} prefix_entry;

struct sw_registry {
  MDB_env *env;
  MDB_dbi db_meta;
  MDB_dbi db_participants;
  MDB_dbi db_ids;
  MDB_dbi db_parties;
  MDB_txn *rtxn; /* the read transaction, reset between reads and renewed for the next */
  size_t map_size;
  size_t map_size_max;
  int map_full;     /* the last LMDB error seen was MDB_MAP_FULL (the map may grow) */
  EVP_MAC_CTX *mac; /* HMAC-SHA-256 keyed with the directory secret */
  prefix_entry *prefixes;
  size_t n_prefixes;
};

static const MDB_val KEY_FORMAT = {6, (void *)"format"};
static const MDB_val KEY_NEXT_NUMBER = {11, (void *)"next_number"};
static const MDB_val KEY_SECRET_CHECK = {12, (void *)"secret_check"};

/* ---------------------------------------------------------------- errors */

const char *sw_registry_strerror(int err) {
  switch (err) {
  case SW_REGISTRY_E_OK:
    return "ok";
  case SW_REGISTRY_E_NOMEM:
    return "out of memory";
  case SW_REGISTRY_E_INVAL:
    return "invalid argument";
  case SW_REGISTRY_E_NOTFOUND:
    return "not found";
  case SW_REGISTRY_E_CONFLICT:
    return "MSISDN prefix belongs to another participant";
  case SW_REGISTRY_E_FULL:
    return "registry storage full (map size limit or disk)";
  case SW_REGISTRY_E_IO:
    return "registry storage I/O error; the write was not committed";
  case SW_REGISTRY_E_VERSION:
    return "registry has another format version";
  case SW_REGISTRY_E_SECRET:
    return "directory secret file unusable or not this registry's";
  case SW_REGISTRY_E_CRYPTO:
    return "cryptographic library failure";
  case SW_REGISTRY_E_CORRUPT:
    return "registry record corrupt";
  case SW_REGISTRY_E_LMDB:
    return "LMDB error";
  default:
    return "unknown registry error";
  }
}

/* Maps an LMDB or errno return to a registry error, remembering whether it was MAP_FULL. */
static int mdb_err(sw_registry *r, int rc) {
  r->map_full = rc == MDB_MAP_FULL;
  switch (rc) {
  case 0:
    return 0;
  case MDB_NOTFOUND:
    return SW_REGISTRY_E_NOTFOUND;
  case MDB_MAP_FULL:
  case ENOSPC:
  case EDQUOT:
    return SW_REGISTRY_E_FULL;
  case ENOMEM:
    return SW_REGISTRY_E_NOMEM;
  case EIO:
  case MDB_PANIC:
    return SW_REGISTRY_E_IO;
  case MDB_VERSION_MISMATCH:
  case MDB_INVALID:
    return SW_REGISTRY_E_VERSION;
  case MDB_CORRUPTED:
    return SW_REGISTRY_E_CORRUPT;
  default:
    return rc > 0 ? SW_REGISTRY_E_IO : SW_REGISTRY_E_LMDB;
  }
}

/* Writes a one-line reason to err (when given) and returns code. */
__attribute__((format(printf, 4, 5))) static int fail(char *err, size_t errlen, int code,
                                                      const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (err && errlen)
    vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return code;
}

/* ---------------------------------------------------------------- validation */

static int id_valid(const char *id, size_t cap) {
  const char *end = memchr(id, 0, cap);
  if (!end || end == id || (size_t)(end - id) > SW_PARTICIPANT_ID_MAX)
    return 0;
  for (const char *c = id; c < end; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
      return 0;
  return 1;
}

static int digits_valid(const char *s, size_t cap) {
  const char *end = memchr(s, 0, cap);
  if (!end || end == s || (size_t)(end - s) > SW_MSISDN_MAX)
    return 0;
  for (const char *c = s; c < end; c++)
    if (*c < '0' || *c > '9')
      return 0;
  return 1;
}

static int text_valid(const char *s, size_t cap) {
  const char *end = memchr(s, 0, cap);
  if (!end || end == s)
    return 0;
  for (const unsigned char *c = (const unsigned char *)s; c < (const unsigned char *)end; c++)
    if (*c < 0x20 || *c == 0x7f)
      return 0;
  return 1;
}

void sw_participant_init(sw_participant *p) {
  if (!p)
    return;
  memset(p, 0, sizeof *p);
  p->status = SW_PARTICIPANT_ACTIVE;
  for (size_t i = 0; i < SW_PARTICIPANT_MAX_CURRENCIES; i++)
    p->net_debit_cap[i] = SW_NDC_UNLIMITED;
}

int sw_participant_currency_index(const sw_participant *p, uint16_t numeric) {
  if (!p)
    return -1;
  for (int i = 0; i < p->n_currencies && i < SW_PARTICIPANT_MAX_CURRENCIES; i++)
    if (p->currencies[i] == numeric)
      return i;
  return -1;
}

int sw_participant_validate(const sw_participant *p) {
  if (!p || !id_valid(p->id, sizeof p->id) || !text_valid(p->name, sizeof p->name))
    return SW_REGISTRY_E_INVAL;
  if (p->status != SW_PARTICIPANT_ACTIVE && p->status != SW_PARTICIPANT_SUSPENDED)
    return SW_REGISTRY_E_INVAL;
  if (p->n_currencies < 1 || p->n_currencies > SW_PARTICIPANT_MAX_CURRENCIES)
    return SW_REGISTRY_E_INVAL;
  for (size_t i = 0; i < p->n_currencies; i++) {
    sw_currency c;
    if (sw_currency_by_number(p->currencies[i], &c) || p->net_debit_cap[i] > SW_NDC_UNLIMITED)
      return SW_REGISTRY_E_INVAL;
    for (size_t j = 0; j < i; j++)
      if (p->currencies[j] == p->currencies[i])
        return SW_REGISTRY_E_INVAL;
  }
  if (p->n_prefixes > SW_PARTICIPANT_MAX_PREFIXES)
    return SW_REGISTRY_E_INVAL;
  for (size_t i = 0; i < p->n_prefixes; i++) {
    if (!digits_valid(p->msisdn_prefixes[i], sizeof p->msisdn_prefixes[i]))
      return SW_REGISTRY_E_INVAL;
    for (size_t j = 0; j < i; j++)
      if (strcmp(p->msisdn_prefixes[j], p->msisdn_prefixes[i]) == 0)
        return SW_REGISTRY_E_INVAL;
  }
  return 0;
}

int sw_registry_party_valid(uint32_t type, const char *id) {
  if (type < SW_PARTY_MSISDN || type > SW_PARTY_BUSINESS_ID || !id)
    return SW_REGISTRY_E_INVAL;
  if (type == SW_PARTY_MSISDN)
    return digits_valid(id, SW_MSISDN_MAX + 1) ? 0 : SW_REGISTRY_E_INVAL;
  return text_valid(id, SW_PARTY_ID_MAX + 1) ? 0 : SW_REGISTRY_E_INVAL;
}

/* A copy of a validated participant with every unused byte zeroed, as stored. */
static void normalise(const sw_participant *in, uint32_t number, sw_participant *out) {
  memset(out, 0, sizeof *out);
  memcpy(out->id, in->id, strlen(in->id));
  memcpy(out->name, in->name, strlen(in->name));
  out->number = number;
  out->status = in->status;
  out->n_currencies = in->n_currencies;
  for (size_t i = 0; i < in->n_currencies; i++) {
    out->currencies[i] = in->currencies[i];
    out->net_debit_cap[i] = in->net_debit_cap[i];
  }
  out->n_prefixes = in->n_prefixes;
  for (size_t i = 0; i < in->n_prefixes; i++)
    memcpy(out->msisdn_prefixes[i], in->msisdn_prefixes[i], strlen(in->msisdn_prefixes[i]));
}

/* ---------------------------------------------------------------- transactions */

/* Begins a read: renews the registry's reset read transaction (or creates it). */
static int read_begin(sw_registry *r, MDB_txn **txn) {
  int rc = r->rtxn ? mdb_txn_renew(r->rtxn) : mdb_txn_begin(r->env, NULL, MDB_RDONLY, &r->rtxn);
  if (rc)
    return mdb_err(r, rc);
  *txn = r->rtxn;
  return 0;
}

static void read_end(sw_registry *r) {
  mdb_txn_reset(r->rtxn);
}

/* The work of one write transaction; returns a registry error. May run again after the map
 * grew, so it must not have effects outside the transaction. */
typedef int (*txn_body_cb)(sw_registry *r, MDB_txn *txn, void *arg);

/* Runs body in a write transaction and commits it (full sync). On MDB_MAP_FULL the map
 * doubles, up to map_size_max, and the body runs again. */
static int write_txn(sw_registry *r, txn_body_cb body, void *arg) {
  for (;;) {
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(r->env, NULL, 0, &txn);
    if (rc)
      return mdb_err(r, rc);
    r->map_full = 0;
    rc = body(r, txn, arg);
    if (rc)
      mdb_txn_abort(txn);
    else
      rc = mdb_err(r, mdb_txn_commit(txn)); /* frees txn, also on failure */
    if (!rc || !r->map_full || r->map_size >= r->map_size_max)
      return rc;
    size_t next = r->map_size > r->map_size_max / 2 ? r->map_size_max : r->map_size * 2;
    if (mdb_env_set_mapsize(r->env, next))
      return rc;
    r->map_size = next;
  }
}

static int get_number(sw_registry *r, MDB_txn *txn, MDB_dbi dbi, MDB_val *key, uint32_t *out) {
  MDB_val v;
  int rc = mdb_get(txn, dbi, key, &v);
  if (rc)
    return mdb_err(r, rc);
  if (v.mv_size != sizeof *out)
    return SW_REGISTRY_E_CORRUPT;
  memcpy(out, v.mv_data, sizeof *out);
  return 0;
}

static int get_by_number(sw_registry *r, MDB_txn *txn, uint32_t number, sw_participant *out) {
  MDB_val k = {sizeof number, &number}, v;
  int rc = mdb_get(txn, r->db_participants, &k, &v);
  if (rc)
    return mdb_err(r, rc);
  if (v.mv_size != sizeof *out)
    return SW_REGISTRY_E_CORRUPT;
  memcpy(out, v.mv_data, sizeof *out);
  return 0;
}

static int number_of_id(sw_registry *r, MDB_txn *txn, const char *id, uint32_t *number) {
  MDB_val k = {strlen(id), (void *)id};
  return get_number(r, txn, r->db_ids, &k, number);
}

/* ---------------------------------------------------------------- prefix table */

static int prefix_cmp(const void *a, const void *b) {
  return strcmp(((const prefix_entry *)a)->digits, ((const prefix_entry *)b)->digits);
}

static const prefix_entry *prefix_find(const sw_registry *r, const char *digits) {
  prefix_entry key;
  memset(&key, 0, sizeof key);
  memcpy(key.digits, digits, strlen(digits));
  return r->n_prefixes ? bsearch(&key, r->prefixes, r->n_prefixes, sizeof key, prefix_cmp) : NULL;
}

/* The table of the stored participants, read from LMDB (used at open). */
static int prefixes_load(sw_registry *r) {
  MDB_txn *txn = NULL;
  int rc = read_begin(r, &txn);
  if (rc)
    return rc;
  MDB_cursor *cur = NULL;
  prefix_entry *table = NULL;
  size_t n = 0, cap = 0;
  MDB_val k, v;
  rc = mdb_err(r, mdb_cursor_open(txn, r->db_participants, &cur));
  int op = MDB_FIRST;
  while (!rc) {
    int mrc = mdb_cursor_get(cur, &k, &v, op);
    op = MDB_NEXT;
    if (mrc == MDB_NOTFOUND)
      break;
    rc = mdb_err(r, mrc);
    if (!rc && v.mv_size != sizeof(sw_participant))
      rc = SW_REGISTRY_E_CORRUPT;
    if (rc)
      break;
    sw_participant p;
    memcpy(&p, v.mv_data, sizeof p);
    for (size_t i = 0; i < p.n_prefixes && i < SW_PARTICIPANT_MAX_PREFIXES && !rc; i++) {
      if (n == cap) {
        size_t ncap = cap ? cap * 2 : 64;
        prefix_entry *grown = realloc(table, ncap * sizeof *table);
        if (!grown) {
          rc = SW_REGISTRY_E_NOMEM;
          break;
        }
        table = grown;
        cap = ncap;
      }
      memcpy(&table[n].digits, p.msisdn_prefixes[i], sizeof table[n].digits);
      table[n].digits[sizeof table[n].digits - 1] = 0;
      table[n].number = p.number;
      n++;
    }
  }
  if (cur)
    mdb_cursor_close(cur);
  read_end(r);
  if (rc) {
    free(table);
    return rc;
  }
  if (n)
    qsort(table, n, sizeof *table, prefix_cmp);
  free(r->prefixes);
  r->prefixes = table;
  r->n_prefixes = n;
  return 0;
}

/* The table with participant `number`'s prefixes replaced by p's, sorted, in a new array that
 * the caller owns (NULL with *n = 0 when empty). */
static int prefixes_with(const sw_registry *r, const sw_participant *p, uint32_t number,
                         prefix_entry **out, size_t *n_out) {
  size_t n = 0, cap = r->n_prefixes + p->n_prefixes;
  prefix_entry *table = NULL;
  *out = NULL;
  *n_out = 0;
  if (cap == 0)
    return 0;
  table = malloc(cap * sizeof *table);
  if (!table)
    return SW_REGISTRY_E_NOMEM;
  for (size_t i = 0; i < r->n_prefixes; i++)
    if (r->prefixes[i].number != number)
      table[n++] = r->prefixes[i];
  for (size_t i = 0; i < p->n_prefixes; i++) {
    memset(&table[n], 0, sizeof table[n]);
    memcpy(table[n].digits, p->msisdn_prefixes[i], strlen(p->msisdn_prefixes[i]));
    table[n].number = number;
    n++;
  }
  qsort(table, n, sizeof *table, prefix_cmp);
  *out = table;
  *n_out = n;
  return 0;
}

/* ---------------------------------------------------------------- the secret */

static int mkdir_p(const char *dir) {
  char path[PATH_MAX];
  size_t len = strlen(dir);
  if (len == 0 || len >= sizeof path)
    return ENAMETOOLONG;
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

/* Syncs the directory holding `path`, so that a newly created file's entry is durable. */
static int sync_parent(const char *path) {
  char dir[PATH_MAX];
  const char *slash = strrchr(path, '/');
  if (!slash) {
    dir[0] = '.';
    dir[1] = 0;
  } else {
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    if (len >= sizeof dir)
      return ENAMETOOLONG;
    memcpy(dir, path, len);
    dir[len] = 0;
  }
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return errno;
  int rc = fsync(fd) ? errno : 0;
  close(fd);
  return rc;
}

/* Creates the secret file with 32 random bytes, mode 0600, synced, into key. */
static int secret_create(const char *path, unsigned char key[SECRET_SIZE], char *err,
                         size_t errlen) {
  if (RAND_bytes(key, SECRET_SIZE) != 1)
    return fail(err, errlen, SW_REGISTRY_E_CRYPTO, "%s: RAND_bytes failed", path);
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    return fail(err, errlen, SW_REGISTRY_E_SECRET, "%s: cannot create: %s", path, strerror(errno));
  int e = 0;
  size_t done = 0;
  while (done < SECRET_SIZE && !e) {
    ssize_t w = write(fd, key + done, SECRET_SIZE - done);
    if (w < 0 && errno != EINTR)
      e = errno;
    else if (w > 0)
      done += (size_t)w;
  }
  if (!e && fsync(fd))
    e = errno;
  if (close(fd) && !e)
    e = errno;
  if (!e)
    e = sync_parent(path);
  if (e) {
    unlink(path);
    return fail(err, errlen, SW_REGISTRY_E_SECRET, "%s: cannot write: %s", path, strerror(e));
  }
  return 0;
}

/* Reads the secret file into key; ENOENT is reported as SW_REGISTRY_E_NOTFOUND. */
static int secret_read(const char *path, unsigned char key[SECRET_SIZE], char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT)
    return SW_REGISTRY_E_NOTFOUND;
  if (fd < 0)
    return fail(err, errlen, SW_REGISTRY_E_SECRET, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  int rc = 0;
  if (fstat(fd, &st))
    rc = fail(err, errlen, SW_REGISTRY_E_SECRET, "%s: cannot stat: %s", path, strerror(errno));
  else if (!S_ISREG(st.st_mode))
    rc = fail(err, errlen, SW_REGISTRY_E_SECRET, "%s: not a regular file", path);
  else if (st.st_mode & 077)
    rc = fail(err, errlen, SW_REGISTRY_E_SECRET,
              "%s: readable or writable by group or others (mode %03o); chmod 600 it", path,
              (unsigned)(st.st_mode & 0777));
  else if (st.st_size != SECRET_SIZE)
    rc = fail(err, errlen, SW_REGISTRY_E_SECRET, "%s: holds %lld bytes, not %d", path,
              (long long)st.st_size, SECRET_SIZE);
  size_t done = 0;
  while (!rc && done < SECRET_SIZE) {
    ssize_t n = read(fd, key + done, SECRET_SIZE - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      rc = fail(err, errlen, SW_REGISTRY_E_SECRET, "%s: cannot read: %s", path,
                n < 0 ? strerror(errno) : "short file");
    else
      done += (size_t)n;
  }
  close(fd);
  return rc;
}

static int mac_start(sw_registry *r, const unsigned char key[SECRET_SIZE]) {
  EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  if (!mac)
    return SW_REGISTRY_E_CRYPTO;
  r->mac = EVP_MAC_CTX_new(mac);
  EVP_MAC_free(mac); /* the context keeps its own reference */
  if (!r->mac)
    return SW_REGISTRY_E_CRYPTO;
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  return EVP_MAC_init(r->mac, key, SECRET_SIZE, params) ? 0 : SW_REGISTRY_E_CRYPTO;
}

/* HMAC-SHA-256(secret, head ‖ body) into out, re-using the keyed context. */
static int mac_compute(sw_registry *r, const unsigned char *head, size_t head_len, const void *body,
                       size_t body_len, unsigned char out[TOKEN_SIZE]) {
  size_t len = 0;
  if (!EVP_MAC_init(r->mac, NULL, 0, NULL) || !EVP_MAC_update(r->mac, head, head_len) ||
      !EVP_MAC_update(r->mac, body, body_len) || !EVP_MAC_final(r->mac, out, &len, TOKEN_SIZE) ||
      len != TOKEN_SIZE)
    return SW_REGISTRY_E_CRYPTO;
  return 0;
}

/* The directory key of a party: HMAC(secret, type BE32 ‖ 0x00 ‖ id). */
static int party_token(sw_registry *r, uint32_t type, const char *id,
                       unsigned char out[TOKEN_SIZE]) {
  const unsigned char head[5] = {(unsigned char)(type >> 24), (unsigned char)(type >> 16),
                                 (unsigned char)(type >> 8), (unsigned char)type, 0};
  return mac_compute(r, head, sizeof head, id, strlen(id), out);
}

int sw_registry_token(sw_registry *r, const char *label, uint32_t type, const char *id,
                      unsigned char out[TOKEN_SIZE]) {
  size_t n = label ? strlen(label) : 0;
  if (!r || !label || !id || n > 32)
    return SW_REGISTRY_E_INVAL;
  unsigned char head[32 + 6];
  memcpy(head, label, n);
  head[n] = 0;
  head[n + 1] = (unsigned char)(type >> 24);
  head[n + 2] = (unsigned char)(type >> 16);
  head[n + 3] = (unsigned char)(type >> 8);
  head[n + 4] = (unsigned char)type;
  head[n + 5] = 0;
  return mac_compute(r, head, n + 6, id, strlen(id), out);
}

/* ---------------------------------------------------------------- open and close */

/* Opens the databases and loads, creates or checks the format, the secret and its check value,
 * all in one write transaction. */
static int open_state(sw_registry *r, const char *secret_path, char *err, size_t errlen) {
  MDB_txn *txn = NULL;
  unsigned char key[SECRET_SIZE];
  int rc = mdb_err(r, mdb_txn_begin(r->env, NULL, 0, &txn));
  if (rc)
    return fail(err, errlen, rc, "registry: cannot begin a transaction");
  struct {
    const char *name;
    MDB_dbi *dbi;
    unsigned flags;
  } dbs[] = {
      {"meta", &r->db_meta, 0},
      {"participants", &r->db_participants, MDB_INTEGERKEY},
      {"participant_ids", &r->db_ids, 0},
      {"parties", &r->db_parties, 0},
  };
  for (size_t i = 0; i < sizeof dbs / sizeof dbs[0] && !rc; i++)
    rc = mdb_err(r, mdb_dbi_open(txn, dbs[i].name, dbs[i].flags | MDB_CREATE, dbs[i].dbi));
  if (rc) {
    fail(err, errlen, rc, "registry: cannot open its databases");
    goto err;
  }

  MDB_val k = KEY_FORMAT, v;
  int mrc = mdb_get(txn, r->db_meta, &k, &v);
  if (mrc == MDB_NOTFOUND) {
    uint32_t version = FORMAT_VERSION;
    MDB_val nv = {sizeof version, &version};
    rc = mdb_err(r, mdb_put(txn, r->db_meta, &k, &nv, 0));
  } else if (mrc == 0) {
    uint32_t version = 0;
    if (v.mv_size == sizeof version)
      memcpy(&version, v.mv_data, sizeof version);
    if (version != FORMAT_VERSION)
      rc = SW_REGISTRY_E_VERSION;
  } else {
    rc = mdb_err(r, mrc);
  }
  if (rc) {
    fail(err, errlen, rc, "registry: format check failed: %s", sw_registry_strerror(rc));
    goto err;
  }

  unsigned char stored_check[TOKEN_SIZE];
  k = KEY_SECRET_CHECK;
  mrc = mdb_get(txn, r->db_meta, &k, &v);
  int has_check = mrc == 0;
  if (mrc && mrc != MDB_NOTFOUND) {
    rc = fail(err, errlen, mdb_err(r, mrc), "registry: cannot read the secret check");
    goto err;
  }
  if (has_check) {
    if (v.mv_size != TOKEN_SIZE) {
      rc = fail(err, errlen, SW_REGISTRY_E_CORRUPT, "registry: secret check corrupt");
      goto err;
    }
    memcpy(stored_check, v.mv_data, TOKEN_SIZE);
  }

  rc = secret_read(secret_path, key, err, errlen);
  if (rc == SW_REGISTRY_E_NOTFOUND && has_check)
    rc = fail(err, errlen, SW_REGISTRY_E_SECRET,
              "%s: missing, but this registry was made with a directory secret: restore the "
              "file (a new secret would orphan every party directory entry)",
              secret_path);
  else if (rc == SW_REGISTRY_E_NOTFOUND)
    rc = secret_create(secret_path, key, err, errlen);
  if (!rc && (rc = mac_start(r, key)) != 0)
    fail(err, errlen, rc, "registry: cannot set up HMAC-SHA-256");
  OPENSSL_cleanse(key, sizeof key);
  if (rc)
    goto err;

  unsigned char check[TOKEN_SIZE];
  static const unsigned char label[] = SECRET_CHECK_LABEL;
  rc = mac_compute(r, label, sizeof label - 1, "", 0, check);
  if (rc) {
    fail(err, errlen, rc, "registry: HMAC failed");
    goto err;
  }
  if (has_check && CRYPTO_memcmp(check, stored_check, TOKEN_SIZE) != 0) {
    rc = fail(err, errlen, SW_REGISTRY_E_SECRET,
              "%s: not the directory secret this registry was created with", secret_path);
    goto err;
  }
  if (!has_check) {
    MDB_val cv = {TOKEN_SIZE, check};
    rc = mdb_err(r, mdb_put(txn, r->db_meta, &k, &cv, 0));
    if (rc) {
      fail(err, errlen, rc, "registry: cannot store the secret check: %s",
           sw_registry_strerror(rc));
      goto err;
    }
  }
  rc = mdb_err(r, mdb_txn_commit(txn));
  if (rc)
    return fail(err, errlen, rc, "registry: commit failed: %s", sw_registry_strerror(rc));
  return 0;

err:
  mdb_txn_abort(txn);
  return rc;
}

/* "a/b" from a and b, malloc'ed. */
static char *path_join(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  char *s = malloc(la + lb + 2);
  if (!s)
    return NULL;
  memcpy(s, a, la);
  s[la] = '/';
  memcpy(s + la + 1, b, lb + 1);
  return s;
}

int sw_registry_open(const char *data_dir, const sw_registry_options *opts, sw_registry **out,
                     char *err, size_t errlen) {
  if (err && errlen)
    err[0] = 0;
  if (!out)
    return fail(err, errlen, SW_REGISTRY_E_INVAL, "registry: no output handle");
  *out = NULL;
  if (!data_dir || !*data_dir)
    return fail(err, errlen, SW_REGISTRY_E_INVAL, "registry: empty data directory");

  int rc = 0;
  char *env_dir = path_join(data_dir, "registry");
  char *default_secret = path_join(data_dir, "directory.key");
  sw_registry *r = calloc(1, sizeof *r);
  if (!env_dir || !default_secret || !r) {
    rc = fail(err, errlen, SW_REGISTRY_E_NOMEM, "registry: out of memory");
    goto err;
  }
  const char *secret_path = opts && opts->secret_file ? opts->secret_file : default_secret;
  if (!*secret_path) {
    rc = fail(err, errlen, SW_REGISTRY_E_INVAL, "registry: empty secret file path");
    goto err;
  }
  r->map_size = opts && opts->map_size ? opts->map_size : DEFAULT_MAP_SIZE;
  r->map_size_max = opts && opts->map_size_max ? opts->map_size_max : DEFAULT_MAP_SIZE_MAX;
  if (r->map_size_max < r->map_size)
    r->map_size_max = r->map_size;

  int e = mkdir_p(env_dir);
  if (e) {
    rc = fail(err, errlen, SW_REGISTRY_E_IO, "%s: cannot create: %s", env_dir, strerror(e));
    goto err;
  }
  int mrc = mdb_env_create(&r->env);
  if (!mrc)
    mrc = mdb_env_set_maxdbs(r->env, 8);
  if (!mrc)
    mrc = mdb_env_set_mapsize(r->env, r->map_size);
  if (!mrc)
    mrc = mdb_env_open(r->env, env_dir, MDB_NOTLS | MDB_NORDAHEAD, 0640);
  if (mrc) {
    rc = fail(err, errlen, mdb_err(r, mrc), "%s: cannot open: %s", env_dir, mdb_strerror(mrc));
    goto err;
  }
  MDB_envinfo info;
  mrc = mdb_env_info(r->env, &info);
  if (mrc) {
    rc = fail(err, errlen, mdb_err(r, mrc), "%s: %s", env_dir, mdb_strerror(mrc));
    goto err;
  }
  r->map_size = info.me_mapsize; /* an existing larger file keeps its size */
  if (r->map_size_max < r->map_size)
    r->map_size_max = r->map_size;

  rc = open_state(r, secret_path, err, errlen);
  if (rc)
    goto err;
  rc = prefixes_load(r);
  if (rc) {
    fail(err, errlen, rc, "registry: cannot load the MSISDN prefixes: %s",
         sw_registry_strerror(rc));
    goto err;
  }
  free(env_dir);
  free(default_secret);
  *out = r;
  return 0;

err:
  sw_registry_close(r);
  free(env_dir);
  free(default_secret);
  return rc;
}

void sw_registry_close(sw_registry *r) {
  if (!r)
    return;
  if (r->rtxn)
    mdb_txn_abort(r->rtxn);
  if (r->env)
    mdb_env_close(r->env);
  EVP_MAC_CTX_free(r->mac); /* the OpenSSL HMAC context cleanses its key */
  free(r->prefixes);
  free(r);
}

/* ---------------------------------------------------------------- participants */

typedef struct put_participant_arg {
  const sw_participant *record; /* normalised, with its number */
  int is_new;
} put_participant_arg;

static int put_participant_body(sw_registry *r, MDB_txn *txn, void *arg) {
  const put_participant_arg *a = arg;
  uint32_t number = a->record->number;
  MDB_val k = {sizeof number, &number}, v = {sizeof *a->record, (void *)a->record};
  int rc = mdb_err(r, mdb_put(txn, r->db_participants, &k, &v, 0));
  if (rc || !a->is_new)
    return rc;
  MDB_val ik = {strlen(a->record->id), (void *)a->record->id}, iv = {sizeof number, &number};
  rc = mdb_err(r, mdb_put(txn, r->db_ids, &ik, &iv, MDB_NOOVERWRITE));
  if (rc)
    return rc;
  uint32_t next = number + 1;
  MDB_val nk = KEY_NEXT_NUMBER, nv = {sizeof next, &next};
  return mdb_err(r, mdb_put(txn, r->db_meta, &nk, &nv, 0));
}

/* The number participant `id` has, or the one it would get (is_new set). */
static int number_for(sw_registry *r, const char *id, uint32_t *number, int *is_new) {
  MDB_txn *txn = NULL;
  int rc = read_begin(r, &txn);
  if (rc)
    return rc;
  rc = number_of_id(r, txn, id, number);
  *is_new = rc == SW_REGISTRY_E_NOTFOUND;
  if (*is_new) {
    MDB_val k = KEY_NEXT_NUMBER;
    rc = get_number(r, txn, r->db_meta, &k, number);
    if (rc == SW_REGISTRY_E_NOTFOUND) {
      *number = 1;
      rc = 0;
    }
    if (!rc && *number == 0) /* all 2^32 - 1 numbers used */
      rc = SW_REGISTRY_E_FULL;
  }
  read_end(r);
  return rc;
}

int sw_registry_put_participant(sw_registry *r, const sw_participant *p, uint32_t *number) {
  if (!r || sw_participant_validate(p))
    return SW_REGISTRY_E_INVAL;
  sw_participant record;
  uint32_t n = 0;
  int is_new = 0;
  int rc = number_for(r, p->id, &n, &is_new);
  if (rc)
    return rc;
  for (size_t i = 0; i < p->n_prefixes; i++) {
    const prefix_entry *e = prefix_find(r, p->msisdn_prefixes[i]);
    if (e && e->number != n)
      return SW_REGISTRY_E_CONFLICT;
  }
  prefix_entry *table;
  size_t n_table;
  rc = prefixes_with(r, p, n, &table, &n_table);
  if (rc)
    return rc;
  normalise(p, n, &record);
  put_participant_arg arg = {&record, is_new};
  rc = write_txn(r, put_participant_body, &arg);
  if (rc) {
    free(table);
    return rc;
  }
  free(r->prefixes);
  r->prefixes = table;
  r->n_prefixes = n_table;
  if (number)
    *number = n;
  return 0;
}

int sw_registry_get_participant(sw_registry *r, const char *id, sw_participant *out) {
  if (!r || !id || !out || !id_valid(id, SW_PARTICIPANT_ID_MAX + 1))
    return SW_REGISTRY_E_INVAL;
  MDB_txn *txn = NULL;
  int rc = read_begin(r, &txn);
  if (rc)
    return rc;
  uint32_t number = 0;
  rc = number_of_id(r, txn, id, &number);
  if (!rc)
    rc = get_by_number(r, txn, number, out);
  read_end(r);
  return rc;
}

int sw_registry_get_participant_by_number(sw_registry *r, uint32_t number, sw_participant *out) {
  if (!r || !out || number == 0)
    return SW_REGISTRY_E_INVAL;
  MDB_txn *txn = NULL;
  int rc = read_begin(r, &txn);
  if (rc)
    return rc;
  rc = get_by_number(r, txn, number, out);
  read_end(r);
  return rc;
}

int sw_registry_list_participants(sw_registry *r, sw_registry_participant_cb cb, void *arg) {
  if (!r || !cb)
    return SW_REGISTRY_E_INVAL;
  MDB_txn *txn = NULL;
  int rc = read_begin(r, &txn);
  if (rc)
    return rc;
  sw_participant *all = NULL;
  size_t n = 0;
  MDB_cursor *cur = NULL;
  MDB_stat st;
  rc = mdb_err(r, mdb_stat(txn, r->db_participants, &st));
  if (!rc && st.ms_entries) {
    all = malloc(st.ms_entries * sizeof *all);
    if (!all)
      rc = SW_REGISTRY_E_NOMEM;
  }
  if (!rc)
    rc = mdb_err(r, mdb_cursor_open(txn, r->db_participants, &cur));
  MDB_val k, v;
  int op = MDB_FIRST;
  while (!rc && n < st.ms_entries) {
    int mrc = mdb_cursor_get(cur, &k, &v, op);
    op = MDB_NEXT;
    if (mrc == MDB_NOTFOUND)
      break;
    rc = mdb_err(r, mrc);
    if (!rc && v.mv_size != sizeof *all)
      rc = SW_REGISTRY_E_CORRUPT;
    if (!rc)
      memcpy(&all[n++], v.mv_data, sizeof *all);
  }
  if (cur)
    mdb_cursor_close(cur);
  read_end(r);
  for (size_t i = 0; i < n && !rc; i++)
    rc = cb(&all[i], arg);
  free(all);
  return rc;
}

/* ---------------------------------------------------------------- party directory */

typedef struct put_parties_arg {
  const sw_party *parties;
  size_t n;
  const char *participant_id;
} put_parties_arg;

static int put_parties_body(sw_registry *r, MDB_txn *txn, void *arg) {
  const put_parties_arg *a = arg;
  uint32_t number = 0;
  int rc = number_of_id(r, txn, a->participant_id, &number);
  for (size_t i = 0; i < a->n && !rc; i++) {
    unsigned char token[TOKEN_SIZE];
    rc = party_token(r, a->parties[i].type, a->parties[i].id, token);
    MDB_val k = {sizeof token, token}, v = {sizeof number, &number};
    if (!rc)
      rc = mdb_err(r, mdb_put(txn, r->db_parties, &k, &v, 0));
  }
  return rc;
}

int sw_registry_put_parties(sw_registry *r, const sw_party *parties, size_t n,
                            const char *participant_id) {
  if (!r || !parties || n == 0 || !participant_id ||
      !id_valid(participant_id, SW_PARTICIPANT_ID_MAX + 1))
    return SW_REGISTRY_E_INVAL;
  for (size_t i = 0; i < n; i++)
    if (sw_registry_party_valid(parties[i].type, parties[i].id))
      return SW_REGISTRY_E_INVAL;
  put_parties_arg arg = {parties, n, participant_id};
  return write_txn(r, put_parties_body, &arg);
}

int sw_registry_put_party(sw_registry *r, uint32_t type, const char *id,
                          const char *participant_id) {
  sw_party party = {type, id};
  return sw_registry_put_parties(r, &party, 1, participant_id);
}

static int remove_party_body(sw_registry *r, MDB_txn *txn, void *arg) {
  MDB_val k = {TOKEN_SIZE, arg};
  return mdb_err(r, mdb_del(txn, r->db_parties, &k, NULL));
}

int sw_registry_remove_party(sw_registry *r, uint32_t type, const char *id) {
  if (!r || sw_registry_party_valid(type, id))
    return SW_REGISTRY_E_INVAL;
  unsigned char token[TOKEN_SIZE];
  int rc = party_token(r, type, id, token);
  return rc ? rc : write_txn(r, remove_party_body, token);
}

/* The owner of the longest prefix of msisdn in the table, or 0. */
static uint32_t route_by_prefix(const sw_registry *r, const char *msisdn) {
  char head[SW_MSISDN_MAX + 1];
  size_t len = strlen(msisdn);
  for (size_t l = len < SW_MSISDN_MAX ? len : SW_MSISDN_MAX; l > 0; l--) {
    memcpy(head, msisdn, l);
    head[l] = 0;
    const prefix_entry *e = prefix_find(r, head);
    if (e)
      return e->number;
  }
  return 0;
}

int sw_registry_lookup_party(sw_registry *r, uint32_t type, const char *id, sw_participant *out,
                             sw_party_match *match) {
  if (!r || !out || sw_registry_party_valid(type, id))
    return SW_REGISTRY_E_INVAL;
  unsigned char token[TOKEN_SIZE];
  int rc = party_token(r, type, id, token);
  if (rc)
    return rc;
  MDB_txn *txn = NULL;
  rc = read_begin(r, &txn);
  if (rc)
    return rc;
  uint32_t number = 0;
  sw_party_match how = SW_PARTY_MATCH_EXACT;
  MDB_val k = {sizeof token, token};
  rc = get_number(r, txn, r->db_parties, &k, &number);
  if (rc == SW_REGISTRY_E_NOTFOUND && type == SW_PARTY_MSISDN) {
    number = route_by_prefix(r, id);
    how = SW_PARTY_MATCH_PREFIX;
    rc = number ? 0 : SW_REGISTRY_E_NOTFOUND;
  }
  if (!rc)
    rc = get_by_number(r, txn, number, out);
  read_end(r);
  if (!rc && match)
    *match = how;
  return rc;
}

/* ---------------------------------------------------------------- logging */

void sw_mask(const char *in, char *out, size_t outlen) {
  if (!out || outlen == 0)
    return;
  size_t n = in ? strlen(in) : 0, i;
  for (i = 0; i < n && i + 1 < outlen; i++)
    out[i] = n >= MASK_MIN_LEN && (i < 3 || i >= n - 2) ? in[i] : '*';
  out[i] = 0;
}
