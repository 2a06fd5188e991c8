/*
 * bun-lwmsg native shim.
 *
 * The few things Bun cannot do for us on a raw AF_UNIX socket, as plain
 * fixed-arity C functions for bun:ffi (no variadic calls cross the FFI):
 *   - socket / socketpair / bind+listen / accept / connect, all O_NONBLOCK and
 *     close-on-exec from birth (no window for a fork+exec to inherit them);
 *   - sendmsg with SCM_RIGHTS, recvmsg with
 *     MSG_CMSG_CLOEXEC that reports MSG_CTRUNC;
 *   - peer credentials (SO_PEERCRED, getpeereid fallback);
 *   - a readiness poller: one epoll thread per process that tells the JS
 *     thread which fds became ready, either by a "doorbell" byte written into
 *     a socketpair Bun itself watches, or by a threadsafe JSCallback.
 *
 * Every function returns >= 0 on success and -errno on failure, so JS never
 * has to read a thread-local errno after the fact.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/epoll.h>
#include <sys/prctl.h>
#endif

#define LW_MAX_FDS 256

/* lwmsg never lets a socket land on 0..2: a stray printf would write into it. */
static int lw_lift_fd(int fd) {
  if (fd < 0 || fd > 2) return fd;
  int up = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  int err = errno;
  close(fd);
  if (up < 0) return -err;
  return up;
}

static int lw_set_nonblock_cloexec(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -errno;
  if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) return -errno;
  return 0;
}

/* Fill a sockaddr_un. `len` bytes of `path` are the name; a leading NUL makes
 * it a Linux abstract name whose length is exactly `len` (NULs significant). */
static int lw_fill_addr(struct sockaddr_un *sa, socklen_t *salen, const char *path, int len) {
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  int abstract = len > 0 && path[0] == '\0';
  /* A filesystem path needs room for its NUL: 107 usable bytes on Linux. */
  if (len <= 0 || (size_t)len + (abstract ? 0 : 1) > sizeof sa->sun_path) return -ENAMETOOLONG;
  memcpy(sa->sun_path, path, (size_t)len);
  *salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)len + (abstract ? 0 : 1));
  return 0;
}

static int lw_new_stream_socket(void) {
#ifdef SOCK_CLOEXEC
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
#else
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) return -errno;
  int r = lw_set_nonblock_cloexec(fd);
  if (r < 0) { close(fd); return r; }
#endif
  return lw_lift_fd(fd);
}

/* socketpair, both ends non-blocking and close-on-exec; out[0], out[1]. */
int lw_socketpair(int32_t *out) {
  int sv[2];
#ifdef SOCK_CLOEXEC
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) return -errno;
#else
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) return -errno;
  lw_set_nonblock_cloexec(sv[0]);
  lw_set_nonblock_cloexec(sv[1]);
#endif
  int a = lw_lift_fd(sv[0]);
  int b = lw_lift_fd(sv[1]);
  if (a < 0 || b < 0) {
    if (a >= 0) close(a);
    if (b >= 0) close(b);
    return a < 0 ? a : b;
  }
  out[0] = a;
  out[1] = b;
  return 0;
}

/* Start a non-blocking connect. Returns the fd (connected, or with the connect
 * still in progress: out_state = 0 done, 1 in progress). Linux answers EAGAIN
 * when the listener's backlog is full; that is reported as -EAGAIN so the
 * caller can retry later on a timer rather than block. */
int lw_connect(const char *path, int len, int32_t *out_state) {
  struct sockaddr_un sa;
  socklen_t salen;
  int r = lw_fill_addr(&sa, &salen, path, len);
  if (r < 0) return r;
  int fd = lw_new_stream_socket();
  if (fd < 0) return fd;
  if (connect(fd, (struct sockaddr *)&sa, salen) == 0) {
    *out_state = 0;
    return fd;
  }
  int err = errno;
  if (err == EINPROGRESS) {
    *out_state = 1;
    return fd;
  }
  close(fd);
  return -err;
}

/* Result of a connect that was in progress: 0 or -errno (SO_ERROR). */
int lw_connect_result(int fd) {
  int err = 0;
  socklen_t l = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0) return -errno;
  return -err;
}

/* What lwmsg does unconditionally (unlink the path before bind), done only
 * when it is safe: nothing there is fine; a socket nobody listens on any more
 * (connect says ECONNREFUSED) is removed; a live socket is -EADDRINUSE (do
 * not steal another server's endpoint); anything else (a file, a directory,
 * a symlink) is -EEXIST and left alone. */
