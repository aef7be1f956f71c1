/* queue.h — the ledger's writer thread: group commit behind a bounded queue.
 *
 * Callers on any thread submit requests (a few events each); one writer thread drains them
 * in batches of up to max_batch events, applies each batch with ledger_apply() (one write
 * transaction, one sync) and then calls every request's callback with its results. While one
 * batch syncs, the next one fills: that is the group commit the switch relies on. The writer
 * also wakes up on its own when a pending transfer is due to expire, so expiries happen even
 * when nobody submits anything.
 */
#ifndef TUMA_LEDGER_QUEUE_H
#define TUMA_LEDGER_QUEUE_H

#include "ledger.h"

typedef struct ledger_queue ledger_queue;

/* Called on the writer thread once the request's batch has committed (status 0) or failed
 * (status LEDGER_E_FULL / _IO: nothing of it committed; results say BATCH_STORAGE_*).
 * events and results are borrowed for the duration of the call; the callback must not block
 * for long (post the results to your own thread) and must not call ledger_queue_close(). */
typedef void (*ledger_queue_done_cb)(int status, const ledger_event *events,
                                     const ledger_result *results, size_t n, void *arg);

typedef struct ledger_queue_options {
  size_t capacity;  /* events queued at most (not counting the batch being applied); 0 = 65536 */
  size_t max_batch; /* events per batch, ≤ LEDGER_BATCH_MAX; 0 = LEDGER_BATCH_MAX */
  /* Signed checkpoints (JOURNAL.md): with sign set, the writer appends a checkpoint after every
   * checkpoint_every committed batches (0 = never on count) and once at close. sign_arg and
   * fingerprint (32 bytes) are borrowed until ledger_queue_close(). */
  ledger_sign_cb sign;
  void *sign_arg;
  const uint8_t *fingerprint;
  uint32_t checkpoint_every;
} ledger_queue_options;

/* Starts the writer thread for l, which the queue borrows until ledger_queue_close(); nothing
 * else may call ledger_apply() on l meanwhile. opts may be NULL. */
int ledger_queue_start(ledger *l, const ledger_queue_options *opts, ledger_queue **out);

enum {
  LEDGER_SUBMIT_WAIT = 1u << 0, /* block while the queue is full instead of LEDGER_E_AGAIN */
};

/* Queues a request of n events (1 ≤ n ≤ max_batch); they are copied. A request is never
 * split across batches nor joined to a neighbour's linked chain: its last event must not
 * carry the linked flag (LEDGER_E_INVAL). Returns LEDGER_E_AGAIN when the queue is full
 * (unless LEDGER_SUBMIT_WAIT), LEDGER_E_CLOSED once closing began. cb is called exactly once
 * for every request accepted with 0. */
int ledger_queue_submit(ledger_queue *q, const ledger_event *events, size_t n,
                        ledger_queue_done_cb cb, void *arg, unsigned flags);

/* Statistics for metrics and benchmarks (a consistent snapshot). */
typedef struct ledger_queue_stats {
  uint64_t batches;        /* committed or failed */
  uint64_t events;         /* applied */
  uint64_t queued_events;  /* waiting now */
  uint64_t last_batch_events;
  uint64_t last_commit_ns; /* duration of the last ledger_apply() */
  uint64_t checkpoints;    /* checkpoint records appended */
  uint64_t checkpoint_failures;
} ledger_queue_stats;

void ledger_queue_stats_of(ledger_queue *q, ledger_queue_stats *out);

/* Stops accepting, applies everything already queued (callbacks run), joins the writer and
 * frees the queue; accepts NULL. The ledger stays open. */
void ledger_queue_close(ledger_queue *q);

#endif
