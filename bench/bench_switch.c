/* bench_switch.c — `tuma-bench switch`: the switch end to end (DESIGN §6, third row): two-phase
 * transfers over mTLS, payer → tumad → payee → tumad, with a durable ledger.
 *
 * By default it builds everything in a scratch directory: a scheme PKI (`tuma pki init` and one
 * `tuma pki issue --role operator` per operator, with the `tuma` binary found next to
 * tuma-bench in the build tree or named by $TUMA_CLI), a tumad.ini with K operators op1..opK
 * (KES, a large initial deposit, unlimited net debit cap), then it starts tumad ($TUMAD, or the
 * build tree's) with its default, durable settings and waits for its "event=ready" log line.
 * With --connect HOST:PORT it uses a switch that is already running and the certificates in
 * --pki DIR (ca.crt, op1.crt/op1.key … opK.crt/opK.key).
 *
 * Load: every operator opens N connections (adp_client, libtuma-client) and is payer to the
 * others (payee by participant id, round robin or random) and payee for them: each forward is
 * fulfilled COMMITTED on the connection it came on, --payee-latency-ms after it arrived (0: at
 * once, from the forward's callback). --max is a closed loop: each connection keeps --window
 * prepares outstanding. --rate R is an open loop: prepare i is due at start + i/R and its
 * latency is measured from that due time, so time spent waiting because every connection
 * answered ADP_E_AGAIN (or because the load generator was late) is included; such waits are
 * counted in `again`. Connections are spread over --threads event loops (one event_base and
 * thread each); the bench process's CPU is reported so that a saturated load generator shows.
 *
 * Phases: connect every client, warm up (--warmup, default 2 s: sent, not measured), measure
 * (--duration): a transfer belongs to the window when its prepare was sent (due, for --rate)
 * inside it; its latency runs from then to its TransferResult. Then no new prepares, and the
 * bench waits for every outstanding one (drain). `transfers` = COMMITTED results of the window,
 * `aborted` = ABORTED or EXPIRED results, `errors` = requests that got no result (refused by
 * the switch, disconnected, timed out, or not accepted by the client library) and failed
 * fulfils; aborted and errors are counted over the whole run.
 *
 * With its own tumad, at the end: /metrics is read (committed count, ledger batches), tumad
 * is stopped with SIGTERM and must exit 0, and the ledger is opened read-only
 * (DATA_DIR/ledger): the invariants must hold (ledger_totals_of), nothing may stay reserved,
 * and the posted payments (POST_PENDING transfers on the operators' LIQUIDITY accounts) and
 * their amounts must equal what the bench saw committed over the whole run → `ledger_ok`.
 */
#include "bench.h"

#include "ledger.h"
#include "tuma_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int bench_switch_main(int argc, char **argv);

static const char *const switch_cmd = "switch";

/* How tumad lays out a participant's LIQUIDITY account (switch/accounts.h): hi = participant
 * number, lo = ledger << 16 | code; KES is ledger 404; payments carry code 1. */
enum {
  SB_LEDGER_KES = 404,
  SB_ACCOUNT_LIQUIDITY = 1,
  SB_CODE_PAYMENT = 1,
};

#define SB_DEPOSIT 1000000000000000ull /* minor units per operator: never the limit */
#define SB_TICK_MS 5
#define SB_CONNECT_WAIT_S 20
#define SB_READY_WAIT_S 30
#define SB_DRAIN_WAIT_S 40 /* the library's default expiry (30 s) and then some */
#define SB_STOP_WAIT_S 60

/* ---------------------------------------------------------------- options */

typedef struct sb_opts {
  uint64_t duration_s;
  uint64_t warmup_s;
  uint64_t rate; /* 0 = --max */
  uint64_t window;
  uint64_t connections;
  uint64_t operators;
  uint64_t threads;
  uint64_t payee_latency_ms;
  uint64_t amount_max;
  uint64_t max_outstanding; /* --rate: per client */
  uint64_t seed;
  uint64_t tumad_pid; /* --connect: whose CPU to report; 0 = none */
  int payee_random;
  int json;
  int keep;
  const char *connect; /* HOST:PORT or NULL */
  const char *pki;
  const char *tmpdir;
} sb_opts;

static void switch_usage(FILE *out) {
  fprintf(out,
          "usage: tuma-bench switch [--duration S] [--warmup S] (--max [--window W] | --rate R)\n"
          "                         [--connections N] [--operators K] [--threads T]\n"
          "                         [--payee-latency-ms L] [--amount-max A] [--payee rr|random]\n"
          "                         [--connect HOST:PORT --pki DIR [--tumad-pid P]]\n"
          "                         [--tmpdir DIR] [--keep] [--seed N] [--json]\n"
          "  --duration S          measured seconds (default 10)\n"
          "  --warmup S            seconds of load before the measurement (default 2)\n"
          "  --max                 closed loop: W prepares outstanding per connection (default)\n"
          "  --window W            with --max, 1..65536 (default 256)\n"
          "  --rate R              open loop: R prepares per second in total; latency from the\n"
          "                        moment each was due (waits on ADP_E_AGAIN included)\n"
          "  --max-outstanding M   with --rate, the client library's limit per connection\n"
          "                        (default 1024)\n"
          "  --connections N       connections per operator (default 4)\n"
          "  --operators K         operators op1..opK, K >= 2 (default 2)\n"
          "  --threads T           event-loop threads for the connections (default 1)\n"
          "  --payee-latency-ms L  payees fulfil L ms after the forward (default 0: at once)\n"
          "  --amount-max A        amounts uniform in 1..A minor units (default 10000)\n"
          "  --payee rr|random     payee of each transfer: round robin (default) or random\n"
          "  --connect HOST:PORT   use a running tumad (operators op1..opK must exist) ...\n"
          "  --pki DIR             ... with DIR/ca.crt and DIR/opI.crt, DIR/opI.key\n"
          "  --tumad-pid P         with --connect: report this process's CPU as tumad's\n"
          "  --tmpdir DIR          folder for the scratch directory (default $TMPDIR or /tmp)\n"
          "  --keep                keep the scratch directory (PKI, tumad.ini, tumad.log, data)\n"
          "  --seed N              PRNG seed (default 1)\n"
          "  --json                one JSON object on stdout instead of the table\n"
          "environment: TUMA_CLI (the tuma binary), TUMAD (the tumad binary); default: next to\n"
          "             tuma-bench in the build tree (../cli/tuma, ../switch/tumad)\n");
}

/* Parses argv into *o. Returns BENCH_EXIT_OK, BENCH_EXIT_USAGE after an error message, or -1
 * when help was asked for (printed). */