static int lw_clear_stale_socket(const struct sockaddr_un *sa, socklen_t salen) {
  struct stat st;
  if (lstat(sa->sun_path, &st) < 0) return errno == ENOENT ? 0 : -errno;
  if (!S_ISSOCK(st.st_mode)) return -EEXIST;
  int probe = lw_new_stream_socket();
  if (probe < 0) return probe;
  int cr = connect(probe, (const struct sockaddr *)sa, salen);
  int ce = errno;
  close(probe);
  if (cr == 0 || ce == EAGAIN || ce == EINPROGRESS) return -EADDRINUSE;
  if (ce != ECONNREFUSED) return -ce;
  if (unlink(sa->sun_path) < 0 && errno != ENOENT) return -errno;
  return 0;
}

/* rename() that fails with EEXIST instead of replacing something that
 * appeared at `to` since the stale-socket check (where the kernel and libc
 * offer that; plain rename otherwise). */
static int lw_rename_noreplace(const char *from, const char *to) {
#ifdef RENAME_NOREPLACE
  if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0) return 0;
  if (errno != ENOSYS && errno != EINVAL) return -1;
#endif
  return rename(from, to);
}

/* Bind a filesystem socket so that it never exists with looser permissions
 * than `mode`. Preferred: bind inside a fresh 0700 directory next to the
 * target (nobody else can reach the socket there), chmod it, and rename it
 * into place; no umask change, since umask is process-wide and another
 * thread's new files would get mode 000 meanwhile. When the temporary name
 * would not fit in sun_path or the directory cannot be made, bind under
 * umask(0777) and chmod instead (the way lwmsg's peers end up). */
static int lw_bind_with_mode(int fd, const struct sockaddr_un *sa, socklen_t salen, int mode) {
  static const char tmpl[] = ".lwmsg-XXXXXX";
  const char *path = sa->sun_path;
  const char *slash = strrchr(path, '/');
  size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;
  struct sockaddr_un tmp;
  memset(&tmp, 0, sizeof tmp);
  tmp.sun_family = AF_UNIX;
  if (dirlen + (sizeof tmpl - 1) + 3 <= sizeof tmp.sun_path) {
    memcpy(tmp.sun_path, path, dirlen);
    memcpy(tmp.sun_path + dirlen, tmpl, sizeof tmpl);
    if (mkdtemp(tmp.sun_path) != NULL) {
      char dir[sizeof tmp.sun_path];
      size_t dl = strlen(tmp.sun_path);
      memcpy(dir, tmp.sun_path, dl + 1);
      memcpy(tmp.sun_path + dl, "/s", 3);
      socklen_t tlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + dl + 3);
      int r = 0;
      if (bind(fd, (struct sockaddr *)&tmp, tlen) < 0) r = -errno;
      else if (chmod(tmp.sun_path, (mode_t)mode) < 0) r = -errno;
      else if (lw_rename_noreplace(tmp.sun_path, path) < 0) r = -errno;
      if (r < 0) unlink(tmp.sun_path);
      rmdir(dir);
      return r;
    }
  }
  mode_t old = umask(0777);
  int br = bind(fd, (const struct sockaddr *)sa, salen);
  int berr = errno;
  umask(old);
  if (br < 0) return -berr;
  if (chmod(path, (mode_t)mode) < 0) {
    int e = errno;
    unlink(path);
    return -e;
  }
  return 0;
}

/* socket, remove a stale socket file, bind with the caller's mode (never a
 * looser one, see lw_bind_with_mode), listen. mode < 0 leaves the mode to the
 * umask. Abstract names skip the file steps. */
int lw_listen(const char *path, int len, int backlog, int mode) {
  struct sockaddr_un sa;
  socklen_t salen;
  int r = lw_fill_addr(&sa, &salen, path, len);
  if (r < 0) return r;
  int abstract = path[0] == '\0';
  int fd = lw_new_stream_socket();
  if (fd < 0) return fd;
  if (!abstract) {
    r = lw_clear_stale_socket(&sa, salen);
    if (r < 0) {
      close(fd);
      return r;
    }
  }
  r = (!abstract && mode >= 0) ? lw_bind_with_mode(fd, &sa, salen, mode) : (bind(fd, (struct sockaddr *)&sa, salen) < 0 ? -errno : 0);
  if (r < 0) {
    close(fd);
    return r;
  }
  if (listen(fd, backlog) < 0) {
    int e = errno;
    if (!abstract) unlink(sa.sun_path);
    close(fd);
    return -e;
  }
  return fd;
}

