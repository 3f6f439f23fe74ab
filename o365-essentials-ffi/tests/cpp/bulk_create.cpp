// The C++ wrapper as a dashboard uses it: a bulk create with a progress bar, a
// distribution group, errors as exceptions, a callback that throws, an async call, the
// sync loop. usage: bulk_create EMULATOR_BINARY WORK_FOLDER
#include <sys/wait.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <chrono>

#include "../c/support.h"
#include "o365_essentials.hpp"

std::string operation_table();

static int failures = 0;
#define EXPECT(cond, what)                                     \
  do {                                                         \
    if (!(cond)) {                                             \
      failures++;                                              \
      std::cerr << "FAILED line " << __LINE__ << ": " << what  \
                << "\n";                                       \
    }                                                          \
  } while (0)

static int count(const std::string &hay, const std::string &needle) {
  int n = 0;
  for (auto p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) n++;
  return n;
}

static std::string str(const char *json, const char *key) {
  char *v = json_str(json, key);
  std::string out = v ? v : "";
  free(v);
  return out;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    std::cerr << "usage: bulk_create EMULATOR_BINARY WORK_FOLDER\n";
    return 2;
  }
  std::string work = argv[2];
  std::ofstream(work + "/emulator.json") << "{\"latency\": {\"write\": {\"fixed_ms\": 10}}}";
  pid_t emu = 0;
  char *line = start_emulator(argv[1], (work + "/emulator.json").c_str(), &emu);
  if (!line) {
    std::cerr << "the emulator did not start\n";
    return 2;
  }
  std::string config =
      "{\"directory\": {\"demo_company\": {\"people\": 40}}, \"tenant\": {\"tenant_id\": \"" +
      str(line, "tenant_id") + "\", \"client_id\": \"" + str(line, "client_id") +
      "\", \"credential\": {\"kind\": \"secret\", \"secret\": \"" + str(line, "client_secret") +
      "\"}, \"login_url\": \"" + str(line, "login_url") + "\", \"graph_url\": \"" +
      str(line, "graph_url") + "\", \"exchange_url\": \"" + str(line, "exchange_url") +
      "\", \"sharepoint_url\": \"" + str(line, "sharepoint_url") + "\"}, \"store\": \"" + work +
      "/state.db\", \"results_folder\": \"" + work + "\"}";
  free(line);

  try {
    // Errors are exceptions with the code and what to do.
    try {
      o365::integration bad("{\"directory\": \"demo\", \"stroe\": 1}");
      EXPECT(false, "a bad configuration opened");
    } catch (const o365::error &e) {
      EXPECT(e.code() == O365_INVALID_CONFIG && e.code_name() == "invalid_config",
             e.code_name());
      EXPECT(!e.action().empty(), "an action");
    }

    o365::integration integration(config);
    integration.call("integrate");
    try {
      integration.call("no_such_operation");
      EXPECT(false, "an unknown operation ran");
    } catch (const o365::error &e) {
      EXPECT(e.code() == O365_UNKNOWN_OPERATION, e.what());
    }
    EXPECT(operation_table() == o365::integration::operations(), "one table");

    // A callback that throws cancels the call; its exception comes back.
    std::string plan = integration.call("plan_bulk_create");
    EXPECT(count(plan, "\"no_online_account\"") == 52, "52 planned");
    o365::call_options throwing;
    throwing.on_event = [](const std::string &ev) -> bool {
      if (ev.find("item_finished") != std::string::npos) throw std::logic_error("dashboard bug");
      return true;
    };
    try {
      integration.call("apply_plan", "{\"plan\": " + plan + "}", throwing);
      EXPECT(false, "the callback's exception was lost");
    } catch (const std::logic_error &e) {
      EXPECT(std::string(e.what()) == "dashboard bug", e.what());
    }

    // The bulk create with a progress bar, asynchronously.
    plan = integration.call("plan_bulk_create");
    int planned = count(plan, "\"no_online_account\"");
    EXPECT(planned > 0 && planned < 52, "the rest is planned: " << planned);
    std::atomic<int> progress{0};
    o365::call_options opts;
    opts.on_event = [&](const std::string &ev) {
      if (ev.find("\"event\":\"progress\"") != std::string::npos) {
        progress++;
        if (isatty(2)) std::fprintf(stderr, "\rcreating: %-40s", str(ev.c_str(), "current").c_str());
      }
      return true;
    };
    auto pending = integration.call_async("apply_plan", "{\"plan\": " + plan + "}", opts);
    std::string results = pending.get();
    if (isatty(2)) std::fprintf(stderr, "\n");
    EXPECT(count(results, "\"outcome\":\"succeeded\"") == planned, results);
    EXPECT(progress > 0, "progress was reported");

    // A distribution group of local users.
    std::string group = integration.call(
        "create_distribution_group",
        "{\"name\": \"Workshop\", \"alias\": \"workshop\", \"primary_smtp_address\": "
        "\"workshop@contoso.onmicrosoft.com\", \"members\": "
        "[\"daniel.diaz@contoso.onmicrosoft.com\", \"staff0001@contoso.onmicrosoft.com\"]}");
    EXPECT(group.find("workshop@contoso.onmicrosoft.com") != std::string::npos, group);
    std::string groups = integration.call("list_distribution_groups");
    EXPECT(count(groups, "staff0001@contoso.onmicrosoft.com") >= 1, groups);

    // Cancelled by a token.
    o365::cancel_token token;
    token.cancel();
    o365::call_options cancelled;
    cancelled.cancel = &token;
    try {
      integration.call("sync_once", "{}", cancelled);
    } catch (const o365::error &e) {
      EXPECT(e.code() == O365_CANCELLED, e.what());
    }

    // The sync loop.
    std::atomic<int> rounds{0};
    {
      auto loop = integration.start_sync_loop("{\"interval_secs\": 1}",
                                              [&](const std::string &) { rounds++; });
      std::this_thread::sleep_for(std::chrono::milliseconds(1200));
      EXPECT(loop.stop() >= 1, "rounds ran");
    }
    EXPECT(rounds >= 1, "rounds reported");
  } catch (const std::exception &e) {
    std::cerr << "unexpected: " << e.what() << "\n";
    failures++;
  }
  kill(emu, SIGTERM);
  waitpid(emu, nullptr, 0);
  std::cout << (failures ? "FAILED" : "ok") << " (" << failures << " failures)\n";
  return failures ? 1 : 0;
}
