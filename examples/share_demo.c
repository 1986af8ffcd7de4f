/* share_demo: two processes share one exclusive region over a Unix socket.
 *
 * The program forks first, so the child inherits nothing of the region. The
 * parent (the sender) then creates a shared exclusive region, writes a message
 * into it and passes it to the child (the receiver) with exmem_share_send, which
 * sends the region's descriptor with SCM_RIGHTS. The receiver maps it with
 * exmem_share_recv, reads the message and writes its reply in place; the sender
 * reads the reply from its own mapping. Each side prints what it sees.
 *
 * Exit status: 0 when both sides saw what the other wrote, 1 otherwise.
 */
#define _GNU_SOURCE
#include <exmem/exmem.h>

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define SENDER_SAYS "hello from the sender"
#define RECEIVER_SAYS "hello from the receiver"

static const char *protection_name(int protection) {
  switch (protection) {
    case EXMEM_PROT_SECRET:
      return "memfd_secret: removed from the kernel direct map";
    case EXMEM_PROT_LOCKED:
      return "locked memory: memfd_secret is unavailable here";
    default:
      return "no protection";
  }
}

static int fail(const char *who, const char *what) {
  fprintf(stderr, "%s: %s failed: %s\n", who, what, exmem_last_error_message());
  return 1;
}

static int receiver(int sock) {
  struct exmem_shared region;
  char *text;
  char go = 'r';
  int ok;

  if (exmem_share_recv(sock, &region) != EXMEM_OK) return fail("receiver", "exmem_share_recv");
  text = region.addr;
  printf("receiver (pid %d): mapped a %zu-byte region at %p (%s)\n", (int)getpid(), region.size, region.addr,
         protection_name(region.protection));
  printf("receiver: the region reads \"%s\"\n", text);
  ok = strncmp(text, SENDER_SAYS, strlen(SENDER_SAYS)) == 0;

  snprintf(text, region.size, "%s (pid %d)", RECEIVER_SAYS, (int)getpid());
  printf("receiver: wrote \"%s\"\n", text);
  fflush(stdout);
  if (write(sock, &go, 1) != 1) ok = 0;
  exmem_share_release(&region);
  return ok ? 0 : 1;
}

static int sender(int sock, pid_t child) {
  struct exmem_shared region;
  char *text;
  char reply;
  int ok, status = 0;

  if (exmem_share_create(4096, &region) != EXMEM_OK) return fail("sender", "exmem_share_create");
  text = region.addr;
  printf("sender (pid %d): created a %zu-byte region at %p (%s)\n", (int)getpid(), region.size, region.addr,
         protection_name(region.protection));
  snprintf(text, region.size, "%s (pid %d)", SENDER_SAYS, (int)getpid());
  printf("sender: wrote \"%s\"\n", text);
  fflush(stdout);

  if (exmem_share_send(sock, &region) != EXMEM_OK) {
    fail("sender", "exmem_share_send");
    exmem_share_release(&region);
    return 1;
  }
  if (read(sock, &reply, 1) != 1) {
    fprintf(stderr, "sender: the receiver did not answer\n");
    exmem_share_release(&region);
    return 1;
  }
  printf("sender: the region now reads \"%s\"\n", text);
  ok = strncmp(text, RECEIVER_SAYS, strlen(RECEIVER_SAYS)) == 0;
  fflush(stdout);
  exmem_share_release(&region);

  if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "sender: the receiver did not finish cleanly\n");
    ok = 0;
  }
  return ok ? 0 : 1;
}

int main(void) {
  int sv[2];
  pid_t pid;

  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    perror("socketpair");
    return 1;
  }
  fflush(stdout);
  pid = fork();
  if (pid < 0) {
    perror("fork");
    return 1;
  }
  if (pid == 0) {
    close(sv[0]);
    _exit(receiver(sv[1]));
  }
  close(sv[1]);
  return sender(sv[0], pid);
}
