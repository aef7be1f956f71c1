/* test_audit.c — the audit (ledger/audit.h), signed checkpoints and `tuma audit` / `tuma backup`
 * (cli/audit_cmd.c, run as TUMA_BIN).
 *
 * A "real" data directory is built once per test through the ledger's own writer: accounts
 * with limits and history, plain, two-phase, balancing and closing transfers, a failing linked
 * chain, expiries due by the ledger's clock, and signed checkpoints. The tamper tests then
 * change a copy of it with LMDB directly (as an attacker with the file would) and check that
 * the audit names the right record and that the CLI exits non-zero. The independent Python
 * verifier (VERIFY_PY, run with PYTHON) checks a raw export.
 */
#include "audit.h"
#include "journal.h"
#include "ledger_fixture.h"
#include "queue.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <openssl/sha.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define T0 1700000000000000000ull
#define NS 1000000000ull

/* ---------------------------------------------------------------- helpers */

typedef struct fixture {
  char *dir; /* scratch root */
  char ledger[4200];
  char priv[4200], pub[4200];
  ledger_audit_key *key, *pubkey;
  uint64_t head; /* journal head after the build */
  uint64_t ckp1; /* the first checkpoint's seq */
  uint64_t ckp2; /* the second one's */
} fixture;

static void path_in(char *out, size_t cap, const char *dir, const char *name) {
  snprintf(out, cap, "%s/%s", dir, name);
}

static void copy_file(const char *from, const char *to) {
  FILE *in = fopen(from, "rb");
  cr_assert_not_null(in, "open %s", from);
  FILE *out = fopen(to, "wb");
  cr_assert_not_null(out, "create %s", to);
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, in)) > 0)
    cr_assert_eq(fwrite(buf, 1, n, out), n);
  fclose(in);
  cr_assert_eq(fclose(out), 0);
}

/* A copy of the fixture's ledger directory (data.mdb only) at f->dir/name. */
static void copy_ledger(const fixture *f, const char *name, char *out, size_t cap) {
  path_in(out, cap, f->dir, name);
  cr_assert(mkdir(out, 0700) == 0 || errno == EEXIST);
  char from[4300], to[4300];
  path_in(from, sizeof from, f->ledger, "data.mdb");
  path_in(to, sizeof to, out, "data.mdb");
  copy_file(from, to);
}

static void apply(ledger *l, const ledger_event *ev, size_t n, ledger_result *res) {
  cr_assert_eq(ledger_apply(l, ev, res, n), 0);
}

/* Builds the fixture ledger: see the file comment. The clock is f's own. */
static void build(fixture *f) {
  f->dir = fixture_tmpdir();
  path_in(f->ledger, sizeof f->ledger, f->dir, "ledger");
  path_in(f->priv, sizeof f->priv, f->dir, "ckp.key");
  path_in(f->pub, sizeof f->pub, f->dir, "ckp.pub");
  char err[512] = "";
  cr_assert_eq(ledger_audit_keygen(f->priv, f->pub, err, sizeof err), 0, "%s", err);
  cr_assert_eq(ledger_audit_key_load(f->priv, 1, &f->key, err, sizeof err), 0, "%s", err);
  cr_assert_eq(ledger_audit_key_load(f->pub, 0, &f->pubkey, err, sizeof err), 0, "%s", err);

  uint64_t now = T0;
  ledger *l = fixture_open(f->ledger, &now);
  ledger_result res[64];
  /* 1: accounts: 1 prefunded (debits ≤ credits), 2 with history, 3 the funding source. */
  ledger_event acc[6];
  for (int i = 0; i < 6; i++)
    acc[i] = fixture_account((uint64_t)i + 1, 0);
  acc[0].account.flags = LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS;
  acc[1].account.flags = LEDGER_ACCOUNT_HISTORY;
  apply(l, acc, 6, res);
  for (int i = 0; i < 6; i++)
    cr_assert_eq(res[i], LEDGER_OK);
  /* 2: funding, a refused overdraft, a failing linked chain, balancing, two-phase. */
  now += NS;
  ledger_event b2[8];
  b2[0] = fixture_transfer(100, 3, 1, 1000, 0);
  b2[1] = fixture_transfer(101, 1, 2, 300, 0);
  b2[2] = fixture_transfer(102, 1, 4, 5000, 0); /* exceeds_credits */
  b2[3] = fixture_transfer(103, 3, 4, 10, LEDGER_TRANSFER_LINKED);
  b2[4] = fixture_transfer(104, 3, 3, 10, 0); /* accounts_must_be_different: fails the chain */
  b2[5] = fixture_transfer(105, 1, 5, 100000, LEDGER_TRANSFER_BALANCING_DEBIT); /* moves 700 */
  b2[6] = fixture_transfer(106, 3, 4, 200, LEDGER_TRANSFER_PENDING);
  b2[6].transfer.timeout = 2;
  b2[7] = fixture_transfer(107, 3, 6, 300, LEDGER_TRANSFER_PENDING);
  apply(l, b2, 8, res);
  cr_assert_eq(res[2], LEDGER_EXCEEDS_CREDITS);
  cr_assert_eq(res[3], LEDGER_LINKED_EVENT_FAILED);
  cr_assert_eq(res[5], LEDGER_OK);
  /* 3: partial post, a pending closing transfer voided later, another expiring pending. */
  now += NS;
  ledger_event b3[4];
  b3[0] = fixture_transfer(108, 0, 0, 100, LEDGER_TRANSFER_POST_PENDING);
  b3[0].transfer.pending_id = ledger_id_make(0, 107);
  b3[1] = fixture_transfer(109, 3, 5, 50, LEDGER_TRANSFER_PENDING | LEDGER_TRANSFER_CLOSING_CREDIT);
  b3[2] = fixture_transfer(110, 3, 2, 70, LEDGER_TRANSFER_PENDING);
  b3[2].transfer.timeout = 1;
  b3[3] = fixture_transfer(111, 3, 2, 5, 0);
  apply(l, b3, 4, res);
  for (int i = 0; i < 4; i++)
    cr_assert_eq(res[i], LEDGER_OK, "b3[%d]: %s", i, ledger_result_name(res[i]));
  cr_assert_eq(ledger_checkpoint(l, ledger_audit_key_fingerprint(f->key), ledger_audit_key_sign_cb,
                                 f->key, &f->ckp1),
               0);
  cr_assert_gt(f->ckp1, 0);
  /* 4: void the closing pending; then time passes: 106 and 110 expire in an empty batch. */
  now += NS;
  /* ... with refusals the replay checks: posted already, no such account, voided already. */
  ledger_event b4[4];
  b4[0] = fixture_transfer(112, 0, 0, 0, LEDGER_TRANSFER_VOID_PENDING);
  b4[0].transfer.pending_id = ledger_id_make(0, 109);
  b4[1] = fixture_transfer(113, 0, 0, 0, LEDGER_TRANSFER_POST_PENDING);
  b4[1].transfer.pending_id = ledger_id_make(0, 107);
  b4[2] = fixture_transfer(114, 3, 99, 5, 0);
  b4[3] = fixture_transfer(115, 0, 0, 0, LEDGER_TRANSFER_VOID_PENDING);
  b4[3].transfer.pending_id = ledger_id_make(0, 109);
  apply(l, b4, 4, res);
  cr_assert_eq(res[0], LEDGER_OK);
  cr_assert_eq(res[1], LEDGER_PENDING_TRANSFER_ALREADY_POSTED);
  cr_assert_eq(res[2], LEDGER_CREDIT_ACCOUNT_NOT_FOUND);
  cr_assert_eq(res[3], LEDGER_PENDING_TRANSFER_ALREADY_VOIDED);
  now += 10 * NS;
  cr_assert_eq(ledger_apply(l, NULL, NULL, 0), 0);
  ledger_pending_state st;
  cr_assert_eq(ledger_pending_state_of(l, ledger_id_make(0, 106), &st, NULL), 0);
  cr_assert_eq(st, LEDGER_PENDING_EXPIRED);
  /* A post of the expired one: refused as expired. */
  now += NS;
  ledger_event late = fixture_transfer(116, 0, 0, 0, LEDGER_TRANSFER_POST_PENDING);
  late.transfer.pending_id = ledger_id_make(0, 106);
  apply(l, &late, 1, res);
  cr_assert_eq(res[0], LEDGER_PENDING_TRANSFER_EXPIRED);
  /* 5..: a few more batches of plain transfers, a checkpoint between them and at the end. */
  uint64_t id = 200;
  for (int b = 0; b < 6; b++) {
    now += NS;
    ledger_event ev[16];
    for (int i = 0; i < 16; i++)
      ev[i] = fixture_transfer(id++, 3 + (uint64_t)(i % 2), 4 - (uint64_t)(i % 2) + 2,
                               1 + (uint64_t)i, 0);
    apply(l, ev, 16, res);
    if (b == 2)
      cr_assert_eq(ledger_checkpoint(l, ledger_audit_key_fingerprint(f->key),
                                     ledger_audit_key_sign_cb, f->key, &f->ckp2),
                   0);
  }
  uint64_t seq = 0;
  cr_assert_eq(ledger_checkpoint(l, ledger_audit_key_fingerprint(f->key), ledger_audit_key_sign_cb,
                                 f->key, &seq),
               0);
  cr_assert_gt(seq, 0);
  fixture_assert_invariants(l);
  cr_assert_eq(ledger_journal_head(l, &f->head, NULL), 0);
  cr_assert_eq(f->head, seq);
  ledger_close(l);
}

