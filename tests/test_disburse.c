/* test_disburse.c — integration suite for disbursements: a real tumad (tests/switch_harness.h,
 * frames up to 64 KiB), the real `tuma disburse` CLI (TUMA_CLI) with certificates of each role
 * (admin, programme-manager "manager" and "manager2", approver), and real tuma-opsim processes
 * (TUMA_OPSIM) as the payee operators alpha and beta, whose wallets are the beneficiaries'
 * MSISDNs (alpha 25470…, beta 25471…; wallet i is the prefix and i zero-padded to 12 digits).
 *
 * Scenarios: every kind of bad row named by its line and reason (malformed amount, another
 * currency, over the cap, unknown beneficiary, a wallet no operator serves, a duplicate in the
 * file, already in another batch of the programme's cycle, an unknown id type), then
 * --exclude-invalid and the report's excluded block; control totals; chunked upload;
 * re-submitting the same file; maker-checker (roles and identities); a budget too short for
 * approval, then topped up (idempotent fund ids); a batch of 50 paid to completion and
 * reconciled three ways (opsim wallets, the report, the programme's budget) with its reach
 * breakdown; cancel mid-batch; a scheduled batch's reservation, released by a cancel; payments
 * the operator refuses, failed and released, and their beneficiaries paid by a later batch of
 * the same cycle; a payee operator offline, then back; recurring cycles, and one waiting for
 * funds; tumad killed mid-batch and restarted; beneficiary registration (masking, refused
 * rows, roles); usage errors.
 *
 * Every wait is bounded in time and count; assertions are on outcomes, never on durations. When
 * a test fails, its scratch directory is kept (tumad.log, the commands' and opsims' output).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "switch_harness.h"

extern char **environ;

#define T_START 15000 /* ms: tumad start-up */
#define T_READY 15000 /* ms: an opsim connected and its wallets registered */
#define T_CMD 20000   /* ms: a command that should finish promptly */
#define T_PAY 90000   /* ms: a small batch paid to completion */
#define T_EXIT 30000  /* ms: an opsim stopping after SIGTERM */

enum { T_OUT = 1 << 19, T_ARGS = 64, T_FILE = 1 << 17, REPORT_ROWS = 4096 };

static const char *const PROG = "relief";

/* ================================================================ processes */

static sh_switch *g_h;

static void dz_fini(void) {
  if (g_h == NULL)
    return;
  sh_dump_log(g_h, "tumad", 40);
  fprintf(stderr, "[tumad] scratch directory kept: %s\n", g_h->dir);
  sh_destroy(g_h, 0);
  g_h = NULL;
}

TestSuite(disburse, .fini = dz_fini, .timeout = 240);

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

/* ================================================================ the fixture */

typedef struct dz {
  sh_switch *h;
  proc op[2]; /* tuma-opsim alpha (0) and beta (1) */
  char data[2][SH_PATH_MAX + 32];
  int wallets; /* per operator */
  int ncli;    /* commands run so far (their output files are numbered) */
  char cli_dir[SH_PATH_MAX + 16];
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

/* Starts (or restarts, on the same data directory) operator op as a payee only; extra: more
 * options (NULL-terminated, may be NULL), e.g. --reject-percent 100. */
static void opsim_start_with(dz *z, int op, const char *const *extra) {
  static char addr[2][64], wallets[2][16], tag[2][32];
  static int starts[2];
  char cert[SH_PATH_MAX + 80], key[SH_PATH_MAX + 80];
  snprintf(addr[op], sizeof addr[op], "127.0.0.1:%u", z->h->port);
  snprintf(wallets[op], sizeof wallets[op], "%d", z->wallets);
  snprintf(tag[op], sizeof tag[op], "%s-%d", OPS[op], ++starts[op]);
  snprintf(cert, sizeof cert, "%s", sh_cert(z->h, OPS[op]));
  snprintf(key, sizeof key, "%s", sh_key(z->h, OPS[op]));
  const char *argv[40] = {opsim_bin(), "--connect",
                          addr[op],    "--ca",
                          z->h->ca,    "--cert",
                          cert,        "--key",
                          key,         "--as",
                          OPS[op],     "--data",
                          z->data[op], "--wallets",
                          wallets[op], "--msisdn-prefix",
                          PREFIX[op],  "--initial-balance",
                          "0",         "--log-level",
                          "info"};
  size_t n = 21;
  for (size_t k = 0; extra != NULL && extra[k] != NULL && n < 39; k++)
    argv[n++] = extra[k];
  argv[n] = NULL;
  proc_start(&z->op[op], z->h->dir, tag[op], argv);
  cr_assert(wait_for_text(z->op[op].err, "ready", T_READY), "%s ready (see %s)", OPS[op],
            z->op[op].err);
}

static void opsim_start(dz *z, int op) {
  opsim_start_with(z, op, NULL);
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
  /* A handshake gets 5 s (the harness's 500 ms partial-frame timeout also bounds the TLS
   * handshake, which a loaded machine running two suites at once can miss). */
  sh_options o = {.log_level = "info", .max_frame_bytes = 65536, .read_timeout_ms = 5000};
  cr_assert_eq(sh_create(&o, &z->h, err, sizeof err), 0, "%s", err);
  g_h = z->h;
  cr_assert_eq(sh_start(z->h, T_START, err, sizeof err), 0, "%s", err);
  z->wallets = wallets;
  for (int op = 0; op < 2; op++)
    snprintf(z->data[op], sizeof z->data[op], "%s/%s.d", z->h->dir, OPS[op]);
  if (wallets > 0)
    for (int op = 0; op < 2; op++)
      opsim_start(z, op);
}

/* Stops everything; removes the scratch directory when all went well. */
static void dz_done(dz *z) {
  for (int op = 0; op < 2; op++)
    opsim_stop(z, op);
  int st = 0;
  cr_assert_eq(sh_stop(z->h, 15000, &st), 0, "tumad stops on SIGTERM");
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "tumad exits 0 (status %d)", st);
  g_h = NULL;
  sh_destroy(z->h, getenv("TUMA_TEST_KEEP") == NULL);
}

/* ================================================================ running the CLI */

typedef struct t_result {
  int status;
  char out[T_OUT], err[T_OUT];
} t_result;

/* Starts `tuma ARGS… --connect … --ca … --cert AS.crt --key AS.key`. as is a certificate name
 * in DIR/certs, or a path without ".crt"/".key" when it holds a '/'. NULL-terminated args. The
 * output goes to DIR/cli-N.{out,err}; DIR/commands.log lists what ran. */
static void cli_spawn(dz *z, proc *p, const char *as, const char *const *args) {
  const char *bin = getenv("TUMA_CLI");
  cr_assert_not_null(bin, "TUMA_CLI is not set (run through meson test)");
  char addr[64], cert[SH_PATH_MAX + 80], key[SH_PATH_MAX + 80];
  snprintf(addr, sizeof addr, "127.0.0.1:%u", z->h->admin_port);
  if (strchr(as, '/') != NULL) {
    snprintf(cert, sizeof cert, "%s.crt", as);
    snprintf(key, sizeof key, "%s.key", as);
  } else {
    snprintf(cert, sizeof cert, "%s", sh_cert(z->h, as));
    snprintf(key, sizeof key, "%s", sh_key(z->h, as));
  }
  const char *argv[T_ARGS];
  int n = 0;
  argv[n++] = bin;
  for (size_t k = 0; args[k] != NULL; k++) {
    cr_assert_lt(n, T_ARGS - 10);
    argv[n++] = args[k];
  }
  const char *conn[] = {"--connect", addr, "--ca", z->h->ca, "--cert", cert, "--key", key, NULL};
  for (size_t k = 0; conn[k] != NULL; k++)
    argv[n++] = conn[k];
  argv[n] = NULL;
  char tag[32];
  snprintf(tag, sizeof tag, "cli-%03d", ++z->ncli);
  /* A record of what ran, for a failed test's scratch directory. */
  char log[SH_PATH_MAX + 32];
  snprintf(log, sizeof log, "%s/commands.log", z->h->dir);
  FILE *f = fopen(log, "a");
  if (f != NULL) {
    fprintf(f, "%s [%s]:", tag, as);
    for (int k = 1; k < n - 8; k++)
      fprintf(f, " %s", argv[k]);
    fprintf(f, "\n");
    fclose(f);
  }
  proc_start(p, z->h->dir, tag, argv);
}