static int switch_parse(int argc, char **argv, sb_opts *o) {
  int max_set = 0, rate_set = 0, window_set = 0, mo_set = 0;
  for (int i = 1; i < argc; i++) {
    const char *v = NULL;
    const char *a = argv[i];
    int m;
    uint64_t *num = NULL;
    uint64_t lo = 0, hi = 0;
    const char *name = NULL;
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      switch_usage(stdout);
      return -1;
    } else if (strcmp(a, "--json") == 0) {
      o->json = 1;
    } else if (strcmp(a, "--keep") == 0) {
      o->keep = 1;
    } else if (strcmp(a, "--max") == 0) {
      max_set = 1;
    } else if ((m = bench_opt(argc, argv, &i, switch_cmd, "--payee", &v)) != 0) {
      if (m < 0)
        return BENCH_EXIT_USAGE;
      if (strcmp(v, "rr") == 0) {
        o->payee_random = 0;
      } else if (strcmp(v, "random") == 0) {
        o->payee_random = 1;
      } else {
        fprintf(stderr, "tuma-bench switch: --payee: '%s' is neither 'rr' nor 'random'\n", v);
        return BENCH_EXIT_USAGE;
      }
    } else if ((m = bench_opt(argc, argv, &i, switch_cmd, "--connect", &v)) != 0) {
      if (m < 0)
        return BENCH_EXIT_USAGE;
      o->connect = v;
    } else if ((m = bench_opt(argc, argv, &i, switch_cmd, "--pki", &v)) != 0) {
      if (m < 0)
        return BENCH_EXIT_USAGE;
      o->pki = v;
    } else if ((m = bench_opt(argc, argv, &i, switch_cmd, "--tmpdir", &v)) != 0) {
      if (m < 0)
        return BENCH_EXIT_USAGE;
      o->tmpdir = v;
    } else if ((m = bench_opt(argc, argv, &i, switch_cmd, "--duration", &v)) != 0) {
      name = "--duration", num = &o->duration_s, lo = 1, hi = 86400;
    } else if ((m = bench_opt(argc, argv, &i, switch_cmd, "--warmup", &v)) != 0) {
      name = "--warmup", num = &o->warmup_s, lo = 0, hi = 3600;
    } else if ((m = bench_opt(argc, argv, &i, switch_cmd, "--rate", &v)) != 0) {
      name = "--rate", num = &o->rate, lo = 1, hi = 10000000;
      rate_set = 1;
    } else if ((m = bench_opt(argc, argv, &i, switch_cmd, "--window", &v)) != 0) {
      name = "--window", num = &o->window, lo = 1, hi = 65536;
      window_set = 1;
    } else if ((m = bench_opt(argc, argv, &i, switch_cmd, "--max-outstanding", &v)) != 0) {
      name = "--max-outstanding", num = &o->max_outstanding, lo = 1, hi = 65536;
      mo_set = 1;
    } else if ((m = bench_opt(argc, argv, &i, switch_cmd, "--connections", &v)) != 0) {
      name = "--connections", num = &o->connections, lo = 1, hi = 4096;
    } else if ((m = bench_opt(argc, argv, &i, switch_cmd, "--operators", &v)) != 0) {
      name = "--operators", num = &o->operators, lo = 2, hi = 256;
    } else if ((m = bench_opt(argc, argv, &i, switch_cmd, "--threads", &v)) != 0) {
      name = "--threads", num = &o->threads, lo = 1, hi = 256;
    } else if ((m = bench_opt(argc, argv, &i, switch_cmd, "--payee-latency-ms", &v)) != 0) {
      name = "--payee-latency-ms", num = &o->payee_latency_ms, lo = 0, hi = 20000;
    } else if ((m = bench_opt(argc, argv, &i, switch_cmd, "--amount-max", &v)) != 0) {
      name = "--amount-max", num = &o->amount_max, lo = 1, hi = 1000000000;
    } else if ((m = bench_opt(argc, argv, &i, switch_cmd, "--seed", &v)) != 0) {
      name = "--seed", num = &o->seed, lo = 0, hi = UINT64_MAX;
    } else if ((m = bench_opt(argc, argv, &i, switch_cmd, "--tumad-pid", &v)) != 0) {
      name = "--tumad-pid", num = &o->tumad_pid, lo = 1, hi = INT32_MAX;
    } else {
      fprintf(stderr, "tuma-bench switch: unknown option '%s'\n", a);
      switch_usage(stderr);
      return BENCH_EXIT_USAGE;
    }
    if (num && (m < 0 || bench_parse_u64(switch_cmd, name, v, lo, hi, num) != 0))
      return BENCH_EXIT_USAGE;
  }
  if (max_set && rate_set) {
    fprintf(stderr, "tuma-bench switch: --max and --rate exclude each other\n");
    return BENCH_EXIT_USAGE;
  }
  if (rate_set && window_set) {
    fprintf(stderr, "tuma-bench switch: --window goes with --max (for --rate: "
                    "--max-outstanding)\n");
    return BENCH_EXIT_USAGE;
  }
  if (!rate_set && mo_set) {
    fprintf(stderr, "tuma-bench switch: --max-outstanding goes with --rate (for --max: "
                    "--window)\n");
    return BENCH_EXIT_USAGE;
  }
  if ((o->connect != NULL) != (o->pki != NULL)) {
    fprintf(stderr, "tuma-bench switch: --connect and --pki go together\n");
    return BENCH_EXIT_USAGE;
  }
  if (o->tumad_pid && !o->connect) {
    fprintf(stderr, "tuma-bench switch: --tumad-pid goes with --connect\n");
    return BENCH_EXIT_USAGE;
  }
  if (o->operators * o->connections > 65536) {
    fprintf(stderr, "tuma-bench switch: --operators x --connections is at most 65536\n");
    return BENCH_EXIT_USAGE;
  }
  if (o->threads > o->operators * o->connections)
    o->threads = o->operators * o->connections;
  return BENCH_EXIT_OK;
}

/* ---------------------------------------------------------------- load generator state */

typedef struct sb_shared sb_shared;
typedef struct sb_thread sb_thread;
typedef struct sb_conn sb_conn;

/* One outstanding prepare (a slot of its connection's pool; the callback's arg). */
typedef struct sb_slot {
  sb_conn *conn;
  uint64_t start_ns; /* sent, or due (--rate) */
  uint64_t amount;
  struct sb_slot *next_free;
} sb_slot;

/* A forward waiting for its fulfil. */
typedef struct sb_fwd {
  uint8_t id[ADP_ID_LEN];
  uint64_t due_ns;
} sb_fwd;

struct sb_conn {
  sb_thread *th;
  adp_client *client;
  uint32_t op; /* 0-based: participant "op<op+1>" */
  uint32_t next_payee;
  int connected, ever_connected;
  uint32_t outstanding; /* prepares */
  sb_slot *slots, *free_slots;
  sb_fwd *fq; /* ring of forwards to fulfil, in arrival (= due) order */
  size_t fq_head, fq_len, fq_cap;
  struct event *fulfil_timer;
  char last_reason[160];
};

/* Counters of one thread (summed at the end). */
typedef struct sb_counts {
  uint64_t sent;
  uint64_t committed; /* whole run */
  uint64_t committed_amount;
  uint64_t committed_window; /* started inside the measured window */
  uint64_t aborted, expired;
  uint64_t refused, disconnected, timeouts, closed, other, not_sent;
  uint64_t again;
  uint64_t forwards, fulfils, fulfil_errors, notifications, disconnects;
  uint64_t late_ns_max; /* --rate, measured window: the most a prepare was sent after its due
                           time (ADP_E_AGAIN, or the load generator's own lateness) */
  uint64_t late_1ms;    /* --rate, measured window: prepares sent more than 1 ms late */
} sb_counts;

struct sb_thread {
  sb_shared *sh;
  unsigned index;
  pthread_t tid;
  int started_thread;
  struct event_base *base;
  struct event *tick, *rate_timer;
  sb_conn **conns;
  size_t n;
  size_t rr;
  bench_rng rng;
  uint64_t id_seq;
  int running; /* saw `go` */
  int quitting;
  /* --rate */
  double interval_ns,
      phase_ns; /* prepare i of this thread is due at t_start + phase + i*interval */
  uint64_t next_idx, end_idx, last_again_idx;
  int rate_timer_armed;
  bench_samples lat;
  sb_counts c;
  int oom;
};

struct sb_shared {
  const sb_opts *o;
  char (*names)[24]; /* "op1" … */
  atomic_int go, quit;
  atomic_uint connected;
  atomic_llong outstanding;        /* prepares */
  atomic_llong fulfilling;         /* fulfils sent, confirmation not yet received */
  uint64_t t_start, t_meas, t_end; /* monotonic ns; written before go (release) */
  sb_thread *threads;
  sb_conn *conns;
  size_t nconns;
};

static void prepare_done_cb(adp_client *client, int status, const adp_transfer_result *r,
                            void *arg);
static void fulfil_done_cb(adp_client *client, int status, const adp_transfer_result *r, void *arg);
static void forward_cb(adp_client *client, const adp_forward *fw, void *arg);
static void notify_cb(adp_client *client, const adp_transfer_result *r, void *arg);
static void state_cb(adp_client *client, const adp_state_event *ev, void *arg);
static void tick_cb(evutil_socket_t fd, short what, void *arg);
static void rate_cb(evutil_socket_t fd, short what, void *arg);
static void fulfil_timer_cb(evutil_socket_t fd, short what, void *arg);

static struct timeval ns_tv(uint64_t ns) {
  struct timeval tv = {(time_t)(ns / 1000000000u), (suseconds_t)(ns % 1000000000u / 1000u)};
  return tv;
}

