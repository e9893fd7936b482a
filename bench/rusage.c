/* Runs one command and prints what it cost, from wait4 (microsecond CPU times, unlike time(1)):
 *   rusage [-t SECONDS] cmd args...   ->   user_s sys_s wall_s peak_rss_kb
 * The command's stdout goes to /dev/null, its stderr stays. With -t it is killed after SECONDS, so
 * that a hung bench ends. Exits 1 if the command failed or was killed. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static volatile pid_t child;

static void on_alarm(int sig) {
  (void)sig;
  if (child > 0) kill(child, SIGKILL);
}

int main(int argc, char **argv) {
  int limit = 0, first = 1;
  if (argc > 2 && strcmp(argv[1], "-t") == 0) {
    limit = atoi(argv[2]);
    first = 3;
  }
  if (argc <= first) {
    fprintf(stderr, "usage: rusage [-t SECONDS] cmd args...\n");
    return 2;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  struct timespec t0, t1;
  pid_t pid;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if (posix_spawnp(&pid, argv[first], &fa, NULL, argv + first, environ) != 0) {
    fprintf(stderr, "rusage: cannot run %s\n", argv[first]);
    return 2;
  }
  child = pid;
  if (limit > 0) {
    signal(SIGALRM, on_alarm);
    alarm((unsigned)limit);
  }
  int status;
  struct rusage ru;
  while (wait4(pid, &status, 0, &ru) < 0)
    if (errno != EINTR) return 2;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "rusage: %s %s\n", argv[first], WIFSIGNALED(status) ? "was killed (time limit?)" : "failed");
    return 1;
  }
  printf("%.6f %.6f %.6f %ld\n", ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
         ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6,
         (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, ru.ru_maxrss);
  return 0;
}
