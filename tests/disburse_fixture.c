/* disburse_fixture.c — the disbursement test fixture (tests/disburse_fixture.h): tumad, the
 * tuma-opsim payees and the `tuma disburse` CLI as real processes, and readers for their output,
 * shared by the disburse_cli and disburse_crash suites.
 */
#include "disburse_fixture.h"

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

const char *const DZ_PROG = "relief";
const char *const DZ_OPS[2] = {"alpha", "beta"};
const char *const DZ_PREFIX[2] = {"25470", "25471"};
const char *const DZ_ITEM[6] = {"", "pending", "in_flight", "paid", "failed", "cancelled"};

/* The harness of the test in progress, for dz_suite_fini (Criterion's .fini takes no context). */
static sh_switch *g_running;

/* ================================================================ time and processes */

int64_t dz_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void dz_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

void dz_proc_start(dz_proc *p, const char *dir, const char *tag, const char *const *argv) {
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

int dz_proc_poll(dz_proc *p, int *status) {
  int st = 0;
  if (p->pid == 0 || waitpid(p->pid, &st, WNOHANG) != p->pid)
    return 0;
  p->pid = 0;
  *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return 1;
}

int dz_proc_wait(dz_proc *p, int timeout_ms) {
  int64_t deadline = dz_mono_ms() + timeout_ms;
  int st = 0;
  for (;;) {
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == p->pid)
      break;
    if (dz_mono_ms() >= deadline) {
      kill(p->pid, SIGKILL);
      waitpid(p->pid, &st, 0);
      p->pid = 0;
      return -1;
    }
    dz_sleep_ms(10);
  }
  p->pid = 0;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

char *dz_read_file(const char *path, char *buf) {
  buf[0] = '\0';
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return buf;
  size_t n = fread(buf, 1, DZ_OUT - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

int dz_wait_for_text(const char *path, const char *needle, int timeout_ms) {
  static char buf[DZ_OUT];
  int64_t deadline = dz_mono_ms() + timeout_ms;
  do {
    if (strstr(dz_read_file(path, buf), needle) != NULL)
      return 1;
    dz_sleep_ms(25);
  } while (dz_mono_ms() < deadline);
  return 0;
}

void dz_write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f, "cannot write %s", path);
  cr_assert_eq(fwrite(text, 1, strlen(text), f), strlen(text));
  cr_assert_eq(fclose(f), 0);
}

/* ================================================================ the fixture */

const char *dz_opsim_bin(void) {
  const char *p = getenv("TUMA_OPSIM");
  cr_assert(p != NULL && access(p, X_OK) == 0, "TUMA_OPSIM must name the tuma-opsim executable");
  return p;
}

void dz_wallet_msisdn(int op, int i, char *out, size_t cap) {
  snprintf(out, cap, "%s%07d", DZ_PREFIX[op], i);
}

void dz_opsim_start_with(dz_fixture *z, int op, const char *const *extra) {
  char addr[64], wallets[16], tag[32], cert[SH_PATH_MAX + 80], key[SH_PATH_MAX + 80];
  snprintf(addr, sizeof addr, "127.0.0.1:%u", z->h->port);
  snprintf(wallets, sizeof wallets, "%d", z->wallets);
  snprintf(tag, sizeof tag, "%s-%d", DZ_OPS[op], ++z->starts[op]);
  snprintf(cert, sizeof cert, "%s", sh_cert(z->h, DZ_OPS[op]));
  snprintf(key, sizeof key, "%s", sh_key(z->h, DZ_OPS[op]));
  const char *argv[44];
  size_t n = 0;
  argv[n++] = dz_opsim_bin();
  argv[n++] = "--connect";
  argv[n++] = addr;
  if (z->cfg.opsim_pki) {
    argv[n++] = "--pki";
    argv[n++] = z->h->pki;
  }
  const char *const common[] = {"--ca",
                                z->h->ca,
                                "--cert",
                                cert,
                                "--key",
                                key,
                                "--as",
                                DZ_OPS[op],
                                "--data",
                                z->data[op],
                                "--wallets",
                                wallets,
                                "--msisdn-prefix",
                                DZ_PREFIX[op],
                                "--initial-balance",
                                "0",
                                "--log-level",
                                "info",
                                NULL};
  for (size_t k = 0; common[k] != NULL; k++)
    argv[n++] = common[k];
  for (size_t k = 0; extra != NULL && extra[k] != NULL && n < 43; k++)
    argv[n++] = extra[k];
  argv[n] = NULL;
  dz_proc_start(&z->op[op], z->h->dir, tag, argv);
  cr_assert(dz_wait_for_text(z->op[op].err, "ready", z->cfg.ready_ms), "%s ready (see %s)",
            DZ_OPS[op], z->op[op].err);
}

void dz_opsim_start(dz_fixture *z, int op) {
  dz_opsim_start_with(z, op, NULL);
}

void dz_opsim_stop(dz_fixture *z, int op) {
  if (z->op[op].pid == 0)
    return;
  cr_assert_eq(kill(z->op[op].pid, SIGTERM), 0);
  cr_assert_eq(dz_proc_wait(&z->op[op], DZ_EXIT_MS), 0, "%s exits 0 on SIGTERM (see %s)",
               DZ_OPS[op], z->op[op].err);
}

void dz_start(dz_fixture *z, const dz_config *cfg, int wallets) {
  memset(z, 0, sizeof *z);
  z->cfg = *cfg;
  char err[512] = "";
  sh_options o = {.log_level = "info",
                  .max_frame_bytes = 65536,
                  .read_timeout_ms = (uint32_t)cfg->read_timeout_ms};
  cr_assert_eq(sh_create(&o, &z->h, err, sizeof err), 0, "%s", err);
  g_running = z->h;
  cr_assert_eq(sh_start(z->h, cfg->start_ms, err, sizeof err), 0, "%s", err);
  cr_assert_lt(wallets, DZ_MAX_WALLETS);
  z->wallets = wallets;
  for (int op = 0; op < 2; op++)
    snprintf(z->data[op], sizeof z->data[op], "%s/%s.d", z->h->dir, DZ_OPS[op]);
  if (wallets > 0)
    for (int op = 0; op < 2; op++)
      dz_opsim_start(z, op);
}

void dz_stop(dz_fixture *z) {
  for (int op = 0; op < 2; op++)
    dz_opsim_stop(z, op);
  int st = 0;
  cr_assert_eq(sh_stop(z->h, 15000, &st), 0, "tumad stops on SIGTERM");
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "tumad exits 0 (status %d)", st);
}

