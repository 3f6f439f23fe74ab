/* Exercises the C ABI as a dashboard would: version, the code table, the error object,
 * validation calls, JSON out-parameters and NULL handling. Run under valgrind by
 * scripts/test; exits non-zero on the first failed check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "o365_essentials.h"

static int failures = 0;
static int checks = 0;

#define CHECK(cond, ...)                                      \
  do {                                                        \
    checks++;                                                 \
    if (!(cond)) {                                            \
      failures++;                                             \
      fprintf(stderr, "FAILED %s:%d: ", __FILE__, __LINE__);  \
      fprintf(stderr, __VA_ARGS__);                           \
      fprintf(stderr, "\n");                                  \
    }                                                         \
  } while (0)

int main(void) {
  const char *v = o365_version();
  CHECK(v != NULL && strcmp(v, O365_EXPECTED_VERSION) == 0, "version %s", v ? v : "(null)");

  CHECK(strcmp(o365_error_code_name(O365_OK), "ok") == 0, "ok name");
  CHECK(strcmp(o365_error_code_name(O365_NOT_FOUND), "not_found") == 0, "not_found name");
  CHECK(strcmp(o365_error_code_name(O365_STORE_LOCKED), "store_locked") == 0, "store_locked name");
  CHECK(strcmp(o365_error_code_family(O365_THROTTLED), "service") == 0, "throttled family");
  CHECK(strcmp(o365_error_code_family(O365_PASSWORD_POLICY), "policy") == 0, "policy family");
  CHECK(o365_error_code_name(999) == NULL, "unknown code has no name");
  CHECK(o365_error_code_family(1) == NULL, "unknown code has no family");

  /* Every number 0..999 either has a name and family or neither. */
  int named = 0;
  for (uint32_t c = 0; c < 1000; c++) {
    const char *n = o365_error_code_name(c);
    const char *f = o365_error_code_family(c);
    CHECK((n == NULL) == (f == NULL), "code %u name/family mismatch", c);
    if (n) named++;
  }
  CHECK(named >= 30, "only %d named codes", named);

  /* Success leaves the error out-parameter alone. */
  o365_error *err = NULL;
  CHECK(o365_validate_upn("jane.doe@contoso.com", &err) == O365_OK, "valid upn");
  CHECK(err == NULL, "no error object on success");

  /* Failure hands back an owned error with an actionable message. */
  o365_result r = o365_validate_upn("jane doe@contoso.com", &err);
  CHECK(r == O365_INVALID_UPN, "invalid upn gives %u", (unsigned)r);
  CHECK(err != NULL, "error object on failure");
  CHECK(o365_error_code(err) == O365_INVALID_UPN, "error carries its code");
  CHECK(strstr(o365_error_message(err), "not allowed") != NULL, "message: %s", o365_error_message(err));
  CHECK(strlen(o365_error_action(err)) > 10, "action present");
  CHECK(o365_error_service_code(err) == NULL, "no service code for local validation");
  CHECK(o365_error_request_id(err) == NULL, "no request id for local validation");
  o365_error_free(err);
  err = NULL;

  /* Callers may pass NULL for the error out-parameter. */
  CHECK(o365_validate_domain_name("Contoso.com", NULL) == O365_INVALID_DOMAIN_NAME, "upper case domain");
  CHECK(o365_validate_domain_name("contoso.com", NULL) == O365_OK, "domain ok");

  /* NULL inputs are input errors, not crashes. */
  CHECK(o365_validate_upn(NULL, &err) == O365_NULL_ARGUMENT, "NULL upn");
  CHECK(err != NULL && strstr(o365_error_message(err), "NULL") != NULL, "NULL named");
  o365_error_free(err);
  err = NULL;

  /* JSON out-parameter, written only on success. */
  char *rules = NULL;
  r = o365_password_rules_broken("abc", "{\"min_length\":10,\"complexity\":true,\"history_length\":24}", &rules, &err);
  CHECK(r == O365_OK && rules != NULL, "rules computed (%u)", (unsigned)r);
  if (rules) {
    CHECK(strstr(rules, "too_short") != NULL, "rules: %s", rules);
    CHECK(strstr(rules, "\"min\":10") != NULL, "directory minimum reported: %s", rules);
    CHECK(strstr(rules, "abc") == NULL, "password not echoed");
  }
  o365_string_free(rules);
  rules = NULL;
  r = o365_password_rules_broken("Winter-2026!", NULL, &rules, NULL);
  CHECK(r == O365_OK && rules != NULL && strcmp(rules, "[]") == 0, "strong password breaks nothing");
  o365_string_free(rules);
  rules = NULL;
  r = o365_password_rules_broken("x", "{not json", &rules, &err);
  CHECK(r == O365_INVALID_INPUT && rules == NULL, "bad JSON refused, out-param untouched");
  CHECK(err != NULL && strstr(o365_error_message(err), "policy_json") != NULL, "bad JSON named");
  o365_error_free(err);

  /* Freeing NULL is a no-op. */
  o365_error_free(NULL);
  o365_string_free(NULL);
  CHECK(o365_error_message(NULL) == NULL, "message of NULL");
  CHECK(o365_error_code(NULL) == O365_INVALID_INPUT, "code of NULL");

  printf("%d passed, %d failed\n", checks - failures, failures);
  return failures == 0 ? 0 : 1;
}
