/* log.h — structured log lines: `ts=… level=… event=… key=value …` on stderr, one per line.
 * Party identifiers never go in as they are: callers pass them through sw_mask (registry.h). */
#ifndef TUMA_SWITCH_LOG_H
#define TUMA_SWITCH_LOG_H

enum { SW_LOG_ERROR = 0, SW_LOG_WARN = 1, SW_LOG_INFO = 2, SW_LOG_DEBUG = 3 };

typedef struct sw_logger {
  int level; /* lines above this level are dropped */
} sw_logger;

/* Writes one line: the event name, then the printf-formatted key=value text. */
void sw_log(const sw_logger *lg, int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Parses "error|warn|info|debug"; -1 if unknown. */
int sw_log_level_parse(const char *s);

#endif