static void teardown(fixture *f) {
  ledger_audit_key_free(f->key);
  ledger_audit_key_free(f->pubkey);
  fixture_rmtree(f->dir);
  free(f->dir);
}

static ledger_audit_report verify(const char *path, const ledger_audit_options *o, int want_rc) {
  ledger_audit_report r;
  char err[512] = "";
  int rc = ledger_audit_verify(path, o, &r, NULL, err, sizeof err);
  cr_assert_eq(rc, want_rc, "verify %s: rc %d (%s) problem %s at %llu: %s", path, rc, err,
               ledger_audit_problem_name(r.problem), (unsigned long long)r.bad_seq, r.detail);
  return r;
}

/* Runs TUMA_BIN with args (NULL-terminated); stdout and stderr into f->dir/out.txt and
 * err.txt; returns the exit status. */
static int run_tuma(const fixture *f, const char *const *args, char *err_text, size_t cap) {
  const char *bin = getenv("TUMA_BIN");
  cr_assert_not_null(bin, "TUMA_BIN is not set");
  char out_path[4300], err_path[4300];
  path_in(out_path, sizeof out_path, f->dir, "out.txt");
  path_in(err_path, sizeof err_path, f->dir, "err.txt");
  const char *argv[32];
  int n = 0;
  argv[n++] = bin;
  for (; args[n - 1] && n < 31; n++)
    argv[n] = args[n - 1];
  argv[n] = NULL;
  pid_t pid = fork();
  cr_assert_neq(pid, -1);
  if (pid == 0) {
    int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
      _exit(127);
    execv(bin, (char *const *)argv);
    _exit(127);
  }
  int status = 0;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_assert(WIFEXITED(status), "tuma died by a signal");
  if (err_text) {
    FILE *ef = fopen(err_path, "r");
    size_t got = ef ? fread(err_text, 1, cap - 1, ef) : 0;
    err_text[got] = 0;
    if (ef)
      fclose(ef);
  }
  return WEXITSTATUS(status);
}

/* ---------------------------------------------------------------- LMDB tampering */

typedef struct raw_env {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi journal, balances, accounts, transfers, pending;
} raw_env;

static void raw_open(raw_env *e, const char *dir) {
  cr_assert_eq(mdb_env_create(&e->env), 0);
  cr_assert_eq(mdb_env_set_maxdbs(e->env, 16), 0);
  cr_assert_eq(mdb_env_set_mapsize(e->env, 64ull << 20), 0);
  cr_assert_eq(mdb_env_open(e->env, dir, MDB_NOTLS, 0600), 0);
  cr_assert_eq(mdb_txn_begin(e->env, NULL, 0, &e->txn), 0);
  cr_assert_eq(mdb_dbi_open(e->txn, "journal", MDB_INTEGERKEY, &e->journal), 0);
  cr_assert_eq(mdb_dbi_open(e->txn, "balances", MDB_INTEGERKEY, &e->balances), 0);
  cr_assert_eq(mdb_dbi_open(e->txn, "accounts", 0, &e->accounts), 0);
  cr_assert_eq(mdb_dbi_open(e->txn, "transfers", MDB_INTEGERKEY, &e->transfers), 0);
  cr_assert_eq(mdb_dbi_open(e->txn, "pending", MDB_INTEGERKEY, &e->pending), 0);
}

static void raw_close(raw_env *e) {
  cr_assert_eq(mdb_txn_commit(e->txn), 0);
  mdb_env_close(e->env);
}

/* A malloc'ed copy of record seq. */
static uint8_t *raw_get(raw_env *e, uint64_t seq, size_t *len) {
  MDB_val k = {sizeof seq, &seq}, v;
  cr_assert_eq(mdb_get(e->txn, e->journal, &k, &v), 0, "record %llu", (unsigned long long)seq);
  uint8_t *copy = malloc(v.mv_size);
  cr_assert_not_null(copy);
  memcpy(copy, v.mv_data, v.mv_size);
  *len = v.mv_size;
  return copy;
}