/* Sends one prepare on c, started (or due) at start_ns. Returns 0 or an adp_error. */
static int issue(sb_conn *c, uint64_t start_ns) {
  sb_thread *th = c->th;
  const sb_opts *o = th->sh->o;
  if (!c->connected)
    return ADP_E_NOT_CONNECTED;
  sb_slot *s = c->free_slots;
  if (!s)
    return ADP_E_AGAIN;
  uint32_t k = (uint32_t)o->operators;
  uint32_t payee;
  if (o->payee_random) {
    payee = (uint32_t)bench_rng_below(&th->rng, k - 1);
  } else {
    payee = c->next_payee;
    c->next_payee = (c->next_payee + 1) % (k - 1);
  }
  if (payee >= c->op)
    payee++; /* the others: 0..k-1 without c->op */
  /* A UUIDv7 of our own (ms, version, 12-bit sequence, variant, 62 random bits): what the
   * library would make, without its RAND_bytes() per id in the load generator's profile. */
  uint8_t id[ADP_ID_LEN];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
  uint64_t hi = ms << 16 | 0x7000u | (th->id_seq++ & 0xfffu);
  uint64_t lo = (bench_rng_next(&th->rng) & 0x3fffffffffffffffu) | 0x8000000000000000u;
  for (int b = 0; b < 8; b++) {
    id[b] = (uint8_t)(hi >> (56 - 8 * b));
    id[8 + b] = (uint8_t)(lo >> (56 - 8 * b));
  }
  adp_prepare p;
  memset(&p, 0, sizeof p);
  p.transfer_id = id;
  p.payee_participant = th->sh->names[payee];
  p.currency = "KES";
  p.amount = 1 + bench_rng_below(&th->rng, o->amount_max);
  int rc = adp_client_prepare(c->client, &p, NULL, prepare_done_cb, s);
  if (rc != ADP_OK)
    return rc;
  c->free_slots = s->next_free;
  s->start_ns = start_ns;
  s->amount = p.amount;
  c->outstanding++;
  atomic_fetch_add_explicit(&th->sh->outstanding, 1, memory_order_relaxed);
  th->c.sent++;
  return 0;
}

/* --max: tops c up to its window while the run lasts. */
static void fill(sb_conn *c, uint64_t now) {
  sb_thread *th = c->th;
  if (!th->running || th->quitting || now >= th->sh->t_end)
    return;
  while (c->outstanding < th->sh->o->window) {
    int rc = issue(c, now);
    if (rc == ADP_E_AGAIN || rc == ADP_E_NOT_CONNECTED)
      return;
    if (rc != ADP_OK) {
      th->c.not_sent++;
      return;
    }
  }
}

/* --rate: sends every prepare that is due, then arms the timer for the next one. */
static void pump(sb_thread *th) {
  if (!th->running || th->quitting)
    return;
  uint64_t now = bench_now_ns();
  while (th->next_idx < th->end_idx) {
    uint64_t due =
        th->sh->t_start + (uint64_t)(th->phase_ns + (double)th->next_idx * th->interval_ns);
    if (due > now) {
      if (!th->rate_timer_armed) {
        struct timeval tv = ns_tv(due - now);
        if (evtimer_add(th->rate_timer, &tv) == 0)
          th->rate_timer_armed = 1;
      }
      return;
    }
    int sent = 0;
    for (size_t k = 0; k < th->n && !sent; k++) {
      sb_conn *c = th->conns[th->rr];
      th->rr = (th->rr + 1) % th->n;
      int rc = issue(c, due);
      if (rc == ADP_OK)
        sent = 1;
      else if (rc != ADP_E_AGAIN && rc != ADP_E_NOT_CONNECTED)
        th->c.not_sent++;
    }
    if (!sent) {
      /* Every connection is full (or down): the prepare waits, and its latency grows. A
       * completion calls pump() again; the tick is the backstop. */
      if (th->last_again_idx != th->next_idx + 1) {
        th->c.again++;
        th->last_again_idx = th->next_idx + 1;
      }
      return;
    }
    if (due >= th->sh->t_meas) {
      if (now - due > th->c.late_ns_max)
        th->c.late_ns_max = now - due;
      if (now - due > 1000000u)
        th->c.late_1ms++;
    }
    th->next_idx++;
  }
}

static void rate_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  sb_thread *th = arg;
  th->rate_timer_armed = 0;
  pump(th);
}

static void prepare_done_cb(adp_client *client, int status, const adp_transfer_result *r,
                            void *arg) {
  (void)client;
  sb_slot *s = arg;
  sb_conn *c = s->conn;
  sb_thread *th = c->th;
  sb_shared *sh = th->sh;
  uint64_t now = bench_now_ns();
  c->outstanding--;
  atomic_fetch_sub_explicit(&sh->outstanding, 1, memory_order_relaxed);
  if (status == ADP_OK) {
    if (r->state == ADP_TRANSFER_COMMITTED) {
      th->c.committed++;
      th->c.committed_amount += s->amount;
      if (s->start_ns >= sh->t_meas && s->start_ns < sh->t_end) {
        th->c.committed_window++;
        if (bench_samples_push(&th->lat, now - s->start_ns) != 0)
          th->oom = 1;
      }
    } else if (r->state == ADP_TRANSFER_ABORTED) {
      th->c.aborted++;
    } else if (r->state == ADP_TRANSFER_EXPIRED) {
      th->c.expired++;
    } else {
      th->c.other++;
    }
  } else if (status == ADP_E_REFUSED) {
    th->c.refused++;
  } else if (status == ADP_E_DISCONNECTED) {
    th->c.disconnected++;
  } else if (status == ADP_E_TIMEOUT) {
    th->c.timeouts++;
  } else if (status == ADP_E_CLOSED) {
    th->c.closed++;
  } else {
    th->c.other++;
  }
  s->next_free = c->free_slots;
  c->free_slots = s;
  if (sh->o->rate)
    pump(th);
  else
    fill(c, now);
}

/* ---- payee side */

static int fq_push(sb_conn *c, const uint8_t id[ADP_ID_LEN], uint64_t due) {
  if (c->fq_len == c->fq_cap) {
    size_t cap = c->fq_cap ? c->fq_cap * 2 : 256;
    sb_fwd *q = malloc(cap * sizeof *q);
    if (!q)
      return -1;
    for (size_t i = 0; i < c->fq_len; i++)
      q[i] = c->fq[(c->fq_head + i) % c->fq_cap];
    free(c->fq);
    c->fq = q;
    c->fq_cap = cap;
    c->fq_head = 0;
  }
  sb_fwd *e = &c->fq[(c->fq_head + c->fq_len) % c->fq_cap];
  memcpy(e->id, id, ADP_ID_LEN);
  e->due_ns = due;
  c->fq_len++;
  return 0;
}

/* Fulfils every queued forward that is due; arms the timer for the next one. */
static void fulfil_pump(sb_conn *c) {
  sb_thread *th = c->th;
  if (th->quitting)
    return;
  uint64_t now = c->fq_len ? bench_now_ns() : 0;
  while (c->fq_len) {
    sb_fwd *e = &c->fq[c->fq_head];
    if (e->due_ns > now) {
      if (!evtimer_pending(c->fulfil_timer, NULL)) {
        struct timeval tv = ns_tv(e->due_ns - now);
        evtimer_add(c->fulfil_timer, &tv);
      }
      return;
    }
    int rc =
        adp_client_fulfil(c->client, e->id, ADP_FULFIL_COMMIT, NULL, 0, NULL, fulfil_done_cb, c);
    if (rc == ADP_E_AGAIN)
      return; /* a fulfil_done_cb comes first */
    if (rc == ADP_OK)
      atomic_fetch_add_explicit(&th->sh->fulfilling, 1, memory_order_relaxed);
    else
      th->c.fulfil_errors++; /* the transfer will expire: the payer counts it */
    c->fq_head = (c->fq_head + 1) % c->fq_cap;
    c->fq_len--;
  }
}

static void fulfil_timer_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  fulfil_pump(arg);
}

static void forward_cb(adp_client *client, const adp_forward *fw, void *arg) {
  sb_conn *c = arg;
  sb_thread *th = c->th;
  th->c.forwards++;
  uint64_t lat = th->sh->o->payee_latency_ms;
  if (lat == 0 && c->fq_len == 0) {
    int rc = adp_client_fulfil(client, fw->transfer_id, ADP_FULFIL_COMMIT, NULL, 0, NULL,
                               fulfil_done_cb, c);
    if (rc == ADP_OK) {
      atomic_fetch_add_explicit(&th->sh->fulfilling, 1, memory_order_relaxed);
      return;
    }
    if (rc != ADP_E_AGAIN) {
      th->c.fulfil_errors++;
      return;
    }
  }
  if (fq_push(c, fw->transfer_id, bench_now_ns() + lat * 1000000u) != 0) {
    th->oom = 1;
    th->c.fulfil_errors++;
    return;
  }
  fulfil_pump(c);
}