/* Runs the command to completion (at most timeout_ms) and reads its output into r. */
static void cli_runv(dz *z, t_result *r, int timeout_ms, const char *as, const char *const *args) {
  proc p;
  cli_spawn(z, &p, as, args);
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
    cr_assert_eq((r)->status, 0, "tuma exits 0 (%d)\nstdout: %s\nstderr: %s", (r)->status,         \
                 (r)->out, (r)->err);                                                              \
  } while (0)

#define CLI_REFUSED(z, r, as, ...)                                                                 \
  do {                                                                                             \
    cli_run((z), (r), (as), __VA_ARGS__, NULL);                                                    \
    cr_assert_eq((r)->status, 1, "tuma exits 1 (%d)\nstdout: %s\nstderr: %s", (r)->status,         \
                 (r)->out, (r)->err);                                                              \
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
  cr_assert_not_null(p, "'%s' in: %s", key, text);
  p += strlen(key);
  while (*p == ' ')
    p++;
  char *end;
  uint64_t v = strtoull(p, &end, 10);
  cr_assert(end != p, "a number after '%s' in: %s", key, text);
  return v;
}

typedef struct prog_info {
  uint64_t budget, reserved, available;
} prog_info;

static prog_info programme_show(dz *z) {
  t_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  CLI_OK(z, r, "admin", "disburse", "programme", "show", PROG);
  prog_info pi;
  const char *b = strstr(r->out, "budget"), *rs = strstr(r->out, "reserved"),
             *av = strstr(r->out, "available");
  cr_assert(b && rs && av, "budget, reserved, available: %s", r->out);
  pi.budget = kes_minor(b + strspn(b + 6, " ") + 6);
  pi.reserved = kes_minor(rs + strspn(rs + 8, " ") + 8);
  pi.available = kes_minor(av + strspn(av + 9, " ") + 9);
  cr_assert(strstr(r->out, "KES") != NULL, "%s", r->out);
  free(r);
  return pi;
}

/* "batch N submitted" / "batch N already submitted" → N. */
static uint64_t batch_of(const t_result *r) {
  return num_after(r->out, "batch ");
}

typedef struct status {
  char state[32];
  uint64_t n[6]; /* pending, in_flight, paid, failed, cancelled at 1..5 */
  uint64_t amount[6];
} status;

static const char *const ITEM[6] = {"", "pending", "in_flight", "paid", "failed", "cancelled"};

static status batch_status(dz *z, uint64_t batch) {
  t_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  char b[24];
  snprintf(b, sizeof b, "%" PRIu64, batch);
  CLI_OK(z, r, "manager", "disburse", "status", b);
  status s;
  memset(&s, 0, sizeof s);
  const char *p = strstr(r->out, "state ");
  cr_assert_not_null(p, "%s", r->out);
  sscanf(p + 6, "%31s", s.state);
  for (int k = 1; k <= 5; k++) {
    char key[32];
    snprintf(key, sizeof key, "\n  %s ", ITEM[k]);
    const char *q = strstr(r->out, key);
    cr_assert_not_null(q, "a %s line: %s", ITEM[k], r->out);
    q += strlen(key);
    char *end;
    s.n[k] = strtoull(q, &end, 10);
    while (*end == ' ')
      end++;
    s.amount[k] = kes_minor(end);
  }
  free(r);
  return s;
}

/* Polls the batch's status (every 250 ms, at most timeout_ms) until done(s) holds. */
static status wait_status(dz *z, uint64_t batch, int (*done)(const status *, void *), void *arg,
                          int timeout_ms, const char *what) {
  int64_t deadline = mono_ms() + timeout_ms;
  status s;
  for (int polls = 0;; polls++) {
    s = batch_status(z, batch);
    if (done(&s, arg))
      return s;
    cr_assert(mono_ms() < deadline && polls < 100000,
              "batch %" PRIu64 " never reached: %s (state %s, paid %" PRIu64 ", pending %" PRIu64
              ", in flight %" PRIu64 ", failed %" PRIu64 ", cancelled %" PRIu64 ")",
              batch, what, s.state, s.n[3], s.n[1], s.n[2], s.n[4], s.n[5]);
    sleep_ms(250);
  }
}

static int state_is(const status *s, void *arg) {
  return strcmp(s->state, (const char *)arg) == 0;
}

static int paid_at_least(const status *s, void *arg) {
  return s->n[3] >= *(const uint64_t *)arg;
}

/* ---- the CSV report ---- */

typedef struct row {
  uint32_t cycle;
  uint64_t line;
  char beneficiary[80], reference[80], currency[8], status[16], reason[128], transfer_id[40],
      completed[40], op[64];
  uint64_t amount;
  uint32_t reason_code;
} row;