static void raw_put(raw_env *e, uint64_t seq, const void *rec, size_t len) {
  MDB_val k = {sizeof seq, &seq}, v = {len, (void *)rec};
  cr_assert_eq(mdb_put(e->txn, e->journal, &k, &v, 0), 0);
}

static void raw_del(raw_env *e, uint64_t seq) {
  MDB_val k = {sizeof seq, &seq};
  cr_assert_eq(mdb_del(e->txn, e->journal, &k, NULL), 0);
}

static void tamper_row(raw_env *e, MDB_dbi dbi, int n, void (*change)(uint8_t *row, size_t len));
static void bump_amount(uint8_t *row, size_t len);

static void rehash(uint8_t *rec, size_t len) {
  SHA256(rec, len - 32, rec + len - 32);
}

/* ---------------------------------------------------------------- tests */

Test(audit, intact_ledger_verifies_with_checkpoints, .timeout = 120) {
  fixture f = {0};
  build(&f);
  ledger_audit_options o = {0};
  o.pubkey = f.pubkey;
  o.require_signed_head = 1;
  ledger_audit_report r = verify(f.ledger, &o, 0);
  cr_assert_eq(r.head_seq, f.head);
  cr_assert_eq(r.checkpoints, 3);
  cr_assert_eq(r.expiries, 2);
  cr_assert_eq(r.accounts, 6);
  cr_assert(r.compared && r.replayed && r.checkpoints_verified);
  cr_assert_eq(r.unsigned_tail, 0);

  char err[2048];
  const char *a[] = {"audit", "verify", f.ledger, "--pubkey", f.pub, "--require-signed-head", NULL};
  cr_assert_eq(run_tuma(&f, a, err, sizeof err), 0, "%s", err);
  /* The tumad data directory layout (DATA_DIR/ledger) is accepted too. */
  const char *b[] = {"audit", "verify", f.dir, NULL};
  cr_assert_eq(run_tuma(&f, b, err, sizeof err), 0, "%s", err);
  teardown(&f);
}

Test(audit, a_wrong_key_fails_every_checkpoint, .timeout = 120) {
  fixture f = {0};
  build(&f);
  char priv2[4300], pub2[4300], err[512] = "";
  path_in(priv2, sizeof priv2, f.dir, "other.key");
  path_in(pub2, sizeof pub2, f.dir, "other.pub");
  cr_assert_eq(ledger_audit_keygen(priv2, pub2, err, sizeof err), 0, "%s", err);
  ledger_audit_key *other = NULL;
  cr_assert_eq(ledger_audit_key_load(pub2, 0, &other, err, sizeof err), 0);
  ledger_audit_options o = {0};
  o.pubkey = other;
  ledger_audit_report r = verify(f.ledger, &o, LEDGER_E_CORRUPT);
  cr_assert_eq(r.problem, LEDGER_AUDIT_BAD_SIGNATURE);
  cr_assert_eq(r.bad_seq, f.ckp1);
  ledger_audit_key_free(other);
  /* keygen never overwrites a key. */
  cr_assert_neq(ledger_audit_keygen(priv2, pub2, err, sizeof err), 0);
  teardown(&f);
}

Test(audit, flipped_byte_is_a_hash_mismatch_at_its_record, .timeout = 120) {
  fixture f = {0};
  build(&f);
  char copy[4300];
  copy_ledger(&f, "flip", copy, sizeof copy);
  raw_env e;
  raw_open(&e, copy);
  size_t len;
  uint8_t *rec = raw_get(&e, 3, &len);
  rec[JOURNAL_HEADER_SIZE + 48] ^= 0x01; /* an amount in the first event */
  raw_put(&e, 3, rec, len);
  free(rec);
  raw_close(&e);
  ledger_audit_report r = verify(copy, NULL, LEDGER_E_CORRUPT);
  cr_assert_eq(r.problem, LEDGER_AUDIT_HASH_MISMATCH);
  cr_assert_eq(r.bad_seq, 3);
  char err[2048];
  const char *a[] = {"audit", "verify", copy, NULL};
  cr_assert_eq(run_tuma(&f, a, err, sizeof err), 1);
  cr_assert_not_null(strstr(err, "record 3"), "%s", err);
  cr_assert_not_null(strstr(err, "hash mismatch"), "%s", err);
  teardown(&f);
}

Test(audit, damaged_last_record_is_named, .timeout = 120) {
  fixture f = {0};
  build(&f);
  char copy[4300];
  copy_ledger(&f, "last", copy, sizeof copy);
  raw_env e;
  raw_open(&e, copy);
  size_t len;
  uint8_t *rec = raw_get(&e, f.head, &len);
  rec[100] ^= 0x04; /* inside the final checkpoint's signature */
  raw_put(&e, f.head, rec, len);
  free(rec);
  raw_close(&e);
  ledger_audit_report r = verify(copy, NULL, LEDGER_E_CORRUPT);
  cr_assert_eq(r.problem, LEDGER_AUDIT_HASH_MISMATCH);
  cr_assert_eq(r.bad_seq, f.head);
  teardown(&f);
}

Test(audit, deleted_record_is_a_gap, .timeout = 120) {
  fixture f = {0};
  build(&f);
  char copy[4300];
  copy_ledger(&f, "del", copy, sizeof copy);
  raw_env e;
  raw_open(&e, copy);
  raw_del(&e, 4);
  raw_close(&e);
  ledger_audit_report r = verify(copy, NULL, LEDGER_E_CORRUPT);
  cr_assert_eq(r.problem, LEDGER_AUDIT_GAP);
  cr_assert_eq(r.bad_seq, 4);
  char err[2048];
  const char *a[] = {"audit", "verify", copy, NULL};
  cr_assert_eq(run_tuma(&f, a, err, sizeof err), 1);
  cr_assert_not_null(strstr(err, "record 4: gap"), "%s", err);
  teardown(&f);
}

Test(audit, deleted_first_record_is_a_gap_not_an_export, .timeout = 120) {
  fixture f = {0};
  build(&f);
  char copy[4300];
  copy_ledger(&f, "del1", copy, sizeof copy);
  raw_env e;
  raw_open(&e, copy);
  raw_del(&e, 1);
  raw_close(&e);
  ledger_audit_report r = verify(copy, NULL, LEDGER_E_CORRUPT);
  cr_assert_eq(r.problem, LEDGER_AUDIT_GAP);
  cr_assert_eq(r.bad_seq, 1);
  teardown(&f);
}

