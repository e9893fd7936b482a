/* Times the start-up of commands, interleaved in one run so that a busy machine slows them alike:
 *   spawn_time ROUNDS NAME -- cmd args... [NAME -- cmd args...]...
 * Each round runs every command once (stdout/stderr to /dev/null). Prints, per command, the
 * median, min and max wall time in ms, and the largest, median and smallest peak RSS in MB, one
 * line each:
 *   NAME median_ms min_ms max_ms max_rss_mb median_rss_mb min_rss_mb */
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
  double *ms, *rss_kb;
} Cmd;

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Runs c once; returns its wall time in ms and stores its peak RSS in *rss_kb. */
static double run_once(Cmd *c, double *rss_kb) {
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
  *rss_kb = (double)ru.ru_maxrss;
  return (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: spawn_time ROUNDS NAME -- cmd args... [NAME -- cmd args...]...\n");
    return 2;
  }
  int rounds = atoi(argv[1]);
  if (rounds < 1) {
    fprintf(stderr, "spawn_time: ROUNDS must be at least 1\n");
    return 2;
  }
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
    cmds[n].rss_kb = calloc((size_t)rounds, sizeof(double));
    n++;
    i = end;
  }
  double ignored;
  for (int c = 0; c < n; c++) /* warm-up: page cache, dynamic loader */
    for (int w = 0; w < 5; w++) run_once(&cmds[c], &ignored);
  for (int r = 0; r < rounds; r++)
    for (int c = 0; c < n; c++) cmds[c].ms[r] = run_once(&cmds[c], &cmds[c].rss_kb[r]);
  for (int c = 0; c < n; c++) {
    double *ms = cmds[c].ms, *rss = cmds[c].rss_kb;
    qsort(ms, (size_t)rounds, sizeof(double), cmp);
    qsort(rss, (size_t)rounds, sizeof(double), cmp);
    printf("%s %.3f %.3f %.3f %.1f %.1f %.1f\n", cmds[c].name, ms[rounds / 2], ms[0], ms[rounds - 1],
           rss[rounds - 1] / 1024, rss[rounds / 2] / 1024, rss[0] / 1024);
    free(cmds[c].argv);
    free(ms);
    free(rss);
  }
  return 0;
}
