/*
 * C side of bench/poller.bench.ts (compiled at bench time with `cc -O2`).
 *
 *   pingpong cc <iters> <warmup> [child cpu]
 *                                  C<->C baseline: socketpair + fork; the parent
 *                                  writes 1 byte, the child echoes it, both with
 *                                  blocking read/write; the child moves to
 *                                  `child cpu` if given. Prints one JSON line:
 *                                  {"samples_ns":[...], "cpu_ns": parent user+sys
 *                                  over the measured loop}.
 *   pingpong echo <socket path>    connect (blocking) and echo every byte back
 *                                  until EOF: the peer of the Bun side.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
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

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t cpu_ns(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
         ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
}

static int read1(int fd, char *c) {
  for (;;) {
    ssize_t n = read(fd, c, 1);
    if (n == 1) return 1;
    if (n == 0) return 0;
    if (errno != EINTR) return -1;
  }
}

static int write1(int fd, char c) {
  for (;;) {
    ssize_t n = write(fd, &c, 1);
    if (n == 1) return 1;
    if (n < 0 && errno != EINTR) return -1;
  }
}

static void echo_loop(int fd) {
  char c;
  while (read1(fd, &c) == 1)
    if (write1(fd, c) != 1) break;
}

int main(int argc, char **argv) {
  if (argc >= 3 && strcmp(argv[1], "echo") == 0) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(argv[2]) >= sizeof sa.sun_path) return 2;
    strcpy(sa.sun_path, argv[2]);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
      perror("pingpong echo: connect");
      return 1;
    }
    echo_loop(fd);
    return 0;
  }
  if (argc >= 4 && strcmp(argv[1], "cc") == 0) {
    long iters = atol(argv[2]), warmup = atol(argv[3]);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
      perror("socketpair");
      return 1;
    }
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) {
      if (argc >= 5) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(atoi(argv[4]), &set);
        if (sched_setaffinity(0, sizeof set, &set) < 0) perror("pingpong: sched_setaffinity");
      }
      close(sv[0]);
      echo_loop(sv[1]);
      _exit(0);
    }
    close(sv[1]);
    int64_t *samples = malloc(sizeof(int64_t) * (size_t)iters);
    char c = 'p';
    for (long i = 0; i < warmup; i++)
      if (write1(sv[0], c) != 1 || read1(sv[0], &c) != 1) return 1;
    int64_t cpu0 = cpu_ns();
    for (long i = 0; i < iters; i++) {
      int64_t t0 = now_ns();
      if (write1(sv[0], c) != 1 || read1(sv[0], &c) != 1) return 1;
      samples[i] = now_ns() - t0;
    }
    int64_t cpu1 = cpu_ns();
    close(sv[0]);
    waitpid(pid, NULL, 0);
    printf("{\"cpu_ns\":%lld,\"samples_ns\":[", (long long)(cpu1 - cpu0));
    for (long i = 0; i < iters; i++) printf(i ? ",%lld" : "%lld", (long long)samples[i]);
    printf("]}\n");
    free(samples);
    return 0;
  }
  fprintf(stderr, "usage: pingpong cc <iters> <warmup> | pingpong echo <socket path>\n");
  return 2;
}