/* The n-th row (from 0) of an integer-keyed table, changed by change(). */
static void tamper_row(raw_env *e, MDB_dbi dbi, int n, void (*change)(uint8_t *row, size_t len)) {
  MDB_cursor *cur;
  cr_assert_eq(mdb_cursor_open(e->txn, dbi, &cur), 0);
  MDB_val k, v;
  cr_assert_eq(mdb_cursor_get(cur, &k, &v, MDB_FIRST), 0);
  for (int i = 0; i < n; i++)
    cr_assert_eq(mdb_cursor_get(cur, &k, &v, MDB_NEXT), 0);
  uint8_t row[256];
  cr_assert_leq(v.mv_size, sizeof row);
  memcpy(row, v.mv_data, v.mv_size);
  change(row, v.mv_size);
  MDB_val nv = {v.mv_size, row};
  uint64_t key;
  memcpy(&key, k.mv_data, sizeof key);
  mdb_cursor_close(cur);
  MDB_val kk = {sizeof key, &key};
  cr_assert_eq(mdb_put(e->txn, dbi, &kk, &nv, 0), 0);
}

static void bump_amount(uint8_t *row, size_t len) {
  cr_assert_eq(len, 144);
  row[48] += 1; /* transfer.amount */
}

static void reopen_pending(uint8_t *row, size_t len) {
  cr_assert_eq(len, 24);
  row[0] = LEDGER_PENDING_OPEN; /* state */
}

Test(audit, stored_transfer_and_pending_rows_must_follow_the_journal, .timeout = 120) {
  fixture f = {0};
  build(&f);
  char copy[4300];
  copy_ledger(&f, "trow", copy, sizeof copy);
  raw_env e;
  raw_open(&e, copy);
  tamper_row(&e, e.transfers, 3, bump_amount); /* the 4th transfer: record 2 */
  raw_close(&e);
  ledger_audit_report r = verify(copy, NULL, LEDGER_E_CORRUPT);
  cr_assert_eq(r.problem, LEDGER_AUDIT_TRANSFER_MISMATCH, "%s", r.detail);
  cr_assert_eq(r.bad_seq, 2, "%s", r.detail);

  /* A voided pending transfer made open again (so that it could be posted). */
  char copy2[4300];
  copy_ledger(&f, "prow", copy2, sizeof copy2);
  raw_open(&e, copy2);
  tamper_row(&e, e.pending, 0, reopen_pending); /* 106: expired */
  raw_close(&e);
  r = verify(copy2, NULL, LEDGER_E_CORRUPT);
  cr_assert_eq(r.problem, LEDGER_AUDIT_TRANSFER_MISMATCH, "%s", r.detail);
  cr_assert_not_null(strstr(r.detail, "0000000000000000000000000000006a"), "%s", r.detail);
  char err[2048];
  const char *a[] = {"audit", "verify", copy2, NULL};
  cr_assert_eq(run_tuma(&f, a, err, sizeof err), 1);
  cr_assert_not_null(strstr(err, "transfer mismatch"), "%s", err);
  teardown(&f);
}

/* Many small records: the verify's hashing thread works through several windows of records. */
Test(audit, long_journals_name_the_first_bad_record, .timeout = 120) {
  fixture f = {0};
  f.dir = fixture_tmpdir();
  path_in(f.ledger, sizeof f.ledger, f.dir, "ledger");
  uint64_t now = T0;
  ledger *l = fixture_open(f.ledger, &now);
  ledger_event acc[2] = {fixture_account(1, 0), fixture_account(2, 0)};
  ledger_result res[2];
  apply(l, acc, 2, res);
  for (uint64_t k = 0; k < 300; k++) {
    now += NS;
    ledger_event t = fixture_transfer(1000 + k, 1 + k % 2, 2 - k % 2, 1 + k, 0);
    apply(l, &t, 1, res);
    cr_assert_eq(res[0], LEDGER_OK);
  }
  ledger_close(l);
  ledger_audit_report r = verify(f.ledger, NULL, 0);
  cr_assert_eq(r.records, 301);
  cr_assert(r.compared);

  char copy[4300];
  copy_ledger(&f, "long", copy, sizeof copy);
  raw_env e;
  raw_open(&e, copy);
  size_t len;
  uint8_t *rec = raw_get(&e, 200, &len);
  rec[JOURNAL_HEADER_SIZE + 50] ^= 0x80;
  raw_put(&e, 200, rec, len);
  free(rec);
  raw_del(&e, 250);
  raw_close(&e);
  r = verify(copy, NULL, LEDGER_E_CORRUPT);
  cr_assert_eq(r.problem, LEDGER_AUDIT_HASH_MISMATCH);
  cr_assert_eq(r.bad_seq, 200);

  /* A stored transfer row changed early, a record damaged later: the helper thread finds the
   * row while the replay is windows ahead, and the earlier record is still the one named. */
  char copy2[4300];
  copy_ledger(&f, "long2", copy2, sizeof copy2);
  raw_open(&e, copy2);
  tamper_row(&e, e.transfers, 98, bump_amount); /* transfer 1098: record 100 */
  rec = raw_get(&e, 280, &len);
  rec[JOURNAL_HEADER_SIZE + 50] ^= 0x80;
  raw_put(&e, 280, rec, len);
  free(rec);
  raw_close(&e);
  r = verify(copy2, NULL, LEDGER_E_CORRUPT);
  cr_assert_eq(r.problem, LEDGER_AUDIT_TRANSFER_MISMATCH, "%s", r.detail);
  cr_assert_eq(r.bad_seq, 100, "%s", r.detail);

  /* The other way round: the damaged record comes first. */
  char copy3[4300];
  copy_ledger(&f, "long3", copy3, sizeof copy3);
  raw_open(&e, copy3);
  tamper_row(&e, e.transfers, 250, bump_amount); /* record 252 */
  rec = raw_get(&e, 120, &len);
  rec[JOURNAL_HEADER_SIZE + 50] ^= 0x80;
  raw_put(&e, 120, rec, len);
  free(rec);
  raw_close(&e);
  r = verify(copy3, NULL, LEDGER_E_CORRUPT);
  cr_assert_eq(r.problem, LEDGER_AUDIT_HASH_MISMATCH, "%s", r.detail);
  cr_assert_eq(r.bad_seq, 120);

  /* Only a late stored row: found by the helper, reported with its record. */
  char copy4[4300];
  copy_ledger(&f, "long4", copy4, sizeof copy4);
  raw_open(&e, copy4);
  tamper_row(&e, e.transfers, 150, bump_amount); /* record 152 */
  raw_close(&e);
  r = verify(copy4, NULL, LEDGER_E_CORRUPT);
  cr_assert_eq(r.problem, LEDGER_AUDIT_TRANSFER_MISMATCH, "%s", r.detail);
  cr_assert_eq(r.bad_seq, 152, "%s", r.detail);
  teardown(&f);
}

