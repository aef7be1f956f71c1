/* log.c — the simulated operator's log lines on stderr (log.h). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int opsim_log_level_parse(const char *name, opsim_log_level *out) {
  for (int i = 0; i < 4; i++)
    if (name && strcmp(name, level_names[i]) == 0) {
      *out = (opsim_log_level)i;
      return 0;
    }
  return -1;
}

void opsim_logf(const opsim_log *log, opsim_log_level level, const char *fmt, ...) {
  if (level > log->level)
    return;
  struct timespec ts;
  struct tm tm;
  char stamp[64] = "";
  if (clock_gettime(CLOCK_REALTIME, &ts) == 0 && gmtime_r(&ts.tv_sec, &tm))
    snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s tuma-opsim[%s] %s: %s\n", stamp, log->who ? log->who : "-",
          level_names[level], line);
}
