/* metrics.c — /healthz and Prometheus /metrics on the loopback HTTP port (libevent evhttp). */
#include <event2/buffer.h>
#include <event2/http.h>
#include <string.h>

#include "daemon.h"

static void healthz_cb(struct evhttp_request *req, void *arg) {
  sw_switch *sw = arg;
  struct evbuffer *out = evbuffer_new();
  if (!out)
    return;
  evbuffer_add_printf(out, "%s\n", sw->stopping ? "stopping" : "ok");
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
  evhttp_send_reply(req, sw->stopping ? 503 : 200, sw->stopping ? "Stopping" : "OK", out);
  evbuffer_free(out);
}

static void metrics_cb(struct evhttp_request *req, void *arg) {
  sw_switch *sw = arg;
  const sw_metrics *m = &sw->metrics;
  struct evbuffer *out = evbuffer_new();
  if (!out)
    return;
  ledger_queue_stats q = {0};
  sw_commit_stats(sw->commit, &q);
  evbuffer_add_printf(
      out,
      "# HELP tuma_transfers_total Transfers by final outcome.\n"
      "# TYPE tuma_transfers_total counter\n"
      "tuma_transfers_total{outcome=\"committed\"} %llu\n"
      "tuma_transfers_total{outcome=\"aborted\"} %llu\n"
      "tuma_transfers_total{outcome=\"expired\"} %llu\n"
      "tuma_transfers_total{outcome=\"rejected\"} %llu\n"
      "# TYPE tuma_prepares_total counter\ntuma_prepares_total %llu\n"
      "# TYPE tuma_fulfils_total counter\ntuma_fulfils_total %llu\n"
      "# TYPE tuma_duplicates_total counter\ntuma_duplicates_total %llu\n"
      "# HELP tuma_transfers_in_flight Transfers reserved and not final.\n"
      "# TYPE tuma_transfers_in_flight gauge\ntuma_transfers_in_flight %zu\n"
      "# TYPE tuma_connections gauge\ntuma_connections %u\n"
      "# TYPE tuma_connections_accepted_total counter\n"
      "tuma_connections_accepted_total %llu\n"
      "# TYPE tuma_connections_refused_total counter\n"
      "tuma_connections_refused_total %llu\n"
      "# TYPE tuma_frames_total counter\n"
      "tuma_frames_total{direction=\"in\"} %llu\n"
      "tuma_frames_total{direction=\"out\"} %llu\n"
      "# TYPE tuma_frame_errors_total counter\ntuma_frame_errors_total %llu\n"
      "# HELP tuma_ledger_queue_events Events waiting for the ledger writer.\n"
      "# TYPE tuma_ledger_queue_events gauge\ntuma_ledger_queue_events %llu\n"
      "# TYPE tuma_ledger_batches_total counter\ntuma_ledger_batches_total %llu\n"
      "# TYPE tuma_ledger_events_total counter\ntuma_ledger_events_total %llu\n"
      "# HELP tuma_ledger_last_batch_events Size of the last committed batch.\n"
      "# TYPE tuma_ledger_last_batch_events gauge\n"
      "tuma_ledger_last_batch_events %llu\n"
      "# TYPE tuma_ledger_last_commit_seconds gauge\n"
      "tuma_ledger_last_commit_seconds %.6f\n",
      (unsigned long long)m->transfers_committed, (unsigned long long)m->transfers_aborted,
      (unsigned long long)m->transfers_expired, (unsigned long long)m->transfers_rejected,
      (unsigned long long)m->prepares, (unsigned long long)m->fulfils,
      (unsigned long long)m->duplicates, sw_transfers_in_flight(sw), sw->n_conns,
      (unsigned long long)m->connections_accepted, (unsigned long long)m->connections_refused,
      (unsigned long long)m->frames_in, (unsigned long long)m->frames_out,
      (unsigned long long)m->frame_errors, (unsigned long long)q.queued_events,
      (unsigned long long)q.batches, (unsigned long long)q.events,
      (unsigned long long)q.last_batch_events, (double)q.last_commit_ns / 1e9);
  evbuffer_add_printf(out, "# HELP tuma_ledger_commit_seconds Ledger round trip of a request "
                           "(queue, batch, sync, back to the loop).\n"
                           "# TYPE tuma_ledger_commit_seconds histogram\n");
  const sw_commit_latency *lat = sw_commit_latency_of(sw->commit);
  uint64_t cum = 0;
  double bound = 0.0001;
  for (unsigned k = 0; k < 16; k++, bound *= 2) {
    cum += lat->buckets[k];
    if (k < 15)
      evbuffer_add_printf(out, "tuma_ledger_commit_seconds_bucket{le=\"%g\"} %llu\n", bound,
                          (unsigned long long)cum);
  }
  evbuffer_add_printf(out,
                      "tuma_ledger_commit_seconds_bucket{le=\"+Inf\"} %llu\n"
                      "tuma_ledger_commit_seconds_sum %.6f\n"
                      "tuma_ledger_commit_seconds_count %llu\n",
                      (unsigned long long)cum, lat->sum_seconds, (unsigned long long)lat->count);
  evbuffer_add_printf(out,
                      "# HELP tuma_disburse_items_total Disbursement items by final status.\n"
                      "# TYPE tuma_disburse_items_total counter\n"
                      "tuma_disburse_items_total{status=\"paid\"} %llu\n"
                      "tuma_disburse_items_total{status=\"failed\"} %llu\n"
                      "tuma_disburse_items_total{status=\"cancelled\"} %llu\n"
                      "# TYPE tuma_disburse_retries_total counter\n"
                      "tuma_disburse_retries_total %llu\n",
                      (unsigned long long)m->disburse_paid, (unsigned long long)m->disburse_failed,
                      (unsigned long long)m->disburse_cancelled,
                      (unsigned long long)m->disburse_retries);
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                    "text/plain; version=0.0.4");
  evhttp_send_reply(req, 200, "OK", out);
  evbuffer_free(out);
}

int sw_metrics_start(sw_switch *sw) {
  const sw_config_addr *a = &sw->cfg->metrics_listen;
  char hp[300];
  sw_format_addr(a, hp, sizeof hp);
  sw->http = evhttp_new(sw->base);
  if (!sw->http)
    return -1;
  evhttp_set_allowed_methods(sw->http, EVHTTP_REQ_GET);
  evhttp_set_cb(sw->http, "/healthz", healthz_cb, sw);
  evhttp_set_cb(sw->http, "/metrics", metrics_cb, sw);
  if (evhttp_bind_socket(sw->http, a->host, a->port) != 0) {
    sw_log(&sw->log, SW_LOG_ERROR, "listen.failed", "addr=%s service=metrics", hp);
    return -1;
  }
  sw_log(&sw->log, SW_LOG_INFO, "listen", "addr=%s service=metrics", hp);
  return 0;
}

void sw_metrics_stop(sw_switch *sw) {
  if (sw->http)
    evhttp_free(sw->http);
  sw->http = NULL;
}
