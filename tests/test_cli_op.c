/* test_cli_op.c — integration suite for `tuma op receive|send|query` (cli/operator.c): a real
 * tumad (tests/switch_harness.h, participants alpha, beta and gamma with KES 10,000.00 each)
 * and the real `tuma` binary (TUMA_CLI), run as child processes with their output captured in
 * files of the test's scratch directory.
 *
 * Scenarios: a transfer between two operators commits and moves the positions; the payee
 * rejects (--reject) and nothing moves; a condition answered with the payee's --fulfilment, and
 * refused without it or with the wrong one; a payee too slow (stopped with SIGSTOP): EXPIRED for
 * the payer, a notice for the payee; routing by a registered MSISDN (masked in output);
 * query; receive stops on SIGTERM / SIGINT with status 0; the payee offline, the wrong role,
 * no switch; usage errors (status 2, nothing attempted).
 *
 * Every wait is bounded. When a test fails, its scratch directory is kept (tumad.log, the
 * commands' out/err files) and the end of tumad's log is written to stderr.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "switch_harness.h"

extern char **environ;

#define T_START 15000 /* ms: tumad start-up */
#define T_RUN 15000   /* ms: a command that should finish promptly */
#define T_READY 10000 /* ms: `op receive` connected and waiting */

enum { T_OUT = 16384, T_ARGS = 48 };

/* The running test's harness, for the fini's diagnostics (each test is its own process). */
static sh_switch *g_h;

static void op_fini(void) {
  if (g_h == NULL)
    return;
  /* Only reached with a live harness when the test failed before t_done. */
  sh_dump_log(g_h, "tumad", 30);
  fprintf(stderr, "[tumad] scratch directory kept: %s\n", g_h->dir);
  sh_destroy(g_h, 0);
  g_h = NULL;
}

TestSuite(cli_op, .fini = op_fini, .timeout = 90);

static int64_t t_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void t_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* A started tumad with its PKI; the test's harness. */
static sh_switch *t_switch(void) {
  char err[512] = "";
  sh_switch *h = NULL;
  sh_options o = {.log_level = "info"};
  cr_assert_eq(sh_create(&o, &h, err, sizeof err), 0, "%s", err);
  g_h = h;
  cr_assert_eq(sh_start(h, T_START, err, sizeof err), 0, "%s", err);
  return h;
}

/* Stops tumad (it must exit 0) and removes the scratch directory. */
static void t_done(sh_switch *h) {
  int st = 0;
  int stopped = sh_stop(h, 10000, &st) == 0;
  int clean = stopped && WIFEXITED(st) && WEXITSTATUS(st) == 0;
  cr_expect(stopped, "tumad did not stop in time");
  cr_expect(clean, "tumad exit status %d", st);
  if (!clean)
    fprintf(stderr, "[tumad] scratch directory kept: %s\n", h->dir);
  g_h = NULL;
  sh_destroy(h, clean && getenv("TUMA_TEST_KEEP") == NULL);
}

/* ---- running the CLI ---- */

typedef struct t_proc {
  pid_t pid;
  char out_path[SH_PATH_MAX + 64], err_path[SH_PATH_MAX + 64];
} t_proc;

/* Starts $TUMA_CLI with the NULL-terminated args (h may be NULL: then output goes to TMPDIR),
 * stdout and stderr to DIR/TAG.out and DIR/TAG.err. */
