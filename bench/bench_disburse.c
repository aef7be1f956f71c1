/* bench_disburse.c — `tuma-bench disburse`: a disbursement end to end (issue 5): a list of N
 * beneficiaries validated, approved and paid into K simulated operators' wallets.
 *
 * In a scratch directory it makes a scheme PKI (`tuma pki`: operators op1..opK, and the
 * certificates "admin", "manager" (programme-manager) and "approver"), writes a tumad.ini with
 * K payee operators (MSISDN prefix 2547NN for opNN) and a funding participant "funder", starts
 * tumad (log level info) from the same build and, unless --validate-only, K tuma-opsim payees:
 * operator j holds the wallets of beneficiaries k ≡ j (mod K), wallet index k / K, MSISDN
 * 2547NN followed by the index on 6 digits, opening balance 0. Then, with the real CLI
 * (`tuma disburse …`):
 *   1. programme "bench" (KES, funded by "funder"), funded with exactly the list's total;
 *   2. the wallets: with --wallets-from registry (default) a registry CSV of N rows
 *      (national_id, msisdn, operator) uploaded with `tuma disburse beneficiary upload`
 *      (register_seconds), the list then names beneficiaries by id only; with --wallets-from
 *      list the list rows carry msisdn and operator themselves (no registry);
 *   3. the list (N rows, amounts 1.00-10.00 KES) submitted with its control totals:
 *      validate_seconds = the submit command's start → its BatchSubmitResult (the command's
 *      exit; file hashing, TLS set-up and every chunk's round trip included);
 *   4. (not with --validate-only) approved as "approver": execute_seconds = the approve
 *      command's start → tumad logs the cycle finished (its log is followed every 20 ms), then
 *      `tuma disburse status` must say completed; failed = its failed count;
 *   5. every operator stopped (SIGTERM, exit 0) and its history read (`tuma-opsim history`):
 *      paid = wallets credited at least once, paid_twice = wallets credited more than once
 *      (each wallet is one beneficiary, and the batch has one cycle).
 * tumad's own timestamps of the same steps (disburse.upload_started → batch_submitted,
 * approved → cycle_started → cycle_finished) are reported beside the bench's, and the CPU
 * that tumad, the operators and everything else used in each phase.
 *
 * Exit status 0 when every step worked and (unless --validate-only) all N were paid, none
 * failed and none twice; 1 otherwise. Every wait is bounded in time; every loop in count.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *const dcmd = "disburse";

#define BD_MAX_OPERATORS 64
#define BD_WALLETS_PER_OP 1000000u /* 6 digits after the 6-digit prefix */
#define BD_READY_WAIT_MS 30000u
#define BD_CMD_WAIT_MS 60000u
#define BD_STOP_WAIT_MS 60000u
#define BD_CLI_TIMEOUT "600" /* the CLI's per-reply timeout, seconds */
#define BD_OPSIM_DEPOSIT 1000000000ull

/* ---------------------------------------------------------------- options */

typedef struct bd_opts {
  uint64_t beneficiaries;
  uint64_t operators;
  uint64_t rate;        /* 0 = the switch's default */
  uint64_t chunk_bytes; /* 0 = the CLI's default */
  int wallets_from_list;
  int validate_only;
  int json;
  int keep;
  const char *tmpdir;
} bd_opts;

static void disburse_usage(FILE *out) {
  fprintf(out,
          "usage: tuma-bench disburse --beneficiaries N [--operators K] [--rate R]\n"
          "                           [--wallets-from registry|list] [--chunk-bytes C]\n"
          "                           [--validate-only] [--tmpdir DIR] [--keep] [--json]\n"
          "  --beneficiaries N      rows of the list, 1..10000000 (N/K <= 1000000)\n"
          "  --operators K          payee operators (tuma-opsim), 1..64 (default 2)\n"
          "  --rate R               the batch's payments per second, 1..100000 (default: the\n"
          "                         switch's default)\n"
          "  --wallets-from registry  beneficiaries registered first with `tuma disburse\n"
          "                         beneficiary upload` (msisdn + operator); the list names\n"
          "                         them by id (default)\n"
          "  --wallets-from list    the list rows carry msisdn and operator (no registry)\n"
          "  --chunk-bytes C        upload request size, 64..8388608 (default: the CLI's)\n"
          "  --validate-only        stop after the submit (no operators are started)\n"
          "  --tmpdir DIR           folder for the scratch directory (default $TMPDIR or /tmp)\n"
          "  --keep                 keep the scratch directory (PKI, tumad.log, files, outputs)\n"
          "  --json                 one JSON object on stdout instead of the table\n"
          "environment: TUMA_CLI, TUMAD, TUMA_OPSIM (default: the build tree's, next to\n"
          "             tuma-bench: ../cli/tuma, ../switch/tumad, ../adapters/opsim/tuma-opsim)\n");
}

