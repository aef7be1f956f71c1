/* test_hostile.c — hostile and broken peers against a real tumad (issue 7): thousands of idle
 * connections, slow partial frames and handshakes (slowloris), a flood of pipelined requests
 * from one operator that reads nothing back, a payee that never answers, and expired, revoked
 * and foreign certificates. Each test asserts on correctness and completion (every request
 * answered, others served, ledger as told, memory bounded by a generous margin), never on
 * speed. Same harness and end-of-test ledger check as tests/test_switch.c.
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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "ledger.h"
#include "switch_harness.h"
#include "switch_ops.h"
#include "tclient.h"

TestSuite(hostile, .fini = so_fini, .timeout = 180);

static const so_config suite_cfg = {4096, 0};

/* ================================================================ helpers of this suite */

/* Raises this process's soft RLIMIT_NOFILE towards want (within the hard limit); returns the
 * soft limit in force afterwards. */
static unsigned raise_nofile(unsigned want) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return 0;
  if (rl.rlim_cur < want) {
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur > 1000000 ? 1000000 : (unsigned)rl.rlim_cur;
}

/* tumad's resident set in KiB (VmRSS of /proc/PID/status), or 0. */
static uint64_t rss_kib(pid_t pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  uint64_t kib = 0;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %" SCNu64, &kib) == 1)
      break;
  if (f)
    fclose(f);
  return kib;
}

/* Sanitizer builds keep freed memory in quarantine: their bounds are looser. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_SLACK_KIB (256u * 1024)
#else
#define RSS_SLACK_KIB (32u * 1024)
#endif

/* A plain TCP connection to 127.0.0.1:port (no TLS), or -1. */
static int raw_connect(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* 1 once the peer has closed fd (EOF or reset), waiting at most ms; 0 if still open. */
static int raw_closed(int fd, int ms) {
  int64_t deadline = so_mono_ms() + ms;
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    int left = (int)(deadline - so_mono_ms());
    int r = poll(&p, 1, left > 0 ? left : 0);
    if (r > 0) {
      char buf[4096];
      ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
        return 1;
      continue; /* whatever it sent (a TLS alert) is discarded */
    }
    if (so_mono_ms() >= deadline)
      return 0;
  }
}

/* ================================================================ idle connections */

/* Thousands of mTLS connections that never send a byte, and plain TCP connections that never
 * start their handshake, while an operator pair goes on paying: the transfers complete, the
 * handshake-less ones are closed by the read timeout, the idle TLS ones stay usable. */