static void fulfil_done_cb(adp_client *client, int status, const adp_transfer_result *r,
                           void *arg) {
  (void)client;
  sb_conn *c = arg;
  atomic_fetch_sub_explicit(&c->th->sh->fulfilling, 1, memory_order_relaxed);
  c->th->c.fulfils++;
  if (status != ADP_OK || r->state != ADP_TRANSFER_COMMITTED)
    c->th->c.fulfil_errors++;
  if (c->fq_len)
    fulfil_pump(c);
}

static void notify_cb(adp_client *client, const adp_transfer_result *r, void *arg) {
  (void)client;
  (void)r;
  sb_conn *c = arg;
  c->th->c.notifications++;
}

static void state_cb(adp_client *client, const adp_state_event *ev, void *arg) {
  (void)client;
  sb_conn *c = arg;
  if (ev->state == ADP_STATE_CONNECTED) {
    c->connected = 1;
    if (!c->ever_connected) {
      c->ever_connected = 1;
      atomic_fetch_add(&c->th->sh->connected, 1);
    }
    if (!c->th->sh->o->rate)
      fill(c, bench_now_ns());
    return;
  }
  if (c->connected)
    c->th->c.disconnects++;
  c->connected = 0;
  snprintf(c->last_reason, sizeof c->last_reason, "%s", ev->reason);
}

/* Every SB_TICK_MS: start when `go` is seen, top up after reconnects, and stop on `quit`. */
static void tick_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  sb_thread *th = arg;
  sb_shared *sh = th->sh;
  if (atomic_load_explicit(&sh->quit, memory_order_acquire)) {
    th->quitting = 1;
    for (size_t i = 0; i < th->n; i++) {
      adp_client_free(th->conns[i]->client); /* anything outstanding: ADP_E_CLOSED */
      th->conns[i]->client = NULL;
    }
    event_base_loopbreak(th->base);
    return;
  }
  if (!th->running) {
    if (!atomic_load_explicit(&sh->go, memory_order_acquire))
      return;
    th->running = 1;
    if (sh->o->rate) {
      /* This thread's share of the rate: every T-th prepare of the whole sequence. */
      th->interval_ns = 1e9 * (double)sh->o->threads / (double)sh->o->rate;
      th->phase_ns = 1e9 * (double)th->index / (double)sh->o->rate;
      double span = (double)(sh->t_end - sh->t_start) - th->phase_ns;
      th->end_idx = span > 0 ? (uint64_t)ceil(span / th->interval_ns) : 0;
    }
  }
  if (sh->o->rate) {
    pump(th);
  } else {
    uint64_t now = bench_now_ns();
    for (size_t i = 0; i < th->n; i++)
      fill(th->conns[i], now);
  }
}

static void *thread_main(void *arg) {
  sb_thread *th = arg;
  event_base_dispatch(th->base);
  return NULL;
}

/* ---------------------------------------------------------------- processes */

/* GET http://127.0.0.1:port/metrics; the value of the first line starting with `key ` for
 * each of keys[0..n) into vals (NAN-free: -1 when absent). Returns 0 or -1. */
static int scrape_metrics(uint16_t port, const char *const *keys, size_t n, double *vals) {
  for (size_t i = 0; i < n; i++)
    vals[i] = -1;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  static const char req[] = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) {
    close(fd);
    return -1;
  }
  size_t cap = 65536, len = 0;
  char *buf = malloc(cap);
  if (!buf) {
    close(fd);
    return -1;
  }
  for (;;) {
    if (len + 1 == cap) {
      char *b = realloc(buf, cap * 2);
      if (!b)
        break;
      buf = b;
      cap *= 2;
    }
    ssize_t r = read(fd, buf + len, cap - 1 - len);
    if (r <= 0)
      break;
    len += (size_t)r;
  }
  close(fd);
  buf[len] = '\0';
  for (char *line = buf; line && *line;) {
    char *nl = strchr(line, '\n');
    if (nl)
      *nl = '\0';
    for (size_t i = 0; i < n; i++) {
      size_t kl = strlen(keys[i]);
      if (vals[i] < 0 && strncmp(line, keys[i], kl) == 0 && line[kl] == ' ')
        vals[i] = strtod(line + kl + 1, NULL);
    }
    line = nl ? nl + 1 : NULL;
  }
  free(buf);
  return 0;
}

/* What tuma-bench reads from tumad's /metrics: ledger commits and events, committed transfers,
 * and the histogram of the ledger round trip (switch/metrics.c: buckets of 0.1 ms doubling,
 * 15 bounded ones and +Inf). */
enum { SB_RT_BUCKETS = 16 };

typedef struct sb_metrics {
  double batches, events, committed;
  double rt_bucket[SB_RT_BUCKETS]; /* cumulative counts; the last is +Inf */
  double rt_sum, rt_count;
} sb_metrics;

static int scrape_switch(uint16_t port, sb_metrics *m) {
  char names[3 + SB_RT_BUCKETS + 2][80];
  const char *keys[3 + SB_RT_BUCKETS + 2];
  double vals[3 + SB_RT_BUCKETS + 2];
  size_t n = 0;
  snprintf(names[n++], sizeof names[0], "tuma_ledger_batches_total");
  snprintf(names[n++], sizeof names[0], "tuma_ledger_events_total");
  snprintf(names[n++], sizeof names[0], "tuma_transfers_total{outcome=\"committed\"}");
  double bound = 0.0001;
  for (int k = 0; k < SB_RT_BUCKETS - 1; k++, bound *= 2)
    snprintf(names[n++], sizeof names[0], "tuma_ledger_commit_seconds_bucket{le=\"%g\"}", bound);
  snprintf(names[n++], sizeof names[0], "tuma_ledger_commit_seconds_bucket{le=\"+Inf\"}");
  snprintf(names[n++], sizeof names[0], "tuma_ledger_commit_seconds_sum");
  snprintf(names[n++], sizeof names[0], "tuma_ledger_commit_seconds_count");
  for (size_t i = 0; i < n; i++)
    keys[i] = names[i];
  if (scrape_metrics(port, keys, n, vals) != 0)
    return -1;
  m->batches = vals[0];
  m->events = vals[1];
  m->committed = vals[2];
  for (int k = 0; k < SB_RT_BUCKETS; k++)
    m->rt_bucket[k] = vals[3 + k];
  m->rt_sum = vals[3 + SB_RT_BUCKETS];
  m->rt_count = vals[4 + SB_RT_BUCKETS];
  return m->batches < 0 || m->events < 0 ? -1 : 0;
}

/* The upper bound in ms of the bucket holding the p-th percentile of the round trips between
 * two scrapes; -1 if there were none (or the histogram is missing), +Inf past the last bound. */
static double rt_percentile_ms(const sb_metrics *a, const sb_metrics *b, double p) {
  double total = b->rt_bucket[SB_RT_BUCKETS - 1] - a->rt_bucket[SB_RT_BUCKETS - 1];
  if (total <= 0 || a->rt_bucket[0] < 0 || b->rt_bucket[0] < 0)
    return -1;
  double bound = 0.1;
  for (int k = 0; k < SB_RT_BUCKETS - 1; k++, bound *= 2)
    if (b->rt_bucket[k] - a->rt_bucket[k] >= p / 100.0 * total)
      return bound;
  return INFINITY;
}

/* ---------------------------------------------------------------- the run */

typedef struct sb_result {
  double seconds; /* the measured window */
  sb_counts c;
  bench_samples lat;
  double bench_cpu_pct, tumad_cpu_pct, other_cpu_pct;           /* % of one core; -1 unknown */
  double ledger_batches_per_sec, ledger_events_per_batch;       /* -1 unknown */
  double ledger_rt_mean_ms, ledger_rt_p50_ms, ledger_rt_p99_ms; /* -1 unknown; p: bucket bound */
  double metrics_committed;                                     /* -1 unknown */
  int own_switch;
  pid_t tumad_pid;
  int tumad_exit; /* -1 unknown / not ours */
  int ledger_checked, ledger_ok, invariants_ok;
  uint64_t ledger_posted, ledger_posted_amount, ledger_reserved;
  int interrupted;
  char failure[256];
} sb_result;

