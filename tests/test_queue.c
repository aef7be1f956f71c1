/* test_queue.c — the ledger's writer thread (ledger/queue.h): group commit, callbacks exactly
 * once with the right results, bounded queue (would-block and blocking submits), request
 * validation, closing (drain, refusals once closing began) and expiry pulses that need no
 * submission. Callbacks run on the writer thread, so they only record what they saw; the test
 * thread asserts. Every wait is bounded.
 */
#include "ledger_fixture.h"
#include "queue.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { Q_MAX_EVENTS = 4 };

/* One submitted request and what its callback saw. */
typedef struct q_req {
  ledger_event ev[Q_MAX_EVENTS];
  ledger_result want[Q_MAX_EVENTS];
  size_t n;
  atomic_int calls;
  int status;
  int events_ok;  /* the callback got a copy of exactly these events */
  int results_ok; /* and exactly the wanted results */
  ledger_result got[Q_MAX_EVENTS];
  atomic_uint_fast64_t *done; /* incremented after each call; may be NULL */
  /* A gate: when set, the callback announces itself in *entered, then waits (at most 20 s)
   * for *release. */
  atomic_int *entered, *release;
} q_req;

static uint64_t q_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void q_sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void q_done_cb(int status, const ledger_event *events, const ledger_result *results,
                      size_t n, void *arg) {
  q_req *r = arg;
  r->status = status;
  r->events_ok = n == r->n && memcmp(events, r->ev, n * sizeof *events) == 0;
  r->results_ok = n == r->n;
  for (size_t i = 0; i < n && i < Q_MAX_EVENTS; i++) {
    r->got[i] = results[i];
    if (results[i] != r->want[i])
      r->results_ok = 0;
  }
  if (r->entered) {
    atomic_store(r->entered, 1);
    uint64_t end = q_now_ns() + 20000000000ull;
    while (!atomic_load(r->release) && q_now_ns() < end)
      q_sleep_ms(1);
  }
  atomic_fetch_add(&r->calls, 1);
  if (r->done)
    atomic_fetch_add(r->done, 1);
}

/* Waits until *counter reaches want (at most timeout_ms); returns whether it did. */
static int q_wait_count(atomic_uint_fast64_t *counter, uint64_t want, unsigned timeout_ms) {
  uint64_t end = q_now_ns() + (uint64_t)timeout_ms * 1000000ull;
  while (atomic_load(counter) < want) {
    if (q_now_ns() > end)
      return 0;
    q_sleep_ms(1);
  }
  return 1;
}

static int q_wait_flag(atomic_int *flag, unsigned timeout_ms) {
  uint64_t end = q_now_ns() + (uint64_t)timeout_ms * 1000000ull;
  while (!atomic_load(flag)) {
    if (q_now_ns() > end)
      return 0;
    q_sleep_ms(1);
  }
  return 1;
}

static void q_assert_called_once(const q_req *r, const char *what, size_t i) {
  cr_assert_eq(atomic_load(&r->calls), 1, "%s %zu: callback called %d times", what, i,
               atomic_load(&r->calls));
  cr_assert_eq(r->status, 0, "%s %zu: status %s", what, i, ledger_strerror(r->status));
  cr_assert(r->events_ok, "%s %zu: the callback got other events", what, i);
  for (size_t k = 0; k < r->n; k++)
    cr_assert_eq(r->got[k], r->want[k], "%s %zu event %zu: got %s, want %s", what, i, k,
                 ledger_result_name(r->got[k]), ledger_result_name(r->want[k]));
  cr_assert(r->results_ok);
}

/* A request of one transfer debit → credit that succeeds. */
static void q_simple(q_req *r, uint64_t id, uint64_t debit, uint64_t credit, uint64_t amount) {
  r->n = 1;
  r->ev[0] = fixture_transfer(id, debit, credit, amount, 0);
  r->want[0] = LEDGER_OK;
}

static uint64_t q_head(ledger *l) {
  uint64_t seq = 0;
  uint8_t hash[32];
  cr_assert_eq(ledger_journal_head(l, &seq, hash), 0);
  return seq;
}

/* A ledger with accounts 1..4 (created directly, before any queue starts). */
static ledger *q_open(char **dir, const ledger_options *opts) {
  *dir = fixture_tmpdir();
  ledger *l = NULL;
  int rc = ledger_open(*dir, opts, &l);
  cr_assert_eq(rc, 0, "ledger_open: %s", ledger_strerror(rc));
  ledger_event ev[4];
  for (uint64_t a = 0; a < 4; a++)
    ev[a] = fixture_account(a + 1, 0);
  fixture_apply(l, ev, NULL, 4);
  return l;
}

static void q_finish(ledger *l, char *dir) {
  fixture_assert_invariants(l);
  uint64_t bad = 0;
  cr_assert_eq(ledger_journal_verify(l, &bad), 0, "journal breaks at %" PRIu64, bad);
  ledger_close(l);
  fixture_rmtree(dir);
  free(dir);
}

/* ---- many submitters ---------------------------------------------------------------- */

