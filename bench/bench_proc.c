/* bench_proc.c — the child processes of the benchmarks that drive whole programs (tumad, the
 * tuma CLI, tuma-opsim): finding the build tree's binaries, spawning with the signal mask
 * cleared, waiting with a time limit (and for the benchmark's own interruption), stopping,
 * their CPU time, free loopback ports. Benchmark code only. */
#include "bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

void bench_sleep_ms(unsigned ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

int bench_proc_spawn(char *const argv[], const char *out_path, const char *err_path, pid_t *pid) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  int rc = posix_spawn_file_actions_init(&fa);
  if (rc)
    return errno = rc, -1;
  rc = posix_spawnattr_init(&at);
  if (rc) {
    posix_spawn_file_actions_destroy(&fa);
    return errno = rc, -1;
  }
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGHUP);
  sigaddset(&defaults, SIGPIPE);
  const int oflags = O_WRONLY | O_CREAT | O_APPEND;
  rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (!rc)
    rc = posix_spawn_file_actions_addopen(&fa, 1, out_path, oflags, 0600);
  if (!rc && err_path)
    rc = posix_spawn_file_actions_addopen(&fa, 2, err_path, oflags, 0600);
  else if (!rc)
    rc = posix_spawn_file_actions_adddup2(&fa, 1, 2);
  if (!rc)
    rc = posix_spawnattr_setsigmask(&at, &none);
  if (!rc)
    rc = posix_spawnattr_setsigdefault(&at, &defaults);
  if (!rc)
    rc = posix_spawnattr_setpgroup(&at, 0);
  if (!rc)
    rc = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                           POSIX_SPAWN_SETPGROUP);
  if (!rc)
    rc = posix_spawn(pid, argv[0], &fa, &at, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  if (rc)
    return errno = rc, -1;
  return 0;
}

static int exit_status(int st) {
  if (WIFEXITED(st))
    return WEXITSTATUS(st);
  return 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

int bench_proc_wait(pid_t pid, unsigned timeout_ms, int *status) {
  uint64_t deadline = bench_now_ns() + (uint64_t)timeout_ms * 1000000u;
  unsigned nap = 1;
  for (;;) {
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) {
      *status = exit_status(st);
      return 0;
    }
    if (r < 0 && errno != EINTR)
      return -1;
    if (bench_interrupted()) {
      errno = EINTR;
      return -1;
    }
    if (bench_now_ns() >= deadline) {
      errno = ETIMEDOUT;
      return -1;
    }
    bench_sleep_ms(nap);
    if (nap < 10)
      nap++;
  }
}

int bench_proc_run(char *const argv[], const char *out_path, const char *err_path,
                   unsigned timeout_ms) {
  pid_t pid;
  if (bench_proc_spawn(argv, out_path, err_path, &pid) != 0)
    return -1;
  int st;
  if (bench_proc_wait(pid, timeout_ms, &st) == 0)
    return st;
  int e = errno;
  kill(pid, SIGKILL);
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  errno = e;
  return -1;
}

int bench_proc_stop(pid_t pid, unsigned timeout_ms) {
  if (kill(pid, SIGTERM) != 0)
    return -1;
  int st;
  uint64_t deadline = bench_now_ns() + (uint64_t)timeout_ms * 1000000u;
  while (bench_now_ns() < deadline) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid)
      return exit_status(st);
    if (r < 0 && errno != EINTR)
      return -1;
    bench_sleep_ms(10);
  }
  kill(pid, SIGKILL);
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return 128 + SIGKILL;
}

char *bench_proc_find(const char *env, const char *rel) {
  const char *e = getenv(env);
  if (e && *e)
    return strdup(e);
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0)
    return NULL;
  self[n] = '\0';
  char *slash = strrchr(self, '/');
  if (!slash)
    return NULL;
  *slash = '\0';
  size_t len = strlen(self) + strlen(rel) + 8;
  char *out = malloc(len);
  if (out)
    snprintf(out, len, "%s/../%s", self, rel);
  return out;
}

double bench_proc_cpu_s(pid_t pid) {
  char path[64], buf[2048];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return -1;
  buf[n] = '\0';
  char *p = strrchr(buf, ')'); /* the command name may hold spaces */
  if (!p)
    return -1;
  unsigned long long ut = 0, st = 0;
  if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    return -1;
  long hz = sysconf(_SC_CLK_TCK);
  return hz > 0 ? (double)(ut + st) / (double)hz : -1;
}

int bench_free_ports(uint16_t *out, size_t n) {
  int fds[8];
  int rc = 0;
  if (n > 8)
    return errno = EINVAL, -1;
  for (size_t i = 0; i < n; i++)
    fds[i] = -1;
  for (size_t i = 0; i < n && rc == 0; i++) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fds[i], (struct sockaddr *)&a, &len) != 0)
      rc = -1;
    else
      out[i] = ntohs(a.sin_port);
  }
  for (size_t i = 0; i < n; i++)
    if (fds[i] >= 0)
      close(fds[i]);
  return rc;
}

int bench_file_contains(const char *path, const char *text) {
  FILE *f = fopen(path, "r");
  if (!f)
    return 0;
  char line[4096];
  int found = 0;
  while (!found && fgets(line, sizeof line, f))
    found = strstr(line, text) != NULL;
  fclose(f);
  return found;
}