/* The ledger figures of the measured window from two scrapes of /metrics. */
static void metrics_window(const sb_metrics *a, const sb_metrics *b, double wall, sb_result *res) {
  res->ledger_batches_per_sec = (b->batches - a->batches) / wall;
  res->ledger_events_per_batch =
      b->batches > a->batches ? (b->events - a->events) / (b->batches - a->batches) : 0;
  if (a->rt_count >= 0 && b->rt_count > a->rt_count && a->rt_sum >= 0 && b->rt_sum >= 0)
    res->ledger_rt_mean_ms = 1000.0 * (b->rt_sum - a->rt_sum) / (b->rt_count - a->rt_count);
  res->ledger_rt_p50_ms = rt_percentile_ms(a, b, 50);
  res->ledger_rt_p99_ms = rt_percentile_ms(a, b, 99);
}

/* Counts the posted payments whose payer is the LIQUIDITY account `acct` (POST_PENDING
 * transfers of code 1 on its debit side), paging by timestamp. */
static int count_posts(ledger *l, ledger_id acct, ledger_transfer *buf, size_t cap,
                       uint64_t *count) {
  ledger_account_filter f;
  memset(&f, 0, sizeof f);
  f.account_id = acct;
  f.limit = (uint32_t)cap;
  f.flags = LEDGER_FILTER_DEBITS;
  for (;;) {
    size_t n = 0;
    int rc = ledger_account_transfers(l, &f, buf, cap, &n);
    if (rc != 0)
      return rc;
    for (size_t i = 0; i < n; i++)
      if ((buf[i].flags & LEDGER_TRANSFER_POST_PENDING) && buf[i].code == SB_CODE_PAYMENT)
        (*count)++;
    if (n < cap)
      return 0;
    f.timestamp_min = buf[n - 1].timestamp + 1;
  }
}

/* Opens DATA/ledger read-only and checks it against what the bench counted (file comment). */
static void check_ledger(const char *data_dir, const sb_opts *o, sb_result *res) {
  char path[8192];
  snprintf(path, sizeof path, "%s/ledger", data_dir);
  ledger_options lo;
  memset(&lo, 0, sizeof lo);
  lo.flags = LEDGER_OPEN_READ_ONLY;
  ledger *l = NULL;
  int rc = ledger_open(path, &lo, &l);
  if (rc != 0) {
    snprintf(res->failure, sizeof res->failure, "ledger_open(%.160s, read-only): %s", path,
             ledger_strerror(rc));
    return;
  }
  res->ledger_checked = 1;
  ledger_totals t;
  size_t cap = 8192;
  ledger_transfer *buf = malloc(cap * sizeof *buf);
  uint64_t found = 0;
  int ok = buf != NULL && ledger_totals_of(l, &t) == 0;
  if (ok) {
    res->invariants_ok =
        t.debits_posted == t.credits_posted && t.debits_pending == t.credits_pending;
    /* Participant numbers come from the registry (1, 2, … in a fresh data directory). */
    for (uint32_t p = 1; ok && p <= o->operators + 64; p++) {
      ledger_id id = ledger_id_make(p, (uint64_t)SB_LEDGER_KES << 16 | SB_ACCOUNT_LIQUIDITY);
      ledger_account a;
      rc = ledger_lookup_account(l, id, &a);
      if (rc == LEDGER_E_NOTFOUND)
        continue;
      if (rc != 0 || count_posts(l, id, buf, cap, &res->ledger_posted) != 0) {
        ok = 0;
        break;
      }
      found++;
      res->ledger_posted_amount += a.debits_posted; /* only payments debit LIQUIDITY here */
      res->ledger_reserved += a.debits_pending;
    }
  }
  if (!ok)
    snprintf(res->failure, sizeof res->failure, "reading the ledger failed");
  res->ledger_ok =
      ok && res->invariants_ok && found == o->operators && res->ledger_posted == res->c.committed &&
      res->ledger_posted_amount == res->c.committed_amount && res->ledger_reserved == 0 &&
      res->tumad_exit == 0 &&
      (res->metrics_committed < 0 || (uint64_t)res->metrics_committed == res->c.committed);
  free(buf);
  ledger_close(l);
}

/* Writes the tumad configuration (file comment). Returns 0 or -1. */
static int write_config(const char *path, const char *dir, const sb_opts *o,
                        const uint16_t ports[3]) {
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  uint64_t conns = o->operators * o->connections + 16;
  fprintf(f,
          "; written by tuma-bench switch\n[switch]\nlisten = 127.0.0.1:%u\n"
          "admin_listen = 127.0.0.1:%u\nmetrics_listen = 127.0.0.1:%u\ndata_dir = %s/data\n",
          ports[0], ports[1], ports[2], dir);
  if (conns > 1024)
    fprintf(f, "max_connections = %" PRIu64 "\n", conns);
  fprintf(f, "\n[tls]\nca = %s/pki/ca.crt\ncert = %s/pki/tumad.crt\nkey = %s/pki/tumad.key\n", dir,
          dir, dir);
  for (uint64_t i = 1; i <= o->operators; i++)
    fprintf(f,
            "\n[participant op%" PRIu64 "]\nname = Bench operator %" PRIu64
            "\ncurrencies = KES\nnet_debit_cap.KES = unlimited\ninitial_deposit.KES = %llu\n",
            i, i, SB_DEPOSIT);
  return fclose(f) == 0 ? 0 : -1;
}

/* The scratch directory's PKI: a CA, tumad's certificate, one operator certificate each. */
static int make_pki(const char *cli, const char *dir, const sb_opts *o, const char *logpath) {
  char pki[4096];
  snprintf(pki, sizeof pki, "%s/pki", dir);
  char *init[] = {(char *)cli, "pki", "init", "--dir", pki, NULL};
  if (bench_proc_run(init, logpath, NULL, 120000) != 0)
    return -1;
  for (uint64_t i = 1; i <= o->operators; i++) {
    char name[32];
    snprintf(name, sizeof name, "op%" PRIu64, i);
    char *issue_argv[] = {(char *)cli, "pki", "issue",  "--dir",    pki,
                          "--name",    name,  "--role", "operator", NULL};
    if (bench_proc_run(issue_argv, logpath, NULL, 120000) != 0)
      return -1;
  }
  return 0;
}

/* Starts tumad (retrying with new ports when one was taken meanwhile) and waits for it to be
 * ready. Returns 0 with *pid and ports, or -1 after printing why. */
static int start_tumad(const char *tumad, const char *dir, const sb_opts *o, uint16_t ports[3],
                       pid_t *pid, int *interrupted) {
  char conf[4096], logpath[4096];
  snprintf(conf, sizeof conf, "%s/tumad.ini", dir);
  snprintf(logpath, sizeof logpath, "%s/tumad.log", dir);
  for (int attempt = 1; attempt <= 4; attempt++) {
    if (bench_free_ports(ports, 3) != 0 || write_config(conf, dir, o, ports) != 0) {
      fprintf(stderr, "tuma-bench switch: writing %s: %s\n", conf, strerror(errno));
      return -1;
    }
    int tfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (tfd >= 0)
      close(tfd);
    char *argv[] = {(char *)tumad, "--config", conf, NULL};
    if (bench_proc_spawn(argv, logpath, NULL, pid) != 0) {
      fprintf(stderr, "tuma-bench switch: starting %s: %s\n", tumad, strerror(errno));
      return -1;
    }
    int st = 0, exited = 0;
    for (int i = 0; i < SB_READY_WAIT_S * 50; i++) {
      if ((*interrupted = bench_interrupted()) != 0)
        break;
      if (bench_file_contains(logpath, "event=ready"))
        return 0;
      if (waitpid(*pid, &st, WNOHANG) == *pid) {
        exited = 1;
        break;
      }
      bench_sleep_ms(20);
    }
    if (!exited) {
      kill(*pid, SIGKILL);
      waitpid(*pid, &st, 0);
    }
    *pid = 0;
    if (*interrupted)
      return -1;
    if (exited && attempt < 4 && bench_file_contains(logpath, "Address already in use"))
      continue;
    fprintf(stderr, "tuma-bench switch: tumad did not get ready (log: %s)\n", logpath);
    return -1;
  }
  return -1;
}

/* SIGTERM, then waits (SIGKILL after SB_STOP_WAIT_S). Returns the exit status (128 + signal
 * when killed by one), or -1. */
