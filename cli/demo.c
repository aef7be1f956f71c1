/* demo.c — `tuma demo`: the whole system on one machine, for `make run`.
 *
 * Generates a development PKI if missing, starts tumad on loopback (its LMDB under the demo
 * directory, ./var/demo by default) and three simulated mobile-money operators (tuma-opsim,
 * each with its own wallets and MSISDN prefix), which pay each other in a ring with a few
 * rejects, unknown numbers and expiries. While it runs it prints one status line a second
 * (transfers/s, in flight, outcomes, from tumad's /metrics); at the end it stops the operators,
 * prints their outcomes and every participant's position, stops tumad and checks the ledger
 * itself: Σ debits = Σ credits and the journal's hash chain. Exit 0 only if all of that holds.
 *
 * Alongside the payments it runs a small disbursement (switch/DISBURSE.md) with the `tuma
 * disburse` commands: a programme funded by gamma pays DEMO_BENEFICIARIES wallets of alpha and
 * beta, submitted by a programme manager and approved by an approver (maker-checker), and its
 * status is shown at the end. Each run pays the next cycle (DIR/demo-cycle).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "admin_client.h"
#include "cli.h"
#include "ledger.h"
#include "pki.h"

extern char **environ;

#define DEMO_OPERATORS 3
#define DEMO_BENEFICIARIES 40

static const char demo_usage[] =
    "usage: tuma demo [--duration S] [--rate R] [--dir DIR]\n"
    "  --duration S  seconds of traffic (default 30; 0 = until Ctrl-C)\n"
    "  --rate R      transfers per second sent by each operator (default 100)\n"
    "  --dir DIR     where the PKI, the switch's data and the operators' wallets live\n"
    "                (default var/demo; kept between runs)\n";

/* The three operators: id, display name, own MSISDN prefix, and whom they pay. */
static const struct {
  const char *id, *name, *prefix;
  int pays;             /* index of the payee operator */
  const char *extra[6]; /* behaviour that makes the run interesting */
} operators[DEMO_OPERATORS] = {
    {"alpha", "Alpha Mobile Money", "25470", 1, {"--unknown-percent", "2", NULL}},
    {"beta", "Beta Wallet", "25471", 2, {"--reject-percent", "3", NULL}},
    {"gamma",
     "Gamma Pesa",
     "25472",
     0,
     {"--short-expiry-percent", "2", "--payee-latency-ms", "5", NULL}},
};

typedef struct demo {
  char dir[PATH_MAX];
  char bindir[PATH_MAX];
  char tumad[PATH_MAX], opsim[PATH_MAX], self[PATH_MAX];
  uint16_t port, admin_port, metrics_port;
  pid_t tumad_pid, opsim_pid[DEMO_OPERATORS];
  unsigned duration, rate;
} demo;

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
  (void)sig;
  interrupted = 1;
}

/* out = a "/" b; -1 (out untouched) if it does not fit. */
static int path_join(char *out, size_t cap, const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la + 1 + lb + 1 > cap)
    return -1;
  memmove(out, a, la);
  out[la] = '/';
  memcpy(out + la + 1, b, lb + 1);
  return 0;
}

static int mkdirs(const char *path) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
    return -1;
  for (char *p = tmp + 1; *p; p++)
    if (*p == '/') {
      *p = 0;
      if (mkdir(tmp, 0750) && errno != EEXIST)
        return -1;
      *p = '/';
    }
  return mkdir(tmp, 0750) && errno != EEXIST ? -1 : 0;
}