Test(hostile, thousands_of_idle_connections, .timeout = 600) {
  enum { WANT_IDLE = 2000, RAW = 100, SPARE = 300 };
  unsigned lim = raise_nofile(WANT_IDLE + RAW + SPARE);
  size_t n_idle = lim >= WANT_IDLE + RAW + SPARE ? WANT_IDLE
                  : lim > RAW + SPARE + 100      ? lim - RAW - SPARE
                                                 : 0;
  if (n_idle < 100)
    cr_skip_test("RLIMIT_NOFILE hard limit %u is too low for this test", lim);
  if (n_idle < WANT_IDLE)
    cr_log_warn("RLIMIT_NOFILE %u: %zu idle connections instead of %d", lim, n_idle, WANT_IDLE);
  sh_options o;
  memset(&o, 0, sizeof o);
  o.max_connections = (uint32_t)(n_idle + RAW + 64);
  o.log_level = "info";
  /* tumad starts with the usual soft limit of 1024 open files and must raise it itself. */
  struct rlimit rl;
  cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
  rlim_t ours = rl.rlim_cur;
  if (rl.rlim_cur > 1024) {
    rl.rlim_cur = 1024;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
  }
  so_ctx *t = so_start(&o, &suite_cfg);
  rl.rlim_cur = ours;
  cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
  unsigned long long tumad_soft = 0;
  char lpath[64], line[256];
  snprintf(lpath, sizeof lpath, "/proc/%d/limits", (int)t->h->pid);
  FILE *lf = fopen(lpath, "r");
  while (lf && fgets(line, sizeof line, lf))
    if (sscanf(line, "Max open files %llu", &tumad_soft) == 1)
      break;
  if (lf)
    fclose(lf);
  cr_assert_geq(tumad_soft, (unsigned long long)n_idle + RAW,
                "tumad raised its soft RLIMIT_NOFILE from 1024 (now %llu)", tumad_soft);
  tc_client *a = so_op_connect(t, "alpha"), *b = so_op_connect(t, "beta");

  char cert[SH_PATH_MAX + 80], key[SH_PATH_MAX + 80];
  snprintf(cert, sizeof cert, "%s", sh_cert(t->h, "gamma"));
  snprintf(key, sizeof key, "%s", sh_key(t->h, "gamma"));
  tc_client **idle = calloc(n_idle, sizeof *idle);
  cr_assert_not_null(idle);
  uint64_t corr = 100;
  for (size_t i = 0; i < n_idle; i++) {
    char err[300];
    int rc = tc_connect(t->h->port, t->h->ca, cert, key, SO_T_ANSWER, &idle[i], err, sizeof err);
    cr_assert_eq(rc, TC_OK, "idle connection %zu: %s: %s", i, tc_strerror(rc), err);
    if (i % 250 == 249) { /* the live pair keeps working while the idle ones pile up */
      so_transfer_ok(t, a, "alpha", b, "beta", 100 + i, corr);
      corr += 2;
    }
  }
  int raw[RAW];
  for (int i = 0; i < RAW; i++) {
    raw[i] = raw_connect(t->h->port);
    cr_assert_geq(raw[i], 0, "plain TCP connection %d: %s", i, strerror(errno));
  }
  /* All of them idle at once: the live pair still pays. */
  for (int i = 0; i < 20; i++, corr += 2)
    so_transfer_ok(t, a, "alpha", b, "beta", 1000 + (uint64_t)i, corr);
  /* No handshake within read_timeout_ms (500): closed by the switch. */
  for (int i = 0; i < RAW; i++) {
    cr_assert(raw_closed(raw[i], 10000), "a connection without a handshake is closed (%d)", i);
    close(raw[i]);
  }
  /* The idle TLS connections are still served: a Ping on the first and the last. */
  so_send_ping(idle[0], "idle[0]", 7, 70);
  so_expect_pong(idle[0], "idle[0]", 7, 70);
  so_send_ping(idle[n_idle - 1], "idle[last]", 8, 80);
  so_expect_pong(idle[n_idle - 1], "idle[last]", 8, 80);
  char body[65536];
  cr_assert_eq(sh_http_get(t->h, "/healthz", body, sizeof body), 200);
  for (size_t i = 0; i < n_idle; i++)
    tc_close(idle[i], 0);
  free(idle);
  so_transfer_ok(t, a, "alpha", b, "beta", 77, corr);
  so_finish(t);
}

/* ================================================================ slow partial frames */

/* Slowloris: frames and TLS handshakes dribbled a byte at a time, each byte well within
 * read_timeout_ms of the previous one. The switch closes them all (the timeout runs from the
 * first byte of the frame, or from the accept for the handshake, not from the last byte),
 * while another operator is served throughout. */
Test(hostile, slow_partial_frames) {
  enum { SLOW = 20, SLOW_TLS = 10, STEPS = 30, STEP_MS = 100 };
  so_ctx *t = so_start(NULL, &suite_cfg); /* read_timeout_ms 500 */
  tc_client *b = so_op_connect(t, "beta");
  tc_client *slow[SLOW];
  int open_slow[SLOW];
  for (int i = 0; i < SLOW; i++) {
    slow[i] = so_op_connect(t, "alpha");
    open_slow[i] = 1;
  }
  int raw[SLOW_TLS];
  for (int i = 0; i < SLOW_TLS; i++) {
    raw[i] = raw_connect(t->h->port);
    cr_assert_geq(raw[i], 0);
  }
  /* A frame of 100 bytes, and the start of a TLS ClientHello record of 512 bytes. */
  uint8_t frame[104] = {0, 0, 0, 100};
  uint8_t hello[STEPS] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03};
  int64_t t0 = so_mono_ms();
  for (int step = 0; step < STEPS; step++) {
    for (int i = 0; i < SLOW; i++)
      if (open_slow[i] && tc_write_raw(slow[i], frame + step, 1) != TC_OK)
        open_slow[i] = 0; /* already closed by the switch */
    for (int i = 0; i < SLOW_TLS; i++)
      if (raw[i] >= 0 && send(raw[i], hello + step, 1, MSG_NOSIGNAL) != 1) {
        close(raw[i]);
        raw[i] = -1;
      }
    so_send_ping(b, "beta", (uint64_t)step + 1, (uint64_t)step);
    so_expect_pong(b, "beta", (uint64_t)step + 1, (uint64_t)step);
    so_sleep_ms(STEP_MS);
  }
  /* 3 s of dribbling against a 500 ms timeout: every one of them is gone by now or soon. */
  for (int i = 0; i < SLOW; i++) {
    int rc = tc_wait_closed(slow[i], 5000, NULL);
    cr_assert_eq(rc, TC_OK, "slow frame %d: still open %lld ms after its first byte", i,
                 (long long)(so_mono_ms() - t0));
  }
  for (int i = 0; i < SLOW_TLS; i++)
    if (raw[i] >= 0) {
      cr_assert(raw_closed(raw[i], 5000), "slow handshake %d: still open %lld ms after accept", i,
                (long long)(so_mono_ms() - t0));
      close(raw[i]);
    }
  cr_assert(sh_log_contains(t->h, "partial frame"), "tumad logs the partial-frame timeouts");
  so_send_ping(b, "beta", 99, 99);
  so_expect_pong(b, "beta", 99, 99);
  so_finish(t);
}

