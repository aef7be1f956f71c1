/* test_switch_crash.c — crash under load (issue 7): pipelined two-way traffic between two
 * operators through a real tumad, cut by kill -9 at random moments for several rounds, each
 * followed by a restart; then every outcome an operator was told is reconciled against the
 * ledger, read-only: told COMMITTED ⇒ posted with the amount sent, told ABORTED / EXPIRED ⇒
 * not posted, positions = deposits + what was posted, Σ debits = Σ credits, and the ledger's
 * journal verification passes. Bounded: 5 rounds, at most 300 batches of 32 per round, 4 min.
 * The random seed is logged (criterion --verbose) for a rerun.
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
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "frame.h"
#include "ledger.h"
#include "switch_harness.h"
#include "switch_ops.h"
#include "tclient.h"

TestSuite(switch_crash, .fini = so_fini, .timeout = 180);

static const so_config suite_cfg = {64, SO_CHECK_JOURNAL | SO_CHECK_AUDIT};

/* ================================================================ crash under load */

enum { CR_ROUNDS = 5, CR_BATCH = 32, CR_ROUND_BATCHES = 300, CR_MAX = 50000 };

typedef struct cr_transfer {
  uint8_t id[16];
  uint64_t amount;
  int from_alpha; /* alpha paid beta (else beta paid alpha) */
  int told; /* 0: no final outcome told to anyone; else SO_ST_COMMITTED / _ABORTED / _EXPIRED */
} cr_transfer;

typedef struct cr_run {
  so_ctx *t;
  cr_transfer *x;
  size_t n;
  size_t told_conflicts; /* one operator told COMMITTED, another ABORTED: must stay 0 */
} cr_run;

static cr_transfer *cr_find(cr_run *run, const uint8_t id[16]) {
  for (size_t i = run->n; i-- > 0;)
    if (!memcmp(run->x[i].id, id, 16))
      return &run->x[i];
  return NULL;
}

/* Notes a TransferResult an operator received: a final state is what that operator was told. */
static void cr_note_result(cr_run *run, const Tuma__V1__TransferResult *m) {
  if (m->transfer_id.len != 16)
    return;
  int st = m->state;
  if (st != SO_ST_COMMITTED && st != SO_ST_ABORTED && st != SO_ST_EXPIRED)
    return;
  cr_transfer *x = cr_find(run, m->transfer_id.data);
  if (!x)
    return;
  int was_commit = x->told == SO_ST_COMMITTED, is_commit = st == SO_ST_COMMITTED;
  if (x->told && was_commit != is_commit)
    run->told_conflicts++;
  x->told = st;
}

typedef struct killer {
  pid_t pid;
  int delay_ms;
} killer;

static void *killer_main(void *arg) {
  killer *k = arg;
  so_sleep_ms(k->delay_ms);
  kill(k->pid, SIGKILL);
  return NULL;
}

/* Reads envelopes from c until `want` of the kind `body` arrived (forwards collected into
 * fwd[] when body is a forward) or the connection fails. Results are noted on the way.
 * Returns 0, or -1 when the connection failed or nothing came within SO_T_ANSWER. */
static int cr_read(cr_run *run, size_t first, tc_client *c, int body, size_t want,
                   uint8_t (*fwd)[16], size_t *got) {
  *got = 0;
  while (*got < want) {
    Tuma__V1__Envelope *r = NULL;
    if (tc_recv(c, SO_T_ANSWER, &r) != TC_OK)
      return -1;
    const ProtobufCBinaryData *id = NULL;
    int final = 1;
    if (r->body_case == TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT) {
      cr_note_result(run, r->transfer_result);
      id = &r->transfer_result->transfer_id;
      final = r->transfer_result->state != SO_ST_RESERVED;
    } else if (r->body_case == TUMA__V1__ENVELOPE__BODY_TRANSFER_FORWARD) {
      id = &r->transfer_forward->transfer_id;
    }
    /* Only this batch's transfers count (a restart may bring news of older ones). */
    cr_transfer *x = id && id->len == 16 ? cr_find(run, id->data) : NULL;
    if ((int)r->body_case == body && final && x && (size_t)(x - run->x) >= first) {
      if (fwd)
        memcpy(fwd[*got], id->data, 16);
      (*got)++;
    }
    tuma__v1__envelope__free_unpacked(r, NULL);
  }
  return 0;
}

