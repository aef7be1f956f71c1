/* faultinject.c — an LD_PRELOAD shim for the fault-injection tests (tests/test_faults.c): makes
 * the calls that make data durable fail, so that a test can check that tumad never
 * acknowledges what it could not sync. Test code only; built as a shared module by
 * tests/meson.build and never installed.
 *
 * Interposed: fsync, fdatasync, msync, sync_file_range (LMDB's commit syncs its data pages with
 * fdatasync on Linux, or msync with MDB_WRITEMAP; its meta page goes through an O_DSYNC
 * descriptor and is not affected). Controlled by the environment, read at every call:
 *
 *   TUMA_FI_SYNC_FAIL_FILE=PATH   fail while PATH exists (the test creates and removes it)
 *   TUMA_FI_SYNC_FAIL_AFTER=N     let N calls succeed (counted while failing is armed: always,
 *                                 or while PATH exists when both are set), fail the rest
 *   TUMA_FI_SYNC_ERRNO=N          errno of a failed call (default EIO)
 *
 * A full disk, the same way: pwrite, pwrite64, pwritev, pwritev64 and writev on a regular file
 * (LMDB writes its pages and its meta page with these; descriptors 0-2 and sockets are never
 * touched, so logs and connections go on) fail with ENOSPC:
 *
 *   TUMA_FI_WRITE_FAIL_FILE=PATH  fail while PATH exists
 *   TUMA_FI_WRITE_ERRNO=N         errno of a failed write (default ENOSPC)
 *
 * With no variable set every call goes through. Each failure is written to stderr as
 * "faultinject: fdatasync(fd 5) -> errno 5"; at load, "faultinject: loaded" (tests look for it
 * to tell whether the shim is in effect).
 */
/* Both pwrite and pwrite64 are interposed: they must not be one symbol here. */
#undef _FILE_OFFSET_BITS
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* The shim's only state: how many armed calls went through (shared by all threads). */
static atomic_ulong fi_armed_calls;

__attribute__((constructor)) static void fi_loaded(void) {
  static const char msg[] = "faultinject: loaded\n";
  ssize_t w = write(2, msg, sizeof msg - 1);
  (void)w;
}

/* 1 if this call must fail (errno is set then). */
static int fi_should_fail(const char *what, int fd) {
  const char *file = getenv("TUMA_FI_SYNC_FAIL_FILE");
  const char *after = getenv("TUMA_FI_SYNC_FAIL_AFTER");
  if (!file && !after)
    return 0;
  if (file && access(file, F_OK) != 0)
    return 0;
  unsigned long n = atomic_fetch_add(&fi_armed_calls, 1) + 1;
  if (after && n <= strtoul(after, NULL, 10))
    return 0;
  const char *e = getenv("TUMA_FI_SYNC_ERRNO");
  int err = e ? atoi(e) : EIO;
  fprintf(stderr, "faultinject: %s(fd %d) -> errno %d\n", what, fd, err);
  errno = err;
  return 1;
}

static void *fi_next(const char *name) {
  return dlsym(RTLD_NEXT, name);
}

int fsync(int fd) {
  if (fi_should_fail("fsync", fd))
    return -1;
  int (*real)(int) = (int (*)(int))fi_next("fsync");
  return real ? real(fd) : (errno = ENOSYS, -1);
}

int fdatasync(int fd) {
  if (fi_should_fail("fdatasync", fd))
    return -1;
  int (*real)(int) = (int (*)(int))fi_next("fdatasync");
  return real ? real(fd) : (errno = ENOSYS, -1);
}

int msync(void *addr, size_t len, int flags) {
  if (fi_should_fail("msync", -1))
    return -1;
  int (*real)(void *, size_t, int) = (int (*)(void *, size_t, int))fi_next("msync");
  return real ? real(addr, len, flags) : (errno = ENOSYS, -1);
}

int sync_file_range(int fd, off_t off, off_t n, unsigned int flags) {
  if (fi_should_fail("sync_file_range", fd))
    return -1;
  int (*real)(int, off_t, off_t, unsigned int) =
      (int (*)(int, off_t, off_t, unsigned int))fi_next("sync_file_range");
  return real ? real(fd, off, n, flags) : (errno = ENOSYS, -1);
}

/* 1 if this write must fail as if the disk were full (errno is set then). */
static int fi_write_fails(const char *what, int fd) {
  const char *file = getenv("TUMA_FI_WRITE_FAIL_FILE");
  struct stat st;
  if (!file || fd <= 2 || access(file, F_OK) != 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
    return 0;
  const char *e = getenv("TUMA_FI_WRITE_ERRNO");
  int err = e ? atoi(e) : ENOSPC;
  fprintf(stderr, "faultinject: %s(fd %d) -> errno %d\n", what, fd, err);
  errno = err;
  return 1;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
  if (fi_write_fails("pwrite", fd))
    return -1;
  ssize_t (*real)(int, const void *, size_t, off_t) =
      (ssize_t(*)(int, const void *, size_t, off_t))fi_next("pwrite");
  return real ? real(fd, buf, n, off) : (errno = ENOSYS, -1);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off) {
  if (fi_write_fails("pwrite64", fd))
    return -1;
  ssize_t (*real)(int, const void *, size_t, off64_t) =
      (ssize_t(*)(int, const void *, size_t, off64_t))fi_next("pwrite64");
  return real ? real(fd, buf, n, off) : (errno = ENOSYS, -1);
}

ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off) {
  if (fi_write_fails("pwritev", fd))
    return -1;
  ssize_t (*real)(int, const struct iovec *, int, off_t) =
      (ssize_t(*)(int, const struct iovec *, int, off_t))fi_next("pwritev");
  return real ? real(fd, iov, n, off) : (errno = ENOSYS, -1);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int n, off64_t off) {
  if (fi_write_fails("pwritev64", fd))
    return -1;
  ssize_t (*real)(int, const struct iovec *, int, off64_t) =
      (ssize_t(*)(int, const struct iovec *, int, off64_t))fi_next("pwritev64");
  return real ? real(fd, iov, n, off) : (errno = ENOSYS, -1);
}

ssize_t writev(int fd, const struct iovec *iov, int n) {
  if (fi_write_fails("writev", fd))
    return -1;
  ssize_t (*real)(int, const struct iovec *, int) =
      (ssize_t(*)(int, const struct iovec *, int))fi_next("writev");
  return real ? real(fd, iov, n) : (errno = ENOSYS, -1);
}