/* ================================================================ a flood from one operator */

enum { FLOOD_CHUNK = 64 * 1024, FLOOD_MAX_PINGS = 3000000 };

/* Appends Ping frames corr first.. to buf (at most cap bytes); returns the bytes used and the
 * next correlation id in *next. */
static size_t ping_frames(uint8_t *buf, size_t cap, uint64_t first, uint64_t *next) {
  size_t used = 0;
  uint64_t corr = first;
  for (;;) {
    Tuma__V1__Envelope env = TUMA__V1__ENVELOPE__INIT;
    Tuma__V1__Ping ping = TUMA__V1__PING__INIT;
    ping.nonce = corr;
    env.correlation_id = corr;
    env.body_case = TUMA__V1__ENVELOPE__BODY_PING;
    env.ping = &ping;
    size_t need = proto_envelope_frame_size(&env), len = 0;
    if (used + need > cap || corr > FLOOD_MAX_PINGS)
      break;
    if (proto_envelope_encode(&env, buf + used, cap - used, &len) != PROTO_FRAME_OK)
      break;
    used += len;
    corr++;
  }
  *next = corr;
  return used;
}

/* The flooding operator, in a child process: pipelines Pings on one connection without ever
 * reading, until the switch stops reading it (a write makes no progress for 1 s) or
 * FLOOD_MAX_PINGS; tells the parent ('F' on report), waits for its go ('R' on go), then reads
 * every Pong, in order, finishing its last write on the way. Exit status 0: all answered. */
static int flood_child(uint16_t port, const char *ca, const char *cert, const char *key, int report,
                       int go) {
  tc_client *c = NULL;
  char err[300];
  if (tc_connect(port, ca, cert, key, 5000, &c, err, sizeof err) != TC_OK)
    return 10;
  SSL *ssl = tc_ssl(c);
  int fd = tc_fd(c);
  struct timeval tv = {0, 100000};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  uint8_t *chunk = malloc(FLOOD_CHUNK);
  if (!chunk)
    return 11;
  uint64_t next = 1, sent_upto = 0; /* Pings 1..sent_upto are written */
  size_t len = 0, off = 0;          /* the chunk being written */
  uint64_t chunk_next = 1;
  int64_t stalled_since = 0;
  /* Phase A: write, never read. */
  for (;;) {
    if (off == len) {
      sent_upto = chunk_next - 1;
      if (next > FLOOD_MAX_PINGS)
        break;
      len = ping_frames(chunk, FLOOD_CHUNK, next, &chunk_next);
      off = 0;
      next = chunk_next;
    }
    int n = SSL_write(ssl, chunk + off, (int)(len - off));
    if (n > 0) {
      off += (size_t)n;
      stalled_since = 0;
      continue;
    }
    int e = SSL_get_error(ssl, n);
    if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ)
      return 12;
    if (!stalled_since)
      stalled_since = so_mono_ms();
    else if (so_mono_ms() - stalled_since > 1000)
      break; /* backpressure: the switch stopped reading us */
  }
  char byte = 'F';
  if (write(report, &byte, 1) != 1)
    return 13;
  struct pollfd p = {go, POLLIN, 0};
  if (poll(&p, 1, 120000) != 1 || read(go, &byte, 1) != 1)
    return 14;
  /* Phase B: read every Pong; finish the chunk that was cut short. */
  uint64_t want = off == len ? sent_upto : chunk_next - 1, expect = 1;
  size_t cap = 1 << 20, have = 0;
  uint8_t *in = malloc(cap);
  int64_t deadline = so_mono_ms() + 120000;
  while (expect <= want && so_mono_ms() < deadline) {
    struct pollfd pf = {fd, (short)(POLLIN | (off < len ? POLLOUT : 0)), 0};
    if (!SSL_pending(ssl) && poll(&pf, 1, 100) <= 0)
      continue;
    if (off < len && (pf.revents & POLLOUT)) {
      int n = SSL_write(ssl, chunk + off, (int)(len - off));
      if (n > 0)
        off += (size_t)n;
    }
    if (!SSL_pending(ssl) && !(pf.revents & POLLIN))
      continue;
    int n = SSL_read(ssl, in + have, (int)(cap - have));
    if (n <= 0) {
      int e = SSL_get_error(ssl, n);
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
        return 15;
      continue;
    }
    have += (size_t)n;
    size_t at = 0;
    while (have - at >= 4) {
      size_t body =
          (size_t)in[at] << 24 | (size_t)in[at + 1] << 16 | (size_t)in[at + 2] << 8 | in[at + 3];
      if (have - at < 4 + body)
        break;
      Tuma__V1__Envelope *r = tuma__v1__envelope__unpack(NULL, body, in + at + 4);
      if (!r || r->body_case != TUMA__V1__ENVELOPE__BODY_PONG || r->correlation_id != expect ||
          r->pong->nonce != expect)
        return 16;
      tuma__v1__envelope__free_unpacked(r, NULL);
      expect++;
      at += 4 + body;
    }
    memmove(in, in + at, have - at);
    have -= at;
  }
  free(in);
  free(chunk);
  tc_close(c, 1);
  return expect > want && want > 0 ? 0 : 17;
}

