/* commit.c — results from the ledger's writer thread back to the event loop (commit.h).
 *
 * The writer's callback copies the results into the request's completion, appends it to a
 * list under a mutex and writes to an eventfd; the loop's read event on the eventfd drains
 * the list and runs the callbacks.
 */
#include "commit.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

typedef struct completion {
  struct completion *next;
  sw_commit *owner;
  sw_commit_cb cb;
  void *arg;
  int status;
  uint64_t submitted_ns;
  size_t n;
  ledger_result results[];
} completion;

struct sw_commit {
  ledger_queue *queue;
  int efd;
  struct event *ev;
  pthread_mutex_t lock;
  completion *done_head, *done_tail;
  size_t outstanding; /* submitted, callback not yet run (loop thread only) */
  void (*space_cb)(void *arg);
  void *space_arg;
  sw_commit_latency latency;
};

static uint64_t monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void record_latency(sw_commit_latency *h, uint64_t ns) {
  unsigned k = 0;
  for (uint64_t bound = 100000; k < 15 && ns > bound; bound *= 2)
    k++;
  h->buckets[k]++;
  h->count++;
  h->sum_seconds += (double)ns / 1e9;
}

const sw_commit_latency *sw_commit_latency_of(const sw_commit *c) {
  return &c->latency;
}

static void writer_done_cb(int status, const ledger_event *events, const ledger_result *results,
                           size_t n, void *arg);
static void drain_cb(evutil_socket_t fd, short what, void *arg);

int sw_commit_start(struct event_base *base, ledger *l, const ledger_queue_options *opts,
                    sw_commit **out) {
  sw_commit *c = calloc(1, sizeof *c);
  if (!c)
    return LEDGER_E_NOMEM;
  pthread_mutex_init(&c->lock, NULL);
  c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (c->efd < 0)
    goto err;
  c->ev = event_new(base, c->efd, EV_READ | EV_PERSIST, drain_cb, c);
  if (!c->ev || event_add(c->ev, NULL))
    goto err;
  if (ledger_queue_start(l, opts, &c->queue))
    goto err;
  *out = c;
  return 0;
err:
  if (c->ev)
    event_free(c->ev);
  if (c->efd >= 0)
    close(c->efd);
  pthread_mutex_destroy(&c->lock);
  free(c);
  return LEDGER_E_NOMEM;
}

/* Writer thread. */
static void writer_done_cb(int status, const ledger_event *events, const ledger_result *results,
                           size_t n, void *arg) {
  (void)events;
  completion *done = arg;
  sw_commit *c = done->owner;
  done->status = status;
  memcpy(done->results, results, n * sizeof *results);
  pthread_mutex_lock(&c->lock);
  if (c->done_tail)
    c->done_tail->next = done;
  else
    c->done_head = done;
  c->done_tail = done;
  pthread_mutex_unlock(&c->lock);
  uint64_t one = 1;
  ssize_t w = write(c->efd, &one, sizeof one);
  (void)w; /* the counter saturating still leaves the fd readable */
}

static void deliver(sw_commit *c) {
  pthread_mutex_lock(&c->lock);
  completion *list = c->done_head;
  c->done_head = c->done_tail = NULL;
  pthread_mutex_unlock(&c->lock);
  int any = list != NULL;
  uint64_t now = any ? monotonic_ns() : 0;
  while (list) {
    completion *next = list->next;
    c->outstanding--;
    record_latency(&c->latency, now - list->submitted_ns);
    list->cb(list->status, list->results, list->n, list->arg);
    free(list);
    list = next;
  }
  if (any && c->space_cb)
    c->space_cb(c->space_arg);
}

static void drain_cb(evutil_socket_t fd, short what, void *arg) {
  (void)what;
  uint64_t count;
  ssize_t r = read(fd, &count, sizeof count);
  (void)r;
  deliver(arg);
}

int sw_commit_submit(sw_commit *c, const ledger_event *events, size_t n, sw_commit_cb cb,
                     void *arg) {
  completion *done = malloc(sizeof *done + n * sizeof(ledger_result));
  if (!done)
    return LEDGER_E_NOMEM;
  done->next = NULL;
  done->owner = c;
  done->submitted_ns = monotonic_ns();
  done->cb = cb;
  done->arg = arg;
  done->n = n;
  int rc = ledger_queue_submit(c->queue, events, n, writer_done_cb, done, 0);
  if (rc) {
    free(done);
    return rc;
  }
  c->outstanding++;
  return 0;
}

void sw_commit_set_space_cb(sw_commit *c, void (*cb)(void *arg), void *arg) {
  c->space_cb = cb;
  c->space_arg = arg;
}

void sw_commit_stats(sw_commit *c, ledger_queue_stats *out) {
  ledger_queue_stats_of(c->queue, out);
}

void sw_commit_close(sw_commit *c) {
  if (!c)
    return;
  ledger_queue_close(c->queue); /* applies everything queued; callbacks fill the done list */
  c->space_cb = NULL;
  deliver(c);
  event_free(c->ev);
  close(c->efd);
  pthread_mutex_destroy(&c->lock);
  free(c);
}