static int stop_tumad(pid_t pid) {
  if (kill(pid, SIGTERM) != 0)
    return -1;
  int st;
  for (int i = 0; i < SB_STOP_WAIT_S * 100; i++) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid)
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    if (r < 0 && errno != EINTR)
      return -1;
    bench_sleep_ms(10);
  }
  fprintf(stderr, "tuma-bench switch: tumad did not stop within %d s: killed\n", SB_STOP_WAIT_S);
  kill(pid, SIGKILL);
  waitpid(pid, &st, 0);
  return 128 + SIGKILL;
}

/* Sleeps until monotonic time `until`, polling for an interrupt and for tumad's death.
 * Returns 0, or -1 (res->interrupted or res->failure set). */
static int wait_until(uint64_t until, sb_result *res) {
  for (;;) {
    if ((res->interrupted = bench_interrupted()) != 0)
      return -1;
    if (res->own_switch && res->tumad_pid) {
      int st;
      if (waitpid(res->tumad_pid, &st, WNOHANG) == res->tumad_pid) {
        res->tumad_exit = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        res->tumad_pid = 0;
        snprintf(res->failure, sizeof res->failure, "tumad exited during the run (status %d)",
                 res->tumad_exit);
        return -1;
      }
    }
    uint64_t now = bench_now_ns();
    if (now >= until)
      return 0;
    uint64_t left_ms = (until - now) / 1000000u;
    bench_sleep_ms(left_ms > 20 ? 20 : (unsigned)left_ms + 1);
  }
}

/* Splits "HOST:PORT" / "[V6]:PORT". Returns 0 or -1. */
static int split_hostport(const char *s, char *host, size_t hostlen, uint16_t *port) {
  const char *colon = strrchr(s, ':');
  if (!colon || colon == s)
    return -1;
  const char *h = s;
  size_t hl = (size_t)(colon - s);
  if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
    h++;
    hl -= 2;
  }
  if (hl == 0 || hl >= hostlen)
    return -1;
  memcpy(host, h, hl);
  host[hl] = '\0';
  uint64_t p;
  if (bench_parse_u64(switch_cmd, "--connect port", colon + 1, 1, 65535, &p) != 0)
    return -1;
  *port = (uint16_t)p;
  return 0;
}

static void sum_counts(sb_counts *a, const sb_counts *b) {
  a->sent += b->sent;
  a->committed += b->committed;
  a->committed_amount += b->committed_amount;
  a->committed_window += b->committed_window;
  a->aborted += b->aborted;
  a->expired += b->expired;
  a->refused += b->refused;
  a->disconnected += b->disconnected;
  a->timeouts += b->timeouts;
  a->closed += b->closed;
  a->other += b->other;
  a->not_sent += b->not_sent;
  a->again += b->again;
  a->forwards += b->forwards;
  a->fulfils += b->fulfils;
  a->fulfil_errors += b->fulfil_errors;
  a->notifications += b->notifications;
  a->disconnects += b->disconnects;
  if (b->late_ns_max > a->late_ns_max)
    a->late_ns_max = b->late_ns_max;
  a->late_1ms += b->late_1ms;
}

static uint64_t errors_of(const sb_counts *c) {
  return c->refused + c->disconnected + c->timeouts + c->closed + c->other + c->not_sent +
         c->fulfil_errors;
}

static void print_json(const sb_opts *o, const sb_result *r) {
  const sb_counts *c = &r->c;
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  printf("{\"bench\":\"switch\",\"mode\":\"%s\",\"rate\":%" PRIu64 ",\"window\":%" PRIu64
         ",\"connections\":%" PRIu64 ",\"operators\":%" PRIu64 ",\"threads\":%" PRIu64
         ",\"payee_latency_ms\":%" PRIu64 ",\"amount_max\":%" PRIu64 ",\"payee\":\"%s\""
         ",\"warmup_s\":%" PRIu64 ",\"duration_s\":%.3f,\"switch\":\"%s\",\"durable\":true",
         o->rate ? "rate" : "max", o->rate, o->rate ? 0 : o->window, o->connections, o->operators,
         o->threads, o->payee_latency_ms, o->amount_max, o->payee_random ? "random" : "rr",
         o->warmup_s, r->seconds, r->own_switch ? "own" : "connect");
  printf(",\"transfers\":%" PRIu64 ",\"transfers_per_sec\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f"
         ",\"p999_ms\":%.3f,\"max_ms\":%.3f",
         c->committed_window, r->seconds > 0 ? (double)c->committed_window / r->seconds : 0.0,
         bench_samples_percentile_ms(&r->lat, 50), bench_samples_percentile_ms(&r->lat, 99),
         bench_samples_percentile_ms(&r->lat, 99.9), bench_samples_max_ms(&r->lat));
  printf(",\"aborted\":%" PRIu64 ",\"expired\":%" PRIu64 ",\"errors\":%" PRIu64
         ",\"refused\":%" PRIu64 ",\"disconnected\":%" PRIu64 ",\"timeouts\":%" PRIu64
         ",\"not_sent\":%" PRIu64 ",\"fulfil_errors\":%" PRIu64 ",\"again\":%" PRIu64
         ",\"max_send_delay_ms\":%.3f,\"sent_late_1ms\":%" PRIu64 ",\"sent\":%" PRIu64
         ",\"committed_total\":%" PRIu64 ",\"forwards\":%" PRIu64 ",\"disconnects\":%" PRIu64,
         c->aborted + c->expired, c->expired, errors_of(c), c->refused, c->disconnected,
         c->timeouts, c->not_sent, c->fulfil_errors, c->again, (double)c->late_ns_max / 1e6,
         c->late_1ms, c->sent, c->committed, c->forwards, c->disconnects);
  printf(",\"nproc\":%ld,\"tumad_cpu_pct\":%.1f,\"bench_cpu_pct\":%.1f,\"cpu_other_pct\":%.1f"
         ",\"ledger_batches_per_sec\":%.1f,\"ledger_events_per_batch\":%.1f"
         ",\"ledger_rt_mean_ms\":%.3f,\"ledger_rt_p50_ms\":%.1f,\"ledger_rt_p99_ms\":%.1f",
         ncpu, r->tumad_cpu_pct, r->bench_cpu_pct, r->other_cpu_pct, r->ledger_batches_per_sec,
         r->ledger_events_per_batch, r->ledger_rt_mean_ms, r->ledger_rt_p50_ms,
         isinf(r->ledger_rt_p99_ms) ? 1e9 : r->ledger_rt_p99_ms);
  if (r->own_switch)
    printf(",\"tumad_exit\":%d,\"ledger_ok\":%s,\"invariants\":\"%s\",\"ledger_posted\":%" PRIu64
           ",\"ledger_posted_amount\":%" PRIu64 ",\"committed_amount\":%" PRIu64
           ",\"metrics_committed\":%.0f",
           r->tumad_exit, r->ledger_ok ? "true" : "false", r->invariants_ok ? "ok" : "fail",
           r->ledger_posted, r->ledger_posted_amount, c->committed_amount, r->metrics_committed);
  else
    printf(",\"tumad_exit\":null,\"ledger_ok\":null");
  printf("}\n");
}

static void print_pct(const char *what, double pct) {
  if (pct < 0)
    printf("%s unknown", what);
  else
    printf("%s %.0f%%", what, pct);
}

