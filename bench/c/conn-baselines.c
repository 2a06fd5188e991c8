/* C baselines for bench/connection.bench.ts: two processes (fork) on an
 * AF_UNIX SOCK_STREAM socketpair, blocking I/O. Each mode prints one JSON
 * line on stdout, measured on the receiving side.
 *
 *   stream   HEX N WARM   writer: write() the HEX bytes once per syscall, WARM+N times;
 *                         reader: read() 256 KiB at a time; msgs/s over the last N.
 *   blob     SIZE COUNT   writer: write() SIZE-byte messages COUNT times (large writes);
 *                         reader: read() 256 KiB at a time; MB/s over messages 2..COUNT.
 *   fd       N WARM       writer: sendmsg(1 byte + 1 SCM_RIGHTS fd) per call;
 *                         reader: recvmsg + close every fd; fds/s over the last N.
 *   pingpong HEX N WARM   parent writes HEX, child reads it whole and writes it back,
 *                         parent reads it whole; per-round-trip ns → p50/p90/p99.
 *   lwecho   PATH         connect to an lwmsg listener, CONNECT/ACCEPT handshake, then
 *                         echo every packet back verbatim until SHUTDOWN or EOF (a C
 *                         echo peer for our client side alone).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
  fprintf(stderr, "conn-baselines: %s: %s\n", what, strerror(errno));
  exit(2);
}

static size_t unhex(const char *h, uint8_t **out) {
  size_t n = strlen(h) / 2;
  uint8_t *b = malloc(n);
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    sscanf(h + 2 * i, "%2x", &v);
    b[i] = (uint8_t)v;
  }
  *out = b;
  return n;
}

static void write_all(int fd, const uint8_t *b, size_t n) {
  while (n > 0) {
    ssize_t r = write(fd, b, n);
    if (r < 0) {
      if (errno == EINTR) continue;
      die("write");
    }
    b += r;
    n -= (size_t)r;
  }
}

static void read_all(int fd, uint8_t *b, size_t n) {
  while (n > 0) {
    ssize_t r = read(fd, b, n);
    if (r < 0) {
      if (errno == EINTR) continue;
      die("read");
    }
    if (r == 0) {
      fprintf(stderr, "conn-baselines: unexpected EOF\n");
      exit(2);
    }
    b += r;
    n -= (size_t)r;
  }
}

static int pair_fork(int sv[2]) {
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) die("socketpair");
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) die("fork");
  return pid == 0;
}

static void reap(void) {
  int st;
  wait(&st);
}

#define RBUF (256 * 1024)

struct drained {
  uint64_t total, start_bytes, t0, t1, reads;
};

/* Read RBUF at a time until end_bytes (or EOF); the clock starts once
 * warm_bytes have arrived, and `reads` counts the reads after that. */
static struct drained drain(int fd, uint64_t warm_bytes, uint64_t end_bytes) {
  static uint8_t buf[RBUF];
  struct drained d = {0, 0, 0, 0, 0};
  int started = 0;
  while (d.total < end_bytes) {
    ssize_t r = read(fd, buf, RBUF);
    if (r < 0) {
      if (errno == EINTR) continue;
      die("read");
    }
    if (r == 0) break;
    d.total += (uint64_t)r;
    if (started) d.reads++;
    if (!started && d.total >= warm_bytes) {
      started = 1;
      d.start_bytes = d.total;
      d.t0 = now_ns();
    }
  }
  d.t1 = now_ns();
  return d;
}

static int mode_stream(const char *hex, long n, long warm) {
  uint8_t *msg;
  size_t len = unhex(hex, &msg);
  int sv[2];
  if (pair_fork(sv)) {
    close(sv[0]);
    for (long i = 0; i < n + warm; i++) write_all(sv[1], msg, len);
    close(sv[1]);
    _exit(0);
  }
  close(sv[1]);
  struct drained d = drain(sv[0], (uint64_t)warm * len, (uint64_t)(n + warm) * len);
  reap();
  double msgs = (double)(d.total - d.start_bytes) / (double)len;
  printf("{\"mode\":\"stream\",\"msgs\":%.0f,\"ns\":%llu,\"rate\":%.1f,\"reads\":%llu,\"bytesPerRead\":%.1f}\n", msgs, (unsigned long long)(d.t1 - d.t0),
         msgs / ((double)(d.t1 - d.t0) / 1e9), (unsigned long long)d.reads, d.reads ? (double)(d.total - d.start_bytes) / (double)d.reads : 0.0);
  return 0;
}

static int mode_blob(long size, long count) {
  int sv[2];
  if (pair_fork(sv)) {
    close(sv[0]);
    uint8_t *b = malloc((size_t)size);
    memset(b, 0xa5, (size_t)size);
    for (long i = 0; i < count; i++) write_all(sv[1], b, (size_t)size);
    close(sv[1]);
    _exit(0);
  }
  close(sv[1]);
  struct drained d = drain(sv[0], (uint64_t)size, (uint64_t)size * (uint64_t)count);
  reap();
  double bytes = (double)(d.total - d.start_bytes);
  printf("{\"mode\":\"blob\",\"bytes\":%.0f,\"ns\":%llu,\"rate\":%.1f}\n", bytes, (unsigned long long)(d.t1 - d.t0), bytes / 1e6 / ((double)(d.t1 - d.t0) / 1e9));
  return 0;
}