/* Returns BENCH_EXIT_OK, BENCH_EXIT_USAGE after a message, or -1 after --help. */
static int disburse_parse(int argc, char **argv, bd_opts *o) {
  int have_n = 0;
  for (int i = 1; i < argc; i++) {
    const char *v = NULL;
    const char *a = argv[i];
    int m;
    uint64_t *num = NULL;
    uint64_t lo = 0, hi = 0;
    const char *name = NULL;
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      disburse_usage(stdout);
      return -1;
    } else if (strcmp(a, "--json") == 0) {
      o->json = 1;
    } else if (strcmp(a, "--keep") == 0) {
      o->keep = 1;
    } else if (strcmp(a, "--validate-only") == 0) {
      o->validate_only = 1;
    } else if ((m = bench_opt(argc, argv, &i, dcmd, "--wallets-from", &v)) != 0) {
      if (m < 0)
        return BENCH_EXIT_USAGE;
      if (strcmp(v, "registry") == 0) {
        o->wallets_from_list = 0;
      } else if (strcmp(v, "list") == 0) {
        o->wallets_from_list = 1;
      } else {
        fprintf(stderr,
                "tuma-bench disburse: --wallets-from: '%s' is neither 'registry' nor "
                "'list'\n",
                v);
        return BENCH_EXIT_USAGE;
      }
    } else if ((m = bench_opt(argc, argv, &i, dcmd, "--tmpdir", &v)) != 0) {
      if (m < 0)
        return BENCH_EXIT_USAGE;
      o->tmpdir = v;
    } else if ((m = bench_opt(argc, argv, &i, dcmd, "--beneficiaries", &v)) != 0) {
      name = "--beneficiaries", num = &o->beneficiaries, lo = 1, hi = 10000000;
      have_n = 1;
    } else if ((m = bench_opt(argc, argv, &i, dcmd, "--operators", &v)) != 0) {
      name = "--operators", num = &o->operators, lo = 1, hi = BD_MAX_OPERATORS;
    } else if ((m = bench_opt(argc, argv, &i, dcmd, "--rate", &v)) != 0) {
      name = "--rate", num = &o->rate, lo = 1, hi = 100000;
    } else if ((m = bench_opt(argc, argv, &i, dcmd, "--chunk-bytes", &v)) != 0) {
      name = "--chunk-bytes", num = &o->chunk_bytes, lo = 64, hi = 8388608;
    } else {
      fprintf(stderr, "tuma-bench disburse: unknown option '%s'\n", a);
      disburse_usage(stderr);
      return BENCH_EXIT_USAGE;
    }
    if (num && (m < 0 || bench_parse_u64(dcmd, name, v, lo, hi, num) != 0))
      return BENCH_EXIT_USAGE;
  }
  if (!have_n) {
    fprintf(stderr, "tuma-bench disburse: --beneficiaries N is required\n");
    return BENCH_EXIT_USAGE;
  }
  if (o->beneficiaries < o->operators) {
    fprintf(stderr, "tuma-bench disburse: fewer beneficiaries than operators\n");
    return BENCH_EXIT_USAGE;
  }
  if ((o->beneficiaries + o->operators - 1) / o->operators > BD_WALLETS_PER_OP) {
    fprintf(stderr, "tuma-bench disburse: at most %u wallets per operator: raise --operators\n",
            BD_WALLETS_PER_OP);
    return BENCH_EXIT_USAGE;
  }
  return BENCH_EXIT_OK;
}

/* ---------------------------------------------------------------- state */

/* What tumad's log said (Unix ms of its ts=; 0 = not seen). */
typedef struct bd_log {
  uint64_t upload_started_ms; /* the last list upload's */
  uint64_t submitted_ms;
  uint64_t approved_ms;
  uint64_t cycle_started_ms;
  uint64_t cycle_finished_ms;
  uint64_t finished_paid;
  uint64_t batch;
  long off;        /* bytes of the log consumed */
  char part[8192]; /* an incomplete last line */
  size_t part_len;
} bd_log;

typedef struct bd_status {
  char state[32];
  uint64_t pending, in_flight, paid, failed, cancelled;
} bd_status;

typedef struct bd_result {
  uint64_t total;          /* the list's sum, minor units */
  double setup_seconds;    /* operators started and ready */
  double register_seconds; /* -1: not run */
  double validate_seconds; /* submit → result */
  double execute_seconds;  /* approve → completed (-1: not run) */
  double log_validate_s;   /* upload_started → batch_submitted, tumad's clock (-1) */
  double log_execute_s;    /* approved → cycle_finished (-1) */
  double log_start_s;      /* approved → cycle_started (-1) */
  uint64_t batch, valid, invalid;
  bd_status st;
  uint64_t paid, paid_twice, credits, credited_amount, stray; /* from the wallets */
  double tumad_cpu_validate_s, tumad_cpu_execute_s, opsim_cpu_execute_s;
  double tumad_wbytes_validate, tumad_wbytes_execute, opsim_wbytes_execute;
  double other_pct_validate, other_pct_execute; /* % of one core; -1 unknown */
  double list_bytes;
  char load_start[64], load_end[64];
  int tumad_exit, opsims_exit_ok;
} bd_result;

typedef struct bd_run {
  const bd_opts *o;
  char *dir, *cli, *tumad, *opsim;
  char pki[4096], log_path[4200];
  uint16_t ports[3];
  pid_t tumad_pid;
  pid_t opsim_pid[BD_MAX_OPERATORS];
  unsigned ncli;
  int interrupted;
  char failure[512];
  bd_log log;
} bd_run;

__attribute__((noinline)) static void fail(bd_run *r, const char *fmt, const char *a,
                                           const char *b) {
  if (r->failure[0])
    return;
  snprintf(r->failure, sizeof r->failure, fmt, a ? a : "", b ? b : "");
}

/* ---------------------------------------------------------------- small helpers */

static int wallet_count(const bd_opts *o, unsigned op) {
  uint64_t n = o->beneficiaries / o->operators + (op < o->beneficiaries % o->operators ? 1 : 0);
  return (int)n;
}

/* Beneficiary k's amount in minor units: 1.00 to 10.00. */
static uint64_t amount_of(uint64_t k) {
  return 100 + k * 7919 % 901;
}

static void msisdn_of(const bd_opts *o, uint64_t k, char out[16]) {
  unsigned op = (unsigned)(k % o->operators);
  snprintf(out, 16, "2547%02u%06u", op + 1, (unsigned)(k / o->operators));
}

static void major(uint64_t minor, char out[32]) {
  snprintf(out, 32, "%" PRIu64 ".%02" PRIu64, minor / 100, minor % 100);
}

/* The file's first `cap - 1` bytes into buf (NUL-terminated). */
static char *slurp(const char *path, char *buf, size_t cap) {
  buf[0] = '\0';
  FILE *f = fopen(path, "rb");
  if (!f)
    return buf;
  size_t n = fread(buf, 1, cap - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static uint64_t num_after(const char *text, const char *key, int *ok) {
  const char *p = text ? strstr(text, key) : NULL;
  if (!p) {
    *ok = 0;
    return 0;
  }
  p += strlen(key);
  while (*p == ' ')
    p++;
  char *end;
  uint64_t v = strtoull(p, &end, 10);
  if (end == p)
    *ok = 0;
  return v;
}

/* "2026-11-28T02:14:12.052Z" → Unix ms; 0 if malformed. */
static uint64_t parse_ts(const char *s) {
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  int ms = 0;
  if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
             &tm.tm_min, &tm.tm_sec, &ms) != 7)
    return 0;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  time_t t = timegm(&tm);
  return t < 0 ? 0 : (uint64_t)t * 1000u + (uint64_t)ms;
}

static double ms_between(uint64_t a, uint64_t b) {
  return a && b && b >= a ? (double)(b - a) / 1000.0 : -1;
}

static double children_cpu_s(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_CHILDREN, &ru) != 0)
    return 0;
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void loadavg(char *out, size_t cap) {
  char buf[128];
  int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
  snprintf(out, cap, "?");
  if (fd < 0)
    return;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return;
  buf[n] = '\0';
  double a = 0, b = 0, c = 0;
  if (sscanf(buf, "%lf %lf %lf", &a, &b, &c) == 3)
    snprintf(out, cap, "%.2f %.2f %.2f", a, b, c);
}