enum { Q_THREADS = 4, Q_PER_THREAD = 400 };

typedef struct q_submitter {
  ledger_queue *q;
  q_req *reqs;  /* Q_PER_THREAD of them */
  int failures; /* submits that did not return 0 */
} q_submitter;

static void *q_submit_thread(void *arg) {
  q_submitter *s = arg;
  for (size_t j = 0; j < Q_PER_THREAD; j++) {
    q_req *r = &s->reqs[j];
    if (ledger_queue_submit(s->q, r->ev, r->n, q_done_cb, r, LEDGER_SUBMIT_WAIT) != 0)
      s->failures++;
  }
  return NULL;
}

/* Request j of thread t: alternately a plain transfer, a request whose linked chain fails next
 * to a transfer that succeeds, and a linked chain that succeeds. */
static void q_build_mixed(q_req *r, size_t t, size_t j, atomic_uint_fast64_t *done) {
  uint64_t base = (uint64_t)(t + 1) * 1000000 + j * 4 + 1;
  memset(r, 0, sizeof *r);
  r->done = done;
  switch (j % 3) {
  case 0:
    q_simple(r, base, 1, 2, 1);
    break;
  case 1:
    r->n = 3;
    r->ev[0] = fixture_transfer(base, 2, 3, 2, 0);
    r->ev[1] = fixture_transfer(base + 1, 3, 4, 1, LEDGER_TRANSFER_LINKED);
    r->ev[2] = fixture_transfer(base + 2, 4, 4, 1, 0);
    r->want[0] = LEDGER_OK;
    r->want[1] = LEDGER_LINKED_EVENT_FAILED;
    r->want[2] = LEDGER_ACCOUNTS_MUST_BE_DIFFERENT;
    break;
  default:
    r->n = 2;
    r->ev[0] = fixture_transfer(base, 3, 1, 3, LEDGER_TRANSFER_LINKED);
    r->ev[1] = fixture_transfer(base + 1, 1, 4, 1, 0);
    r->want[0] = r->want[1] = LEDGER_OK;
    break;
  }
}

Test(queue, concurrent_submitters_get_group_commit, .timeout = 60) {
  char *dir = NULL;
  ledger *l = q_open(&dir, NULL);
  uint64_t head0 = q_head(l);
  ledger_queue *q = NULL;
  cr_assert_eq(ledger_queue_start(l, NULL, &q), 0);
  atomic_uint_fast64_t done = 0;
  q_req *reqs = calloc(Q_THREADS * Q_PER_THREAD, sizeof *reqs);
  cr_assert_not_null(reqs);
  uint64_t total_events = 0;
  for (size_t t = 0; t < Q_THREADS; t++)
    for (size_t j = 0; j < Q_PER_THREAD; j++) {
      q_build_mixed(&reqs[t * Q_PER_THREAD + j], t, j, &done);
      total_events += reqs[t * Q_PER_THREAD + j].n;
    }
  q_submitter subs[Q_THREADS];
  pthread_t th[Q_THREADS];
  for (size_t t = 0; t < Q_THREADS; t++) {
    subs[t] = (q_submitter){.q = q, .reqs = &reqs[t * Q_PER_THREAD]};
    cr_assert_eq(pthread_create(&th[t], NULL, q_submit_thread, &subs[t]), 0);
  }
  for (size_t t = 0; t < Q_THREADS; t++) {
    cr_assert_eq(pthread_join(th[t], NULL), 0);
    cr_assert_eq(subs[t].failures, 0, "thread %zu: %d submits failed", t, subs[t].failures);
  }
  const size_t nreq = Q_THREADS * Q_PER_THREAD;
  cr_assert(q_wait_count(&done, nreq, 30000), "%" PRIuFAST64 " of %zu callbacks after 30 s",
            atomic_load(&done), nreq);
  ledger_queue_stats st;
  ledger_queue_stats_of(q, &st);
  cr_log_info("%zu requests, %" PRIu64 " events in %" PRIu64 " batches", nreq, st.events,
              st.batches);
  cr_assert_eq(st.events, total_events, "stats: %" PRIu64 " events applied, %" PRIu64 " sent",
               st.events, total_events);
  cr_assert_eq(st.queued_events, 0);
  cr_assert_geq(st.batches, 1);
  cr_assert_lt(st.batches, nreq, "no group commit: %" PRIu64 " batches for %zu requests",
               st.batches, nreq);
  cr_assert_geq(st.last_batch_events, 1);
  cr_assert_leq(st.last_batch_events, LEDGER_BATCH_MAX);
  cr_assert_gt(st.last_commit_ns, 0);
  cr_assert_eq(q_head(l) - head0, st.batches, "journal records %" PRIu64 " vs batches %" PRIu64,
               q_head(l) - head0, st.batches);
  for (size_t i = 0; i < nreq; i++)
    q_assert_called_once(&reqs[i], "request", i);
  ledger_queue_close(q);
  /* No callback ran again at close; every successful transfer is there. */
  uint64_t posted[5] = {0}, credited[5] = {0};
  for (size_t i = 0; i < nreq; i++) {
    cr_assert_eq(atomic_load(&reqs[i].calls), 1);
    for (size_t k = 0; k < reqs[i].n; k++) {
      const ledger_transfer *t = &reqs[i].ev[k].transfer;
      ledger_transfer got;
      int rc = ledger_lookup_transfer(l, t->id, &got);
      if (reqs[i].want[k] != LEDGER_OK) {
        cr_assert_eq(rc, LEDGER_E_NOTFOUND);
        continue;
      }
      cr_assert_eq(rc, 0, "request %zu event %zu missing", i, k);
      cr_assert_eq(got.amount, t->amount);
      posted[t->debit_account_id.lo] += t->amount;
      credited[t->credit_account_id.lo] += t->amount;
    }
  }
  for (uint64_t a = 1; a <= 4; a++) {
    ledger_account acc;
    cr_assert_eq(ledger_lookup_account(l, ledger_id_make(0, a), &acc), 0);
    cr_assert_eq(acc.debits_posted, posted[a], "account %" PRIu64, a);
    cr_assert_eq(acc.credits_posted, credited[a], "account %" PRIu64, a);
  }
  free(reqs);
  q_finish(l, dir);
}