/* One batch: CR_BATCH pipelined prepares payer → payee, the payee commits most and aborts
 * some, both read their outcomes. Returns 0, or -1 as soon as a connection fails (tumad was
 * killed): what was told up to then is noted. */
static int cr_batch(cr_run *run, tc_client *payer, tc_client *payee, int from_alpha, uint64_t *corr,
                    unsigned *seed) {
  size_t first = run->n;
  if (run->n + CR_BATCH > CR_MAX)
    return 0;
  for (int i = 0; i < CR_BATCH; i++) {
    cr_transfer *x = &run->x[run->n++];
    memset(x, 0, sizeof *x);
    so_new_id(x->id);
    x->amount = 1 + (uint64_t)(rand_r(seed) % 100);
    x->from_alpha = from_alpha;
    Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
    Tuma__V1__TransferPrepare m = TUMA__V1__TRANSFER_PREPARE__INIT;
    Tuma__V1__Money money = TUMA__V1__MONEY__INIT;
    m.transfer_id.data = x->id;
    m.transfer_id.len = 16;
    m.payee_participant = (char *)(from_alpha ? "beta" : "alpha");
    money.currency = (char *)"KES";
    money.amount = x->amount;
    m.amount = &money;
    m.expiration_ms = sh_now_ms() + 30000;
    env.correlation_id = ++*corr;
    env.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_PREPARE;
    env.transfer_prepare = &m;
    if (tc_send(payer, &env) != TC_OK)
      return -1;
  }
  uint8_t fwd[CR_BATCH][16];
  size_t n_fwd = 0, got = 0;
  if (cr_read(run, first, payee, TUMA__V1__ENVELOPE__BODY_TRANSFER_FORWARD, CR_BATCH, fwd, &n_fwd))
    return -1;
  for (size_t i = 0; i < n_fwd; i++) {
    Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
    Tuma__V1__TransferFulfil m = TUMA__V1__TRANSFER_FULFIL__INIT;
    Tuma__V1__Error why = TUMA__V1__ERROR__INIT;
    m.transfer_id.data = fwd[i];
    m.transfer_id.len = 16;
    m.state = rand_r(seed) % 5 ? SO_FS_COMMITTED : SO_FS_ABORTED;
    if (m.state == SO_FS_ABORTED) {
      why.code = 5105;
      why.message = (char *)"declined by the test";
      m.reason = &why;
    }
    env.correlation_id = ++*corr;
    env.body_case = TUMA__V1__ENVELOPE__BODY_TRANSFER_FULFIL;
    env.transfer_fulfil = &m;
    if (tc_send(payee, &env) != TC_OK)
      return -1;
  }
  if (cr_read(run, first, payer, TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT, CR_BATCH, NULL, &got))
    return -1;
  if (cr_read(run, first, payee, TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT, n_fwd, NULL, &got))
    return -1;
  for (size_t i = first; i < run->n; i++)
    cr_assert(run->x[i].told, "a batch that completed told every outcome (transfer %zu)", i);
  return 0;
}

/* Several rounds of pipelined two-way traffic alpha ⇄ beta, each cut short by a kill -9 of
 * tumad at a random moment, then a restart. Afterwards, read-only: every transfer an operator
 * was told COMMITTED is posted in the ledger with the amount sent, every one told ABORTED or
 * EXPIRED is not posted, no two operators were told different outcomes, the positions equal
 * the deposits plus what the ledger posted, Σ debits = Σ credits and the journal verifies. */
