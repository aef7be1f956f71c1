/* test_opsim.c — integration suite for tuma-opsim (adapters/opsim/), the simulated mobile-money
 * operator: real tuma-opsim processes (TUMA_OPSIM) against a real tumad (tests/switch_harness.h,
 * participants alpha, beta and gamma with SH_DEPOSIT each, MSISDN prefixes 25470, 25471, 25472).
 *
 * Scenarios: alpha and beta pay each other for a few seconds with refusals (random, frozen
 * wallets, wallet limits), MSISDNs that do not exist and expirations too short to make it, then
 * are stopped and reconciled — each operator's wallets against its position at the switch (admin
 * PositionsQuery), money conserved over wallets and liquidity, every transfer settled once on
 * both sides and every wallet's balance explained by its own history; a payee killed (kill -9)
 * while the switch is frozen, so that it dies between its COMMITTED fulfil and the confirmation,
 * then restarted on the same data directory, still reconciles; so does a switch killed and
 * restarted under both operators; the data directory is checked on
 * restart and locked while in use; usage errors exit 2 and touch nothing; a short session under
 * valgrind (skipped when valgrind is missing or in a sanitizer build).
 *
 * Every wait is bounded. When a test fails, its scratch directory is kept (tumad.log and each
 * opsim's .out / .err files) and the end of tumad's log is written to stderr.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "switch_harness.h"
#include "tclient.h"

#define T_START 15000 /* ms: tumad start-up */
#define T_READY 10000 /* ms: an opsim connected and its wallets registered */
#define T_EXIT 30000  /* ms: an opsim draining and exiting after SIGTERM */
#define T_CMD 10000   /* ms: a command that should finish promptly */

#define WALLETS 200
#define BALANCE 10000

enum { OUT_MAX = 1 << 22, HIST_MAX = 20000 };

/* ================================================================ harness and processes */

static sh_switch *g_h;

static void op_fini(void) {
  if (!g_h)
    return;
  sh_dump_log(g_h, "tumad", 30);
  fprintf(stderr, "[tumad] scratch directory kept: %s\n", g_h->dir);
  sh_destroy(g_h, 0);
  g_h = NULL;
}

TestSuite(opsim, .fini = op_fini, .timeout = 180);

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

static const char *opsim_bin(void) {
  const char *p = getenv("TUMA_OPSIM");
  cr_assert(p && access(p, X_OK) == 0, "TUMA_OPSIM must name the tuma-opsim executable");
  return p;
}

/* A harness with certificates; started unless !start. */
static sh_switch *t_switch(int start) {
  char err[512] = "";
  sh_switch *h = NULL;
  sh_options o = {.log_level = "info", .max_expiry_ms = 60000};
  cr_assert_eq(sh_create(&o, &h, err, sizeof err), 0, "%s", err);
  g_h = h;
  if (start)
    cr_assert_eq(sh_start(h, T_START, err, sizeof err), 0, "%s", err);
  return h;
}

static void t_done(sh_switch *h) {
  if (h->pid) {
    int st = 0;
    cr_assert_eq(sh_stop(h, 10000, &st), 0, "tumad stops on SIGTERM");
  }
  g_h = NULL;
  sh_destroy(h, 1);
}

/* A child process with stdout and stderr in files. */
typedef struct proc {
  pid_t pid;
  char out[SH_PATH_MAX + 64], err[SH_PATH_MAX + 64];
} proc;

/* Runs argv (argv[0] = the program) with stdout to DIR/NAME.out and stderr to DIR/NAME.err
 * (truncated). The child dies with us. */
static void proc_start(proc *p, const char *dir, const char *name, const char *const *argv) {
  memset(p, 0, sizeof *p);
  snprintf(p->out, sizeof p->out, "%s/%s.out", dir, name);
  snprintf(p->err, sizeof p->err, "%s/%s.err", dir, name);
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
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
}

/* Waits at most timeout_ms; returns the exit status (0-255), or -1 if it was killed by a
 * signal or had to be killed. */
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