/* listen() on a bound socket handed to us (addListenFd). */
int lw_listen_fd(int fd, int backlog) { return listen(fd, backlog) < 0 ? -errno : 0; }

/* Make an fd handed to us (setFd / addListenFd) non-blocking and close-on-exec. */
int lw_adopt_fd(int fd) { return lw_set_nonblock_cloexec(fd); }

int lw_accept(int lfd) {
#ifdef SOCK_CLOEXEC
  int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) return -errno;
#else
  int fd = accept(lfd, NULL, NULL);
  if (fd < 0) return -errno;
  lw_set_nonblock_cloexec(fd);
#endif
  return lw_lift_fd(fd);
}

int lw_close(int fd) { return close(fd) < 0 ? -errno : 0; }

int lw_dup(int fd) {
  int r = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  return r < 0 ? -errno : r;
}

int lw_unlink(const char *path) { return unlink(path) < 0 ? -errno : 0; }

/* Send `len` bytes of `buf` with up to LW_MAX_FDS fds in one SCM_RIGHTS
 * message. Returns bytes taken by the kernel or -errno. Fds travel with the
 * first byte, so a partial send still delivered every fd. */
/* Raise SO_SNDBUF to `bytes` (the kernel caps it at net.core.wmem_max) for a
 * connection about to send large messages: each write then hands the kernel
 * more, so a 16 MiB message needs a few wakes instead of ~80 (both sides).
 * Returns the size now in effect (as the kernel reports it), or -errno. */
int lw_grow_sndbuf(int fd, int bytes) {
  int cur = 0;
  socklen_t l = sizeof cur;
  if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &cur, &l) < 0) return -errno;
  if (cur >= bytes) return cur;
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes) < 0) return -errno;
  l = sizeof cur;
  if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &cur, &l) < 0) return -errno;
  return cur;
}

/* Copy n bytes in 2 KiB pieces: glibc copies bigger blocks with `rep movsb`,
 * which was 20-30x slower on some hosts when the destination sits just past
 * the source modulo 4 KiB (lib/codec/runtime.ts copyBytes does the same in
 * JS; this saves its 8,000 calls per 16 MiB). Not for overlapping ranges. */
void lw_copy(uint8_t *dst, const uint8_t *src, double len) {
  size_t n = (size_t)len;
  size_t o = 0;
  for (; o + 2048 <= n; o += 2048) memcpy(dst + o, src + o, 2048);
  if (o < n) memcpy(dst + o, src + o, n - o);
}

/* sendmsg of `niov` pieces with `nfds` fds riding on the first byte (SCM_RIGHTS), never blocking, EINTR retried. */
static int lw_sendmsg_fds(int fd, struct iovec *iov, int niov, const int32_t *fds, int nfds) {
  struct msghdr msg;
  union {
    char buf[CMSG_SPACE(sizeof(int) * LW_MAX_FDS)];
    struct cmsghdr align;
  } ctl;
  if (nfds > LW_MAX_FDS) return -EINVAL;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = iov;
  msg.msg_iovlen = (size_t)niov;
  if (nfds > 0) {
    memset(&ctl, 0, sizeof ctl);
    msg.msg_control = ctl.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
  }
  ssize_t n;
  do {
    n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n > 0x7fffffff) n = 0x7fffffff; /* callers never pass more (the queue caps each write) */
  return n < 0 ? -errno : (int)n;
}

int lw_send(int fd, const uint8_t *buf, int len, const int32_t *fds, int nfds) {
  struct iovec iov = {(void *)buf, (size_t)len};
  return lw_sendmsg_fds(fd, &iov, 1, fds, nfds);
}

/* sendmsg of several pieces in one call: `iov` holds `niov` (address, length)
 * pairs as doubles (exact for addresses below 2^53), the fds ride with the
 * first byte as in lw_send. A large message goes out as [its header and the
 * encoded bytes before a big byte array] [the application's own array]
 * [the rest], never copied into the queue while the kernel takes it.
 * Returns bytes taken or -errno. */
#define LW_MAX_IOV 64
int lw_sendv(int fd, const double *iov, int niov, const int32_t *fds, int nfds) {
  struct iovec v[LW_MAX_IOV];
  if (niov < 1 || niov > LW_MAX_IOV) return -EINVAL;
  for (int i = 0; i < niov; i++) {
    v[i].iov_base = (void *)(uintptr_t)iov[2 * i];
    v[i].iov_len = (size_t)iov[2 * i + 1];
  }
  return lw_sendmsg_fds(fd, v, niov, fds, nfds);
}