static void print_table(const sb_opts *o, const sb_result *r) {
  const sb_counts *c = &r->c;
  printf("tuma-bench switch: %" PRIu64 " operators x %" PRIu64 " connections, ", o->operators,
         o->connections);
  if (o->rate)
    printf("--rate %" PRIu64 "/s (open loop)", o->rate);
  else
    printf("--max (closed loop, window %" PRIu64 " per connection)", o->window);
  printf(", %" PRIu64 " thread%s, payee latency %" PRIu64 " ms, %s\n", o->threads,
         o->threads == 1 ? "" : "s", o->payee_latency_ms,
         r->own_switch ? "own tumad (durable ledger)" : o->connect);
  printf("  machine          %ld cores (nproc)\n", sysconf(_SC_NPROCESSORS_ONLN));
  printf("  window           %.1f s measured after %" PRIu64 " s warm-up\n", r->seconds,
         o->warmup_s);
  printf("  transfers        %" PRIu64 " committed  (%.0f transfers/s)\n", c->committed_window,
         r->seconds > 0 ? (double)c->committed_window / r->seconds : 0.0);
  printf("  latency          p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms\n",
         bench_samples_percentile_ms(&r->lat, 50), bench_samples_percentile_ms(&r->lat, 99),
         bench_samples_percentile_ms(&r->lat, 99.9), bench_samples_max_ms(&r->lat));
  printf("  aborted          %" PRIu64 " (of which expired %" PRIu64 ")   [whole run]\n",
         c->aborted + c->expired, c->expired);
  printf("  errors           %" PRIu64 " (refused %" PRIu64 ", disconnected %" PRIu64
         ", timeouts %" PRIu64 ", not sent %" PRIu64 ", fulfils %" PRIu64 ")   [whole run]\n",
         errors_of(c), c->refused, c->disconnected, c->timeouts, c->not_sent, c->fulfil_errors);
  if (o->rate)
    printf("  again            %" PRIu64 " prepares waited for a free slot (ADP_E_AGAIN)   "
           "[whole run]\n  send delay       %" PRIu64 " prepares sent more than 1 ms after "
           "they were due, the longest %.3f ms\n",
           c->again, c->late_1ms, (double)c->late_ns_max / 1e6);
  printf("  cpu              ");
  print_pct("tumad", r->tumad_cpu_pct);
  print_pct(",  tuma-bench", r->bench_cpu_pct);
  print_pct(",  others", r->other_cpu_pct);
  printf("  (%% of one core)\n");
  if (r->ledger_batches_per_sec >= 0)
    printf("  ledger           %.0f commits/s, %.1f events per commit; round trip mean %.2f ms,"
           " p50 <= %.1f ms, p99 <= %.1f ms (tumad /metrics)\n",
           r->ledger_batches_per_sec, r->ledger_events_per_batch, r->ledger_rt_mean_ms,
           r->ledger_rt_p50_ms, r->ledger_rt_p99_ms);
  if (r->own_switch) {
    printf("  tumad exit       %d after SIGTERM\n", r->tumad_exit);
    printf("  ledger check     %s: invariants %s, %" PRIu64 " payments posted (bench saw %" PRIu64
           " committed), amounts %" PRIu64 " / %" PRIu64 ", reserved %" PRIu64 "\n",
           r->ledger_ok ? "ok" : "FAIL", r->invariants_ok ? "ok" : "FAIL", r->ledger_posted,
           c->committed, r->ledger_posted_amount, c->committed_amount, r->ledger_reserved);
  }
}