/* One operator floods the switch with pipelined requests and reads nothing back. The switch
 * must stop reading it (its replies pile up only to a bound), keep serving the others, and in
 * the end answer every one of the flood's requests exactly once and in order. */
Test(hostile, flood_from_one_operator, .timeout = 300) {
  so_ctx *t = so_start(NULL, &suite_cfg);
  tc_client *b = so_op_connect(t, "beta"), *g = so_op_connect(t, "gamma");
  so_transfer_ok(t, b, "beta", g, "gamma", 5, 10); /* warm-up */
  uint64_t rss0 = rss_kib(t->h->pid);
  cr_assert_gt(rss0, 0, "VmRSS of tumad");
  char ca[SH_PATH_MAX], cert[SH_PATH_MAX + 80], key[SH_PATH_MAX + 80];
  snprintf(ca, sizeof ca, "%s", t->h->ca);
  snprintf(cert, sizeof cert, "%s", sh_cert(t->h, "alpha"));
  snprintf(key, sizeof key, "%s", sh_key(t->h, "alpha"));
  int report[2], go[2];
  cr_assert_eq(pipe(report), 0);
  cr_assert_eq(pipe(go), 0);
  pid_t child = fork();
  cr_assert_geq(child, 0);
  if (child == 0)
    _exit(flood_child(t->h->port, ca, cert, key, report[1], go[0]));
  char byte = 0;
  struct pollfd p = {report[0], POLLIN, 0};
  int ready = poll(&p, 1, 120000) == 1 && read(report[0], &byte, 1) == 1;
  cr_assert(ready, "the flooding operator reports its flood done");
  uint64_t rss_max = rss_kib(t->h->pid);
  /* Meanwhile the others pay each other as usual. */
  for (int i = 0; i < 100; i++) {
    so_transfer_ok(t, b, "beta", g, "gamma", 10 + (uint64_t)i, 100 + 2 * (uint64_t)i);
    uint64_t r = rss_kib(t->h->pid);
    rss_max = r > rss_max ? r : rss_max;
  }
  cr_assert(write(go[1], "R", 1) == 1);
  int status = 0;
  int64_t deadline = so_mono_ms() + 150000;
  pid_t w = 0;
  while ((w = waitpid(child, &status, WNOHANG)) == 0 && so_mono_ms() < deadline)
    so_sleep_ms(50);
  if (w == 0) {
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
  }
  cr_assert(w == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "the flooding operator got every answer in order (exit status %d)",
            WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  cr_log_info("flood: tumad VmRSS %llu KiB before, at most %llu KiB during",
              (unsigned long long)rss0, (unsigned long long)rss_max);
  cr_assert_lt(rss_max, rss0 + RSS_SLACK_KIB,
               "tumad's memory stays bounded under the flood: %llu KiB → %llu KiB",
               (unsigned long long)rss0, (unsigned long long)rss_max);
  so_transfer_ok(t, b, "beta", g, "gamma", 3, 1000);
  so_finish(t);
}

/* ================================================================ a payee that never answers */

/* Rounds of pipelined prepares to a payee that reads nothing and answers nothing. With
 * max_in_flight 100 the switch stops reading the payer at 100 open prepares and reads on as
 * expiries free them (the prepares' expirations are staggered so that each group is read
 * before it is due). Every prepare ends EXPIRED (3303) — or, if the switch got to it only
 * after its expiration, refused — and tumad's memory does not grow from round to round. */
Test(hostile, payee_never_answers, .timeout = 300) {
  enum { ROUNDS = 4, PER_ROUND = 300, GROUP = 100, GROUP_MS = 1500 };
  sh_options o;
  memset(&o, 0, sizeof o);
  o.max_in_flight = GROUP;
  o.log_level = "info";
  so_ctx *t = so_start(&o, &suite_cfg);
  tc_client *a = so_op_connect(t, "alpha"), *b = so_op_connect(t, "beta");
  uint64_t rss_first = 0, rss_last = 0;
  size_t expired = 0, refused = 0;
  for (int round = 0; round < ROUNDS; round++) {
    static uint8_t ids[PER_ROUND][16];
    uint64_t t0 = sh_now_ms();
    for (int i = 0; i < PER_ROUND; i++) {
      so_new_id(ids[i]);
      so_prep p = so_simple(ids[i], "beta", 1);
      p.expiration_ms = t0 + 1000 + (uint64_t)(i / GROUP) * GROUP_MS;
      so_send_prepare(a, "alpha", (uint64_t)round * 1000 + (uint64_t)i + 1, &p);
    }
    for (int i = 0; i < PER_ROUND; i++) {
      Tuma__V1__Envelope *r = so_recv_env(a, "alpha", 30000);
      cr_assert_eq(r->body_case, TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT, "alpha: got %s",
                   so_body_name(r->body_case));
      uint64_t k = r->correlation_id - (uint64_t)round * 1000 - 1;
      cr_assert_lt(k, PER_ROUND, "a result for this round's prepares");
      const Tuma__V1__TransferResult *m = r->transfer_result;
      cr_assert(m->transfer_id.len == 16 && !memcmp(m->transfer_id.data, ids[k], 16));
      unsigned code = m->error ? m->error->code : 0;
      if (m->state == SO_ST_EXPIRED && code == 3303) {
        expired++;
        so_track(t, ids[k], SO_ST_EXPIRED, "never answered");
      } else {
        cr_assert(m->state == SO_ST_ABORTED && code == 3100, "prepare %llu: %s %u",
                  (unsigned long long)k, so_state_name(m->state), code);
        refused++;
        so_track(t, ids[k], SO_ST_ABORTED, "due before read");
      }
      tuma__v1__envelope__free_unpacked(r, NULL);
    }
    uint64_t rss = rss_kib(t->h->pid);
    if (round == 0)
      rss_first = rss;
    rss_last = rss;
  }
  cr_log_info("payee silent: %zu expired, %zu refused as due; VmRSS %llu → %llu KiB", expired,
              refused, (unsigned long long)rss_first, (unsigned long long)rss_last);
  cr_assert_gt(expired, (size_t)ROUNDS * PER_ROUND / 2, "expiries fired (%zu of %d)", expired,
               ROUNDS * PER_ROUND);
  cr_assert_lt(rss_last, rss_first + RSS_SLACK_KIB / 2, "VmRSS %llu → %llu KiB",
               (unsigned long long)rss_first, (unsigned long long)rss_last);
  /* The silent payee is told of each expiry after its forward. */
  size_t forwards = 0, notices = 0;
  Tuma__V1__Envelope *r = NULL;
  while (tc_recv(b, 2000, &r) == TC_OK) {
    if (r->body_case == TUMA__V1__ENVELOPE__BODY_TRANSFER_FORWARD)
      forwards++;
    else if (r->body_case == TUMA__V1__ENVELOPE__BODY_TRANSFER_RESULT &&
             r->transfer_result->state == SO_ST_EXPIRED)
      notices++;
    tuma__v1__envelope__free_unpacked(r, NULL);
    r = NULL;
  }
  /* A transfer already due when its reservation committed expires without a forward. */
  cr_assert(forwards > 0 && forwards <= expired, "forwards %zu, expired %zu", forwards, expired);
  cr_assert_eq(notices, forwards, "one expiry notice per forward");
  so_transfer_ok(t, a, "alpha", b, "beta", 9, 90000);
  so_finish(t);
}

/* ================================================================ certificates */

/* Expired, revoked (CRL) and foreign-CA certificates are refused at the handshake, and the
 * refusals do not disturb an established operator. The CRL is read at start-up: a revocation
 * takes effect at the next start of tumad (SECURITY.md). */
Test(hostile, bad_certificates) {
  sh_options o;
  memset(&o, 0, sizeof o);
  o.tls_crl = 1;
  so_ctx *t = so_start(&o, &suite_cfg);
  tc_client *a = so_op_connect(t, "alpha");
  char dir[SH_PATH_MAX + 32], cert[SH_PATH_MAX + 48], key[SH_PATH_MAX + 48];

  /* Expired: valid for one day, three days ago. */
  snprintf(dir, sizeof dir, "%s/expired", t->h->dir);
  const char *old[] = {"--days", "1", "--not-before-days-ago", "3", NULL};
  cr_assert_eq(sh_issue(t->h, "beta", "operator", dir, old), 0, "tuma pki issue (expired)");
  snprintf(cert, sizeof cert, "%s/beta.crt", dir);
  snprintf(key, sizeof key, "%s/beta.key", dir);
  for (int i = 0; i < 5; i++) {
    tc_client *c = NULL;
    char err[300];
    int rc = tc_connect(t->h->port, t->h->ca, cert, key, SO_T_ANSWER, &c, err, sizeof err);
    if (rc == TC_OK) {
      so_expect_refused_handshake(c, "beta (expired)");
      tc_close(c, 0);
    } else {
      cr_assert_eq(rc, TC_E_TLS, "handshake: %s: %s", tc_strerror(rc), err);
    }
  }
  cr_assert(sh_log_contains(t->h, "certificate has expired"), "tumad says why");

  /* Another CA's "gamma". */
  snprintf(dir, sizeof dir, "%s/other", t->h->dir);
  const char *init[] = {"pki", "init", "--dir", dir, NULL};
  cr_assert_eq(sh_run_cli(t->h, init, 10000), 0, "tuma pki init (another CA)");
  const char *issue[] = {"pki",   "issue",  "--dir",    dir, "--name",
                         "gamma", "--role", "operator", NULL};
  cr_assert_eq(sh_run_cli(t->h, issue, 10000), 0);
  snprintf(cert, sizeof cert, "%s/gamma.crt", dir);
  snprintf(key, sizeof key, "%s/gamma.key", dir);
  for (int i = 0; i < 5; i++) {
    tc_client *c = NULL;
    char err[300];
    int rc = tc_connect(t->h->port, t->h->ca, cert, key, SO_T_ANSWER, &c, err, sizeof err);
    if (rc == TC_OK) {
      so_expect_refused_handshake(c, "gamma (other CA)");
      tc_close(c, 0);
    } else {
      cr_assert_eq(rc, TC_E_TLS, "handshake: %s: %s", tc_strerror(rc), err);
    }
  }
  /* The established connection did not notice. */
  so_send_ping(a, "alpha", 2, 22);
  so_expect_pong(a, "alpha", 2, 22);

  /* Revoked: gamma's certificate goes on the CRL; at the next start it is refused. */
  const char *revoke[] = {"pki", "revoke", "--dir", t->h->pki, "--name", "gamma", NULL};
  cr_assert_eq(sh_run_cli(t->h, revoke, 10000), 0, "tuma pki revoke gamma");
  int status = 0;
  cr_assert_eq(sh_stop(t->h, SO_T_STOP, &status), 0);
  so_drop_all(t);
  so_restart(t);
  a = so_op_connect(t, "alpha");
  tc_client *b = so_op_connect(t, "beta");
  for (int i = 0; i < 5; i++) {
    tc_client *c = NULL;
    char err[300];
    int rc = tc_connect(t->h->port, t->h->ca, sh_cert(t->h, "gamma"), sh_key(t->h, "gamma"),
                        SO_T_ANSWER, &c, err, sizeof err);
    if (rc == TC_OK) {
      so_expect_refused_handshake(c, "gamma (revoked)");
      tc_close(c, 0);
    } else {
      cr_assert_eq(rc, TC_E_TLS, "handshake: %s: %s", tc_strerror(rc), err);
    }
  }
  cr_assert(sh_log_contains(t->h, "certificate revoked"), "tumad says why");
  so_transfer_ok(t, a, "alpha", b, "beta", 250, 30);
  so_finish(t);
}