Test(audit, swapped_records_are_reordered, .timeout = 120) {
  fixture f = {0};
  build(&f);
  char copy[4300];
  copy_ledger(&f, "swap", copy, sizeof copy);
  raw_env e;
  raw_open(&e, copy);
  size_t l5, l6;
  uint8_t *r5 = raw_get(&e, 5, &l5), *r6 = raw_get(&e, 6, &l6);
  raw_put(&e, 5, r6, l6);
  raw_put(&e, 6, r5, l5);
  free(r5);
  free(r6);
  raw_close(&e);
  ledger_audit_report r = verify(copy, NULL, LEDGER_E_CORRUPT);
  cr_assert_eq(r.problem, LEDGER_AUDIT_REORDERED);
  cr_assert_eq(r.bad_seq, 5);
  char err[2048];
  const char *a[] = {"audit", "verify", copy, NULL};
  cr_assert_eq(run_tuma(&f, a, err, sizeof err), 1);
  cr_assert_not_null(strstr(err, "record 5: reordered"), "%s", err);
  teardown(&f);
}

Test(audit, truncated_tail_is_found, .timeout = 120) {
  fixture f = {0};
  build(&f);
  char kept[4300], err[2048];
  path_in(kept, sizeof kept, f.dir, "kept.ckp");
  const char *k[] = {"audit", "checkpoint", f.ledger, "--output", kept, NULL};
  cr_assert_eq(run_tuma(&f, k, err, sizeof err), 0, "%s", err);
  char copy[4300];
  copy_ledger(&f, "trunc", copy, sizeof copy);
  raw_env e;
  raw_open(&e, copy);
  for (uint64_t s = f.head - 2; s <= f.head; s++)
    raw_del(&e, s);
  raw_close(&e);
  /* The kept checkpoint names where the journal now ends short. */
  const char *a[] = {"audit", "verify", copy, "--pubkey", f.pub, "--checkpoint", kept, NULL};
  cr_assert_eq(run_tuma(&f, a, err, sizeof err), 1);
  char want[64];
  snprintf(want, sizeof want, "record %llu: kept checkpoint missing",
           (unsigned long long)(f.head - 2));
  cr_assert_not_null(strstr(err, want), "%s", err);
  /* Without it, the balances the cut records made no longer follow from the journal: the
   * first such account (by id) was last changed, as far as the journal still says, by the
   * record before the cut. */
  ledger_audit_report r = verify(copy, NULL, LEDGER_E_CORRUPT);
  cr_assert_eq(r.problem, LEDGER_AUDIT_BALANCE_MISMATCH);
  cr_assert_eq(r.bad_seq, f.head - 3, "%s", r.detail);
  teardown(&f);
}

Test(audit, balance_changed_without_a_record_is_a_mismatch, .timeout = 120) {
  fixture f = {0};
  build(&f);
  char copy[4300];
  copy_ledger(&f, "bal", copy, sizeof copy);
  raw_env e;
  raw_open(&e, copy);
  uint64_t number = 1; /* account 1, the first created */
  MDB_val k = {sizeof number, &number}, v;
  cr_assert_eq(mdb_get(e.txn, e.balances, &k, &v), 0);
  uint8_t row[48];
  cr_assert_eq(v.mv_size, sizeof row);
  memcpy(row, v.mv_data, sizeof row);
  row[24] += 1; /* credits_posted */
  MDB_val nv = {sizeof row, row};
  cr_assert_eq(mdb_put(e.txn, e.balances, &k, &nv, 0), 0);
  raw_close(&e);
  ledger_audit_report r = verify(copy, NULL, LEDGER_E_CORRUPT);
  cr_assert_eq(r.problem, LEDGER_AUDIT_BALANCE_MISMATCH);
  cr_assert(ledger_id_eq(r.bad_account, ledger_id_make(0, 1)));
  cr_assert_eq(r.bad_seq, 2, "account 1 last changed in record 2: %s", r.detail);
  char err[2048];
  const char *a[] = {"audit", "verify", copy, NULL};
  cr_assert_eq(run_tuma(&f, a, err, sizeof err), 1);
  cr_assert_not_null(strstr(err, "balance mismatch for account 00000000000000000000000000000001"),
                     "%s", err);
  teardown(&f);
}

/* Rewrites record `from` (a changed user_data_64, which moves no money) and re-chains every
 * record after it with valid hashes, as an attacker without the key would. */
static void rewrite_tail(raw_env *e, uint64_t from, uint64_t head) {
  uint8_t prev[32];
  for (uint64_t s = from; s <= head; s++) {
    size_t len;
    uint8_t *rec = raw_get(e, s, &len);
    if (s == from)
      rec[JOURNAL_HEADER_SIZE + 88] ^= 0x5a; /* user_data_64 of a transfer */
    else
      memcpy(rec, prev, 32);
    rehash(rec, len);
    memcpy(prev, rec + len - 32, 32);
    raw_put(e, s, rec, len);
    free(rec);
  }
}

Test(audit, tail_rewritten_after_a_checkpoint_is_found, .timeout = 120) {
  fixture f = {0};
  build(&f);
  char kept[4300], err[2048];
  path_in(kept, sizeof kept, f.dir, "kept.ckp");
  const char *k[] = {"audit", "checkpoint", f.ledger, "--output", kept, NULL};
  cr_assert_eq(run_tuma(&f, k, err, sizeof err), 0, "%s", err);

  /* Rewritten and re-chained up to the last checkpoint, whose signature then fails. */
  char copy[4300];
  copy_ledger(&f, "tail", copy, sizeof copy);
  raw_env e;
  raw_open(&e, copy);
  uint64_t from = f.head - 2; /* a batch after the second checkpoint */
  rewrite_tail(&e, from, f.head);
  raw_close(&e);
  /* In a data directory the stored transfer rows betray the rewrite at once. */
  ledger_audit_report r = verify(copy, NULL, LEDGER_E_CORRUPT);
  cr_assert_eq(r.problem, LEDGER_AUDIT_TRANSFER_MISMATCH, "%s", r.detail);
  cr_assert_eq(r.bad_seq, from);
  /* The journal alone (as in an export): the checkpoint after it no longer verifies. */
  ledger_audit_options o = {0};
  o.pubkey = f.pubkey;
  o.chain_only = 1;
  r = verify(copy, &o, LEDGER_E_CORRUPT);
  cr_assert_eq(r.problem, LEDGER_AUDIT_BAD_SIGNATURE);
  cr_assert_eq(r.bad_seq, f.head);

  /* The same with the final checkpoint dropped: the tail is unsigned, and the auditor's kept
   * checkpoint no longer matches the record it signed. */
  char copy2[4300];
  copy_ledger(&f, "tail2", copy2, sizeof copy2);
  raw_open(&e, copy2);
  rewrite_tail(&e, from, f.head - 1);
  raw_del(&e, f.head);
  raw_close(&e);
  o.require_signed_head = 1;
  r = verify(copy2, &o, LEDGER_E_CORRUPT);
  cr_assert_eq(r.problem, LEDGER_AUDIT_UNSIGNED_TAIL);
  cr_assert_eq(r.bad_seq, f.ckp2 + 1, "%s", r.detail); /* the first record after checkpoint 2 */
  /* The journal alone against the kept (final) checkpoint; with the stored rows, the
   * rewritten record itself is named first. */
  const char *a[] = {"audit",        "verify", copy2,          "--pubkey", f.pub,
                     "--checkpoint", kept,     "--chain-only", NULL};
  cr_assert_eq(run_tuma(&f, a, err, sizeof err), 1);
  char want[64];
  snprintf(want, sizeof want, "record %llu: kept checkpoint missing",
           (unsigned long long)(f.head - 1));
  cr_assert_not_null(strstr(err, want), "%s", err);
  const char *a2[] = {"audit", "verify", copy2, "--pubkey", f.pub, "--checkpoint", kept, NULL};
  cr_assert_eq(run_tuma(&f, a2, err, sizeof err), 1);
  snprintf(want, sizeof want, "record %llu: transfer mismatch", (unsigned long long)from);
  cr_assert_not_null(strstr(err, want), "%s", err);
  teardown(&f);
}