static void cpu_model(char *out, size_t cap) {
  snprintf(out, cap, "?");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f)
    return;
  char line[512];
  for (int i = 0; i < 200 && fgets(line, sizeof line, f); i++) {
    if (strncmp(line, "model name", 10) != 0)
      continue;
    char *c = strchr(line, ':');
    if (c) {
      c++;
      while (*c == ' ' || *c == '\t')
        c++;
      c[strcspn(c, "\n")] = '\0';
      snprintf(out, cap, "%s", c);
    }
    break;
  }
  fclose(f);
}

/* ---------------------------------------------------------------- tumad's log */

static void log_line(bd_log *l, char *line) {
  if (strncmp(line, "ts=", 3) != 0)
    return;
  uint64_t ts = parse_ts(line + 3);
  int ok = 1;
  if (strstr(line, " event=disburse.upload_started ") && strstr(line, " kind=list")) {
    l->upload_started_ms = ts;
  } else if (strstr(line, " event=disburse.batch_submitted ")) {
    l->submitted_ms = ts;
    l->batch = num_after(line, " batch=", &ok);
  } else if (strstr(line, " event=disburse.approved ")) {
    l->approved_ms = ts;
  } else if (strstr(line, " event=disburse.cycle_started ")) {
    l->cycle_started_ms = ts;
  } else if (strstr(line, " event=disburse.cycle_finished ")) {
    l->cycle_finished_ms = ts;
    l->finished_paid = num_after(line, " paid=", &ok);
  }
}

