/* queue.c — the ledger's writer thread and its bounded request queue (see queue.h).
 *
 * Requests wait in a FIFO list under one mutex. The writer takes as many whole requests as fit
 * in max_batch events, copies them into one event array, applies it with one ledger_apply()
 * (one sync) outside the lock, then runs the callbacks. Submitters block or get
 * LEDGER_E_AGAIN while the queued events exceed the capacity.
 */
#include "queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_CAPACITY 65536
#define NS_PER_S 1000000000ull

typedef struct request {
  struct request *next;
  ledger_queue_done_cb cb;
  void *arg;
  size_t n;
  ledger_event events[]; /* n events, copied at submit */
} request;

struct ledger_queue {
  ledger *l;
  size_t capacity, max_batch;
  pthread_t writer;
  pthread_mutex_t lock;
  pthread_cond_t work;  /* signalled when requests arrive or closing begins */
  pthread_cond_t space; /* signalled when queued events drop */
  request *head, *tail;
  size_t queued_events;
  int closing;
  ledger_queue_stats stats;
  ledger_sign_cb sign;
  void *sign_arg;
  uint8_t fingerprint[32];
  uint32_t checkpoint_every;
  uint32_t since_checkpoint; /* committed batches since the last checkpoint (writer only) */
  /* The writer's batch buffers (writer thread only). */
  ledger_event *events;
  ledger_result *results;
  request **taken;
};

static uint64_t monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* Waits for work until the next pending expiry is due (in ledger time). Called with the lock
 * held; returns with it held. Returns 1 if an expiry pulse is due. */
static int wait_for_work(ledger_queue *q) {
  uint64_t due = 0;
  pthread_mutex_unlock(&q->lock);
  int rc = ledger_next_expiry(q->l, &due);
  pthread_mutex_lock(&q->lock);
  if (q->head || q->closing)
    return 0;
  if (rc || due == 0) {
    pthread_cond_wait(&q->work, &q->lock);
    return 0;
  }
  /* Ledger time may be a test clock that does not advance by itself: re-check every 100 ms. */
  uint64_t now = ledger_time(q->l);
  uint64_t wait_ns = due > now ? due - now : 0;
  if (wait_ns == 0)
    return 1;
  if (wait_ns > NS_PER_S / 10)
    wait_ns = NS_PER_S / 10;
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  uint64_t at = (uint64_t)deadline.tv_sec * NS_PER_S + (uint64_t)deadline.tv_nsec + wait_ns;
  deadline.tv_sec = (time_t)(at / NS_PER_S);
  deadline.tv_nsec = (long)(at % NS_PER_S);
  pthread_cond_timedwait(&q->work, &q->lock, &deadline);
  return !q->head && !q->closing && ledger_time(q->l) >= due;
}

/* Applies an empty batch: the ledger expires whatever is due by its own clock. Counted as a
 * batch only when it committed something. */
static void expiry_pulse(ledger_queue *q) {
  uint64_t seq_before = 0, seq_after = 0;
  ledger_journal_head(q->l, &seq_before, NULL);
  uint64_t t0 = monotonic_ns();
  int rc = ledger_apply(q->l, NULL, NULL, 0);
  uint64_t t1 = monotonic_ns();
  ledger_journal_head(q->l, &seq_after, NULL);
  pthread_mutex_lock(&q->lock);
  if (rc == 0 && seq_after != seq_before) {
    q->stats.batches++;
    q->stats.last_batch_events = 0;
    q->stats.last_commit_ns = t1 - t0;
  }
  pthread_mutex_unlock(&q->lock);
}

/* Appends a checkpoint when checkpoints are on (writer thread, lock not held). A failure is
 * counted, not fatal: the batches stay committed and the next checkpoint covers them. */
static void checkpoint(ledger_queue *q) {
  if (!q->sign)
    return;
  uint64_t seq = 0;
  int rc = ledger_checkpoint(q->l, q->fingerprint, q->sign, q->sign_arg, &seq);
  q->since_checkpoint = 0;
  pthread_mutex_lock(&q->lock);
  if (rc)
    q->stats.checkpoint_failures++;
  else if (seq)
    q->stats.checkpoints++;
  pthread_mutex_unlock(&q->lock);
}

static void *writer_main(void *arg) {
  ledger_queue *q = arg;
  pthread_mutex_lock(&q->lock);
  for (;;) {
    if (!q->head) {
      if (q->closing) {
        pthread_mutex_unlock(&q->lock);
        checkpoint(q); /* the last one: signs everything committed */
        pthread_mutex_lock(&q->lock);
        break;
      }
      if (wait_for_work(q)) {
        pthread_mutex_unlock(&q->lock);
        expiry_pulse(q);
        pthread_mutex_lock(&q->lock);
      }
      continue;
    }
    /* Take whole requests up to max_batch events. */
    size_t n = 0, taken = 0;
    while (q->head && n + q->head->n <= q->max_batch) {
      request *r = q->head;
      q->head = r->next;
      memcpy(q->events + n, r->events, r->n * sizeof *r->events);
      n += r->n;
      q->taken[taken++] = r;
    }
    if (!q->head)
      q->tail = NULL;
    q->queued_events -= n;
    pthread_cond_broadcast(&q->space);
    pthread_mutex_unlock(&q->lock);

    uint64_t t0 = monotonic_ns();
    int status = ledger_apply(q->l, q->events, q->results, n);
    uint64_t t1 = monotonic_ns();
    size_t at = 0;
    for (size_t i = 0; i < taken; i++) {
      request *r = q->taken[i];
      r->cb(status, r->events, q->results + at, r->n, r->arg);
      at += r->n;
      free(r);
    }
    if (status == 0 && q->checkpoint_every && ++q->since_checkpoint >= q->checkpoint_every)
      checkpoint(q);

    pthread_mutex_lock(&q->lock);
    q->stats.batches++;
    q->stats.events += n;
    q->stats.last_batch_events = n;
    q->stats.last_commit_ns = t1 - t0;
  }
  pthread_mutex_unlock(&q->lock);
  return NULL;
}

