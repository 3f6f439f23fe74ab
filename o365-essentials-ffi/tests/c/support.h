/* What the C and C++ tests share: starting the emulator binary and reading a string
 * out of a JSON text. */
#ifndef O365_TEST_SUPPORT_H
#define O365_TEST_SUPPORT_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* The string value of the first `"key":"..."` in a JSON text (no escapes in the values
 * the tests read), as a new string; NULL when absent. */
static inline char *json_str(const char *json, const char *key) {
  size_t n = strlen(key) + 5;
  char *pat = (char *)malloc(n);
  snprintf(pat, n, "\"%s\":\"", key);
  const char *p = json ? strstr(json, pat) : NULL;
  char *out = NULL;
  if (p) {
    p += strlen(pat);
    const char *end = strchr(p, '"');
    if (end) out = strndup(p, (size_t)(end - p));
  }
  free(pat);
  return out;
}

/* Starts `bin --listen 127.0.0.1:0 --config config_file`; returns its JSON line (owned)
 * and its pid in *pid, or NULL. */
static inline char *start_emulator(const char *bin, const char *config_file, pid_t *pid) {
  int fds[2];
  if (pipe(fds) != 0) return NULL;
  *pid = fork();
  if (*pid < 0) return NULL;
  if (*pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    execl(bin, bin, "--listen", "127.0.0.1:0", "--config", config_file, (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  FILE *f = fdopen(fds[0], "r");
  char *line = NULL;
  size_t cap = 0;
  if (getline(&line, &cap, f) <= 0) {
    free(line);
    line = NULL;
  }
  fclose(f);
  return line;
}
#endif
