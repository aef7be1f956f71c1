/* bench_scratch.c — the benchmarks' scratch directories: where they go (the temp folder), fresh
 * ones per run, their size on disk (db_bytes), and removing them afterwards — also when the
 * run is interrupted (Ctrl-C, kill), which the benchmarks poll for between batches. */
#include "bench.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What a walk does at each entry. */
typedef struct walk_ctx {
  int remove;        /* unlink files and rmdir directories (after their contents) */
  uint64_t apparent; /* sizes of regular files, when not removing */
  uint64_t allocated;
  int first_errno; /* the first failure, 0 if none */
} walk_ctx;

static void walk_fail(walk_ctx *w) {
  if (w->first_errno == 0)
    w->first_errno = errno ? errno : EIO;
}

/* Walks the directory open at dirfd (which it takes over and closes), depth first, without
 * following symbolic links. Recursion depth = the tree's depth (small for our directories). */
static void walk_dir(int dirfd, walk_ctx *w) {
  DIR *d = fdopendir(dirfd);
  if (!d) {
    walk_fail(w);
    close(dirfd);
    return;
  }
  for (;;) {
    errno = 0;
    struct dirent *e = readdir(d);
    if (!e) {
      if (errno)
        walk_fail(w);
      break;
    }
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    struct stat st;
    if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      walk_fail(w);
      continue;
    }
    if (S_ISDIR(st.st_mode)) {
      int sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub < 0) {
        walk_fail(w);
        continue;
      }
      walk_dir(sub, w);
      if (w->remove && unlinkat(dirfd, e->d_name, AT_REMOVEDIR) != 0)
        walk_fail(w);
    } else if (w->remove) {
      if (unlinkat(dirfd, e->d_name, 0) != 0)
        walk_fail(w);
    } else if (S_ISREG(st.st_mode)) {
      w->apparent += (uint64_t)st.st_size;
      w->allocated += (uint64_t)st.st_blocks * 512u;
    }
  }
  closedir(d); /* closes dirfd too */
}

static int walk(const char *dir, walk_ctx *w) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return -1;
  walk_dir(fd, w);
  if (w->remove && rmdir(dir) != 0)
    walk_fail(w);
  if (w->first_errno) {
    errno = w->first_errno;
    return -1;
  }
  return 0;
}

const char *bench_scratch_base(const char *override) {
  if (override)
    return override;
  const char *env = getenv("TMPDIR");
  return env && *env ? env : "/tmp";
}

int bench_scratch_create(const char *base, const char *what, char **out) {
  size_t len = strlen(base) + strlen(what) + sizeof "/tuma-bench-.XXXXXX";
  char *path = malloc(len);
  if (!path)
    return -1;
  int n = snprintf(path, len, "%s/tuma-bench-%s.XXXXXX", base, what);
  if (n < 0 || (size_t)n >= len) {
    free(path);
    errno = ENAMETOOLONG;
    return -1;
  }
  if (!mkdtemp(path)) {
    int e = errno;
    free(path);
    errno = e;
    return -1;
  }
  *out = path;
  return 0;
}

int bench_scratch_remove(const char *dir) {
  if (!dir)
    return 0;
  walk_ctx w = {.remove = 1};
  return walk(dir, &w);
}

int bench_scratch_size(const char *dir, uint64_t *apparent, uint64_t *allocated) {
  walk_ctx w = {.remove = 0};
  if (walk(dir, &w) != 0)
    return -1;
  *apparent = w.apparent;
  *allocated = w.allocated;
  return 0;
}

static void interrupt_set(sigset_t *set) {
  sigemptyset(set);
  sigaddset(set, SIGINT);
  sigaddset(set, SIGTERM);
  sigaddset(set, SIGHUP);
}

int bench_interrupt_block(void) {
  sigset_t set;
  interrupt_set(&set);
  int rc = pthread_sigmask(SIG_BLOCK, &set, NULL);
  if (rc != 0) {
    errno = rc;
    return -1;
  }
  return 0;
}

int bench_interrupted(void) {
  sigset_t pending;
  if (sigpending(&pending) != 0)
    return 0;
  if (sigismember(&pending, SIGINT) == 1)
    return SIGINT;
  if (sigismember(&pending, SIGTERM) == 1)
    return SIGTERM;
  if (sigismember(&pending, SIGHUP) == 1)
    return SIGHUP;
  return 0;
}
