/* log.h — the simulated operator's log: one line per event on stderr, with a time stamp, the
 * participant and a level. Party identifiers are masked by the callers (msisdn.h). */
#ifndef TUMA_ADAPTERS_OPSIM_LOG_H
#define TUMA_ADAPTERS_OPSIM_LOG_H

typedef enum opsim_log_level {
  OPSIM_LOG_ERROR = 0,
  OPSIM_LOG_WARN = 1,
  OPSIM_LOG_INFO = 2,
  OPSIM_LOG_DEBUG = 3,
} opsim_log_level;

typedef struct opsim_log {
  opsim_log_level level; /* lines above this level are dropped */
  const char *who;       /* borrowed for the log's life: the participant id */
} opsim_log;

/* The level named name ("error", "warn", "info", "debug"): 0 and *out, or -1. */
int opsim_log_level_parse(const char *name, opsim_log_level *out);

/* Writes one line (the message is printf-formatted) if level is enabled. */
void opsim_logf(const opsim_log *log, opsim_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