/* ---- closing drains ----------------------------------------------------------------- */

Test(queue, close_drains_everything_queued, .timeout = 60) {
  char *dir = NULL;
  ledger *l = q_open(&dir, NULL);
  uint64_t head0 = q_head(l);
  ledger_queue *q = NULL;
  ledger_queue_options o = {.max_batch = 8};
  cr_assert_eq(ledger_queue_start(l, &o, &q), 0);
  enum { N = 600 };
  q_req *reqs = calloc(N, sizeof *reqs);
  cr_assert_not_null(reqs);
  atomic_uint_fast64_t done = 0;
  for (size_t i = 0; i < N; i++) {
    q_simple(&reqs[i], 100 + i, 1 + i % 4, 1 + (i + 1) % 4, 1 + i % 5);
    reqs[i].done = &done;
    cr_assert_eq(ledger_queue_submit(q, reqs[i].ev, 1, q_done_cb, &reqs[i], 0), 0);
  }
  /* With batches of 8 and a sync each, most requests are still queued now. */
  uint64_t before_close = atomic_load(&done);
  ledger_queue_close(q);
  cr_log_info("%" PRIu64 " of %d callbacks had run when close began", before_close, N);
  cr_assert_eq(atomic_load(&done), N, "close returned with %" PRIuFAST64 " of %d callbacks run",
               atomic_load(&done), N);
  for (size_t i = 0; i < N; i++) {
    q_assert_called_once(&reqs[i], "request", i);
    ledger_transfer t;
    cr_assert_eq(ledger_lookup_transfer(l, reqs[i].ev[0].transfer.id, &t), 0);
  }
  cr_assert_geq(q_head(l) - head0, N / 8, "batches were bigger than max_batch");
  free(reqs);
  q_finish(l, dir);
}

/* ---- a full queue ------------------------------------------------------------------- */

typedef struct q_waiter {
  ledger_queue *q;
  q_req *r;
  int rc;
  atomic_int returned;
} q_waiter;

static void *q_wait_submit_thread(void *arg) {
  q_waiter *w = arg;
  w->rc = ledger_queue_submit(w->q, w->r->ev, w->r->n, q_done_cb, w->r, LEDGER_SUBMIT_WAIT);
  atomic_store(&w->returned, 1);
  return NULL;
}

