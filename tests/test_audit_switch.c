/* test_audit_switch.c — the audit against a real tumad (tests/switch_harness.h): verify and
 * back up while the switch is writing, and the checkpoints tumad signs ([audit] in its
 * configuration) every N batches and at shutdown. Load: a child process running `tuma
 * liquidity deposit` over the admin protocol, one ledger batch each.
 */
#include "audit.h"
#include "ledger.h"
#include "switch_harness.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEPOSITS 60

typedef struct ctx {
  sh_switch *h;
  char priv[SH_PATH_MAX + 32], pub[SH_PATH_MAX + 32];
  ledger_audit_key *pubkey;
} ctx;

static void setup(ctx *c, uint32_t every) {
  char err[512] = "";
  cr_assert_eq(sh_create(NULL, &c->h, err, sizeof err), 0, "%s", err);
  snprintf(c->priv, sizeof c->priv, "%s/checkpoint.key", c->h->dir);
  snprintf(c->pub, sizeof c->pub, "%s/checkpoint.pub", c->h->dir);
  const char *kg[] = {"audit", "keygen", c->priv, c->pub, NULL};
  cr_assert_eq(sh_run_cli(c->h, kg, 10000), 0, "tuma audit keygen");
  FILE *f = fopen(c->h->config, "a");
  cr_assert_not_null(f);
  fprintf(f, "\n[audit]\ncheckpoint_key = %s\ncheckpoint_every = %u\n", c->priv, every);
  cr_assert_eq(fclose(f), 0);
  cr_assert_eq(ledger_audit_key_load(c->pub, 0, &c->pubkey, err, sizeof err), 0, "%s", err);
  cr_assert_eq(sh_start(c->h, 20000, err, sizeof err), 0, "%s", err);
}

static void teardown(ctx *c, int ok) {
  ledger_audit_key_free(c->pubkey);
  sh_destroy(c->h, ok);
}

/* Forks a child that makes `n` deposits to alpha, one CLI run (one ledger batch) each. */
static pid_t start_load(ctx *c, int n) {
  char port[32];
  snprintf(port, sizeof port, "127.0.0.1:%u", c->h->admin_port);
  char cert[SH_PATH_MAX], key[SH_PATH_MAX];
  snprintf(cert, sizeof cert, "%s", sh_cert(c->h, "admin"));
  snprintf(key, sizeof key, "%s", sh_key(c->h, "admin"));
  pid_t pid = fork();
  cr_assert_neq(pid, -1);
  if (pid == 0) {
    int failed = 0;
    for (int i = 0; i < n; i++) {
      const char *a[] = {"liquidity", "deposit", "alpha",  "1",  "KES",   "--connect", port,
                         "--ca",      c->h->ca,  "--cert", cert, "--key", key,         NULL};
      failed += sh_run_cli(c->h, a, 10000) != 0;
    }
    _exit(failed ? 1 : 0);
  }
  return pid;
}

static int load_done(pid_t pid, int *status) {
  return waitpid(pid, status, WNOHANG) == pid;
}

static ledger_audit_report verify(const char *path, const ledger_audit_options *o) {
  ledger_audit_report r;
  char err[512] = "";
  int rc = ledger_audit_verify(path, o, &r, NULL, err, sizeof err);
  cr_assert_eq(rc, 0, "verify %s: %s; %s at record %llu: %s", path, err,
               ledger_audit_problem_name(r.problem), (unsigned long long)r.bad_seq, r.detail);
  return r;
}

Test(audit_switch, verify_and_backup_while_the_switch_writes, .timeout = 240) {
  ctx c = {0};
  setup(&c, 5);
  pid_t load = start_load(&c, DEPOSITS);
  ledger_audit_options o = {0};
  o.pubkey = c.pubkey;
  int status = 0, verifies = 0, done = 0;
  uint64_t last_head = 0;
  char backup[SH_PATH_MAX + 32];
  snprintf(backup, sizeof backup, "%s/backup", c.h->dir);
  int backed_up = 0;
  /* Bounded: at most 400 rounds of verify (each a few ms) with a 20 ms pause. */
  for (int round = 0; round < 400 && !done; round++) {
    ledger_audit_report r = verify(c.h->data_dir, &o);
    cr_assert_geq(r.head_seq, last_head, "the head never goes back");
    last_head = r.head_seq;
    verifies++;
    if (!backed_up && r.head_seq > 10) {
      const char *b[] = {"backup", c.h->data_dir, backup, NULL};
      cr_assert_eq(sh_run_cli(c.h, b, 30000), 0, "tuma backup while writing");
      backed_up = 1;
    }
    done = load_done(load, &status);
    usleep(20000);
  }
  if (!done) {
    cr_assert_eq(waitpid(load, &status, 0), load);
  }
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "every deposit committed");
  cr_assert_geq(verifies, 2, "verified while writing");
  cr_assert(backed_up, "backed up while writing");

  /* The backup: a consistent snapshot that verifies and opens. */
  ledger_audit_report rb = verify(backup, &o);
  cr_assert(rb.compared);
  char bl[SH_PATH_MAX + 64];
  snprintf(bl, sizeof bl, "%s/ledger", backup);
  ledger *l = NULL;
  cr_assert_eq(ledger_open(bl, NULL, &l), 0);
  uint64_t bad = 0;
  cr_assert_eq(ledger_journal_verify(l, &bad), 0, "backup journal, bad %llu",
               (unsigned long long)bad);
  ledger_close(l);

  /* Stopped: tumad signed its head at shutdown, and every N batches before. */
  cr_assert_eq(sh_stop(c.h, 10000, NULL), 0);
  o.require_signed_head = 1;
  ledger_audit_report r = verify(c.h->data_dir, &o);
  cr_assert_geq(r.checkpoints, 2, "checkpoints every 5 batches and at shutdown");
  cr_assert_eq(r.unsigned_tail, 0);
  cr_assert_geq(r.batches, DEPOSITS);
  cr_assert(r.compared);

  /* The CLI says the same. */
  const char *v[] = {"audit", "verify", c.h->data_dir, "--pubkey", c.pub, "--require-signed-head",
                     NULL};
  cr_assert_eq(sh_run_cli(c.h, v, 30000), 0, "tuma audit verify on the stopped switch");
  /* And the switch starts again on its data after being audited. */
  char err[512] = "";
  cr_assert_eq(sh_start(c.h, 20000, err, sizeof err), 0, "%s", err);
  cr_assert_eq(sh_stop(c.h, 10000, NULL), 0);
  teardown(&c, 1);
}

Test(audit_switch, a_bad_checkpoint_key_stops_tumad_at_start, .timeout = 120) {
  sh_switch *h = NULL;
  char err[512] = "";
  cr_assert_eq(sh_create(NULL, &h, err, sizeof err), 0, "%s", err);
  FILE *f = fopen(h->config, "a");
  cr_assert_not_null(f);
  fprintf(f, "\n[audit]\ncheckpoint_key = %s/pki/ca.crt\n", h->dir); /* not an Ed25519 key */
  cr_assert_eq(fclose(f), 0);
  cr_assert_neq(sh_start(h, 10000, err, sizeof err), 0, "tumad must refuse the key");
  cr_assert(sh_log_contains(h, "audit.checkpoint_key"));
  sh_destroy(h, 1);
}
