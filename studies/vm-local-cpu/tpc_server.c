/* A thread-per-core UDP server and its client, for the VM_LOCAL_CPU study
   (studies/vm-local-cpu/README.md).

   usage: tpc_server [REQUESTS]        (default 200000)

   The server process starts one thread per online CPU, each pinned to its
   CPU and serving requests on its own UDP socket bound to 127.0.0.1 (an
   ephemeral port each). It then forks a client process, which sends
   REQUESTS requests round-robin over the server threads' ports, keeping up
   to WINDOW in flight, and reads the replies; then it tells every thread to
   stop and exits. Every socket is on 127.0.0.1 only. Bounded in time: the
   client gives up after 15 s (alarm), a server thread after 2 s without a
   request, and a lost datagram after 50 ms.

   Each request carries 64 bytes; a server thread answers with a checksum of
   them after a little work (a few hundred ns), as a key-value lookup would. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

enum { MAX_CPUS = 256, WINDOW = 32, PAYLOAD = 64 };

struct server {
  int cpu;
  int fd;
  unsigned short port;
  unsigned long served;
  pthread_t thread;
};

static int udp_socket(unsigned short *port, int rcv_timeout_ms) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    perror("socket");
    exit(1);
  }
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    perror("bind 127.0.0.1");
    exit(1);
  }
  socklen_t len = sizeof a;
  getsockname(fd, (struct sockaddr *)&a, &len);
  *port = ntohs(a.sin_port);
  struct timeval tv = {.tv_sec = rcv_timeout_ms / 1000, .tv_usec = (rcv_timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

static uint64_t work(const unsigned char *p, size_t n) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a, a few rounds */
  for (int round = 0; round < 4; ++round)
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ULL;
  return h;
}

static void *serve(void *arg) {
  struct server *s = arg;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(s->cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
  unsigned char buf[PAYLOAD];
  for (;;) {
    struct sockaddr_in from;
    socklen_t len = sizeof from;
    ssize_t n = recvfrom(s->fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
    if (n < 0) {
      if (errno == EINTR) continue;
      break; /* 2 s without a request */
    }
    if (n == 4 && memcmp(buf, "stop", 4) == 0) break;
    uint64_t h = work(buf, (size_t)n);
    sendto(s->fd, &h, sizeof h, 0, (struct sockaddr *)&from, len);
    ++s->served;
  }
  return NULL;
}

static int client(const struct server *servers, int n, long requests) {
  alarm(15);
  unsigned short port;
  int fd = udp_socket(&port, 50);
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  unsigned char req[PAYLOAD];
  memset(req, 'x', sizeof req);
  long sent = 0, answered = 0, lost = 0, inflight = 0;
  while (answered + lost < requests) {
    while (inflight < WINDOW && sent < requests) {
      to.sin_port = htons(servers[sent % n].port);
      memcpy(req, &sent, sizeof sent);
      if (sendto(fd, req, sizeof req, 0, (struct sockaddr *)&to, sizeof to) == (ssize_t)sizeof req) ++inflight;
      ++sent;
    }
    uint64_t h;
    ssize_t r = recv(fd, &h, sizeof h, 0);
    if (r == (ssize_t)sizeof h) {
      ++answered;
    } else {
      ++lost; /* a datagram dropped (or its reply): 50 ms timeout */
    }
    --inflight;
  }
  for (int i = 0; i < n; ++i) {
    to.sin_port = htons(servers[i].port);
    sendto(fd, "stop", 4, 0, (struct sockaddr *)&to, sizeof to);
  }
  printf("client: %ld requests, %ld answered, %ld lost\n", requests, answered, lost);
  fflush(stdout);
  return 0;
}

int main(int argc, char **argv) {
  long requests = argc > 1 ? atol(argv[1]) : 200000;
  if (requests <= 0 || requests > 100000000) {
    fprintf(stderr, "usage: tpc_server [REQUESTS]\n");
    return 2;
  }
  int n = (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) n = 1;
  if (n > MAX_CPUS) n = MAX_CPUS;
  static struct server servers[MAX_CPUS];
  for (int i = 0; i < n; ++i) {
    servers[i].cpu = i;
    servers[i].fd = udp_socket(&servers[i].port, 2000);
  }
  fflush(stdout);
  pid_t c = fork();
  if (c < 0) {
    perror("fork");
    return 1;
  }
  if (c == 0) _exit(client(servers, n, requests));
  for (int i = 0; i < n; ++i) pthread_create(&servers[i].thread, NULL, serve, &servers[i]);
  unsigned long served = 0;
  for (int i = 0; i < n; ++i) {
    pthread_join(servers[i].thread, NULL);
    served += servers[i].served;
  }
  int st = 0;
  waitpid(c, &st, 0);
  printf("server: %d threads (one per CPU), %lu requests served\n", n, served);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