/* Record 2's event 2 (transfer 102: 5,000 from account 1, which had 1,000) was refused with
 * exceeds_credits. An attacker lowers its amount to 50 and re-chains the journal: the refusal no
 * longer follows from the state, and the replay says so. */
Test(audit, a_refusal_the_state_does_not_give_is_found, .timeout = 120) {
  fixture f = {0};
  build(&f);
  char copy[4300];
  copy_ledger(&f, "refusal", copy, sizeof copy);
  raw_env e;
  raw_open(&e, copy);
  uint8_t prev[32];
  for (uint64_t s = 2; s <= f.head; s++) {
    size_t len;
    uint8_t *rec = raw_get(&e, s, &len);
    if (s == 2) {
      uint64_t amount = 50;
      memcpy(rec + JOURNAL_HEADER_SIZE + 2 * JOURNAL_EVENT_SIZE + 48, &amount, sizeof amount);
    } else {
      memcpy(rec, prev, 32);
    }
    rehash(rec, len);
    memcpy(prev, rec + len - 32, 32);
    raw_put(&e, s, rec, len);
    free(rec);
  }
  raw_close(&e);
  ledger_audit_report r = verify(copy, NULL, LEDGER_E_CORRUPT);
  cr_assert_eq(r.problem, LEDGER_AUDIT_REPLAY, "%s", r.detail);
  cr_assert_eq(r.bad_seq, 2);
  cr_assert_not_null(strstr(r.detail, "exceeds_credits"), "%s", r.detail);
  teardown(&f);
}

Test(audit, forged_checkpoint_is_refused, .timeout = 120) {
  fixture f = {0};
  build(&f);
  char copy[4300];
  copy_ledger(&f, "forge", copy, sizeof copy);
  raw_env e;
  raw_open(&e, copy);
  size_t len;
  uint8_t *rec = raw_get(&e, f.ckp1, &len);
  cr_assert_eq(len, JOURNAL_CHECKPOINT_SIZE);
  rec[JOURNAL_CHECKPOINT_SIGNED_SIZE + 5] ^= 1; /* the signature */
  rehash(rec, len);
  raw_put(&e, f.ckp1, rec, len);
  free(rec);
  raw_close(&e);
  ledger_audit_options o = {0};
  o.pubkey = f.pubkey;
  ledger_audit_report r = verify(copy, &o, LEDGER_E_CORRUPT);
  /* The record after it links to the old hash: the forged signature is found first. */
  cr_assert_eq(r.problem, LEDGER_AUDIT_BAD_SIGNATURE);
  cr_assert_eq(r.bad_seq, f.ckp1);
  /* Without the key the chain still breaks right after it. */
  r = verify(copy, NULL, LEDGER_E_CORRUPT);
  cr_assert_eq(r.problem, LEDGER_AUDIT_BROKEN_LINK);
  cr_assert_eq(r.bad_seq, f.ckp1 + 1);
  teardown(&f);
}

Test(audit, raw_export_verifies_alone_and_tampering_is_found, .timeout = 120) {
  fixture f = {0};
  build(&f);
  char raw[4300], err[2048];
  path_in(raw, sizeof raw, f.dir, "all.raw");
  const char *x[] = {"audit", "export", f.ledger, "--format", "raw", "--output", raw, NULL};
  cr_assert_eq(run_tuma(&f, x, err, sizeof err), 0, "%s", err);
  ledger_audit_options o = {0};
  o.pubkey = f.pubkey;
  ledger_audit_report r = verify(raw, &o, 0);
  cr_assert_eq(r.head_seq, f.head);
  cr_assert(r.replayed && !r.compared);

  /* A middle slice checks its own chain. */
  char part[4300];
  path_in(part, sizeof part, f.dir, "part.raw");
  const char *p[] = {"audit", "export", f.ledger,   "--from", "3",
                     "--to",  "5",      "--output", part,     NULL};
  cr_assert_eq(run_tuma(&f, p, err, sizeof err), 0, "%s", err);
  r = verify(part, NULL, 0);
  cr_assert_eq(r.first_seq, 3);
  cr_assert_eq(r.head_seq, 5);
  cr_assert_eq(r.replayed, 0);

  /* One flipped byte; a file cut inside its last record. */
  struct stat st;
  cr_assert_eq(stat(raw, &st), 0);
  FILE *fp = fopen(raw, "r+b");
  cr_assert_not_null(fp);
  /* record 1: 4-byte length, then 64 header bytes; its first event's id */
  cr_assert_eq(fseek(fp, 4 + JOURNAL_HEADER_SIZE + 2, SEEK_SET), 0);
  int c = fgetc(fp);
  cr_assert_eq(fseek(fp, 4 + JOURNAL_HEADER_SIZE + 2, SEEK_SET), 0);
  fputc(c ^ 0x10, fp);
  fclose(fp);
  r = verify(raw, NULL, LEDGER_E_CORRUPT);
  cr_assert_eq(r.problem, LEDGER_AUDIT_HASH_MISMATCH);
  cr_assert_eq(r.bad_seq, 1);
  cr_assert_eq(truncate(part, st.st_size > 0 ? 100 + 4 + 400 : 0), 0);
  r = verify(part, NULL, LEDGER_E_CORRUPT);
  cr_assert_eq(r.problem, LEDGER_AUDIT_BAD_RECORD);
  teardown(&f);
}