Test(queue, full_queue_says_again_or_waits, .timeout = 60) {
  char *dir = NULL;
  ledger *l = q_open(&dir, NULL);
  ledger_queue *q = NULL;
  ledger_queue_options o = {.capacity = 8, .max_batch = 4};
  cr_assert_eq(ledger_queue_start(l, &o, &q), 0);
  atomic_int entered = 0, release = 0;
  atomic_uint_fast64_t done = 0;
  enum { N = 16 };
  q_req *reqs = calloc(N, sizeof *reqs);
  cr_assert_not_null(reqs);
  for (size_t i = 0; i < N; i++) {
    q_simple(&reqs[i], 100 + i, 1, 2, 1);
    reqs[i].done = &done;
  }
  /* Request 0 holds the writer in its callback. */
  reqs[0].entered = &entered;
  reqs[0].release = &release;
  cr_assert_eq(ledger_queue_submit(q, reqs[0].ev, 1, q_done_cb, &reqs[0], 0), 0);
  cr_assert(q_wait_flag(&entered, 5000), "the first request's callback never ran");
  ledger_queue_stats st;
  ledger_queue_stats_of(q, &st);
  cr_assert_eq(st.queued_events, 0);

  /* Six 1-event requests fit; a 3-event one does not (6 + 3 > 8); a 2-event one does. */
  for (size_t i = 1; i <= 6; i++)
    cr_assert_eq(ledger_queue_submit(q, reqs[i].ev, 1, q_done_cb, &reqs[i], 0), 0,
                 "request %zu refused with %zu of 8 events queued", i, i - 1);
  reqs[7].n = 3;
  reqs[7].ev[1] = fixture_transfer(200, 1, 2, 1, 0);
  reqs[7].ev[2] = fixture_transfer(201, 1, 2, 1, 0);
  reqs[7].want[1] = reqs[7].want[2] = LEDGER_OK;
  int rc = ledger_queue_submit(q, reqs[7].ev, 3, q_done_cb, &reqs[7], 0);
  cr_assert_eq(rc, LEDGER_E_AGAIN, "3 events into 2 free slots: %s", ledger_strerror(rc));
  reqs[8].n = 2;
  reqs[8].ev[1] = fixture_transfer(202, 1, 2, 1, 0);
  reqs[8].want[1] = LEDGER_OK;
  cr_assert_eq(ledger_queue_submit(q, reqs[8].ev, 2, q_done_cb, &reqs[8], 0), 0);
  ledger_queue_stats_of(q, &st);
  cr_assert_eq(st.queued_events, 8);
  rc = ledger_queue_submit(q, reqs[9].ev, 1, q_done_cb, &reqs[9], 0);
  cr_assert_eq(rc, LEDGER_E_AGAIN, "a full queue accepted: %s", ledger_strerror(rc));

  /* With LEDGER_SUBMIT_WAIT the same submit blocks until there is room. */
  q_waiter w = {.q = q, .r = &reqs[10]};
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, q_wait_submit_thread, &w), 0);
  q_sleep_ms(300);
  cr_assert_eq(atomic_load(&w.returned), 0, "a waiting submit returned %s on a full queue",
               ledger_strerror(w.rc));
  cr_assert_eq(atomic_load(&reqs[10].calls), 0);
  atomic_store(&release, 1);
  cr_assert(q_wait_flag(&w.returned, 10000), "the waiting submit never returned");
  cr_assert_eq(pthread_join(th, NULL), 0);
  cr_assert_eq(w.rc, 0, "waiting submit: %s", ledger_strerror(w.rc));

  /* 0, 1..6, 8 and 10 were accepted: 9 callbacks. */
  cr_assert(q_wait_count(&done, 9, 10000), "%" PRIuFAST64 " of 9 callbacks", atomic_load(&done));
  ledger_queue_close(q);
  cr_assert_eq(atomic_load(&done), 9);
  for (size_t i = 0; i <= 10; i++) {
    if (i == 7 || i == 9) {
      cr_assert_eq(atomic_load(&reqs[i].calls), 0, "refused request %zu was called back", i);
      ledger_transfer t;
      cr_assert_eq(ledger_lookup_transfer(l, reqs[i].ev[0].transfer.id, &t), LEDGER_E_NOTFOUND);
      continue;
    }
    q_assert_called_once(&reqs[i], "request", i);
  }
  free(reqs);
  q_finish(l, dir);
}

/* ---- invalid requests --------------------------------------------------------------- */