void dz_destroy(dz_fixture *z) {
  g_running = NULL;
  sh_destroy(z->h, getenv("TUMA_TEST_KEEP") == NULL);
}

void dz_done(dz_fixture *z) {
  dz_stop(z);
  dz_destroy(z);
}

void dz_suite_fini(int log_lines, dz_dump_cb dump_cb) {
  if (g_running == NULL)
    return;
  sh_dump_log(g_running, "tumad", log_lines);
  if (dump_cb != NULL)
    dump_cb(g_running);
  fprintf(stderr, "[tumad] scratch directory kept: %s\n", g_running->dir);
  sh_destroy(g_running, 0);
  g_running = NULL;
}

/* ================================================================ running the CLI */

dz_result *dz_result_new(void) {
  dz_result *r = malloc(sizeof *r);
  cr_assert_not_null(r);
  return r;
}

void dz_cli_spawn(dz_fixture *z, dz_proc *p, const char *as, const char *const *args) {
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
  const char *argv[DZ_ARGS];
  int n = 0;
  argv[n++] = bin;
  for (size_t k = 0; args[k] != NULL; k++) {
    cr_assert_lt(n, DZ_ARGS - 10);
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
  dz_proc_start(p, z->h->dir, tag, argv);
}

void dz_cli_runv(dz_fixture *z, dz_result *r, int timeout_ms, const char *as,
                 const char *const *args) {
  dz_proc p;
  dz_cli_spawn(z, &p, as, args);
  r->status = dz_proc_wait(&p, timeout_ms);
  dz_read_file(p.out, r->out);
  dz_read_file(p.err, r->err);
}

void dz_cli_run(dz_fixture *z, dz_result *r, const char *as, ...) {
  const char *args[DZ_ARGS];
  int n = 0;
  va_list ap;
  va_start(ap, as);
  for (const char *a; (a = va_arg(ap, const char *)) != NULL;) {
    cr_assert_lt(n, DZ_ARGS - 12);
    args[n++] = a;
  }
  va_end(ap);
  args[n] = NULL;
  dz_cli_runv(z, r, z->cfg.cmd_ms, as, args);
}

/* ================================================================ reading what it printed */

uint64_t dz_kes_minor(const char *p) {
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

uint64_t dz_num_after(const char *text, const char *key) {
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

const char *dz_kes(uint64_t minor) {
  static char bufs[8][32];
  static int turn;
  char *b = bufs[turn++ % 8];
  snprintf(b, 32, "%" PRIu64 ".%02" PRIu64, minor / 100, minor % 100);
  return b;
}

const char *dz_u64s(uint64_t v) {
  static char bufs[8][24];
  static int turn;
  char *b = bufs[turn++ % 8];
  snprintf(b, 24, "%" PRIu64, v);
  return b;
}

dz_prog_info dz_programme_show(dz_fixture *z) {
  dz_result *r = dz_result_new();
  DZ_CLI_OK(z, r, "admin", "disburse", "programme", "show", DZ_PROG);
  dz_prog_info pi;
  const char *b = strstr(r->out, "budget"), *rs = strstr(r->out, "reserved"),
             *av = strstr(r->out, "available");
  cr_assert(b && rs && av, "budget, reserved, available: %s", r->out);
  pi.budget = dz_kes_minor(b + strspn(b + 6, " ") + 6);
  pi.reserved = dz_kes_minor(rs + strspn(rs + 8, " ") + 8);
  pi.available = dz_kes_minor(av + strspn(av + 9, " ") + 9);
  cr_assert(strstr(r->out, "KES") != NULL, "%s", r->out);
  free(r);
  return pi;
}

uint64_t dz_batch_of(const dz_result *r) {
  return dz_num_after(r->out, "batch ");
}

int dz_batch_status_try(dz_fixture *z, uint64_t batch, dz_status *s) {
  dz_result *r = dz_result_new();
  const char *args[] = {"disburse", "status", dz_u64s(batch), NULL};
  dz_cli_runv(z, r, z->cfg.cmd_ms, "manager", args);
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
    snprintf(key, sizeof key, "\n  %s ", DZ_ITEM[k]);
    const char *q = strstr(r->out, key);
    cr_assert_not_null(q, "a %s line: %s", DZ_ITEM[k], r->out);
    q += strlen(key);
    char *end;
    s->n[k] = strtoull(q, &end, 10);
    while (*end == ' ')
      end++;
    s->amount[k] = dz_kes_minor(end);
  }
  free(r);
  return 0;
}

dz_status dz_batch_status(dz_fixture *z, uint64_t batch) {
  dz_status s;
  cr_assert_eq(dz_batch_status_try(z, batch, &s), 0, "tuma disburse status %" PRIu64 " answers",
               batch);
  return s;
}

dz_status dz_wait_status(dz_fixture *z, uint64_t batch, int (*done)(const dz_status *, void *),
                         void *arg, int timeout_ms, const char *what) {
  int64_t deadline = dz_mono_ms() + timeout_ms;
  dz_status s;
  for (int polls = 0;; polls++) {
    s = dz_batch_status(z, batch);
    if (done(&s, arg))
      return s;
    cr_assert(dz_mono_ms() < deadline && polls < 100000,
              "batch %" PRIu64 " never reached within %d ms: %s (state %s, cycle %" PRIu32
              ": pending %" PRIu64 ", in flight %" PRIu64 ", paid %" PRIu64 ", failed %" PRIu64
              ", cancelled %" PRIu64 ")",
              batch, timeout_ms, what, s.state, s.cycle, s.n[1], s.n[2], s.n[3], s.n[4], s.n[5]);
    dz_sleep_ms(250);
  }
}

int dz_state_is(const dz_status *s, void *arg) {
  return strcmp(s->state, (const char *)arg) == 0;
}

int dz_paid_at_least(const dz_status *s, void *arg) {
  return s->n[3] >= *(const uint64_t *)arg;
}

size_t dz_csv_split(char *line, char **fields, size_t max) {
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

dz_report dz_get_report(dz_fixture *z, uint64_t batch, dz_result *r) {
  dz_result *own = r == NULL ? dz_result_new() : NULL;
  char out[SH_PATH_MAX + 32];
  snprintf(out, sizeof out, "%s/report-%" PRIu64 "-%d.csv", z->h->dir, batch, z->ncli);
  DZ_CLI_OK(z, r != NULL ? r : own, "approver", "disburse", "report", dz_u64s(batch), "--csv",
            "--out", out);
  free(own);
  static char text[DZ_OUT];
  dz_read_file(out, text);
  dz_report rep;
  memset(&rep, 0, sizeof rep);
  rep.rows = calloc(DZ_MAX_ROWS, sizeof(dz_row));
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
    cr_assert_eq(dz_csv_split(line, f, 16), 12, "12 fields in '%s'", line);
    cr_assert_lt(rep.n, DZ_MAX_ROWS);
    dz_row *w = &rep.rows[rep.n++];
    w->cycle = (uint32_t)strtoul(f[0], NULL, 10);
    w->line = strtoull(f[1], NULL, 10);
    snprintf(w->beneficiary, sizeof w->beneficiary, "%s", f[2]);
    snprintf(w->reference, sizeof w->reference, "%s", f[3]);
    w->amount = dz_kes_minor(f[4]);
    snprintf(w->currency, sizeof w->currency, "%s", f[5]);
    snprintf(w->status, sizeof w->status, "%s", f[6]);
    w->reason_code = (uint32_t)strtoul(f[7], NULL, 10);
    snprintf(w->reason, sizeof w->reason, "%s", f[8]);
    snprintf(w->transfer_id, sizeof w->transfer_id, "%s", f[9]);
    snprintf(w->completed, sizeof w->completed, "%s", f[10]);
    snprintf(w->op, sizeof w->op, "%s", f[11]);
    if (strcmp(w->status, "paid") == 0)
      rep.paid_total += w->amount;
  }
  return rep;
}

/* ================================================================ tuma-opsim's side */

uint64_t dz_json_u64(const char *from, const char *key) {
  char pat[96];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = strstr(from, pat);
  cr_assert_not_null(p, "no %s in %.400s", pat, from);
  return strtoull(p + strlen(pat), NULL, 10);
}

const char *dz_json_obj(const char *from, const char *key) {
  char pat[96];
  snprintf(pat, sizeof pat, "\"%s\":{", key);
  const char *p = strstr(from, pat);
  cr_assert_not_null(p, "no %s in %.400s", pat, from);
  return p + strlen(pat) - 1;
}

void dz_opsim_print(dz_fixture *z, int op, const char *what, char *out) {
  const char *argv[] = {dz_opsim_bin(), what, "--data", z->data[op], NULL};
  char tag[48];
  snprintf(tag, sizeof tag, "%s-%s-%d", DZ_OPS[op], what, ++z->ncli);
  dz_proc p;
  dz_proc_start(&p, z->h->dir, tag, argv);
  cr_assert_eq(dz_proc_wait(&p, z->cfg.cmd_ms), 0, "tuma-opsim %s --data %s exits 0", what,
               z->data[op]);
  dz_read_file(p.out, out);
}

void dz_id_norm(const char *in, char out[33]) {
  size_t n = 0;
  for (; *in != '\0' && *in != '"' && n < 32; in++)
    if (*in != '-')
      out[n++] = (char)tolower((unsigned char)*in);
  out[n] = '\0';
}

void dz_opsim_credits(dz_fixture *z, int op, dz_credits *c, int with_ids) {
  static char text[DZ_OUT];
  memset(c, 0, sizeof *c);
  dz_opsim_print(z, op, "totals", text);
  c->in_count = dz_json_u64(dz_json_obj(text, "committed_in"), "count");
  c->in_amount = dz_json_u64(dz_json_obj(text, "committed_in"), "amount");
  c->pending = dz_json_u64(dz_json_obj(text, "pending_credits"), "count");
  cr_assert(strstr(text, "\"reconciled\":true") != NULL, "%s's totals reconcile: %s", DZ_OPS[op],
            text);
  if (with_ids) {
    c->ids = calloc(c->in_count + 1, sizeof *c->ids);
    cr_assert_not_null(c->ids);
  }
  dz_opsim_print(z, op, "history", text);
  uint64_t n = 0;
  for (char *line = text, *nl; *line != '\0'; line = nl + 1) {
    nl = strchr(line, '\n');
    cr_assert_not_null(nl);
    *nl = '\0';
    if (strstr(line, "\"kind\":\"credit\"") == NULL ||
        strstr(line, "\"outcome\":\"COMMITTED\"") == NULL)
      continue;
    uint64_t w = dz_json_u64(line, "wallet");
    cr_assert_lt(w, DZ_MAX_WALLETS);
    c->per_wallet[w]++;
    c->amount_wallet[w] += dz_json_u64(line, "amount");
    if (with_ids) {
      const char *id = strstr(line, "\"id\":\"");
      cr_assert_not_null(id, "%s", line);
      cr_assert_lt(n, c->in_count, "%s: more credits in the history than in the totals",
                   DZ_OPS[op]);
      dz_id_norm(id + 6, c->ids[n]);
    }
    n++;
  }
  cr_assert_eq(n, c->in_count, "%s: history and totals agree on the credits", DZ_OPS[op]);
}

uint64_t dz_opsim_credit_count(dz_fixture *z, int op) {
  dz_credits *c = malloc(sizeof *c);
  cr_assert_not_null(c);
  dz_opsim_credits(z, op, c, 0);
  uint64_t n = c->in_count;
  free(c);
  return n;
}

/* ================================================================ beneficiaries and lists */

dz_ben dz_ben_make(const dz_fixture *z, int k) {
  dz_ben b;
  memset(&b, 0, sizeof b);
  b.op = k % 2;
  b.wallet = k / 2;
  snprintf(b.id, sizeof b.id, "3%07d", k);
  int f = z->cfg.amount_wrap > 0 ? k % z->cfg.amount_wrap : k;
  b.amount = 10000 + 125 * (uint64_t)f; /* 100.00, 101.25, … */
  return b;
}

void dz_register_beneficiaries(dz_fixture *z, int n, const char *extra_rows, int extra) {
  static char text[DZ_FILE];
  size_t len =
      (size_t)snprintf(text, sizeof text, "beneficiary_id_type,beneficiary_id,msisdn,operator\n");
  for (int k = 0; k < n; k++) {
    dz_ben b = dz_ben_make(z, k);
    char m[24];
    dz_wallet_msisdn(b.op, b.wallet, m, sizeof m);
    len += (size_t)snprintf(text + len, sizeof text - len, "national_id,%s,%s,\n", b.id, m);
    cr_assert_lt(len, sizeof text - 64);
  }
  if (extra_rows != NULL)
    len += (size_t)snprintf(text + len, sizeof text - len, "%s", extra_rows);
  cr_assert_lt(len, sizeof text - 1);
  char path[SH_PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/beneficiaries.csv", z->h->dir);
  dz_write_file(path, text);
  dz_result *r = dz_result_new();
  DZ_CLI_OK(z, r, "manager", "disburse", "beneficiary", "upload", "--file", path);
  char want[64];
  snprintf(want, sizeof want, "registered %d, refused 0", n + extra);
  cr_assert(strstr(r->out, want) != NULL, "'%s' in: %s", want, r->out);
  free(r);
}

const char *dz_write_list(dz_fixture *z, const char *name, int first, int n, const char *extra_rows,
                          uint64_t *total, int profile) {
  static char path[SH_PATH_MAX + 64];
  static char text[DZ_FILE];
  size_t len = (size_t)snprintf(text, sizeof text,
                                "beneficiary_id_type,beneficiary_id,amount,currency,reference%s\n",
                                profile ? ",sex,age_band,region" : "");
  uint64_t sum = 0;
  for (int k = first; k < first + n; k++) {
    dz_ben b = dz_ben_make(z, k);
    len += (size_t)snprintf(text + len, sizeof text - len,
                            "national_id,%s,%" PRIu64 ".%02" PRIu64 ",KES,relief-%d", b.id,
                            b.amount / 100, b.amount % 100, k);
    /* Profile: F for even k, M for odd; region Lamu for every 10th (a cell under 10). */
    if (profile)
      len += (size_t)snprintf(text + len, sizeof text - len, ",%s,18-35,%s", k % 2 ? "M" : "F",
                              k % 10 == 0 ? "Lamu" : "Turkana");
    len += (size_t)snprintf(text + len, sizeof text - len, "\n");
    cr_assert_lt(len, sizeof text - 64);
    sum += b.amount;
  }
  if (extra_rows != NULL)
    len += (size_t)snprintf(text + len, sizeof text - len, "%s", extra_rows);
  cr_assert_lt(len, sizeof text - 1);
  snprintf(path, sizeof path, "%s/%s", z->h->dir, name);
  dz_write_file(path, text);
  if (total != NULL)
    *total = sum;
  return path;
}

void dz_make_programme(dz_fixture *z, uint64_t fund) {
  dz_result *r = dz_result_new();
  DZ_CLI_OK(z, r, "admin", "disburse", "programme", "create", "--id", DZ_PROG, "--name",
            "Drought relief 2026", "--currency", "KES", "--funding", "gamma", "--cap", "5000");
  if (fund > 0) {
    DZ_CLI_OK(z, r, "admin", "disburse", "programme", "fund", "--programme", DZ_PROG, "--amount",
              dz_kes(fund));
    cr_assert(strstr(r->out, "fund id ") != NULL, "%s", r->out);
  }
  free(r);
}

void dz_submit_args(const char **args, const char *path, uint32_t cycle, uint64_t count,
                    uint64_t total, const char *const *extra) {
  static char cyc[16], cnt[24], tot[32];
  snprintf(cyc, sizeof cyc, "%" PRIu32, cycle);
  snprintf(cnt, sizeof cnt, "%" PRIu64, count);
  snprintf(tot, sizeof tot, "%s", dz_kes(total));
  const char *base[] = {"disburse", "submit", "--programme",    DZ_PROG, "--cycle",        cyc,
                        "--file",   path,     "--expect-count", cnt,     "--expect-total", tot,
                        NULL};
  int n = 0;
  for (; base[n] != NULL; n++)
    args[n] = base[n];
  for (size_t k = 0; extra != NULL && extra[k] != NULL; k++) {
    cr_assert_lt(n, DZ_ARGS - 12);
    args[n++] = extra[k];
  }
  args[n] = NULL;
}

void dz_submit(dz_fixture *z, dz_result *r, const char *path, uint32_t cycle, uint64_t count,
               uint64_t total, const char *const *extra) {
  const char *args[DZ_ARGS];
  dz_submit_args(args, path, cycle, count, total, extra);
  dz_cli_runv(z, r, z->cfg.cmd_ms, "manager", args);
}
