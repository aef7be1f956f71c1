/* test_faults.c — storage faults against a real tumad (issue 7): a failed fsync/fdatasync
 * (tests/faultinject.c, LD_PRELOAD) is never acknowledged, and a ledger map that cannot grow
 * fills up with clean refusals, no corruption and recovery once it may grow again. Same harness
 * and end-of-test check as tests/test_switch.c, plus the ledger's journal verification.
 *
 * TUMA_FAULTINJECT names the shim (tests/meson.build sets it); without it, or when tumad does
 * not load it, the sync test skips itself and says why.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "ledger.h"
#include "switch_harness.h"
#include "switch_ops.h"
#include "tclient.h"

TestSuite(faults, .fini = so_fini, .timeout = 180);

static const so_config suite_cfg = {20100, SO_CHECK_JOURNAL};

/* ================================================================ a failed sync */

/* Under tests/faultinject.c, a storage call fails while a trigger file exists (trigger_var
 * names it: syncs, or writes as on a full disk). A prepare whose reservation could not be
 * committed is refused (ABORTED prepare_code, never forwarded); a fulfil whose commit could not
 * be made leaves the transfer RESERVED (the payee is told 2001, the payer nothing). Once the
 * storage works again, both complete; after a kill -9 and a restart the ledger holds exactly
 * what was acknowledged and its journal verifies. Skips itself when the shim is not there or
 * not loaded. */
static void storage_fault(const char *trigger_var, const char *injected, unsigned prepare_code) {
  const char *shim = getenv("TUMA_FAULTINJECT");
  if (!shim || access(shim, R_OK) != 0)
    cr_skip_test("the fault-injection shim is not available (TUMA_FAULTINJECT unset)");
  char trigger[128];
  snprintf(trigger, sizeof trigger, "/tmp/tuma-fi-%d", (int)getpid());
  unlink(trigger);
  setenv("LD_PRELOAD", shim, 1);
  setenv(trigger_var, trigger, 1);
#if defined(__SANITIZE_ADDRESS__)
  /* ASan insists on being first in the link order; the shim comes before it. */
  char asan[512];
  const char *prev = getenv("ASAN_OPTIONS");
  snprintf(asan, sizeof asan, "%s%sverify_asan_link_order=0", prev ? prev : "",
           prev && prev[0] ? ":" : "");
  setenv("ASAN_OPTIONS", asan, 1);
#endif
  sh_options o;
  memset(&o, 0, sizeof o);
  o.log_level = "info";
  so_ctx *t = so_start(&o, &suite_cfg);
  if (!sh_log_contains(t->h, "faultinject: loaded")) {
    sh_destroy(t->h, 1);
    t->h = NULL;
    cr_skip_test("tumad did not load the shim %s (LD_PRELOAD refused)", shim);
  }
  tc_client *a = so_op_connect(t, "alpha"), *b = so_op_connect(t, "beta");
  so_transfer_ok(t, a, "alpha", b, "beta", 100, 10);

  /* y is reserved and forwarded before the disk goes bad. */
  uint8_t x[16], y[16];
  so_new_id(x);
  so_new_id(y);
  so_prep py = so_simple(y, "beta", 200);
  so_send_prepare(a, "alpha", 20, &py);
  so_expect_forward(b, "beta", y, "alpha", 200);

  FILE *f = fopen(trigger, "w");
  cr_assert_not_null(f, "create %s", trigger);
  fclose(f);
  /* x: its reservation cannot be synced. Refused, and beta never hears of it. */
  so_prep px = so_simple(x, "beta", 300);
  so_send_prepare(a, "alpha", 30, &px);
  so_expect_result(a, "alpha", 30, x, SO_ST_ABORTED, prepare_code);
  /* y: beta commits, the commit cannot be synced. Still reserved; alpha is told nothing. */
  so_send_fulfil(b, "beta", 40, y, SO_FS_COMMITTED, NULL, 0);
  so_expect_result(b, "beta", 40, y, SO_ST_RESERVED, 2001);
  so_expect_silence(a, "alpha", SO_T_SILENCE);
  so_expect_silence(b, "beta", SO_T_SILENCE);
  cr_assert(sh_log_contains(t->h, injected), "the failure was injected (%s)", injected);
  so_send_ping(a, "alpha", 41, 41); /* tumad is up */
  so_expect_pong(a, "alpha", 41, 41);

  /* The disk recovers: y commits on the payee's retry, x goes through when sent again. */
  cr_assert_eq(unlink(trigger), 0);
  so_send_fulfil(b, "beta", 50, y, SO_FS_COMMITTED, NULL, 0);
  so_expect_result(a, "alpha", 20, y, SO_ST_COMMITTED, 0);
  so_expect_result(b, "beta", 50, y, SO_ST_COMMITTED, 0);
  so_track(t, y, SO_ST_COMMITTED, "committed after the sync failure");
  so_send_prepare(a, "alpha", 60, &px);
  so_expect_forward(b, "beta", x, "alpha", 300);
  so_send_fulfil(b, "beta", 61, x, SO_FS_COMMITTED, NULL, 0);
  so_expect_result(a, "alpha", 60, x, SO_ST_COMMITTED, 0);
  so_expect_result(b, "beta", 61, x, SO_ST_COMMITTED, 0);
  so_track(t, x, SO_ST_COMMITTED, "resent after the sync failure");

  /* Nothing acknowledged is lost to a crash right after. */
  cr_assert_eq(sh_kill(t->h), 0);
  so_drop_all(t);
  so_restart(t);
  a = so_op_connect(t, "alpha");
  so_send_query(a, "alpha", 70, x);
  so_expect_result(a, "alpha", 70, x, SO_ST_COMMITTED, 0);
  so_send_query(a, "alpha", 71, y);
  so_expect_result(a, "alpha", 71, y, SO_ST_COMMITTED, 0);
  unsetenv("LD_PRELOAD");
  so_finish(t);
}