Test(queue, invalid_requests_are_refused, .timeout = 60) {
  char *dir = NULL;
  ledger *l = q_open(&dir, NULL);
  ledger_queue *q = NULL;
  ledger_queue_options bad = {.max_batch = LEDGER_BATCH_MAX + 1};
  int rc = ledger_queue_start(l, &bad, &q);
  cr_assert_eq(rc, LEDGER_E_INVAL, "max_batch above LEDGER_BATCH_MAX: %s", ledger_strerror(rc));
  q = NULL;
  ledger_queue_options o = {.max_batch = 4};
  cr_assert_eq(ledger_queue_start(l, &o, &q), 0);
  atomic_uint_fast64_t done = 0;
  q_req r[6];
  memset(r, 0, sizeof r);
  for (size_t i = 0; i < 6; i++) {
    r[i].done = &done;
    r[i].n = 2;
    r[i].ev[0] = fixture_transfer(100 + 4 * i, 1, 2, 1, LEDGER_TRANSFER_LINKED);
    r[i].ev[1] = fixture_transfer(101 + 4 * i, 2, 3, 1, 0);
    r[i].ev[2] = fixture_transfer(102 + 4 * i, 2, 3, 1, 0);
    r[i].ev[3] = fixture_transfer(103 + 4 * i, 2, 3, 1, 0);
  }
  rc = ledger_queue_submit(q, r[0].ev, 0, q_done_cb, &r[0], 0);
  cr_assert_eq(rc, LEDGER_E_INVAL, "n = 0: %s", ledger_strerror(rc));
  ledger_event five[5];
  for (size_t i = 0; i < 5; i++)
    five[i] = fixture_transfer(200 + i, 1, 2, 1, 0);
  rc = ledger_queue_submit(q, five, 5, q_done_cb, &r[1], 0);
  cr_assert_eq(rc, LEDGER_E_INVAL, "n > max_batch: %s", ledger_strerror(rc));
  rc = ledger_queue_submit(q, r[2].ev, 1, q_done_cb, &r[2], 0); /* ends linked */
  cr_assert_eq(rc, LEDGER_E_INVAL, "a request ending linked: %s", ledger_strerror(rc));
  r[3].ev[3].transfer.flags = LEDGER_TRANSFER_LINKED;
  rc = ledger_queue_submit(q, r[3].ev, 4, q_done_cb, &r[3], 0);
  cr_assert_eq(rc, LEDGER_E_INVAL, "a request ending linked: %s", ledger_strerror(rc));
  ledger_event acc = fixture_account(50, LEDGER_ACCOUNT_LINKED);
  rc = ledger_queue_submit(q, &acc, 1, q_done_cb, &r[4], 0);
  cr_assert_eq(rc, LEDGER_E_INVAL, "a request ending with a linked account: %s",
               ledger_strerror(rc));
  /* A linked chain that closes inside the request is fine. */
  r[5].want[0] = r[5].want[1] = LEDGER_OK;
  cr_assert_eq(ledger_queue_submit(q, r[5].ev, 2, q_done_cb, &r[5], 0), 0);
  cr_assert(q_wait_count(&done, 1, 10000));
  ledger_queue_close(q);
  cr_assert_eq(atomic_load(&done), 1);
  for (size_t i = 0; i < 5; i++)
    cr_assert_eq(atomic_load(&r[i].calls), 0, "refused request %zu was called back", i);
  q_assert_called_once(&r[5], "request", 5);
  ledger_transfer t;
  cr_assert_eq(ledger_lookup_transfer(l, five[0].transfer.id, &t), LEDGER_E_NOTFOUND);
  cr_assert_eq(ledger_lookup_transfer(l, r[2].ev[0].transfer.id, &t), LEDGER_E_NOTFOUND);
  ledger_account none;
  cr_assert_eq(ledger_lookup_account(l, acc.account.id, &none), LEDGER_E_NOTFOUND);

  /* With the default max_batch, LEDGER_BATCH_MAX events are one request, one more is not. */
  cr_assert_eq(ledger_queue_start(l, NULL, &q), 0);
  ledger_event *big = calloc(LEDGER_BATCH_MAX + 1, sizeof *big);
  cr_assert_not_null(big);
  for (size_t i = 0; i < LEDGER_BATCH_MAX + 1; i++)
    big[i] = fixture_transfer(100000 + i, 1 + i % 3, 4, 1, 0);
  q_req bigreq = {.done = &done};
  rc = ledger_queue_submit(q, big, LEDGER_BATCH_MAX + 1, q_done_cb, &bigreq, 0);
  cr_assert_eq(rc, LEDGER_E_INVAL, "n = LEDGER_BATCH_MAX + 1: %s", ledger_strerror(rc));
  q_req *full = calloc(1, sizeof *full); /* more events than a q_req holds: checked below */
  cr_assert_not_null(full);
  full->done = &done;
  cr_assert_eq(ledger_queue_submit(q, big, LEDGER_BATCH_MAX, q_done_cb, full, 0), 0);
  cr_assert(q_wait_count(&done, 2, 20000));
  ledger_queue_close(q);
  cr_assert_eq(atomic_load(&bigreq.calls), 0);
  cr_assert_eq(atomic_load(&full->calls), 1);
  cr_assert_eq(full->status, 0);
  ledger_account a4;
  cr_assert_eq(ledger_lookup_account(l, ledger_id_make(0, 4), &a4), 0);
  cr_assert_eq(a4.credits_posted, LEDGER_BATCH_MAX,
               "the full-size request was not applied "
               "in full");
  free(full);
  free(big);
  ledger_queue_close(NULL); /* accepted, does nothing */
  q_finish(l, dir);
}

/* ---- closing refuses new work ------------------------------------------------------- */

typedef struct q_closer {
  ledger_queue *q;
  atomic_int returned;
} q_closer;

static void *q_close_thread(void *arg) {
  q_closer *c = arg;
  ledger_queue_close(c->q);
  atomic_store(&c->returned, 1);
  return NULL;
}

