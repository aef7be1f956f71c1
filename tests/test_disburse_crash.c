/* test_disburse_crash.c — the disbursement crash test (issue 5): tumad is killed with SIGKILL at
 * random moments while it pays a batch to simulated operators (tuma-opsim alpha and beta as the
 * payees, tests/switch_harness.h for tumad), restarted on the same data directory each time, and
 * left to finish; then every beneficiary's wallet was credited exactly once per cycle, and the
 * reconciliation report, the programme's budget, the ledger (read-only, after tumad stopped) and
 * the wallets agree.
 *
 * Scenarios: a batch of 300 at 40/s killed up to 5 times; a recurring batch (2 cycles, 3 s
 * apart) killed in both cycles; a payee offline while tumad is killed (items waiting for a retry
 * at the crash); without a kill, a payee offline then back (the report must name the transfer
 * that paid, not a try refused before the ledger); kills during the upload of a large list (the
 * batch is discarded at restart, the same file is then accepted and approved); the submitting
 * CLI killed mid-upload (tumad abandons it; restarts still work); a kill between submit and
 * approval; kills during approvals (no reservation may be left open or made twice).
 *
 * Randomness: the kill delays come from a seed drawn from the clock and printed on stderr
 * ("seed N"); TUMA_CRASH_SEED=N replays the same delays. Every loop is bounded in count and
 * time; no assertion is on a duration. When a test fails, its scratch directory is kept
 * (tumad.log across restarts, the commands' and opsims' output, commands.log, crashes.log).
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "ledger.h"
#include "switch_harness.h"

#define T_START 20000 /* ms: tumad start-up (a restart included) */
#define T_READY 20000 /* ms: an opsim connected and its wallets registered */
#define T_CMD 60000   /* ms: a command that should finish promptly */
/* ms: after the last restart, the batch completes (an item in flight at a crash may wait for
 * its 30 s expiry, then retry) */
#define T_FINISH 180000
/* ms: items waiting for a retry (no ledger transfer) paid once the payee is back (backoff 1 s
 * doubling, a few tries) */
#define T_RETRIED 90000
#define T_EXIT 30000 /* ms: an opsim stopping after SIGTERM */

enum {
  T_OUT = 1 << 21, /* a command's output, a report */
  T_ARGS = 64,
  T_FILE = 1 << 21, /* a list or registration file */
  MAX_WALLETS = 8192,
  MAX_ROWS = 4096, /* report rows read back */
  MAX_KILLS = 8,
};

static const char *const PROG = "relief";

/* ================================================================ processes */

static sh_switch *g_h;

/* The disbursement events of DIR/tumad.log (across restarts) to stderr: what a failure report
 * needs (resumed, cycle_started, …), without the connections of the status polls. */
static void dump_disburse_events(const sh_switch *h) {
  FILE *f = fopen(h->log, "r");
  if (f == NULL)
    return;
  char line[1024];
  int shown = 0;
  while (fgets(line, sizeof line, f) != NULL && shown < 200)
    if ((strstr(line, "event=disburse.") != NULL && strstr(line, "upload") == NULL) ||
        strstr(line, "event=transfers.recovered") != NULL) {
      fprintf(stderr, "[tumad] %s", line);
      shown++;
    }
  fclose(f);
}

static void dc_fini(void) {
  if (g_h == NULL)
    return;
  sh_dump_log(g_h, "tumad", 20);
  dump_disburse_events(g_h);
  fprintf(stderr, "[tumad] scratch directory kept: %s\n", g_h->dir);
  sh_destroy(g_h, 0);
  g_h = NULL;
}

TestSuite(disburse_crash, .fini = dc_fini, .timeout = 600);

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

typedef struct proc {
  pid_t pid;
  char out[SH_PATH_MAX + 64], err[SH_PATH_MAX + 64];
} proc;