Test(audit, python_verifier_checks_a_raw_export, .timeout = 120) {
  const char *py = getenv("PYTHON"), *script = getenv("VERIFY_PY");
  cr_assert(py && script, "PYTHON and VERIFY_PY must be set");
  fixture f = {0};
  build(&f);
  char raw[4300], err[2048];
  path_in(raw, sizeof raw, f.dir, "all.raw");
  const char *x[] = {"audit", "export", f.ledger, "--output", raw, NULL};
  cr_assert_eq(run_tuma(&f, x, err, sizeof err), 0, "%s", err);
  char cmd[9000];
  snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' > '%s/py.out' 2>&1", py, script, raw, f.dir);
  int st = system(cmd);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "python verifier refused an intact export");
  /* Re-chain nothing: flip a byte of record 2's body. */
  FILE *fp = fopen(raw, "r+b");
  cr_assert_not_null(fp);
  uint8_t lb[4];
  cr_assert_eq(fread(lb, 1, 4, fp), 4);
  long len1 = (long)(lb[0] | lb[1] << 8 | lb[2] << 16 | (uint32_t)lb[3] << 24);
  long at = 4 + len1 + 4 + 70;
  cr_assert_eq(fseek(fp, at, SEEK_SET), 0);
  int c = fgetc(fp);
  cr_assert_eq(fseek(fp, at, SEEK_SET), 0);
  fputc(c ^ 1, fp);
  fclose(fp);
  st = system(cmd);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "python verifier accepted a flipped byte");
  char out_path[4300];
  path_in(out_path, sizeof out_path, f.dir, "py.out");
  FILE *o = fopen(out_path, "r");
  cr_assert_not_null(o);
  char text[2048] = "";
  size_t got = fread(text, 1, sizeof text - 1, o);
  text[got] = 0;
  fclose(o);
  cr_assert_not_null(strstr(text, "record 2"), "%s", text);
  teardown(&f);
}

typedef struct collect_ctx {
  ledger_account acc[16];
  int n;
} collect_ctx;

static int collect_cb(const ledger_account *a, void *arg) {
  collect_ctx *c = arg;
  if (c->n < 16)
    c->acc[c->n++] = *a;
  return 0;
}

Test(audit, balances_at_a_record_and_history_of_a_transfer, .timeout = 120) {
  fixture f = {0};
  build(&f);
  /* After record 2: account 1 got 1000, paid 300 and a balancing 700. */
  ledger_audit_options o = {0};
  o.stop_seq = 2;
  ledger_audit_source *src = NULL;
  ledger_audit *a = NULL;
  char err[2048] = "";
  cr_assert_eq(ledger_audit_source_open(f.ledger, &src, err, sizeof err), 0, "%s", err);
  cr_assert_eq(ledger_audit_new(&o, &a), 0);
  cr_assert_eq(ledger_audit_source_scan(src, 1, 0, ledger_audit_feed_cb, a), 1);
  cr_assert_eq(ledger_audit_finish(a, src), 0);
  collect_ctx c = {0};
  cr_assert_eq(ledger_audit_accounts(a, collect_cb, &c), 0);
  cr_assert_eq(c.n, 6);
  cr_assert_eq(c.acc[0].credits_posted, 1000);
  cr_assert_eq(c.acc[0].debits_posted, 1000);
  cr_assert_eq(c.acc[4].credits_posted, 700);
  cr_assert_eq(c.acc[5].credits_pending, 300);
  ledger_audit_free(a);
  ledger_audit_source_close(src);

  const char *b[] = {"audit", "balances", f.ledger, "--at", "2", "--format", "csv", NULL};
  cr_assert_eq(run_tuma(&f, b, err, sizeof err), 0, "%s", err);
  const char *b2[] = {"audit", "balances", f.ledger, "--at", "2023-11-14T22:13:21Z", NULL};
  cr_assert_eq(run_tuma(&f, b2, err, sizeof err), 0, "%s", err);
  /* Pending 107: created in record 2, partially posted in record 3. */
  const char *t[] = {"audit", "transfer", f.ledger, "0000000000000000000000000000006b", NULL};
  cr_assert_eq(run_tuma(&f, t, err, sizeof err), 0, "%s", err);
  char out_path[4300], out[4096] = "";
  path_in(out_path, sizeof out_path, f.dir, "out.txt");
  FILE *fp = fopen(out_path, "r");
  cr_assert_not_null(fp);
  size_t got = fread(out, 1, sizeof out - 1, fp);
  out[got] = 0;
  fclose(fp);
  cr_assert_not_null(strstr(out, "record 2 event 7"), "%s", out);
  cr_assert_not_null(strstr(out, "prepare (pending)"), "%s", out);
  cr_assert_not_null(strstr(out, "record 3 event 0"), "%s", out);
  cr_assert_not_null(strstr(out, "post of it"), "%s", out);
  /* 106 expired. */
  const char *t2[] = {"audit", "transfer", f.ledger, "00000000-0000-0000-0000-00000000006a", NULL};
  cr_assert_eq(run_tuma(&f, t2, err, sizeof err), 0, "%s", err);
  fp = fopen(out_path, "r");
  cr_assert_not_null(fp);
  got = fread(out, 1, sizeof out - 1, fp);
  out[got] = 0;
  fclose(fp);
  cr_assert_not_null(strstr(out, "expired by the ledger"), "%s", out);
  teardown(&f);
}