typedef struct report {
  row *rows;
  size_t n;
  char invalid[T_FILE]; /* the "# excluded at validation" block, as printed */
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

static report get_report(dz *z, uint64_t batch, t_result *r) {
  char b[24], out[SH_PATH_MAX + 32];
  snprintf(b, sizeof b, "%" PRIu64, batch);
  snprintf(out, sizeof out, "%s/report-%" PRIu64 "-%d.csv", z->h->dir, batch, z->ncli);
  CLI_OK(z, r, "approver", "disburse", "report", b, "--csv", "--out", out);
  static char text[T_OUT];
  read_file(out, text);
  report rep;
  memset(&rep, 0, sizeof rep);
  rep.rows = calloc(REPORT_ROWS, sizeof(row));
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
    if (line[0] == '#') {
      snprintf(rep.invalid, sizeof rep.invalid, "%s\n%s", line, nl + 1);
      break;
    }
    char *f[16];
    cr_assert_eq(csv_split(line, f, 16), 12, "12 fields in '%s'", line);
    cr_assert_lt(rep.n, REPORT_ROWS);
    row *w = &rep.rows[rep.n++];
    w->cycle = (uint32_t)strtoul(f[0], NULL, 10);
    w->line = strtoull(f[1], NULL, 10);
    snprintf(w->beneficiary, sizeof w->beneficiary, "%s", f[2]);
    snprintf(w->reference, sizeof w->reference, "%s", f[3]);
    w->amount = kes_minor(f[4]);
    snprintf(w->currency, sizeof w->currency, "%s", f[5]);
    snprintf(w->status, sizeof w->status, "%s", f[6]);
    w->reason_code = (uint32_t)strtoul(f[7], NULL, 10);
    snprintf(w->reason, sizeof w->reason, "%s", f[8]);
    snprintf(w->transfer_id, sizeof w->transfer_id, "%s", f[9]);
    snprintf(w->completed, sizeof w->completed, "%s", f[10]);
    snprintf(w->op, sizeof w->op, "%s", f[11]);
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

typedef struct credits {
  uint64_t in_count, in_amount, pending;
  uint32_t per_wallet[512]; /* committed credits per wallet index */
  uint64_t amount_wallet[512];
} credits;

static credits opsim_credits(dz *z, int op) {
  static char text[T_OUT];
  credits c;
  memset(&c, 0, sizeof c);
  opsim_print(z, op, "totals", text);
  c.in_count = json_u64(json_obj(text, "committed_in"), "count");
  c.in_amount = json_u64(json_obj(text, "committed_in"), "amount");
  c.pending = json_u64(json_obj(text, "pending_credits"), "count");
  cr_assert(strstr(text, "\"reconciled\":true") != NULL, "%s's totals reconcile: %s", OPS[op],
            text);
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
    cr_assert_lt(w, 512);
    c.per_wallet[w]++;
    c.amount_wallet[w] += json_u64(line, "amount");
    n++;
  }
  cr_assert_eq(n, c.in_count, "%s: history and totals agree on the credits", OPS[op]);
  return c;
}

/* ================================================================ files */

typedef struct ben {
  int op;     /* 0 alpha, 1 beta */
  int wallet; /* its index */
  char id[16];
  uint64_t amount; /* minor units, in a list */
} ben;

/* Beneficiary k: national id 3000000k (8 digits), alternately on alpha and beta, wallet k/2. */
static ben ben_make(int k) {
  ben b;
  memset(&b, 0, sizeof b);
  b.op = k % 2;
  b.wallet = k / 2;
  snprintf(b.id, sizeof b.id, "3%07d", k);
  b.amount = 10000 + 125 * (uint64_t)k; /* 100.00, 101.25, … */
  return b;
}

/* Registers beneficiaries 0..n-1 (and the extra rows, a CSV text after the header) with an
 * upload as `as`; the registration must take every row. */
static void register_beneficiaries(dz *z, int n, const char *extra_rows, int extra) {
  static char text[T_FILE];
  size_t len =
      (size_t)snprintf(text, sizeof text, "beneficiary_id_type,beneficiary_id,msisdn,operator\n");
  for (int k = 0; k < n; k++) {
    ben b = ben_make(k);
    char m[24];
    wallet_msisdn(b.op, b.wallet, m, sizeof m);
    len += (size_t)snprintf(text + len, sizeof text - len, "national_id,%s,%s,\n", b.id, m);
  }
  if (extra_rows != NULL)
    len += (size_t)snprintf(text + len, sizeof text - len, "%s", extra_rows);
  cr_assert_lt(len, sizeof text - 1);
  char path[SH_PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/beneficiaries.csv", z->h->dir);
  write_file(path, text);
  t_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  CLI_OK(z, r, "manager", "disburse", "beneficiary", "upload", "--file", path);
  char want[64];
  snprintf(want, sizeof want, "registered %d, refused 0", n + extra);
  cr_assert(strstr(r->out, want) != NULL, "'%s' in: %s", want, r->out);
  free(r);
}

/* Writes a list file NAME (in DIR) with beneficiaries first..first+n-1 (their amounts) and any
 * extra rows; *total gets the sum of the beneficiaries' amounts. Returns the path (static). */
static const char *write_list_profile(dz *z, const char *name, int first, int n,
                                      const char *extra_rows, uint64_t *total, int profile) {
  static char path[SH_PATH_MAX + 64];
  static char text[T_FILE];
  size_t len = (size_t)snprintf(text, sizeof text,
                                "beneficiary_id_type,beneficiary_id,amount,currency,reference%s\n",
                                profile ? ",sex,age_band,region" : "");
  uint64_t sum = 0;
  for (int k = first; k < first + n; k++) {
    ben b = ben_make(k);
    len += (size_t)snprintf(text + len, sizeof text - len,
                            "national_id,%s,%" PRIu64 ".%02" PRIu64 ",KES,relief-%d", b.id,
                            b.amount / 100, b.amount % 100, k);
    /* Profile: F for even k, M for odd; region Lamu for every 10th (a cell under 10). */
    if (profile)
      len += (size_t)snprintf(text + len, sizeof text - len, ",%s,18-35,%s", k % 2 ? "M" : "F",
                              k % 10 == 0 ? "Lamu" : "Turkana");
    len += (size_t)snprintf(text + len, sizeof text - len, "\n");
    sum += b.amount;
  }
  if (extra_rows != NULL)
    len += (size_t)snprintf(text + len, sizeof text - len, "%s", extra_rows);
  cr_assert_lt(len, sizeof text - 1);
  snprintf(path, sizeof path, "%s/%s", z->h->dir, name);
  write_file(path, text);
  if (total != NULL)
    *total = sum;
  return path;
}

static const char *write_list(dz *z, const char *name, int first, int n, const char *extra_rows,
                              uint64_t *total) {
  return write_list_profile(z, name, first, n, extra_rows, total, 0);
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

/* The programme: funded by gamma's programme account, cap 5000.00 per beneficiary and cycle,
 * budget `fund` (minor units; 0 = none). */
static void make_programme(dz *z, uint64_t fund) {
  t_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  CLI_OK(z, r, "admin", "disburse", "programme", "create", "--id", PROG, "--name",
         "Drought relief 2026", "--currency", "KES", "--funding", "gamma", "--cap", "5000");
  if (fund > 0) {
    CLI_OK(z, r, "admin", "disburse", "programme", "fund", "--programme", PROG, "--amount",
           kes(fund));
    cr_assert(strstr(r->out, "fund id ") != NULL, "%s", r->out);
  }
  free(r);
}

/* Submits as manager for `cycle`; the result is in r. extra: more arguments (NULL-ended). */
static void submit(dz *z, t_result *r, const char *path, uint32_t cycle, uint64_t count,
                   uint64_t total, const char *const *extra) {
  const char *args[T_ARGS] = {"disburse", "submit", "--programme",    PROG, "--cycle",        NULL,
                              "--file",   path,     "--expect-count", NULL, "--expect-total", NULL};
  char c[16];
  snprintf(c, sizeof c, "%" PRIu32, cycle);
  args[5] = c;
  args[9] = u64s(count);
  args[11] = kes(total);
  int n = 12;
  for (size_t k = 0; extra != NULL && extra[k] != NULL; k++)
    args[n++] = extra[k];
  args[n] = NULL;
  cli_runv(z, r, T_CMD, "manager", args);
}

/* Submits and approves (as approver) a list that must be accepted whole; returns the batch. */
static uint64_t submit_and_approve(dz *z, const char *path, uint64_t count, uint64_t total,
                                   const char *const *extra) {
  t_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  submit(z, r, path, 1, count, total, extra);
  cr_assert_eq(r->status, 0, "submit: %s%s", r->out, r->err);
  uint64_t batch = batch_of(r);
  CLI_OK(z, r, "approver", "disburse", "approve", u64s(batch));
  free(r);
  return batch;
}

/* ================================================================ tests */

/* Each kind of bad row is named with its line; nothing is stored unless --exclude-invalid. */
Test(disburse, every_bad_row_is_named_by_its_line) {
  dz z;
  dz_start(&z, 8);
  make_programme(&z, 10000000);
  /* 39000001: registered with a wallet no operator serves (no participant has 25479…). */
  register_beneficiaries(&z, 8, "national_id,39000001,254790000001,\n", 1);
  t_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  const char *bad =
      /* line 2: beneficiary 0, good (from write_list) */
      "national_id,30000001,12.345,KES,r3\n"   /* 3: malformed amount */
      "national_id,30000002,150.00,UGX,r4\n"   /* 4: another currency */
      "national_id,30000003,6000.00,KES,r5\n"  /* 5: over the cap of 5000.00 */
      "national_id,39999999,150.00,KES,r6\n"   /* 6: unknown beneficiary */
      "national_id,39000001,150.00,KES,r7\n"   /* 7: a wallet no operator serves */
      "national_id,30000004,150.00,KES,r8\n"   /* 8: good */
      "national_id,30000004,150.00,KES,r9\n"   /* 9: duplicate of line 8 */
      "passport,30000005,150.00,KES,r10\n"     /* 10: unknown id type */
      "national_id,30000005,150.00,KES,r11\n"; /* 11: good */
  uint64_t first = 0;
  const char *path = write_list(&z, "bad.csv", 0, 1, bad, &first);
  uint64_t valid_total = first + 15000 + 15000;
  submit(&z, r, path, 1, 3, valid_total, NULL);
  cr_assert_eq(r->status, 1, "a list with bad rows is refused: %s%s", r->out, r->err);
  /* Each bad line with its reason (the switch's words, switch/DISBURSE.md). */
  static const struct {
    int line;
    const char *reason;
  } why[] = {{3, "amount"},         {4, "currency"},  {5, "cap"},     {6, "unknown beneficiary"},
             {7, "unknown wallet"}, {9, "duplicate"}, {10, "id type"}};
  for (size_t k = 0; k < sizeof why / sizeof why[0]; k++) {
    char want[32];
    snprintf(want, sizeof want, "line %d: ", why[k].line);
    const char *at = strstr(r->err, want);
    cr_assert_not_null(at, "'%s' in the refusal: %s", want, r->err);
    const char *eol = strchr(at, '\n');
    cr_assert_not_null(eol);
    char one[256];
    snprintf(one, sizeof one, "%.*s", (int)(eol - at), at);
    cr_assert(strstr(one, why[k].reason) != NULL, "line %d says why (%s): %s", why[k].line,
              why[k].reason, one);
  }
  cr_assert(strstr(r->err, "batch refused: 3100") != NULL, "%s", r->err);
  cr_assert(strstr(r->err, "line 2: ") == NULL && strstr(r->err, "line 8: ") == NULL &&
                strstr(r->err, "line 11: ") == NULL,
            "good rows are not named: %s", r->err);
  cr_assert(strstr(r->err, "30000001") == NULL, "ids are not printed in clear: %s", r->err);

  /* Accepted without its bad rows. */
  const char *excl[] = {"--exclude-invalid", NULL};
  submit(&z, r, path, 1, 3, valid_total, excl);
  cr_assert_eq(r->status, 0, "%s%s", r->out, r->err);
  char want[128];
  snprintf(want, sizeof want, "submitted: 3 valid rows, total %s KES; 7 invalid", kes(valid_total));
  cr_assert(strstr(r->out, want) != NULL, "'%s' in: %s", want, r->out);
  uint64_t b1 = batch_of(r);
  cr_assert(strstr(r->out, "line 3: ") && strstr(r->out, "line 10: "), "%s", r->out);
  /* Its report: the three rows, then the seven excluded at validation. */
  report rep = get_report(&z, b1, r);
  cr_assert_eq(rep.n, 3);
  cr_assert_eq(rep.rows[0].line, 2);
  cr_assert_eq(rep.rows[1].line, 8);
  cr_assert_eq(rep.rows[2].line, 11);
  cr_assert_str_eq(rep.rows[0].status, "pending");
  const char *block = "# excluded at validation\nline,reason\n";
  cr_assert(strncmp(rep.invalid, block, strlen(block)) == 0, "%s", rep.invalid);
  int excluded = 0;
  for (const char *p = rep.invalid; (p = strchr(p, '\n')) != NULL; p++)
    excluded++;
  cr_assert_eq(excluded, 2 + 7, "header lines and 7 rows: %s", rep.invalid);
  cr_assert(strstr(rep.invalid, "\n3,") && strstr(rep.invalid, "\n10,"), "%s", rep.invalid);
  cr_assert(strstr(r->err, "3 items: paid 0") && strstr(r->err, "7 excluded at validation"), "%s",
            r->err);
  free(rep.rows);

  /* Beneficiary 0 (line 2 above) is in batch b1 for cycle 1: another list for cycle 1 that
   * names it is refused at that line; the same list for cycle 2 is fine. */
  const char *other = write_list(&z, "other.csv", 0, 2, NULL, &first);
  submit(&z, r, other, 1, 2, first, NULL);
  cr_assert_eq(r->status, 1, "%s%s", r->out, r->err);
  char already[64];
  snprintf(already, sizeof already, "line 2: already in batch %" PRIu64, b1);
  cr_assert(strstr(r->err, already) != NULL, "'%s' in: %s", already, r->err);
  cr_assert(strstr(r->err, "line 3: ") == NULL, "%s", r->err);
  submit(&z, r, other, 2, 2, first, NULL);
  cr_assert_eq(r->status, 0, "cycle 2 is another cycle: %s%s", r->out, r->err);
  cr_assert_neq(batch_of(r), b1);
  free(r);
  dz_done(&z);
}

/* Control totals must match; the same file again for the same cycle is the same batch. */
Test(disburse, control_totals_and_resubmission) {
  dz z;
  dz_start(&z, 0);
  make_programme(&z, 10000000);
  register_beneficiaries(&z, 5, NULL, 0);
  t_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  uint64_t total = 0;
  const char *path = write_list(&z, "list.csv", 0, 5, NULL, &total);
  submit(&z, r, path, 1, 4, total, NULL);
  cr_assert_eq(r->status, 1, "a wrong count is refused: %s%s", r->out, r->err);
  cr_assert(strstr(r->err, "batch refused: 3100") && strstr(r->err, "control totals"), "%s",
            r->err);
  submit(&z, r, path, 1, 5, total - 1, NULL);
  cr_assert_eq(r->status, 1, "a total off by 0.01 is refused: %s%s", r->out, r->err);
  char bad[SH_PATH_MAX + 32];
  snprintf(bad, sizeof bad, "%s/bad-header.csv", z.h->dir);
  write_file(bad, "beneficiary_id_type,beneficiary_id,amout,currency,reference\n"
                  "national_id,30000000,100.00,KES,x\n");
  submit(&z, r, bad, 1, 1, 10000, NULL);
  cr_assert_eq(r->status, 1, "%s%s", r->out, r->err);
  cr_assert(strstr(r->err, "batch refused: 3100") && strstr(r->err, "amout"), "%s", r->err);
  /* A chunk larger than the admin listener's frames (4 MiB by default) is refused, and said so. */
  static char big[4700000];
  size_t blen = (size_t)snprintf(big, sizeof big,
                                 "beneficiary_id_type,beneficiary_id,amount,currency,reference\n");
  while (blen < 4600000)
    blen += (size_t)snprintf(big + blen, sizeof big - blen, "national_id,30000000,1.00,KES,%s\n",
                             "padding-padding-padding-padding");
  char bigpath[SH_PATH_MAX + 32];
  snprintf(bigpath, sizeof bigpath, "%s/big.csv", z.h->dir);
  write_file(bigpath, big);
  const char *huge[] = {"--chunk-bytes", "4650000", NULL};
  submit(&z, r, bigpath, 1, 1, 100, huge);
  cr_assert_eq(r->status, 1, "%s%s", r->out, r->err);
  cr_assert(strstr(r->err, "give a smaller --chunk-bytes") != NULL, "%s", r->err);
  /* In chunks of 64 bytes: several requests, the options in the first. */
  const char *small[] = {"--chunk-bytes", "64", NULL};
  submit(&z, r, path, 1, 5, total, small);
  cr_assert_eq(r->status, 0, "%s%s", r->out, r->err);
  char want[128];
  snprintf(want, sizeof want, "submitted: 5 valid rows, total %s KES; 0 invalid", kes(total));
  cr_assert(strstr(r->out, want) != NULL, "'%s' in: %s", want, r->out);
  uint64_t batch = batch_of(r);
  submit(&z, r, path, 1, 5, total, NULL);
  cr_assert_eq(r->status, 0, "%s%s", r->out, r->err);
  snprintf(want, sizeof want, "batch %" PRIu64 " already submitted (same file)", batch);
  cr_assert(strstr(r->out, want) != NULL, "'%s' in: %s", want, r->out);
  status s = batch_status(&z, batch);
  cr_assert_str_eq(s.state, "submitted");
  cr_assert_eq(s.n[1], 5, "5 items pending");
  free(r);
  dz_done(&z);
}

/* A report longer than one page (the CLI asks for 1000 items a page): every item once, in line
 * order. The batch is only submitted, so every item is pending. */
Test(disburse, report_pages_through_a_long_batch) {
  dz z;
  dz_start(&z, 0);
  make_programme(&z, 100000000);
  enum { N = 2100 };
  register_beneficiaries(&z, N, NULL, 0);
  uint64_t total = 0;
  const char *path = write_list(&z, "long.csv", 0, N, NULL, &total);
  t_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  submit(&z, r, path, 1, N, total, NULL);
  cr_assert_eq(r->status, 0, "%s%s", r->out, r->err);
  report rep = get_report(&z, batch_of(r), r);
  cr_assert_eq(rep.n, N, "every item, across three pages");
  uint64_t sum = 0;
  for (size_t i = 0; i < rep.n; i++) {
    cr_assert_eq(rep.rows[i].line, i + 2, "in line order, once each");
    cr_assert_str_eq(rep.rows[i].status, "pending");
    cr_assert_eq(rep.rows[i].amount, ben_make((int)i).amount);
    sum += rep.rows[i].amount;
  }
  cr_assert_eq(sum, total);
  cr_assert(strstr(r->err, "2100 items: paid 0") != NULL, "%s", r->err);
  free(rep.rows);
  free(r);
  dz_done(&z);
}

/* Approval: only an approver, never the submitter's identity; the roles of the other verbs. */
Test(disburse, maker_checker) {
  dz z;
  dz_start(&z, 0);
  make_programme(&z, 10000000);
  register_beneficiaries(&z, 3, NULL, 0);
  t_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  uint64_t total = 0;
  const char *path = write_list(&z, "list.csv", 0, 3, NULL, &total);
  /* An approver cannot submit; a manager cannot fund. */
  const char *args[] = {"disburse", "submit", "--programme",    PROG, "--cycle",        "1",
                        "--file",   path,     "--expect-count", "3",  "--expect-total", kes(total),
                        NULL};
  cli_runv(&z, r, T_CMD, "approver", args);
  cr_assert_eq(r->status, 1, "an approver may not submit: %s%s", r->out, r->err);
  CLI_REFUSED(&z, r, "manager", "disburse", "programme", "fund", "--programme", PROG, "--amount",
              "10");
  submit(&z, r, path, 1, 3, total, NULL);
  cr_assert_eq(r->status, 0, "%s%s", r->out, r->err);
  char batch[24];
  snprintf(batch, sizeof batch, "%" PRIu64, batch_of(r));

  CLI_REFUSED(&z, r, "manager", "disburse", "approve", batch);
  cr_assert(strstr(r->err, "refused: ") != NULL, "code and text: %s", r->err);
  CLI_REFUSED(&z, r, "manager2", "disburse", "approve", batch);
  CLI_REFUSED(&z, r, "admin", "disburse", "approve", batch);
  /* An approver certificate with the submitter's name (CN=manager). */
  char dir[SH_PATH_MAX + 32], as[SH_PATH_MAX + 48];
  snprintf(dir, sizeof dir, "%s/same-name", z.h->dir);
  cr_assert_eq(mkdir(dir, 0700), 0);
  cr_assert_eq(sh_issue(z.h, "manager", "approver", dir, NULL), 0);
  snprintf(as, sizeof as, "%s/manager", dir);
  CLI_REFUSED(&z, r, as, "disburse", "approve", batch);
  cr_assert_str_eq(batch_status(&z, strtoull(batch, NULL, 10)).state, "submitted");

  CLI_OK(&z, r, "approver", "disburse", "approve", batch);
  cr_assert(strstr(r->out, "approved") != NULL, "%s", r->out);
  CLI_OK(&z, r, "admin", "disburse", "status", batch);
  cr_assert(strstr(r->out, "submitted by manager") && strstr(r->out, "approved by approver"), "%s",
            r->out);
  free(r);
  dz_done(&z);
}

/* Approval reserves the batch's total: refused while the budget is short, accepted after a
 * top-up. A fund id makes a repeated top-up harmless. */
Test(disburse, budget_short_then_topped_up) {
  dz z;
  dz_start(&z, 4);
  make_programme(&z, 10000); /* 100.00 */
  register_beneficiaries(&z, 4, NULL, 0);
  t_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  uint64_t total = 0;
  const char *path = write_list(&z, "list.csv", 0, 4, NULL, &total);
  submit(&z, r, path, 1, 4, total, NULL);
  cr_assert_eq(r->status, 0, "%s%s", r->out, r->err);
  char batch[24];
  snprintf(batch, sizeof batch, "%" PRIu64, batch_of(r));
  CLI_REFUSED(&z, r, "approver", "disburse", "approve", batch);
  cr_assert(strstr(r->err, "refused: ") && strstr(r->err, "budget"), "why: %s", r->err);
  prog_info pi = programme_show(&z);
  cr_assert_eq(pi.budget, 10000);
  cr_assert_eq(pi.available, 10000, "nothing reserved by a refused approval");

  const char *id = "0123456789abcdef0123456789abcdef";
  CLI_OK(&z, r, "admin", "disburse", "programme", "fund", "--programme", PROG, "--amount", "1000",
         "--id", id);
  CLI_OK(&z, r, "admin", "disburse", "programme", "fund", "--programme", PROG, "--amount", "1000",
         "--id", id);
  cr_assert(strstr(r->out, "budget 1100.00 KES, available 1100.00 KES") != NULL, "%s", r->out);
  pi = programme_show(&z);
  cr_assert_eq(pi.budget, 10000 + 100000, "the same fund id moves the money once");

  CLI_OK(&z, r, "approver", "disburse", "approve", batch);
  uint64_t b = strtoull(batch, NULL, 10);
  wait_status(&z, b, state_is, "completed", T_PAY, "completed");
  pi = programme_show(&z);
  cr_assert_eq(pi.budget, 110000 - total, "the budget paid the batch");
  cr_assert_eq(pi.reserved, 0);
  cr_assert_eq(pi.available, 110000 - total);
  free(r);
  dz_done(&z);
}

/* 50 beneficiaries on alpha and beta, paid to completion: each wallet credited once, the
 * report's paid amounts = the list = what left the programme's budget = what the wallets got. */
Test(disburse, small_batch_paid_and_reconciled) {
  dz z;
  dz_start(&z, 25);
  make_programme(&z, 10000000);
  prog_info before = programme_show(&z);
  register_beneficiaries(&z, 50, NULL, 0);
  uint64_t total = 0, per_op[2] = {0, 0};
  const char *path = write_list_profile(&z, "list.csv", 0, 50, NULL, &total, 1);
  for (int k = 0; k < 50; k++)
    per_op[ben_make(k).op] += ben_make(k).amount;
  uint64_t batch = submit_and_approve(&z, path, 50, total, NULL);

  t_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  const char *args[] = {"disburse", "status", u64s(batch), "--watch", "--interval", "1", NULL};
  cli_runv(&z, r, T_PAY, "manager", args);
  cr_assert_eq(r->status, 0, "status --watch ends when the batch does: %s%s", r->out, r->err);
  const char *last = strstr(r->out, "state completed");
  cr_assert_not_null(last, "%s", r->out);
  cr_assert(strstr(last, "100%") != NULL, "%s", last);
  status s = batch_status(&z, batch);
  cr_assert_eq(s.n[3], 50, "50 paid");
  cr_assert_eq(s.amount[3], total);

  /* The wallets: each beneficiary's credited once, with its amount. */
  for (int op = 0; op < 2; op++) {
    credits c = opsim_credits(&z, op);
    cr_assert_eq(c.in_count, 25, "%s: 25 credits", OPS[op]);
    cr_assert_eq(c.in_amount, per_op[op], "%s: the amounts of its beneficiaries", OPS[op]);
    cr_assert_eq(c.pending, 0);
    for (int k = op; k < 50; k += 2) {
      ben b = ben_make(k);
      cr_assert_eq(c.per_wallet[b.wallet], 1, "%s wallet %d credited once", OPS[op], b.wallet);
      cr_assert_eq(c.amount_wallet[b.wallet], b.amount);
    }
  }

  /* The report. */
  report rep = get_report(&z, batch, r);
  cr_assert_eq(rep.n, 50);
  uint64_t paid = 0;
  for (size_t i = 0; i < rep.n; i++) {
    const row *w = &rep.rows[i];
    cr_assert_str_eq(w->status, "paid", "line %" PRIu64, w->line);
    cr_assert_str_eq(w->currency, "KES");
    cr_assert_eq(w->cycle, 1);
    cr_assert_eq(strlen(w->transfer_id), 32, "a transfer id of 32 hex: %s", w->transfer_id);
    cr_assert_eq(strlen(w->completed), 24, "an RFC 3339 time: %s", w->completed);
    cr_assert_eq(w->completed[23], 'Z');
    ben b = ben_make((int)w->line - 2);
    cr_assert_eq(w->amount, b.amount, "line %" PRIu64, w->line);
    cr_assert_str_eq(w->op, OPS[b.op], "line %" PRIu64, w->line);
    cr_assert(strstr(w->beneficiary, b.id) == NULL && strchr(w->beneficiary, '*') != NULL,
              "masked: %s", w->beneficiary);
    for (size_t j = 0; j < i; j++)
      cr_assert_str_neq(w->transfer_id, rep.rows[j].transfer_id, "transfer ids differ");
    paid += w->amount;
  }
  cr_assert_eq(paid, total, "the report's paid amounts are the list's total");
  cr_assert(strstr(r->err, "50 items: paid 50") != NULL, "totals on stderr: %s", r->err);
  cr_assert(strstr(r->err, kes(total)) != NULL, "%s", r->err);
  free(rep.rows);

  /* The programme's funding account. */
  prog_info after = programme_show(&z);
  cr_assert_eq(before.budget - after.budget, total, "the budget moved by the paid total");
  cr_assert_eq(after.reserved, 0);

  /* Reach: everyone, paid; small cells suppressed. */
  CLI_OK(&z, r, "approver", "disburse", "reach", u64s(batch), "--csv");
  cr_assert(strstr(r->out, "dimension,value,people,paid,failed,median_seconds\n") == r->out, "%s",
            r->out);
  cr_assert(strstr(r->out, "\nall,") != NULL, "an 'all' cell: %s", r->out);
  const char *all = strstr(r->out, "\nall,");
  cr_assert(strstr(all, ",50,50,0,") != NULL, "50 people, 50 paid, 0 failed: %s", all);
  cr_assert(strstr(r->out, "\nsex,F,25,25,0,") && strstr(r->out, "\nsex,M,25,25,0,"), "%s", r->out);
  cr_assert(strstr(r->out, "\nregion,Turkana,45,45,0,") != NULL, "%s", r->out);
  cr_assert(strstr(r->out, "\nregion,Lamu,<10,<10,<10,<10\n") != NULL,
            "a cell of 5 people is suppressed: %s", r->out);
  cr_assert(strstr(r->out, "\noperator,alpha,25,25,0,") &&
                strstr(r->out, "\noperator,beta,25,25,0,"),
            "%s", r->out);
  CLI_OK(&z, r, "manager", "disburse", "reach", u64s(batch));
  cr_assert(strstr(r->out, "DIMENSION") != NULL && strstr(r->out, "<10") != NULL, "%s", r->out);
  free(r);
  dz_done(&z);
}

/* A slow batch cancelled midway: what was paid stays paid, the rest is cancelled and its money
 * is available to the programme again. */
Test(disburse, cancel_mid_batch) {
  dz z;
  dz_start(&z, 20);
  make_programme(&z, 10000000);
  prog_info before = programme_show(&z);
  register_beneficiaries(&z, 40, NULL, 0);
  uint64_t total = 0;
  const char *path = write_list(&z, "list.csv", 0, 40, NULL, &total);
  const char *slow[] = {"--rate", "2", NULL};
  uint64_t batch = submit_and_approve(&z, path, 40, total, slow);
  uint64_t two = 2;
  wait_status(&z, batch, paid_at_least, &two, 30000, "2 paid");
  t_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  CLI_OK(&z, r, "approver", "disburse", "cancel", u64s(batch));
  status s = wait_status(&z, batch, state_is, "cancelled", 30000, "cancelled");
  cr_assert_gt(s.n[5], 0, "some items cancelled");
  cr_assert_lt(s.n[3], 40, "not all paid");

  report rep = get_report(&z, batch, r);
  cr_assert_eq(rep.n, 40);
  uint64_t paid = 0, npaid = 0, ncancelled = 0;
  for (size_t i = 0; i < rep.n; i++) {
    const row *w = &rep.rows[i];
    if (strcmp(w->status, "paid") == 0) {
      paid += w->amount;
      npaid++;
    } else {
      cr_assert_str_eq(w->status, "cancelled", "line %" PRIu64 " is %s", w->line, w->status);
      cr_assert_str_eq(w->reason, "cancelled", "line %" PRIu64, w->line);
      cr_assert_eq(w->transfer_id[0] == '\0' || strlen(w->transfer_id) == 32, 1);
      ncancelled++;
    }
  }
  cr_assert_eq(npaid + ncancelled, 40);
  cr_assert_gt(ncancelled, 0);
  cr_assert_eq(npaid, s.n[3]);
  free(rep.rows);

  uint64_t credited = 0, credited_amount = 0;
  for (int op = 0; op < 2; op++) {
    credits c = opsim_credits(&z, op);
    credited += c.in_count;
    credited_amount += c.in_amount;
  }
  cr_assert_eq(credited, npaid, "the wallets got exactly the paid items");
  cr_assert_eq(credited_amount, paid);
  prog_info after = programme_show(&z);
  cr_assert_eq(after.reserved, 0, "nothing stays reserved");
  cr_assert_eq(after.available, before.available - paid,
               "the cancelled items' money is available again");
  cr_assert_eq(after.budget, before.budget - paid);
  CLI_REFUSED(&z, r, "approver", "disburse", "approve", u64s(batch));
  free(r);
  dz_done(&z);
}

/* The payee operator beta is offline: its items wait and retry; once it is back they are paid,
 * each once. */
Test(disburse, payee_offline_then_back) {
  dz z;
  dz_start(&z, 10);
  make_programme(&z, 10000000);
  register_beneficiaries(&z, 20, NULL, 0);
  uint64_t total = 0;
  const char *path = write_list(&z, "list.csv", 0, 20, NULL, &total);
  opsim_stop(&z, 1);
  uint64_t batch = submit_and_approve(&z, path, 20, total, NULL);
  uint64_t ten = 10;
  status s = wait_status(&z, batch, paid_at_least, &ten, 30000, "alpha's 10 paid");
  sleep_ms(1500); /* a few retries to beta meanwhile */
  s = batch_status(&z, batch);
  cr_assert_eq(s.n[3], 10, "only alpha's items are paid while beta is away");
  cr_assert_eq(s.n[4], 0, "beta's items wait for a retry, they do not fail");
  cr_assert_str_neq(s.state, "completed");
  opsim_start(&z, 1);
  wait_status(&z, batch, state_is, "completed", T_PAY, "completed");
  s = batch_status(&z, batch);
  cr_assert_eq(s.n[3], 20, "all paid");
  for (int op = 0; op < 2; op++) {
    credits c = opsim_credits(&z, op);
    cr_assert_eq(c.in_count, 10, "%s: 10 credits", OPS[op]);
    for (int w = 0; w < 10; w++)
      cr_assert_eq(c.per_wallet[w], 1, "%s wallet %d credited once", OPS[op], w);
  }
  dz_done(&z);
}

/* The payee operator refuses every payment (5105): those items fail at once, with the reason,
 * and their money goes back to the programme; a failed beneficiary may be paid by another batch
 * of the same cycle, a paid one may not. */
Test(disburse, refused_payments_fail_and_release_their_money) {
  dz z;
  dz_start(&z, 5);
  make_programme(&z, 10000000);
  prog_info before = programme_show(&z);
  register_beneficiaries(&z, 10, NULL, 0);
  opsim_stop(&z, 1);
  const char *reject[] = {"--reject-percent", "100", NULL};
  opsim_start_with(&z, 1, reject);
  uint64_t total = 0, alpha_sum = 0, beta_sum = 0;
  const char *path = write_list(&z, "list.csv", 0, 10, NULL, &total);
  for (int k = 0; k < 10; k++)
    *(ben_make(k).op == 0 ? &alpha_sum : &beta_sum) += ben_make(k).amount;
  uint64_t batch = submit_and_approve(&z, path, 10, total, NULL);
  status s = wait_status(&z, batch, state_is, "completed", T_PAY, "completed");
  cr_assert_eq(s.n[3], 5, "alpha's 5 paid");
  cr_assert_eq(s.n[4], 5, "beta's 5 failed");
  cr_assert_eq(s.amount[4], beta_sum);
  t_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  report rep = get_report(&z, batch, r);
  cr_assert_eq(rep.n, 10);
  for (size_t i = 0; i < rep.n; i++) {
    const row *w = &rep.rows[i];
    if (strcmp(w->op, "beta") == 0) {
      cr_assert_str_eq(w->status, "failed", "line %" PRIu64, w->line);
      cr_assert_eq(w->reason_code, 5105, "line %" PRIu64 ": the operator's reason", w->line);
      cr_assert_neq(w->reason[0], '\0', "a reason text");
    } else {
      cr_assert_str_eq(w->status, "paid", "line %" PRIu64, w->line);
    }
  }
  free(rep.rows);
  cr_assert(strstr(r->err, "paid 5") && strstr(r->err, "failed 5"), "%s", r->err);
  prog_info after = programme_show(&z);
  cr_assert_eq(before.budget - after.budget, alpha_sum, "only the paid items left the budget");
  cr_assert_eq(after.reserved, 0);
  cr_assert_eq(after.available, before.available - alpha_sum);
  cr_assert_eq(opsim_credits(&z, 1).in_count, 0, "beta credited nothing");

  /* beta accepts again: its beneficiaries (failed in cycle 1) may be paid in cycle 1 by a new
   * batch; alpha's (paid) may not. */
  opsim_stop(&z, 1);
  opsim_start(&z, 1);
  static char text[T_FILE];
  size_t len = (size_t)snprintf(text, sizeof text,
                                "beneficiary_id_type,beneficiary_id,amount,currency,reference\n");
  for (int k = 1; k < 10; k += 2)
    len += (size_t)snprintf(text + len, sizeof text - len, "national_id,%s,%s,KES,again-%d\n",
                            ben_make(k).id, kes(ben_make(k).amount), k);
  char again[SH_PATH_MAX + 32];
  snprintf(again, sizeof again, "%s/again.csv", z.h->dir);
  write_file(again, text);
  uint64_t batch2 = submit_and_approve(&z, again, 5, beta_sum, NULL);
  s = wait_status(&z, batch2, state_is, "completed", T_PAY, "completed");
  cr_assert_eq(s.n[3], 5);
  credits c = opsim_credits(&z, 1);
  for (int w = 0; w < 5; w++)
    cr_assert_eq(c.per_wallet[w], 1, "beta wallet %d paid once", w);
  const char *paid = write_list(&z, "paid.csv", 0, 1, NULL, &total);
  submit(&z, r, paid, 1, 1, total, NULL);
  cr_assert_eq(r->status, 1, "a beneficiary paid in cycle 1 cannot be listed again: %s%s", r->out,
               r->err);
  cr_assert(strstr(r->err, "line 2: already in batch") != NULL, "%s", r->err);
  free(r);
  dz_done(&z);
}

/* A list paid for two cycles, 3 s apart: every beneficiary once per cycle. */
Test(disburse, recurring_cycles_pay_once_per_cycle) {
  dz z;
  dz_start(&z, 5);
  make_programme(&z, 10000000);
  prog_info before = programme_show(&z);
  register_beneficiaries(&z, 10, NULL, 0);
  uint64_t total = 0;
  const char *path = write_list(&z, "list.csv", 0, 10, NULL, &total);
  const char *cycles[] = {"--cycles", "2", "--every", "3s", NULL};
  uint64_t batch = submit_and_approve(&z, path, 10, total, cycles);
  wait_status(&z, batch, state_is, "completed", T_PAY, "completed");
  t_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  report rep = get_report(&z, batch, r);
  cr_assert_eq(rep.n, 20, "10 items in each of 2 cycles");
  int per_cycle[3] = {0, 0, 0};
  for (size_t i = 0; i < rep.n; i++) {
    const row *w = &rep.rows[i];
    cr_assert(w->cycle == 1 || w->cycle == 2, "cycle %" PRIu32, w->cycle);
    cr_assert_str_eq(w->status, "paid");
    per_cycle[w->cycle]++;
    for (size_t j = 0; j < i; j++) {
      cr_assert(!(rep.rows[j].cycle == w->cycle && rep.rows[j].line == w->line),
                "(cycle, line) once");
      cr_assert_str_neq(rep.rows[j].transfer_id, w->transfer_id);
    }
  }
  cr_assert_eq(per_cycle[1], 10);
  cr_assert_eq(per_cycle[2], 10);
  free(rep.rows);
  for (int op = 0; op < 2; op++) {
    credits c = opsim_credits(&z, op);
    cr_assert_eq(c.in_count, 10, "%s: 5 wallets × 2 cycles", OPS[op]);
    for (int w = 0; w < 5; w++)
      cr_assert_eq(c.per_wallet[w], 2, "%s wallet %d credited once per cycle", OPS[op], w);
  }
  prog_info after = programme_show(&z);
  cr_assert_eq(before.budget - after.budget, 2 * total);
  free(r);
  dz_done(&z);
}

/* A batch scheduled an hour ahead: approval reserves its total (nothing is paid yet) and that
 * money cannot be approved twice — a second batch waits; a cancel before the start releases the
 * reservation, and the second batch is then approved and paid. */
Test(disburse, scheduled_batch_holds_its_reservation_until_cancelled) {
  dz z;
  dz_start(&z, 2);
  register_beneficiaries(&z, 4, NULL, 0);
  uint64_t total = 0;
  const char *path = write_list(&z, "list.csv", 0, 4, NULL, &total);
  make_programme(&z, total + total / 2); /* one batch's worth and a half */
  prog_info before = programme_show(&z);
  const char *later[] = {"--at", "+1h", NULL};
  uint64_t batch = submit_and_approve(&z, path, 4, total, later);
  status s = batch_status(&z, batch);
  cr_assert_str_eq(s.state, "approved");
  cr_assert_eq(s.n[3], 0, "nothing paid before the start");
  prog_info held = programme_show(&z);
  cr_assert_eq(held.reserved, total, "approval reserved the batch's total");
  cr_assert_eq(held.available, before.available - total);
  t_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  CLI_OK(&z, r, "manager", "disburse", "status", u64s(batch));
  cr_assert(strstr(r->out, "starts at ") != NULL, "%s", r->out);

  /* The same list for cycle 2, due now: the reservation of the first leaves too little. */
  submit(&z, r, path, 2, 4, total, NULL);
  cr_assert_eq(r->status, 0, "%s%s", r->out, r->err);
  char second[24];
  snprintf(second, sizeof second, "%" PRIu64, batch_of(r));
  CLI_REFUSED(&z, r, "approver", "disburse", "approve", second);
  cr_assert(strstr(r->err, "refused: 4001") != NULL, "%s", r->err);

  CLI_OK(&z, r, "manager", "disburse", "cancel", u64s(batch));
  s = wait_status(&z, batch, state_is, "cancelled", 30000, "cancelled");
  prog_info after = programme_show(&z);
  cr_assert_eq(after.reserved, 0);
  cr_assert_eq(after.available, before.available, "the reservation is released");
  cr_assert_eq(after.budget, before.budget);
  for (int op = 0; op < 2; op++)
    cr_assert_eq(opsim_credits(&z, op).in_count, 0, "%s: nothing paid", OPS[op]);

  CLI_OK(&z, r, "approver", "disburse", "approve", second);
  wait_status(&z, strtoull(second, NULL, 10), state_is, "completed", T_PAY, "completed");
  after = programme_show(&z);
  cr_assert_eq(after.budget, before.budget - total);
  cr_assert_eq(opsim_credits(&z, 0).in_count + opsim_credits(&z, 1).in_count, 4);
  free(r);
  dz_done(&z);
}

/* A recurring batch whose second cycle finds the budget short waits for funds, and goes on
 * once the programme is topped up. */
Test(disburse, recurring_cycle_waits_for_funds) {
  dz z;
  dz_start(&z, 3);
  register_beneficiaries(&z, 6, NULL, 0);
  uint64_t total = 0;
  const char *path = write_list(&z, "list.csv", 0, 6, NULL, &total);
  make_programme(&z, total); /* exactly one cycle */
  const char *cycles[] = {"--cycles", "2", "--every", "2s", NULL};
  uint64_t batch = submit_and_approve(&z, path, 6, total, cycles);
  status s = wait_status(&z, batch, state_is, "waiting_funds", 60000, "waiting_funds");
  prog_info pi = programme_show(&z);
  cr_assert_eq(pi.budget, 0, "cycle 1 spent the budget");
  cr_assert_eq(opsim_credits(&z, 0).in_count + opsim_credits(&z, 1).in_count, 6,
               "cycle 1 paid while cycle 2 waits");
  t_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  CLI_OK(&z, r, "admin", "disburse", "programme", "fund", "--programme", PROG, "--amount",
         kes(total));
  s = wait_status(&z, batch, state_is, "completed", T_PAY, "completed");
  cr_assert_eq(s.n[3], 6, "cycle 2: 6 paid");
  pi = programme_show(&z);
  cr_assert_eq(pi.budget, 0);
  cr_assert_eq(pi.reserved, 0);
  for (int op = 0; op < 2; op++) {
    credits c = opsim_credits(&z, op);
    for (int w = 0; w < 3; w++)
      cr_assert_eq(c.per_wallet[w], 2, "%s wallet %d paid in both cycles", OPS[op], w);
  }
  free(r);
  dz_done(&z);
}

/* tumad killed (SIGKILL) in the middle of a batch and restarted on its data directory: the
 * batch completes and no beneficiary is paid twice. */
Test(disburse, switch_killed_mid_batch_pays_each_once) {
  dz z;
  dz_start(&z, 20);
  make_programme(&z, 10000000);
  prog_info before = programme_show(&z);
  register_beneficiaries(&z, 40, NULL, 0);
  uint64_t total = 0;
  const char *path = write_list(&z, "list.csv", 0, 40, NULL, &total);
  const char *slow[] = {"--rate", "8", NULL};
  uint64_t batch = submit_and_approve(&z, path, 40, total, slow);
  uint64_t some = 5;
  status mid = wait_status(&z, batch, paid_at_least, &some, 30000, "5 paid");
  cr_assert_lt(mid.n[3], 40, "the batch is still running when tumad is killed");
  /* A watch that outlives the switch's restart. */
  proc watch;
  const char *watch_args[] = {"disburse",   "status", u64s(batch), "--watch",
                              "--interval", "1",      NULL};
  cli_spawn(&z, &watch, "approver", watch_args);
  sleep_ms(300);
  cr_assert_eq(sh_kill(z.h), 0, "kill -9 tumad");
  sleep_ms(1500); /* down for more than the watch's interval */
  char err[512] = "";
  cr_assert_eq(sh_start(z.h, T_START, err, sizeof err), 0, "%s", err);
  status s = wait_status(&z, batch, state_is, "completed", T_PAY, "completed after the restart");
  cr_assert_eq(s.n[3], 40, "all 40 paid");
  static char out[T_OUT];
  int watched = proc_wait(&watch, T_PAY);
  read_file(watch.err, out);
  cr_assert_eq(watched, 0, "status --watch rode out the restart: %s", out);
  cr_assert(strstr(out, "tuma disburse status: ") != NULL, "a poll failed while tumad was down");
  cr_assert(strstr(read_file(watch.out, out), "state completed") != NULL, "%s", out);
  for (int op = 0; op < 2; op++) {
    credits c = opsim_credits(&z, op);
    cr_assert_eq(c.pending, 0);
    for (int w = 0; w < 20; w++)
      cr_assert_eq(c.per_wallet[w], 1, "%s wallet %d credited exactly once", OPS[op], w);
  }
  prog_info after = programme_show(&z);
  cr_assert_eq(before.budget - after.budget, total, "the budget paid each item once");
  cr_assert_eq(after.reserved, 0);
  dz_done(&z);
}

/* One beneficiary at a time (id masked in the output), an upload with refused rows named by
 * line, and who may register. */
Test(disburse, beneficiary_registration) {
  dz z;
  dz_start(&z, 0);
  t_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  CLI_OK(&z, r, "manager", "disburse", "beneficiary", "add", "--type", "national_id", "--id",
         "27845119", "--msisdn", "254700000001", "--operator", "alpha");
  cr_assert(strstr(r->out, "278***19") != NULL, "masked: %s", r->out);
  cr_assert(strstr(r->out, "27845119") == NULL && strstr(r->out, "254700000001") == NULL,
            "nothing in clear: %s", r->out);
  CLI_OK(&z, r, "admin", "disburse", "beneficiary", "add", "--type", "refugee_id", "--id",
         "KAK-104", "--msisdn", "254710000002");
  cr_assert(strstr(r->out, "*******") != NULL && strstr(r->out, "KAK") == NULL,
            "a short id masked whole: %s", r->out);
  CLI_REFUSED(&z, r, "approver", "disburse", "beneficiary", "add", "--type", "national_id", "--id",
              "27845120", "--msisdn", "254700000003");

  char path[SH_PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/ben.csv", z.h->dir);
  write_file(path, "beneficiary_id_type,beneficiary_id,msisdn,operator\n"
                   "national_id,40000001,254700000011,alpha\n"
                   "national_id,40000002,25470000x012,alpha\n"
                   "passport,40000003,254700000013,\n"
                   "national_id,40000004,254710000014,\n");
  /* A file the switch cannot read at all (its header) is refused whole. */
  char bad[SH_PATH_MAX + 32];
  snprintf(bad, sizeof bad, "%s/bad-header.csv", z.h->dir);
  write_file(bad, "beneficiary_id_type,beneficiary_id,msisdn,operater\n"
                  "national_id,40000009,254700000019,alpha\n");
  CLI_REFUSED(&z, r, "manager", "disburse", "beneficiary", "upload", "--file", bad);
  cr_assert(strstr(r->err, "refused: 3100") && strstr(r->err, "operater"), "%s", r->err);
  CLI_OK(&z, r, "manager", "disburse", "beneficiary", "upload", "--file", path, "--chunk-bytes",
         "64");
  cr_assert(strstr(r->out, "registered 2, refused 2") != NULL, "%s", r->out);
  cr_assert(strstr(r->out, "line 3: ") && strstr(r->out, "line 4: "), "%s", r->out);
  cr_assert(!strstr(r->out, "line 2: ") && !strstr(r->out, "line 5: "), "%s", r->out);
  free(r);
  dz_done(&z);
}

/* Usage errors exit 2 before anything is attempted (no switch runs here: 1 would mean it tried
 * to connect); a command that is fine but finds no switch exits 1. */
Test(disburse, usage_errors_exit_2) {
  const char *bin = getenv("TUMA_CLI");
  cr_assert_not_null(bin);
  const char *tmp = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
  char dir[SH_PATH_MAX];
  snprintf(dir, sizeof dir, "%s/tuma-dz-XXXXXX", tmp);
  cr_assert_not_null(mkdtemp(dir));
  char file[SH_PATH_MAX + 16];
  snprintf(file, sizeof file, "%s/l.csv", dir);
  write_file(file, "beneficiary_id_type,beneficiary_id,amount,currency,reference\n");
  const char *conn = "--connect=127.0.0.1:1";
  const char *const cases[][20] = {
      {"disburse", NULL},
      {"disburse", "frobnicate", NULL},
      {"disburse", "programme", "create", "--id", "Bad_Id", "--name", "x", "--currency", "KES",
       "--funding", "gamma", NULL},
      {"disburse", "programme", "create", "--id", "p", "--name", "x", "--currency", "XYZ",
       "--funding", "gamma", NULL},
      {"disburse", "programme", "create", "--id", "p", "--name", "x", "--currency", "KES",
       "--funding", "gamma", "--cap", "1.001", NULL},
      {"disburse", "programme", "create", "--id", "p", "--name", "x", "--currency", "KES",
       "--funding", "gamma", "--end", "2026-02-30T00:00:00Z", NULL},
      {"disburse", "programme", "fund", "--programme", "p", "--amount", "-5", NULL},
      {"disburse", "programme", "fund", "--programme", "p", "--amount", "5", "--id", "xyz", NULL},
      {"disburse", "beneficiary", "add", "--type", "passport", "--id", "1", "--msisdn", "25470",
       NULL},
      {"disburse", "beneficiary", "add", "--type", "msisdn", "--id", "12", "--msisdn",
       "254700000001", NULL},
      {"disburse", "submit", "--programme", "p", "--cycle", "0", "--file", file, "--expect-count",
       "1", "--expect-total", "1", NULL},
      {"disburse", "submit", "--programme", "p", "--cycle", "1", "--file", file, "--expect-count",
       "1", "--expect-total", "1e2", NULL},
      {"disburse", "submit", "--programme", "p", "--cycle", "1", "--file", file, "--expect-count",
       "1", "--expect-total", "1", "--cycles", "2", NULL},
      {"disburse", "submit", "--programme", "p", "--cycle", "1", "--file", file, "--expect-count",
       "1", "--expect-total", "1", "--every", "5x", "--cycles", "2", NULL},
      {"disburse", "submit", "--programme", "p", "--cycle", "1", "--file", "/nonexistent",
       "--expect-count", "1", "--expect-total", "1", NULL},
      {"disburse", "approve", "0", NULL},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const char *argv[24];
    int n = 0;
    argv[n++] = bin;
    for (int j = 0; cases[k][j] != NULL; j++)
      argv[n++] = cases[k][j];
    argv[n++] = conn;
    argv[n] = NULL;
    proc p;
    proc_start(&p, dir, "usage", argv);
    int st = proc_wait(&p, T_CMD);
    static char err[T_OUT];
    cr_assert_eq(st, 2, "case %zu (%s %s %s) exits 2, got %d: %s", k, cases[k][1],
                 cases[k][2] ? cases[k][2] : "", cases[k][3] ? cases[k][3] : "", st,
                 read_file(p.err, err));
  }
  /* Help: exit 0, every command listed; `tuma --help` names disburse. */
  static const char *const helps[][4] = {
      {"disburse", "--help", NULL}, {"disburse", "submit", "--help", NULL}, {"--help", NULL}};
  for (size_t k = 0; k < sizeof helps / sizeof helps[0]; k++) {
    const char *argv[8] = {bin};
    for (int j = 0; helps[k][j] != NULL; j++)
      argv[j + 1] = helps[k][j];
    proc h;
    proc_start(&h, dir, "help", argv);
    cr_assert_eq(proc_wait(&h, T_CMD), 0, "help %zu exits 0", k);
    static char out[T_OUT];
    read_file(h.out, out);
    static const char *const words[] = {"programme create", "beneficiary upload",
                                        "submit",           "approve",
                                        "cancel",           "status",
                                        "report",           "reach"};
    if (k < 2)
      for (size_t w = 0; w < sizeof words / sizeof words[0]; w++)
        cr_assert(strstr(out, words[w]) != NULL, "'%s' in the help: %s", words[w], out);
    else
      cr_assert(strstr(out, "disburse") != NULL, "%s", out);
    unlink(h.out);
    unlink(h.err);
  }
  const char *fine[] = {bin,  "disburse", "status", "7",     conn, "--ca",
                        file, "--cert",   file,     "--key", file, NULL};
  proc p;
  proc_start(&p, dir, "fine", fine);
  cr_assert_eq(proc_wait(&p, T_CMD), 1, "a well-formed command that cannot connect exits 1");
  unlink(p.out);
  unlink(p.err);
  char path[SH_PATH_MAX + 16];
  snprintf(path, sizeof path, "%s/usage.out", dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/usage.err", dir);
  unlink(path);
  unlink(file);
  rmdir(dir);
}