/* Runs argv (argv[0] = the program) with stdout to DIR/TAG.out and stderr to DIR/TAG.err. */
static void proc_start(proc *p, const char *dir, const char *tag, const char *const *argv) {
  memset(p, 0, sizeof *p);
  snprintf(p->out, sizeof p->out, "%s/%s.out", dir, tag);
  snprintf(p->err, sizeof p->err, "%s/%s.err", dir, tag);
  pid_t parent = getpid();
  p->pid = fork();
  cr_assert_geq(p->pid, 0, "fork");
  if (p->pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(127);
    int o = open(p->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open(p->err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int nul = open("/dev/null", O_RDONLY);
    if (o < 0 || e < 0 || nul < 0)
      _exit(127);
    dup2(nul, 0);
    dup2(o, 1);
    dup2(e, 2);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
}

/* 1 if it ended (*status: its exit status, or -1 for a signal); 0 if still running. */
static int proc_poll(proc *p, int *status) {
  int st = 0;
  if (p->pid == 0 || waitpid(p->pid, &st, WNOHANG) != p->pid)
    return 0;
  p->pid = 0;
  *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return 1;
}

/* Waits at most timeout_ms; the exit status, or -1 if a signal ended it or it had to be killed. */
static int proc_wait(proc *p, int timeout_ms) {
  int64_t deadline = mono_ms() + timeout_ms;
  int st = 0;
  for (;;) {
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == p->pid)
      break;
    if (mono_ms() >= deadline) {
      kill(p->pid, SIGKILL);
      waitpid(p->pid, &st, 0);
      p->pid = 0;
      return -1;
    }
    sleep_ms(10);
  }
  p->pid = 0;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The whole file into buf[T_OUT] (NUL-terminated, truncated). */
static char *read_file(const char *path, char *buf) {
  buf[0] = '\0';
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return buf;
  size_t n = fread(buf, 1, T_OUT - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static int wait_for_text(const char *path, const char *needle, int timeout_ms) {
  static char buf[T_OUT];
  int64_t deadline = mono_ms() + timeout_ms;
  do {
    if (strstr(read_file(path, buf), needle) != NULL)
      return 1;
    sleep_ms(25);
  } while (mono_ms() < deadline);
  return 0;
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f, "cannot write %s", path);
  cr_assert_eq(fwrite(text, 1, strlen(text), f), strlen(text));
  cr_assert_eq(fclose(f), 0);
}

/* ================================================================ randomness */

/* The test's seed: TUMA_CRASH_SEED, else drawn from the clock; printed so a failure replays. */
static unsigned crash_seed(const char *test) {
  const char *env = getenv("TUMA_CRASH_SEED");
  unsigned seed;
  if (env != NULL && env[0] != '\0') {
    seed = (unsigned)strtoul(env, NULL, 10);
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed = (unsigned)ts.tv_sec * 1000003u ^ (unsigned)ts.tv_nsec ^ (unsigned)getpid();
  }
  fprintf(stderr, "[%s] seed %u (replay with TUMA_CRASH_SEED=%u)\n", test, seed, seed);
  return seed;
}

/* Uniform in [lo, hi]. */
static int draw(unsigned *seed, int lo, int hi) {
  return lo + (int)(rand_r(seed) % (unsigned)(hi - lo + 1));
}

/* ================================================================ the fixture */

typedef struct dz {
  sh_switch *h;
  proc op[2]; /* tuma-opsim alpha (0) and beta (1) */
  char data[2][SH_PATH_MAX + 32];
  int wallets; /* per operator */
  int ncli;    /* commands run so far (their output files are numbered) */
  int starts[2];
  int kills;
} dz;

static const char *const OPS[2] = {"alpha", "beta"};
static const char *const PREFIX[2] = {"25470", "25471"};

static const char *opsim_bin(void) {
  const char *p = getenv("TUMA_OPSIM");
  cr_assert(p != NULL && access(p, X_OK) == 0, "TUMA_OPSIM must name the tuma-opsim executable");
  return p;
}

/* The MSISDN of wallet i of operator op. */
static void wallet_msisdn(int op, int i, char *out, size_t cap) {
  snprintf(out, cap, "%s%07d", PREFIX[op], i);
}

/* Starts (or restarts, on the same data directory) operator op as a payee only. */
static void opsim_start(dz *z, int op) {
  char addr[64], wallets[16], tag[32], cert[SH_PATH_MAX + 80], key[SH_PATH_MAX + 80];
  snprintf(addr, sizeof addr, "127.0.0.1:%u", z->h->port);
  snprintf(wallets, sizeof wallets, "%d", z->wallets);
  snprintf(tag, sizeof tag, "%s-%d", OPS[op], ++z->starts[op]);
  snprintf(cert, sizeof cert, "%s", sh_cert(z->h, OPS[op]));
  snprintf(key, sizeof key, "%s", sh_key(z->h, OPS[op]));
  const char *argv[] = {opsim_bin(), "--connect",
                        addr,        "--pki",
                        z->h->pki,   "--ca",
                        z->h->ca,    "--cert",
                        cert,        "--key",
                        key,         "--as",
                        OPS[op],     "--data",
                        z->data[op], "--wallets",
                        wallets,     "--msisdn-prefix",
                        PREFIX[op],  "--initial-balance",
                        "0",         "--log-level",
                        "info",      NULL};
  proc_start(&z->op[op], z->h->dir, tag, argv);
  cr_assert(wait_for_text(z->op[op].err, "ready", T_READY), "%s ready (see %s)", OPS[op],
            z->op[op].err);
}

static void opsim_stop(dz *z, int op) {
  if (z->op[op].pid == 0)
    return;
  cr_assert_eq(kill(z->op[op].pid, SIGTERM), 0);
  cr_assert_eq(proc_wait(&z->op[op], T_EXIT), 0, "%s exits 0 on SIGTERM (see %s)", OPS[op],
               z->op[op].err);
}

/* A started tumad (64 KiB frames) and, if wallets > 0, both operators with that many wallets. */
static void dz_start(dz *z, int wallets) {
  memset(z, 0, sizeof *z);
  char err[512] = "";
  sh_options o = {.log_level = "info", .max_frame_bytes = 65536};
  cr_assert_eq(sh_create(&o, &z->h, err, sizeof err), 0, "%s", err);
  g_h = z->h;
  cr_assert_eq(sh_start(z->h, T_START, err, sizeof err), 0, "%s", err);
  cr_assert_lt(wallets, MAX_WALLETS);
  z->wallets = wallets;
  for (int op = 0; op < 2; op++)
    snprintf(z->data[op], sizeof z->data[op], "%s/%s.d", z->h->dir, OPS[op]);
  if (wallets > 0)
    for (int op = 0; op < 2; op++)
      opsim_start(z, op);
}

/* Stops the operators and tumad (which must exit 0 on SIGTERM); the scratch directory stays
 * until dz_destroy, so the ledger can be read in between. */
static void dz_stop(dz *z) {
  for (int op = 0; op < 2; op++)
    opsim_stop(z, op);
  int st = 0;
  cr_assert_eq(sh_stop(z->h, 15000, &st), 0, "tumad stops on SIGTERM");
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "tumad exits 0 (status %d)", st);
}

/* Removes the scratch directory (all went well). */
static void dz_destroy(dz *z) {
  g_h = NULL;
  sh_destroy(z->h, getenv("TUMA_TEST_KEEP") == NULL);
}

/* A line in DIR/crashes.log, and on stderr. */
static void crash_note(dz *z, const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  fprintf(stderr, "[crash] %s\n", line);
  char path[SH_PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/crashes.log", z->h->dir);
  FILE *f = fopen(path, "a");
  if (f != NULL) {
    fprintf(f, "%s\n", line);
    fclose(f);
  }
}

/* kill -9 tumad, wait down_ms, start it again on the same data directory and the same ports
 * (the opsims reconnect to the operator port by themselves, the CLI uses the admin port). */
static void crash_restart(dz *z, int down_ms) {
  uint16_t port = z->h->port, admin = z->h->admin_port;
  cr_assert_eq(sh_kill(z->h), 0, "kill -9 tumad (it was running)");
  z->kills++;
  sleep_ms(down_ms);
  char err[512] = "";
  cr_assert_eq(sh_start(z->h, T_START, err, sizeof err), 0, "restart after kill %d: %s", z->kills,
               err);
  cr_assert_eq(z->h->port, port,
               "tumad came back on its operator port (the opsims reconnect there)");
  cr_assert_eq(z->h->admin_port, admin, "tumad came back on its admin port");
}

/* How many times operator op registered its wallets with tumad (DIR/tumad.log, across
 * restarts): it does after every (re)connection. */
static int registrations(dz *z, int op) {
  static char text[T_OUT];
  read_file(z->h->log, text);
  char needle[64];
  snprintf(needle, sizeof needle, "event=party.registered peer=%s ", OPS[op]);
  int n = 0;
  for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
    n++;
  return n;
}

/* After a restart: waits (bounded) until both operators registered again, i.e. reconnected. */
static void wait_reconnected(dz *z, const int before[2]) {
  int64_t deadline = mono_ms() + T_READY;
  for (int op = 0; op < 2; op++)
    while (registrations(z, op) <= before[op]) {
      cr_assert_lt(mono_ms(), deadline, "%s reconnects to the restarted tumad", OPS[op]);
      sleep_ms(50);
    }
}

/* ================================================================ running the CLI */

typedef struct t_result {
  int status;
  char out[T_OUT], err[T_OUT];
} t_result;

static t_result *result_new(void) {
  t_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  return r;
}

/* The argv of `tuma ARGS… --connect … --ca … --cert AS.crt --key AS.key` into argv[T_ARGS]
 * (strings kept in store); logs it to DIR/commands.log under tag. */
typedef struct cli_argv {
  const char *argv[T_ARGS];
  char addr[64], cert[SH_PATH_MAX + 80], key[SH_PATH_MAX + 80], tag[32];
  int n;
} cli_argv;

static void cli_build(dz *z, cli_argv *a, const char *as, const char *const *args) {
  const char *bin = getenv("TUMA_CLI");
  cr_assert_not_null(bin, "TUMA_CLI is not set (run through meson test)");
  snprintf(a->addr, sizeof a->addr, "127.0.0.1:%u", z->h->admin_port);
  snprintf(a->cert, sizeof a->cert, "%s", sh_cert(z->h, as));
  snprintf(a->key, sizeof a->key, "%s", sh_key(z->h, as));
  int n = 0;
  a->argv[n++] = bin;
  for (size_t k = 0; args[k] != NULL; k++) {
    cr_assert_lt(n, T_ARGS - 10);
    a->argv[n++] = args[k];
  }
  const char *conn[] = {"--connect", a->addr, "--ca", z->h->ca, "--cert",
                        a->cert,     "--key", a->key, NULL};
  for (size_t k = 0; conn[k] != NULL; k++)
    a->argv[n++] = conn[k];
  a->argv[n] = NULL;
  a->n = n;
  snprintf(a->tag, sizeof a->tag, "cli-%03d", ++z->ncli);
  char log[SH_PATH_MAX + 32];
  snprintf(log, sizeof log, "%s/commands.log", z->h->dir);
  FILE *f = fopen(log, "a");
  if (f != NULL) {
    fprintf(f, "%s [%s]:", a->tag, as);
    for (int k = 1; k < n - 8; k++)
      fprintf(f, " %s", a->argv[k]);
    fprintf(f, "\n");
    fclose(f);
  }
}

/* Runs the command to completion (at most timeout_ms). The output stays in DIR/cli-N.*. */
static void cli_runv(dz *z, t_result *r, int timeout_ms, const char *as, const char *const *args) {
  cli_argv a;
  cli_build(z, &a, as, args);
  proc p;
  proc_start(&p, z->h->dir, a.tag, a.argv);
  r->status = proc_wait(&p, timeout_ms);
  read_file(p.out, r->out);
  read_file(p.err, r->err);
}

/* The same with the arguments as a variable list ending in NULL. */
static void cli_run(dz *z, t_result *r, const char *as, ...) {
  const char *args[T_ARGS];
  int n = 0;
  va_list ap;
  va_start(ap, as);
  for (const char *a; (a = va_arg(ap, const char *)) != NULL;) {
    cr_assert_lt(n, T_ARGS - 12);
    args[n++] = a;
  }
  va_end(ap);
  args[n] = NULL;
  cli_runv(z, r, T_CMD, as, args);
}

#define CLI_OK(z, r, as, ...)                                                                      \
  do {                                                                                             \
    cli_run((z), (r), (as), __VA_ARGS__, NULL);                                                    \
    cr_assert_eq((r)->status, 0, "tuma exits 0 (%d)\nstdout: %.2000s\nstderr: %.2000s",            \
                 (r)->status, (r)->out, (r)->err);                                                 \
  } while (0)

/* ================================================================ reading what it printed */

/* Major units "1234.50" (two decimals, KES) at p → minor units. */
static uint64_t kes_minor(const char *p) {
  uint64_t v = 0;
  int decimals = -1;
  for (; (*p >= '0' && *p <= '9') || *p == '.'; p++) {
    if (*p == '.') {
      decimals = 0;
      continue;
    }
    v = v * 10 + (uint64_t)(*p - '0');
    if (decimals >= 0)
      decimals++;
  }
  cr_assert_eq(decimals, 2, "an amount with two decimals: %.20s", p);
  return v;
}

/* The unsigned number after `key` in text (which must contain it). */
static uint64_t num_after(const char *text, const char *key) {
  const char *p = strstr(text, key);
  cr_assert_not_null(p, "'%s' in: %.2000s", key, text);
  p += strlen(key);
  while (*p == ' ')
    p++;
  char *end;
  uint64_t v = strtoull(p, &end, 10);
  cr_assert(end != p, "a number after '%s' in: %.2000s", key, text);
  return v;
}

/* "12345" minor → "123.45" (static ring of buffers). */
static const char *kes(uint64_t minor) {
  static char bufs[8][32];
  static int turn;
  char *b = bufs[turn++ % 8];
  snprintf(b, 32, "%" PRIu64 ".%02" PRIu64, minor / 100, minor % 100);
  return b;
}

static const char *u64s(uint64_t v) {
  static char bufs[8][24];
  static int turn;
  char *b = bufs[turn++ % 8];
  snprintf(b, 24, "%" PRIu64, v);
  return b;
}

typedef struct prog_info {
  uint64_t budget, reserved, available;
} prog_info;

static prog_info programme_show(dz *z) {
  t_result *r = result_new();
  CLI_OK(z, r, "admin", "disburse", "programme", "show", PROG);
  prog_info pi;
  const char *b = strstr(r->out, "budget"), *rs = strstr(r->out, "reserved"),
             *av = strstr(r->out, "available");
  cr_assert(b && rs && av, "budget, reserved, available: %s", r->out);
  pi.budget = kes_minor(b + strspn(b + 6, " ") + 6);
  pi.reserved = kes_minor(rs + strspn(rs + 8, " ") + 8);
  pi.available = kes_minor(av + strspn(av + 9, " ") + 9);
  free(r);
  return pi;
}

/* "batch N submitted" / "batch N already submitted" → N. */
static uint64_t batch_of(const t_result *r) {
  return num_after(r->out, "batch ");
}

typedef struct status {
  char state[32];
  uint32_t cycle;
  uint64_t n[6]; /* pending, in_flight, paid, failed, cancelled at 1..5 */
  uint64_t amount[6];
} status;

static const char *const ITEM[6] = {"", "pending", "in_flight", "paid", "failed", "cancelled"};

/* `tuma disburse status BATCH`; 0 if it answered (s filled), -1 if not (tumad being restarted). */
static int batch_status_try(dz *z, uint64_t batch, status *s) {
  t_result *r = result_new();
  const char *args[] = {"disburse", "status", u64s(batch), NULL};
  cli_runv(z, r, T_CMD, "manager", args);
  memset(s, 0, sizeof *s);
  if (r->status != 0) {
    free(r);
    return -1;
  }
  const char *p = strstr(r->out, "state ");
  cr_assert_not_null(
      p, "`tuma disburse status %" PRIu64 "` exited 0 without a state: stdout '%s' stderr '%s'",
      batch, r->out, r->err);
  sscanf(p + 6, "%31s", s->state);
  const char *c = strstr(r->out, "  cycle ");
  if (c != NULL)
    s->cycle = (uint32_t)strtoul(c + 8, NULL, 10);
  for (int k = 1; k <= 5; k++) {
    char key[32];
    snprintf(key, sizeof key, "\n  %s ", ITEM[k]);
    const char *q = strstr(r->out, key);
    cr_assert_not_null(q, "a %s line: %s", ITEM[k], r->out);
    q += strlen(key);
    char *end;
    s->n[k] = strtoull(q, &end, 10);
    while (*end == ' ')
      end++;
    s->amount[k] = kes_minor(end);
  }
  free(r);
  return 0;
}

static status batch_status(dz *z, uint64_t batch) {
  status s;
  cr_assert_eq(batch_status_try(z, batch, &s), 0, "tuma disburse status %" PRIu64 " answers",
               batch);
  return s;
}

/* Polls the batch's status (every 250 ms, at most timeout_ms) until its state is `state`. */
static status wait_state(dz *z, uint64_t batch, const char *state, int timeout_ms) {
  int64_t deadline = mono_ms() + timeout_ms;
  status s;
  for (int polls = 0;; polls++) {
    s = batch_status(z, batch);
    if (strcmp(s.state, state) == 0)
      return s;
    cr_assert(mono_ms() < deadline && polls < 100000,
              "batch %" PRIu64 " never became %s within %d ms (state %s, cycle %" PRIu32
              ": pending %" PRIu64 ", in flight %" PRIu64 ", paid %" PRIu64 ", failed %" PRIu64
              ", cancelled %" PRIu64 "); see crashes.log and tumad.log (disburse.resumed)",
              batch, state, timeout_ms, s.state, s.cycle, s.n[1], s.n[2], s.n[3], s.n[4], s.n[5]);
    sleep_ms(250);
  }
}

/* ---- the CSV report ---- */

typedef struct row {
  uint32_t cycle;
  uint64_t line;
  char status[16], transfer_id[40], op[64];
  uint64_t amount;
} row;

typedef struct report {
  row *rows;
  size_t n;
  uint64_t paid_total;
} report;

/* Splits one CSV line into at most max fields (quotes honoured) in place. */
static size_t csv_split(char *line, char **fields, size_t max) {
  size_t n = 0;
  char *w = line, *p = line;
  while (n < max) {
    fields[n++] = w;
    int quoted = *p == '"';
    if (quoted)
      p++;
    for (;;) {
      if (*p == '\0')
        break;
      if (quoted && *p == '"') {
        if (p[1] == '"') {
          *w++ = '"';
          p += 2;
          continue;
        }
        quoted = 0;
        p++;
        continue;
      }
      if (!quoted && *p == ',')
        break;
      *w++ = *p++;
    }
    int more = *p == ',';
    *w++ = '\0';
    if (!more)
      break;
    p++;
    w = p;
  }
  return n;
}

/* `tuma disburse report BATCH --csv`: the rows; rows' status is checked by the caller. */
static report get_report(dz *z, uint64_t batch) {
  t_result *r = result_new();
  char out[SH_PATH_MAX + 32];
  snprintf(out, sizeof out, "%s/report-%" PRIu64 "-%d.csv", z->h->dir, batch, z->ncli);
  CLI_OK(z, r, "approver", "disburse", "report", u64s(batch), "--csv", "--out", out);
  free(r);
  static char text[T_OUT];
  read_file(out, text);
  report rep;
  memset(&rep, 0, sizeof rep);
  rep.rows = calloc(MAX_ROWS, sizeof(row));
  cr_assert_not_null(rep.rows);
  char *line = text, *nl = strchr(line, '\n');
  cr_assert_not_null(nl, "a header line: %s", text);
  *nl = '\0';
  cr_assert_str_eq(line,
                   "cycle,line,beneficiary,reference,amount,currency,status,reason_code,reason,"
                   "transfer_id,completed_at,operator");
  for (line = nl + 1; *line != '\0'; line = nl + 1) {
    nl = strchr(line, '\n');
    cr_assert_not_null(nl, "lines end with a newline");
    *nl = '\0';
    if (line[0] == '#')
      break;
    char *f[16];
    cr_assert_eq(csv_split(line, f, 16), 12, "12 fields in '%s'", line);
    cr_assert_lt(rep.n, MAX_ROWS);
    row *w = &rep.rows[rep.n++];
    w->cycle = (uint32_t)strtoul(f[0], NULL, 10);
    w->line = strtoull(f[1], NULL, 10);
    w->amount = kes_minor(f[4]);
    snprintf(w->status, sizeof w->status, "%s", f[6]);
    snprintf(w->transfer_id, sizeof w->transfer_id, "%s", f[9]);
    snprintf(w->op, sizeof w->op, "%s", f[11]);
    if (strcmp(w->status, "paid") == 0)
      rep.paid_total += w->amount;
  }
  return rep;
}

/* ---- tuma-opsim's side ---- */

static uint64_t json_u64(const char *from, const char *key) {
  char pat[96];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = strstr(from, pat);
  cr_assert_not_null(p, "no %s in %.400s", pat, from);
  return strtoull(p + strlen(pat), NULL, 10);
}

static const char *json_obj(const char *from, const char *key) {
  char pat[96];
  snprintf(pat, sizeof pat, "\"%s\":{", key);
  const char *p = strstr(from, pat);
  cr_assert_not_null(p, "no %s in %.400s", pat, from);
  return p + strlen(pat) - 1;
}

/* Runs `tuma-opsim WHAT --data DIR` (it may run beside the operator) into out. */
static void opsim_print(dz *z, int op, const char *what, char *out) {
  const char *argv[] = {opsim_bin(), what, "--data", z->data[op], NULL};
  char tag[48];
  snprintf(tag, sizeof tag, "%s-%s-%d", OPS[op], what, ++z->ncli);
  proc p;
  proc_start(&p, z->h->dir, tag, argv);
  cr_assert_eq(proc_wait(&p, T_CMD), 0, "tuma-opsim %s --data %s exits 0", what, z->data[op]);
  read_file(p.out, out);
}

/* An id as 32 lower-case hex digits without dashes (opsim prints UUIDs, the report plain hex). */
static void id_norm(const char *in, char out[33]) {
  size_t n = 0;
  for (; *in != '\0' && *in != '"' && n < 32; in++)
    if (*in != '-')
      out[n++] = (char)tolower((unsigned char)*in);
  out[n] = '\0';
}

typedef struct credits {
  uint64_t in_count, in_amount, pending;
  uint32_t per_wallet[MAX_WALLETS]; /* committed credits per wallet index */
  uint64_t amount_wallet[MAX_WALLETS];
  char (*ids)[33]; /* the committed credits' transfer ids, in_count of them */
} credits;

/* The operator's committed credits (from `totals` and `history`, which must agree). The caller
 * frees c->ids. */
static void opsim_credits(dz *z, int op, credits *c) {
  static char text[T_OUT];
  memset(c, 0, sizeof *c);
  opsim_print(z, op, "totals", text);
  c->in_count = json_u64(json_obj(text, "committed_in"), "count");
  c->in_amount = json_u64(json_obj(text, "committed_in"), "amount");
  c->pending = json_u64(json_obj(text, "pending_credits"), "count");
  cr_assert(strstr(text, "\"reconciled\":true") != NULL, "%s's totals reconcile: %s", OPS[op],
            text);
  c->ids = calloc(c->in_count + 1, sizeof *c->ids);
  cr_assert_not_null(c->ids);
  opsim_print(z, op, "history", text);
  uint64_t n = 0;
  for (char *line = text, *nl; *line != '\0'; line = nl + 1) {
    nl = strchr(line, '\n');
    cr_assert_not_null(nl);
    *nl = '\0';
    if (strstr(line, "\"kind\":\"credit\"") == NULL ||
        strstr(line, "\"outcome\":\"COMMITTED\"") == NULL)
      continue;
    uint64_t w = json_u64(line, "wallet");
    cr_assert_lt(w, MAX_WALLETS);
    c->per_wallet[w]++;
    c->amount_wallet[w] += json_u64(line, "amount");
    const char *id = strstr(line, "\"id\":\"");
    cr_assert_not_null(id, "%s", line);
    cr_assert_lt(n, c->in_count, "%s: more credits in the history than in the totals", OPS[op]);
    id_norm(id + 6, c->ids[n]);
    n++;
  }
  cr_assert_eq(n, c->in_count, "%s: history and totals agree on the credits", OPS[op]);
}

/* ================================================================ files */

typedef struct ben {
  int op;     /* 0 alpha, 1 beta */
  int wallet; /* its index */
  char id[16];
  uint64_t amount; /* minor units, in a list */
} ben;

/* Beneficiary k: national id 3000000k (8 digits), alternately on alpha and beta, wallet k/2;
 * amounts 100.00 + 1.25 × (k mod 997), under the programme's cap. */
static ben ben_make(int k) {
  ben b;
  memset(&b, 0, sizeof b);
  b.op = k % 2;
  b.wallet = k / 2;
  snprintf(b.id, sizeof b.id, "3%07d", k);
  b.amount = 10000 + 125 * (uint64_t)(k % 997);
  return b;
}

/* Registers beneficiaries 0..n-1 with one upload; the registration must take every row. */
static void register_beneficiaries(dz *z, int n) {
  static char text[T_FILE];
  size_t len =
      (size_t)snprintf(text, sizeof text, "beneficiary_id_type,beneficiary_id,msisdn,operator\n");
  for (int k = 0; k < n; k++) {
    ben b = ben_make(k);
    char m[24];
    wallet_msisdn(b.op, b.wallet, m, sizeof m);
    len += (size_t)snprintf(text + len, sizeof text - len, "national_id,%s,%s,\n", b.id, m);
    cr_assert_lt(len, sizeof text - 64);
  }
  char path[SH_PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/beneficiaries.csv", z->h->dir);
  write_file(path, text);
  t_result *r = result_new();
  CLI_OK(z, r, "manager", "disburse", "beneficiary", "upload", "--file", path);
  char want[64];
  snprintf(want, sizeof want, "registered %d, refused 0", n);
  cr_assert(strstr(r->out, want) != NULL, "'%s' in: %s", want, r->out);
  free(r);
}

/* Writes a list file NAME (in DIR) with beneficiaries first..first+n-1; *total gets the sum of
 * their amounts. Returns the path (static). */
static const char *write_list_from(dz *z, const char *name, int first, int n, uint64_t *total) {
  static char path[SH_PATH_MAX + 64];
  static char text[T_FILE];
  size_t len = (size_t)snprintf(text, sizeof text,
                                "beneficiary_id_type,beneficiary_id,amount,currency,reference\n");
  uint64_t sum = 0;
  for (int k = first; k < first + n; k++) {
    ben b = ben_make(k);
    len += (size_t)snprintf(text + len, sizeof text - len,
                            "national_id,%s,%" PRIu64 ".%02" PRIu64 ",KES,relief-%d\n", b.id,
                            b.amount / 100, b.amount % 100, k);
    cr_assert_lt(len, sizeof text - 64);
    sum += b.amount;
  }
  snprintf(path, sizeof path, "%s/%s", z->h->dir, name);
  write_file(path, text);
  *total = sum;
  return path;
}

/* The same from beneficiary 0. */
static const char *write_list(dz *z, const char *name, int n, uint64_t *total) {
  return write_list_from(z, name, 0, n, total);
}

/* The programme: funded by gamma's programme account, cap 5000.00 per beneficiary and cycle,
 * budget `fund` (minor units). */
static void make_programme(dz *z, uint64_t fund) {
  t_result *r = result_new();
  CLI_OK(z, r, "admin", "disburse", "programme", "create", "--id", PROG, "--name",
         "Drought relief 2026", "--currency", "KES", "--funding", "gamma", "--cap", "5000");
  CLI_OK(z, r, "admin", "disburse", "programme", "fund", "--programme", PROG, "--amount",
         kes(fund));
  free(r);
}

/* The argument list of a submit for cycle 1 (strings static until the next call). */
static void submit_args(const char **args, const char *path, uint64_t count, uint64_t total,
                        const char *const *extra) {
  static char c[24], t[32];
  snprintf(c, sizeof c, "%" PRIu64, count);
  snprintf(t, sizeof t, "%s", kes(total));
  const char *base[] = {"disburse", "submit", "--programme",    PROG, "--cycle",        "1",
                        "--file",   path,     "--expect-count", c,    "--expect-total", t,
                        NULL};
  int n = 0;
  for (; base[n] != NULL; n++)
    args[n] = base[n];
  for (size_t k = 0; extra != NULL && extra[k] != NULL; k++)
    args[n++] = extra[k];
  args[n] = NULL;
}

/* Submits as manager (must be accepted whole); returns the batch. */
static uint64_t submit_ok(dz *z, const char *path, uint64_t count, uint64_t total,
                          const char *const *extra) {
  const char *args[T_ARGS];
  submit_args(args, path, count, total, extra);
  t_result *r = result_new();
  cli_runv(z, r, T_CMD, "manager", args);
  cr_assert_eq(r->status, 0, "submit: %s%s", r->out, r->err);
  char want[128];
  snprintf(want, sizeof want, "submitted: %" PRIu64 " valid rows, total %s KES; 0 invalid", count,
           kes(total));
  cr_assert(strstr(r->out, want) != NULL, "'%s' in: %s", want, r->out);
  uint64_t batch = batch_of(r);
  free(r);
  return batch;
}

static void approve_ok(dz *z, uint64_t batch) {
  t_result *r = result_new();
  CLI_OK(z, r, "approver", "disburse", "approve", u64s(batch));
  cr_assert(strstr(r->out, "approved") != NULL, "%s", r->out);
  free(r);
}

/* ================================================================ crashing */

/* Up to `rounds` times: wait a random lo..hi ms, kill -9 tumad, leave it down 0..400 ms, start
 * it again; stops early once the batch is completed or (cycle > 0) has moved past `cycle`.
 * Returns the kills done. */
static int crash_rounds(dz *z, unsigned *seed, uint64_t batch, uint32_t cycle, int rounds, int lo,
                        int hi) {
  cr_assert_leq(rounds, MAX_KILLS);
  int done = 0;
  for (int k = 0; k < rounds; k++) {
    int delay = draw(seed, lo, hi), down = draw(seed, 0, 400);
    sleep_ms(delay);
    crash_restart(z, down);
    done++;
    status s;
    int answered = batch_status_try(z, batch, &s) == 0;
    crash_note(z,
               "kill %d: after %d ms, down %d ms; then state %s cycle %" PRIu32 " paid %" PRIu64
               " pending %" PRIu64 " in flight %" PRIu64 " failed %" PRIu64,
               z->kills, delay, down, answered ? s.state : "?", s.cycle, s.n[3], s.n[1], s.n[2],
               s.n[4]);
    if (answered && (strcmp(s.state, "completed") == 0 || (cycle > 0 && s.cycle > cycle)))
      break;
  }
  return done;
}

/* ================================================================ reconciling */

/* Everything after a batch of n beneficiaries (0..n-1, the list's amounts, total per cycle)
 * paid for `cycles` cycles completed: the wallets, the report, the budget (before → now). The
 * report is returned for the ledger check. */
static report reconcile(dz *z, uint64_t batch, int n, uint32_t cycles, uint64_t total,
                        prog_info before, credits c[2]) {
  /* (1) the wallets: each beneficiary's credited exactly once per cycle with its amount */
  uint64_t credited = 0, paid_twice = 0, missing = 0;
  for (int op = 0; op < 2; op++) {
    opsim_credits(z, op, &c[op]);
    cr_assert_eq(c[op].pending, 0, "%s: no credit left pending", OPS[op]);
    credited += c[op].in_amount;
  }
  for (int k = 0; k < n; k++) {
    ben b = ben_make(k);
    uint32_t got = c[b.op].per_wallet[b.wallet];
    if (got > cycles)
      paid_twice++;
    if (got < cycles)
      missing++;
    if (got != cycles || c[b.op].amount_wallet[b.wallet] != cycles * b.amount)
      fprintf(stderr,
              "[reconcile] %s wallet %d (beneficiary %d): %u credits, %" PRIu64
              " minor units; want %u × %" PRIu64 "\n",
              OPS[b.op], b.wallet, k, got, c[b.op].amount_wallet[b.wallet], cycles, b.amount);
  }
  cr_assert_eq(paid_twice, 0, "no wallet credited more than once per cycle (%" PRIu64 " were)",
               paid_twice);
  cr_assert_eq(missing, 0, "every wallet credited in every cycle (%" PRIu64 " were not)", missing);
  for (int k = 0; k < n; k++) {
    ben b = ben_make(k);
    cr_assert_eq(c[b.op].amount_wallet[b.wallet], cycles * b.amount,
                 "%s wallet %d: the row's amount each cycle", OPS[b.op], b.wallet);
  }
  cr_assert_eq(c[0].in_count + c[1].in_count, (uint64_t)n * cycles,
               "the operators saw no other credit");
  cr_assert_eq(credited, cycles * total, "the wallets got the list's total each cycle");

  /* (2) the report: every row paid, once per (cycle, line), its total = the wallets' */
  report rep = get_report(z, batch);
  cr_assert_eq(rep.n, (uint64_t)n * cycles, "%d rows per cycle", n);
  uint32_t per_cycle[8] = {0};
  for (size_t i = 0; i < rep.n; i++) {
    const row *w = &rep.rows[i];
    cr_assert_str_eq(w->status, "paid", "cycle %" PRIu32 " line %" PRIu64 " is %s", w->cycle,
                     w->line, w->status);
    cr_assert(w->cycle >= 1 && w->cycle <= cycles && w->cycle < 8, "cycle %" PRIu32, w->cycle);
    per_cycle[w->cycle]++;
    ben b = ben_make((int)w->line - 2);
    cr_assert_eq(w->amount, b.amount, "line %" PRIu64, w->line);
    cr_assert_str_eq(w->op, OPS[b.op], "line %" PRIu64, w->line);
    cr_assert_eq(strlen(w->transfer_id), 32, "a transfer id of 32 hex: %s", w->transfer_id);
  }
  for (uint32_t cy = 1; cy <= cycles; cy++)
    cr_assert_eq(per_cycle[cy], (uint32_t)n, "cycle %" PRIu32 ": %d rows", cy, n);
  cr_assert_eq(rep.paid_total, credited, "the report's paid total = the wallets' credits");
  /* each paid row's transfer is a credit one of the wallets got, and the other way round */
  for (size_t i = 0; i < rep.n; i++) {
    char want[33];
    id_norm(rep.rows[i].transfer_id, want);
    int op = strcmp(rep.rows[i].op, "alpha") == 0 ? 0 : 1, found = 0;
    for (uint64_t j = 0; j < c[op].in_count && !found; j++)
      found = strcmp(c[op].ids[j], want) == 0;
    cr_assert(found,
              "the report's transfer %s (cycle %" PRIu32 " line %" PRIu64
              ") is a committed credit at %s",
              want, rep.rows[i].cycle, rep.rows[i].line, OPS[op]);
    for (size_t j = 0; j < i; j++)
      cr_assert_str_neq(rep.rows[j].transfer_id, rep.rows[i].transfer_id, "transfer ids differ");
  }

  /* (3) the budget went down by exactly the paid total; nothing stays reserved */
  prog_info after = programme_show(z);
  cr_assert_eq(before.budget - after.budget, rep.paid_total,
               "the budget moved by the paid total (before %" PRIu64 ", after %" PRIu64
               ", paid %" PRIu64 ")",
               before.budget, after.budget, rep.paid_total);
  cr_assert_eq(after.reserved, 0, "nothing stays reserved (%" PRIu64 ")", after.reserved);
  cr_assert_eq(after.available, after.budget);
  return rep;
}

/* 32 hex digits → a ledger id (big endian, UUID order: the first 16 digits are hi). */
static ledger_id hex_id(const char *hex) {
  uint64_t half[2] = {0, 0};
  for (int i = 0; i < 32; i++) {
    char ch = (char)tolower((unsigned char)hex[i]);
    unsigned v = ch >= 'a' ? (unsigned)(ch - 'a' + 10) : (unsigned)(ch - '0');
    half[i / 16] = half[i / 16] << 4 | v;
  }
  return ledger_id_make(half[0], half[1]);
}

/* The auditor's check (ledger/audit.h, what `tuma audit verify` runs): the hash chain from
 * genesis, a replay of every record, every stored account, transfer and pending row compared. */
static void audit_ledger(const char *dir) {
  ledger_audit_report rep;
  char err[256] = "";
  int rc = ledger_audit_verify(dir, NULL, &rep, NULL, err, sizeof err);
  cr_assert_eq(rc, 0, "tuma audit verify %s: %s at record %llu: %s %s", dir,
               ledger_audit_problem_name(rep.problem), (unsigned long long)rep.bad_seq,
               rep.detail, err);
  cr_assert(rep.replayed && rep.compared, "the audit replayed and compared");
}

/* (4) The ledger, read-only, after tumad stopped: Σ debits = Σ credits (posted and pending), the
 * journal's hash chain verifies; each paid row's transfer is a posted pending transfer of its
 * amount out of its cycle's ESCROW account; each ESCROW account holds exactly one posted item
 * per row of its cycle, nothing open, and ends at zero; the programme's FUNDING account has
 * nothing pending and its balance is the budget `tuma disburse programme show` printed;
 * what each payee's account received from the escrows is what its wallets got; and the full
 * audit (replay and comparison) passes. */
static void check_ledger(dz *z, const report *rep, uint32_t cycles, const credits c[2],
                         uint64_t budget) {
  ledger *l = NULL;
  ledger_options o = {0};
  o.flags = LEDGER_OPEN_READ_ONLY;
  int rc = ledger_open(z->h->ledger_dir, &o, &l);
  cr_assert_eq(rc, 0, "ledger_open(%s) read-only: %s", z->h->ledger_dir, ledger_strerror(rc));
  ledger_totals tot;
  cr_assert_eq(ledger_totals_of(l, &tot), 0);
  cr_assert(tot.debits_posted == tot.credits_posted, "Σ debits_posted = Σ credits_posted");
  cr_assert(tot.debits_pending == tot.credits_pending, "Σ debits_pending = Σ credits_pending");
  uint64_t bad = 0;
  cr_assert_eq(ledger_journal_verify(l, &bad), 0,
               "the journal verifies (fails at record %" PRIu64 ")", bad);

  ledger_id escrow[8], payee[2];
  int have_escrow[8] = {0}, have_payee[2] = {0};
  uint64_t rows_of[8] = {0}, amount_of[8] = {0}, to_payee[2] = {0};
  for (size_t i = 0; i < rep->n; i++) {
    const row *w = &rep->rows[i];
    ledger_id id = hex_id(w->transfer_id);
    ledger_transfer t;
    cr_assert_eq(ledger_lookup_transfer(l, id, &t), 0, "transfer %s is in the ledger",
                 w->transfer_id);
    ledger_pending_state ps = LEDGER_PENDING_NONE;
    cr_assert_eq(ledger_pending_state_of(l, id, &ps, NULL), 0);
    cr_assert(t.flags & LEDGER_TRANSFER_PENDING, "%s is a two-phase transfer", w->transfer_id);
    cr_assert_eq(ps, LEDGER_PENDING_POSTED, "%s is posted (state %d)", w->transfer_id, (int)ps);
    cr_assert_eq(t.amount, w->amount, "%s: the row's amount", w->transfer_id);
    cr_assert(t.debit_account_id.lo >> 63, "%s is paid out of an ESCROW account", w->transfer_id);
    cr_assert_eq(t.debit_account_id.lo & 0xfffffu, w->cycle, "%s: its cycle's ESCROW",
                 w->transfer_id);
    if (!have_escrow[w->cycle]) {
      escrow[w->cycle] = t.debit_account_id;
      have_escrow[w->cycle] = 1;
    }
    cr_assert(ledger_id_eq(escrow[w->cycle], t.debit_account_id), "one ESCROW account per cycle");
    int op = strcmp(w->op, "alpha") == 0 ? 0 : 1;
    if (!have_payee[op]) {
      payee[op] = t.credit_account_id;
      have_payee[op] = 1;
    }
    cr_assert(ledger_id_eq(payee[op], t.credit_account_id), "one payee account per operator");
    rows_of[w->cycle]++;
    amount_of[w->cycle] += w->amount;
    to_payee[op] += w->amount;
  }
  if (have_payee[0] && have_payee[1])
    cr_assert(!ledger_id_eq(payee[0], payee[1]), "alpha and beta have their own accounts");
  for (int op = 0; op < 2; op++)
    cr_assert_eq(to_payee[op], c[op].in_amount,
                 "%s's account got from the escrows what its wallets got", OPS[op]);

  enum { CAP = 16384 };
  ledger_transfer *ts = calloc(CAP, sizeof *ts);
  cr_assert_not_null(ts);
  ledger_id funding = {0, 0};
  for (uint32_t cy = 1; cy <= cycles; cy++) {
    cr_assert(have_escrow[cy], "cycle %" PRIu32 " has an ESCROW account", cy);
    ledger_account a;
    cr_assert_eq(ledger_lookup_account(l, escrow[cy], &a), 0);
    cr_assert_eq(a.debits_pending, 0, "cycle %" PRIu32 ": no item still open", cy);
    cr_assert_eq(a.credits_pending, 0, "cycle %" PRIu32 ": no reservation still open", cy);
    cr_assert_eq(a.credits_posted, a.debits_posted, "cycle %" PRIu32 ": the ESCROW ends at 0", cy);
    cr_assert_eq(a.debits_posted, amount_of[cy], "cycle %" PRIu32 ": the items and nothing else",
                 cy);
    ledger_account_filter f = {.account_id = escrow[cy], .limit = CAP};
    size_t nt = 0;
    cr_assert_eq(ledger_account_transfers(l, &f, ts, CAP, &nt), 0);
    cr_assert_lt(nt, (size_t)CAP);
    uint64_t posted_items = 0, posted_amount = 0;
    for (size_t k = 0; k < nt; k++) {
      const ledger_transfer *t = &ts[k];
      if (!(t->flags & LEDGER_TRANSFER_PENDING))
        continue;
      ledger_pending_state ps = LEDGER_PENDING_NONE;
      cr_assert_eq(ledger_pending_state_of(l, t->id, &ps, NULL), 0);
      cr_assert_neq(ps, LEDGER_PENDING_OPEN, "cycle %" PRIu32 ": nothing left open", cy);
      if (ledger_id_eq(t->debit_account_id, escrow[cy])) {
        if (ps == LEDGER_PENDING_POSTED) {
          posted_items++;
          posted_amount += t->amount;
        }
      } else if (ledger_id_eq(t->credit_account_id, escrow[cy]) && ps == LEDGER_PENDING_POSTED) {
        funding = t->debit_account_id; /* the reservation, posted at the cycle's start */
      }
    }
    cr_assert_eq(posted_items, rows_of[cy],
                 "cycle %" PRIu32 ": one posted payment per row out of the ESCROW (%" PRIu64
                 " posted, %" PRIu64 " rows) — nobody paid twice",
                 cy, posted_items, rows_of[cy]);
    cr_assert_eq(posted_amount, amount_of[cy]);
  }
  free(ts);
  cr_assert(funding.lo != 0 || funding.hi != 0, "the reservation's FUNDING account was found");
  ledger_account fa;
  cr_assert_eq(ledger_lookup_account(l, funding, &fa), 0);
  cr_assert_eq(fa.debits_pending, 0, "no reservation left pending on the FUNDING account");
  cr_assert_eq(fa.credits_posted - fa.debits_posted, budget,
               "the FUNDING account's balance is the programme's budget");
  ledger_close(l);
  audit_ledger(z->h->ledger_dir);
}

/* ================================================================ tests */

/* 300 beneficiaries on alpha and beta at 40 items/s (about 8 s of paying); tumad is killed up to
 * 5 times at random moments (the first right after the approval), restarted each time, and left
 * to finish. */
Test(disburse_crash, batch_survives_random_kills) {
  unsigned seed = crash_seed("batch_survives_random_kills");
  enum { N = 300 };
  dz z;
  dz_start(&z, N / 2);
  make_programme(&z, 100000000);
  prog_info before = programme_show(&z);
  register_beneficiaries(&z, N);
  uint64_t total = 0;
  const char *path = write_list(&z, "list.csv", N, &total);
  const char *rate[] = {"--rate", "40", NULL};
  uint64_t batch = submit_ok(&z, path, N, total, rate);
  approve_ok(&z, batch);
  /* the first within 150 ms of the approval (the cycle being funded, the first items), then
     up to 4 more while it pays */
  int kills = crash_rounds(&z, &seed, batch, 0, 1, 0, 150);
  kills += crash_rounds(&z, &seed, batch, 0, 4, 300, 2500);
  cr_assert_gt(kills, 0);
  wait_state(&z, batch, "completed", T_FINISH);
  credits c[2];
  report rep = reconcile(&z, batch, N, 1, total, before, c);
  prog_info after = programme_show(&z);
  dz_stop(&z);
  check_ledger(&z, &rep, 1, c, after.budget);
  free(rep.rows);
  free(c[0].ids);
  free(c[1].ids);
  dz_destroy(&z);
}

/* A recurring batch, 2 cycles 3 s apart, 200 beneficiaries at 50/s: up to 3 kills in cycle 1,
 * then up to 3 once cycle 2 is under way (waiting for its start or paying); every wallet
 * credited exactly twice. */
Test(disburse_crash, recurring_batch_survives_random_kills) {
  unsigned seed = crash_seed("recurring_batch_survives_random_kills");
  enum { N = 200 };
  dz z;
  dz_start(&z, N / 2);
  make_programme(&z, 100000000);
  prog_info before = programme_show(&z);
  register_beneficiaries(&z, N);
  uint64_t total = 0;
  const char *path = write_list(&z, "list.csv", N, &total);
  const char *extra[] = {"--rate", "50", "--cycles", "2", "--every", "3s", NULL};
  uint64_t batch = submit_ok(&z, path, N, total, extra);
  approve_ok(&z, batch);
  int kills = crash_rounds(&z, &seed, batch, 1, 3, 300, 2000);
  int64_t deadline = mono_ms() + T_FINISH;
  status s;
  for (;;) { /* cycle 2 under way (waiting for its start, or paying) */
    s = batch_status(&z, batch);
    if (s.cycle >= 2 || strcmp(s.state, "completed") == 0)
      break;
    cr_assert(mono_ms() < deadline,
              "cycle 2 begins (state %s, cycle %" PRIu32 ": pending %" PRIu64 ", in flight %" PRIu64
              ", paid %" PRIu64 ", failed %" PRIu64 "); see crashes.log and tumad.log",
              s.state, s.cycle, s.n[1], s.n[2], s.n[3], s.n[4]);
    sleep_ms(100);
  }
  crash_note(&z, "cycle %" PRIu32 " (%s): paid %" PRIu64 " of its items", s.cycle, s.state, s.n[3]);
  if (strcmp(s.state, "completed") != 0)
    kills += crash_rounds(&z, &seed, batch, 2, 3, 200, 2000);
  cr_assert_gt(kills, 0);
  wait_state(&z, batch, "completed", T_FINISH);
  credits c[2];
  report rep = reconcile(&z, batch, N, 2, total, before, c);
  prog_info after = programme_show(&z);
  dz_stop(&z);
  check_ledger(&z, &rep, 2, c, after.budget);
  free(rep.rows);
  free(c[0].ids);
  free(c[1].ids);
  dz_destroy(&z);
}

/* beta is offline, so its items wait for a retry (payee not connected); tumad is killed while
 * they wait and restarted, then beta comes back: every item must still be paid, once. */
Test(disburse_crash, items_waiting_for_a_retry_survive_a_kill) {
  enum { N = 40 };
  dz z;
  dz_start(&z, N / 2);
  make_programme(&z, 100000000);
  prog_info before = programme_show(&z);
  register_beneficiaries(&z, N);
  uint64_t total = 0;
  const char *path = write_list(&z, "list.csv", N, &total);
  opsim_stop(&z, 1);
  uint64_t batch = submit_ok(&z, path, N, total, NULL);
  approve_ok(&z, batch);
  int64_t deadline = mono_ms() + T_FINISH;
  status s;
  do { /* alpha's half paid, beta's half tried at least once and waiting */
    sleep_ms(250);
    s = batch_status(&z, batch);
    cr_assert(mono_ms() < deadline, "alpha's %d items paid (paid %" PRIu64 ")", N / 2, s.n[3]);
  } while (s.n[3] < N / 2);
  sleep_ms(1500); /* the statuses of the waiting items are flushed (every 500 ms) */
  s = batch_status(&z, batch);
  cr_assert_eq(s.n[3], N / 2, "only alpha's items are paid while beta is away");
  cr_assert_eq(s.n[1], N / 2, "beta's items are pending (waiting for a retry)");
  crash_restart(&z, 100);
  crash_note(&z, "killed with %d items of beta waiting for a retry", N / 2);
  opsim_start(&z, 1);
  wait_state(&z, batch, "completed", T_RETRIED);
  credits c[2];
  report rep = reconcile(&z, batch, N, 1, total, before, c);
  prog_info after = programme_show(&z);
  dz_stop(&z);
  check_ledger(&z, &rep, 1, c, after.budget);
  free(rep.rows);
  free(c[0].ids);
  free(c[1].ids);
  dz_destroy(&z);
}

/* No kill: beta is offline at first, so each of its items has a try refused before the ledger
 * (3201, payee not reachable), then is paid once beta is back. The reconciliation must still
 * hold: the report's transfer id of each paid row is the transfer that credited the wallet and
 * is posted in the ledger (the crash tests meet this after every restart, when tumad starts
 * paying before the operators have reconnected). */
Test(disburse_crash, report_names_the_paid_transfer_after_retries) {
  enum { N = 20 };
  dz z;
  dz_start(&z, N / 2);
  make_programme(&z, 100000000);
  prog_info before = programme_show(&z);
  register_beneficiaries(&z, N);
  uint64_t total = 0;
  const char *path = write_list(&z, "list.csv", N, &total);
  opsim_stop(&z, 1);
  uint64_t batch = submit_ok(&z, path, N, total, NULL);
  approve_ok(&z, batch);
  int64_t deadline = mono_ms() + T_FINISH;
  status s;
  do { /* alpha's half paid; beta's half refused once at least, waiting for a retry */
    sleep_ms(250);
    s = batch_status(&z, batch);
    cr_assert(mono_ms() < deadline, "alpha's %d items paid (paid %" PRIu64 ")", N / 2, s.n[3]);
  } while (s.n[3] < N / 2);
  opsim_start(&z, 1);
  wait_state(&z, batch, "completed", T_RETRIED);
  credits c[2];
  report rep = reconcile(&z, batch, N, 1, total, before, c);
  prog_info after = programme_show(&z);
  dz_stop(&z);
  check_ledger(&z, &rep, 1, c, after.budget);
  free(rep.rows);
  free(c[0].ids);
  free(c[1].ids);
  dz_destroy(&z);
}

/* The batch number of the last "disburse.upload_started … kind=list batch=N" in tumad.log, 0 if
 * none. */
static uint64_t last_list_upload(dz *z) {
  static char text[T_OUT];
  read_file(z->h->log, text);
  uint64_t batch = 0;
  for (const char *p = text; (p = strstr(p, "disburse.upload_started")) != NULL; p++) {
    const char *eol = strchr(p, '\n');
    const char *k = strstr(p, "kind=list");
    const char *b = strstr(p, "batch=");
    if (k != NULL && b != NULL && (eol == NULL || (k < eol && b < eol)))
      batch = strtoull(b + 6, NULL, 10);
  }
  return batch;
}

/* A list of 20000 rows uploaded in 2 KiB chunks; tumad is killed while it validates them (twice,
 * at random moments after the upload started). At each restart the half-uploaded batch is
 * discarded (refused, "upload interrupted by a restart"), and the same file is then accepted
 * whole as a new batch, which can be approved. */
Test(disburse_crash, kill_during_upload_discards_the_batch) {
  unsigned seed = crash_seed("kill_during_upload_discards_the_batch");
  enum { N = 20000 };
  dz z;
  dz_start(&z, 0);
  make_programme(&z, 10000000000ull);
  register_beneficiaries(&z, N);
  uint64_t total = 0;
  const char *path = write_list(&z, "big.csv", N, &total);
  const char *chunks[] = {"--chunk-bytes", "2048", NULL};
  const char *args[T_ARGS];
  submit_args(args, path, N, total, chunks);
  uint64_t discarded[2] = {0, 0};
  int interrupted = 0;
  for (int round = 0; round < 6 && interrupted < 2; round++) {
    uint64_t seen = last_list_upload(&z);
    cli_argv a;
    cli_build(&z, &a, "manager", args);
    proc p;
    proc_start(&p, z.h->dir, a.tag, a.argv);
    int64_t deadline = mono_ms() + T_CMD;
    uint64_t batch = 0;
    int st = 0, ended = 0;
    while (!(ended = proc_poll(&p, &st)) && (batch = last_list_upload(&z)) == seen) {
      cr_assert_lt(mono_ms(), deadline, "the upload starts");
      sleep_ms(5);
    }
    int delay = draw(&seed, 0, 150);
    sleep_ms(delay);
    if (!ended)
      ended = proc_poll(&p, &st);
    if (ended) { /* it finished before the kill: the file was small for this machine */
      crash_note(&z, "round %d: the upload ended (status %d) before the kill at %d ms", round, st,
                 delay);
      cr_assert_fail("the upload of %d rows ended within %d ms of its start: make the list "
                     "larger (status %d)",
                     N, delay, st);
    }
    crash_restart(&z, draw(&seed, 0, 300));
    crash_note(&z, "round %d: killed %d ms into the upload of batch %" PRIu64, round, delay, batch);
    st = proc_wait(&p, T_CMD);
    cr_assert_eq(st, 1, "the submit whose switch died fails with 1 (got %d)", st);
    cr_assert_neq(batch, 0);
    status s = batch_status(&z, batch);
    cr_assert_str_eq(s.state, "refused", "batch %" PRIu64 " discarded at the restart", batch);
    discarded[interrupted++] = batch;
  }
  cr_assert_eq(interrupted, 2);
  cr_assert(sh_log_contains(z.h, "disburse.uploads_discarded"), "the restart says so");
  /* The same file again: a new batch, every row valid (none "already in batch …"). */
  uint64_t batch = submit_ok(&z, path, N, total, NULL);
  cr_assert(batch != discarded[0] && batch != discarded[1], "a new batch");
  status s = batch_status(&z, batch);
  cr_assert_str_eq(s.state, "submitted");
  cr_assert_eq(s.n[1], N, "%d items pending", N);
  cr_assert_eq(s.amount[1], total);
  /* And once more: the same batch (the file is known now). */
  const char *again[T_ARGS];
  submit_args(again, path, N, total, NULL);
  t_result *r = result_new();
  cli_runv(&z, r, T_CMD, "manager", again);
  cr_assert_eq(r->status, 0, "%s%s", r->out, r->err);
  char want[96];
  snprintf(want, sizeof want, "batch %" PRIu64 " already submitted", batch);
  cr_assert(strstr(r->out, want) != NULL, "'%s' in: %s", want, r->out);
  free(r);
  prog_info before = programme_show(&z);
  approve_ok(&z, batch);
  prog_info mid = programme_show(&z); /* reserved, or already moved to the cycle's escrow */
  cr_assert_eq(before.available - mid.available, total,
               "the approval reserved the batch's total (and nothing for the discarded ones)");
  dz_stop(&z);
  dz_destroy(&z);
}

/* The other side dies instead: the submitting CLI is killed (SIGKILL) in the middle of a large
 * upload. tumad abandons the upload (its connection is gone): the batch is refused, the same
 * file is accepted again, and a later restart of tumad (graceful, then kill -9) starts. */
Test(disburse_crash, client_killed_during_upload) {
  unsigned seed = crash_seed("client_killed_during_upload");
  enum { N = 20000 };
  dz z;
  dz_start(&z, 0);
  make_programme(&z, 10000000000ull);
  register_beneficiaries(&z, N);
  uint64_t total = 0;
  const char *path = write_list(&z, "big.csv", N, &total);
  const char *chunks[] = {"--chunk-bytes", "2048", NULL};
  const char *args[T_ARGS];
  submit_args(args, path, N, total, chunks);
  cli_argv a;
  cli_build(&z, &a, "manager", args);
  proc p;
  proc_start(&p, z.h->dir, a.tag, a.argv);
  int64_t deadline = mono_ms() + T_CMD;
  uint64_t batch = 0;
  int st = 0, ended = 0;
  while (!(ended = proc_poll(&p, &st)) && (batch = last_list_upload(&z)) == 0) {
    cr_assert_lt(mono_ms(), deadline, "the upload starts");
    sleep_ms(5);
  }
  int delay = draw(&seed, 0, 150);
  sleep_ms(delay);
  cr_assert(!ended && !proc_poll(&p, &st),
            "the upload of %d rows ended within %d ms of its start: make the list larger", N,
            delay);
  cr_assert_eq(kill(p.pid, SIGKILL), 0);
  proc_wait(&p, T_CMD);
  crash_note(&z, "the CLI killed %d ms into the upload of batch %" PRIu64, delay, batch);
  cr_assert(wait_for_text(z.h->log, "disburse.upload_abandoned", T_CMD),
            "tumad notices the upload's connection is gone");
  status s;
  t_result *r = result_new();
  deadline = mono_ms() + 15000;
  for (;;) { /* the abandon is done within a tick of the notice */
    const char *sargs[] = {"disburse", "status", u64s(batch), NULL};
    cli_runv(&z, r, T_CMD, "manager", sargs);
    if (r->status == 0 && strstr(r->out, "state refused") != NULL)
      break;
    cr_assert(mono_ms() < deadline,
              "batch %" PRIu64 " is refused once its upload was abandoned; `tuma disburse status "
              "%" PRIu64 "` says (exit %d): %s%s",
              batch, batch, r->status, r->out, r->err);
    sleep_ms(100);
  }
  free(r);
  uint64_t again = submit_ok(&z, path, N, total, NULL);
  cr_assert_neq(again, batch, "a new batch");
  int stst = 0;
  cr_assert_eq(sh_stop(z.h, 15000, &stst), 0, "tumad stops on SIGTERM");
  char err[512] = "";
  cr_assert_eq(sh_start(z.h, T_START, err, sizeof err), 0, "tumad starts again: %s", err);
  crash_restart(&z, 100);
  s = batch_status(&z, again);
  cr_assert_str_eq(s.state, "submitted");
  cr_assert_eq(s.n[1], N);
  dz_stop(&z);
  dz_destroy(&z);
}

/* Kills during the approval itself: 8 batches of 10 (other beneficiaries each, cycle 1); for
 * each, `tuma disburse approve` is started and tumad killed 0..40 ms later, then restarted. A
 * batch still submitted is approved again (that must work); every batch is then paid, each
 * wallet once, and nothing stays reserved: a reservation the crash left in the ledger without
 * the approval being recorded must not be reserved twice nor stay open. */
Test(disburse_crash, kill_during_approval) {
  unsigned seed = crash_seed("kill_during_approval");
  enum { B = 8, PER = 10, N = B * PER };
  dz z;
  dz_start(&z, N / 2);
  make_programme(&z, 100000000);
  prog_info before = programme_show(&z);
  register_beneficiaries(&z, N);
  uint64_t batch[B], total = 0;
  for (int k = 0; k < B; k++) {
    char name[32];
    uint64_t t = 0;
    snprintf(name, sizeof name, "list-%d.csv", k);
    const char *path = write_list_from(&z, name, k * PER, PER, &t);
    batch[k] = submit_ok(&z, path, PER, t, NULL);
    total += t;
  }
  for (int k = 0; k < B; k++) {
    const char *args[] = {"disburse", "approve", u64s(batch[k]), NULL};
    cli_argv a;
    cli_build(&z, &a, "approver", args);
    proc p;
    proc_start(&p, z.h->dir, a.tag, a.argv);
    int delay = draw(&seed, 0, 40);
    sleep_ms(delay);
    int regs[2] = {registrations(&z, 0), registrations(&z, 1)};
    crash_restart(&z, draw(&seed, 0, 200));
    int st = proc_wait(&p, T_CMD);
    wait_reconnected(&z, regs);
    status s = batch_status(&z, batch[k]);
    crash_note(&z, "batch %" PRIu64 ": killed %d ms into its approval (approve exit %d); state %s",
               batch[k], delay, st, s.state);
    if (strcmp(s.state, "submitted") == 0)
      approve_ok(&z, batch[k]);
    else
      cr_assert(st != 1 || strcmp(s.state, "approved") == 0 || strcmp(s.state, "running") == 0 ||
                    strcmp(s.state, "completed") == 0,
                "batch %" PRIu64 " is approved or submitted (%s)", batch[k], s.state);
  }
  for (int k = 0; k < B; k++)
    wait_state(&z, batch[k], "completed", T_FINISH);
  credits c[2];
  uint64_t credited = 0;
  for (int op = 0; op < 2; op++) {
    opsim_credits(&z, op, &c[op]);
    credited += c[op].in_amount;
  }
  for (int k = 0; k < N; k++) {
    ben b = ben_make(k);
    cr_assert_eq(c[b.op].per_wallet[b.wallet], 1, "%s wallet %d credited once", OPS[b.op],
                 b.wallet);
    cr_assert_eq(c[b.op].amount_wallet[b.wallet], b.amount);
  }
  cr_assert_eq(credited, total);
  prog_info after = programme_show(&z);
  cr_assert_eq(before.budget - after.budget, total, "the budget paid the batches once");
  cr_assert_eq(after.reserved, 0,
               "nothing stays reserved (%s KES): a reservation of a crashed approval is left",
               kes(after.reserved));
  free(c[0].ids);
  free(c[1].ids);
  dz_stop(&z);
  dz_destroy(&z);
}

/* A batch submitted, tumad killed before anyone approves it (at a random moment), restarted:
 * the batch is still submitted, the approval works, and it is paid to completion and
 * reconciled. */
Test(disburse_crash, kill_between_submit_and_approval) {
  unsigned seed = crash_seed("kill_between_submit_and_approval");
  enum { N = 60 };
  dz z;
  dz_start(&z, N / 2);
  make_programme(&z, 100000000);
  prog_info before = programme_show(&z);
  register_beneficiaries(&z, N);
  uint64_t total = 0;
  const char *path = write_list(&z, "list.csv", N, &total);
  uint64_t batch = submit_ok(&z, path, N, total, NULL);
  int delay = draw(&seed, 0, 300);
  sleep_ms(delay);
  int regs[2] = {registrations(&z, 0), registrations(&z, 1)};
  crash_restart(&z, draw(&seed, 0, 300));
  crash_note(&z, "killed %d ms after the submit of batch %" PRIu64, delay, batch);
  /* approve once the payees are back: this test is about the approval (paying before they
     reconnect is the report_names_the_paid_transfer_after_retries case) */
  wait_reconnected(&z, regs);
  status s = batch_status(&z, batch);
  cr_assert_str_eq(s.state, "submitted", "still submitted after the restart");
  cr_assert_eq(s.n[1], N);
  prog_info mid = programme_show(&z);
  cr_assert_eq(mid.reserved, 0, "nothing reserved before the approval");
  approve_ok(&z, batch);
  wait_state(&z, batch, "completed", T_FINISH);
  credits c[2];
  report rep = reconcile(&z, batch, N, 1, total, before, c);
  prog_info after = programme_show(&z);
  dz_stop(&z);
  check_ledger(&z, &rep, 1, c, after.budget);
  free(rep.rows);
  free(c[0].ids);
  free(c[1].ids);
  dz_destroy(&z);
}