Test(queue, submits_after_close_began_are_refused, .timeout = 60) {
  char *dir = NULL;
  ledger *l = q_open(&dir, NULL);
  ledger_queue *q = NULL;
  cr_assert_eq(ledger_queue_start(l, NULL, &q), 0);
  enum { N = 2000 };
  q_req *reqs = calloc(N, sizeof *reqs);
  cr_assert_not_null(reqs);
  atomic_uint_fast64_t done = 0;
  atomic_int entered = 0, release = 0;
  for (size_t i = 0; i < N; i++) {
    q_simple(&reqs[i], 100 + i, 1, 2, 1);
    reqs[i].done = &done;
  }
  reqs[0].entered = &entered;
  reqs[0].release = &release;
  cr_assert_eq(ledger_queue_submit(q, reqs[0].ev, 1, q_done_cb, &reqs[0], 0), 0);
  cr_assert(q_wait_flag(&entered, 5000), "the first callback never ran");
  /* The writer is held in request 0's callback, so close cannot finish (and free the queue)
   * while this thread still submits. */
  q_closer c = {.q = q};
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, q_close_thread, &c), 0);
  size_t i = 1, accepted = 1;
  int rc = 0;
  for (; i < N; i++) {
    rc = ledger_queue_submit(q, reqs[i].ev, 1, q_done_cb, &reqs[i], 0);
    if (rc != 0)
      break;
    accepted++;
    q_sleep_ms(1);
  }
  cr_assert_eq(rc, LEDGER_E_CLOSED, "submits during close: %s after %zu accepted",
               ledger_strerror(rc), accepted);
  size_t closed_at = i;
  /* Once closed, it stays closed, also for a waiting submit. */
  for (size_t k = closed_at + 1; k < closed_at + 4 && k < N; k++) {
    rc = ledger_queue_submit(q, reqs[k].ev, 1, q_done_cb, &reqs[k], k % 2 ? LEDGER_SUBMIT_WAIT : 0);
    cr_assert_eq(rc, LEDGER_E_CLOSED, "submit %zu after close began: %s", k, ledger_strerror(rc));
  }
  cr_assert_eq(atomic_load(&c.returned), 0, "close returned while a callback was running");
  atomic_store(&release, 1);
  cr_assert(q_wait_flag(&c.returned, 20000), "close never returned");
  cr_assert_eq(pthread_join(th, NULL), 0);
  cr_log_info("%zu requests accepted before close began", accepted);
  cr_assert_eq(atomic_load(&done), accepted);
  for (size_t k = 0; k < N; k++) {
    ledger_transfer t;
    int found = ledger_lookup_transfer(l, reqs[k].ev[0].transfer.id, &t);
    if (k < accepted) {
      q_assert_called_once(&reqs[k], "accepted request", k);
      cr_assert_eq(found, 0);
    } else {
      cr_assert_eq(atomic_load(&reqs[k].calls), 0, "refused request %zu was called back", k);
      cr_assert_eq(found, LEDGER_E_NOTFOUND);
    }
  }
  free(reqs);
  q_finish(l, dir);
}

/* ---- expiry without submissions ------------------------------------------------------ */

typedef struct q_last {
  uint32_t events, expired;
  uint64_t first_expired_lo;
} q_last;

static int q_last_cb(uint64_t seq, const void *record, size_t len, void *arg) {
  (void)seq;
  q_last *out = arg;
  const unsigned char *b = record;
  if (len < 64 + 16)
    return -1;
  memcpy(&out->events, b + 56, 4);
  memcpy(&out->expired, b + 60, 4);
  memcpy(&out->first_expired_lo, b + 64, 8);
  return 0;
}