/* Receive up to `len` bytes and every SCM_RIGHTS fd that came with them.
 * out[0] = number of fds written to `fds`, out[1] = msg_flags (MSG_CTRUNC is
 * the caller's to turn into an error; the fds that did arrive are returned so
 * they can be closed). Returns bytes read, 0 on EOF, or -errno. */
int lw_recv_fds(int fd, uint8_t *buf, int len, int32_t *fds, int maxfds, int32_t *out);

int lw_recv(int fd, uint8_t *buf, int len, int32_t *fds, int32_t *out) {
  return lw_recv_fds(fd, buf, len, fds, LW_MAX_FDS, out);
}

/* recvmsg offering room for at most `maxfds` fds (0..LW_MAX_FDS): the control
 * buffer is sized to what the receiver's budget still allows, so fds beyond
 * it are never installed in this process — the kernel drops them and reports
 * MSG_CTRUNC (out[1]). A limit is enforced before the fds exist. */
int lw_recv_fds(int fd, uint8_t *buf, int len, int32_t *fds, int maxfds, int32_t *out) {
  if (maxfds < 0) maxfds = 0;
  if (maxfds > LW_MAX_FDS) maxfds = LW_MAX_FDS;
  struct msghdr msg;
  struct iovec iov = {buf, (size_t)len};
  union {
    char buf[CMSG_SPACE(sizeof(int) * LW_MAX_FDS)];
    struct cmsghdr align;
  } ctl;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = maxfds > 0 ? ctl.buf : NULL;
  msg.msg_controllen = maxfds > 0 ? CMSG_SPACE(sizeof(int) * (size_t)maxfds) : 0;
  ssize_t n;
  int flags = MSG_DONTWAIT;
#ifdef MSG_CMSG_CLOEXEC
  flags |= MSG_CMSG_CLOEXEC;
#endif
  do {
    n = recvmsg(fd, &msg, flags);
  } while (n < 0 && errno == EINTR);
  out[0] = 0;
  out[1] = 0;
  if (n < 0) return -errno;
  int count = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    /* Clamp to the buffer: some kernels leave cmsg_len untruncated. */
    size_t avail = (size_t)((char *)ctl.buf + msg.msg_controllen - (char *)CMSG_DATA(c));
    size_t bytes = c->cmsg_len - CMSG_LEN(0);
    if (bytes > avail) bytes = avail;
    int k = (int)(bytes / sizeof(int));
    int32_t *src = (int32_t *)CMSG_DATA(c);
    for (int i = 0; i < k; i++) {
      int rfd = src[i];
#ifndef MSG_CMSG_CLOEXEC
      fcntl(rfd, F_SETFD, FD_CLOEXEC);
#endif
      if (count < maxfds) fds[count++] = lw_lift_fd(rfd);
      else close(rfd);
    }
  }
  out[0] = count;
  out[1] = msg.msg_flags;
  return (int)n;
}

/* Peer credentials from the kernel: out = {pid, uid, gid}. pid -1 where the
 * platform cannot say. */
int lw_peercred(int fd, int32_t *out) {
#if defined(SO_PEERCRED) && defined(__linux__)
  struct ucred uc;
  socklen_t l = sizeof uc;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &l) < 0) return -errno;
  out[0] = uc.pid;
  out[1] = (int32_t)uc.uid;
  out[2] = (int32_t)uc.gid;
  return 0;
#else
  uid_t u;
  gid_t g;
  if (getpeereid(fd, &u, &g) < 0) return -errno;
  out[0] = -1;
  out[1] = (int32_t)u;
  out[2] = (int32_t)g;
  return 0;
#endif
}

/* Own ids, for PAIR mode tokens (lwmsg uses getuid/getgid/getpid there). */
int lw_selfcred(int32_t *out) {
  out[0] = getpid();
  out[1] = (int32_t)getuid();
  out[2] = (int32_t)getgid();
  return 0;
}

/* Bounded wait for readability, in microseconds, on the calling thread. Used
 * right after a request to catch a fast reply without a thread hop. Returns
 * 1 readable/hung up, 0 timed out, -errno.
 * Linux lets a sleeping thread's timer expire up to its timer slack late
 * (50 us by default), which would stretch a 10 us budget to ~60-80 us on a
 * miss; for short budgets the slack is lowered to 1 us around the ppoll. */