/* The programs beside this one in the build tree (or the install's bin), unless overridden. */
static int find_programs(demo *d) {
  ssize_t n = readlink("/proc/self/exe", d->self, sizeof d->self - 1);
  if (n <= 0)
    return -1;
  d->self[n] = 0;
  snprintf(d->bindir, sizeof d->bindir, "%s", d->self);
  char *slash = strrchr(d->bindir, '/');
  if (!slash)
    return -1;
  *slash = 0;
  /* In the build tree the programs sit in sibling directories; installed, beside this one. */
  const char *env = getenv("TUMAD");
  if (env)
    snprintf(d->tumad, sizeof d->tumad, "%s", env);
  else if (path_join(d->tumad, sizeof d->tumad, d->bindir, "../switch/tumad") ||
           access(d->tumad, X_OK) != 0)
    path_join(d->tumad, sizeof d->tumad, d->bindir, "tumad");
  env = getenv("TUMA_OPSIM");
  if (env)
    snprintf(d->opsim, sizeof d->opsim, "%s", env);
  else if (path_join(d->opsim, sizeof d->opsim, d->bindir, "../adapters/opsim/tuma-opsim") ||
           access(d->opsim, X_OK) != 0)
    path_join(d->opsim, sizeof d->opsim, d->bindir, "tuma-opsim");
  if (access(d->tumad, X_OK) || access(d->opsim, X_OK)) {
    fprintf(stderr,
            "tuma demo: cannot find tumad (%s) or tuma-opsim (%s); build first, or set "
            "TUMAD / TUMA_OPSIM\n",
            d->tumad, d->opsim);
    return -1;
  }
  return 0;
}

/* A free loopback port (bound then released: good enough for a demo on one machine). */
static uint16_t free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  uint16_t port = 0;
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0)
    close(fd);
  return port;
}

/* The development PKI: a CA, the switch, three operators and an admin (kept between runs). */
static int ensure_pki(const demo *d) {
  char pki[PATH_MAX], ca[PATH_MAX];
  if (path_join(pki, sizeof pki, d->dir, "pki") || path_join(ca, sizeof ca, pki, "ca.crt"))
    return -1;
  pki_diag diag = {""};
  if (access(ca, R_OK) != 0) {
    pki_init_options io = {.dir = pki, .scheme = "Tuma demo"};
    if (pki_init(&io, &diag)) {
      fprintf(stderr, "tuma demo: %s\n", diag.text);
      return -1;
    }
  }
  const char *names[DEMO_OPERATORS + 3] = {operators[0].id, operators[1].id, operators[2].id,
                                           "admin", "manager", "approver"};
  const char *roles[DEMO_OPERATORS + 3] = {"operator", "operator",          "operator",
                                           "admin",    "programme-manager", "approver"};
  for (int i = 0; i < DEMO_OPERATORS + 3; i++) {
    char crt[PATH_MAX], file[128];
    snprintf(file, sizeof file, "%s.crt", names[i]);
    if (path_join(crt, sizeof crt, pki, file))
      return -1;
    if (access(crt, R_OK) == 0)
      continue;
    pki_issue_options o = {.dir = pki, .name = names[i], .role = roles[i]};
    if (pki_issue(&o, &diag)) {
      fprintf(stderr, "tuma demo: %s\n", diag.text);
      return -1;
    }
  }
  return 0;
}

static int write_config(const demo *d) {
  char path[PATH_MAX];
  if (path_join(path, sizeof path, d->dir, "tumad.ini"))
    return -1;
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  fprintf(f,
          "; written by tuma demo\n[switch]\nlisten = 127.0.0.1:%u\nadmin_listen = 127.0.0.1:%u\n"
          "metrics_listen = 127.0.0.1:%u\ndata_dir = %s/data\nmax_expiry_ms = 60000\n\n"
          "[tls]\nca = pki/ca.crt\ncert = pki/tumad.crt\nkey = pki/tumad.key\n",
          d->port, d->admin_port, d->metrics_port, d->dir);
  for (int i = 0; i < DEMO_OPERATORS; i++)
    fprintf(f,
            "\n[participant %s]\nname = %s\ncurrencies = KES\ninitial_deposit.KES = 100000000000\n"
            "msisdn_prefixes = %s\n",
            operators[i].id, operators[i].name, operators[i].prefix);
  return fclose(f) ? -1 : 0;
}

/* Starts argv with stdout and stderr appended to DIR/logs/NAME.log. */
static pid_t spawn_logged(const demo *d, const char *name, char *const argv[]) {
  char logs[PATH_MAX], log[PATH_MAX], file[96];
  snprintf(file, sizeof file, "%s.log", name);
  if (path_join(logs, sizeof logs, d->dir, "logs") || mkdirs(logs) ||
      path_join(log, sizeof log, logs, file))
    return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0640);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  pid_t pid;
  int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc) {
    fprintf(stderr, "tuma demo: cannot start %s: %s\n", argv[0], strerror(rc));
    return -1;
  }
  return pid;
}

