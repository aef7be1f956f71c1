/* fuzz_config.c — libFuzzer target for tumad's INI configuration (switch/config.h): the input
 * is a configuration file. sw_config_load() must either accept it or reject it with one
 * "FILE:LINE: …" message, never crash, leak or read out of bounds; an accepted configuration
 * must hold what config.h promises (ranges, absolute TLS paths, participants with ids).
 *
 * The file lives in a memfd (no disk) and is loaded through /proc/self/fd/N, as tumad would
 * load a path.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
  do {                                                                                             \
    if (!(cond))                                                                                   \
      abort();                                                                                     \
  } while (0)

/* What an accepted configuration must satisfy (config.h). */
static void check_accepted(const sw_config *cfg) {
  FUZZ_CHECK(cfg->data_dir && cfg->data_dir[0]);
  FUZZ_CHECK(cfg->max_frame_bytes >= 256 && cfg->max_frame_bytes <= 16777216);
  FUZZ_CHECK(cfg->max_connections >= 1 && cfg->max_in_flight >= 1);
  FUZZ_CHECK(cfg->read_timeout_ms >= 100 && cfg->max_expiry_ms >= 1000);
  FUZZ_CHECK(cfg->map_size_mb >= 1 && cfg->map_size_max_mb >= cfg->map_size_mb);
  FUZZ_CHECK(cfg->queue_capacity >= 1 && cfg->batch_max >= 1 && cfg->batch_max <= 8190);
  FUZZ_CHECK(cfg->tls_ca && cfg->tls_ca[0] == '/');
  FUZZ_CHECK(cfg->tls_cert && cfg->tls_cert[0] == '/');
  FUZZ_CHECK(cfg->tls_key && cfg->tls_key[0] == '/');
  FUZZ_CHECK(!cfg->tls_crl || cfg->tls_crl[0] == '/');
  FUZZ_CHECK(cfg->n_participants <= SW_CONFIG_MAX_PARTICIPANTS);
  for (size_t i = 0; i < cfg->n_participants; i++) {
    const sw_participant *p = &cfg->participants[i].p;
    FUZZ_CHECK(p->id[0] != 0 && memchr(p->id, 0, sizeof p->id));
    FUZZ_CHECK(p->n_currencies <= SW_PARTICIPANT_MAX_CURRENCIES);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int fd = memfd_create("tumad.ini", MFD_CLOEXEC);
  FUZZ_CHECK(fd >= 0);
  size_t off = 0;
  while (off < size) {
    ssize_t n = write(fd, data + off, size - off);
    FUZZ_CHECK(n > 0);
    off += (size_t)n;
  }
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  sw_config cfg;
  char err[1024];
  memset(err, 0, sizeof err);
  int rc = sw_config_load(path, &cfg, err, sizeof err);
  if (rc == SW_CONFIG_E_OK) {
    check_accepted(&cfg);
    sw_config_free(&cfg);
    sw_config_free(&cfg); /* freeing twice is allowed (zeroed) */
  } else {
    FUZZ_CHECK(rc == SW_CONFIG_E_INVALID || rc == SW_CONFIG_E_IO || rc == SW_CONFIG_E_NOMEM);
    FUZZ_CHECK(memchr(err, 0, sizeof err) != NULL);
    FUZZ_CHECK(strncmp(err, path, strlen(path)) == 0); /* "FILE:LINE: …" or "FILE: …" */
    FUZZ_CHECK(cfg.participants == NULL && cfg.data_dir == NULL); /* left zeroed */
  }
  close(fd);
  return 0;
}