static void t_start(sh_switch *h, t_proc *p, const char *tag, const char *const *args) {
  const char *bin = getenv("TUMA_CLI");
  cr_assert_not_null(bin, "TUMA_CLI is not set (run through meson test)");
  const char *dir = h != NULL ? h->dir : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  snprintf(p->out_path, sizeof p->out_path, "%s/%s.%d.out", dir, tag, (int)getpid());
  snprintf(p->err_path, sizeof p->err_path, "%s/%s.%d.err", dir, tag, (int)getpid());
  char *argv[T_ARGS];
  int n = 0;
  argv[n++] = (char *)bin;
  for (size_t k = 0; args[k] != NULL; k++) {
    cr_assert_lt(n, T_ARGS - 1);
    argv[n++] = (char *)args[k];
  }
  argv[n] = NULL;
  posix_spawn_file_actions_t fa;
  cr_assert_eq(posix_spawn_file_actions_init(&fa), 0);
  cr_assert_eq(posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0), 0);
  cr_assert_eq(
      posix_spawn_file_actions_addopen(&fa, 1, p->out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600), 0);
  cr_assert_eq(
      posix_spawn_file_actions_addopen(&fa, 2, p->err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600), 0);
  /* Default signal handling in the child, whatever the test runner ignores or blocks. */
  posix_spawnattr_t attr;
  sigset_t none, dfl;
  sigemptyset(&none);
  sigemptyset(&dfl);
  sigaddset(&dfl, SIGINT);
  sigaddset(&dfl, SIGTERM);
  sigaddset(&dfl, SIGPIPE);
  cr_assert_eq(posix_spawnattr_init(&attr), 0);
  cr_assert_eq(posix_spawnattr_setsigmask(&attr, &none), 0);
  cr_assert_eq(posix_spawnattr_setsigdefault(&attr, &dfl), 0);
  cr_assert_eq(posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF), 0);
  int rc = posix_spawn(&p->pid, bin, &fa, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  cr_assert_eq(rc, 0, "posix_spawn %s: %s", bin, strerror(rc));
}

/* Waits at most timeout_ms for p; returns its exit status, or -1 after killing it (or 128 +
 * signal if a signal ended it). */
static int t_wait(t_proc *p, int timeout_ms) {
  int64_t deadline = t_mono_ms() + timeout_ms;
  for (;;) {
    int st = 0;
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == p->pid)
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    cr_assert(r == 0 || errno == EINTR, "waitpid: %s", strerror(errno));
    if (t_mono_ms() >= deadline) {
      kill(p->pid, SIGKILL);
      waitpid(p->pid, &st, 0);
      return -1;
    }
    t_sleep_ms(10);
  }
}