/* GETs path from the metrics port into buf (NUL-terminated). 0 on a 200 reply. */
static int http_get(uint16_t port, const char *path, char *buf, size_t cap) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return -1;
  struct timeval tv = {2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {
      .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  size_t len = 0;
  if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
    char req[128];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (write(fd, req, (size_t)n) == n) {
      ssize_t r;
      while (len + 1 < cap && (r = read(fd, buf + len, cap - 1 - len)) > 0)
        len += (size_t)r;
    }
  }
  close(fd);
  buf[len] = 0;
  return strncmp(buf, "HTTP/1.", 7) == 0 && strstr(buf, " 200 ") ? 0 : -1;
}

static uint64_t metric(const char *text, const char *name) {
  const char *p = strstr(text, name);
  while (p && p != text && p[-1] != '\n')
    p = strstr(p + 1, name);
  return p ? strtoull(p + strlen(name), NULL, 10) : 0;
}

typedef struct counts {
  uint64_t committed, aborted, expired, rejected, in_flight;
} counts;

static int read_counts(const demo *d, counts *c) {
  static char buf[65536];
  if (http_get(d->metrics_port, "/metrics", buf, sizeof buf))
    return -1;
  c->committed = metric(buf, "tuma_transfers_total{outcome=\"committed\"} ");
  c->aborted = metric(buf, "tuma_transfers_total{outcome=\"aborted\"} ");
  c->expired = metric(buf, "tuma_transfers_total{outcome=\"expired\"} ");
  c->rejected = metric(buf, "tuma_transfers_total{outcome=\"rejected\"} ");
  c->in_flight = metric(buf, "tuma_transfers_in_flight ");
  return 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int wait_ready(const demo *d, double seconds) {
  char buf[512];
  for (double end = now_s() + seconds; now_s() < end && !interrupted;) {
    if (http_get(d->metrics_port, "/healthz", buf, sizeof buf) == 0)
      return 0;
    if (waitpid(d->tumad_pid, NULL, WNOHANG) == d->tumad_pid)
      return -1;
    usleep(50000);
  }
  return -1;
}

/* SIGTERM, then wait at most `seconds`; SIGKILL after that. Returns the exit status or -1. */
static int stop_child(pid_t pid, double seconds) {
  if (pid <= 0)
    return -1;
  kill(pid, SIGTERM);
  int status;
  for (double end = now_s() + seconds; now_s() < end;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid)
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    usleep(20000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return -1;
}

static pid_t start_operator(const demo *d, int i) {
  char connect[32], data[PATH_MAX], pki[PATH_MAX], rate[16], duration[16];
  snprintf(connect, sizeof connect, "127.0.0.1:%u", d->port);
  snprintf(rate, sizeof rate, "%u", d->rate);
  snprintf(duration, sizeof duration, "%u", d->duration ? d->duration : 86400);
  char name[32];
  snprintf(name, sizeof name, "opsim-%s", operators[i].id);
  if (path_join(data, sizeof data, d->dir, name) || path_join(pki, sizeof pki, d->dir, "pki"))
    return -1;
  const char *argv[40] = {d->opsim,
                          "--connect",
                          connect,
                          "--pki",
                          pki,
                          "--as",
                          operators[i].id,
                          "--data",
                          data,
                          "--wallets",
                          "1000",
                          "--msisdn-prefix",
                          operators[i].prefix,
                          "--initial-balance",
                          "100000000",
                          "--rate",
                          rate,
                          "--duration",
                          duration,
                          "--payee-prefix",
                          operators[operators[i].pays].prefix,
                          "--payee-wallets",
                          "1000",
                          "--amount-min",
                          "100",
                          "--amount-max",
                          "500000",
                          "--linger",
                          "--json"};
  size_t n = 0;
  while (argv[n])
    n++;
  for (size_t k = 0; operators[i].extra[k] && n < 38; k++)
    argv[n++] = operators[i].extra[k];
  argv[n] = NULL;
  return spawn_logged(d, name, (char *const *)argv);
}

static int print_positions(const demo *d) {
  char port[8], pki[PATH_MAX], ca[PATH_MAX], crt[PATH_MAX], key[PATH_MAX];
  snprintf(port, sizeof port, "%u", d->admin_port);
  if (path_join(pki, sizeof pki, d->dir, "pki") || path_join(ca, sizeof ca, pki, "ca.crt") ||
      path_join(crt, sizeof crt, pki, "admin.crt") || path_join(key, sizeof key, pki, "admin.key"))
    return -1;
  admin_client_options o = {.host = "127.0.0.1",
                            .port = port,
                            .ca_file = ca,
                            .cert_file = crt,
                            .key_file = key,
                            .server_name = "localhost"};
  admin_client_diag diag = {""};
  admin_client *c = NULL;
  if (admin_client_connect(&o, &c, &diag)) {
    fprintf(stderr, "tuma demo: positions: %s\n", diag.text);
    return -1;
  }
  Tuma__V1__AdminEnvelope req = TUMA__V1__ADMIN_ENVELOPE__INIT;
  Tuma__V1__PositionsQuery q = TUMA__V1__POSITIONS_QUERY__INIT;
  req.body_case = TUMA__V1__ADMIN_ENVELOPE__BODY_POSITIONS_QUERY;
  req.positions_query = &q;
  Tuma__V1__AdminEnvelope *reply = NULL;
  int rc = admin_client_call(c, &req, &reply, &diag);
  if (rc == 0 && reply->body_case == TUMA__V1__ADMIN_ENVELOPE__BODY_POSITIONS_RESULT) {
    const Tuma__V1__PositionsResult *r = reply->positions_result;
    printf("\n%-12s %-8s %18s %14s %18s\n", "OPERATOR", "CURRENCY", "LIQUIDITY", "RESERVED",
           "NET (sent-recv)");
    for (size_t k = 0; k < r->n_positions; k++)
      printf("%-12s %-8s %18" PRIu64 " %14" PRIu64 " %18" PRId64 "\n",
             r->positions[k]->participant_id, r->positions[k]->currency, r->positions[k]->liquidity,
             r->positions[k]->reserved, r->positions[k]->net_position);
  } else {
    fprintf(stderr, "tuma demo: positions: %s\n", rc ? diag.text : "unexpected reply");
    rc = -1;
  }
  if (reply)
    tuma__v1__admin_envelope__free_unpacked(reply, NULL);
  admin_client_close(c);
  return rc;
}

/* The ledger itself, read-only, after tumad stopped. */
static int check_ledger(const demo *d) {
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/data/ledger", d->dir) >= (int)sizeof path)
    return -1;
  ledger_options o = {.flags = LEDGER_OPEN_READ_ONLY};
  ledger *l = NULL;
  int rc = ledger_open(path, &o, &l);
  if (rc) {
    fprintf(stderr, "tuma demo: ledger: %s\n", ledger_strerror(rc));
    return -1;
  }
  ledger_totals t;
  uint64_t seq = 0, bad = 0;
  int ok = ledger_totals_of(l, &t) == 0 && t.debits_posted == t.credits_posted &&
           t.debits_pending == t.credits_pending;
  int chain = ledger_journal_verify(l, &bad) == 0 && ledger_journal_head(l, &seq, NULL) == 0;
  printf("\nledger: %" PRIu64 " accounts, Σ debits = Σ credits: %s; journal: %" PRIu64
         " records, hash chain %s\n",
         t.accounts, ok ? "holds" : "BROKEN", seq, chain ? "verified" : "BROKEN");
  if (!chain)
    printf("journal fails at record %" PRIu64 "\n", bad);
  ledger_close(l);
  return ok && chain ? 0 : -1;
}

/* Runs `tuma disburse ARGS…` as `who` (a certificate in DIR/pki) and waits for it; its output
 * goes to DIR/logs/disburse.log, and when out is not NULL its stdout also into out[cap].
 * Returns its exit status (-1 when it could not run). */
static int disburse(const demo *d, const char *who, char *out, size_t cap, ...) {
  char pki[PATH_MAX], ca[PATH_MAX], crt[PATH_MAX], key[PATH_MAX], conn[32], f[96];
  snprintf(conn, sizeof conn, "127.0.0.1:%u", d->admin_port);
  if (path_join(pki, sizeof pki, d->dir, "pki") || path_join(ca, sizeof ca, pki, "ca.crt"))
    return -1;
  snprintf(f, sizeof f, "%s.crt", who);
  if (path_join(crt, sizeof crt, pki, f))
    return -1;
  snprintf(f, sizeof f, "%s.key", who);
  if (path_join(key, sizeof key, pki, f))
    return -1;
  const char *argv[40] = {d->self, "disburse"};
  size_t n = 2;
  va_list ap;
  va_start(ap, cap);
  for (const char *a; n < 28 && (a = va_arg(ap, const char *)) != NULL;)
    argv[n++] = a;
  va_end(ap);
  const char *conn_args[] = {"--connect", conn, "--ca", ca, "--cert", crt, "--key", key};
  for (size_t k = 0; k < 8; k++)
    argv[n++] = conn_args[k];
  argv[n] = NULL;
  int fds[2];
  if (pipe(fds))
    return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  pid_t pid;
  int rc = posix_spawn(&pid, d->self, &fa, NULL, (char *const *)argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (rc) {
    close(fds[0]);
    return -1;
  }
  char logs[PATH_MAX], log[PATH_MAX];
  FILE *lf = NULL;
  if (path_join(logs, sizeof logs, d->dir, "logs") == 0 &&
      path_join(log, sizeof log, logs, "disburse.log") == 0)
    lf = fopen(log, "a");
  size_t used = 0;
  char buf[4096];
  ssize_t got;
  while ((got = read(fds[0], buf, sizeof buf)) > 0) {
    if (lf)
      fwrite(buf, 1, (size_t)got, lf);
    if (out && used + 1 < cap) {
      size_t take = (size_t)got < cap - 1 - used ? (size_t)got : cap - 1 - used;
      memcpy(out + used, buf, take);
      used += take;
    }
  }
  if (out && cap)
    out[used] = 0;
  if (lf)
    fclose(lf);
  close(fds[0]);
  int st;
  if (waitpid(pid, &st, 0) != pid)
    return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The next cycle to pay (1 on the first run), kept in DIR/demo-cycle. */
static unsigned next_cycle(const demo *d) {
  char path[PATH_MAX];
  unsigned cycle = 0;
  if (path_join(path, sizeof path, d->dir, "demo-cycle"))
    return 1;
  FILE *f = fopen(path, "r");
  if (f) {
    if (fscanf(f, "%u", &cycle) != 1)
      cycle = 0;
    fclose(f);
  }
  cycle = cycle >= 900000 ? 1 : cycle + 1;
  if ((f = fopen(path, "w")) != NULL) {
    fprintf(f, "%u\n", cycle);
    fclose(f);
  }
  return cycle;
}

/* Starts the demo's disbursement; *batch gets its number. 0 when it was submitted and
 * approved. */
static int start_disbursement(const demo *d, uint64_t *batch) {
  char list[PATH_MAX], out[4096], cycle_s[16], total_s[32], count_s[16];
  if (path_join(list, sizeof list, d->dir, "demo-list.csv"))
    return -1;
  FILE *f = fopen(list, "w");
  if (!f)
    return -1;
  static const char *const sexes[] = {"F", "M"};
  static const char *const regions[] = {"Coast", "Nairobi", "Turkana", "Rift Valley"};
  uint64_t total = 0;
  fprintf(f, "beneficiary_id_type,beneficiary_id,amount,reference,msisdn,sex,age_band,region\n");
  for (int i = 0; i < DEMO_BENEFICIARIES; i++) {
    unsigned amount = 500 + 250 * (unsigned)(i % 4); /* KES, whole shillings */
    total += amount;
    /* wallets 900.. of alpha and beta (opsim: prefix, then the index, 12 digits) */
    fprintf(f, "national_id,DEMO%08d,%u,demo relief %d,%s%07d,%s,%s,%s\n", 1000 + i, amount, i,
            operators[i % 2].prefix, 900 + i / 2, sexes[i % 2], i % 3 ? "18-59" : "60+",
            regions[i % 4]);
  }
  if (fclose(f))
    return -1;
  unsigned cycle = next_cycle(d);
  snprintf(cycle_s, sizeof cycle_s, "%u", cycle);
  snprintf(count_s, sizeof count_s, "%d", DEMO_BENEFICIARIES);
  snprintf(total_s, sizeof total_s, "%llu", (unsigned long long)total);
  if (disburse(d, "admin", NULL, 0, "programme", "create", "--id", "demo-relief", "--name",
               "Demo relief", "--currency", "KES", "--funding", "gamma", "--cap", "5000", NULL) ||
      disburse(d, "admin", NULL, 0, "programme", "fund", "--programme", "demo-relief",
               "--amount", total_s, NULL) ||
      disburse(d, "manager", out, sizeof out, "submit", "--programme", "demo-relief", "--cycle",
               cycle_s, "--file", list, "--expect-count", count_s, "--expect-total", total_s,
               "--rate", "20", NULL))
    return -1;
  const char *b = strstr(out, "batch ");
  if (!b || sscanf(b, "batch %" SCNu64, batch) != 1)
    return -1;
  char batch_s[24];
  snprintf(batch_s, sizeof batch_s, "%" PRIu64, *batch);
  if (disburse(d, "approver", NULL, 0, "approve", batch_s, NULL))
    return -1;
  printf("disbursement: batch %s, cycle %u: %d beneficiaries, KES %s, submitted by 'manager', "
         "approved by 'approver', paying at 20/s\n",
         batch_s, cycle, DEMO_BENEFICIARIES, total_s);
  return 0;
}

/* Waits (bounded) for the demo's batch to complete and prints its status and reach. */
static int finish_disbursement(const demo *d, uint64_t batch) {
  char batch_s[24], out[8192];
  snprintf(batch_s, sizeof batch_s, "%" PRIu64, batch);
  for (int i = 0; i < 60; i++) {
    if (disburse(d, "manager", out, sizeof out, "status", batch_s, NULL) == 0 &&
        (strstr(out, "COMPLETED") || strstr(out, "completed")))
      break;
    usleep(500000);
  }
  printf("\n%s", out);
  int ok = strstr(out, "COMPLETED") || strstr(out, "completed");
  if (disburse(d, "manager", out, sizeof out, "reach", batch_s, NULL) == 0)
    printf("%s", out);
  if (!ok)
    fprintf(stderr, "tuma demo: the disbursement did not complete; see %s/logs/disburse.log\n",
            d->dir);
  return ok ? 0 : -1;
}

static int run(demo *d) {
  char cfg[PATH_MAX];
  if (mkdirs(d->dir) || ensure_pki(d) || path_join(cfg, sizeof cfg, d->dir, "tumad.ini"))
    return -1;
  d->port = free_port();
  d->admin_port = free_port();
  d->metrics_port = free_port();
  if (!d->port || !d->admin_port || !d->metrics_port || write_config(d))
    return -1;
  char *targv[] = {d->tumad, "--config", cfg, NULL};
  d->tumad_pid = spawn_logged(d, "tumad", targv);
  if (d->tumad_pid <= 0 || wait_ready(d, 20)) {
    fprintf(stderr, "tuma demo: tumad did not start; see %s/logs/tumad.log\n", d->dir);
    return -1;
  }
  printf("tumad ready on 127.0.0.1:%u (admin %u, metrics http://127.0.0.1:%u/metrics); data in "
         "%s/data\n",
         d->port, d->admin_port, d->metrics_port, d->dir);
  for (int i = 0; i < DEMO_OPERATORS; i++) {
    d->opsim_pid[i] = start_operator(d, i);
    if (d->opsim_pid[i] <= 0)
      return -1;
    printf("operator %-6s prefix %s pays %-6s at %u/s (logs %s/logs/opsim-%s.log)\n",
           operators[i].id, operators[i].prefix, operators[operators[i].pays].id, d->rate, d->dir,
           operators[i].id);
  }
  usleep(500000); /* the operators connect */
  uint64_t batch = 0;
  int disbursing = start_disbursement(d, &batch) == 0;
  if (!disbursing)
    fprintf(stderr, "tuma demo: the disbursement could not start; see %s/logs/disburse.log\n",
            d->dir);
  counts first = {0}, prev = {0}, cur = {0};
  read_counts(d, &first);
  prev = first;
  double t0 = now_s(), last = t0;
  int alive = DEMO_OPERATORS;
  while (!interrupted && alive > 0 && (d->duration == 0 || now_s() - t0 < d->duration + 2)) {
    usleep(1000000);
    if (read_counts(d, &cur))
      break;
    double t = now_s();
    uint64_t done = cur.committed + cur.aborted + cur.expired + cur.rejected;
    uint64_t was = prev.committed + prev.aborted + prev.expired + prev.rejected;
    printf("\r[%4.0fs] %6.0f transfers/s | in flight %4" PRIu64 " | committed %8" PRIu64
           " aborted %5" PRIu64 " expired %4" PRIu64 " rejected %5" PRIu64 "   ",
           t - t0, (double)(done - was) / (t - last), cur.in_flight,
           cur.committed - first.committed, cur.aborted - first.aborted,
           cur.expired - first.expired, cur.rejected - first.rejected);
    fflush(stdout);
    prev = cur;
    last = t;
    alive = 0;
    for (int i = 0; i < DEMO_OPERATORS; i++)
      if (d->opsim_pid[i] > 0 && waitpid(d->opsim_pid[i], NULL, WNOHANG) == 0)
        alive++;
  }
  printf("\n");
  int rc = disbursing ? 0 : -1;
  if (disbursing && finish_disbursement(d, batch))
    rc = -1;
  for (int i = 0; i < DEMO_OPERATORS; i++)
    if (d->opsim_pid[i] > 0 && kill(d->opsim_pid[i], 0) == 0 && stop_child(d->opsim_pid[i], 15) < 0)
      fprintf(stderr, "tuma demo: operator %s did not stop cleanly\n", operators[i].id);
  if (read_counts(d, &cur) == 0) {
    printf("\n%-10s %10s\n", "OUTCOME", "TRANSFERS");
    printf("%-10s %10" PRIu64 "\n%-10s %10" PRIu64 "\n%-10s %10" PRIu64 "\n%-10s %10" PRIu64 "\n",
           "committed", cur.committed - first.committed, "aborted", cur.aborted - first.aborted,
           "expired", cur.expired - first.expired, "rejected", cur.rejected - first.rejected);
  }
  if (print_positions(d))
    rc = -1;
  int st = stop_child(d->tumad_pid, 20);
  d->tumad_pid = 0;
  if (st != 0) {
    fprintf(stderr, "tuma demo: tumad exited with %d\n", st);
    rc = -1;
  }
  if (check_ledger(d))
    rc = -1;
  return rc;
}

int cli_demo_main(int argc, char **argv) {
  demo d;
  memset(&d, 0, sizeof d);
  d.duration = 30;
  d.rate = 100;
  const char *dir = "var/demo";
  for (int i = 1; i < argc; i++) {
    const char *v = NULL;
    uint64_t n;
    int m;
    if (cli_is_help(argv[i])) {
      fputs(demo_usage, stdout);
      return CLI_EXIT_OK;
    } else if ((m = cli_opt(argc, argv, &i, "demo", "--duration", &v)) != 0) {
      if (m < 0 || cli_parse_u64("demo", "--duration", v, 0, 86400, &n))
        return CLI_EXIT_USAGE;
      d.duration = (unsigned)n;
    } else if ((m = cli_opt(argc, argv, &i, "demo", "--rate", &v)) != 0) {
      if (m < 0 || cli_parse_u64("demo", "--rate", v, 1, 100000, &n))
        return CLI_EXIT_USAGE;
      d.rate = (unsigned)n;
    } else if ((m = cli_opt(argc, argv, &i, "demo", "--dir", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      dir = v;
    } else {
      fprintf(stderr, "tuma demo: unknown argument %s\n%s", argv[i], demo_usage);
      return CLI_EXIT_USAGE;
    }
  }
  if (dir[0] == '/')
    snprintf(d.dir, sizeof d.dir, "%s", dir);
  else {
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd) || path_join(d.dir, sizeof d.dir, cwd, dir))
      return CLI_EXIT_FAIL;
  }
  if (find_programs(&d))
    return CLI_EXIT_FAIL;
  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  int rc = run(&d);
  for (int i = 0; i < DEMO_OPERATORS; i++)
    if (d.opsim_pid[i] > 0 && kill(d.opsim_pid[i], 0) == 0)
      stop_child(d.opsim_pid[i], 5);
  if (d.tumad_pid > 0)
    stop_child(d.tumad_pid, 10);
  printf("%s\n", rc == 0 ? "demo: OK" : "demo: FAILED");
  return rc == 0 ? CLI_EXIT_OK : CLI_EXIT_FAIL;
}