Test(queue, expiry_happens_without_submissions, .timeout = 60) {
  struct timespec rt;
  clock_gettime(CLOCK_REALTIME, &rt);
  _Atomic uint64_t now = (uint64_t)rt.tv_sec * 1000000000ull + (uint64_t)rt.tv_nsec;
  ledger_options opts = {.clock = fixture_atomic_clock_cb, .clock_arg = &now};
  char *dir = NULL;
  ledger *l = q_open(&dir, &opts);
  uint64_t head0 = q_head(l);
  ledger_queue *q = NULL;
  cr_assert_eq(ledger_queue_start(l, NULL, &q), 0);
  atomic_uint_fast64_t done = 0;
  q_req r[2];
  memset(r, 0, sizeof r);
  r[0].done = r[1].done = &done;
  r[0].n = 2;
  r[0].ev[0] = fixture_account(10, LEDGER_ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS);
  r[0].ev[1] = fixture_transfer(100, 1, 10, 100, 0); /* fund account 10 */
  r[0].want[0] = r[0].want[1] = LEDGER_OK;
  cr_assert_eq(ledger_queue_submit(q, r[0].ev, 2, q_done_cb, &r[0], 0), 0);
  cr_assert(q_wait_count(&done, 1, 10000));
  q_simple(&r[1], 101, 10, 2, 60);
  r[1].ev[0].transfer.flags = LEDGER_TRANSFER_PENDING;
  r[1].ev[0].transfer.timeout = 1;
  cr_assert_eq(ledger_queue_submit(q, r[1].ev, 1, q_done_cb, &r[1], 0), 0);
  cr_assert(q_wait_count(&done, 2, 10000));
  q_assert_called_once(&r[0], "request", 0);
  q_assert_called_once(&r[1], "request", 1);
  ledger_transfer p;
  cr_assert_eq(ledger_lookup_transfer(l, ledger_id_make(0, 101), &p), 0);
  uint64_t due = 0;
  cr_assert_eq(ledger_next_expiry(l, &due), 0);
  cr_assert_eq(due, p.timestamp + 1000000000ull);
  uint64_t head1 = q_head(l);
  cr_assert_eq(head1 - head0, 2);

  /* The ledger's clock stands still: 1.3 s of real time expire nothing. */
  q_sleep_ms(1300);
  ledger_pending_state st = LEDGER_PENDING_NONE;
  cr_assert_eq(ledger_pending_state_of(l, p.id, &st, NULL), 0);
  cr_assert_eq(st, LEDGER_PENDING_OPEN, "expired by the wall clock, not the ledger's");
  cr_assert_eq(q_head(l), head1);

  /* Two seconds later on the ledger's clock, the writer expires it by itself. */
  atomic_fetch_add(&now, 2000000000ull);
  uint64_t end = q_now_ns() + 5000000000ull;
  uint64_t resolved = 0;
  do {
    q_sleep_ms(5);
    cr_assert_eq(ledger_pending_state_of(l, p.id, &st, &resolved), 0);
  } while (st != LEDGER_PENDING_EXPIRED && q_now_ns() < end);
  cr_assert_eq(st, LEDGER_PENDING_EXPIRED, "not expired 5 s after it was due (state %d)", (int)st);
  cr_assert_geq(resolved, due);
  cr_assert_eq(q_head(l), head1 + 1, "one record for the expiry");
  q_last last = {0};
  cr_assert_eq(ledger_journal_scan(l, head1 + 1, q_last_cb, &last), 0);
  cr_assert_eq(last.events, 0);
  cr_assert_eq(last.expired, 1);
  cr_assert_eq(last.first_expired_lo, 101);
  ledger_account a10;
  cr_assert_eq(ledger_lookup_account(l, ledger_id_make(0, 10), &a10), 0);
  cr_assert_eq(a10.debits_pending, 0);
  cr_assert_eq(a10.debits_posted, 0);
  cr_assert_eq(a10.credits_posted, 100);
  cr_assert_eq(ledger_next_expiry(l, &due), 0);
  cr_assert_eq(due, 0);
  ledger_queue_stats qs;
  ledger_queue_stats_of(q, &qs);
  cr_assert_eq(qs.events, 3, "stats: %" PRIu64 " events", qs.events);
  cr_assert_eq(qs.queued_events, 0);
  /* Every batch the writer counts is one journal record: a wake-up that expired nothing
   * committed nothing and is no batch. (cr_expect: the checks below still run.) */
  cr_expect_eq(qs.batches, q_head(l) - head0,
               "stats: %" PRIu64 " batches, but %" PRIu64 " journal records were written",
               qs.batches, q_head(l) - head0);
  /* After the expiry the queue still works and the expired funds are available again. */
  q_req r2;
  memset(&r2, 0, sizeof r2);
  r2.done = &done;
  q_simple(&r2, 102, 10, 2, 100);
  cr_assert_eq(ledger_queue_submit(q, r2.ev, 1, q_done_cb, &r2, 0), 0);
  cr_assert(q_wait_count(&done, 3, 10000));
  ledger_queue_close(q);
  q_assert_called_once(&r2, "request", 2);
  q_finish(l, dir);
}

/* ---- batching boundaries ------------------------------------------------------------ */

typedef struct q_counts {
  size_t records;
  uint32_t min_events, max_events;
  int bad; /* a record with an event count that is not a multiple of `unit` */
  uint32_t unit;
} q_counts;

static int q_count_cb(uint64_t seq, const void *record, size_t len, void *arg) {
  (void)seq;
  q_counts *c = arg;
  if (len < 64)
    return -1;
  uint32_t events;
  memcpy(&events, (const unsigned char *)record + 56, 4);
  c->records++;
  if (events < c->min_events)
    c->min_events = events;
  if (events > c->max_events)
    c->max_events = events;
  if (c->unit && events % c->unit)
    c->bad = 1;
  return 0;
}

Test(queue, requests_are_never_split_across_batches, .timeout = 60) {
  /* max_batch 7 and requests of 3 events: a batch holds at most two whole requests, never a
   * part of one. Each request ends with a linked chain that fails, so a request joined to
   * its neighbour's chain, or split, would change results. */
  char *dir = NULL;
  ledger *l = q_open(&dir, NULL);
  uint64_t head0 = q_head(l);
  ledger_queue *q = NULL;
  ledger_queue_options o = {.max_batch = 7};
  cr_assert_eq(ledger_queue_start(l, &o, &q), 0);
  enum { N = 300 };
  q_req *reqs = calloc(N, sizeof *reqs);
  cr_assert_not_null(reqs);
  atomic_uint_fast64_t done = 0;
  for (size_t i = 0; i < N; i++) {
    q_req *r = &reqs[i];
    r->done = &done;
    r->n = 3;
    r->ev[0] = fixture_transfer(1000 + 3 * i, 1, 2, 1, 0);
    r->ev[1] = fixture_transfer(1001 + 3 * i, 2, 3, 1, LEDGER_TRANSFER_LINKED);
    r->ev[2] = fixture_transfer(1002 + 3 * i, 3, 99, 1, 0);
    r->want[0] = LEDGER_OK;
    r->want[1] = LEDGER_LINKED_EVENT_FAILED;
    r->want[2] = LEDGER_CREDIT_ACCOUNT_NOT_FOUND;
    cr_assert_eq(ledger_queue_submit(q, r->ev, 3, q_done_cb, r, LEDGER_SUBMIT_WAIT), 0);
  }
  cr_assert(q_wait_count(&done, N, 30000));
  ledger_queue_stats st;
  ledger_queue_stats_of(q, &st);
  ledger_queue_close(q);
  for (size_t i = 0; i < N; i++)
    q_assert_called_once(&reqs[i], "request", i);
  q_counts c = {.min_events = UINT32_MAX, .unit = 3};
  cr_assert_eq(ledger_journal_scan(l, head0 + 1, q_count_cb, &c), 0);
  cr_log_info("%zu records of %u..%u events", c.records, c.min_events, c.max_events);
  cr_assert_eq(c.records, st.batches);
  cr_assert(!c.bad, "a record holds part of a request");
  cr_assert_geq(c.min_events, 3);
  cr_assert_leq(c.max_events, 6, "a batch above max_batch");
  cr_assert_geq(c.records, N / 2);
  free(reqs);
  q_finish(l, dir);
}

