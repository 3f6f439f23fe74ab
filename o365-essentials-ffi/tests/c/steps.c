/* Runs a list of operations through the C ABI, one per line of STEPS_FILE:
 *
 *   operation <TAB> params JSON <TAB> expected code name <TAB> text the result must hold
 *
 * `$prev` in the parameters is replaced by the previous step's result; parameters
 * `@FILE` are that file's bytes as they are (a 10 MB text, invalid UTF-8). Prints each
 * result as `operation <TAB> JSON`, and each error as `operation <TAB> error <TAB> code
 * <TAB> message <TAB> what to do`, on stdout; for an expected error the last column must
 * appear in its message or what to do. Every event of every call goes to stderr as
 * `event <TAB> JSON` (the library's log, at its most verbose). A configuration the
 * library refuses prints `open <TAB> error ...` and exits 3; the first step that does
 * not go as expected exits 1. The Rust suite drives it against Samba
 * (tests/it/operations.rs, tests/it/doors.rs), so the operations, the bad input and the
 * secrets are proven from C on a real domain controller.
 *
 * usage: steps CONFIG_FILE STEPS_FILE */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "o365_essentials.h"

static char *slurp(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  size_t got = fread(buf, 1, (size_t)n, f);
  buf[got] = 0;
  fclose(f);
  return buf;
}

static int32_t on_event(void *userdata, const char *event_json) {
  (void)userdata;
  fprintf(stderr, "event\t%s\n", event_json);
  return 0;
}

static char *replace_prev(const char *params, const char *prev) {
  const char *at = strstr(params, "$prev");
  if (!at || !prev) return strdup(params);
  size_t head = (size_t)(at - params);
  char *out = malloc(strlen(params) + strlen(prev) + 1);
  memcpy(out, params, head);
  strcpy(out + head, prev);
  strcat(out, at + 5);
  return out;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: steps CONFIG_FILE STEPS_FILE\n");
    return 2;
  }
  char *config = slurp(argv[1]);
  char *steps = slurp(argv[2]);
  if (!config || !steps) {
    fprintf(stderr, "cannot read the files\n");
    return 2;
  }
  o365_integration *h = NULL;
  o365_error *err = NULL;
  o365_result opened = o365_integration_open(config, &h, &err);
  if (opened != O365_OK) {
    printf("open\terror\t%s\t%s\t%s\n", o365_error_code_name(opened), o365_error_message(err),
           o365_error_action(err));
    o365_error_free(err);
    free(config);
    free(steps);
    return 3;
  }
  o365_call_control ctl = {sizeof(o365_call_control), NULL, on_event, NULL, 0};
  int status = 0;
  char *prev = NULL;
  char *save = NULL;
  for (char *line = strtok_r(steps, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char *f[4] = {0};
    char *s2 = NULL;
    int n = 0;
    for (char *p = strtok_r(line, "\t", &s2); p && n < 4; p = strtok_r(NULL, "\t", &s2)) f[n++] = p;
    if (n < 3) continue;
    char *params = f[1][0] == '@' ? slurp(f[1] + 1) : replace_prev(f[1], prev);
    if (!params) {
      fprintf(stderr, "cannot read %s\n", f[1] + 1);
      return 2;
    }
    char *out = NULL;
    err = NULL;
    o365_result r = o365_call(h, f[0], params, &ctl, &out, &err);
    free(params);
    const char *got = o365_error_code_name(r);
    const char *message = err ? o365_error_message(err) : "";
    const char *action = err ? o365_error_action(err) : "";
    if (strcmp(got, f[2]) != 0) {
      fprintf(stderr, "%s: got %s (%s), want %s\n", f[0], got, message, f[2]);
      status = 1;
    } else if (r == O365_OK && f[3] && !strstr(out, f[3])) {
      fprintf(stderr, "%s: the result lacks `%s`: %s\n", f[0], f[3], out);
      status = 1;
    } else if (r != O365_OK && f[3] && !strstr(message, f[3]) && !strstr(action, f[3])) {
      fprintf(stderr, "%s: the error does not say `%s`: %s (%s)\n", f[0], f[3], message, action);
      status = 1;
    }
    if (r == O365_OK) {
      printf("%s\t%s\n", f[0], out ? out : "");
    } else {
      printf("%s\terror\t%s\t%s\t%s\n", f[0], got, message, action);
    }
    o365_error_free(err);
    free(prev);
    prev = out ? strdup(out) : NULL;
    o365_string_free(out);
    if (status) break;
  }
  free(prev);
  free(config);
  free(steps);
  o365_integration_free(h);
  return status;
}