/* A whole file, NUL-terminated (static buffer: valid until the next call). */
static const char *slurp(const char *path) {
  static char buf[OUT_MAX];
  buf[0] = '\0';
  FILE *f = fopen(path, "rb");
  if (!f)
    return buf;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static int file_contains(const char *path, const char *needle) {
  return strstr(slurp(path), needle) != NULL;
}

/* Waits until path contains needle (1) or timeout_ms pass (0). */
static int wait_for_text(const char *path, const char *needle, int timeout_ms) {
  int64_t deadline = mono_ms() + timeout_ms;
  while (mono_ms() < deadline) {
    if (file_contains(path, needle))
      return 1;
    sleep_ms(20);
  }
  return file_contains(path, needle);
}

/* Runs tuma-opsim with args (NULL-terminated, without the program) to completion. Returns the
 * exit status; the output is in DIR/NAME.out and .err. */
static int run_opsim(const char *dir, const char *name, const char *const *args, int timeout_ms) {
  const char *argv[64];
  size_t n = 0;
  argv[n++] = opsim_bin();
  for (size_t i = 0; args[i] && n < 63; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  proc p;
  proc_start(&p, dir, name, argv);
  return proc_wait(&p, timeout_ms);
}

/* ================================================================ reading opsim's JSON */

/* The unsigned number after "key": at or after from; the test fails if absent. */
static uint64_t json_u64(const char *from, const char *key) {
  char pat[96];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = strstr(from, pat);
  cr_assert_not_null(p, "no %s in %.400s", pat, from);
  p += strlen(pat);
  if (*p == '{') /* {"count":N,"amount":M}: the caller asks for count or amount itself */
    return 0;
  char *end;
  errno = 0;
  uint64_t v = strtoull(p, &end, 10);
  cr_assert(end != p && errno == 0, "bad number for %s: %.40s", pat, p);
  return v;
}

/* The object "key":{...} at or after from (a pointer into from). */
static const char *json_obj(const char *from, const char *key) {
  char pat[96];
  snprintf(pat, sizeof pat, "\"%s\":{", key);
  const char *p = strstr(from, pat);
  cr_assert_not_null(p, "no %s in %.400s", pat, from);
  return p + strlen(pat) - 1;
}

typedef struct totals {
  uint64_t initial_total, wallets_total;
  uint64_t pending_credits, pending_credit_amount, pending_debits, pending_debit_amount;
  uint64_t in_count, in_amount, out_count, out_amount;
  uint64_t rejected_in, aborted_out, expired_out, not_found_out, unsent_out;
  int reconciled;
} totals;

static totals parse_totals(const char *j) {
  totals t;
  memset(&t, 0, sizeof t);
  t.initial_total = json_u64(j, "initial_total");
  t.wallets_total = json_u64(j, "wallets_total");
  t.pending_credits = json_u64(json_obj(j, "pending_credits"), "count");
  t.pending_credit_amount = json_u64(json_obj(j, "pending_credits"), "amount");
  t.pending_debits = json_u64(json_obj(j, "pending_debits"), "count");
  t.pending_debit_amount = json_u64(json_obj(j, "pending_debits"), "amount");
  t.in_count = json_u64(json_obj(j, "committed_in"), "count");
  t.in_amount = json_u64(json_obj(j, "committed_in"), "amount");
  t.out_count = json_u64(json_obj(j, "committed_out"), "count");
  t.out_amount = json_u64(json_obj(j, "committed_out"), "amount");
  t.rejected_in = json_u64(j, "rejected_in");
  t.aborted_out = json_u64(j, "aborted_out");
  t.expired_out = json_u64(j, "expired_out");
  t.not_found_out = json_u64(j, "not_found_out");
  t.unsent_out = json_u64(j, "unsent_out");
  t.reconciled = strstr(j, "\"reconciled\":true") != NULL;
  return t;
}

/* `tuma-opsim totals --data DATA`. */
static totals get_totals(const char *dir, const char *data) {
  const char *args[] = {"totals", "--data", data, NULL};
  int st = run_opsim(dir, "totals", args, T_CMD);
  char path[SH_PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/totals.out", dir);
  cr_assert_eq(st, 0, "tuma-opsim totals --data %s exits 0 (%d)", data, st);
  return parse_totals(slurp(path));
}

/* ================================================================ the switch's positions */

typedef struct position {
  uint64_t liquidity, reserved;
  int64_t net;
} position;

static position get_position(sh_switch *h, const char *participant) {
  tc_client *c = NULL;
  char err[256] = "";
  int rc = tc_connect(h->admin_port, h->ca, sh_cert(h, "admin"), sh_key(h, "admin"), 5000, &c, err,
                      sizeof err);
  cr_assert_eq(rc, TC_OK, "admin connect: %s", err);
  Tuma__V1__AdminEnvelope env = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__PositionsQuery q = TUMA__V1__POSITIONS_QUERY__INIT;
  q.participant_id = (char *)participant;
  env.correlation_id = 7;
  env.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_POSITIONS_QUERY;
  env.positions_query = &q;
  cr_assert_eq(tc_send_admin(c, &env), TC_OK, "admin: send PositionsQuery");
  Tuma__V1__AdminEnvelope *r = NULL;
  rc = tc_recv_admin(c, 5000, &r);
  cr_assert_eq(rc, TC_OK, "admin: no answer: %s", tc_strerror(rc));
  cr_assert_eq(r->body_case, TUMA__V1__ADMIN_ENVELOPE__BODY_POSITIONS_RESULT,
               "admin: expected PositionsResult");
  cr_assert_eq(r->positions_result->n_positions, 1, "one currency for %s", participant);
  const Tuma__V1__Position *p = r->positions_result->positions[0];
  position out = {p->liquidity, p->reserved, p->net_position};
  tuma__v1__admin_envelope__free_unpacked(r, NULL);
  tc_close(c, 1);
  return out;
}

/* ================================================================ history */

typedef struct hrec {
  char id[40];
  int credit;
  uint32_t wallet;
  uint64_t amount;
  int committed;
} hrec;

typedef struct history {
  hrec *r;
  size_t n;
} history;

static int hrec_cmp(const void *a, const void *b) {
  return strcmp(((const hrec *)a)->id, ((const hrec *)b)->id);
}

/* `tuma-opsim history --data DATA`, sorted by id; the ids must be unique. */
static history get_history(const char *dir, const char *data) {
  const char *args[] = {"history", "--data", data, NULL};
  int st = run_opsim(dir, "history", args, T_CMD);
  cr_assert_eq(st, 0, "tuma-opsim history exits 0");
  char path[SH_PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/history.out", dir);
  const char *text = slurp(path);
  history h = {calloc(HIST_MAX, sizeof(hrec)), 0};
  cr_assert_not_null(h.r);
  for (const char *line = text; *line;) {
    const char *nl = strchr(line, '\n');
    cr_assert_not_null(nl, "history lines end with a newline");
    cr_assert_lt(h.n, HIST_MAX);
    hrec *r = &h.r[h.n++];
    const char *id = strstr(line, "\"id\":\"");
    cr_assert(id && id < nl);
    snprintf(r->id, sizeof r->id, "%.36s", id + 6);
    r->credit = strstr(line, "\"kind\":\"credit\"") && strstr(line, "\"kind\":\"credit\"") < nl;
    r->wallet = (uint32_t)json_u64(line, "wallet");
    r->amount = json_u64(line, "amount");
    const char *c = strstr(line, "\"outcome\":\"COMMITTED\"");
    r->committed = c && c < nl;
    line = nl + 1;
  }
  qsort(h.r, h.n, sizeof *h.r, hrec_cmp);
  for (size_t i = 1; i < h.n; i++)
    cr_assert(strcmp(h.r[i - 1].id, h.r[i].id) != 0, "%s settled twice in %s", h.r[i].id, data);
  return h;
}

static const hrec *find_hrec(const history *h, const char *id) {
  hrec key;
  snprintf(key.id, sizeof key.id, "%s", id);
  return bsearch(&key, h->r, h->n, sizeof *h->r, hrec_cmp);
}

/* Every debit `payer` kept is a credit `payee` applied, once, for the same amount — and back. */
static void check_pairs(const history *payer, const history *payee, const char *pn,
                        const char *qn) {
  size_t out = 0, in = 0;
  for (size_t i = 0; i < payer->n; i++) {
    const hrec *d = &payer->r[i];
    if (d->credit || !d->committed)
      continue;
    out++;
    const hrec *c = find_hrec(payee, d->id);
    cr_assert(c && c->credit && c->committed, "%s's committed payment %s is not a credit of %s", pn,
              d->id, qn);
    cr_assert_eq(c->amount, d->amount, "%s: amounts differ", d->id);
  }
  for (size_t i = 0; i < payee->n; i++) {
    const hrec *c = &payee->r[i];
    if (!c->credit || !c->committed)
      continue;
    in++;
    const hrec *d = find_hrec(payer, c->id);
    cr_assert(d && !d->credit && d->committed, "%s credited %s, which %s did not pay", qn, c->id,
              pn);
  }
  cr_assert_eq(in, out);
}

/* Each wallet's balance = its initial balance + its committed credits - its committed debits. */
static void check_wallets(const char *dir, const char *data, const history *h) {
  int64_t *expect = calloc(WALLETS, sizeof *expect);
  cr_assert_not_null(expect);
  for (uint32_t i = 0; i < WALLETS; i++)
    expect[i] = BALANCE;
  for (size_t i = 0; i < h->n; i++) {
    const hrec *r = &h->r[i];
    cr_assert_lt(r->wallet, WALLETS);
    if (r->committed)
      expect[r->wallet] += r->credit ? (int64_t)r->amount : -(int64_t)r->amount;
  }
  const char *args[] = {"wallets", "--data", data, NULL};
  cr_assert_eq(run_opsim(dir, "wallets", args, T_CMD), 0, "tuma-opsim wallets exits 0");
  char path[SH_PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/wallets.out", dir);
  const char *text = slurp(path);
  uint32_t seen = 0;
  for (const char *line = text; *line; seen++) {
    const char *nl = strchr(line, '\n');
    cr_assert_not_null(nl);
    uint32_t index = (uint32_t)json_u64(line, "index");
    cr_assert_eq(index, seen);
    int64_t balance = (int64_t)json_u64(line, "balance");
    cr_assert_eq(balance, expect[index],
                 "%s wallet %" PRIu32 ": balance %" PRId64 ", its history says %" PRId64, data,
                 index, balance, expect[index]);
    cr_assert(strstr(line, "\"msisdn\":\"254*******") != NULL, "the MSISDN is masked: %.80s", line);
    line = nl + 1;
  }
  cr_assert_eq(seen, WALLETS);
  free(expect);
}

/* ================================================================ reconciliation */

typedef struct op {
  const char *name;
  char data[SH_PATH_MAX + 32];
  position before;
} op;

/* Both operators are stopped: their wallets against the switch, money conserved, each transfer
 * once on both sides, each wallet explained by its history. */
static void reconcile(sh_switch *h, op *a, op *b) {
  position gamma_before = {SH_DEPOSIT, 0, 0};
  op *ops[2] = {a, b};
  totals t[2];
  history hist[2];
  uint64_t before_sum = gamma_before.liquidity, after_sum = 0;
  for (int i = 0; i < 2; i++) {
    t[i] = get_totals(h->dir, ops[i]->data);
    position after = get_position(h, ops[i]->name);
    cr_assert_eq(after.reserved, 0, "%s: nothing reserved at the switch at the end", ops[i]->name);
    cr_assert_eq(t[i].pending_credits + t[i].pending_debits, 0,
                 "%s: nothing left pending (credits %" PRIu64 ", debits %" PRIu64 ")", ops[i]->name,
                 t[i].pending_credits, t[i].pending_debits);
    cr_assert(t[i].reconciled, "%s: its own totals reconcile", ops[i]->name);
    cr_assert_eq(t[i].initial_total, (uint64_t)WALLETS * BALANCE);
    int64_t wallets_change = (int64_t)t[i].wallets_total - (int64_t)t[i].initial_total;
    int64_t position_change = (int64_t)after.liquidity - (int64_t)ops[i]->before.liquidity;
    cr_assert_eq(wallets_change, position_change,
                 "%s: wallets moved by %" PRId64 ", its liquidity at the switch by %" PRId64,
                 ops[i]->name, wallets_change, position_change);
    cr_assert_eq(wallets_change, (int64_t)t[i].in_amount - (int64_t)t[i].out_amount);
    cr_assert_eq(-(after.net - ops[i]->before.net), position_change,
                 "%s: net position = sent - received", ops[i]->name);
    before_sum += t[i].initial_total + ops[i]->before.liquidity;
    after_sum += t[i].wallets_total + after.liquidity;
    hist[i] = get_history(h->dir, ops[i]->data);
    check_wallets(h->dir, ops[i]->data, &hist[i]);
  }
  after_sum += get_position(h, "gamma").liquidity;
  cr_assert_eq(after_sum, before_sum, "money is conserved over wallets and liquidity");
  cr_assert_eq(t[0].out_amount, t[1].in_amount, "alpha paid what beta received");
  cr_assert_eq(t[1].out_amount, t[0].in_amount, "beta paid what alpha received");
  check_pairs(&hist[0], &hist[1], a->name, b->name);
  check_pairs(&hist[1], &hist[0], b->name, a->name);
  free(hist[0].r);
  free(hist[1].r);
}

/* The arguments of one operator: NAME pays OTHER's wallets. extra: more (NULL-terminated). */
static void opsim_argv(const char **argv, size_t cap, sh_switch *h, const char *name,
                       const char *data, const char *const *extra) {
  static char bufs[4][8][SH_PATH_MAX + 80];
  static int turn;
  char(*b)[SH_PATH_MAX + 80] = bufs[turn++ % 4];
  snprintf(b[0], sizeof b[0], "127.0.0.1:%u", h->port);
  snprintf(b[1], sizeof b[1], "%s", sh_cert(h, name));
  snprintf(b[2], sizeof b[2], "%s", sh_key(h, name));
  snprintf(b[3], sizeof b[3], "%s", strcmp(name, "alpha") == 0 ? "25470" : "25471");
  size_t n = 0;
  const char *base[] = {opsim_bin(), "--connect",
                        b[0],        "--ca",
                        h->ca,       "--cert",
                        b[1],        "--key",
                        b[2],        "--as",
                        name,        "--data",
                        data,        "--wallets",
                        "200",       "--msisdn-prefix",
                        b[3],        "--initial-balance",
                        "10000",     "--log-level",
                        "info",      NULL};
  for (size_t i = 0; base[i]; i++)
    argv[n++] = base[i];
  for (size_t i = 0; extra && extra[i] && n + 1 < cap; i++)
    argv[n++] = extra[i];
  argv[n] = NULL;
}

static void op_init(op *o, sh_switch *h, const char *name) {
  o->name = name;
  snprintf(o->data, sizeof o->data, "%s/%s.d", h->dir, name);
  o->before = get_position(h, name);
}

/* ================================================================ tests */

Test(opsim, two_operators_reconcile_with_the_switch) {
  sh_switch *h = t_switch(1);
  op a, b;
  op_init(&a, h, "alpha");
  op_init(&b, h, "beta");
  /* beta: every 10th wallet frozen, wallets capped a little above their opening balance */
  const char *beta_extra[] = {
      "--frozen-every",         "10",    "--wallet-limit",  "10800", "--payee-latency-ms", "10",
      "--reject-percent",       "5",     "--rate",          "40",    "--duration",         "3",
      "--payee-prefix",         "25470", "--payee-wallets", "200",   "--unknown-percent",  "5",
      "--short-expiry-percent", "5",     "--expiry-ms",     "3000",  "--linger",           "--json",
      "--print-totals",         NULL};
  const char *alpha_extra[] = {"--frozen-every",
                               "50",
                               "--payee-latency-ms",
                               "5",
                               "--reject-percent",
                               "5",
                               "--rate",
                               "80",
                               "--duration",
                               "3",
                               "--payee-prefix",
                               "25471",
                               "--payee-wallets",
                               "200",
                               "--unknown-percent",
                               "5",
                               "--short-expiry-percent",
                               "5",
                               "--short-expiry-ms",
                               "3",
                               "--with-condition",
                               "--expiry-ms",
                               "3000",
                               "--linger",
                               "--json",
                               "--print-totals",
                               NULL};
  const char *argv_b[64], *argv_a[64];
  opsim_argv(argv_b, 64, h, "beta", b.data, beta_extra);
  opsim_argv(argv_a, 64, h, "alpha", a.data, alpha_extra);
  proc pa, pb;
  proc_start(&pb, h->dir, "beta", argv_b);
  cr_assert(wait_for_text(pb.err, "ready", T_READY), "beta ready: %s", slurp(pb.err));
  proc_start(&pa, h->dir, "alpha", argv_a);
  cr_assert(wait_for_text(pa.err, "ready", T_READY), "alpha ready: %s", slurp(pa.err));
  cr_assert(wait_for_text(pa.err, "payments done", 20000), "alpha done: %s", slurp(pa.err));
  cr_assert(wait_for_text(pb.err, "payments done", 20000), "beta done: %s", slurp(pb.err));
  cr_assert_eq(kill(pa.pid, SIGTERM), 0);
  cr_assert_eq(kill(pb.pid, SIGTERM), 0);
  cr_assert_eq(proc_wait(&pa, T_EXIT), 0, "alpha exits 0 on SIGTERM: %s", slurp(pa.err));
  cr_assert_eq(proc_wait(&pb, T_EXIT), 0, "beta exits 0 on SIGTERM: %s", slurp(pb.err));

  /* The run reports: one JSON object each, with a good mix of outcomes. */
  char ja[1 << 14], jb[1 << 14];
  snprintf(ja, sizeof ja, "%s", slurp(pa.out));
  snprintf(jb, sizeof jb, "%s", slurp(pb.out));
  cr_assert(ja[0] == '{' && strchr(ja, '\n') == strrchr(ja, '\n'), "one JSON line: %s", ja);
  cr_log_info("alpha: %s", ja);
  cr_log_info("beta: %s", jb);
  const char *payer_a = json_obj(ja, "payer"), *payee_b = json_obj(jb, "payee");
  cr_assert_gt(json_u64(payer_a, "committed"), 50, "alpha's payments commit: %s", ja);
  cr_assert_gt(json_u64(payer_a, "aborted"), 0, "some of alpha's payments are refused: %s", ja);
  cr_assert_gt(json_u64(payer_a, "unknown_msisdn"), 0, "%s", ja);
  cr_assert_gt(json_u64(payer_a, "short_expiry"), 0, "%s", ja);
  cr_assert_gt(json_u64(payee_b, "rejected"), 0, "beta refuses some: %s", jb);
  char payer_codes[4096];
  snprintf(payer_codes, sizeof payer_codes, "%.*s", (int)(strstr(payer_a, "\"payee\":") - payer_a),
           payer_a);
  cr_assert(strstr(payer_codes, "\"5105\":") && strstr(payer_codes, "\"5300\":") &&
                strstr(payer_codes, "\"5200\":"),
            "alpha sees refusals 5105 (rejected, unknown), 5300 (frozen), 5200 (limit): %s", ja);
  cr_assert(strstr(jb, "\"3204\":") != NULL, "beta refuses unknown MSISDNs with 3204: %s", jb);
  const char *payer_b = json_obj(jb, "payer");
  snprintf(payer_codes, sizeof payer_codes, "%.*s", (int)(strstr(payer_b, "\"payee\":") - payer_b),
           payer_b);
  cr_assert(strstr(payer_codes, "\"5105\":") != NULL, "beta's payments refused: %s", jb);
  cr_assert(strstr(ja, "\"totals\":{") && strstr(ja, "\"reconciled\":true"),
            "--print-totals puts the totals in the report: %s", ja);
  cr_assert(!strstr(slurp(pa.err), "254700") && !strstr(slurp(pb.err), "254710"),
            "no MSISDN in clear in the logs");

  reconcile(h, &a, &b);
  t_done(h);
}

/* The payee dies between its COMMITTED fulfil and the switch's confirmation: the switch is
 * frozen (SIGSTOP) while beta decides forwards it received (its latency runs out meanwhile), so
 * the pending credits are on disk and the fulfils in the socket when beta is killed. Restarted on
 * the same data directory, beta asks the switch about each and credits exactly the committed
 * ones. beta pays too, so debits in the same state are recovered as well. */
Test(opsim, payee_killed_between_fulfil_and_confirmation_reconciles) {
  sh_switch *h = t_switch(1);
  op a, b;
  op_init(&a, h, "alpha");
  op_init(&b, h, "beta");
  const char *beta_extra[] = {"--payee-latency-ms",
                              "300",
                              "--rate",
                              "30",
                              "--duration",
                              "6",
                              "--payee-prefix",
                              "25470",
                              "--payee-wallets",
                              "200",
                              "--expiry-ms",
                              "2000",
                              "--linger",
                              "--json",
                              NULL};
  const char *alpha_extra[] = {"--rate",
                               "60",
                               "--duration",
                               "5",
                               "--payee-prefix",
                               "25471",
                               "--payee-wallets",
                               "200",
                               "--expiry-ms",
                               "2000",
                               "--linger",
                               "--json",
                               NULL};
  const char *argv_b[64], *argv_a[64];
  opsim_argv(argv_b, 64, h, "beta", b.data, beta_extra);
  opsim_argv(argv_a, 64, h, "alpha", a.data, alpha_extra);
  proc pa, pb;
  proc_start(&pb, h->dir, "beta", argv_b);
  cr_assert(wait_for_text(pb.err, "ready", T_READY), "beta ready: %s", slurp(pb.err));
  proc_start(&pa, h->dir, "alpha", argv_a);
  cr_assert(wait_for_text(pa.err, "ready", T_READY), "alpha ready: %s", slurp(pa.err));
  sleep_ms(1200);
  cr_assert_eq(kill(h->pid, SIGSTOP), 0, "freeze tumad");
  sleep_ms(700); /* beta's deferred forwards come due: pending credits, fulfils sent */
  cr_assert_eq(kill(pb.pid, SIGKILL), 0);
  cr_assert_eq(proc_wait(&pb, 5000), -1, "beta killed");
  cr_assert_eq(kill(h->pid, SIGCONT), 0, "thaw tumad");

  totals dead = get_totals(h->dir, b.data);
  cr_assert_gt(dead.pending_credits, 0, "beta died with credits whose outcome it did not know");
  cr_assert(dead.reconciled, "a killed operator's data directory still adds up");

  sleep_ms(300);
  char name[] = "beta2";
  proc_start(&pb, h->dir, name, argv_b);
  cr_assert(wait_for_text(pb.err, "asking the switch about them", T_READY), "%s", slurp(pb.err));
  cr_assert(wait_for_text(pa.err, "payments done", 30000), "alpha done: %s", slurp(pa.err));
  cr_assert(wait_for_text(pb.err, "payments done", 30000), "beta done: %s", slurp(pb.err));
  cr_assert_eq(kill(pa.pid, SIGTERM), 0);
  cr_assert_eq(kill(pb.pid, SIGTERM), 0);
  cr_assert_eq(proc_wait(&pa, T_EXIT), 0, "alpha exits 0: %s", slurp(pa.err));
  cr_assert_eq(proc_wait(&pb, T_EXIT), 0, "beta exits 0: %s", slurp(pb.err));
  const char *jb = slurp(pb.out);
  cr_assert_gt(json_u64(json_obj(jb, "payee"), "recovered"), 0, "%s", jb);

  reconcile(h, &a, &b);
  t_done(h);
}

/* The switch dies (kill -9) under both operators and comes back on the same data directory:
 * prepares it never wrote are refunded once their expiration has passed, the others settle by
 * query or notification, and everything reconciles. */
Test(opsim, switch_killed_and_restarted_reconciles) {
  sh_switch *h = t_switch(1);
  op a, b;
  op_init(&a, h, "alpha");
  op_init(&b, h, "beta");
  const char *beta_extra[] = {"--payee-latency-ms",
                              "20",
                              "--rate",
                              "40",
                              "--duration",
                              "5",
                              "--payee-prefix",
                              "25470",
                              "--payee-wallets",
                              "200",
                              "--expiry-ms",
                              "2000",
                              "--linger",
                              "--json",
                              NULL};
  const char *alpha_extra[] = {"--rate",
                               "80",
                               "--duration",
                               "5",
                               "--payee-prefix",
                               "25471",
                               "--payee-wallets",
                               "200",
                               "--expiry-ms",
                               "2000",
                               "--linger",
                               "--json",
                               NULL};
  const char *argv_b[64], *argv_a[64];
  opsim_argv(argv_b, 64, h, "beta", b.data, beta_extra);
  opsim_argv(argv_a, 64, h, "alpha", a.data, alpha_extra);
  proc pa, pb;
  proc_start(&pb, h->dir, "beta", argv_b);
  proc_start(&pa, h->dir, "alpha", argv_a);
  cr_assert(wait_for_text(pb.err, "ready", T_READY), "beta ready: %s", slurp(pb.err));
  cr_assert(wait_for_text(pa.err, "ready", T_READY), "alpha ready: %s", slurp(pa.err));
  sleep_ms(1500);
  uint16_t port = h->port;
  cr_assert_eq(sh_kill(h), 0, "kill -9 tumad");
  sleep_ms(300);
  char err[512] = "";
  cr_assert_eq(sh_start(h, T_START, err, sizeof err), 0, "%s", err);
  cr_assert_eq(h->port, port, "tumad came back on its port");
  cr_assert(wait_for_text(pa.err, "payments done", 30000), "alpha done: %s", slurp(pa.err));
  cr_assert(wait_for_text(pb.err, "payments done", 30000), "beta done: %s", slurp(pb.err));
  cr_assert_eq(kill(pa.pid, SIGTERM), 0);
  cr_assert_eq(kill(pb.pid, SIGTERM), 0);
  cr_assert_eq(proc_wait(&pa, T_EXIT), 0, "alpha exits 0: %s", slurp(pa.err));
  cr_assert_eq(proc_wait(&pb, T_EXIT), 0, "beta exits 0: %s", slurp(pb.err));
  cr_assert(file_contains(pa.err, "disconnected"), "alpha saw the switch go: %s", slurp(pa.err));
  reconcile(h, &a, &b);
  t_done(h);
}

Test(opsim, the_data_directory_is_checked_and_locked) {
  sh_switch *h = t_switch(0); /* certificates only: the opsims never get connected */
  char data[SH_PATH_MAX + 32];
  snprintf(data, sizeof data, "%s/alpha.d", h->dir);
  const char *argv[64];
  opsim_argv(argv, 64, h, "alpha", data, NULL);
  proc p;
  proc_start(&p, h->dir, "first", argv);
  cr_assert(wait_for_text(p.err, "created 200 wallets", T_READY), "%s", slurp(p.err));

  /* A second process on the same directory is refused. */
  cr_assert_eq(run_opsim(h->dir, "second", argv + 1, T_CMD), 1, "a second opsim exits 1");
  char path[SH_PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/second.err", h->dir);
  cr_assert(file_contains(path, "another tuma-opsim runs"), "%s", slurp(path));
  /* The totals can be read meanwhile. */
  totals t = get_totals(h->dir, data);
  cr_assert_eq(t.wallets_total, (uint64_t)WALLETS * BALANCE);
  cr_assert(t.reconciled);

  cr_assert_eq(kill(p.pid, SIGINT), 0);
  cr_assert_eq(proc_wait(&p, T_EXIT), 0, "exits 0 on SIGINT without ever connecting");

  /* Restarts must match the directory. */
  char port[32];
  snprintf(port, sizeof port, "127.0.0.1:%u", h->port);
  const char *wrong_count[] = {"--connect", port,
                               "--ca",      h->ca,
                               "--cert",    sh_cert(h, "alpha"),
                               "--key",     sh_key(h, "alpha"),
                               "--as",      "alpha",
                               "--data",    data,
                               "--wallets", "7",
                               NULL};
  cr_assert_eq(run_opsim(h->dir, "restart", wrong_count, T_CMD), 2, "--wallets mismatch: 2");
  const char *wrong_frozen[] = {
      "--connect",        port,   "--ca",  h->ca,    "--cert", sh_cert(h, "alpha"), "--key",
      sh_key(h, "alpha"), "--as", "alpha", "--data", data,     "--wallets",         "200",
      "--frozen-every",   "3",    NULL};
  cr_assert_eq(run_opsim(h->dir, "restart", wrong_frozen, T_CMD), 2, "--frozen-every mismatch");
  const char *wrong_owner[] = {"--connect", port,
                               "--ca",      h->ca,
                               "--cert",    sh_cert(h, "beta"),
                               "--key",     sh_key(h, "beta"),
                               "--as",      "beta",
                               "--data",    data,
                               NULL};
  cr_assert_eq(run_opsim(h->dir, "restart", wrong_owner, T_CMD), 2, "another participant: 2");
  snprintf(path, sizeof path, "%s/restart.err", h->dir);
  cr_assert(file_contains(path, "belongs to participant 'alpha'"), "%s", slurp(path));
  const char *pays_itself[] = {"--connect",
                               port,
                               "--ca",
                               h->ca,
                               "--cert",
                               sh_cert(h, "alpha"),
                               "--key",
                               sh_key(h, "alpha"),
                               "--as",
                               "alpha",
                               "--data",
                               data,
                               "--rate",
                               "1",
                               "--payee-prefix",
                               "25470",
                               "--payee-wallets",
                               "5",
                               NULL};
  cr_assert_eq(run_opsim(h->dir, "restart", pays_itself, T_CMD), 2, "paying itself: 2");
  /* A payer that never reaches the switch (tumad is not running) has failed. */
  const char *no_switch[] = {"--connect",
                             port,
                             "--ca",
                             h->ca,
                             "--cert",
                             sh_cert(h, "alpha"),
                             "--key",
                             sh_key(h, "alpha"),
                             "--as",
                             "alpha",
                             "--data",
                             data,
                             "--rate",
                             "5",
                             "--duration",
                             "1",
                             "--payee-prefix",
                             "25471",
                             "--payee-wallets",
                             "5",
                             "--json",
                             NULL};
  cr_assert_eq(run_opsim(h->dir, "nowhere", no_switch, T_CMD), 1, "never connected: 1");
  snprintf(path, sizeof path, "%s/nowhere.out", h->dir);
  cr_assert(file_contains(path, "\"status\":\"failed\""), "%s", slurp(path));

  char empty[SH_PATH_MAX + 32];
  snprintf(empty, sizeof empty, "%s/empty.d", h->dir);
  cr_assert_eq(mkdir(empty, 0700), 0);
  const char *totals_empty[] = {"totals", "--data", empty, NULL};
  cr_assert_eq(run_opsim(h->dir, "totals", totals_empty, T_CMD), 1, "totals of no wallets: 1");
  t_done(h);
}

Test(opsim, usage_errors_exit_2) {
  char dir[] = "/tmp/tuma-opsim-usage-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char pki[sizeof dir + 8], data[sizeof dir + 8], path[sizeof dir + 32];
  snprintf(pki, sizeof pki, "%s/pki", dir);
  snprintf(data, sizeof data, "%s/data", dir);
  cr_assert_eq(mkdir(pki, 0700), 0);
  const char *files[] = {"ca.crt", "alpha.crt", "alpha.key"};
  for (int i = 0; i < 3; i++) { /* only read-checked: a usage error comes before any use */
    snprintf(path, sizeof path, "%s/%s", pki, files[i]);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fclose(f);
  }
#define BASE "--connect", "127.0.0.1:1", "--pki", pki, "--as", "alpha", "--data", data
  const char *const cases[][40] = {
      {NULL},
      {"--bogus", NULL},
      {"frobnicate", "--data", data, NULL},
      {"--connect", "127.0.0.1:1", "--pki", pki, "--as", "alpha", NULL},
      {"--connect", "127.0.0.1", "--pki", pki, "--as", "alpha", "--data", data, NULL},
      {"--connect", "127.0.0.1:0", "--pki", pki, "--as", "alpha", "--data", data, NULL},
      {"--connect", "127.0.0.1:70000", "--pki", pki, "--as", "alpha", "--data", data, NULL},
      {"--connect", "127.0.0.1:1", "--pki", pki, "--as", "Alpha", "--data", data, NULL},
      {"--connect", "127.0.0.1:1", "--pki", pki, "--as", "gamma", "--data", data, NULL},
      {"--connect", "127.0.0.1:1", "--as", "alpha", "--data", data, NULL},
      {BASE, "--wallets", "0", NULL},
      {BASE, "--wallets", "-5", NULL},
      {BASE, "--wallets", "12x", NULL},
      {BASE, "--wallets", "2000", "--msisdn-prefix", "25470000000", NULL},
      {BASE, "--msisdn-prefix", "2547a", NULL},
      {BASE, "--msisdn-digits", "20", NULL},
      {BASE, "--currency", "kes", NULL},
      {BASE, "--initial-balance", "99999999999999999999", NULL},
      {BASE, "--wallet-limit", "100", "--initial-balance", "1000", NULL},
      {BASE, "--reject-percent", "101", NULL},
      {BASE, "--reject-percent", "2.555", NULL},
      {BASE, "--payee-latency-ms", "1e3", NULL},
      {BASE, "--count", "5", NULL},
      {BASE, "--payee-wallets", "5", NULL},
      {BASE, "--rate", "10", NULL},
      {BASE, "--rate", "0", "--payee-wallets", "5", NULL},
      {BASE, "--rate", "10", "--max", "--payee-wallets", "5", NULL},
      {BASE, "--rate", "10", "--payee-wallets", "5", "--amount-min", "10", "--amount-max", "9",
       NULL},
      {BASE, "--rate", "10", "--payee-wallets", "5", "--amount-min", "0", NULL},
      {BASE, "--rate", "10", "--payee-wallets", "5", "--duration", "0", NULL},
      {BASE, "--rate", "10", "--payee-wallets", "5", "--duration", "soon", NULL},
      {BASE, "--max", "--payee-wallets", "5", "--window", "0", NULL},
      {BASE, "--rate", "10", "--payee-wallets", "100000001", "--payee-prefix", "2547", NULL},
      {BASE, "--rate", "10", "--payee-wallets", "10", "--payee-prefix", "25470000000",
       "--unknown-percent", "1", NULL},
      {BASE, "--rate", "10", "--payee-wallets", "5", "--short-expiry-ms", "500", "--expiry-ms",
       "400", NULL},
      {BASE, "--log-level", "loud", NULL},
      {BASE, "--data", data, NULL},
      {BASE, "--json", "--json", NULL},
      {BASE, "--rate", NULL},
      {"totals", NULL},
      {"totals", "--data", data, "--json", NULL},
      {"history", "--data", data, "--rate", "5", NULL},
  };
#undef BASE
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *argv[42];
    size_t n = 0;
    argv[n++] = opsim_bin();
    for (size_t k = 0; cases[i][k]; k++)
      argv[n++] = cases[i][k];
    argv[n] = NULL;
    proc p;
    proc_start(&p, dir, "usage", argv);
    int st = proc_wait(&p, T_CMD);
    char args[512] = "";
    for (size_t k = 1; k < n; k++)
      snprintf(args + strlen(args), sizeof args - strlen(args), " %s", argv[k]);
    cr_expect_eq(st, 2, "case %zu (%s): exit 2, got %d: %s", i, args, st, slurp(p.err));
    cr_expect(file_contains(p.err, "tuma-opsim: "), "case %zu: says why", i);
    struct stat sb;
    cr_expect(stat(data, &sb) != 0, "case %zu: nothing created", i);
  }
  const char *help[] = {opsim_bin(), "--help", NULL};
  proc p;
  proc_start(&p, dir, "help", help);
  cr_expect_eq(proc_wait(&p, T_CMD), 0, "--help exits 0");
  cr_expect(file_contains(p.out, "usage: tuma-opsim"), "--help prints the usage");
  char cmd[sizeof dir + 16];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  cr_expect_eq(system(cmd), 0);
}

Test(opsim, valgrind_short_session, .timeout = 300) {
  const char *valgrind = getenv("VALGRIND");
  if (!valgrind || !valgrind[0] || access(valgrind, X_OK) != 0)
    cr_skip_test("valgrind is not installed (or this is a sanitizer build: they do not mix)");
  sh_switch *h = t_switch(1);
  op a, b;
  op_init(&a, h, "alpha");
  op_init(&b, h, "beta");
  /* beta pays alpha while alpha, under valgrind, pays beta: both roles, a condition, refusals,
   * unknown MSISDNs, short expiries; alpha stops by itself after its count. */
  const char *beta_extra[] = {"--rate",          "10",   "--payee-prefix",   "25470",
                              "--payee-wallets", "200",  "--reject-percent", "10",
                              "--expiry-ms",     "2000", "--linger",         NULL};
  const char *argv_b[64], *argv_a[64];
  opsim_argv(argv_b, 64, h, "beta", b.data, beta_extra);
  proc pb;
  proc_start(&pb, h->dir, "beta", argv_b);
  cr_assert(wait_for_text(pb.err, "ready", T_READY), "beta ready: %s", slurp(pb.err));
  char vlog[SH_PATH_MAX + 32];
  snprintf(vlog, sizeof vlog, "--log-file=%s/valgrind.log", h->dir);
  const char *alpha_extra[] = {"--rate",
                               "20",
                               "--count",
                               "40",
                               "--payee-prefix",
                               "25471",
                               "--payee-wallets",
                               "200",
                               "--unknown-percent",
                               "10",
                               "--short-expiry-percent",
                               "10",
                               "--with-condition",
                               "--reject-percent",
                               "10",
                               "--json",
                               "--print-totals",
                               NULL};
  opsim_argv(argv_a, 64, h, "alpha", a.data, alpha_extra);
  const char *vargv[80] = {valgrind,
                           "--error-exitcode=99",
                           "--leak-check=full",
                           "--show-leak-kinds=definite,indirect,possible",
                           "--errors-for-leak-kinds=definite,indirect,possible",
                           vlog};
  size_t n = 6;
  for (size_t i = 0; argv_a[i] && n < 79; i++)
    vargv[n++] = argv_a[i];
  vargv[n] = NULL;
  proc pa;
  proc_start(&pa, h->dir, "alpha", vargv);
  int st = proc_wait(&pa, 240000);
  if (st != 0) {
    char cmd[SH_PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "tail -n 60 %s/valgrind.log >&2", h->dir);
    if (system(cmd) != 0)
      fprintf(stderr, "no valgrind log\n");
  }
  cr_assert_eq(st, 0, "alpha under valgrind exits 0 (99: valgrind found errors or leaks): %s",
               slurp(pa.err));
  cr_assert(file_contains(pa.out, "\"reconciled\":true"), "%s", slurp(pa.out));
  cr_assert_eq(kill(pb.pid, SIGTERM), 0);
  cr_assert_eq(proc_wait(&pb, T_EXIT), 0, "beta exits 0: %s", slurp(pb.err));
  reconcile(h, &a, &b);
  t_done(h);
}