Test(switch_crash, kill9_under_load, .timeout = 600) {
  sh_options o;
  memset(&o, 0, sizeof o);
  o.log_level = "info";
  so_ctx *t = so_start(&o, &suite_cfg);
  cr_run run = {t, calloc(CR_MAX, sizeof(cr_transfer)), 0, 0};
  cr_assert_not_null(run.x);
  unsigned seed = (unsigned)sh_now_ms();
  cr_log_info("kill9_under_load: seed %u", seed);
  uint64_t corr = 0;
  int64_t deadline = so_mono_ms() + 240000;
  int killed_mid_batch = 0;
  for (int round = 0; round < CR_ROUNDS && so_mono_ms() < deadline; round++) {
    tc_client *a = so_op_connect(t, "alpha"), *b = so_op_connect(t, "beta");
    killer k = {t->h->pid, 150 + (int)(rand_r(&seed) % 1200)};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, killer_main, &k), 0);
    int batches = 0;
    while (so_mono_ms() < deadline && batches < CR_ROUND_BATCHES) {
      int from_alpha = batches % 2 == 0;
      if (cr_batch(&run, from_alpha ? a : b, from_alpha ? b : a, from_alpha, &corr, &seed)) {
        killed_mid_batch++;
        break;
      }
      batches++;
    }
    pthread_join(th, NULL);
    sh_kill(t->h); /* reaps it (killed already) */
    so_drop_all(t);
    so_restart(t);
  }
  /* After the last restart, traffic flows and nothing is cut short. */
  tc_client *a = so_op_connect(t, "alpha"), *b = so_op_connect(t, "beta");
  for (int i = 0; i < 4; i++)
    cr_assert_eq(cr_batch(&run, i % 2 ? b : a, i % 2 ? a : b, i % 2 == 0, &corr, &seed), 0);
  /* Positions as the switch reports them, before stopping it. */
  tc_client *adm = so_admin_connect(t);
  so_position pa = so_get_position(t, adm, "alpha"), pb = so_get_position(t, adm, "beta");
  int status = 0;
  cr_assert_eq(sh_stop(t->h, SO_T_STOP, &status), 0);
  so_drop_all(t);
  cr_assert_eq(run.told_conflicts, 0, "no two operators told different outcomes");
  so_check_ledger(t); /* balanced, journal verified */

  ledger *l = NULL;
  ledger_options lo = {0};
  lo.flags = LEDGER_OPEN_READ_ONLY;
  cr_assert_eq(ledger_open(t->h->ledger_dir, &lo, &l), 0);
  size_t told_c = 0, told_a = 0, unknown = 0, unknown_posted = 0;
  int64_t alpha_delta = 0; /* what the ledger posted, seen from alpha */
  for (size_t i = 0; i < run.n; i++) {
    cr_transfer *x = &run.x[i];
    ledger_pending_state st = LEDGER_PENDING_NONE;
    int rc = ledger_pending_state_of(l, so_wire_id(x->id), &st, NULL);
    int posted = rc == 0 && st == LEDGER_PENDING_POSTED;
    if (posted) {
      ledger_transfer lt;
      cr_assert_eq(ledger_lookup_transfer(l, so_wire_id(x->id), &lt), 0);
      cr_assert_eq(lt.amount, x->amount, "transfer %zu: posted %llu, sent %llu", i,
                   (unsigned long long)lt.amount, (unsigned long long)x->amount);
      alpha_delta += x->from_alpha ? -(int64_t)x->amount : (int64_t)x->amount;
    }
    if (x->told == SO_ST_COMMITTED) {
      told_c++;
      cr_assert(posted, "transfer %zu: told COMMITTED, not posted (rc %d, %s)", i, rc,
                so_pending_name(st));
    } else if (x->told) {
      told_a++;
      cr_assert(!posted, "transfer %zu: told %s, but posted", i, so_state_name(x->told));
    } else {
      unknown++;
      unknown_posted += posted;
    }
  }
  ledger_close(l);
  cr_assert_eq((int64_t)pa.liquidity, (int64_t)SH_DEPOSIT + alpha_delta,
               "alpha's liquidity = deposit + what the ledger posted");
  cr_assert_eq((int64_t)pb.liquidity, (int64_t)SH_DEPOSIT - alpha_delta,
               "beta's liquidity = deposit - what the ledger posted");
  cr_log_info("kill9_under_load: %d kills mid-batch, %zu transfers: %zu told committed, %zu told "
              "aborted/expired, %zu cut off by a kill (%zu of them posted)",
              killed_mid_batch, run.n, told_c, told_a, unknown, unknown_posted);
  cr_assert_gt(told_c, 0);
  free(run.x);
  sh_destroy(t->h, getenv("TUMA_TEST_KEEP") == NULL);
  t->h = NULL;
}