Test(audit, hostile_inputs_fail_cleanly, .timeout = 120) {
  fixture f = {0};
  f.dir = fixture_tmpdir();
  char err[2048], junk[4300], empty[4300], nodb[4300];
  path_in(junk, sizeof junk, f.dir, "junk.raw");
  path_in(empty, sizeof empty, f.dir, "empty.raw");
  path_in(nodb, sizeof nodb, f.dir, "nodb");
  cr_assert_eq(mkdir(nodb, 0700), 0);
  FILE *fp = fopen(junk, "wb");
  cr_assert_not_null(fp);
  for (int i = 0; i < 4096; i++)
    fputc((i * 7919) & 0xff, fp);
  fclose(fp);
  fp = fopen(empty, "wb");
  cr_assert_not_null(fp);
  fclose(fp);
  const char *cases[][8] = {
      {"audit", "verify", junk, NULL},
      {"audit", "verify", "/nonexistent/tuma", NULL},
      {"audit", "verify", nodb, NULL},
      {"audit", "balances", junk, "--at", "1", NULL},
      {"audit", "transfer", junk, "0000000000000000000000000000006b", NULL},
      {"audit", "export", junk, "--format", "jsonl", NULL},
      {"backup", nodb, junk, NULL},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
    cr_assert_eq(run_tuma(&f, cases[k], err, sizeof err), 1, "case %zu: %s", k, err);
  const char *usage[][8] = {
      {"audit", NULL},
      {"audit", "verify", NULL},
      {"audit", "export", junk, "--format", "xml", NULL},
      {"audit", "balances", junk, "--at", "yesterday", NULL},
      {"audit", "transfer", junk, "xyz", NULL},
      {"audit", "frobnicate", NULL},
      {"backup", junk, NULL},
  };
  for (size_t k = 0; k < sizeof usage / sizeof usage[0]; k++)
    cr_assert_eq(run_tuma(&f, usage[k], err, sizeof err), 2, "usage case %zu: %s", k, err);
  /* An empty export has nothing wrong in it and nothing to check. */
  ledger_audit_report r = verify(empty, NULL, 0);
  cr_assert_eq(r.records, 0);
  teardown(&f);
}

Test(audit, backup_verifies_and_opens, .timeout = 120) {
  fixture f = {0};
  build(&f);
  char dest[4300], err[2048];
  path_in(dest, sizeof dest, f.dir, "backup");
  const char *b[] = {"backup", f.dir, dest, "--compact", NULL};
  cr_assert_eq(run_tuma(&f, b, err, sizeof err), 0, "%s", err);
  ledger_audit_options o = {0};
  o.pubkey = f.pubkey;
  o.require_signed_head = 1;
  ledger_audit_report r = verify(dest, &o, 0);
  cr_assert_eq(r.head_seq, f.head);
  /* A second backup into the same place is refused. */
  cr_assert_eq(run_tuma(&f, b, err, sizeof err), 1, "%s", err);
  char ldir[4400];
  path_in(ldir, sizeof ldir, dest, "ledger");
  ledger *l = fixture_open(ldir, NULL);
  ledger_account acc;
  cr_assert_eq(ledger_lookup_account(l, ledger_id_make(0, 1), &acc), 0);
  cr_assert_eq(acc.credits_posted, 1000);
  fixture_assert_invariants(l);
  ledger_close(l);
  teardown(&f);
}

/* ---- checkpoints through the writer thread */

static void done_cb(int status, const ledger_event *events, const ledger_result *results, size_t n,
                    void *arg) {
  (void)events;
  (void)results;
  (void)n;
  atomic_fetch_add((_Atomic int *)arg, status == 0 ? 1 : 1000);
}

Test(audit, queue_signs_every_n_batches_and_at_close, .timeout = 120) {
  fixture f = {0};
  f.dir = fixture_tmpdir();
  path_in(f.ledger, sizeof f.ledger, f.dir, "ledger");
  path_in(f.priv, sizeof f.priv, f.dir, "ckp.key");
  path_in(f.pub, sizeof f.pub, f.dir, "ckp.pub");
  char err[512] = "";
  cr_assert_eq(ledger_audit_keygen(f.priv, f.pub, err, sizeof err), 0, "%s", err);
  cr_assert_eq(ledger_audit_key_load(f.priv, 1, &f.key, err, sizeof err), 0, "%s", err);
  cr_assert_eq(ledger_audit_key_load(f.pub, 0, &f.pubkey, err, sizeof err), 0, "%s", err);
  ledger *l = fixture_open(f.ledger, NULL);
  ledger_queue_options qo = {0};
  qo.sign = ledger_audit_key_sign_cb;
  qo.sign_arg = f.key;
  qo.fingerprint = ledger_audit_key_fingerprint(f.key);
  qo.checkpoint_every = 2;
  ledger_queue *q = NULL;
  cr_assert_eq(ledger_queue_start(l, &qo, &q), 0);
  _Atomic int done = 0;
  ledger_event acc[2] = {fixture_account(1, 0), fixture_account(2, 0)};
  cr_assert_eq(ledger_queue_submit(q, acc, 2, done_cb, (void *)&done, LEDGER_SUBMIT_WAIT), 0);
  for (int spin = 0; spin < 10000 && atomic_load(&done) == 0; spin++)
    usleep(1000);
  cr_assert_eq(atomic_load(&done), 1);
  for (int i = 0; i < 6; i++) {
    ledger_event t = fixture_transfer(10 + (uint64_t)i, 1, 2, 5, 0);
    /* One request at a time, so that each is its own batch. */
    int before = atomic_load(&done);
    cr_assert_eq(ledger_queue_submit(q, &t, 1, done_cb, (void *)&done, LEDGER_SUBMIT_WAIT), 0);
    for (int spin = 0; spin < 10000 && atomic_load(&done) == before; spin++)
      usleep(1000);
    cr_assert_eq(atomic_load(&done), before + 1);
  }
  ledger_queue_stats st;
  ledger_queue_stats_of(q, &st);
  cr_assert_geq(st.checkpoints, 2, "one checkpoint per 2 batches");
  ledger_queue_close(q);
  uint64_t head = 0;
  cr_assert_eq(ledger_journal_head(l, &head, NULL), 0);
  cr_assert_eq(ledger_journal_verify(l, NULL), 0);
  ledger_close(l);
  ledger_audit_options o = {0};
  o.pubkey = f.pubkey;
  o.require_signed_head = 1;
  ledger_audit_report r = verify(f.ledger, &o, 0);
  cr_assert_eq(r.batches, 7);
  cr_assert_geq(r.checkpoints, 4, "every 2 batches and at close");
  cr_assert_eq(r.head_seq, head);
  teardown(&f);
}

static int replay_cb(uint64_t seq, const void *record, size_t len, void *arg) {
  (void)seq;
  return ledger_replay_record(arg, record, len);
}

Test(audit, replaying_a_journal_with_checkpoints_copies_them, .timeout = 120) {
  fixture f = {0};
  build(&f);
  char dst[4300];
  path_in(dst, sizeof dst, f.dir, "replica");
  ledger *src = NULL;
  ledger_options ro = {0};
  ro.flags = LEDGER_OPEN_READ_ONLY;
  cr_assert_eq(ledger_open(f.ledger, &ro, &src), 0);
  ledger *rep = fixture_open(dst, NULL);
  cr_assert_eq(ledger_journal_scan(src, 1, replay_cb, rep), 0);
  uint64_t hs = 0, hr = 0;
  uint8_t a[32], b[32];
  cr_assert_eq(ledger_journal_head(src, &hs, a), 0);
  cr_assert_eq(ledger_journal_head(rep, &hr, b), 0);
  cr_assert_eq(hs, hr);
  cr_assert_eq(memcmp(a, b, 32), 0);
  /* Nothing new to sign: the head is a checkpoint already. */
  uint64_t seq = 1;
  cr_assert_eq(ledger_checkpoint(rep, ledger_audit_key_fingerprint(f.key), ledger_audit_key_sign_cb,
                                 f.key, &seq),
               0);
  cr_assert_eq(seq, 0);
  ledger_close(src);
  ledger_close(rep);
  ledger_audit_options o = {0};
  o.pubkey = f.pubkey;
  o.require_signed_head = 1;
  ledger_audit_report r = verify(dst, &o, 0);
  cr_assert_eq(r.head_seq, f.head);
  cr_assert(r.compared);
  teardown(&f);
}