/* fdatasync fails (LMDB syncs its data pages with it): never acknowledged, 2001. */
Test(faults, failed_sync_is_never_acknowledged) {
  storage_fault("TUMA_FI_SYNC_FAIL_FILE", "faultinject: fdatasync", 2001);
}

/* The disk is full: LMDB's page writes fail with ENOSPC. Operators get 2003 (service
 * unavailable), tumad stays up, and everything goes on once there is room. */
Test(faults, disk_full_enospc) {
  storage_fault("TUMA_FI_WRITE_FAIL_FILE", "-> errno 28", 2003);
}

/* ================================================================ the ledger's map fills up */

/* [ledger] map_size_max_mb = 1: the map cannot grow, and transfers run until it is full. The
 * operators get a clean refusal (2003, service unavailable; a fulfil that cannot commit leaves
 * the transfer RESERVED), tumad stays up and stops cleanly, the ledger balances and its journal
 * verifies. Restarted with a larger maximum, everything acknowledged is there, the transfer
 * left reserved commits, and traffic resumes. */
Test(faults, ledger_map_full, .timeout = 600) {
  enum { MAX_TRANSFERS = 20000 };
  sh_options o;
  memset(&o, 0, sizeof o);
  o.map_size_mb = 1;
  o.map_size_max_mb = 1;
  o.log_level = "info";
  so_ctx *t = so_start(&o, &suite_cfg);
  tc_client *a = so_op_connect(t, "alpha"), *b = so_op_connect(t, "beta");
  uint64_t corr = 10;
  int full = 0;
  size_t committed = 0;
  uint8_t stuck[16];
  int have_stuck = 0;
  int64_t deadline = so_mono_ms() + 300000;
  for (int i = 0; i < MAX_TRANSFERS && !full && so_mono_ms() < deadline; i++, corr += 2) {
    uint8_t id[16];
    so_new_id(id);
    so_prep p = so_simple(id, "beta", 1);
    so_send_prepare(a, "alpha", corr, &p);
    Tuma__V1__Envelope *r = NULL;
    int rc = tc_recv(b, SO_T_ANSWER, &r);
    if (rc == TC_E_TIMEOUT) { /* not forwarded: the reservation was refused */
      so_expect_result(a, "alpha", corr, id, SO_ST_ABORTED, 2003);
      so_track(t, id, SO_ST_ABORTED, "refused: ledger full");
      full = 1;
      break;
    }
    cr_assert_eq(rc, TC_OK, "beta: %s", tc_strerror(rc));
    cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_TRANSFER_FORWARD, "beta: got %s",
                 so_body_name(r->body_case));
    tuma__v1__envelope__free_unpacked(r, NULL);
    so_send_fulfil(b, "beta", corr + 1, id, SO_FS_COMMITTED, NULL, 0);
    r = so_recv_env(b, "beta", SO_T_ANSWER);
    cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT);
    int st = r->transfer_result->state;
    unsigned code = r->transfer_result->error ? r->transfer_result->error->code : 0;
    tuma__v1__envelope__free_unpacked(r, NULL);
    if (st == SO_ST_COMMITTED) {
      so_expect_result(a, "alpha", corr, id, SO_ST_COMMITTED, 0);
      so_track(t, id, SO_ST_COMMITTED, "before the map filled");
      committed++;
    } else {
      cr_assert(st == SO_ST_RESERVED && code == 2001, "a fulfil that cannot commit: %s %u",
                so_state_name(st), code);
      so_expect_silence(a, "alpha", SO_T_SILENCE);
      so_track(t, id, SO_ST_RESERVED, "fulfil refused: ledger full");
      memcpy(stuck, id, 16);
      have_stuck = 1;
      full = 1;
    }
  }
  cr_log_info("map full after %zu committed transfers", committed);
  cr_assert(full, "the 1 MiB map filled up within %d transfers", MAX_TRANSFERS);
  cr_assert_gt(committed, 0);
  cr_assert(sh_log_contains(t->h, "ledger.failed"), "tumad logs the failed batch");
  /* Still up and answering. */
  so_send_ping(a, "alpha", 1, 1);
  so_expect_pong(a, "alpha", 1, 1);
  char body[256];
  cr_assert_eq(sh_http_get(t->h, "/healthz", body, sizeof body), 200);

  /* A clean stop, and a ledger that balances and verifies as it is. */
  int status = 0;
  cr_assert_eq(sh_stop(t->h, SO_T_STOP, &status), 0, "tumad stops on SIGTERM with a full map");
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d", status);
  so_drop_all(t);
  so_check_ledger(t);

  /* Room again: everything is there, and traffic resumes. */
  t->h->opts.map_size_max_mb = 64;
  cr_assert_eq(sh_write_config(t->h), 0);
  so_restart(t);
  a = so_op_connect(t, "alpha");
  b = so_op_connect(t, "beta");
  if (have_stuck) {
    so_send_fulfil(b, "beta", 5, stuck, SO_FS_COMMITTED, NULL, 0);
    so_expect_result(b, "beta", 5, stuck, SO_ST_COMMITTED, 0);
    so_expect_result(a, "alpha", 0, stuck, SO_ST_COMMITTED, 0);
    so_track(t, stuck, SO_ST_COMMITTED, "committed after the map grew");
  }
  for (int i = 0; i < 50; i++)
    so_transfer_ok(t, a, "alpha", b, "beta", 2, 100000 + 2 * (uint64_t)i);
  so_finish(t);
}
