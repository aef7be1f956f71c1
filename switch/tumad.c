/* tumad.c — the switch daemon: configuration, ledger, registry, start-up recovery, the event
 * loop, and a graceful stop on SIGTERM/SIGINT.
 *
 *   tumad --config FILE [--check]
 *
 * Start-up: load and validate the configuration (a precise error and exit 2 if invalid), open
 * the ledger (DATA_DIR/ledger) and the registry (DATA_DIR/registry), apply the configured
 * participants (accounts, caps, initial deposits, all idempotent), start the ledger's writer
 * thread, rebuild the transfers that were reserved but not finished, then listen. Stop: no new
 * connections or requests, every queued ledger write committed and answered, replies flushed,
 * the ledger closed; reserved transfers stay reserved in the ledger and resume at next start.
 */
#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "audit.h"
#include "daemon.h"
#include "disburse.h"

#define STOP_GRACE_MS 300

static void usage(FILE *f) {
  fprintf(f, "usage: tumad --config FILE [--check]\n"
             "  --config FILE  the INI configuration (see switch/tumad.ini.example)\n"
             "  --check        validate the configuration and exit\n");
}

static void stop_now_cb(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  event_base_loopexit(((sw_switch *)arg)->base, NULL);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg) {
  (void)what;
  sw_switch *sw = arg;
  if (sw->stopping)
    return;
  sw->stopping = 1;
  sw_log(&sw->log, SW_LOG_INFO, "stopping", "signal=%d in_flight=%zu", (int)sig,
         sw_transfers_in_flight(sw));
  sw_server_stop_accepting(sw);
  for (sw_conn *c = sw->conns; c; c = c->next)
    bufferevent_disable(c->bev, EV_READ); /* no new requests; replies still go out */
  struct timeval grace = {0, STOP_GRACE_MS * 1000};
  event_base_once(sw->base, -1, EV_TIMEOUT, stop_now_cb, sw, &grace);
}

static void space_cb(void *arg) {
  sw_server_unblock(arg);
}

/* Raises the soft limit on open files so that max_connections connections fit beside the
 * stores, listeners and logs (FD_SPARE): as far as the hard limit allows. If it does not, a
 * warning says so and accept() failures beyond the limit are what remains (the listener
 * retries); raise the hard limit (systemd LimitNOFILE=, ulimit -Hn) for more connections. */
#define FD_SPARE 128u
static void raise_fd_limit(sw_switch *sw, const sw_config *cfg) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return;
  rlim_t want = (rlim_t)cfg->max_connections + FD_SPARE;
  if (rl.rlim_cur >= want)
    return;
  rlim_t got = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ? rl.rlim_max : want;
  rl.rlim_cur = got;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
    got = 0;
  if (got < want)
    sw_log(&sw->log, SW_LOG_WARN, "fd_limit.low",
           "max_connections=%u nofile_hard=%llu reason=\"cannot raise RLIMIT_NOFILE enough\"",
           cfg->max_connections, (unsigned long long)rl.rlim_max);
}

