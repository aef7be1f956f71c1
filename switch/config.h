/* config.h — tumad's configuration file: an INI file (libinih) with the sections [switch],
 * [ledger], [tls] and one [participant ID] per operator, every setting validated, every error
 * reported as "FILE:LINE: [section] key: what is wrong". switch/tumad.ini.example documents
 * each setting with its default and range.
 *
 * Paths: [tls] paths that are not absolute are relative to the directory of the configuration
 * file and come out absolute. data_dir and directory_secret_file are kept as written (relative
 * ones are relative to tumad's working directory).
 *
 * List values (currencies, msisdn_prefixes) are comma-separated and may continue on indented
 * lines. Any other indented line is an error: INI reads it as the continuation of the previous
 * value. Lines are at most 197 characters (libinih's line buffer).
 */
#ifndef TUMA_SW_CONFIG_H
#define TUMA_SW_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "registry.h"

#define SW_CONFIG_MAX_PARTICIPANTS 256

/* log_level; a larger value logs more. */
typedef enum sw_config_log_level {
  SW_CONFIG_LOG_ERROR = 0,
  SW_CONFIG_LOG_WARN = 1,
  SW_CONFIG_LOG_INFO = 2,
  SW_CONFIG_LOG_DEBUG = 3,
} sw_config_log_level;

/* A listening address. host is an IPv4 literal, an IPv6 literal (written "[::1]:7400" in the
 * file, stored without the brackets) or a host name. Port 0 means "any free port". */
typedef struct sw_config_addr {
  char host[256];
  uint16_t port;
} sw_config_addr;

/* One [participant ID] section. p is ready for sw_registry_put_participant (p.number is 0: the
 * registry assigns it). initial_deposit[i] is the deposit for p.currencies[i] (0 = none). */
typedef struct sw_config_participant {
  sw_participant p;
  uint64_t initial_deposit[SW_PARTICIPANT_MAX_CURRENCIES];
  int line; /* line of its [participant ID] header */
} sw_config_participant;

/* The whole configuration. Strings and the participants array are owned by the struct and
 * freed by sw_config_free(). */
typedef struct sw_config {
  char *path; /* the file loaded, as given */

  /* [switch] */
  sw_config_addr listen;         /* operators (mTLS); default 127.0.0.1:7400 */
  sw_config_addr admin_listen;   /* admin protocol (mTLS); default 127.0.0.1:7401 */
  sw_config_addr metrics_listen; /* /metrics and /healthz, HTTP, loopback only; 127.0.0.1:7402 */
  char *data_dir;                /* default "var/tumad" */
  uint32_t max_frame_bytes;      /* 256..16777216, default 65536 */
  uint32_t admin_max_frame_bytes; /* admin listener (file uploads), 256..67108864, default 4 MiB */
  uint32_t max_connections;      /* 1..1048576, default 1024 */
  uint32_t max_in_flight;        /* per connection, 1..1048576, default 4096 */
  uint32_t read_timeout_ms;      /* partial-frame timeout, 100..3600000, default 10000 */
  uint32_t max_expiry_ms;        /* 1000..86400000, default 300000 */
  sw_config_log_level log_level; /* default SW_CONFIG_LOG_INFO */
  char *directory_secret_file;   /* default DATA_DIR/directory.key */

  /* [ledger] */
  uint64_t map_size_mb;     /* 1..67108864, default 64 */
  uint64_t map_size_max_mb; /* map_size_mb..67108864, default 1048576 */
  uint32_t queue_capacity;  /* 1..16777216, default 65536 */
  uint32_t batch_max;       /* 1..8190, default 8190 */

  /* [disburse] */
  uint32_t disburse_max_attempts;   /* per item and cycle, 1..100, default 8 */
  uint32_t disburse_retry_ms;       /* first retry delay, doubling, 10..3600000, default 1000 */
  uint32_t disburse_item_expiry_ms; /* each item payment's expiration, default 30000 */

  /* [tls]: absolute paths; crl is NULL when not configured */
  char *tls_ca;
  char *tls_cert;
  char *tls_key;
  char *tls_crl;

  /* [audit]: signed journal checkpoints (ledger/JOURNAL.md) */
  char *checkpoint_key;      /* Ed25519 private key (PEM), absolute path; NULL = no checkpoints */
  uint32_t checkpoint_every; /* batches between checkpoints, 1..100000000, default 1000 */

  /* [participant ID] sections, in file order */
  sw_config_participant *participants;
  size_t n_participants;
} sw_config;

/* Return codes (0 = ok). */
typedef enum sw_config_error {
  SW_CONFIG_E_OK = 0,
  SW_CONFIG_E_NOMEM = 1,   /* allocation failed */
  SW_CONFIG_E_IO = 2,      /* the file cannot be opened or read */
  SW_CONFIG_E_INVALID = 3, /* the file is not a valid configuration */
} sw_config_error;

/* A static message for a sw_config_error; never NULL. */
const char *sw_config_strerror(int err);

/* Loads and validates configuration file `path` into *out (overwritten; defaults for what the
 * file does not set). On success the caller owns *out and frees it with sw_config_free(). On
 * failure *out is left zeroed (nothing to free) and, when err is not NULL, err[errlen] gets one
 * line: "FILE:LINE: [section] key: what is wrong" (FILE is `path` as given; a missing key is
 * reported at its section's header line, or at the last line when the section is absent; an
 * unreadable file as "FILE: cannot open: reason"). The first error found is reported.
 * Cost: O(file size + participants²·prefixes). Errors: _NOMEM, _IO, _INVALID. */
int sw_config_load(const char *path, sw_config *out, char *err, size_t errlen);

/* Frees what a loaded configuration owns and zeroes it; accepts NULL and zeroed structs. */
void sw_config_free(sw_config *cfg);

#endif