int lw_wait_readable(int fd, int usec) {
  struct pollfd p = {fd, POLLIN, 0};
  struct timespec ts = {usec / 1000000, (long)(usec % 1000000) * 1000};
#ifdef PR_SET_TIMERSLACK
  int slack = (usec > 0 && usec < 1000) ? prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0) : -1;
  if (slack > 1000) prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
  else slack = -1;
#endif
  int r = ppoll(&p, 1, &ts, NULL);
  int err = errno;
#ifdef PR_SET_TIMERSLACK
  if (slack > 0) prctl(PR_SET_TIMERSLACK, (unsigned long)slack, 0, 0, 0);
#endif
  if (r < 0) return err == EINTR ? 0 : -err;
  return r > 0 ? 1 : 0;
}

/* fd accounting and kernel facts for tests and the bench. */
int lw_fd_is_open(int fd) { return fcntl(fd, F_GETFD) >= 0 ? 1 : 0; }
int lw_fd_cloexec(int fd) {
  int f = fcntl(fd, F_GETFD);
  return f < 0 ? -errno : (f & FD_CLOEXEC) ? 1 : 0;
}

/* ------------------------------------------------------------------------ */
/* Readiness poller: an epoll thread. Registrations are EPOLLONESHOT, so a
 * ready fd reports once and stays quiet until JS re-arms it after draining.
 * Ready events go into a ring under a mutex; the thread then signals JS,
 * once per batch (the `pending` flag), by either mechanism:
 *   MODE_DOORBELL: write 1 byte into `bell_fd` (a socketpair end Bun watches);
 *   MODE_CALLBACK: call `cb` (a threadsafe JSCallback posting to JS).
 * JS collects the batch with lw_poller_take, which clears `pending`. */
#ifdef __linux__
#define LW_RING 4096
typedef void (*lw_wake_cb)(void);
typedef struct {
  int epfd;
  int stop_fd[2];
  int bell_fd;
  lw_wake_cb cb;
  pthread_t thread;
  pthread_mutex_t mu;
  int pending;
  int head, count;
  uint64_t ring[LW_RING]; /* token (u32) << 32 | events */
  uint64_t wakes;
} lw_poller;

static void *lw_poller_main(void *arg) {
  lw_poller *p = arg;
  struct epoll_event ev[64];
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  for (;;) {
    int n = epoll_wait(p->epfd, ev, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    int stop = 0, notify = 0;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < n; i++) {
      if (ev[i].data.u64 == UINT64_MAX) {
        stop = 1;
        continue;
      }
      if (p->count < LW_RING) {
        p->ring[(p->head + p->count) % LW_RING] = (ev[i].data.u64 << 32) | ev[i].events;
        p->count++;
      }
    }
    if (p->count > 0 && !p->pending) {
      p->pending = 1;
      notify = 1;
    }
    pthread_mutex_unlock(&p->mu);
    if (notify) {
      p->wakes++;
      if (p->cb) p->cb();
      else {
        char b = 1;
        ssize_t w;
        do { w = write(p->bell_fd, &b, 1); } while (w < 0 && errno == EINTR);
      }
    }
    if (stop) break;
  }
  return NULL;
}

/* bell_fd >= 0 selects the doorbell; otherwise cb must be non-null. */
void *lw_poller_new(int bell_fd, void *cb) {
  lw_poller *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->bell_fd = bell_fd;
  p->cb = (lw_wake_cb)cb;
  p->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (p->epfd < 0) { free(p); return NULL; }
  if (pipe2(p->stop_fd, O_CLOEXEC | O_NONBLOCK) < 0) { close(p->epfd); free(p); return NULL; }
  struct epoll_event e = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
  epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->stop_fd[0], &e);
  pthread_mutex_init(&p->mu, NULL);
  if (pthread_create(&p->thread, NULL, lw_poller_main, p) != 0) {
    close(p->stop_fd[0]); close(p->stop_fd[1]); close(p->epfd); free(p);
    return NULL;
  }
  return p;
}

/* Arm (or re-arm) `fd` for `events` (EPOLLIN=1, EPOLLOUT=4), one shot. */
int lw_poller_arm(void *pp, int fd, int events, int token) {
  lw_poller *p = pp;
  struct epoll_event e = {.events = (uint32_t)events | EPOLLONESHOT, .data.u64 = (uint32_t)token};
  if (epoll_ctl(p->epfd, EPOLL_CTL_MOD, fd, &e) == 0) return 0;
  if (errno != ENOENT) return -errno;
  if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &e) == 0) return 0;
  return -errno;
}

int lw_poller_remove(void *pp, int fd) {
  lw_poller *p = pp;
  return epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, NULL) < 0 ? -errno : 0;
}