static int mode_fd(long n, long warm) {
  int sv[2];
  if (pair_fork(sv)) {
    close(sv[0]);
    int f = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (f < 0) die("open /dev/null");
    union {
      char buf[CMSG_SPACE(sizeof(int))];
      struct cmsghdr align;
    } ctl;
    char byte = 'x';
    for (long i = 0; i < n + warm; i++) {
      struct iovec iov = {&byte, 1};
      struct msghdr m;
      memset(&m, 0, sizeof m);
      m.msg_iov = &iov;
      m.msg_iovlen = 1;
      m.msg_control = ctl.buf;
      m.msg_controllen = sizeof ctl.buf;
      struct cmsghdr *c = CMSG_FIRSTHDR(&m);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      memcpy(CMSG_DATA(c), &f, sizeof(int));
      ssize_t r;
      do r = sendmsg(sv[1], &m, MSG_NOSIGNAL);
      while (r < 0 && errno == EINTR);
      if (r < 0) die("sendmsg");
    }
    close(sv[1]);
    _exit(0);
  }
  close(sv[1]);
  union {
    char buf[CMSG_SPACE(sizeof(int) * 253)];
    struct cmsghdr align;
  } ctl;
  char data[4096];
  long fds = 0, started_at = 0, calls = 0;
  uint64_t t0 = 0;
  int started = 0;
  while (fds < n + warm) {
    struct iovec iov = {data, sizeof data};
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctl.buf;
    m.msg_controllen = sizeof ctl.buf;
    ssize_t r = recvmsg(sv[0], &m, MSG_CMSG_CLOEXEC);
    if (r < 0) {
      if (errno == EINTR) continue;
      die("recvmsg");
    }
    if (r == 0) break;
    if (m.msg_flags & MSG_CTRUNC) {
      fprintf(stderr, "conn-baselines: MSG_CTRUNC\n");
      exit(2);
    }
    if (started) calls++;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
      int *p = (int *)CMSG_DATA(c);
      for (int i = 0; i < k; i++) close(p[i]);
      fds += k;
    }
    if (!started && fds >= warm) {
      started = 1;
      started_at = fds;
      t0 = now_ns();
    }
  }
  uint64_t t1 = now_ns();
  reap();
  double got = (double)(fds - started_at);
  printf("{\"mode\":\"fd\",\"fds\":%.0f,\"ns\":%llu,\"rate\":%.1f,\"recvmsgCalls\":%ld}\n", got, (unsigned long long)(t1 - t0), got / ((double)(t1 - t0) / 1e9), calls);
  return 0;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static int mode_pingpong(const char *hex, long n, long warm) {
  uint8_t *msg;
  size_t len = unhex(hex, &msg);
  uint8_t *buf = malloc(len);
  int sv[2];
  if (pair_fork(sv)) {
    close(sv[0]);
    for (long i = 0; i < n + warm; i++) {
      read_all(sv[1], buf, len);
      write_all(sv[1], buf, len);
    }
    close(sv[1]);
    _exit(0);
  }
  close(sv[1]);
  uint64_t *lat = malloc(sizeof(uint64_t) * (size_t)n);
  for (long i = 0; i < n + warm; i++) {
    uint64_t t0 = now_ns();
    write_all(sv[0], msg, len);
    read_all(sv[0], buf, len);
    uint64_t t1 = now_ns();
    if (i >= warm) lat[i - warm] = t1 - t0;
  }
  reap();
  qsort(lat, (size_t)n, sizeof *lat, cmp_u64);
  double sum = 0;
  for (long i = 0; i < n; i++) sum += (double)lat[i];
#define PCT(p) ((double)lat[(size_t)((p) * (double)(n - 1) + 0.5)] / 1000.0)
  printf("{\"mode\":\"pingpong\",\"n\":%ld,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"mean\":%.3f}\n", n, PCT(0.5), PCT(0.9), PCT(0.99), sum / (double)n / 1000.0);
  return 0;
}

static int mode_lwecho(const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  strncpy(sa.sun_path, path, sizeof sa.sun_path - 1);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("connect");
  static const uint8_t hello[19] = {0, 0, 0, 19, 2, 3, 0, 0, 0, 0x20, 0, 1, 2, 3, 4, 5, 6, 7, 8};
  write_all(fd, hello, sizeof hello);
  uint8_t buf[65536];
  read_all(fd, buf, 19);
  if (buf[4] != 3) {
    fprintf(stderr, "conn-baselines: expected ACCEPT\n");
    return 2;
  }
  for (;;) {
    ssize_t r;
    do r = read(fd, buf, 4);
    while (r < 0 && errno == EINTR);
    if (r == 0) return 0;
    if (r < 0) die("read");
    if (r < 4) read_all(fd, buf + r, (size_t)(4 - r));
    uint32_t len = ((uint32_t)buf[0] << 24) | ((uint32_t)buf[1] << 16) | ((uint32_t)buf[2] << 8) | buf[3];
    if (len < 6 || len > sizeof buf) {
      fprintf(stderr, "conn-baselines: bad packet length %u\n", len);
      return 2;
    }
    read_all(fd, buf + 4, len - 4);
    if (buf[4] == 5) return 0; /* SHUTDOWN */
    write_all(fd, buf, len);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: conn-baselines stream|blob|fd|pingpong|lwecho ...\n");
    return 2;
  }
  const char *m = argv[1];
  if (!strcmp(m, "stream") && argc == 5) return mode_stream(argv[2], atol(argv[3]), atol(argv[4]));
  if (!strcmp(m, "blob") && argc == 4) return mode_blob(atol(argv[2]), atol(argv[3]));
  if (!strcmp(m, "fd") && argc == 4) return mode_fd(atol(argv[2]), atol(argv[3]));
  if (!strcmp(m, "pingpong") && argc == 5) return mode_pingpong(argv[2], atol(argv[3]), atol(argv[4]));
  if (!strcmp(m, "lwecho") && argc == 3) return mode_lwecho(argv[2]);
  fprintf(stderr, "conn-baselines: bad arguments\n");
  return 2;
}
