/* switch_harness.c — a real tumad for the integration tests (switch_harness.h). */
#include "switch_harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t sh_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static void seterr(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* ---------------------------------------------------------------- child processes */

/* Forks and execs prog with argv (argv[0] = prog), stdout and stderr appended to log_path.
 * The child dies with us. Returns the pid, or -1. */
static pid_t spawn(const char *prog, const char *const *args, const char *log_path) {
  const char *argv[64];
  size_t n = 0;
  argv[n++] = prog;
  for (size_t i = 0; args && args[i] && n < 63; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int nul = open("/dev/null", O_RDONLY);
    if (fd < 0 || nul < 0)
      _exit(127);
    dup2(nul, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    execv(prog, (char *const *)argv);
    _exit(127);
  }
  return pid;
}

/* Waits for pid at most timeout_ms. Returns 1 and *status if it exited, 0 if still running. */
static int wait_for(pid_t pid, int timeout_ms, int *status) {
  int64_t deadline = mono_ms() + timeout_ms;
  for (;;) {
    int st = 0;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) {
      if (status)
        *status = st;
      return 1;
    }
    if (r < 0 && errno != EINTR)
      return 1; /* not our child any more: treat as gone */
    if (mono_ms() >= deadline)
      return 0;
    sleep_ms(5);
  }
}