/* Reads what tumad appended to its log since the last call (at most 64 MiB a call). */
static void log_follow(bd_run *r) {
  bd_log *l = &r->log;
  int fd = open(r->log_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  char buf[65536];
  for (int rounds = 0; rounds < 1024; rounds++) {
    ssize_t n = pread(fd, buf, sizeof buf, l->off);
    if (n <= 0)
      break;
    l->off += n;
    for (ssize_t i = 0; i < n; i++) {
      if (buf[i] != '\n') {
        if (l->part_len < sizeof l->part - 1)
          l->part[l->part_len++] = buf[i];
        continue;
      }
      l->part[l->part_len] = '\0';
      log_line(l, l->part);
      l->part_len = 0;
    }
  }
  close(fd);
}

/* ---------------------------------------------------------------- processes */

/* Runs `tuma ARGS… <connection options as AS>` (at most timeout_ms); stdout and stderr go to
 * DIR/cli-NNN.{out,err} and stdout is read into out[cap]. Returns the exit status, or -1. */
static int cli_run(bd_run *r, const char *as, const char *const *args, unsigned timeout_ms,
                   char *out, size_t cap) {
  char addr[32], ca[4200], cert[4200], key[4200], po[4300], pe[4300];
  snprintf(addr, sizeof addr, "127.0.0.1:%u", r->ports[1]);
  snprintf(ca, sizeof ca, "%s/ca.crt", r->pki);
  snprintf(cert, sizeof cert, "%s/%s.crt", r->pki, as);
  snprintf(key, sizeof key, "%s/%s.key", r->pki, as);
  r->ncli++;
  snprintf(po, sizeof po, "%s/cli-%03u.out", r->dir, r->ncli);
  snprintf(pe, sizeof pe, "%s/cli-%03u.err", r->dir, r->ncli);
  const char *argv[48];
  size_t n = 0;
  argv[n++] = r->cli;
  for (size_t k = 0; args[k] && n < 32; k++)
    argv[n++] = args[k];
  const char *conn[] = {"--connect", addr,        "--ca",         ca,  "--cert", cert, "--key",
                        key,         "--timeout", BD_CLI_TIMEOUT, NULL};
  for (size_t k = 0; conn[k]; k++)
    argv[n++] = conn[k];
  argv[n] = NULL;
  int st = bench_proc_run((char *const *)argv, po, pe, timeout_ms);
  if (st < 0 && errno == EINTR)
    r->interrupted = bench_interrupted() ? bench_interrupted() : SIGINT;
  if (out)
    slurp(po, out, cap);
  if (st != 0 && !r->interrupted) {
    char err[600];
    slurp(pe, err, sizeof err);
    err[strcspn(err, "\n")] = '\0';
    char what[200];
    snprintf(what, sizeof what, "tuma %.20s %.20s (status %d, see %.100s)", args[0],
             args[1] ? args[1] : "", st, po);
    fail(r, "%s: %s", what, err);
  }
  return st;
}

static int make_pki(bd_run *r) {
  char logp[4200];
  snprintf(logp, sizeof logp, "%s/pki.log", r->dir);
  char *init[] = {r->cli, "pki", "init", "--dir", r->pki, NULL};
  if (bench_proc_run(init, logp, NULL, BD_CMD_WAIT_MS) != 0)
    return -1;
  const char *roles[][2] = {
      {"admin", "admin"}, {"manager", "programme-manager"}, {"approver", "approver"}};
  for (size_t i = 0; i < 3; i++) {
    char *argv[] = {r->cli,
                    "pki",
                    "issue",
                    "--dir",
                    r->pki,
                    "--name",
                    (char *)roles[i][0],
                    "--role",
                    (char *)roles[i][1],
                    NULL};
    if (bench_proc_run(argv, logp, NULL, BD_CMD_WAIT_MS) != 0)
      return -1;
  }
  for (uint64_t i = 1; i <= r->o->operators; i++) {
    char name[16];
    snprintf(name, sizeof name, "op%" PRIu64, i);
    char *argv[] = {r->cli,   "pki", "issue",  "--dir",    r->pki,
                    "--name", name,  "--role", "operator", NULL};
    if (bench_proc_run(argv, logp, NULL, BD_CMD_WAIT_MS) != 0)
      return -1;
  }
  return 0;
}

static int write_config(bd_run *r, const char *path) {
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  /* the admin listener takes the upload chunks: room for the largest plus its envelope */
  uint64_t frame = r->o->chunk_bytes ? r->o->chunk_bytes + 65536 : 4194304;
  if (frame < 4194304)
    frame = 4194304;
  fprintf(f,
          "; written by tuma-bench disburse\n[switch]\nlisten = 127.0.0.1:%u\n"
          "admin_listen = 127.0.0.1:%u\nmetrics_listen = 127.0.0.1:%u\ndata_dir = %s/data\n"
          "admin_max_frame_bytes = %" PRIu64 "\nlog_level = info\n",
          r->ports[0], r->ports[1], r->ports[2], r->dir, frame);
  fprintf(f, "\n[tls]\nca = %s/ca.crt\ncert = %s/tumad.crt\nkey = %s/tumad.key\n", r->pki, r->pki,
          r->pki);
  for (uint64_t i = 1; i <= r->o->operators; i++)
    fprintf(f,
            "\n[participant op%" PRIu64 "]\nname = Bench payee %" PRIu64
            "\ncurrencies = KES\ninitial_deposit.KES = %llu\nmsisdn_prefixes = 2547%02" PRIu64 "\n",
            i, i, BD_OPSIM_DEPOSIT, i);
  fprintf(f,
          "\n[participant funder]\nname = Bench programme funder\ncurrencies = KES\n"
          "initial_deposit.KES = %llu\n",
          BD_OPSIM_DEPOSIT);
  return fclose(f) == 0 ? 0 : -1;
}

static int start_tumad(bd_run *r) {
  char conf[4200];
  snprintf(conf, sizeof conf, "%s/tumad.ini", r->dir);
  for (int attempt = 1; attempt <= 4; attempt++) {
    if (bench_free_ports(r->ports, 3) != 0 || write_config(r, conf) != 0) {
      fail(r, "writing %s: %s", conf, strerror(errno));
      return -1;
    }
    int tfd = open(r->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (tfd >= 0)
      close(tfd);
    r->log.off = 0;
    r->log.part_len = 0;
    char *argv[] = {r->tumad, "--config", conf, NULL};
    if (bench_proc_spawn(argv, r->log_path, NULL, &r->tumad_pid) != 0) {
      fail(r, "starting %s: %s", r->tumad, strerror(errno));
      return -1;
    }
    int st = 0, exited = 0;
    for (unsigned i = 0; i < BD_READY_WAIT_MS / 20; i++) {
      if ((r->interrupted = bench_interrupted()) != 0)
        break;
      if (bench_file_contains(r->log_path, "event=ready"))
        return 0;
      if (waitpid(r->tumad_pid, &st, WNOHANG) == r->tumad_pid) {
        exited = 1;
        break;
      }
      bench_sleep_ms(20);
    }
    if (!exited) {
      kill(r->tumad_pid, SIGKILL);
      waitpid(r->tumad_pid, &st, 0);
    }
    r->tumad_pid = 0;
    if (r->interrupted)
      return -1;
    if (exited && attempt < 4 && bench_file_contains(r->log_path, "Address already in use"))
      continue;
    fail(r, "tumad did not get ready (log: %s)%s", r->log_path, "");
    return -1;
  }
  return -1;
}

/* Starts the K operators and waits until each logged "ready" (its wallets registered). */
static int start_opsims(bd_run *r) {
  const bd_opts *o = r->o;
  char addr[32];
  snprintf(addr, sizeof addr, "127.0.0.1:%u", r->ports[0]);
  for (unsigned j = 0; j < o->operators; j++) {
    char as[16], data[4200], wallets[24], prefix[16], out[4300], err[4300];
    snprintf(as, sizeof as, "op%u", j + 1);
    snprintf(data, sizeof data, "%s/%s.d", r->dir, as);
    snprintf(wallets, sizeof wallets, "%d", wallet_count(o, j));
    snprintf(prefix, sizeof prefix, "2547%02u", j + 1);
    snprintf(out, sizeof out, "%s/%s.out", r->dir, as);
    snprintf(err, sizeof err, "%s/%s.err", r->dir, as);
    char *argv[] = {r->opsim, "--connect",
                    addr,     "--pki",
                    r->pki,   "--as",
                    as,       "--data",
                    data,     "--wallets",
                    wallets,  "--msisdn-prefix",
                    prefix,   "--initial-balance",
                    "0",      "--log-level",
                    "info",   NULL};
    if (bench_proc_spawn(argv, out, err, &r->opsim_pid[j]) != 0) {
      fail(r, "starting %s: %s", r->opsim, strerror(errno));
      return -1;
    }
  }
  /* Registration runs at some thousands of MSISDNs a second on a shared machine. */
  uint64_t wait_ms = 60000 + o->beneficiaries / 2;
  uint64_t deadline = bench_now_ns() + wait_ms * 1000000u;
  for (unsigned j = 0; j < o->operators; j++) {
    char err[4300];
    snprintf(err, sizeof err, "%s/op%u.err", r->dir, j + 1);
    for (;;) {
      if ((r->interrupted = bench_interrupted()) != 0)
        return -1;
      /* "ready" closes the registration line; earlier lines may hold the word "registered" */
      if (bench_file_contains(err, "wallets") && bench_file_contains(err, ": ready"))
        break;
      int st;
      if (waitpid(r->opsim_pid[j], &st, WNOHANG) == r->opsim_pid[j]) {
        r->opsim_pid[j] = 0;
        fail(r, "a tuma-opsim exited before it was ready (see %s)%s", err, "");
        return -1;
      }
      if (bench_now_ns() > deadline) {
        fail(r, "an operator was not ready in time (see %s)%s", err, "");
        return -1;
      }
      bench_sleep_ms(50);
    }
  }
  return 0;
}

static void stop_opsims(bd_run *r, int *all_ok) {
  *all_ok = 1;
  for (unsigned j = 0; j < r->o->operators; j++) {
    if (r->opsim_pid[j] <= 0)
      continue;
    int st = bench_proc_stop(r->opsim_pid[j], BD_STOP_WAIT_MS);
    r->opsim_pid[j] = 0;
    if (st != 0)
      *all_ok = 0;
  }
}

/* ---------------------------------------------------------------- files */

/* Writes the registry CSV (registry = 1) or the list CSV; the list's sum into *total. */
static int write_file(bd_run *r, const char *path, int registry, uint64_t *total, double *bytes) {
  const bd_opts *o = r->o;
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  static char vbuf[1 << 20];
  setvbuf(f, vbuf, _IOFBF, sizeof vbuf);
  uint64_t sum = 0;
  if (registry)
    fputs("beneficiary_id_type,beneficiary_id,msisdn,operator\n", f);
  else if (o->wallets_from_list)
    fputs("beneficiary_id_type,beneficiary_id,amount,currency,reference,msisdn,operator\n", f);
  else
    fputs("beneficiary_id_type,beneficiary_id,amount,currency,reference\n", f);
  for (uint64_t k = 0; k < o->beneficiaries; k++) {
    char m[16];
    msisdn_of(o, k, m);
    unsigned op = (unsigned)(k % o->operators) + 1;
    if (registry) {
      fprintf(f, "national_id,3%08" PRIu64 ",%s,op%u\n", k, m, op);
      continue;
    }
    uint64_t a = amount_of(k);
    sum += a;
    fprintf(f, "national_id,3%08" PRIu64 ",%" PRIu64 ".%02" PRIu64 ",KES,bench-%" PRIu64, k,
            a / 100, a % 100, k);
    if (o->wallets_from_list)
      fprintf(f, ",%s,op%u", m, op);
    fputc('\n', f);
  }
  long size = ftell(f);
  if (fclose(f) != 0)
    return -1;
  if (total)
    *total = sum;
  if (bytes)
    *bytes = (double)size;
  return 0;
}

/* ---------------------------------------------------------------- reading results */

static int parse_status(const char *out, bd_status *s) {
  memset(s, 0, sizeof *s);
  const char *p = strstr(out, "state ");
  if (!p || sscanf(p + 6, "%31s", s->state) != 1)
    return -1;
  static const char *const names[] = {"pending", "in_flight", "paid", "failed", "cancelled"};
  uint64_t *dst[] = {&s->pending, &s->in_flight, &s->paid, &s->failed, &s->cancelled};
  int ok = 1;
  for (int k = 0; k < 5; k++) {
    char key[32];
    snprintf(key, sizeof key, "\n  %s ", names[k]);
    *dst[k] = num_after(out, key, &ok);
  }
  return ok ? 0 : -1;
}

/* Reads operator j's settled transfers (tuma-opsim history) and adds its committed credits to
 * the per-wallet counts of beneficiaries k ≡ j (mod K). */
static int count_credits(bd_run *r, unsigned j, uint8_t *per_ben, bd_result *res) {
  const bd_opts *o = r->o;
  char data[4200], out[4300], err[4300];
  snprintf(data, sizeof data, "%s/op%u.d", r->dir, j + 1);
  snprintf(out, sizeof out, "%s/op%u-history.jsonl", r->dir, j + 1);
  snprintf(err, sizeof err, "%s/op%u-history.err", r->dir, j + 1);
  unlink(out);
  char *argv[] = {r->opsim, "history", "--data", data, NULL};
  int st = bench_proc_run(argv, out, err, 600000);
  if (st != 0) {
    fail(r, "tuma-opsim history failed (see %s)%s", err, "");
    return -1;
  }
  FILE *f = fopen(out, "r");
  if (!f)
    return -1;
  char line[1024];
  uint64_t max_lines = 4 * o->beneficiaries + 1000;
  for (uint64_t n = 0; n < max_lines && fgets(line, sizeof line, f); n++) {
    if (!strstr(line, "\"kind\":\"credit\"") || !strstr(line, "\"outcome\":\"COMMITTED\""))
      continue;
    int ok = 1;
    uint64_t w = num_after(line, "\"wallet\":", &ok);
    uint64_t a = num_after(line, "\"amount\":", &ok);
    uint64_t k = w * o->operators + j;
    res->credits++;
    res->credited_amount += a;
    if (!ok || k >= o->beneficiaries) {
      res->stray++;
      continue;
    }
    if (per_ben[k] < 255)
      per_ben[k]++;
  }
  fclose(f);
  return 0;
}

/* ---------------------------------------------------------------- output */

static void print_json(const bd_opts *o, const bd_result *x, int ok) {
  struct utsname u;
  char cpu[160];
  cpu_model(cpu, sizeof cpu);
  if (uname(&u) != 0)
    snprintf(u.release, sizeof u.release, "?");
  printf("{\"bench\":\"disburse\",\"beneficiaries\":%" PRIu64 ",\"operators\":%" PRIu64
         ",\"rate\":%" PRIu64 ",\"wallets_from\":\"%s\",\"chunk_bytes\":%" PRIu64
         ",\"validate_only\":%s,\"list_bytes\":%.0f,\"total_minor\":%" PRIu64,
         o->beneficiaries, o->operators, o->rate, o->wallets_from_list ? "list" : "registry",
         o->chunk_bytes, o->validate_only ? "true" : "false", x->list_bytes, x->total);
  printf(",\"batch\":%" PRIu64 ",\"valid\":%" PRIu64 ",\"invalid\":%" PRIu64, x->batch, x->valid,
         x->invalid);
  printf(",\"register_seconds\":");
  if (x->register_seconds >= 0)
    printf("%.3f", x->register_seconds);
  else
    printf("null");
  printf(",\"validate_seconds\":%.3f,\"rows_per_second_validate\":%.0f", x->validate_seconds,
         x->validate_seconds > 0 ? (double)o->beneficiaries / x->validate_seconds : 0.0);
  printf(",\"tumad_validate_seconds\":%.3f", x->log_validate_s);
  if (o->validate_only) {
    printf(",\"execute_seconds\":null,\"paid\":null,\"failed\":null,\"paid_twice\":null"
           ",\"paid_per_second\":null");
  } else {
    printf(",\"execute_seconds\":%.3f,\"paid\":%" PRIu64 ",\"failed\":%" PRIu64
           ",\"paid_twice\":%" PRIu64 ",\"paid_per_second\":%.0f",
           x->execute_seconds, x->paid, x->st.failed, x->paid_twice,
           x->execute_seconds > 0 ? (double)x->paid / x->execute_seconds : 0.0);
    printf(
        ",\"submit_to_paid_seconds\":%.3f,\"tumad_execute_seconds\":%.3f"
        ",\"tumad_approve_to_start_seconds\":%.3f,\"batch_state\":\"%s\",\"status_paid\":%" PRIu64
        ",\"cancelled\":%" PRIu64 ",\"credits\":%" PRIu64 ",\"credited_amount\":%" PRIu64
        ",\"stray_credits\":%" PRIu64 ",\"setup_seconds\":%.3f,\"operators_exit_ok\":%s",
        x->validate_seconds + x->execute_seconds, x->log_execute_s, x->log_start_s, x->st.state,
        x->st.paid, x->st.cancelled, x->credits, x->credited_amount, x->stray, x->setup_seconds,
        x->opsims_exit_ok ? "true" : "false");
    printf(",\"tumad_cpu_execute_s\":%.2f,\"opsim_cpu_execute_s\":%.2f"
           ",\"cpu_other_pct_execute\":%.0f,\"tumad_written_mb_execute\":%.1f"
           ",\"opsim_written_mb_execute\":%.1f",
           x->tumad_cpu_execute_s, x->opsim_cpu_execute_s, x->other_pct_execute,
           x->tumad_wbytes_execute / 1e6, x->opsim_wbytes_execute / 1e6);
  }
  printf(",\"tumad_cpu_validate_s\":%.2f,\"tumad_written_mb_validate\":%.1f"
         ",\"cpu_other_pct_validate\":%.0f,\"tumad_exit\":%d",
         x->tumad_cpu_validate_s, x->tumad_wbytes_validate / 1e6, x->other_pct_validate,
         x->tumad_exit);
  printf(",\"nproc\":%ld,\"cpu\":", sysconf(_SC_NPROCESSORS_ONLN));
  bench_json_str(stdout, cpu);
  printf(",\"kernel\":");
  bench_json_str(stdout, u.release);
  printf(",\"loadavg_start\":\"%s\",\"loadavg_end\":\"%s\",\"ok\":%s}\n", x->load_start,
         x->load_end, ok ? "true" : "false");
}

static void print_secs(const char *label, double bench_s, double tumad_s, const char *rate_label,
                       double rate) {
  printf("  %-16s %9.3f s", label, bench_s);
  if (tumad_s >= 0)
    printf("   (tumad's log: %.3f s)", tumad_s);
  if (rate_label)
    printf("   %.0f %s", rate, rate_label);
  printf("\n");
}

static void print_table(const bd_opts *o, const bd_result *x, int ok) {
  char cpu[160];
  cpu_model(cpu, sizeof cpu);
  char rate[48];
  if (o->rate)
    snprintf(rate, sizeof rate, "%" PRIu64 "/s", o->rate);
  else
    snprintf(rate, sizeof rate, "the switch's default");
  printf("tuma-bench disburse: %" PRIu64 " beneficiaries on %" PRIu64
         " operators, wallets from the %s, rate %s%s\n",
         o->beneficiaries, o->operators, o->wallets_from_list ? "list rows" : "registry", rate,
         o->validate_only ? ", validate only" : "");
  printf("  machine          %ld cores (%s); load %s at the start, %s at the end\n",
         sysconf(_SC_NPROCESSORS_ONLN), cpu, x->load_start, x->load_end);
  printf("  list             %.1f MB, total %" PRIu64 ".%02" PRIu64 " KES; batch %" PRIu64
         ": %" PRIu64 " valid, %" PRIu64 " invalid\n",
         x->list_bytes / 1e6, x->total / 100, x->total % 100, x->batch, x->valid, x->invalid);
  if (!o->validate_only)
    printf("  operators ready  %9.3f s (wallets created and registered; not measured)\n",
           x->setup_seconds);
  if (x->register_seconds >= 0)
    print_secs("registry upload", x->register_seconds, -1, "rows/s",
               (double)o->beneficiaries / x->register_seconds);
  print_secs("validate", x->validate_seconds, x->log_validate_s, "rows/s",
             x->validate_seconds > 0 ? (double)o->beneficiaries / x->validate_seconds : 0);
  printf("  %-16s tumad %.2f s CPU, wrote %.1f MB; others %.0f%% of a core\n", "",
         x->tumad_cpu_validate_s, x->tumad_wbytes_validate / 1e6, x->other_pct_validate);
  if (!o->validate_only) {
    print_secs("execute", x->execute_seconds, x->log_execute_s, "paid/s",
               x->execute_seconds > 0 ? (double)x->paid / x->execute_seconds : 0);
    printf("  %-16s approval to the first payment %.3f s (tumad's log)\n", "", x->log_start_s);
    printf("  %-16s tumad %.2f s CPU (%.0f us a payment), wrote %.1f MB (%.1f KB a payment);"
           " operators %.2f s CPU, wrote %.1f MB; others %.0f%% of a core\n",
           "", x->tumad_cpu_execute_s, 1e6 * x->tumad_cpu_execute_s / (double)o->beneficiaries,
           x->tumad_wbytes_execute / 1e6, x->tumad_wbytes_execute / 1e3 / (double)o->beneficiaries,
           x->opsim_cpu_execute_s, x->opsim_wbytes_execute / 1e6, x->other_pct_execute);
    printf("  submit to paid   %9.3f s\n", x->validate_seconds + x->execute_seconds);
    printf("  batch            state %s: paid %" PRIu64 ", failed %" PRIu64 ", cancelled %" PRIu64
           ", pending %" PRIu64 ", in flight %" PRIu64 "\n",
           x->st.state, x->st.paid, x->st.failed, x->st.cancelled, x->st.pending, x->st.in_flight);
    printf("  wallets          paid %" PRIu64 ", paid twice %" PRIu64 "; %" PRIu64
           " credits, %" PRIu64 ".%02" PRIu64 " KES (list total %" PRIu64 ".%02" PRIu64
           "); stray %" PRIu64 "\n",
           x->paid, x->paid_twice, x->credits, x->credited_amount / 100, x->credited_amount % 100,
           x->total / 100, x->total % 100, x->stray);
  }
  printf("  result           %s\n", ok ? "ok" : "FAILED");
}

/* ---------------------------------------------------------------- the run */

/* Machine CPU, this process, its reaped children, tumad and the operators, at one moment; and
 * the bytes tumad and the operators caused to be written to storage (/proc/PID/io). */
typedef struct bd_cpu {
  bench_cpu m;
  double children, tumad, opsims;
  double tumad_wbytes, opsims_wbytes;
} bd_cpu;

/* write_bytes of /proc/PID/io (what the process caused to be sent to storage); 0 if unknown. */
static double proc_write_bytes(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/io", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  const char *p = strstr(buf, "\nwrite_bytes: ");
  return p ? strtod(p + 14, NULL) : 0;
}

static void bd_cpu_sample(const bd_run *r, bd_cpu *c) {
  bench_cpu_sample(&c->m);
  c->children = children_cpu_s();
  c->tumad = r->tumad_pid > 0 ? bench_proc_cpu_s(r->tumad_pid) : 0;
  c->tumad_wbytes = r->tumad_pid > 0 ? proc_write_bytes(r->tumad_pid) : 0;
  c->opsims = c->opsims_wbytes = 0;
  for (unsigned j = 0; j < r->o->operators; j++)
    if (r->opsim_pid[j] > 0) {
      double s = bench_proc_cpu_s(r->opsim_pid[j]);
      c->opsims += s > 0 ? s : 0;
      c->opsims_wbytes += proc_write_bytes(r->opsim_pid[j]);
    }
}

/* Everything but this run's processes, in % of one core, between a and b; -1 unknown. */
static double other_pct(const bd_cpu *a, const bd_cpu *b) {
  double wall = (double)(b->m.wall_ns - a->m.wall_ns) / 1e9;
  if (!a->m.machine_ok || !b->m.machine_ok || wall <= 0)
    return -1;
  double ours = bench_cpu_self_s(&a->m, &b->m) + (b->children - a->children) +
                (b->tumad - a->tumad) + (b->opsims - a->opsims);
  double other = (b->m.machine_s - a->m.machine_s) - ours;
  return other < 0 ? 0 : 100.0 * other / wall;
}

static int wait_completed(bd_run *r, uint64_t deadline_ns) {
  for (uint64_t i = 0;; i++) {
    log_follow(r);
    if (r->log.cycle_finished_ms)
      return 0;
    if ((r->interrupted = bench_interrupted()) != 0)
      return -1;
    int st;
    if (i % 50 == 0 && waitpid(r->tumad_pid, &st, WNOHANG) == r->tumad_pid) {
      r->tumad_pid = 0;
      fail(r, "tumad exited during the run (log: %s)%s", r->log_path, "");
      return -1;
    }
    if (bench_now_ns() > deadline_ns) {
      fail(r, "the batch was not completed in time (log: %s)%s", r->log_path, "");
      return -1;
    }
    bench_sleep_ms(20);
  }
}

int bench_disburse_main(int argc, char **argv) {
  bd_opts o = {.operators = 2};
  int prc = disburse_parse(argc, argv, &o);
  if (prc < 0)
    return BENCH_EXIT_OK;
  if (prc != BENCH_EXIT_OK)
    return prc;

  bd_run *r = calloc(1, sizeof *r);
  bd_result x;
  memset(&x, 0, sizeof x);
  x.register_seconds = x.execute_seconds = -1;
  x.log_validate_s = x.log_execute_s = x.log_start_s = -1;
  x.other_pct_validate = x.other_pct_execute = -1;
  x.tumad_exit = -1;
  uint8_t *per_ben = NULL;
  static char out[1 << 16];
  int status = BENCH_EXIT_FAIL;
  if (!r) {
    fprintf(stderr, "tuma-bench disburse: out of memory\n");
    return BENCH_EXIT_FAIL;
  }
  r->o = &o;
  loadavg(x.load_start, sizeof x.load_start);
  const char *base = bench_scratch_base(o.tmpdir);
  r->cli = bench_proc_find("TUMA_CLI", "cli/tuma");
  r->tumad = bench_proc_find("TUMAD", "switch/tumad");
  r->opsim = bench_proc_find("TUMA_OPSIM", "adapters/opsim/tuma-opsim");
  if (!r->cli || !r->tumad || !r->opsim || access(r->cli, X_OK) || access(r->tumad, X_OK) ||
      access(r->opsim, X_OK)) {
    fprintf(stderr,
            "tuma-bench disburse: cannot find tuma, tumad and tuma-opsim (%s, %s, %s); build "
            "them or set TUMA_CLI, TUMAD and TUMA_OPSIM\n",
            r->cli ? r->cli : "?", r->tumad ? r->tumad : "?", r->opsim ? r->opsim : "?");
    goto out;
  }
  if (bench_scratch_create(base, "disburse", &r->dir) != 0) {
    fprintf(stderr, "tuma-bench disburse: cannot create a directory in %s: %s\n", base,
            strerror(errno));
    goto out;
  }
  if (strlen(r->dir) > 200) {
    fail(r, "%s: too long a path%s", r->dir, "");
    goto out;
  }
  snprintf(r->pki, sizeof r->pki, "%s/pki", r->dir);
  snprintf(r->log_path, sizeof r->log_path, "%s/tumad.log", r->dir);
  if (make_pki(r) != 0) {
    fail(r, "tuma pki failed (log: %s/pki.log)%s", r->dir, "");
    goto out;
  }
  if (start_tumad(r) != 0)
    goto out;

  /* The files first (not timed): the list's total funds the programme. */
  char reg_path[4200], list_path[4200];
  snprintf(reg_path, sizeof reg_path, "%s/registry.csv", r->dir);
  snprintf(list_path, sizeof list_path, "%s/list.csv", r->dir);
  if ((!o.wallets_from_list && write_file(r, reg_path, 1, NULL, NULL) != 0) ||
      write_file(r, list_path, 0, &x.total, &x.list_bytes) != 0) {
    fail(r, "writing the CSV files: %s%s", strerror(errno), "");
    goto out;
  }
  if (!o.validate_only) {
    uint64_t t0 = bench_now_ns();
    if (start_opsims(r) != 0)
      goto out;
    x.setup_seconds = (double)(bench_now_ns() - t0) / 1e9;
  }
  char total[32];
  major(x.total, total);
  {
    const char *create[] = {"disburse", "programme",  "create", "--id",      "bench",  "--name",
                            "Bench",    "--currency", "KES",    "--funding", "funder", NULL};
    const char *fund[] = {"disburse", "programme", "fund", "--programme",
                          "bench",    "--amount",  total,  NULL};
    if (cli_run(r, "admin", create, BD_CMD_WAIT_MS, NULL, 0) != 0 ||
        cli_run(r, "admin", fund, BD_CMD_WAIT_MS, NULL, 0) != 0)
      goto out;
  }
  char chunk[24];
  snprintf(chunk, sizeof chunk, "%" PRIu64, o.chunk_bytes);
  unsigned long long big_wait = BD_CMD_WAIT_MS + o.beneficiaries / 2; /* 2,000 rows/s at worst */
  if (big_wait > 3600000)
    big_wait = 3600000;
  if (!o.wallets_from_list) {
    const char *up[] = {"disburse", "beneficiary", "upload",
                        "--file",   reg_path,      o.chunk_bytes ? "--chunk-bytes" : NULL,
                        chunk,      NULL};
    uint64_t t0 = bench_now_ns();
    if (cli_run(r, "manager", up, (unsigned)big_wait, out, sizeof out) != 0)
      goto out;
    x.register_seconds = (double)(bench_now_ns() - t0) / 1e9;
    char want[64];
    snprintf(want, sizeof want, "registered %" PRIu64 ", refused 0", o.beneficiaries);
    if (!strstr(out, want)) {
      fail(r, "the registry upload did not take every row: %.200s%s", out, "");
      goto out;
    }
  }

  /* Validation: the submit command, start to finish. */
  char count[24], rate[24];
  snprintf(count, sizeof count, "%" PRIu64, o.beneficiaries);
  snprintf(rate, sizeof rate, "%" PRIu64, o.rate);
  const char *submit[24] = {"disburse",       "submit", "--programme",    "bench",
                            "--cycle",        "1",      "--file",         list_path,
                            "--expect-count", count,    "--expect-total", total};
  size_t ns = 12;
  if (o.rate) {
    submit[ns++] = "--rate";
    submit[ns++] = rate;
  }
  if (o.chunk_bytes) {
    submit[ns++] = "--chunk-bytes";
    submit[ns++] = chunk;
  }
  submit[ns] = NULL;
  log_follow(r);
  bd_cpu c0, c1, c2, c3;
  bd_cpu_sample(r, &c0);
  uint64_t t_submit = bench_now_ns();
  int st = cli_run(r, "manager", submit, (unsigned)big_wait, out, sizeof out);
  uint64_t t_result = bench_now_ns();
  bd_cpu_sample(r, &c1);
  x.validate_seconds = (double)(t_result - t_submit) / 1e9;
  x.tumad_cpu_validate_s = c1.tumad - c0.tumad;
  x.tumad_wbytes_validate = c1.tumad_wbytes - c0.tumad_wbytes;
  x.other_pct_validate = other_pct(&c0, &c1);
  if (st != 0)
    goto out;
  int ok = 1;
  x.batch = num_after(out, "batch ", &ok);
  x.valid = num_after(out, "submitted: ", &ok);
  x.invalid = num_after(out, "; ", &ok);
  if (!ok || x.valid != o.beneficiaries || x.invalid != 0) {
    fail(r, "unexpected submit result: %.200s%s", out, "");
    goto out;
  }
  log_follow(r);
  x.log_validate_s = ms_between(r->log.upload_started_ms, r->log.submitted_ms);

  if (!o.validate_only) {
    char batch[24];
    snprintf(batch, sizeof batch, "%" PRIu64, x.batch);
    const char *approve[] = {"disburse", "approve", batch, NULL};
    bd_cpu_sample(r, &c2);
    uint64_t t_approve = bench_now_ns();
    if (cli_run(r, "approver", approve, BD_CMD_WAIT_MS, NULL, 0) != 0)
      goto out;
    uint64_t eff_rate = o.rate ? o.rate : 5000;
    uint64_t exec_wait_s = 120 + 20 * o.beneficiaries / eff_rate;
    if (exec_wait_s > 7200)
      exec_wait_s = 7200;
    if (wait_completed(r, t_approve + exec_wait_s * 1000000000u) != 0)
      goto out;
    uint64_t t_done = bench_now_ns();
    bd_cpu_sample(r, &c3);
    x.execute_seconds = (double)(t_done - t_approve) / 1e9;
    x.tumad_cpu_execute_s = c3.tumad - c2.tumad;
    x.opsim_cpu_execute_s = c3.opsims - c2.opsims;
    x.tumad_wbytes_execute = c3.tumad_wbytes - c2.tumad_wbytes;
    x.opsim_wbytes_execute = c3.opsims_wbytes - c2.opsims_wbytes;
    x.other_pct_execute = other_pct(&c2, &c3);
    x.log_execute_s = ms_between(r->log.approved_ms, r->log.cycle_finished_ms);
    x.log_start_s = ms_between(r->log.approved_ms, r->log.cycle_started_ms);
    /* The batch's own word: completed, with its counts (its state is saved with the log). */
    const char *stq[] = {"disburse", "status", batch, NULL};
    for (int tries = 0; tries < 50; tries++) {
      if (cli_run(r, "manager", stq, BD_CMD_WAIT_MS, out, sizeof out) != 0)
        goto out;
      if (parse_status(out, &x.st) != 0) {
        fail(r, "cannot read the status: %.200s%s", out, "");
        goto out;
      }
      if (strcmp(x.st.state, "running") != 0)
        break;
      bench_sleep_ms(100);
    }
    stop_opsims(r, &x.opsims_exit_ok);
    per_ben = calloc((size_t)o.beneficiaries, 1);
    if (!per_ben) {
      fail(r, "out of memory%s%s", "", "");
      goto out;
    }
    for (unsigned j = 0; j < o.operators; j++)
      if (count_credits(r, j, per_ben, &x) != 0)
        goto out;
    for (uint64_t k = 0; k < o.beneficiaries; k++) {
      x.paid += per_ben[k] >= 1;
      x.paid_twice += per_ben[k] >= 2;
    }
  }
  x.tumad_exit = bench_proc_stop(r->tumad_pid, BD_STOP_WAIT_MS);
  r->tumad_pid = 0;
  loadavg(x.load_end, sizeof x.load_end);
  int good = x.tumad_exit == 0;
  if (!o.validate_only)
    good = good && strcmp(x.st.state, "completed") == 0 && x.paid == o.beneficiaries &&
           x.paid_twice == 0 && x.st.failed == 0 && x.stray == 0 && x.st.paid == o.beneficiaries &&
           x.credited_amount == x.total && x.opsims_exit_ok;
  if (o.json)
    print_json(&o, &x, good);
  else
    print_table(&o, &x, good);
  status = good ? BENCH_EXIT_OK : BENCH_EXIT_FAIL;

out:
  fflush(stdout);
  if (r->failure[0])
    fprintf(stderr, "tuma-bench disburse: %s\n", r->failure);
  {
    int ignored;
    stop_opsims(r, &ignored);
  }
  if (r->tumad_pid > 0) {
    int s = bench_proc_stop(r->tumad_pid, BD_STOP_WAIT_MS);
    if (s != 0)
      fprintf(stderr, "tuma-bench disburse: tumad exited with status %d\n", s);
  }
  if (r->interrupted) {
    fprintf(stderr, "tuma-bench disburse: interrupted (signal %d)\n", r->interrupted);
    status = 128 + r->interrupted;
  }
  if (r->dir) {
    if (o.keep || (status != BENCH_EXIT_OK && status < 128)) {
      fprintf(stderr, "tuma-bench disburse: kept %s\n", r->dir);
    } else if (bench_scratch_remove(r->dir) != 0) {
      fprintf(stderr, "tuma-bench disburse: removing %s: %s\n", r->dir, strerror(errno));
      status = BENCH_EXIT_FAIL;
    }
  }
  free(per_ben);
  free(r->dir);
  free(r->cli);
  free(r->tumad);
  free(r->opsim);
  free(r);
  return status;
}
