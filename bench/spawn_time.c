/* Times the start-up of commands, interleaved in one run so that a busy machine slows them alike:
 *   spawn_time ROUNDS NAME -- cmd args... [NAME -- cmd args...]...
 * Each round runs every command once (stdout/stderr to /dev/null). Prints, per command, the
 * median, min and max wall time in ms and the largest peak RSS in MB, one line each:
 *   NAME median_ms min_ms max_ms peak_rss_mb */
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

typedef struct {
  const char *name;
  char **argv;
  double *ms;
  long max_rss_kb;
} Cmd;

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double run_once(Cmd *c) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  struct timespec t0, t1;
  pid_t pid;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if (posix_spawnp(&pid, c->argv[0], &fa, NULL, c->argv, environ) != 0) {
    fprintf(stderr, "spawn_time: cannot run %s\n", c->argv[0]);
    exit(2);
  }
  int status;
  struct rusage ru;
  wait4(pid, &status, 0, &ru);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  posix_spawn_file_actions_destroy(&fa);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "spawn_time: %s failed\n", c->name);
    exit(2);
  }
  if (ru.ru_maxrss > c->max_rss_kb) c->max_rss_kb = ru.ru_maxrss;
  return (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: spawn_time ROUNDS NAME -- cmd args... [NAME -- cmd args...]...\n");
    return 2;
  }
  int rounds = atoi(argv[1]);
  Cmd cmds[16];
  int n = 0;
  for (int i = 2; i < argc && n < 16;) {
    cmds[n].name = argv[i];
    if (i + 1 >= argc || strcmp(argv[i + 1], "--") != 0) {
      fprintf(stderr, "spawn_time: expected -- after %s\n", argv[i]);
      return 2;
    }
    int start = i + 2, end = start;
    while (end < argc && !(end + 1 < argc && strcmp(argv[end + 1], "--") == 0)) end++;
    cmds[n].argv = calloc((size_t)(end - start + 1), sizeof(char *));
    for (int k = start; k < end; k++) cmds[n].argv[k - start] = argv[k];
    cmds[n].ms = calloc((size_t)rounds, sizeof(double));
    cmds[n].max_rss_kb = 0;
    n++;
    i = end;
  }
  for (int c = 0; c < n; c++) /* warm-up: page cache, dynamic loader */
    for (int w = 0; w < 5; w++) run_once(&cmds[c]);
  for (int r = 0; r < rounds; r++)
    for (int c = 0; c < n; c++) cmds[c].ms[r] = run_once(&cmds[c]);
  for (int c = 0; c < n; c++) {
    qsort(cmds[c].ms, (size_t)rounds, sizeof(double), cmp);
    printf("%s %.3f %.3f %.3f %.1f\n", cmds[c].name, cmds[c].ms[rounds / 2], cmds[c].ms[0],
           cmds[c].ms[rounds - 1], cmds[c].max_rss_kb / 1024.0);
    free(cmds[c].argv);
    free(cmds[c].ms);
  }
  return 0;
}