/* Copy up to `max` ready events into out as (token, events) int pairs. */
int lw_poller_take(void *pp, int32_t *out, int max) {
  lw_poller *p = pp;
  pthread_mutex_lock(&p->mu);
  int k = 0;
  while (k < max && p->count > 0) {
    uint64_t v = p->ring[p->head];
    p->head = (p->head + 1) % LW_RING;
    p->count--;
    out[2 * k] = (int32_t)(v >> 32);
    out[2 * k + 1] = (int32_t)(v & 0xffffffffu);
    k++;
  }
  if (p->count == 0) p->pending = 0;
  pthread_mutex_unlock(&p->mu);
  return k;
}

double lw_poller_wakes(void *pp) { return (double)((lw_poller *)pp)->wakes; }

void lw_poller_free(void *pp) {
  lw_poller *p = pp;
  char b = 1;
  ssize_t w = write(p->stop_fd[1], &b, 1);
  (void)w;
  pthread_join(p->thread, NULL);
  close(p->stop_fd[0]);
  close(p->stop_fd[1]);
  close(p->epfd);
  pthread_mutex_destroy(&p->mu);
  free(p);
}
#endif

/* ------------------------------------------------------------------------ */
/* Inherited listening sockets (lib/systemd.ts): what an fd handed to us by
 * systemd (or any supervisor) is, so it can be refused with a clear reason. */

/* out[0] = address family (AF_UNIX, AF_INET, ...), out[1] = socket type
 * (SOCK_STREAM, ...), out[2] = 1 if listen() was called on it (SO_ACCEPTCONN).
 * Returns 0, or -errno (-ENOTSOCK for a file or pipe, -EBADF if not open). */
int lw_sock_info(int fd, int32_t *out) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  memset(&ss, 0, sizeof ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) return -errno;
  int type = 0, acc = 0;
  socklen_t tl = sizeof type, al = sizeof acc;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0) return -errno;
#ifdef SO_ACCEPTCONN
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) < 0) return -errno;
#else
  acc = -1; /* unknown on this platform */
#endif
  out[0] = ss.ss_family;
  out[1] = type;
  out[2] = acc;
  return 0;
}

/* Set FD_CLOEXEC only (sd_listen_fds does no more: the blocking mode is the
 * caller's business). */
