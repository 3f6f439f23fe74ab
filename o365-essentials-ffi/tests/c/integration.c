/* The C ABI as a dashboard drives it: one integration opened from JSON (the demo company
 * with 300 more staff, the emulator binary this program starts), every operation of the
 * table through o365_call, bad input, four threads on one handle, cancellation from
 * another thread in the middle of a 300-account bulk create and the rerun, a callback
 * that stops a call, no callback after return, the sync loop, fork().
 *
 * usage: integration EMULATOR_BINARY WORK_FOLDER
 * Fails (exit 1) on the first broken expectation, and when the table has an operation
 * this program did not call. Run plain, under ASan+UBSan and under valgrind. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "o365_essentials.h"
#include "support.h"

static int failures = 0;
static int checks = 0;
static pid_t emulator = 0;

#define CHECK(cond, ...)                                     \
  do {                                                       \
    checks++;                                                \
    if (!(cond)) {                                           \
      failures++;                                            \
      fprintf(stderr, "FAILED %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                          \
      fprintf(stderr, "\n");                                 \
    }                                                        \
  } while (0)

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "FATAL: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  if (emulator > 0) kill(emulator, SIGTERM);
  exit(2);
}

/* A growable string. */
static char *fmt(const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  char *out = NULL;
  if (vasprintf(&out, f, ap) < 0) die("out of memory");
  va_end(ap);
  return out;
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; p && (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

/* ---- the operations called, checked against o365_operations_json() ---- */
static char *called[256];
static int ncalled = 0;

static void mark(const char *op) {
  for (int i = 0; i < ncalled; i++)
    if (strcmp(called[i], op) == 0) return;
  if (ncalled < 256) called[ncalled++] = strdup(op);
}

static o365_integration *H = NULL;

/* Calls `op`; expects `want`. Returns the result JSON (owned) on success, else NULL. */
static char *call_ex(const char *op, const char *params, const o365_call_control *ctl,
                     o365_result want, o365_error **err_keep) {
  mark(op);
  char *out = (char *)0x1; /* must stay untouched on failure */
  o365_error *err = NULL;
  o365_result r = o365_call(H, op, params, ctl, &out, &err);
  if (r != want) {
    CHECK(0, "%s(%s): got %s (%s), want %s", op, params ? params : "NULL",
          o365_error_code_name(r), err ? o365_error_message(err) : "", o365_error_code_name(want));
  }
  if (r == O365_OK) {
    CHECK(err == NULL, "%s: no error object on success", op);
    return out;
  }
  CHECK(out == (char *)0x1, "%s: the result was written on failure", op);
  CHECK(err != NULL && o365_error_code(err) == r, "%s: the error object carries the code", op);
  if (err_keep)
    *err_keep = err;
  else
    o365_error_free(err);
  return NULL;
}

static char *call(const char *op, const char *params) {
  return call_ex(op, params, NULL, O365_OK, NULL);
}

static void call_fails(const char *op, const char *params, o365_result want) {
  call_ex(op, params, NULL, want, NULL);
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) die("cannot write %s", path);
  fputs(text, f);
  fclose(f);
}

static char *read_command(char *cmd) {
  FILE *p = popen(cmd, "r");
  free(cmd);
  if (!p) die("cannot run a command");
  size_t cap = 1 << 20, len = 0;
  char *buf = malloc(cap);
  size_t got;
  while ((got = fread(buf + len, 1, cap - len - 1, p)) > 0) {
    len += got;
    if (cap - len < 4096) buf = realloc(buf, cap *= 2);
  }
  buf[len] = 0;
  pclose(p);
  return buf;
}

/* ---- events ---- */
struct watch {
  atomic_int events;
  atomic_int items_finished;
  atomic_int in_call;
  atomic_int outside;   /* callbacks seen while no call was running */
  atomic_int stop_at;   /* return non-zero at this event (0: never) */
  pthread_t caller;
  atomic_int wrong_thread;
};

static int32_t on_event(void *userdata, const char *event_json) {
  struct watch *w = userdata;
  if (!atomic_load(&w->in_call)) atomic_fetch_add(&w->outside, 1);
  if (!pthread_equal(pthread_self(), w->caller)) atomic_fetch_add(&w->wrong_thread, 1);
  int n = atomic_fetch_add(&w->events, 1) + 1;
  if (strstr(event_json, "\"event\":\"item_finished\"")) atomic_fetch_add(&w->items_finished, 1);
  int stop = atomic_load(&w->stop_at);
  return stop > 0 && n >= stop ? 1 : 0;
}

struct canceller {
  struct watch *w;
  o365_cancel *token;
  int after_items;
};

static void *cancel_later(void *arg) {
  struct canceller *c = arg;
  while (atomic_load(&c->w->items_finished) < c->after_items) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  o365_cancel_trigger(c->token);
  return NULL;
}

/* ---- four threads on one handle ---- */
static atomic_int thread_failures;

static void *hammer(void *arg) {
  const char *op = arg;
  for (int i = 0; i < 25; i++) {
    char *out = NULL;
    o365_error *err = NULL;
    if (o365_call(H, op, "{}", NULL, &out, &err) != O365_OK) {
      atomic_fetch_add(&thread_failures, 1);
      o365_error_free(err);
    }
    o365_string_free(out);
  }
  return NULL;
}

/* ---- the sync loop ---- */
static atomic_int rounds_seen;
static int32_t on_round(void *userdata, const char *event_json) {
  (void)userdata;
  if (strstr(event_json, "sync_round_finished")) atomic_fetch_add(&rounds_seen, 1);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 3) die("usage: integration EMULATOR_BINARY WORK_FOLDER");
  const char *bin = argv[1], *work = argv[2];

  CHECK(o365_abi_version() == O365_ABI_VERSION, "ABI version %u", o365_abi_version());

  char *emu_cfg = fmt("%s/emulator.json", work);
  write_file(emu_cfg,
             "{\"latency\": {\"write\": {\"fixed_ms\": 15, \"jitter_ms\": 15}},"
             " \"exchange\": {\"wipe_ack_delay_ms\": 60000},"
             " \"seed\": {\"users\": [{\"user_principal_name\": \"alex@contoso.onmicrosoft.com\","
             " \"display_name\": \"Alex Adams\"}],"
             " \"domains\": [{\"name\": \"contoso.com\", \"verified\": true}],"
             " \"devices\": [{\"user\": \"alex@contoso.onmicrosoft.com\", \"device_id\": \"APPLEA1\","
             " \"model\": \"iPhone15,2\", \"device_type\": \"iPhone\", \"os\": \"iOS 17.1\"}]}}");
  char *info = start_emulator(bin, emu_cfg, &emulator);
  if (!info) die("the emulator %s did not start", bin);
  char *tenant = json_str(info, "tenant_id"), *client = json_str(info, "client_id"),
       *secret = json_str(info, "client_secret"), *login = json_str(info, "login_url"),
       *graph = json_str(info, "graph_url"), *exo = json_str(info, "exchange_url"),
       *spo = json_str(info, "sharepoint_url"), *admin = json_str(info, "admin_url");
  if (!tenant || !secret || !admin) die("the emulator's line lacks its facts: %s", info);

  char *config = fmt(
      "{\"directory\": {\"demo_company\": {\"people\": 300}},"
      " \"tenant\": {\"tenant_id\": \"%s\", \"client_id\": \"%s\","
      " \"credential\": {\"kind\": \"secret\", \"secret\": \"%s\"},"
      " \"login_url\": \"%s\", \"graph_url\": \"%s\", \"exchange_url\": \"%s\","
      " \"sharepoint_url\": \"%s\"},"
      " \"store\": \"%s/state.db\", \"results_folder\": \"%s\", \"usage_location\": \"GB\"}",
      tenant, client, secret, login, graph, exo, spo, work, work);

  /* ---- bad input: each its own code, nothing written ---- */
  {
    o365_integration *h = (o365_integration *)0x1;
    o365_error *err = NULL;
    CHECK(o365_integration_open(NULL, &h, &err) == O365_NULL_ARGUMENT, "NULL config");
    CHECK(h == (o365_integration *)0x1, "out untouched");
    CHECK(err && strstr(o365_error_message(err), "config_json"), "names the argument");
    o365_error_free(err);
    err = NULL;
    CHECK(o365_integration_open("{\"directory\": \"demo\"", &h, &err) == O365_MALFORMED_JSON,
          "malformed config");
    o365_error_free(err);
    err = NULL;
    CHECK(o365_integration_open("{\"directory\": \"demo\", \"stroe\": 1}", &h,
                                &err) == O365_INVALID_CONFIG,
          "unknown config field");
    CHECK(err && strstr(o365_error_message(err), "stroe"), "names the field: %s",
          err ? o365_error_message(err) : "");
    o365_error_free(err);
    CHECK(o365_integration_open("\xff\xfe", &h, NULL) == O365_INVALID_UTF8, "bad UTF-8");
    CHECK(h == (o365_integration *)0x1, "out untouched");
  }
  o365_error *err = NULL;
  if (o365_integration_open(config, &H, &err) != O365_OK)
    die("open: %s", err ? o365_error_message(err) : "?");

  {
    char *out = NULL;
    CHECK(o365_call(NULL, "status", "{}", NULL, &out, NULL) == O365_NULL_ARGUMENT, "NULL handle");
    CHECK(o365_call(H, NULL, "{}", NULL, &out, NULL) == O365_NULL_ARGUMENT, "NULL operation");
    CHECK(o365_call(H, "status", "{}", NULL, NULL, NULL) == O365_NULL_ARGUMENT, "NULL out");
    CHECK(o365_call(H, "st\xc3\x28tus", "{}", NULL, &out, NULL) == O365_INVALID_UTF8, "UTF-8 op");
    CHECK(o365_call(H, "status", "{\"a\": \xff}", NULL, &out, NULL) == O365_INVALID_UTF8,
          "UTF-8 params");
    CHECK(o365_call(H, "status", "{nope", NULL, &out, NULL) == O365_MALFORMED_JSON, "bad JSON");
    CHECK(o365_call(H, "no_such_op", "{}", NULL, &out, NULL) == O365_UNKNOWN_OPERATION, "op");
    CHECK(o365_call(H, "plan_bulk_create", "{\"domian\": \"x\"}", NULL, &out, NULL) ==
              O365_UNKNOWN_FIELD,
          "unknown field");
    CHECK(o365_call(H, "assign", "{\"local_guid\": 5, \"online_id\": \"x\"}", NULL, &out, NULL) ==
              O365_INVALID_INPUT,
          "wrong type");
    CHECK(o365_call((o365_integration *)0x12345670, "status", "{}", NULL, &out, NULL) ==
              O365_INVALID_HANDLE,
          "made-up handle");
    o365_call_control bad = {0};
    CHECK(o365_call(H, "status", "{}", &bad, &out, NULL) == O365_INVALID_INPUT, "struct_size");
    CHECK(out == NULL, "never written");
  }

  /* ---- every operation ---- */
  free(call("requirements", "{}"));
  call_fails("status", "{}", O365_NOT_INTEGRATED);
  free(call("integrate", NULL));
  char *status = call("status", "{}");
  CHECK(status && strstr(status, "\"enabled\":true"), "integrated: %s", status);
  free(status);
  free(call("match_preview", "{}"));
  char *skus = call("licences", "{}");
  char *sku = json_str(skus, "sku_id");
  CHECK(sku != NULL, "a licence: %s", skus);
  free(skus);

  /* The demo's twelve first (with a licence), through the event callback. */
  struct watch w = {0};
  w.caller = pthread_self();
  o365_call_control ctl = {sizeof(o365_call_control), NULL, on_event, &w, 0};
  char *params = fmt("{\"users\": null, \"licences\": [{\"sku_id\": \"%s\"}]}", sku);
  char *plan = call("plan_bulk_create", params);
  free(params);
  CHECK(plan && count(plan, "\"no_online_account\"") == 312, "312 planned");
  free(plan);

  /* A callback that returns non-zero stops the call at an item boundary. */
  plan = call("plan_bulk_create", "{}");
  char *apply = fmt("{\"plan\": %s}", plan);
  atomic_store(&w.stop_at, 5);
  atomic_store(&w.in_call, 1);
  o365_error *cerr = NULL;
  call_ex("apply_plan", apply, &ctl, O365_CANCELLED, &cerr);
  atomic_store(&w.in_call, 0);
  atomic_store(&w.stop_at, 0);
  const char *partial = o365_error_partial_json(cerr);
  int done0 = count(partial, "\"outcome\":\"succeeded\"");
  CHECK(done0 >= 1 && done0 < 312 && count(partial, "\"outcome\":\"cancelled\"") == 312 - done0,
        "stopped by the callback after %d", done0);
  o365_error_free(cerr);
  free(apply);
  free(plan);

  /* 300 + 12 accounts: cancelled from another thread part way, then finished. */
  plan = call("plan_bulk_create", "{}");
  CHECK(count(plan, "\"no_online_account\"") == 312 - done0, "the rest is planned");
  apply = fmt("{\"plan\": %s}", plan);
  o365_cancel *token = NULL;
  CHECK(o365_cancel_new(&token) == O365_OK, "token");
  ctl.cancel = token;
  struct canceller c = {&w, token, atomic_load(&w.items_finished) + 40};
  pthread_t th;
  pthread_create(&th, NULL, cancel_later, &c);
  atomic_store(&w.in_call, 1);
  cerr = NULL;
  call_ex("apply_plan", apply, &ctl, O365_CANCELLED, &cerr);
  atomic_store(&w.in_call, 0);
  pthread_join(th, NULL);
  ctl.cancel = NULL;
  partial = o365_error_partial_json(cerr);
  int done1 = count(partial, "\"outcome\":\"succeeded\"");
  int cancelled = count(partial, "\"outcome\":\"cancelled\"");
  CHECK(done1 >= 40 && cancelled > 0 && done1 + cancelled == 312 - done0,
        "partial results: %d succeeded, %d cancelled", done1, cancelled);
  done1 += done0;
  CHECK(o365_cancel_is_triggered(token) == 1, "the token says so");
  o365_error_free(cerr);
  o365_cancel_free(token);
  free(apply);
  free(plan);
  CHECK(atomic_load(&w.wrong_thread) == 0, "callbacks only on the calling thread");
  int before = atomic_load(&w.events);
  struct timespec pause = {0, 300000000};
  nanosleep(&pause, NULL);
  CHECK(atomic_load(&w.events) == before && atomic_load(&w.outside) == 0,
        "no callback after return");

  /* The rerun creates the rest and nothing twice. */
  plan = call("plan_bulk_create", "{}");
  CHECK(count(plan, "\"no_online_account\"") == 312 - done1, "the rest is planned");
  apply = fmt("{\"plan\": %s}", plan);
  char *results = call("apply_plan", apply);
  CHECK(count(results, "\"outcome\":\"succeeded\"") == 312 - done1, "the rest is created");
  char *run_id = json_str(results, "run_id");
  free(apply);
  free(plan);
  free(results);
  plan = call("plan_bulk_create", "{}");
  CHECK(plan && count(plan, "\"create_account\"") == 0, "nothing left to create");
  free(plan);
  char *state = read_command(fmt("curl -s %s/state", admin));
  CHECK(count(state, "\"userPrincipalName\":\"staff") == 300, "300 staff accounts, no duplicate: %d",
        count(state, "\"userPrincipalName\":\"staff"));
  free(state);


  /* Retry from the results file. */
  {
    char compact[64] = {0};
    for (int i = 0, j = 0; run_id && run_id[i] && j < 63; i++)
      if (run_id[i] != '-') compact[j++] = run_id[i];
    char *p = fmt("{\"results_file\": \"%s/bulk_create-%s.json\"}", work, compact);
    char *retry = call("plan_retry", p);
    CHECK(retry && strstr(retry, "\"items\":[]"), "nothing failed: %s", retry);
    free(retry);
    free(p);
    free(run_id);
  }

  /* Users: names, unassign, create with an account, import, assign. */
  char *pv = call("match_preview", "{}");
  free(pv);
  plan = call("plan_bulk_create", "{}");
  free(plan);
  char *ava = NULL;
  {
    /* A local user's GUID: from the status of one linked user's plan item in the first
     * results file is long; the sync plan names them too. Use online_user_names on the
     * GUID the create-with-account returns. */
    char *created = call(
        "create_user_with_account",
        "{\"user\": {\"sam_account_name\": \"nora.nash\", \"user_principal_name\": "
        "\"nora.nash@essentials.test\", \"given_name\": \"Nora\", \"surname\": \"Nash\", "
        "\"display_name\": \"Nora Nash\"}, \"password\": \"Winter-Harbour-2027!\", "
        "\"domain\": \"contoso.onmicrosoft.com\"}");
    ava = json_str(created, "guid");
    CHECK(ava != NULL, "a local GUID: %s", created);
    free(created);
  }
  params = fmt("{\"local_guids\": [\"%s\"]}", ava);
  char *names = call("online_user_names", params);
  CHECK(names && strstr(names, "nora.nash@contoso.onmicrosoft.com"), "names: %s", names);
  free(names);
  free(params);
  params = fmt("{\"local_guid\": \"%s\", \"password\": \"Autumn-Leaves-2027!\"}", ava);
  char *queued = call("password_changed", params);
  CHECK(queued && strcmp(queued, "true") == 0, "queued: %s", queued);
  free(queued);
  free(params);
  /* The Samba hook's operation: the account's LDIF, queued once per password version. */
  params = fmt("{\"ldif\": \"objectGUID: %s\\nmsDS-KeyVersionNumber: 2\\n"
               "virtualClearTextUTF8:: U3ByaW5nLVJhaW4tMjAyOCE=\\n\"}", ava);
  char *captured = call("capture_password", params);
  CHECK(captured && strstr(captured, "\"outcome\":\"queued\""), "captured: %s", captured);
  free(captured);
  captured = call("capture_password", params);
  CHECK(captured && strstr(captured, "\"outcome\":\"repeated\""), "repeated: %s", captured);
  free(captured);
  free(params);
  char *links = call("list_links", "{\"local_user\": \"ava.adams\"}");
  CHECK(links && strstr(links, "\"user_principal_name\":\"ava.adams@contoso.onmicrosoft.com\""),
        "ava's link: %s", links);
  free(links);
  char *imported = call("import_users", "{}");
  CHECK(imported && count(imported, "\"initial_password\"") == 1, "alex imported");
  free(imported);
  params = fmt("{\"local_guid\": \"%s\", \"online_id\": \"nobody\"}", ava);
  call_fails("assign", params, O365_NOT_FOUND); /* no such online account */
  free(params);
  params = fmt("{\"local_guid\": \"%s\"}", ava);
  char *unassigned = call("unassign", params);
  CHECK(unassigned && strstr(unassigned, "\"state\":\"unassigned\""), "unassigned");
  free(unassigned);
  free(params);

  /* Sync as a plan, applied; passwords. */
  char *sp = call("plan_sync", "{}");
  params = fmt("{\"plan\": %s}", sp);
  free(call("apply_sync_plan", params));
  free(params);
  free(sp);
  free(call("sync_once", "{\"allow_beyond_threshold\": false}"));
  free(call("deliver_passwords", "{}"));
  free(call("password_problems", "{}"));

  /* Exchange. */
  free(call("create_distribution_group",
            "{\"name\": \"Sales\", \"alias\": \"sales\", \"primary_smtp_address\": "
            "\"sales@contoso.com\", \"members\": [\"ava.adams@contoso.onmicrosoft.com\"]}"));
  free(call("add_group_members",
            "{\"group\": \"sales\", \"members\": [\"liam.lopez@contoso.onmicrosoft.com\"]}"));
  free(call("remove_group_members",
            "{\"group\": \"sales\", \"members\": [\"ava.adams@contoso.onmicrosoft.com\"]}"));
  free(call("replace_group_members",
            "{\"group\": \"sales\", \"members\": [\"kira.kowalski@contoso.onmicrosoft.com\"]}"));
  free(call("update_distribution_group",
            "{\"group\": \"sales\", \"update\": {\"display_name\": \"Sales team\"}}"));
  char *groups = call("list_distribution_groups", "{}");
  CHECK(groups && strstr(groups, "kira.kowalski@contoso.onmicrosoft.com"), "groups: %s", groups);
  free(groups);
  free(call("delete_distribution_group", "{\"group\": \"sales\"}"));
  free(call("set_device_policy",
            "{\"password_enabled\": true, \"min_password_length\": 6, "
            "\"max_password_failed_attempts\": {\"value\": 10}, \"max_inactivity_lock_minutes\": "
            "{\"value\": 15}, \"alphanumeric_password_required\": false}"));
  char *policy = call("get_device_policy", "{}");
  CHECK(policy && strstr(policy, "\"min_password_length\":6"), "policy: %s", policy);
  free(policy);
  free(call("set_default_access_level", "{\"level\": \"quarantine\"}"));
  free(call("get_default_access_level", "{}"));
  char *rule = call("add_access_rule",
                    "{\"access_level\": \"block\", \"characteristic\": \"DeviceModel\", "
                    "\"query_string\": \"Nokia 3310\"}");
  char *rule_id = json_str(rule, "id");
  free(call("list_access_rules", "{}"));
  params = fmt("{\"id\": \"%s\"}", rule_id);
  free(call("remove_access_rule", params));
  free(params);
  free(rule);
  free(rule_id);
  char *devices = call("list_devices", "{\"user_principal_name\": \"alex@contoso.onmicrosoft.com\"}");
  char *device = json_str(devices, "id");
  CHECK(device != NULL, "a device: %s", devices);
  free(devices);
  params = fmt("{\"device_id\": \"%s\", \"allow\": true}", device);
  free(call("set_device_access", params));
  free(params);
  params = fmt("{\"device_id\": \"%s\", \"kind\": \"full\", \"confirm\": \"another\"}", device);
  call_fails("wipe_device", params, O365_INVALID_INPUT);
  free(params);
  params = fmt("{\"device_id\": \"%s\", \"kind\": \"account_only\", \"confirm\": \"%s\"}", device,
               device);
  free(call("wipe_device", params));
  free(params);
  params = fmt("{\"device_id\": \"%s\"}", device);
  free(call("wipe_status", params));
  free(call("cancel_wipe", params));
  free(params);
  free(device);

  /* The domain: no custom domain and no DNS are configured here (the Rust suite links
   * one against BIND); each operation asks for the domain. */
  call_fails("domain_stage", "{}", O365_INVALID_INPUT);
  call_fails("link_domain", "{}", O365_INVALID_INPUT);
  call_fails("zone_fragment", "{}", O365_INVALID_INPUT);
  call_fails("write_records_file", "{}", O365_INVALID_INPUT);
  call_fails("check_records", "{}", O365_INVALID_INPUT);
  call_fails("apply_records", "{}", O365_INVALID_INPUT);
  call_fails("health_report", "{}", O365_INVALID_INPUT);

  /* SharePoint. */
  char *lib = call("create_library", "{\"name\": \"Contracts\", \"description\": \"Signed\"}");
  char *lib_id = json_str(lib, "id");
  char *libs = call("list_libraries", "{}");
  CHECK(libs && strstr(libs, "Contracts"), "libraries: %s", libs);
  free(libs);
  params = fmt("{\"id\": \"%s\"}", lib_id);
  free(call("delete_library", params));
  free(params);
  free(lib);
  free(lib_id);
  /* Site permissions go through SharePoint's REST API, which takes app-only calls from a
   * certificate credential only (the Rust suite runs them with one). */
  call_fails("grant_site_access",
             "{\"user_principal_name\": \"ava.adams@contoso.onmicrosoft.com\", \"role\": \"member\"}",
             O365_CERTIFICATE_REQUIRED);
  call_fails("list_site_groups", "{}", O365_CERTIFICATE_REQUIRED);
  call_fails("revoke_site_access",
             "{\"user_principal_name\": \"ava.adams@contoso.onmicrosoft.com\", \"role\": \"member\"}",
             O365_CERTIFICATE_REQUIRED);
  char *pad = call("launchpad", "{}");
  CHECK(pad && strstr(pad, "\"team_site\":\"https://"), "launchpad: %s", pad);
  free(pad);

  /* Credentials, disable, enable. */
  call_fails("change_credentials", "{\"credential\": {\"kind\": \"secret\", \"secret\": \"wrong\"}}",
             O365_AUTH);
  params = fmt("{\"credential\": {\"kind\": \"secret\", \"secret\": \"%s\"}}", secret);
  free(call("change_credentials", params));
  free(params);

  /* Four threads share the handle. */
  {
    pthread_t t[4];
    const char *ops[4] = {"status", "licences", "list_distribution_groups", "password_problems"};
    for (int i = 0; i < 4; i++) {
      mark(ops[i]);
      pthread_create(&t[i], NULL, hammer, (void *)ops[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    CHECK(atomic_load(&thread_failures) == 0, "%d calls failed on four threads",
          atomic_load(&thread_failures));
  }

  /* The sync loop, started and stopped from C. */
  {
    o365_sync_loop *loop = NULL;
    CHECK(o365_sync_loop_start(H, "{\"interval_secs\": 1}", on_round, NULL, &loop, NULL) == O365_OK,
          "loop");
    CHECK(o365_sync_loop_start(H, "{\"interval_secs\": 0}", NULL, NULL, &loop, NULL) ==
              O365_INVALID_INPUT,
          "interval 0");
    struct timespec ts = {1, 500000000};
    nanosleep(&ts, NULL);
    uint64_t rounds = 0;
    o365_sync_loop_stop(loop, &rounds);
    int seen = atomic_load(&rounds_seen);
    CHECK(rounds >= 1 && (uint64_t)seen == rounds, "%lu rounds, %d reported", (unsigned long)rounds,
          seen);
    nanosleep(&pause, NULL);
    CHECK(atomic_load(&rounds_seen) == seen, "no round reported after stop");
  }

  /* fork(): the child gets a clear error, no hang. It reports through a pipe and ends
   * by SIGKILL, so no exit handler (or valgrind's leak check) of the copied process runs. */
  {
    int fds[2];
    if (pipe(fds) != 0) die("pipe");
    pid_t child = fork();
    if (child == 0) {
      char *out = NULL;
      o365_result r = o365_call(H, "status", "{}", NULL, &out, NULL);
      uint32_t code = (uint32_t)r;
      if (write(fds[1], &code, sizeof code) != (ssize_t)sizeof code) _exit(1);
      raise(SIGKILL);
    }
    close(fds[1]);
    uint32_t code = 0;
    ssize_t got = read(fds[0], &code, sizeof code);
    close(fds[0]);
    waitpid(child, NULL, 0);
    CHECK(got == (ssize_t)sizeof code && code == O365_FORKED_PROCESS, "the forked child's call: %s",
          o365_error_code_name(code));
  }

  free(call("disable", "{}"));
  call_fails("integrate", "{}", O365_INTEGRATION_DISABLED);
  free(call("enable", "{}"));

  /* setup and teardown sign an administrator in with a device code: a shell in the
     background plays the person who enters the code, as Alex, who holds no directory
     role, so both stop with the role named and nothing changed. */
  for (int k = 0; k < 2; k++) {
    const char *op = k == 0 ? "setup" : "teardown";
    char *approver = fmt(
        "sh -c 'for i in $(seq 300); do "
        "c=$(curl -s %s/devicecode | sed -n \"s/.*\\\"userCode\\\":\\\"\\([^\\\"]*\\)\\\".*/\\1/p\"); "
        "if [ -n \"$c\" ]; then curl -s -X POST -H \"Content-Type: application/json\" "
        "-d \"{\\\"userCode\\\":\\\"$c\\\",\\\"user\\\":\\\"alex@contoso.onmicrosoft.com\\\"}\" "
        "%s/devicecode/approve >/dev/null; exit 0; fi; sleep 0.1; done' &",
        admin, admin);
    CHECK(system(approver) == 0, "the approver started");
    free(approver);
    call_fails(op, "{\"server_name\": \"ops\", \"dry_run\": true}", O365_ADMIN_ROLE_MISSING);
  }
  /* Rolling the certificate needs a registration setup made. */
  call_fails("roll_credential", "{}", O365_NOT_SUPPORTED);

  /* Every operation of the table was called. */
  const char *table = o365_operations_json();
  int total = 0, missing = 0;
  for (const char *p = table; (p = strstr(p, "\"name\":\"")); total++) {
    p += 8;
    const char *end = strchr(p, '"');
    char *name = strndup(p, (size_t)(end - p));
    int found = 0;
    for (int i = 0; i < ncalled; i++) found |= strcmp(called[i], name) == 0;
    if (!found) {
      fprintf(stderr, "operation not called: %s\n", name);
      missing++;
    }
    free(name);
  }
  CHECK(total >= 55 && missing == 0, "%d of %d operations not called", missing, total);

  /* Freed: the handle is refused, not read. */
  o365_integration_free(H);
  {
    char *out = NULL;
    CHECK(o365_call(H, "status", "{}", NULL, &out, NULL) == O365_INVALID_HANDLE, "after free");
  }
  o365_integration_free(H); /* twice: a no-op */

  for (int i = 0; i < ncalled; i++) free(called[i]);
  free(ava);
  free(sku);
  free(config);
  free(info);
  free(emu_cfg);
  free(tenant), free(client), free(secret), free(login), free(graph), free(exo), free(spo);
  free(admin);
  kill(emulator, SIGTERM);
  waitpid(emulator, NULL, 0);
  printf("%d checks, %d failed, %d operations\n", checks, failures, total);
  return failures ? 1 : 0;
}