/* ---- a failing batch ---------------------------------------------------------------- */

typedef struct q_bulk {
  atomic_int calls;
  int status;
  size_t n;
  size_t full, ok, other;
} q_bulk;

static void q_bulk_cb(int status, const ledger_event *events, const ledger_result *results,
                      size_t n, void *arg) {
  (void)events;
  q_bulk *b = arg;
  b->status = status;
  b->n = n;
  for (size_t i = 0; i < n; i++) {
    if (results[i] == LEDGER_BATCH_STORAGE_FULL)
      b->full++;
    else if (results[i] == LEDGER_OK)
      b->ok++;
    else
      b->other++;
  }
  atomic_fetch_add(&b->calls, 1);
}

static int q_wait_calls(atomic_int *calls, int want, unsigned timeout_ms) {
  uint64_t end = q_now_ns() + (uint64_t)timeout_ms * 1000000ull;
  while (atomic_load(calls) < want) {
    if (q_now_ns() > end)
      return 0;
    q_sleep_ms(1);
  }
  return 1;
}

Test(queue, a_batch_that_does_not_fit_fails_whole_and_the_queue_goes_on, .timeout = 60) {
  /* A 2 MiB map that may not grow: a batch of LEDGER_BATCH_MAX transfers cannot fit. Its
   * requests' callbacks get LEDGER_E_FULL and BATCH_STORAGE_FULL results, nothing of it is
   * committed, and the next small request succeeds. */
  ledger_options opts = {.map_size = 2u << 20, .map_size_max = 2u << 20};
  char *dir = NULL;
  ledger *l = q_open(&dir, &opts);
  uint64_t head0 = q_head(l);
  ledger_queue *q = NULL;
  cr_assert_eq(ledger_queue_start(l, NULL, &q), 0);
  ledger_event *big = calloc(LEDGER_BATCH_MAX, sizeof *big);
  cr_assert_not_null(big);
  for (size_t i = 0; i < LEDGER_BATCH_MAX; i++)
    big[i] = fixture_transfer(100000 + i, 1 + i % 3, 4, 1, 0);
  q_bulk b = {0};
  cr_assert_eq(ledger_queue_submit(q, big, LEDGER_BATCH_MAX, q_bulk_cb, &b, 0), 0);
  cr_assert(q_wait_calls(&b.calls, 1, 20000), "no callback for the big request");
  cr_assert_eq(b.status, LEDGER_E_FULL, "status %s", ledger_strerror(b.status));
  cr_assert_eq(b.n, LEDGER_BATCH_MAX);
  cr_assert_eq(b.full, LEDGER_BATCH_MAX, "%zu full, %zu ok, %zu other results", b.full, b.ok,
               b.other);
  cr_assert_eq(q_head(l), head0, "a failed batch wrote a journal record");
  ledger_transfer t;
  cr_assert_eq(ledger_lookup_transfer(l, big[0].transfer.id, &t), LEDGER_E_NOTFOUND);
  cr_assert_eq(ledger_lookup_transfer(l, big[LEDGER_BATCH_MAX - 1].transfer.id, &t),
               LEDGER_E_NOTFOUND);

  q_bulk small = {0};
  cr_assert_eq(ledger_queue_submit(q, big, 1, q_bulk_cb, &small, 0), 0);
  cr_assert(q_wait_calls(&small.calls, 1, 20000));
  cr_assert_eq(small.status, 0, "after a full batch: %s", ledger_strerror(small.status));
  cr_assert_eq(small.ok, 1);
  cr_assert_eq(q_head(l), head0 + 1);
  ledger_queue_stats st;
  ledger_queue_stats_of(q, &st);
  cr_assert_eq(st.batches, 2, "a failed and a committed batch: %" PRIu64, st.batches);
  ledger_queue_close(q);
  cr_assert_eq(atomic_load(&b.calls), 1);
  cr_assert_eq(atomic_load(&small.calls), 1);
  cr_assert_eq(ledger_lookup_transfer(l, big[0].transfer.id, &t), 0);
  free(big);
  q_finish(l, dir);
}
