// The .NET binding against the emulator, as a dashboard would use it: integrate, match
// preview, bulk create with progress, the results file, a distribution group of local
// users, the device policy, cancel from a CancellationToken, error codes and messages,
// and the secrets canary: unique passwords and a client secret used through the binding,
// then searched for in exception text (ToString, Message, Action, PartialJson), results,
// events and every file the run left — zero occurrences.
// usage: mono O365EssentialsTest.exe EMULATOR_BINARY WORK_FOLDER; prints "N passed, N failed".
using System;
using System.Diagnostics;
using System.IO;
using System.Text.RegularExpressions;
using System.Threading;
using System.Threading.Tasks;
using O365Essentials;

internal static class Program
{
    private static int passed, failed;

    private static void Expect(bool ok, string what)
    {
        if (ok) { passed++; }
        else { failed++; Console.Error.WriteLine("FAILED: " + what); }
    }

    private static string Field(string json, string key)
    {
        var m = Regex.Match(json, "\"" + key + "\":\"([^\"]*)\"");
        return m.Success ? m.Groups[1].Value : null;
    }

    private static int Count(string hay, string needle)
    {
        return Regex.Matches(hay, Regex.Escape(needle)).Count;
    }

    private static int Main(string[] args)
    {
        if (args.Length != 2) { Console.Error.WriteLine("usage: O365EssentialsTest EMULATOR WORK"); return 2; }
        string work = args[1];
        File.WriteAllText(Path.Combine(work, "emulator.json"),
            "{\"latency\": {\"write\": {\"fixed_ms\": 20, \"jitter_ms\": 20}}, \"seed\": {\"devices\": []}}");
        var psi = new ProcessStartInfo(args[0], "--listen 127.0.0.1:0 --config " + Path.Combine(work, "emulator.json"))
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
        };
        var emu = Process.Start(psi);
        string info = emu.StandardOutput.ReadLine();
        try
        {
            Run(info, work);
        }
        catch (Exception ex)
        {
            failed++;
            Console.Error.WriteLine("unexpected: " + ex);
        }
        finally
        {
            emu.Kill();
            emu.WaitForExit();
        }
        Console.WriteLine(passed + " passed, " + failed + " failed");
        return failed == 0 ? 0 : 1;
    }

    private static void Run(string info, string work)
    {
        string config = "{\"directory\": {\"demo_company\": {\"people\": 200}}, \"tenant\": {"
            + "\"tenant_id\": \"" + Field(info, "tenant_id") + "\", \"client_id\": \"" + Field(info, "client_id") + "\", "
            + "\"credential\": {\"kind\": \"secret\", \"secret\": \"" + Field(info, "client_secret") + "\"}, "
            + "\"login_url\": \"" + Field(info, "login_url") + "\", \"graph_url\": \"" + Field(info, "graph_url") + "\", "
            + "\"exchange_url\": \"" + Field(info, "exchange_url") + "\", \"sharepoint_url\": \"" + Field(info, "sharepoint_url") + "\"}, "
            + "\"store\": \"" + work + "/state.db\", \"results_folder\": \"" + work + "\"}";

        Expect(Integration.AbiVersion == 1, "ABI version");
        Expect(Count(Integration.Operations, "\"name\":") >= 55, "the operations are listed");

        // Error codes and messages.
        try
        {
            new Integration("{\"directory\": \"demo\", \"stroe\": 1}");
            Expect(false, "a bad configuration opened");
        }
        catch (O365Exception ex)
        {
            Expect(ex.CodeName == "invalid_config" && ex.Family == "input", "code " + ex.CodeName);
            Expect(ex.Message.Contains("stroe") && !string.IsNullOrEmpty(ex.Action), "message " + ex.Message);
        }

        using (var integration = new Integration(config))
        {
            try
            {
                integration.Call("status");
                Expect(false, "status before integrate");
            }
            catch (O365Exception ex)
            {
                Expect(ex.CodeName == "not_integrated", "not integrated: " + ex);
            }
            string status = integration.Call("integrate");
            Expect(status.Contains("\"enabled\":true"), "integrated");
            try
            {
                integration.Call("plan_bulk_create", "{\"domian\": \"x\"}");
                Expect(false, "unknown field accepted");
            }
            catch (O365Exception ex)
            {
                Expect(ex.Code == 105 && ex.Message.Contains("domian"), "unknown field: " + ex);
            }

            // Match preview, then the bulk create with progress.
            string preview = integration.Call("match_preview");
            Expect(preview.StartsWith("{"), "a preview");
            string plan = integration.Call("plan_bulk_create");
            Expect(Count(plan, "\"no_online_account\"") == 212, "212 planned");

            // Cancelled from a CancellationToken part way.
            var cts = new CancellationTokenSource();
            int finished = 0;
            Func<string, bool> cancelSoon = ev =>
            {
                if (ev.Contains("\"event\":\"item_finished\"") && Interlocked.Increment(ref finished) == 20) cts.Cancel();
                return true;
            };
            try
            {
                integration.CallAsync("apply_plan", "{\"plan\": " + plan + "}", cancelSoon, cts.Token).Wait();
                Expect(false, "not cancelled");
            }
            catch (AggregateException ae)
            {
                var oce = ae.InnerException as OperationCanceledException;
                var inner = oce == null ? null : oce.InnerException as O365Exception;
                Expect(inner != null && inner.CodeName == "cancelled", "cancelled: " + ae.InnerException);
                Expect(inner != null && Count(inner.PartialJson, "\"outcome\":\"succeeded\"") >= 20,
                    "partial results kept");
            }

            // The rest, with progress; a managed exception in the callback comes back.
            plan = integration.Call("plan_bulk_create");
            try
            {
                integration.Call("apply_plan", "{\"plan\": " + plan + "}",
                    ev => { throw new InvalidOperationException("dashboard bug"); });
                Expect(false, "the callback's exception was lost");
            }
            catch (InvalidOperationException ex)
            {
                Expect(ex.Message == "dashboard bug", "rethrown: " + ex.Message);
            }
            plan = integration.Call("plan_bulk_create");
            int rest = Count(plan, "\"no_online_account\"");
            int progress = 0;
            string results = integration.Call("apply_plan", "{\"plan\": " + plan + "}",
                ev => { if (ev.Contains("\"event\":\"progress\"")) progress++; return true; });
            Expect(Count(results, "\"outcome\":\"succeeded\"") == rest && rest > 0, "the rest created: " + rest);
            Expect(progress > 0, "progress reported");
            Expect(Count(integration.Call("plan_bulk_create"), "\"create_account\"") == 0, "nothing left");

            // The results file.
            string runId = Field(results, "run_id").Replace("-", "");
            Expect(File.Exists(Path.Combine(work, "bulk_create-" + runId + ".json")), "results file");

            // A distribution group of local users.
            string group = integration.Call("create_distribution_group",
                "{\"name\": \"Office\", \"alias\": \"office\", \"primary_smtp_address\": \"office@contoso.onmicrosoft.com\", "
                + "\"members\": [\"chloe.carter@contoso.onmicrosoft.com\", \"staff0007@contoso.onmicrosoft.com\"]}");
            Expect(group.Contains("office@contoso.onmicrosoft.com"), "group " + group);
            Expect(integration.Call("list_distribution_groups").Contains("staff0007@contoso.onmicrosoft.com"), "members");

            // The device policy.
            integration.Call("set_device_policy", "{\"password_enabled\": true, \"min_password_length\": 8, "
                + "\"max_password_failed_attempts\": {\"value\": 10}, \"max_inactivity_lock_minutes\": {\"value\": 5}, "
                + "\"alphanumeric_password_required\": true}");
            Expect(integration.Call("get_device_policy").Contains("\"min_password_length\":8"), "device policy");

            // Four threads share the integration.
            var tasks = new Task<string>[4];
            for (int i = 0; i < 4; i++) tasks[i] = integration.CallAsync("status");
            Task.WaitAll(tasks);
            Expect(Array.TrueForAll(tasks, t => t.Result.Contains("\"enabled\":true")), "threads");

            // The sync loop.
            int rounds = 0;
            using (var loop = integration.StartSyncLoop("{\"interval_secs\": 1}", ev => Interlocked.Increment(ref rounds)))
            {
                Thread.Sleep(1200);
                Expect(loop.Stop() >= 1, "loop rounds");
            }
            Expect(rounds >= 1, "rounds reported");

            Canary(integration, config, work);
        }
    }

    private static void Canary(Integration integration, string config, string work)
    {
        string password = "Cn#" + Guid.NewGuid().ToString("N").Substring(0, 16) + "x7";
        string changed = "Cn#" + Guid.NewGuid().ToString("N").Substring(0, 16) + "x8";
        string secret = "canary-secret-" + Guid.NewGuid().ToString("N");
        var seen = new System.Text.StringBuilder();
        Func<string, bool> log = ev => { seen.AppendLine(ev); return true; };
        string user = "{\"sam_account_name\": \"canary.net\", \"user_principal_name\": \"canary.net@contoso.com\", "
            + "\"display_name\": \"Canary Net\"}";
        string made = integration.Call("create_user_with_account",
            "{\"user\": " + user + ", \"password\": \"" + password + "\"}", log);
        seen.AppendLine(made);
        string guid = Field(made, "guid");
        Expect(guid != null, "made: " + made);
        seen.AppendLine(integration.Call("password_changed",
            "{\"local_guid\": \"" + guid + "\", \"password\": \"" + changed + "\"}", log));
        seen.AppendLine(integration.Call("deliver_passwords", null, log));
        foreach (string bad in new[] {
            "{\"user\": " + user + ", \"password\": \"" + password + "\"}",
            "{\"user\": 5, \"password\": \"" + password + "\"}",
            "{\"user\": " + user + ", \"password\": \"" + password + "\", \"extra\": 1}",
        })
        {
            try
            {
                integration.Call("create_user_with_account", bad, log);
                Expect(false, "accepted: " + bad);
            }
            catch (O365Exception ex)
            {
                seen.AppendLine(ex.ToString()).AppendLine(ex.Message).AppendLine(ex.Action)
                    .AppendLine(ex.PartialJson ?? "").AppendLine(ex.StackTrace ?? "");
            }
        }
        string wrong = config.Replace("\"kind\": \"secret\", \"secret\": \"", "\"kind\": \"secret\", \"secret\": \"" + secret);
        wrong = wrong.Replace("/state.db", "/canary.db");
        Expect(wrong.Contains(secret), "the wrong secret is in the configuration");
        using (var other = new Integration(wrong))
        {
            try
            {
                other.Call("integrate", null, log);
                Expect(false, "a wrong secret integrated");
            }
            catch (O365Exception ex)
            {
                Expect(ex.CodeName == "auth", "wrong secret: " + ex.CodeName);
                seen.AppendLine(ex.ToString()).AppendLine(ex.Action).AppendLine(ex.StackTrace ?? "");
            }
        }
        string all = seen.ToString();
        Expect(all.Length > 1000, "what was searched: " + all.Length + " characters");
        foreach (string file in Directory.GetFiles(work, "*", SearchOption.AllDirectories))
        {
            byte[] bytes = File.ReadAllBytes(file);
            all += System.Text.Encoding.UTF8.GetString(bytes) + System.Text.Encoding.Unicode.GetString(bytes);
            if (bytes.Length > 1) all += System.Text.Encoding.Unicode.GetString(bytes, 1, bytes.Length - 1);
        }
        foreach (string s in new[] { password, changed, secret })
        {
            Expect(!all.Contains(s), "a secret leaked: " + s.Substring(0, 6) + "...");
        }
    }
}
