/* test_registry.c — switch/registry.h: participants keep their numbers across updates and
 * reopening, the party directory stores only HMAC tokens (the LMDB file is searched for the
 * plain identifiers), MSISDN prefixes route by longest match, the directory secret is created
 * once with mode 0600 and then required, and the log mask. Each test has its own data dir. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <lmdb.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "currency.h"
#include "registry.h"

static char *dir; /* this test's data directory */
static char errbuf[512];
static sw_registry *reg;

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(p);
}

static void setup(void) {
  const char *tmp = getenv("TMPDIR");
  char tmpl[4096];
  snprintf(tmpl, sizeof tmpl, "%s/tuma-registry-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  cr_assert_not_null(mkdtemp(tmpl));
  dir = strdup(tmpl);
  cr_assert_not_null(dir);
  reg = NULL;
}

static void teardown(void) {
  sw_registry_close(reg);
  nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  free(dir);
}

TestSuite(registry, .init = setup, .fini = teardown);

static void reg_open(void) {
  errbuf[0] = 0;
  int rc = sw_registry_open(dir, NULL, &reg, errbuf, sizeof errbuf);
  cr_assert_eq(rc, 0, "open: %s: %s", sw_registry_strerror(rc), errbuf);
}

static void reg_reopen(void) {
  sw_registry_close(reg);
  reg = NULL;
  reg_open();
}

static char *in_dir(const char *name) {
  static char p[4200];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return p;
}

static uint16_t cur(const char *alpha) {
  sw_currency c;
  cr_assert_eq(sw_currency_by_code(alpha, &c), 0);
  return c.numeric;
}

/* A participant with one currency and the given prefixes (comma-free list, NULL-terminated). */
static sw_participant make(const char *id, const char *name, const char *currency, ...) {
  sw_participant p;
  sw_participant_init(&p);
  snprintf(p.id, sizeof p.id, "%s", id);
  snprintf(p.name, sizeof p.name, "%s", name);
  p.n_currencies = 1;
  p.currencies[0] = cur(currency);
  va_list ap;
  va_start(ap, currency);
  for (const char *pre = va_arg(ap, const char *); pre; pre = va_arg(ap, const char *))
    snprintf(p.msisdn_prefixes[p.n_prefixes++], sizeof p.msisdn_prefixes[0], "%s", pre);
  va_end(ap);
  return p;
}

static uint32_t put(const sw_participant *p) {
  uint32_t number = 0;
  int rc = sw_registry_put_participant(reg, p, &number);
  cr_assert_eq(rc, 0, "put %s: %s", p->id, sw_registry_strerror(rc));
  return number;
}

/* Asserts that (type, id) resolves to participant `owner` with the given kind of match. */
static void expect_route(uint32_t type, const char *id, const char *owner, sw_party_match how) {
  sw_participant out;
  sw_party_match match = 0;
  int rc = sw_registry_lookup_party(reg, type, id, &out, &match);
  cr_assert_eq(rc, 0, "lookup %s: %s", id, sw_registry_strerror(rc));
  cr_assert_str_eq(out.id, owner, "lookup %s", id);
  cr_assert_eq(match, how, "lookup %s", id);
}

static void expect_no_route(uint32_t type, const char *id) {
  sw_participant out;
  cr_assert_eq(sw_registry_lookup_party(reg, type, id, &out, NULL), SW_REGISTRY_E_NOTFOUND,
               "lookup %s", id);
}

/* Reads a whole file into a malloc'ed buffer. */
static unsigned char *slurp(const char *p, size_t *len) {
  FILE *f = fopen(p, "rb");
  cr_assert_not_null(f, "%s: %s", p, strerror(errno));
  cr_assert_eq(fseek(f, 0, SEEK_END), 0);
  long n = ftell(f);
  cr_assert_geq(n, 0);
  rewind(f);
  unsigned char *buf = malloc((size_t)n + 1);
  cr_assert_not_null(buf);
  cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return buf;
}

/* ---- participants ----------------------------------------------------------------------- */

typedef struct listing {
  char ids[8][64];
  uint32_t numbers[8];
  int n;
  int stop_after;
} listing;

static int list_cb(const sw_participant *p, void *arg) {
  listing *l = arg;
  cr_assert_lt(l->n, 8);
  memcpy(l->ids[l->n], p->id, sizeof l->ids[0]);
  l->numbers[l->n] = p->number;
  l->n++;
  return l->stop_after && l->n == l->stop_after ? 42 : 0;
}

Test(registry, participants_put_get_list_update_keep_numbers) {
  reg_open();
  sw_participant a = make("mpesa-ke", "M-Pesa", "KES", "2547", NULL);
  a.n_currencies = 2;
  a.currencies[1] = cur("USD");
  a.net_debit_cap[0] = 5000;
  sw_participant b = make("airtel-ug", "Airtel", "UGX", NULL);
  b.status = SW_PARTICIPANT_SUSPENDED;
  a.number = 77; /* ignored */
  cr_assert_eq(put(&a), 1);
  cr_assert_eq(put(&b), 2);

  sw_participant got;
  cr_assert_eq(sw_registry_get_participant(reg, "mpesa-ke", &got), 0);
  cr_assert_eq(got.number, 1);
  cr_assert_str_eq(got.name, "M-Pesa");
  cr_assert_eq(got.status, SW_PARTICIPANT_ACTIVE);
  cr_assert_eq(got.n_currencies, 2);
  cr_assert_eq(got.currencies[0], 404);
  cr_assert_eq(got.currencies[1], 840);
  cr_assert_eq(got.net_debit_cap[0], 5000);
  cr_assert_eq(got.net_debit_cap[1], SW_NDC_UNLIMITED);
  cr_assert_eq(got.n_prefixes, 1);
  cr_assert_str_eq(got.msisdn_prefixes[0], "2547");
  cr_assert_eq(sw_registry_get_participant_by_number(reg, 2, &got), 0);
  cr_assert_str_eq(got.id, "airtel-ug");
  cr_assert_eq(got.status, SW_PARTICIPANT_SUSPENDED);
  cr_assert_eq(sw_registry_get_participant(reg, "nobody", &got), SW_REGISTRY_E_NOTFOUND);
  cr_assert_eq(sw_registry_get_participant_by_number(reg, 3, &got), SW_REGISTRY_E_NOTFOUND);
  cr_assert_eq(sw_registry_get_participant_by_number(reg, 0, &got), SW_REGISTRY_E_INVAL);

  /* update: same number, new fields */
  a.status = SW_PARTICIPANT_SUSPENDED;
  snprintf(a.name, sizeof a.name, "M-Pesa Kenya");
  a.n_currencies = 1;
  cr_assert_eq(put(&a), 1);
  cr_assert_eq(sw_registry_get_participant(reg, "mpesa-ke", &got), 0);
  cr_assert_eq(got.number, 1);
  cr_assert_str_eq(got.name, "M-Pesa Kenya");
  cr_assert_eq(got.status, SW_PARTICIPANT_SUSPENDED);
  cr_assert_eq(got.n_currencies, 1);
  cr_assert_eq(got.currencies[1], 0, "unused entries are stored zeroed");

  sw_participant c = make("mtn-gh", "MTN", "GHS", NULL);
  cr_assert_eq(put(&c), 3);
  listing l = {0};
  cr_assert_eq(sw_registry_list_participants(reg, list_cb, &l), 0);
  cr_assert_eq(l.n, 3);
  cr_assert_str_eq(l.ids[0], "mpesa-ke");
  cr_assert_str_eq(l.ids[1], "airtel-ug");
  cr_assert_str_eq(l.ids[2], "mtn-gh");
  cr_assert_eq(l.numbers[2], 3);
  listing stop = {.stop_after = 2};
  cr_assert_eq(sw_registry_list_participants(reg, list_cb, &stop), 42);
  cr_assert_eq(stop.n, 2);
  cr_assert_eq(sw_registry_put_participant(reg, &c, NULL), 0, "number may be NULL");
}

Test(registry, participant_validation) {
  reg_open();
  sw_participant p = make("ok", "OK", "KES", NULL);
  cr_assert_eq(sw_participant_validate(&p), 0);
  sw_participant q;
#define BAD(stmt)                                                                                  \
  do {                                                                                             \
    q = p;                                                                                         \
    stmt;                                                                                          \
    cr_assert_eq(sw_registry_put_participant(reg, &q, NULL), SW_REGISTRY_E_INVAL, #stmt);          \
  } while (0)
  BAD(q.id[0] = 0);
  BAD(snprintf(q.id, sizeof q.id, "Upper"));
  BAD(snprintf(q.id, sizeof q.id, "under_score"));
  BAD(memset(q.id, 'a', sizeof q.id));
  BAD(q.name[0] = 0);
  BAD(snprintf(q.name, sizeof q.name, "tab\there"));
  BAD(memset(q.name, 'n', sizeof q.name));
  BAD(q.status = 0);
  BAD(q.status = 3);
  BAD(q.n_currencies = 0);
  BAD(q.n_currencies = 9);
  BAD(q.currencies[0] = 999);
  BAD((q.n_currencies = 2, q.currencies[1] = q.currencies[0]));
  BAD(q.net_debit_cap[0] = SW_NDC_UNLIMITED + 1);
  BAD((q.n_prefixes = 1, snprintf(q.msisdn_prefixes[0], 16, "25a")));
  BAD((q.n_prefixes = 1, q.msisdn_prefixes[0][0] = 0));
  BAD((q.n_prefixes = 1, memset(q.msisdn_prefixes[0], '1', 16)));
  BAD((q.n_prefixes = 2, snprintf(q.msisdn_prefixes[0], 16, "1"),
       snprintf(q.msisdn_prefixes[1], 16, "1")));
  BAD(q.n_prefixes = 17);
#undef BAD
  cr_assert_eq(sw_registry_put_participant(reg, NULL, NULL), SW_REGISTRY_E_INVAL);
  listing l = {0};
  cr_assert_eq(sw_registry_list_participants(reg, list_cb, &l), 0);
  cr_assert_eq(l.n, 0, "nothing was stored");
  cr_assert_eq(put(&p), 1, "failed puts consume no number");
}

Test(registry, reopen_keeps_everything) {
  reg_open();
  sw_participant a = make("a", "A", "KES", "2547", NULL);
  sw_participant b = make("b", "B", "UGX", "256", NULL);
  put(&a);
  put(&b);
  cr_assert_eq(sw_registry_put_party(reg, SW_PARTY_MSISDN, "255700000001", "b"), 0);
  cr_assert_eq(sw_registry_put_party(reg, SW_PARTY_NATIONAL_ID, "KE-12345678", "a"), 0);
  reg_reopen();
  sw_participant got;
  cr_assert_eq(sw_registry_get_participant(reg, "b", &got), 0);
  cr_assert_eq(got.number, 2);
  cr_assert_str_eq(got.msisdn_prefixes[0], "256");
  expect_route(SW_PARTY_MSISDN, "255700000001", "b", SW_PARTY_MATCH_EXACT);
  expect_route(SW_PARTY_NATIONAL_ID, "KE-12345678", "a", SW_PARTY_MATCH_EXACT);
  expect_route(SW_PARTY_MSISDN, "254711111111", "a", SW_PARTY_MATCH_PREFIX);
  expect_route(SW_PARTY_MSISDN, "256772000000", "b", SW_PARTY_MATCH_PREFIX);
  sw_participant c = make("c", "C", "TZS", NULL);
  cr_assert_eq(put(&c), 3, "numbers continue after reopening");
  sw_participant c2 = make("c2", "C2", "TZS", "2547", NULL);
  cr_assert_eq(sw_registry_put_participant(reg, &c2, NULL), SW_REGISTRY_E_CONFLICT,
               "prefixes reloaded at open");
}

/* ---- party directory ---------------------------------------------------------------------- */

Test(registry, party_put_lookup_remove) {
  reg_open();
  sw_participant a = make("a", "A", "KES", NULL), b = make("b", "B", "KES", NULL);
  put(&a);
  put(&b);
  cr_assert_eq(sw_registry_put_party(reg, SW_PARTY_MSISDN, "254712345678", "a"), 0);
  expect_route(SW_PARTY_MSISDN, "254712345678", "a", SW_PARTY_MATCH_EXACT);
  /* the same identifier under another type is another party */
  expect_no_route(SW_PARTY_ACCOUNT_ID, "254712345678");
  expect_no_route(SW_PARTY_MSISDN, "254712345679");
  /* re-pointing replaces */
  cr_assert_eq(sw_registry_put_party(reg, SW_PARTY_MSISDN, "254712345678", "b"), 0);
  expect_route(SW_PARTY_MSISDN, "254712345678", "b", SW_PARTY_MATCH_EXACT);
  /* a batch is one transaction */
  sw_party batch[] = {{SW_PARTY_NATIONAL_ID, "12345678"},
                      {SW_PARTY_ACCOUNT_ID, "ACC/001 with spaces"},
                      {SW_PARTY_BUSINESS_ID, "BRN-2020-1"},
                      {SW_PARTY_REFUGEE_ID, "UNHCR 555"}};
  cr_assert_eq(sw_registry_put_parties(reg, batch, 4, "a"), 0);
  for (size_t i = 0; i < 4; i++)
    expect_route(batch[i].type, batch[i].id, "a", SW_PARTY_MATCH_EXACT);
  sw_party bad[] = {{SW_PARTY_NATIONAL_ID, "99999999"}, {SW_PARTY_MSISDN, "+254700000000"}};
  cr_assert_eq(sw_registry_put_parties(reg, bad, 2, "a"), SW_REGISTRY_E_INVAL);
  expect_no_route(SW_PARTY_NATIONAL_ID, "99999999"); /* all or nothing */

  cr_assert_eq(sw_registry_remove_party(reg, SW_PARTY_MSISDN, "254712345678"), 0);
  expect_no_route(SW_PARTY_MSISDN, "254712345678");
  cr_assert_eq(sw_registry_remove_party(reg, SW_PARTY_MSISDN, "254712345678"),
               SW_REGISTRY_E_NOTFOUND);
  expect_route(SW_PARTY_NATIONAL_ID, "12345678", "a", SW_PARTY_MATCH_EXACT);

  cr_assert_eq(sw_registry_put_party(reg, SW_PARTY_MSISDN, "254700000000", "nobody"),
               SW_REGISTRY_E_NOTFOUND);
  cr_assert_eq(sw_registry_put_party(reg, SW_PARTY_MSISDN, "254700000000", "Bad Id"),
               SW_REGISTRY_E_INVAL);
  cr_assert_eq(sw_registry_put_parties(reg, batch, 0, "a"), SW_REGISTRY_E_INVAL);
}

Test(registry, party_identifier_validation) {
  cr_assert_eq(sw_registry_party_valid(SW_PARTY_MSISDN, "254712345678"), 0);
  cr_assert_eq(sw_registry_party_valid(SW_PARTY_MSISDN, "123456789012345"), 0);
  cr_assert_eq(sw_registry_party_valid(SW_PARTY_MSISDN, "1234567890123456"), SW_REGISTRY_E_INVAL);
  cr_assert_eq(sw_registry_party_valid(SW_PARTY_MSISDN, "+254712345678"), SW_REGISTRY_E_INVAL);
  cr_assert_eq(sw_registry_party_valid(SW_PARTY_MSISDN, ""), SW_REGISTRY_E_INVAL);
  cr_assert_eq(sw_registry_party_valid(SW_PARTY_NATIONAL_ID, "ID 12/34"), 0);
  cr_assert_eq(sw_registry_party_valid(SW_PARTY_NATIONAL_ID, "a\nb"), SW_REGISTRY_E_INVAL);
  cr_assert_eq(sw_registry_party_valid(SW_PARTY_NATIONAL_ID, NULL), SW_REGISTRY_E_INVAL);
  cr_assert_eq(sw_registry_party_valid(0, "1"), SW_REGISTRY_E_INVAL);
  cr_assert_eq(sw_registry_party_valid(6, "1"), SW_REGISTRY_E_INVAL);
  char longid[SW_PARTY_ID_MAX + 2];
  memset(longid, 'x', sizeof longid);
  longid[SW_PARTY_ID_MAX] = 0;
  cr_assert_eq(sw_registry_party_valid(SW_PARTY_ACCOUNT_ID, longid), 0);
  longid[SW_PARTY_ID_MAX] = 'x';
  longid[SW_PARTY_ID_MAX + 1] = 0;
  cr_assert_eq(sw_registry_party_valid(SW_PARTY_ACCOUNT_ID, longid), SW_REGISTRY_E_INVAL);
}

Test(registry, no_plaintext_party_id_in_the_lmdb_file) {
  reg_open();
  sw_participant a = make("a", "A", "KES", NULL);
  put(&a);
  static const char *const ids[] = {"254799887766", "NATID-SECRET-0042"};
  cr_assert_eq(sw_registry_put_party(reg, SW_PARTY_MSISDN, ids[0], "a"), 0);
  cr_assert_eq(sw_registry_put_party(reg, SW_PARTY_NATIONAL_ID, ids[1], "a"), 0);
  expect_route(SW_PARTY_MSISDN, ids[0], "a", SW_PARTY_MATCH_EXACT);
  sw_registry_close(reg);
  reg = NULL;

  size_t len;
  unsigned char *data = slurp(in_dir("registry/data.mdb"), &len);
  cr_assert_gt(len, 0);
  for (size_t i = 0; i < 2; i++)
    cr_assert_null(memmem(data, len, ids[i], strlen(ids[i])), "'%s' in data.mdb", ids[i]);
  cr_assert_not_null(memmem(data, len, "a", 1)); /* the participant id is stored in clear */

  /* the stored key is HMAC-SHA-256(secret, type BE32 ‖ 0 ‖ id) */
  size_t slen;
  unsigned char *secret = slurp(in_dir("directory.key"), &slen);
  cr_assert_eq(slen, 32);
  unsigned char msg[64], mac[32];
  unsigned int maclen = 0;
  memcpy(msg, "\0\0\0\1\0", 5);
  memcpy(msg + 5, ids[0], strlen(ids[0]));
  cr_assert_not_null(HMAC(EVP_sha256(), secret, 32, msg, 5 + strlen(ids[0]), mac, &maclen));
  cr_assert_eq(maclen, 32);
  cr_assert_not_null(memmem(data, len, mac, sizeof mac), "token stored as the key");

  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  cr_assert_eq(mdb_env_create(&env), 0);
  cr_assert_eq(mdb_env_set_maxdbs(env, 8), 0);
  cr_assert_eq(mdb_env_open(env, in_dir("registry"), MDB_RDONLY, 0), 0);
  cr_assert_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
  cr_assert_eq(mdb_dbi_open(txn, "parties", 0, &dbi), 0);
  MDB_val k = {sizeof mac, mac}, v;
  cr_assert_eq(mdb_get(txn, dbi, &k, &v), 0);
  cr_assert_eq(v.mv_size, 4);
  uint32_t number;
  memcpy(&number, v.mv_data, 4);
  cr_assert_eq(number, 1);
  MDB_stat st;
  cr_assert_eq(mdb_stat(txn, dbi, &st), 0);
  cr_assert_eq(st.ms_entries, 2);
  mdb_txn_abort(txn);
  mdb_env_close(env);
  free(secret);
  free(data);
}

Test(registry, msisdn_prefix_routing_longest_match) {
  reg_open();
  sw_participant a = make("safaricom", "S", "KES", "2547", "25411", NULL);
  sw_participant b = make("airtel-ke", "A", "KES", "25473", "2541", NULL);
  sw_participant s = make("telkom", "T", "KES", "254771", NULL);
  s.status = SW_PARTICIPANT_SUSPENDED;
  put(&a);
  put(&b);
  put(&s);
  expect_route(SW_PARTY_MSISDN, "254712345678", "safaricom", SW_PARTY_MATCH_PREFIX);
  expect_route(SW_PARTY_MSISDN, "254733333333", "airtel-ke", SW_PARTY_MATCH_PREFIX);
  expect_route(SW_PARTY_MSISDN, "254110000000", "safaricom", SW_PARTY_MATCH_PREFIX);
  expect_route(SW_PARTY_MSISDN, "254100000000", "airtel-ke", SW_PARTY_MATCH_PREFIX);
  expect_route(SW_PARTY_MSISDN, "2547", "safaricom", SW_PARTY_MATCH_PREFIX);
  sw_participant got;
  sw_party_match how;
  cr_assert_eq(sw_registry_lookup_party(reg, SW_PARTY_MSISDN, "254771000000", &got, &how), 0);
  cr_assert_str_eq(got.id, "telkom", "suspended participants still route");
  cr_assert_eq(got.status, SW_PARTICIPANT_SUSPENDED);
  expect_no_route(SW_PARTY_MSISDN, "255700000000");
  expect_no_route(SW_PARTY_MSISDN, "254");
  expect_no_route(SW_PARTY_NATIONAL_ID, "254712345678"); /* prefixes route MSISDNs only */

  /* an exact entry wins over any prefix */
  cr_assert_eq(sw_registry_put_party(reg, SW_PARTY_MSISDN, "254712345678", "airtel-ke"), 0);
  expect_route(SW_PARTY_MSISDN, "254712345678", "airtel-ke", SW_PARTY_MATCH_EXACT);
  expect_route(SW_PARTY_MSISDN, "254712345679", "safaricom", SW_PARTY_MATCH_PREFIX);

  /* a prefix belongs to one participant; freeing it lets another take it */
  sw_participant c = make("newco", "N", "KES", "2541", NULL);
  cr_assert_eq(sw_registry_put_participant(reg, &c, NULL), SW_REGISTRY_E_CONFLICT);
  cr_assert_eq(sw_registry_get_participant(reg, "newco", &got), SW_REGISTRY_E_NOTFOUND);
  b.n_prefixes = 1; /* keeps 25473 only */
  put(&b);
  expect_no_route(SW_PARTY_MSISDN, "254100000000");
  expect_route(SW_PARTY_MSISDN, "254110000000", "safaricom", SW_PARTY_MATCH_PREFIX);
  cr_assert_eq(put(&c), 4);
  expect_route(SW_PARTY_MSISDN, "254100000000", "newco", SW_PARTY_MATCH_PREFIX);
  expect_route(SW_PARTY_MSISDN, "254733333333", "airtel-ke", SW_PARTY_MATCH_PREFIX);
  reg_reopen();
  expect_route(SW_PARTY_MSISDN, "254100000000", "newco", SW_PARTY_MATCH_PREFIX);
  expect_route(SW_PARTY_MSISDN, "254771000000", "telkom", SW_PARTY_MATCH_PREFIX);
}

/* ---- the secret ------------------------------------------------------------------------- */

Test(registry, secret_created_0600_and_reused) {
  reg_open();
  struct stat st;
  cr_assert_eq(stat(in_dir("directory.key"), &st), 0);
  cr_assert_eq(st.st_mode & 0777, 0600);
  cr_assert_eq(st.st_size, 32);
  size_t len;
  unsigned char *first = slurp(in_dir("directory.key"), &len);
  sw_participant a = make("a", "A", "KES", NULL);
  put(&a);
  cr_assert_eq(sw_registry_put_party(reg, SW_PARTY_MSISDN, "254700000001", "a"), 0);
  reg_reopen();
  unsigned char *second = slurp(in_dir("directory.key"), &len);
  cr_assert_eq(memcmp(first, second, 32), 0, "reused, not regenerated");
  expect_route(SW_PARTY_MSISDN, "254700000001", "a", SW_PARTY_MATCH_EXACT);
  free(first);
  free(second);
}

Test(registry, secret_file_must_be_this_registrys) {
  reg_open();
  sw_registry_close(reg);
  reg = NULL;
  char *key = strdup(in_dir("directory.key"));
  cr_assert_not_null(key);

  /* another secret */
  unsigned char other[32];
  memset(other, 0x5a, sizeof other);
  int fd = open(key, O_WRONLY | O_TRUNC);
  cr_assert_geq(fd, 0);
  cr_assert_eq(write(fd, other, sizeof other), 32);
  close(fd);
  cr_assert_eq(sw_registry_open(dir, NULL, &reg, errbuf, sizeof errbuf), SW_REGISTRY_E_SECRET);
  cr_assert_null(reg);
  cr_assert_not_null(strstr(errbuf, "not the directory secret this registry was created with"),
                     "%s", errbuf);

  /* too permissive */
  cr_assert_eq(chmod(key, 0644), 0);
  cr_assert_eq(sw_registry_open(dir, NULL, &reg, errbuf, sizeof errbuf), SW_REGISTRY_E_SECRET);
  cr_assert_not_null(strstr(errbuf, "chmod 600"), "%s", errbuf);

  /* wrong size */
  cr_assert_eq(chmod(key, 0600), 0);
  cr_assert_eq(truncate(key, 31), 0);
  cr_assert_eq(sw_registry_open(dir, NULL, &reg, errbuf, sizeof errbuf), SW_REGISTRY_E_SECRET);
  cr_assert_not_null(strstr(errbuf, "holds 31 bytes, not 32"), "%s", errbuf);

  /* missing: not silently replaced */
  cr_assert_eq(unlink(key), 0);
  cr_assert_eq(sw_registry_open(dir, NULL, &reg, NULL, 0), SW_REGISTRY_E_SECRET);
  cr_assert_eq(access(key, F_OK), -1, "no new secret created for an existing registry");
  free(key);
}

Test(registry, custom_secret_path_and_small_map_grows) {
  char secret[4200];
  snprintf(secret, sizeof secret, "%s/elsewhere.key", dir);
  sw_registry_options opts = {.secret_file = secret, .map_size = 64 << 10};
  int rc = sw_registry_open(dir, &opts, &reg, errbuf, sizeof errbuf);
  cr_assert_eq(rc, 0, "%s", errbuf);
  cr_assert_eq(access(secret, F_OK), 0);
  cr_assert_eq(access(in_dir("directory.key"), F_OK), -1);
  sw_participant a = make("a", "A", "KES", NULL);
  put(&a);
  enum { N = 20000, BATCH = 2000 };
  static char ids[N][16];
  sw_party batch[BATCH];
  for (int i = 0; i < N; i += BATCH) {
    for (int j = 0; j < BATCH; j++) {
      snprintf(ids[i + j], sizeof ids[0], "2557%08d", i + j);
      batch[j] = (sw_party){SW_PARTY_MSISDN, ids[i + j]};
    }
    rc = sw_registry_put_parties(reg, batch, BATCH, "a");
    cr_assert_eq(rc, 0, "%s", sw_registry_strerror(rc));
  }
  expect_route(SW_PARTY_MSISDN, ids[0], "a", SW_PARTY_MATCH_EXACT);
  expect_route(SW_PARTY_MSISDN, ids[N - 1], "a", SW_PARTY_MATCH_EXACT);
  sw_registry_close(reg);
  reg = NULL;
  cr_assert_eq(sw_registry_open(dir, &opts, &reg, errbuf, sizeof errbuf), 0, "%s", errbuf);
  expect_route(SW_PARTY_MSISDN, ids[12345], "a", SW_PARTY_MATCH_EXACT);
}

Test(registry, map_at_its_maximum_reports_full) {
  sw_registry_options opts = {.map_size = 256 << 10, .map_size_max = 256 << 10};
  cr_assert_eq(sw_registry_open(dir, &opts, &reg, errbuf, sizeof errbuf), 0, "%s", errbuf);
  sw_participant a = make("a", "A", "KES", NULL);
  put(&a);
  static char ids[20000][16];
  static sw_party batch[20000];
  for (int j = 0; j < 20000; j++) {
    snprintf(ids[j], sizeof ids[0], "2557%08d", j);
    batch[j] = (sw_party){SW_PARTY_MSISDN, ids[j]};
  }
  cr_assert_eq(sw_registry_put_parties(reg, batch, 20000, "a"), SW_REGISTRY_E_FULL);
  expect_no_route(SW_PARTY_MSISDN, ids[0]);
  cr_assert_eq(sw_registry_put_parties(reg, batch, 10, "a"), 0, "still usable");
  expect_route(SW_PARTY_MSISDN, ids[0], "a", SW_PARTY_MATCH_EXACT);
}

Test(registry, open_errors) {
  cr_assert_eq(sw_registry_open(NULL, NULL, &reg, errbuf, sizeof errbuf), SW_REGISTRY_E_INVAL);
  cr_assert_eq(sw_registry_open("", NULL, &reg, errbuf, sizeof errbuf), SW_REGISTRY_E_INVAL);
  cr_assert_eq(sw_registry_open(dir, NULL, NULL, errbuf, sizeof errbuf), SW_REGISTRY_E_INVAL);
  char file[4200];
  snprintf(file, sizeof file, "%s/plainfile", dir);
  FILE *f = fopen(file, "w");
  cr_assert_not_null(f);
  fclose(f);
  cr_assert_eq(sw_registry_open(file, NULL, &reg, errbuf, sizeof errbuf), SW_REGISTRY_E_IO);
  cr_assert_not_null(strstr(errbuf, "cannot create"), "%s", errbuf);
  sw_registry_close(NULL);
  for (int e = SW_REGISTRY_E_OK; e <= SW_REGISTRY_E_LMDB; e++)
    cr_assert_str_neq(sw_registry_strerror(e), "unknown registry error");
}

/* ---- helpers -------------------------------------------------------------------------------- */

Test(registry, mask_keeps_first_three_and_last_two) {
  char out[64];
  sw_mask("254712345678", out, sizeof out);
  cr_assert_str_eq(out, "254*******78");
  sw_mask("12345678", out, sizeof out);
  cr_assert_str_eq(out, "123***78");
  sw_mask("1234567", out, sizeof out);
  cr_assert_str_eq(out, "*******", "short inputs are all stars");
  sw_mask("ab", out, sizeof out);
  cr_assert_str_eq(out, "**");
  sw_mask("", out, sizeof out);
  cr_assert_str_eq(out, "");
  sw_mask(NULL, out, sizeof out);
  cr_assert_str_eq(out, "");
  char small[6];
  sw_mask("254712345678", small, sizeof small);
  cr_assert_str_eq(small, "254**", "truncated, still masked");
  out[0] = 'x';
  sw_mask("254712345678", out, 0);
  cr_assert_eq(out[0], 'x', "outlen 0 writes nothing");
  sw_mask("254712345678", out, 1);
  cr_assert_str_eq(out, "");
}

Test(registry, participant_helpers) {
  sw_participant p;
  memset(&p, 0xff, sizeof p);
  sw_participant_init(&p);
  cr_assert_eq(p.status, SW_PARTICIPANT_ACTIVE);
  cr_assert_eq(p.n_currencies, 0);
  cr_assert_eq(p.number, 0);
  cr_assert_eq(p.net_debit_cap[7], SW_NDC_UNLIMITED);
  p.n_currencies = 2;
  p.currencies[0] = 404;
  p.currencies[1] = 800;
  cr_assert_eq(sw_participant_currency_index(&p, 800), 1);
  cr_assert_eq(sw_participant_currency_index(&p, 840), -1);
  cr_assert_eq(sw_participant_currency_index(NULL, 404), -1);
}
