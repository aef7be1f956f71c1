/* commit.h — the switch's path to the ledger: events go to the ledger's writer thread (group
 * commit, queue.h) and their results come back on the event loop's thread, after the batch
 * holding them is durable. Nothing is answered to anyone before that callback runs. */
#ifndef TUMA_SWITCH_COMMIT_H
#define TUMA_SWITCH_COMMIT_H

#include <event2/event.h>

#include "ledger.h"
#include "queue.h"

typedef struct sw_commit sw_commit;

/* Runs on the loop thread. status 0: committed, results[i] per event; otherwise the batch
 * failed (LEDGER_E_FULL / _IO) and nothing of it is in the ledger. results borrowed. */
typedef void (*sw_commit_cb)(int status, const ledger_result *results, size_t n, void *arg);

/* Starts the writer thread on l and hooks its completions into base. */
int sw_commit_start(struct event_base *base, ledger *l, const ledger_queue_options *opts,
                    sw_commit **out);

/* Queues n events (copied); cb(arg) runs exactly once on the loop thread. Returns
 * LEDGER_E_AGAIN when the ledger queue is full: nothing was queued, try again after a
 * completion (sw_commit_set_space_cb). */
int sw_commit_submit(sw_commit *c, const ledger_event *events, size_t n, sw_commit_cb cb,
                     void *arg);

/* Called on the loop thread after completions were delivered (room in the queue again). */
void sw_commit_set_space_cb(sw_commit *c, void (*cb)(void *arg), void *arg);

/* Statistics of the writer (for /metrics). */
void sw_commit_stats(sw_commit *c, ledger_queue_stats *out);

/* Round trip of requests, submit to callback (queue wait, batch, sync, hand-back), as a
 * histogram: bucket k counts requests that took ≤ 0.1 ms × 2^k (k < 15), bucket 15 the rest. */
typedef struct sw_commit_latency {
  uint64_t buckets[16];
  uint64_t count;
  double sum_seconds;
} sw_commit_latency;

const sw_commit_latency *sw_commit_latency_of(const sw_commit *c);

/* Blocks until every queued request is committed and its callback has run, then stops the
 * writer and frees c; accepts NULL. Call from the loop thread, outside callbacks. */
void sw_commit_close(sw_commit *c);

#endif