int bench_switch_main(int argc, char **argv) {
  sb_opts o = {.duration_s = 10,
               .warmup_s = 2,
               .window = 256,
               .connections = 4,
               .operators = 2,
               .threads = 1,
               .amount_max = 10000,
               .max_outstanding = 1024,
               .seed = 1};
  int rc = switch_parse(argc, argv, &o);
  if (rc < 0)
    return BENCH_EXIT_OK;
  if (rc != BENCH_EXIT_OK)
    return rc;

  int status = BENCH_EXIT_FAIL;
  sb_result res;
  memset(&res, 0, sizeof res);
  res.tumad_exit = -1;
  res.bench_cpu_pct = res.tumad_cpu_pct = res.other_cpu_pct = -1;
  res.ledger_batches_per_sec = res.ledger_events_per_batch = res.metrics_committed = -1;
  res.ledger_rt_mean_ms = res.ledger_rt_p50_ms = res.ledger_rt_p99_ms = -1;
  res.own_switch = o.connect == NULL;
  sb_shared sh;
  memset(&sh, 0, sizeof sh);
  sh.o = &o;
  char *dir = NULL, *cli = NULL, *tumad = NULL;
  char host[256] = "127.0.0.1";
  char pki[4096];
  uint16_t ports[3] = {0, 0, 0};
  size_t nthreads = (size_t)o.threads;
  const char *base = bench_scratch_base(o.tmpdir);

  if (res.own_switch) {
    cli = bench_proc_find("TUMA_CLI", "cli/tuma");
    tumad = bench_proc_find("TUMAD", "switch/tumad");
    if (!cli || !tumad || access(cli, X_OK) != 0 || access(tumad, X_OK) != 0) {
      fprintf(stderr,
              "tuma-bench switch: cannot find the tuma and tumad binaries (%s, %s); "
              "build them or set TUMA_CLI and TUMAD\n",
              cli ? cli : "?", tumad ? tumad : "?");
      goto out;
    }
    if (bench_scratch_create(base, "switch", &dir) != 0) {
      fprintf(stderr, "tuma-bench switch: cannot create a directory in %s: %s\n", base,
              strerror(errno));
      goto out;
    }
    if (strlen(dir) > 120) {
      fprintf(stderr, "tuma-bench switch: %s: too long a path for tumad.ini's lines\n", dir);
      goto out;
    }
    char pki_log[4096];
    snprintf(pki_log, sizeof pki_log, "%s/pki.log", dir);
    if (make_pki(cli, dir, &o, pki_log) != 0) {
      fprintf(stderr, "tuma-bench switch: tuma pki failed (log: %s)\n", pki_log);
      goto out;
    }
    if (start_tumad(tumad, dir, &o, ports, &res.tumad_pid, &res.interrupted) != 0)
      goto out;
    snprintf(pki, sizeof pki, "%s/pki", dir);
  } else {
    if (split_hostport(o.connect, host, sizeof host, &ports[0]) != 0) {
      fprintf(stderr, "tuma-bench switch: --connect: '%s' is not HOST:PORT\n", o.connect);
      status = BENCH_EXIT_USAGE;
      goto out;
    }
    snprintf(pki, sizeof pki, "%s", o.pki);
    res.tumad_pid = (pid_t)o.tumad_pid;
  }

  /* Clients, spread over the threads' event bases. */
  sh.names = calloc((size_t)o.operators, sizeof *sh.names);
  sh.nconns = (size_t)(o.operators * o.connections);
  sh.conns = calloc(sh.nconns, sizeof *sh.conns);
  sh.threads = calloc(nthreads, sizeof *sh.threads);
  if (!sh.names || !sh.conns || !sh.threads) {
    fprintf(stderr, "tuma-bench switch: out of memory\n");
    goto out;
  }
  for (uint64_t i = 0; i < o.operators; i++)
    snprintf(sh.names[i], sizeof sh.names[i], "op%" PRIu64, i + 1);
  struct event_config *ecfg = event_config_new();
  if (ecfg)
    event_config_set_flag(ecfg, EVENT_BASE_FLAG_PRECISE_TIMER);
  for (size_t t = 0; t < nthreads; t++) {
    sb_thread *th = &sh.threads[t];
    th->sh = &sh;
    th->index = (unsigned)t;
    bench_rng_seed(&th->rng, o.seed * 1000003u + t);
    th->conns = calloc(sh.nconns / nthreads + 1, sizeof *th->conns);
    th->base = ecfg ? event_base_new_with_config(ecfg) : NULL;
    th->tick = th->base ? event_new(th->base, -1, EV_PERSIST, tick_cb, th) : NULL;
    th->rate_timer = th->base ? evtimer_new(th->base, rate_cb, th) : NULL;
    struct timeval tv = {0, SB_TICK_MS * 1000};
    if (!th->conns || !th->tick || !th->rate_timer || event_add(th->tick, &tv) != 0) {
      fprintf(stderr, "tuma-bench switch: cannot set up event loop %zu\n", t);
      event_config_free(ecfg);
      goto out;
    }
  }
  event_config_free(ecfg);
  uint32_t slots = (uint32_t)(o.rate ? o.max_outstanding : o.window);
  for (size_t i = 0; i < sh.nconns; i++) {
    sb_conn *c = &sh.conns[i];
    sb_thread *th = &sh.threads[i % nthreads];
    c->th = th;
    c->op = (uint32_t)(i / o.connections);
    c->next_payee = (uint32_t)(i % (o.operators - 1));
    th->conns[th->n++] = c;
    c->slots = calloc(slots, sizeof *c->slots);
    c->fulfil_timer = evtimer_new(th->base, fulfil_timer_cb, c);
    if (!c->slots || !c->fulfil_timer) {
      fprintf(stderr, "tuma-bench switch: out of memory\n");
      goto out;
    }
    for (uint32_t k = 0; k < slots; k++) {
      c->slots[k].conn = c;
      c->slots[k].next_free = k + 1 < slots ? &c->slots[k + 1] : NULL;
    }
    c->free_slots = &c->slots[0];
    char ca[4200], crt[4200], key[4200];
    snprintf(ca, sizeof ca, "%s/ca.crt", pki);
    snprintf(crt, sizeof crt, "%s/%s.crt", pki, sh.names[c->op]);
    snprintf(key, sizeof key, "%s/%s.key", pki, sh.names[c->op]);
    adp_client_options co;
    memset(&co, 0, sizeof co);
    co.host = host;
    co.port = ports[0];
    co.ca_file = ca;
    co.cert_file = crt;
    co.key_file = key;
    co.client_name = "tuma-bench switch";
    co.on_forward = forward_cb;
    co.on_notify = notify_cb;
    co.on_state = state_cb;
    co.arg = c;
    co.max_outstanding = slots;
    co.max_outstanding_fulfils = 8192;
    int crc = adp_client_new(th->base, &co, &c->client);
    if (crc != ADP_OK) {
      fprintf(stderr, "tuma-bench switch: client for %s: %s\n", sh.names[c->op], adp_strerror(crc));
      goto out;
    }
  }
  for (size_t t = 0; t < nthreads; t++) {
    if (pthread_create(&sh.threads[t].tid, NULL, thread_main, &sh.threads[t]) != 0) {
      fprintf(stderr, "tuma-bench switch: cannot start a thread\n");
      goto stop_threads;
    }
    sh.threads[t].started_thread = 1;
  }

  /* Every client connected, then go. */
  uint64_t deadline = bench_now_ns() + (uint64_t)SB_CONNECT_WAIT_S * 1000000000u;
  while (atomic_load(&sh.connected) < sh.nconns) {
    if (wait_until(bench_now_ns() + 10000000u, &res) != 0)
      goto stop_threads;
    if (bench_now_ns() > deadline) {
      const char *why = "";
      for (size_t i = 0; i < sh.nconns && !why[0]; i++)
        why = sh.conns[i].last_reason; /* racy read of a diagnostic: good enough */
      snprintf(res.failure, sizeof res.failure, "only %u of %zu connections came up in %d s%s%s",
               atomic_load(&sh.connected), sh.nconns, SB_CONNECT_WAIT_S, why[0] ? ": " : "", why);
      goto stop_threads;
    }
  }
  sh.t_start = bench_now_ns();
  sh.t_meas = sh.t_start + o.warmup_s * 1000000000u;
  sh.t_end = sh.t_meas + o.duration_s * 1000000000u;
  atomic_store_explicit(&sh.go, 1, memory_order_release);

  sb_metrics m0, m1;
  if (wait_until(sh.t_meas, &res) != 0)
    goto stop_threads;
  bench_cpu cpu0, cpu1;
  bench_cpu_sample(&cpu0);
  double tumad0 = res.tumad_pid ? bench_proc_cpu_s(res.tumad_pid) : -1;
  int have_metrics = res.own_switch && scrape_switch(ports[2], &m0) == 0;
  if (wait_until(sh.t_end, &res) != 0)
    goto stop_threads;
  bench_cpu_sample(&cpu1);
  double tumad1 = res.tumad_pid ? bench_proc_cpu_s(res.tumad_pid) : -1;
  have_metrics = have_metrics && scrape_switch(ports[2], &m1) == 0;
  double wall = (double)(cpu1.wall_ns - cpu0.wall_ns) / 1e9;
  res.seconds = (double)(sh.t_end - sh.t_meas) / 1e9;
  if (wall > 0) {
    res.bench_cpu_pct = 100.0 * bench_cpu_self_s(&cpu0, &cpu1) / wall;
    if (tumad0 >= 0 && tumad1 >= 0)
      res.tumad_cpu_pct = 100.0 * (tumad1 - tumad0) / wall;
    double other = bench_cpu_other_pct(&cpu0, &cpu1);
    if (other >= 0 && res.tumad_cpu_pct >= 0) {
      other -= res.tumad_cpu_pct;
      res.other_cpu_pct = other < 0 ? 0 : other;
    }
  }
  if (have_metrics && wall > 0)
    metrics_window(&m0, &m1, wall, &res);

  /* Drain: every prepare gets its outcome. */
  deadline = bench_now_ns() + (uint64_t)SB_DRAIN_WAIT_S * 1000000000u;
  while (atomic_load(&sh.outstanding) > 0 && bench_now_ns() < deadline)
    if (wait_until(bench_now_ns() + 5000000u, &res) != 0)
      goto stop_threads;
  if (atomic_load(&sh.outstanding) > 0)
    fprintf(stderr, "tuma-bench switch: %lld prepares still without an outcome after %d s\n",
            (long long)atomic_load(&sh.outstanding), SB_DRAIN_WAIT_S);
  /* And every fulfil its confirmation (it may come just after the payer's result). */
  while (atomic_load(&sh.fulfilling) > 0 && bench_now_ns() < deadline)
    if (wait_until(bench_now_ns() + 5000000u, &res) != 0)
      goto stop_threads;

stop_threads:
  atomic_store_explicit(&sh.quit, 1, memory_order_release);
  for (size_t t = 0; t < nthreads; t++)
    if (sh.threads[t].started_thread)
      pthread_join(sh.threads[t].tid, NULL);
  if (res.interrupted || res.failure[0] || res.seconds <= 0)
    goto out;

  for (size_t t = 0; t < nthreads; t++) {
    sb_thread *th = &sh.threads[t];
    sum_counts(&res.c, &th->c);
    if (th->oom)
      snprintf(res.failure, sizeof res.failure, "out of memory");
    for (size_t i = 0; i < th->lat.n; i++)
      if (bench_samples_push(&res.lat, th->lat.ns[i]) != 0)
        snprintf(res.failure, sizeof res.failure, "out of memory");
  }
  bench_samples_sort(&res.lat);

  if (res.own_switch) {
    sb_metrics mf;
    if (scrape_switch(ports[2], &mf) == 0)
      res.metrics_committed = mf.committed;
    res.tumad_exit = stop_tumad(res.tumad_pid);
    res.tumad_pid = 0;
    char data[4200];
    snprintf(data, sizeof data, "%s/data", dir);
    check_ledger(data, &o, &res);
  }
  if (o.json)
    print_json(&o, &res);
  else
    print_table(&o, &res);
  status = errors_of(&res.c) == 0 && !res.failure[0] && (!res.own_switch || res.ledger_ok)
               ? BENCH_EXIT_OK
               : BENCH_EXIT_FAIL;

out:
  if (res.failure[0])
    fprintf(stderr, "tuma-bench switch: %s\n", res.failure);
  if (res.own_switch && res.tumad_pid > 0) {
    int st = stop_tumad(res.tumad_pid);
    if (st != 0)
      fprintf(stderr, "tuma-bench switch: tumad exited with status %d\n", st);
  }
  if (res.interrupted) {
    fprintf(stderr, "tuma-bench switch: interrupted (signal %d)\n", res.interrupted);
    status = 128 + res.interrupted;
  }
  if (sh.threads) {
    for (size_t t = 0; t < nthreads; t++) {
      sb_thread *th = &sh.threads[t];
      /* Threads that never ran still own their clients. */
      for (size_t i = 0; i < th->n; i++) {
        adp_client_free(th->conns[i]->client);
        th->conns[i]->client = NULL;
      }
    }
  }
  if (sh.conns) {
    for (size_t i = 0; i < sh.nconns; i++) {
      if (sh.conns[i].fulfil_timer)
        event_free(sh.conns[i].fulfil_timer);
      free(sh.conns[i].slots);
      free(sh.conns[i].fq);
    }
  }
  if (sh.threads) {
    for (size_t t = 0; t < nthreads; t++) {
      sb_thread *th = &sh.threads[t];
      if (th->tick)
        event_free(th->tick);
      if (th->rate_timer)
        event_free(th->rate_timer);
      if (th->base)
        event_base_free(th->base);
      free(th->conns);
      bench_samples_free(&th->lat);
    }
  }
  if (dir) {
    if (o.keep || (status != BENCH_EXIT_OK && status < 128)) {
      fprintf(stderr, "tuma-bench switch: kept %s\n", dir);
    } else if (bench_scratch_remove(dir) != 0) {
      fprintf(stderr, "tuma-bench switch: removing %s: %s\n", dir, strerror(errno));
      status = BENCH_EXIT_FAIL;
    }
  }
  bench_samples_free(&res.lat);
  free(sh.threads);
  free(sh.conns);
  free(sh.names);
  free(dir);
  free(cli);
  free(tumad);
  return status;
}