int sh_run_cli(sh_switch *h, const char *const *argv, int timeout_ms) {
  char log_path[SH_PATH_MAX + 16];
  snprintf(log_path, sizeof log_path, "%s/cli.log", h->dir);
  pid_t pid = spawn(h->tuma, argv, log_path);
  if (pid < 0)
    return -1;
  int st = 0;
  if (!wait_for(pid, timeout_ms, &st)) {
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int sh_issue(sh_switch *h, const char *name, const char *role, const char *outdir,
             const char *const *extra) {
  const char *argv[32] = {"pki", "issue",  "--dir", h->pki,  "--name",
                          name,  "--role", role,    "--out", outdir ? outdir : h->certs};
  size_t n = 10;
  for (size_t i = 0; extra && extra[i] && n < 31; i++)
    argv[n++] = extra[i];
  argv[n] = NULL;
  return sh_run_cli(h, argv, 10000) == 0 ? 0 : -1;
}

const char *sh_cert(sh_switch *h, const char *name) {
  static char path[SH_PATH_MAX + 80];
  snprintf(path, sizeof path, "%s/%s.crt", h->certs, name);
  return path;
}

const char *sh_key(sh_switch *h, const char *name) {
  static char path[SH_PATH_MAX + 80];
  snprintf(path, sizeof path, "%s/%s.key", h->certs, name);
  return path;
}

/* ---------------------------------------------------------------- ports */

static int bindable(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return 0;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int ok = bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0;
  close(fd);
  return ok;
}

/* Three distinct free ports below the usual ephemeral range (32768-60999), so that the
 * tests' own outgoing connections cannot take them between a stop and a restart. */
static int pick_ports(sh_switch *h) {
  unsigned seed;
  if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
    seed = (unsigned)getpid() * 2654435761u + (unsigned)mono_ms();
  uint16_t got[3] = {0, 0, 0};
  size_t n = 0;
  for (int tries = 0; tries < 1000 && n < 3; tries++) {
    uint16_t p = (uint16_t)(20000 + rand_r(&seed) % 12000);
    int dup = 0;
    for (size_t i = 0; i < n; i++)
      dup |= got[i] == p;
    if (!dup && bindable(p))
      got[n++] = p;
  }
  if (n < 3)
    return -1;
  h->port = got[0];
  h->admin_port = got[1];
  h->metrics_port = got[2];
  return 0;
}

/* ---------------------------------------------------------------- set-up */

static int write_config(sh_switch *h, const sh_options *o) {
  FILE *f = fopen(h->config, "w");
  if (!f)
    return -1;
  fprintf(f,
          "# written by tests/switch_harness.c\n"
          "[switch]\n"
          "listen = 127.0.0.1:%u\n"
          "admin_listen = 127.0.0.1:%u\n"
          "metrics_listen = 127.0.0.1:%u\n"
          "data_dir = %s\n"
          "max_frame_bytes = %u\n"
          "max_connections = %u\n"
          "max_in_flight = %u\n"
          "read_timeout_ms = %u\n"
          "max_expiry_ms = %u\n"
          "log_level = %s\n"
          "\n"
          "[tls]\n"
          "ca = %s/ca.crt\n"
          "cert = %s/tumad.crt\n"
          "key = %s/tumad.key\n"
          "%s%s%s"
          "\n"
          "[participant alpha]\n"
          "name = Alpha Mobile Money\n"
          "currencies = KES\n"
          "initial_deposit.KES = %llu\n"
          "msisdn_prefixes = 25470\n"
          "\n"
          "[participant beta]\n"
          "name = Beta Bank\n"
          "currencies = KES\n"
          "initial_deposit.KES = %llu\n"
          "msisdn_prefixes = 25471\n"
          "\n"
          "[participant gamma]\n"
          "name = Gamma Wallet\n"
          "currencies = KES\n"
          "net_debit_cap.KES = %llu\n"
          "initial_deposit.KES = %llu\n"
          "msisdn_prefixes = 25472\n",
          h->port, h->admin_port, h->metrics_port, h->data_dir,
          o && o->max_frame_bytes ? o->max_frame_bytes : 4096,
          o && o->max_connections ? o->max_connections : 64,
          o && o->max_in_flight ? o->max_in_flight : 256,
          o && o->read_timeout_ms ? o->read_timeout_ms : 500,
          o && o->max_expiry_ms ? o->max_expiry_ms : 60000,
          o && o->log_level ? o->log_level : "debug", h->pki, h->pki, h->pki,
          o && o->tls_crl ? "crl = " : "", o && o->tls_crl ? h->pki : "",
          o && o->tls_crl ? "/crl.pem\n" : "", SH_DEPOSIT, SH_DEPOSIT, SH_GAMMA_CAP, SH_DEPOSIT);
  if (o && (o->map_size_mb || o->map_size_max_mb)) {
    fprintf(f, "\n[ledger]\n");
    if (o->map_size_mb)
      fprintf(f, "map_size_mb = %u\n", o->map_size_mb);
    if (o->map_size_max_mb)
      fprintf(f, "map_size_max_mb = %u\n", o->map_size_max_mb);
  }
  return fclose(f) == 0 ? 0 : -1;
}

int sh_write_config(sh_switch *h) {
  return write_config(h, &h->opts);
}

int sh_create(const sh_options *opts, sh_switch **out, char *err, size_t errlen) {
  *out = NULL;
  const char *tumad = getenv("TUMAD"), *tuma = getenv("TUMA_CLI");
  if (!tumad || !tuma || access(tumad, X_OK) || access(tuma, X_OK)) {
    seterr(err, errlen, "set TUMAD and TUMA_CLI to the tumad and tuma executables (got %s, %s)",
           tumad ? tumad : "unset", tuma ? tuma : "unset");
    return -1;
  }
  sh_switch *h = calloc(1, sizeof *h);
  if (!h) {
    seterr(err, errlen, "out of memory");
    return -1;
  }
  if (opts)
    h->opts = *opts;
  if (h->opts.log_level) { /* keep a copy: the caller's string may go */
    snprintf(h->log_level, sizeof h->log_level, "%s", h->opts.log_level);
    h->opts.log_level = h->log_level;
  }
  snprintf(h->tumad, sizeof h->tumad, "%s", tumad);
  snprintf(h->tuma, sizeof h->tuma, "%s", tuma);
  const char *tmp = getenv("TMPDIR");
  snprintf(h->dir, sizeof h->dir, "%s/tuma-it-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
  if (!mkdtemp(h->dir)) {
    seterr(err, errlen, "mkdtemp %s: %s", h->dir, strerror(errno));
    free(h);
    return -1;
  }
  snprintf(h->pki, sizeof h->pki, "%.400s/pki", h->dir);
  snprintf(h->certs, sizeof h->certs, "%.400s/certs", h->dir);
  snprintf(h->data_dir, sizeof h->data_dir, "%.400s/data", h->dir);
  snprintf(h->ledger_dir, sizeof h->ledger_dir, "%.400s/data/ledger", h->dir);
  snprintf(h->config, sizeof h->config, "%.400s/tumad.ini", h->dir);
  snprintf(h->log, sizeof h->log, "%.400s/tumad.log", h->dir);
  snprintf(h->ca, sizeof h->ca, "%.400s/pki/ca.crt", h->dir);
  const char *init[] = {"pki", "init", "--dir", h->pki, NULL};
  if (sh_run_cli(h, init, 10000) != 0) {
    seterr(err, errlen, "tuma pki init failed (see %s/cli.log)", h->dir);
    goto fail;
  }
  static const char *const names[][2] = {
      {"alpha", "operator"},
      {"beta", "operator"},
      {"gamma", "operator"},
      {"admin", "admin"},
      /* disbursements (disburse.proto): two makers and a checker */
      {"manager", "programme-manager"},
      {"manager2", "programme-manager"},
      {"approver", "approver"}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (sh_issue(h, names[i][0], names[i][1], NULL, NULL)) {
      seterr(err, errlen, "tuma pki issue %s failed (see %s/cli.log)", names[i][0], h->dir);
      goto fail;
    }
  if (pick_ports(h)) {
    seterr(err, errlen, "no free loopback ports");
    goto fail;
  }
  if (write_config(h, &h->opts)) {
    seterr(err, errlen, "cannot write %s", h->config);
    goto fail;
  }
  *out = h;
  return 0;
fail:
  free(h);
  return -1;
}

/* ---------------------------------------------------------------- running */

int sh_http_get(sh_switch *h, const char *path, char *body, size_t bodylen) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  struct timeval tv = {0, 500000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_port = htons(h->metrics_port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int status = -1;
  char req[600];
  int reqlen = snprintf(req, sizeof req, "GET %.500s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
  char *resp = malloc(1 << 20);
  if (resp && connect(fd, (struct sockaddr *)&sin, sizeof sin) == 0 &&
      send(fd, req, (size_t)reqlen, MSG_NOSIGNAL) == reqlen) {
    size_t got = 0;
    ssize_t n;
    int64_t deadline = mono_ms() + 2000;
    while (got < (1u << 20) - 1 && mono_ms() < deadline &&
           (n = recv(fd, resp + got, (1u << 20) - 1 - got, 0)) > 0)
      got += (size_t)n;
    resp[got] = 0;
    int code = 0;
    if (sscanf(resp, "HTTP/1.%*d %d", &code) == 1)
      status = code;
    const char *start = strstr(resp, "\r\n\r\n");
    if (body && bodylen)
      snprintf(body, bodylen, "%s", start ? start + 4 : "");
  }
  free(resp);
  close(fd);
  return status;
}

/* 1 if GET /healthz on the metrics port answers 200. */
static int healthy(sh_switch *h) {
  char body[64];
  return sh_http_get(h, "/healthz", body, sizeof body) == 200;
}

static int start_once(sh_switch *h, int timeout_ms, char *err, size_t errlen);

/* The ports were free when picked, but a parallel test may take one before tumad binds it (or
 * between a stop and a restart): then pick others and try again. */
int sh_start(sh_switch *h, int timeout_ms, char *err, size_t errlen) {
  for (int attempt = 0;; attempt++) {
    off_t before = 0;
    struct stat st;
    if (stat(h->log, &st) == 0)
      before = st.st_size;
    int rc = start_once(h, timeout_ms, err, errlen);
    if (rc == 0 || attempt == 3)
      return rc;
    FILE *f = fopen(h->log, "r");
    int clash = 0;
    if (f && fseeko(f, before, SEEK_SET) == 0) {
      char line[1024];
      while (fgets(line, sizeof line, f))
        clash |= strstr(line, "listen.failed") && strstr(line, "Address already in use");
    }
    if (f)
      fclose(f);
    if (!clash || pick_ports(h) || write_config(h, &h->opts))
      return rc;
  }
}

static int start_once(sh_switch *h, int timeout_ms, char *err, size_t errlen) {
  if (h->pid) {
    seterr(err, errlen, "tumad already running");
    return -1;
  }
  const char *args[] = {"--config", h->config, NULL};
  h->pid = spawn(h->tumad, args, h->log);
  if (h->pid < 0) {
    h->pid = 0;
    seterr(err, errlen, "fork: %s", strerror(errno));
    return -1;
  }
  int64_t deadline = mono_ms() + timeout_ms;
  while (mono_ms() < deadline) {
    int st;
    if (wait_for(h->pid, 0, &st)) {
      h->pid = 0;
      seterr(err, errlen, "tumad exited during start-up (status %d%s), log %s",
             WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st), WIFEXITED(st) ? "" : " signal",
             h->log);
      return -1;
    }
    if (healthy(h))
      return 0;
    sleep_ms(20);
  }
  sh_kill(h);
  seterr(err, errlen, "tumad not ready within %d ms, log %s", timeout_ms, h->log);
  return -1;
}

int sh_stop(sh_switch *h, int timeout_ms, int *status) {
  if (!h->pid)
    return -1;
  kill(h->pid, SIGTERM);
  int st = 0;
  int exited = wait_for(h->pid, timeout_ms, &st);
  if (!exited) {
    kill(h->pid, SIGKILL);
    waitpid(h->pid, &st, 0);
  }
  h->pid = 0;
  if (status)
    *status = st;
  return exited ? 0 : -1;
}

int sh_kill(sh_switch *h) {
  if (!h->pid)
    return -1;
  kill(h->pid, SIGKILL);
  int st;
  waitpid(h->pid, &st, 0);
  h->pid = 0;
  return 0;
}

/* ---------------------------------------------------------------- logs and clean-up */

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  size_t cap = 65536, n = 0;
  char *buf = malloc(cap + 1);
  size_t r;
  while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
    n += r;
    if (n == cap) {
      char *nb = realloc(buf, cap * 2 + 1);
      if (!nb) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = nb;
      cap *= 2;
    }
  }
  fclose(f);
  if (buf) {
    buf[n] = 0;
    if (len)
      *len = n;
  }
  return buf;
}

int sh_log_contains(sh_switch *h, const char *s) {
  char *text = slurp(h->log, NULL);
  int found = text && strstr(text, s) != NULL;
  free(text);
  return found;
}

void sh_dump_log(sh_switch *h, const char *label, int lines) {
  size_t len = 0;
  char *text = slurp(h->log, &len);
  if (!text) {
    fprintf(stderr, "[%s] no tumad log at %s\n", label, h->log);
    return;
  }
  size_t start = len;
  int seen = 0;
  while (start > 0 && seen <= lines) {
    start--;
    if (text[start] == '\n' && start + 1 < len)
      seen++;
  }
  if (seen > lines)
    start++;
  fprintf(stderr, "[%s] last lines of %s:\n", label, h->log);
  for (char *line = text + start, *nl; *line; line = nl + 1) {
    nl = strchr(line, '\n');
    if (!nl) {
      fprintf(stderr, "[%s]   %s\n", label, line);
      break;
    }
    fprintf(stderr, "[%s]   %.*s\n", label, (int)(nl - line), line);
  }
  free(text);
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

void sh_destroy(sh_switch *h, int remove_dir) {
  if (!h)
    return;
  if (h->pid)
    sh_kill(h);
  if (remove_dir && h->dir[0])
    nftw(h->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  free(h);
}