int ledger_queue_start(ledger *l, const ledger_queue_options *opts, ledger_queue **out) {
  if (!l || !out)
    return LEDGER_E_INVAL;
  *out = NULL;
  ledger_queue *q = calloc(1, sizeof *q);
  if (!q)
    return LEDGER_E_NOMEM;
  q->l = l;
  q->capacity = opts && opts->capacity ? opts->capacity : DEFAULT_CAPACITY;
  q->max_batch = opts && opts->max_batch ? opts->max_batch : LEDGER_BATCH_MAX;
  if (opts && opts->sign) {
    q->sign = opts->sign;
    q->sign_arg = opts->sign_arg;
    q->checkpoint_every = opts->checkpoint_every;
    if (opts->fingerprint)
      memcpy(q->fingerprint, opts->fingerprint, sizeof q->fingerprint);
  }
  if (q->max_batch > LEDGER_BATCH_MAX || q->capacity < q->max_batch ||
      (opts && opts->sign && !opts->fingerprint)) {
    free(q);
    return LEDGER_E_INVAL;
  }
  q->events = malloc(q->max_batch * sizeof *q->events);
  q->results = malloc(q->max_batch * sizeof *q->results);
  q->taken = malloc(q->max_batch * sizeof *q->taken);
  if (!q->events || !q->results || !q->taken) {
    free(q->events);
    free(q->results);
    free(q->taken);
    free(q);
    return LEDGER_E_NOMEM;
  }
  pthread_mutex_init(&q->lock, NULL);
  pthread_cond_init(&q->work, NULL);
  pthread_cond_init(&q->space, NULL);
  if (pthread_create(&q->writer, NULL, writer_main, q)) {
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->work);
    pthread_cond_destroy(&q->space);
    free(q->events);
    free(q->results);
    free(q->taken);
    free(q);
    return LEDGER_E_NOMEM;
  }
  *out = q;
  return 0;
}

static int event_is_linked(const ledger_event *ev) {
  if (ev->kind == LEDGER_EVENT_CREATE_ACCOUNT)
    return (ev->account.flags & LEDGER_ACCOUNT_LINKED) != 0;
  if (ev->kind == LEDGER_EVENT_CREATE_TRANSFER)
    return (ev->transfer.flags & LEDGER_TRANSFER_LINKED) != 0;
  return 0;
}

int ledger_queue_submit(ledger_queue *q, const ledger_event *events, size_t n,
                        ledger_queue_done_cb cb, void *arg, unsigned flags) {
  if (!q || !events || !cb || n == 0 || n > q->max_batch || event_is_linked(&events[n - 1]))
    return LEDGER_E_INVAL;
  request *r = malloc(sizeof *r + n * sizeof *events);
  if (!r)
    return LEDGER_E_NOMEM;
  r->next = NULL;
  r->cb = cb;
  r->arg = arg;
  r->n = n;
  memcpy(r->events, events, n * sizeof *events);

  pthread_mutex_lock(&q->lock);
  while (!q->closing && q->queued_events + n > q->capacity) {
    if (!(flags & LEDGER_SUBMIT_WAIT)) {
      pthread_mutex_unlock(&q->lock);
      free(r);
      return LEDGER_E_AGAIN;
    }
    pthread_cond_wait(&q->space, &q->lock);
  }
  if (q->closing) {
    pthread_mutex_unlock(&q->lock);
    free(r);
    return LEDGER_E_CLOSED;
  }
  if (q->tail)
    q->tail->next = r;
  else
    q->head = r;
  q->tail = r;
  q->queued_events += n;
  pthread_cond_signal(&q->work);
  pthread_mutex_unlock(&q->lock);
  return 0;
}

void ledger_queue_stats_of(ledger_queue *q, ledger_queue_stats *out) {
  pthread_mutex_lock(&q->lock);
  *out = q->stats;
  out->queued_events = q->queued_events;
  pthread_mutex_unlock(&q->lock);
}

void ledger_queue_close(ledger_queue *q) {
  if (!q)
    return;
  pthread_mutex_lock(&q->lock);
  q->closing = 1;
  pthread_cond_broadcast(&q->work);
  pthread_cond_broadcast(&q->space);
  pthread_mutex_unlock(&q->lock);
  pthread_join(q->writer, NULL);
  pthread_mutex_destroy(&q->lock);
  pthread_cond_destroy(&q->work);
  pthread_cond_destroy(&q->space);
  free(q->events);
  free(q->results);
  free(q->taken);
  free(q);
}