static int open_stores(sw_switch *sw, const sw_config *cfg) {
  char path[4096];
  snprintf(path, sizeof path, "%s/ledger", cfg->data_dir);
  ledger_options lo = {0};
  lo.map_size = (size_t)cfg->map_size_mb << 20;
  lo.map_size_max = (size_t)cfg->map_size_max_mb << 20;
  int rc = ledger_open(path, &lo, &sw->ledger);
  if (rc) {
    sw_log(&sw->log, SW_LOG_ERROR, "ledger.open_failed", "path=%s error=\"%s\"", path,
           ledger_strerror(rc));
    return -1;
  }
  uint64_t bad = 0;
  rc = ledger_journal_verify(sw->ledger, &bad);
  if (rc) {
    sw_log(&sw->log, SW_LOG_ERROR, "ledger.journal_corrupt", "seq=%llu", (unsigned long long)bad);
    return -1;
  }
  sw_registry_options ro = {0};
  ro.secret_file = cfg->directory_secret_file;
  char err[512];
  rc = sw_registry_open(cfg->data_dir, &ro, &sw->registry, err, sizeof err);
  if (rc) {
    sw_log(&sw->log, SW_LOG_ERROR, "registry.open_failed", "error=\"%s\"", err);
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *config_path = NULL;
  int check_only = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--config") && i + 1 < argc)
      config_path = argv[++i];
    else if (!strcmp(argv[i], "--check"))
      check_only = 1;
    else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return 2;
    }
  }
  if (!config_path) {
    usage(stderr);
    return 2;
  }
  sw_config cfg;
  char err[1024];
  if (sw_config_load(config_path, &cfg, err, sizeof err) != 0) {
    fprintf(stderr, "tumad: %s\n", err);
    return 2;
  }
  if (check_only) {
    printf("tumad: %s is valid (%zu participants)\n", config_path, cfg.n_participants);
    sw_config_free(&cfg);
    return 0;
  }
  signal(SIGPIPE, SIG_IGN);

  int status = 1;
  sw_switch sw;
  memset(&sw, 0, sizeof sw);
  sw.cfg = &cfg;
  sw.log.level = (int)cfg.log_level;
  sw.next_correlation = 1ull << 63; /* never equal to a client's id below 2^63 */
  struct event *sigterm = NULL, *sigint = NULL;
  raise_fd_limit(&sw, &cfg);
  ledger_audit_key *checkpoint_key = NULL;
  if (open_stores(&sw, &cfg))
    goto out;
  /* Before the writer thread starts: configured participants, applied synchronously. */
  if (sw_admin_apply_config(&sw))
    goto out;
  sw.base = event_base_new();
  if (!sw.base)
    goto out;
  ledger_queue_options qo = {.capacity = cfg.queue_capacity, .max_batch = cfg.batch_max};
  if (cfg.checkpoint_key) { /* [audit]: signed checkpoints through the writer thread */
    char kerr[512] = "";
    if (ledger_audit_key_load(cfg.checkpoint_key, 1, &checkpoint_key, kerr, sizeof kerr)) {
      sw_log(&sw.log, SW_LOG_ERROR, "audit.checkpoint_key", "error=\"%s\"", kerr);
      goto out;
    }
    qo.sign = ledger_audit_key_sign_cb;
    qo.sign_arg = checkpoint_key;
    qo.fingerprint = ledger_audit_key_fingerprint(checkpoint_key);
    qo.checkpoint_every = cfg.checkpoint_every;
  }
  if (sw_commit_start(sw.base, sw.ledger, &qo, &sw.commit)) {
    sw_log(&sw.log, SW_LOG_ERROR, "ledger.writer_failed", "reason=\"cannot start\"");
    goto out;
  }
  sw_commit_set_space_cb(sw.commit, space_cb, &sw);
  if (sw_transfers_init(&sw) || sw_transfers_recover(&sw) || sw_disburse_open(&sw))
    goto out;
  if (sw_server_start(&sw) || sw_metrics_start(&sw))
    goto out;
  sigterm = evsignal_new(sw.base, SIGTERM, signal_cb, &sw);
  sigint = evsignal_new(sw.base, SIGINT, signal_cb, &sw);
  if (!sigterm || !sigint || event_add(sigterm, NULL) || event_add(sigint, NULL))
    goto out;
  sw_log(&sw.log, SW_LOG_INFO, "ready", "participants=%zu data_dir=%s", cfg.n_participants,
         cfg.data_dir);
  event_base_dispatch(sw.base);

  /* Commit and answer everything queued, then give the replies a moment to leave. */
  sw_disburse_stop(&sw);
  sw_commit_close(sw.commit);
  sw.commit = NULL;
  for (int i = 0; i < 20; i++)
    event_base_loop(sw.base, EVLOOP_NONBLOCK);
  status = 0;
  sw_log(&sw.log, SW_LOG_INFO, "stopped", "in_flight_reserved=%zu", sw_transfers_in_flight(&sw));
out:
  if (sigterm)
    event_free(sigterm);
  if (sigint)
    event_free(sigint);
  sw_metrics_stop(&sw);
  sw_server_stop_accepting(&sw);
  sw_disburse_stop(&sw);
  sw_commit_close(sw.commit);
  sw_server_close_all(&sw);
  sw_transfers_free(&sw);
  sw_disburse_close(&sw);
  free(sw.peers);
  if (sw.base)
    event_base_free(sw.base);
  sw_registry_close(sw.registry);
  ledger_close(sw.ledger);
  ledger_audit_key_free(checkpoint_key);
  sw_config_free(&cfg);
  return status;
}