/* The file's text (NUL-terminated, truncated to T_OUT - 1 bytes) into buf. */
static const char *t_read(const char *path, char *buf) {
  buf[0] = '\0';
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return buf;
  size_t n = fread(buf, 1, T_OUT - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

/* Waits at most timeout_ms until path contains text; 1 if it did. */
static int t_wait_text(const char *path, const char *text, int timeout_ms) {
  static char buf[T_OUT];
  int64_t deadline = t_mono_ms() + timeout_ms;
  do {
    if (strstr(t_read(path, buf), text) != NULL)
      return 1;
    t_sleep_ms(10);
  } while (t_mono_ms() < deadline);
  return 0;
}

typedef struct t_result {
  int status;
  char out[T_OUT], err[T_OUT];
} t_result;

/* Runs the CLI to completion (at most T_RUN ms) and captures its output. */
static void t_run(sh_switch *h, t_result *r, const char *tag, const char *const *args) {
  t_proc p;
  t_start(h, &p, tag, args);
  r->status = t_wait(&p, T_RUN);
  t_read(p.out_path, r->out);
  t_read(p.err_path, r->err);
  if (h == NULL) { /* no scratch directory to keep them in */
    unlink(p.out_path);
    unlink(p.err_path);
  }
}

/* Storage for the connection options of one command. */
typedef struct t_conn {
  char connect[64], cert[SH_PATH_MAX + 80], key[SH_PATH_MAX + 80];
} t_conn;

/* Writes "--connect 127.0.0.1:PORT --ca … --cert … --key …" for client NAME (on the admin port
 * if admin) into args; the strings live in c and h. Returns the number of words. */
static int t_conn_args(sh_switch *h, t_conn *c, const char *name, int admin, const char **args) {
  snprintf(c->connect, sizeof c->connect, "127.0.0.1:%u", admin ? h->admin_port : h->port);
  snprintf(c->cert, sizeof c->cert, "%s", sh_cert(h, name));
  snprintf(c->key, sizeof c->key, "%s", sh_key(h, name));
  int n = 0;
  args[n++] = "--connect";
  args[n++] = c->connect;
  args[n++] = "--ca";
  args[n++] = h->ca;
  args[n++] = "--cert";
  args[n++] = c->cert;
  args[n++] = "--key";
  args[n++] = c->key;
  return n;
}

/* Builds argv: the words of `first` (NULL-terminated), then operator `name`'s connection
 * options, then NULL. */
#define T_ARGV(var, h, conn, name, ...)                                                            \
  const char *var[T_ARGS];                                                                         \
  do {                                                                                             \
    const char *const first_[] = {__VA_ARGS__, NULL};                                              \
    int n_ = 0;                                                                                    \
    for (; first_[n_] != NULL; n_++)                                                               \
      var[n_] = first_[n_];                                                                        \
    n_ += t_conn_args((h), (conn), (name), 0, var + n_);                                           \
    var[n_] = NULL;                                                                                \
  } while (0)

/* Starts `tuma op receive` as beta with extra arguments (NULL-terminated), through --pki/--as
 * (the certificates directory, with the CA named apart), and waits until it is connected and
 * waiting. */
static void t_receiver(sh_switch *h, t_proc *p, const char *const *extra) {
  char connect[64];
  snprintf(connect, sizeof connect, "127.0.0.1:%u", h->port);
  const char *args[T_ARGS] = {"op",     "receive", "--connect", connect, "--pki",
                              h->certs, "--as",    "beta",      "--ca",  h->ca};
  int n = 10;
  for (size_t k = 0; extra != NULL && extra[k] != NULL; k++)
    args[n++] = extra[k];
  args[n] = NULL;
  t_start(h, p, "receive", args);
  if (!t_wait_text(p->out_path, "waiting for", T_READY)) {
    char out[T_OUT], err[T_OUT];
    kill(p->pid, SIGKILL);
    t_wait(p, 1000);
    cr_assert_fail("op receive is not waiting: out: %s err: %s", t_read(p->out_path, out),
                   t_read(p->err_path, err));
  }
}

/* alpha's or beta's KES position from `tuma positions`: liquidity and net. */
static void t_position(sh_switch *h, const char *who, uint64_t *liquidity, int64_t *net) {
  t_conn c;
  const char *args[T_ARGS] = {"positions"};
  int n = 1;
  n += t_conn_args(h, &c, "admin", 1, args + n);
  args[n] = NULL;
  static t_result r;
  t_run(h, &r, "positions", args);
  cr_assert_eq(r.status, 0, "positions: %s", r.err);
  char pattern[80];
  snprintf(pattern, sizeof pattern, "\n%s ", who);
  const char *line = strstr(r.out, pattern);
  cr_assert_not_null(line, "no %s in: %s", who, r.out);
  char name[64], cur[8], ndc[32];
  uint64_t reserved = 0, available = 0;
  cr_assert_eq(sscanf(line + 1, "%63s %7s %" SCNu64 " %" SCNu64 " %" SCNu64 " %31s %" SCNd64, name,
                      cur, liquidity, &reserved, &available, ndc, net),
               7, "cannot parse: %s", line + 1);
  cr_assert_str_eq(cur, "KES");
  cr_assert_eq(reserved, 0, "%s still has %" PRIu64 " reserved", who, reserved);
}

/* ================================================================ tests */

Test(cli_op, transfer_commits_and_moves_positions) {
  sh_switch *h = t_switch();
  t_proc recv;
  const char *const extra[] = {"--count", "1", NULL};
  t_receiver(h, &recv, extra);

  t_conn c;
  T_ARGV(send, h, &c, "alpha", "op", "send", "--to", "beta", "--amount", "2500", "--currency",
         "KES", "--reference", "lunch");
  t_result r;
  t_run(h, &r, "send", send);
  cr_assert_eq(r.status, 0, "send: out %s err %s", r.out, r.err);
  cr_assert_not_null(strstr(r.out, " COMMITTED"), "%s", r.out);
  char id[33] = "";
  cr_assert_eq(sscanf(r.out, "transfer %32s to beta: 2500 KES", id), 1, "%s", r.out);

  int st = t_wait(&recv, T_RUN);
  static char out[T_OUT], err[T_OUT];
  t_read(recv.out_path, out);
  t_read(recv.err_path, err);
  cr_assert_eq(st, 0, "receive: out %s err %s", out, err);
  cr_assert_not_null(strstr(out, "connected as beta, currencies KES"), "%s", out);
  char line[160];
  snprintf(line, sizeof line, "forward  %s from alpha 2500 KES to beta ref \"lunch\"", id);
  cr_assert_not_null(strstr(out, line), "%s", out);
  snprintf(line, sizeof line, "fulfil   %s COMMITTED", id);
  cr_assert_not_null(strstr(out, line), "%s", out);
  snprintf(line, sizeof line, "result   %s COMMITTED", id);
  cr_assert_not_null(strstr(out, line), "%s", out);

  uint64_t liq = 0;
  int64_t net = 0;
  t_position(h, "alpha", &liq, &net);
  cr_assert_eq(liq, SH_DEPOSIT - 2500);
  cr_assert_eq(net, 2500);
  t_position(h, "beta", &liq, &net);
  cr_assert_eq(liq, SH_DEPOSIT + 2500);
  cr_assert_eq(net, -2500);

  /* Both sides can ask for it afterwards; an unknown id is 3208. */
  T_ARGV(query, h, &c, "beta", "op", "query", "--id", id);
  t_run(h, &r, "query", query);
  cr_assert_eq(r.status, 0, "%s", r.err);
  snprintf(line, sizeof line, "result   %s COMMITTED", id);
  cr_assert_not_null(strstr(r.out, line), "%s", r.out);
  T_ARGV(query2, h, &c, "alpha", "op", "query", "--id", "0123456789abcdef0123456789abcdef");
  t_run(h, &r, "query", query2);
  cr_assert_eq(r.status, 1);
  cr_assert_not_null(strstr(r.err, "3208"), "%s", r.err);
  t_done(h);
}

Test(cli_op, payee_rejects) {
  sh_switch *h = t_switch();
  t_proc recv;
  const char *const extra[] = {"--reject", "5105", "--count", "1", NULL};
  t_receiver(h, &recv, extra);

  t_conn c;
  T_ARGV(send, h, &c, "alpha", "op", "send", "--to", "beta", "--amount", "700", "--currency",
         "KES");
  t_result r;
  t_run(h, &r, "send", send);
  cr_assert_eq(r.status, 1, "send: out %s err %s", r.out, r.err);
  cr_assert_not_null(strstr(r.out, " ABORTED 5105"), "%s", r.out);

  int st = t_wait(&recv, T_RUN);
  static char out[T_OUT];
  t_read(recv.out_path, out);
  cr_assert_eq(st, 0, "%s", out);
  cr_assert_not_null(strstr(out, "ABORTED 5105 (rejected with tuma op receive --reject)"), "%s",
                     out);
  cr_assert_not_null(strstr(out, "result  "), "%s", out);

  uint64_t liq = 0;
  int64_t net = 0;
  t_position(h, "alpha", &liq, &net);
  cr_assert_eq(liq, SH_DEPOSIT);
  cr_assert_eq(net, 0);
  t_done(h);
}

Test(cli_op, condition_and_fulfilment) {
  sh_switch *h = t_switch();
  static const char preimage[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
  t_proc recv;
  const char *const extra[] = {"--fulfilment", preimage, "--count", "2", NULL};
  t_receiver(h, &recv, extra);
  static char out[T_OUT];
  char condition[65] = "";
  t_read(recv.out_path, out);
  cr_assert_eq(sscanf(out, "condition %64s", condition), 1, "%s", out);

  /* The payer knows only the condition; the payee's preimage commits it and comes back. */
  t_conn c;
  T_ARGV(send, h, &c, "alpha", "op", "send", "--to", "beta", "--amount", "300", "--currency", "KES",
         "--condition", condition);
  t_result r;
  t_run(h, &r, "send", send);
  cr_assert_eq(r.status, 0, "send: out %s err %s", r.out, r.err);
  cr_assert_not_null(strstr(r.out, " COMMITTED"), "%s", r.out);
  char line[160];
  snprintf(line, sizeof line, "fulfilment %s (matches the condition)", preimage);
  cr_assert_not_null(strstr(r.out, line), "%s", r.out);

  /* A random preimage of the payer's (--with-condition): this payee cannot answer it. */
  T_ARGV(send2, h, &c, "alpha", "op", "send", "--to", "beta", "--amount", "300", "--currency",
         "KES", "--with-condition");
  t_run(h, &r, "send2", send2);
  cr_assert_eq(r.status, 1, "send: out %s err %s", r.out, r.err);
  cr_assert_not_null(strstr(r.out, "preimage  "), "%s", r.out);
  cr_assert_not_null(strstr(r.out, " ABORTED 5105"), "%s", r.out);

  int st = t_wait(&recv, T_RUN);
  t_read(recv.out_path, out);
  cr_assert_eq(st, 0, "%s", out);
  cr_assert_not_null(strstr(out, "COMMITTED with the fulfilment"), "%s", out);
  cr_assert_not_null(strstr(out, "does not match the transfer's condition"), "%s", out);

  uint64_t liq = 0;
  int64_t net = 0;
  t_position(h, "beta", &liq, &net);
  cr_assert_eq(liq, SH_DEPOSIT + 300);
  t_done(h);
}

Test(cli_op, condition_without_fulfilment_is_refused) {
  sh_switch *h = t_switch();
  t_proc recv;
  const char *const extra[] = {"--count", "1", NULL};
  t_receiver(h, &recv, extra);
  t_conn c;
  T_ARGV(send, h, &c, "alpha", "op", "send", "--to", "beta", "--amount", "300", "--currency", "KES",
         "--with-condition");
  t_result r;
  t_run(h, &r, "send", send);
  cr_assert_eq(r.status, 1, "send: out %s err %s", r.out, r.err);
  cr_assert_not_null(strstr(r.out, " ABORTED 5105"), "%s", r.out);
  int st = t_wait(&recv, T_RUN);
  static char out[T_OUT];
  t_read(recv.out_path, out);
  cr_assert_eq(st, 0, "%s", out);
  cr_assert_not_null(strstr(out, "no --fulfilment was given"), "%s", out);
  t_done(h);
}

Test(cli_op, expiry_is_reported_to_both_sides) {
  sh_switch *h = t_switch();
  t_proc recv;
  const char *const extra[] = {"--count", "1", NULL};
  t_receiver(h, &recv, extra);
  /* A payee that does not answer in time: stopped, the forward waits in its socket. */
  cr_assert_eq(kill(recv.pid, SIGSTOP), 0);
  t_conn c;
  T_ARGV(send, h, &c, "alpha", "op", "send", "--to", "beta", "--amount", "40", "--currency", "KES",
         "--expires-in", "1000");
  t_result r;
  t_run(h, &r, "send", send);
  cr_assert_eq(kill(recv.pid, SIGCONT), 0);
  cr_assert_eq(r.status, 1, "send: out %s err %s", r.out, r.err);
  cr_assert_not_null(strstr(r.out, " EXPIRED 3303"), "%s", r.out);
  char id[33] = "";
  cr_assert_eq(sscanf(r.out, "transfer %32s", id), 1, "%s", r.out);
  /* Woken up, the payee answers too late and hears of the expiry: one transfer, done. */
  int st = t_wait(&recv, T_RUN);
  static char out[T_OUT];
  t_read(recv.out_path, out);
  cr_assert_eq(st, 0, "%s", out);
  char line[160];
  snprintf(line, sizeof line, "forward  %s from alpha 40 KES", id);
  cr_assert_not_null(strstr(out, line), "%s", out);
  snprintf(line, sizeof line, "notice   %s EXPIRED 3303", id);
  cr_assert_not_null(strstr(out, line), "%s", out);
  uint64_t liq = 0;
  int64_t net = 0;
  t_position(h, "alpha", &liq, &net);
  cr_assert_eq(liq, SH_DEPOSIT);
  cr_assert_eq(net, 0);
  t_done(h);
}

Test(cli_op, routes_by_registered_msisdn_and_masks_it) {
  sh_switch *h = t_switch();
  t_proc recv;
  /* 25470… is alpha's prefix: only the registration makes it beta's. */
  const char *const extra[] = {
      "--register", "msisdn:254700000123", "--register", "national-id:CM12345678", "--count", "1",
      NULL};
  t_receiver(h, &recv, extra);
  t_conn c;
  T_ARGV(send, h, &c, "gamma", "op", "send", "--to-msisdn", "254700000123", "--amount", "10",
         "--currency", "KES");
  t_result r;
  t_run(h, &r, "send", send);
  cr_assert_eq(r.status, 0, "send: out %s err %s", r.out, r.err);
  cr_assert_not_null(strstr(r.out, "to msisdn:254*******23"), "%s", r.out);
  cr_assert_null(strstr(r.out, "254700000123"), "%s", r.out);
  int st = t_wait(&recv, T_RUN);
  static char out[T_OUT], err[T_OUT];
  t_read(recv.out_path, out);
  t_read(recv.err_path, err);
  cr_assert_eq(st, 0, "%s %s", out, err);
  cr_assert_not_null(
      strstr(out, "registered 2 parties: msisdn:254*******23 national-id:CM1*****78"), "%s", out);
  cr_assert_not_null(strstr(out, "from gamma 10 KES to msisdn:254*******23"), "%s", out);
  cr_assert_null(strstr(out, "254700000123"), "%s", out);
  cr_assert_null(strstr(out, "CM12345678"), "%s", out);
  t_done(h);
}

Test(cli_op, receive_stops_on_signals) {
  sh_switch *h = t_switch();
  static const int sigs[] = {SIGTERM, SIGINT};
  for (size_t k = 0; k < sizeof sigs / sizeof sigs[0]; k++) {
    t_proc recv;
    t_receiver(h, &recv, NULL);
    cr_assert_eq(kill(recv.pid, sigs[k]), 0);
    int st = t_wait(&recv, T_RUN);
    static char err[T_OUT];
    cr_assert_eq(st, 0, "signal %d: status %d, %s", sigs[k], st, t_read(recv.err_path, err));
  }
  t_done(h);
}

Test(cli_op, refusals_and_failures) {
  sh_switch *h = t_switch();
  t_conn c;
  t_result r;
  /* Nobody receives for beta: refused at once, with a hint. */
  T_ARGV(send, h, &c, "alpha", "op", "send", "--to", "beta", "--amount", "10", "--currency", "KES");
  t_run(h, &r, "send", send);
  cr_assert_eq(r.status, 1, "%s %s", r.out, r.err);
  cr_assert_not_null(strstr(r.out, "ABORTED 3201"), "%s", r.out);
  cr_assert_not_null(strstr(r.err, "tuma op receive"), "%s", r.err);
  /* An unknown payee participant. */
  T_ARGV(send2, h, &c, "alpha", "op", "send", "--to", "nobody", "--amount", "10", "--currency",
         "KES");
  t_run(h, &r, "send", send2);
  cr_assert_eq(r.status, 1);
  cr_assert_not_null(strstr(r.out, "ABORTED 3203"), "%s", r.out);
  /* An admin certificate on the operator listener: the switch's error frame is shown. */
  T_ARGV(recv, h, &c, "admin", "op", "receive", "--count", "1");
  t_run(h, &r, "receive", recv);
  cr_assert_eq(r.status, 1, "%s %s", r.out, r.err);
  cr_assert_not_null(strstr(r.err, "3100"), "%s", r.err);
  /* The admin listener is not the operator one. */
  const char *admin_port[T_ARGS] = {
      "op", "query", "--id", "0123456789abcdef0123456789abcdef", "--timeout", "3000"};
  int n = 6 + t_conn_args(h, &c, "alpha", 1, admin_port + 6);
  admin_port[n] = NULL;
  t_run(h, &r, "query", admin_port);
  cr_assert_eq(r.status, 1, "%s %s", r.out, r.err);
  /* No switch at all. */
  cr_assert_eq(sh_stop(h, 10000, NULL), 0);
  t_run(h, &r, "send", send);
  cr_assert_eq(r.status, 1, "%s %s", r.out, r.err);
  cr_assert_not_null(strstr(r.err, "cannot connect"), "%s", r.err);
  cr_assert_not_null(strstr(r.out, "transfer "), "the id is printed before connecting: %s", r.out);
  g_h = NULL;
  sh_destroy(h, getenv("TUMA_TEST_KEEP") == NULL);
}

Test(cli_op, usage_errors_attempt_nothing) {
  /* 127.0.0.1:1: nothing listens there; a usage error must not even try. */
  static const char *const cases[][16] = {
      {"op", NULL},
      {"op", "frob", NULL},
      {"op", "send", "--to", "beta", "--amount", "0", "--currency", "KES", "--as", "alpha", NULL},
      {"op", "send", "--to", "beta", "--amount", "12.5", "--currency", "KES", "--as", "alpha",
       NULL},
      {"op", "send", "--to", "beta", "--amount", "-1", "--currency", "KES", "--as", "alpha", NULL},
      {"op", "send", "--to", "beta", "--amount", "1", "--currency", "kes", "--as", "alpha", NULL},
      {"op", "send", "--to", "beta", "--amount", "1", "--currency", "KESH", "--as", "alpha", NULL},
      {"op", "send", "--to", "beta", "--amount", "1", "--as", "alpha", NULL},
      {"op", "send", "--amount", "1", "--currency", "KES", "--as", "alpha", NULL},
      {"op", "send", "--to", "beta", "--to-msisdn", "2547", "--amount", "1", "--currency", "KES",
       "--as", "alpha", NULL},
      {"op", "send", "--to-msisdn", "2547000000000000", "--amount", "1", "--currency", "KES",
       "--as", "alpha", NULL},
      {"op", "send", "--to-msisdn", "+254700000000", "--amount", "1", "--currency", "KES", "--as",
       "alpha", NULL},
      {"op", "send", "--to", "Beta", "--amount", "1", "--currency", "KES", "--as", "alpha", NULL},
      {"op", "send", "--to", "beta", "--amount", "1", "--currency", "KES", "--as", "alpha", "--id",
       "0123456789abcdef0123456789abcde", NULL},
      {"op", "send", "--to", "beta", "--amount", "1", "--currency", "KES", "--as", "alpha", "--id",
       "0123456789abcdef0123456789abcdeg", NULL},
      {"op", "send", "--to", "beta", "--amount", "1", "--currency", "KES", "--as", "alpha",
       "--expires-in", "0", NULL},
      {"op", "send", "--to", "beta", "--amount", "1", "--currency", "KES", "--as", "alpha",
       "--with-condition", "--condition", "00", NULL},
      {"op", "send", "--to", "beta", "--amount", "1", "--currency", "KES", NULL}, /* no --as */
      {"op", "receive", "--as", "beta", "--reject", "4999", NULL},
      {"op", "receive", "--as", "beta", "--reject", "6000", NULL},
      {"op", "receive", "--as", "beta", "--fulfilment", "abc", NULL},
      {"op", "receive", "--as", "beta", "--register", "msisdn:25470a", NULL},
      {"op", "receive", "--as", "beta", "--register", "phone:254700000000", NULL},
      {"op", "receive", "--as", "beta", "--register", "254700000000", NULL},
      {"op", "receive", "--as", "beta", "--count", "0", NULL},
      {"op", "receive", "--as", "beta", "--to", "alpha", NULL}, /* not receive's option */
      {"op", "receive", "--as", "beta", "--timeout", "soon", NULL},
      {"op", "receive", "--as", "beta", "--connect", "localhost", NULL},
      {"op", "receive", "--as", "-beta", NULL},
      {"op", "query", "--as", "beta", NULL},
      {"op", "query", "--as", "beta", "--id", "00000000000000000000000000000000", NULL},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const char *args[T_ARGS];
    int n = 0, has_connect = 0;
    for (; cases[k][n] != NULL; n++) {
      args[n] = cases[k][n];
      has_connect |= strcmp(args[n], "--connect") == 0;
    }
    if (!has_connect) {
      args[n++] = "--connect";
      args[n++] = "127.0.0.1:1";
    }
    args[n] = NULL;
    static t_result r;
    t_run(NULL, &r, "usage", args);
    cr_expect_eq(r.status, 2, "case %zu (%s %s %s …): status %d, err %s", k, args[0],
                 args[1] ? args[1] : "", args[1] && args[2] ? args[2] : "", r.status, r.err);
    cr_expect_null(strstr(r.err, "cannot connect"), "case %zu tried to connect: %s", k, r.err);
    cr_expect_null(strstr(r.out, "transfer "), "case %zu started a transfer: %s", k, r.out);
    cr_expect_null(strstr(r.err, "2547000000000000"), "case %zu shows a party id: %s", k, r.err);
  }
  /* --help everywhere: status 0, usage on stdout. */
  static const char *const helps[][4] = {{"op", "--help", NULL},
                                         {"op", "receive", "--help", NULL},
                                         {"op", "send", "--help", NULL},
                                         {"op", "query", "-h", NULL}};
  for (size_t k = 0; k < sizeof helps / sizeof helps[0]; k++) {
    static t_result r;
    t_run(NULL, &r, "help", (const char *const *)helps[k]);
    cr_expect_eq(r.status, 0, "%s %s", helps[k][0], helps[k][1]);
    cr_expect_not_null(strstr(r.out, "usage: tuma op"), "%s", r.out);
  }
}