int lw_fd_set_cloexec(int fd) {
  int f = fcntl(fd, F_GETFD);
  if (f < 0 || fcntl(fd, F_SETFD, f | FD_CLOEXEC) < 0) return -errno;
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Sealed memfds (lib/shm.ts). Linux only; elsewhere each returns -ENOSYS. */
#ifdef __linux__
#include <sys/mman.h>
#include <sys/syscall.h>
#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif
#ifndef MFD_ALLOW_SEALING
#define MFD_ALLOW_SEALING 0x0002U
#endif
#ifndef F_ADD_SEALS
#define F_ADD_SEALS (1024 + 9)
#define F_GET_SEALS (1024 + 10)
#endif

/* memfd_create through syscall(): older libcs (and TinyCC's view of them)
 * may lack the wrapper. The fd is lifted off 0..2 like every socket. */
int lw_memfd_create(const char *name, int flags) {
#ifdef SYS_memfd_create
  int fd = (int)syscall(SYS_memfd_create, name, (unsigned int)flags);
  if (fd < 0) return -errno;
  return lw_lift_fd(fd);
#else
  (void)name; (void)flags;
  return -ENOSYS;
#endif
}

/* Sizes cross the FFI as doubles: exact up to 2^53 bytes. */
int lw_ftruncate(int fd, double size) {
  if (size < 0) return -EINVAL;
  return ftruncate(fd, (off_t)size) < 0 ? -errno : 0;
}

int lw_add_seals(int fd, int seals) { return fcntl(fd, F_ADD_SEALS, seals) < 0 ? -errno : 0; }

/* The seals set on `fd` (>= 0), or -errno (-EINVAL: not a memfd / no sealing). */
int lw_get_seals(int fd) {
  int r = fcntl(fd, F_GET_SEALS);
  return r < 0 ? -errno : r;
}

/* st_size of `fd`, or -errno. */
double lw_fd_size(int fd) {
  struct stat st;
  if (fstat(fd, &st) < 0) return (double)-errno;
  return (double)st.st_size;
}

/* pwrite all of buf[0..len) at `offset`, retrying short writes and EINTR. */
int lw_pwrite_all(int fd, const uint8_t *buf, double len, double offset) {
  size_t left = (size_t)len, done = 0;
  while (left > 0) {
    ssize_t w = pwrite(fd, buf + done, left, (off_t)offset + (off_t)done);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    done += (size_t)w;
    left -= (size_t)w;
  }
  return 0;
}

/* Fault in a whole mapping with one call (MADV_POPULATE_READ = 22 /
 * MADV_POPULATE_WRITE = 23, Linux >= 5.14; older kernels say -EINVAL and the
 * pages are faulted one by one on first touch, as without this). */
int lw_madvise(void *addr, double len, int advice) { return madvise(addr, (size_t)len, advice) < 0 ? -errno : 0; }

/* Buffers for large messages (lib/native/big.ts). On a VM every first touch
 * of a 4 KiB page can cost 10+ us, so a fresh 16 MiB ArrayBuffer costs tens
 * of ms before a byte is read into it. Two remedies:
 *  - mappings aligned to 2 MiB and advised MADV_HUGEPAGE, faulted in 2 MiB
 *    at a time (30x less on the project machine);
 *  - a small pool: when JSC collects such an ArrayBuffer it calls
 *    lw_big_free (the deallocator given to toArrayBuffer), which keeps the
 *    mapping, pages and all, for the next buffer of the same size (up to
 *    LW_BIG_POOL_BYTES in all; the rest is unmapped).
 * A pooled mapping holds the bytes of an earlier message, so it is handed
 * out only to a caller that overwrites every byte before anyone sees it
 * (`reuse` = 1: a packet read straight from the socket; *reused says when
 * a pooled one served); others get fresh zero pages. `lw_big_mapped` counts mapped bytes, pool included (tests). */
#define LW_HUGE ((size_t)2 << 20)
#define LW_BIG_POOL_SLOTS 16
#define LW_BIG_POOL_BYTES ((size_t)64 << 20)
static pthread_mutex_t lw_big_mu = PTHREAD_MUTEX_INITIALIZER;
static double lw_big_bytes = 0;
static void *lw_big_pool[LW_BIG_POOL_SLOTS];
static size_t lw_big_pool_len[LW_BIG_POOL_SLOTS];
static size_t lw_big_pooled = 0;

/* Mapping size for a buffer of `size` bytes: from 1 MiB up, whole 2 MiB huge
 * pages; below, a power of two from 64 KiB (so buffers of nearby sizes share
 * a pool class, and no 2 MiB page backs a small message). */
static size_t lw_big_len(double size) {
  size_t s = (size_t)size;
  if (s >= LW_HUGE / 2) return (s + LW_HUGE - 1) & ~(LW_HUGE - 1);
  size_t c = (size_t)64 << 10;
  while (c < s) c <<= 1;
  return c;
}

void *lw_big_alloc(double size, int reuse, int32_t *reused) {
  if (reused != NULL) *reused = 0;
  if (!(size > 0)) return NULL;
  size_t len = lw_big_len(size);
  if (reuse) {
    void *hit = NULL;
    pthread_mutex_lock(&lw_big_mu);
    for (int i = 0; i < LW_BIG_POOL_SLOTS; i++) {
      if (lw_big_pool[i] != NULL && lw_big_pool_len[i] == len) {
        hit = lw_big_pool[i];
        lw_big_pool[i] = NULL;
        lw_big_pooled -= len;
        break;
      }
    }
    pthread_mutex_unlock(&lw_big_mu);
    if (hit != NULL) {
      if (reused != NULL) *reused = 1; /* it holds an earlier buffer's bytes */
      return hit;
    }
  }
  char *a;
  if (len < LW_HUGE) {
    a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (a == MAP_FAILED) return NULL;
  } else {
    char *p = mmap(NULL, len + LW_HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return NULL;
    a = (char *)(((uintptr_t)p + LW_HUGE - 1) & ~(uintptr_t)(LW_HUGE - 1));
    if (a > p) munmap(p, (size_t)(a - p));
    if (a + len < p + len + LW_HUGE) munmap(a + len, (size_t)((p + len + LW_HUGE) - (a + len)));
#ifdef MADV_HUGEPAGE
    madvise(a, len, MADV_HUGEPAGE); /* advice only: without THP the pages are 4 KiB as usual */
#endif
  }
  pthread_mutex_lock(&lw_big_mu);
  lw_big_bytes += (double)len;
  pthread_mutex_unlock(&lw_big_mu);
  return a;
}

/* The deallocator JSC calls (bytes, context): the context is the size asked for. */
static void lw_big_free(void *bytes, void *ctx) {
  size_t len = lw_big_len((double)(uintptr_t)ctx);
  pthread_mutex_lock(&lw_big_mu);
  if (lw_big_pooled + len <= LW_BIG_POOL_BYTES) {
    for (int i = 0; i < LW_BIG_POOL_SLOTS; i++) {
      if (lw_big_pool[i] == NULL) {
        lw_big_pool[i] = bytes;
        lw_big_pool_len[i] = len;
        lw_big_pooled += len;
        pthread_mutex_unlock(&lw_big_mu);
        return;
      }
    }
  }
  lw_big_bytes -= (double)len;
  pthread_mutex_unlock(&lw_big_mu);
  munmap(bytes, len);
}

void *lw_big_free_fn(void) { return (void *)lw_big_free; }

/* Unmap every pooled mapping (the pool idled: give the memory back). Returns the bytes unmapped. */
double lw_big_trim(void) {
  void *out[LW_BIG_POOL_SLOTS];
  size_t outlen[LW_BIG_POOL_SLOTS];
  int k = 0;
  pthread_mutex_lock(&lw_big_mu);
  for (int i = 0; i < LW_BIG_POOL_SLOTS; i++) {
    if (lw_big_pool[i] != NULL) {
      out[k] = lw_big_pool[i];
      outlen[k++] = lw_big_pool_len[i];
      lw_big_bytes -= (double)lw_big_pool_len[i];
      lw_big_pool[i] = NULL;
    }
  }
  double freed = (double)lw_big_pooled;
  lw_big_pooled = 0;
  pthread_mutex_unlock(&lw_big_mu);
  for (int i = 0; i < k; i++) munmap(out[i], outlen[i]);
  return freed;
}

/* Bytes mapped now (in use + pooled) and, in *pooled, those held by the pool. */
double lw_big_mapped(double *pooled) {
  pthread_mutex_lock(&lw_big_mu);
  double b = lw_big_bytes;
  if (pooled != NULL) *pooled = (double)lw_big_pooled;
  pthread_mutex_unlock(&lw_big_mu);
  return b;
}

#else
int lw_memfd_create(const char *name, int flags) { (void)name; (void)flags; return -ENOSYS; }
int lw_madvise(void *addr, double len, int advice) { (void)addr; (void)len; (void)advice; return -ENOSYS; }
void *lw_big_alloc(double size, int reuse, int32_t *reused) { (void)size; (void)reuse; if (reused != NULL) *reused = 0; return NULL; }
void *lw_big_free_fn(void) { return NULL; }
double lw_big_trim(void) { return 0; }
double lw_big_mapped(double *pooled) { if (pooled != NULL) *pooled = 0; return 0; }
int lw_ftruncate(int fd, double size) { (void)fd; (void)size; return -ENOSYS; }
int lw_add_seals(int fd, int seals) { (void)fd; (void)seals; return -ENOSYS; }
int lw_get_seals(int fd) { (void)fd; return -ENOSYS; }
double lw_fd_size(int fd) { (void)fd; return (double)-ENOSYS; }
int lw_pwrite_all(int fd, const uint8_t *buf, double len, double offset) { (void)fd; (void)buf; (void)len; (void)offset; return -ENOSYS; }
#endif

/* SO_PEERPIDFD (Linux >= 6.5): a pidfd of the process at the other end of a
 * connected UNIX socket, taken by the kernel when the connection was made —
 * so it names that very process, never a later one that reused its pid (as
 * pidfd_open(SO_PEERCRED's pid) could). Made close-on-exec. Returns the
 * pidfd or -errno (ENOPROTOOPT on older kernels, ENOSYS off Linux). */
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif
int lw_peer_pidfd(int fd) {
#ifdef __linux__
  int pidfd = -1;
  socklen_t l = sizeof pidfd;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &l) < 0) return -errno;
  if (fcntl(pidfd, F_SETFD, FD_CLOEXEC) < 0) {
    int e = errno;
    close(pidfd);
    return -e;
  }
  return pidfd;
#else
  (void)fd;
  return -ENOSYS;
#endif
}

/* Is the process of a pidfd still running? A pidfd polls readable once its
 * process has exited. 1 running, 0 exited, -errno (EBADF: not open). */
int lw_pidfd_alive(int pidfd) {
  struct pollfd p = {pidfd, POLLIN, 0};
  int r = poll(&p, 1, 0);
  if (r < 0) return -errno;
  if (p.revents & POLLNVAL) return -EBADF;
  return r == 0 ? 1 : 0;
}
