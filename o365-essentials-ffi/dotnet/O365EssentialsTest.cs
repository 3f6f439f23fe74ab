// The .NET binding against the emulator, as a dashboard would use it, through the typed
// methods: every operation of the table has its typed methods; integrate, match preview,
// bulk create with progress (IProgress), cancelled by a token and by a handler (the task
// ends Canceled, the exception carries the partial results), the lease wait, the results
// file, a distribution group of local users, the device policy, error codes and families,
// and the secrets canary: unique passwords and a client secret used through the binding,
// then searched for in exception text (ToString, Message, Action, PartialJson), results,
// events and every file the run left — zero occurrences.
// usage: mono O365EssentialsTest.exe EMULATOR_BINARY WORK_FOLDER; prints "N passed, N failed".
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
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

    private sealed class Reporter : IProgress<Event>
    {
        private readonly Action<Event> on;
        public Reporter(Action<Event> on) { this.on = on; }
        public void Report(Event value) { on(value); }
    }

    private static string Camel(string name)
    {
        return string.Concat(name.Split('_').Select(p => p.Substring(0, 1).ToUpperInvariant() + p.Substring(1)));
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
            "{\"latency\": {\"write\": {\"fixed_ms\": 20, \"jitter_ms\": 20}}, \"exchange\": {\"wipe_ack_delay_ms\": 60000}, "
            + "\"seed\": {\"users\": [{\"user_principal_name\": \"alex@contoso.onmicrosoft.com\", \"display_name\": \"Alex Adams\"}], "
            + "\"devices\": [{\"user\": \"alex@contoso.onmicrosoft.com\", \"device_id\": \"APPLEA1\", \"model\": \"iPhone15,2\", "
            + "\"device_type\": \"iPhone\", \"os\": \"iOS 17.1\"}]}}");
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
            IntegrationStatus status = integration.Integrate();
            Expect(status.Enabled && status.PasswordSync == PasswordSyncState.NoKey || status.Enabled, "integrated");
            try
            {
                integration.Call("plan_bulk_create", "{\"domian\": \"x\"}");
                Expect(false, "unknown field accepted");
            }
            catch (O365Exception ex)
            {
                Expect(ex.Code == 105 && ex.Message.Contains("domian") && ex is O365InputException, "unknown field: " + ex);
            }

            // Every operation of the table has its typed methods, sync and async.
            var table = JsonValue.Parse(Integration.Operations).AsList(o => o["name"].AsString());
            Expect(table.Count >= 56, "the table: " + table.Count);
            foreach (string op in table)
            {
                string method = Camel(op);
                var methods = typeof(Integration).GetMethods().Where(m => m.Name == method || m.Name == method + "Async").ToList();
                Expect(methods.Count(m => m.Name == method) == 1, "no typed method for " + op);
                Expect(methods.Any(m => m.Name == method + "Async"
                    && m.GetParameters().Any(p => p.ParameterType == typeof(IProgress<Event>))
                    && m.GetParameters().Any(p => p.ParameterType == typeof(CancellationToken))), "no typed async method (IProgress) for " + op);
                Expect(methods.Any(m => m.Name == method + "Async"
                    && m.GetParameters().Any(p => p.ParameterType == typeof(Func<Event, bool>))), "no typed async method (handler) for " + op);
                Expect(Integration.TypedOperations.Contains(op), "not generated: " + op);
            }
            Expect(Integration.TypedOperations.Count == table.Count, "typed operations the table lacks");

            // Typed: match preview, the plan, its items by case, enums, the results.
            MatchPreview preview = integration.MatchPreview(new MatchPreviewParams());
            Expect(preview.HardMatches != null && preview.Conflicts != null, "a preview");
            Plan plan = integration.PlanBulkCreate(null);
            int planned = plan.Items.Count(i => i.Reason == PlanReason.NoOnlineAccount);
            Expect(planned == 212, "212 planned: " + planned);
            Expect(plan.Items.All(i => i is PlanItemCreateAccount || i.Reason != PlanReason.NoOnlineAccount),
                "a new account is a create_account case");
            Expect(Plan.FromJson(plan.ToJson()).ToJson() == plan.ToJson(), "a plan reads back what it writes");

            // Cancelled from a CancellationToken part way: the task ends Canceled, awaiting
            // it throws O365CanceledException with the partial results.
            var cts = new CancellationTokenSource();
            int finished = 0;
            var cancelSoon = new Reporter(ev =>
            {
                if (ev.Kind == "item_finished" && Interlocked.Increment(ref finished) == 20) cts.Cancel();
            });
            Task<RunResults> cancelled = integration.ApplyPlanAsync(new ApplyPlanParams { Plan = plan }, cts.Token, cancelSoon);
            try
            {
                cancelled.GetAwaiter().GetResult();
                Expect(false, "not cancelled");
            }
            catch (O365CanceledException ex)
            {
                Expect(ex.CancellationToken.IsCancellationRequested, "the exception names the cancelled token");
                RunResults partial = ex.Partial(RunResults.FromJson);
                Expect(partial != null && partial.Items.Count(i => i.Outcome == Outcome.Succeeded) >= 20,
                    "partial results kept: " + ex.PartialJson);
                Expect(ex.ErrorCode == ErrorCode.Cancelled && ex.Code == 900, "code 900");
            }
            try { cancelled.Wait(); } catch (AggregateException) { }
            Expect(cancelled.Status == TaskStatus.Canceled, "token: the task ends Canceled, not " + cancelled.Status);

            // A token cancelled before the call: the same exception, nothing done.
            try
            {
                integration.PlanBulkCreate(null, null, cts.Token);
                Expect(false, "ran with a cancelled token");
            }
            catch (O365CanceledException ex)
            {
                Expect(ex.PartialJson == null && ex.CancellationToken == cts.Token, "cancelled before it started");
            }

            // Cancelled by the handler returning false: the same exception, the same status.
            plan = integration.PlanBulkCreate(null);
            int seen = 0;
            Task<string> stopped = integration.CallAsync("apply_plan", new ApplyPlanParams { Plan = plan }.ToJson(),
                ev => !(ev.Contains("\"event\":\"item_finished\"") && ++seen == 5));
            try
            {
                stopped.GetAwaiter().GetResult();
                Expect(false, "not stopped by the handler");
            }
            catch (O365CanceledException ex)
            {
                Expect(ex.Partial(RunResults.FromJson).Items.Count >= 5, "handler: partial results kept");
            }
            try { stopped.Wait(); } catch (AggregateException) { }
            Expect(stopped.Status == TaskStatus.Canceled, "handler: the task ends Canceled, not " + stopped.Status);
            // Typed async with a handler returning false: the same.
            plan = integration.PlanBulkCreate(null);
            Task<RunResults> handled = integration.ApplyPlanAsync(new ApplyPlanParams { Plan = plan }, ev => ev.Kind != "item_finished");
            try
            {
                handled.GetAwaiter().GetResult();
                Expect(false, "not stopped by the typed async handler");
            }
            catch (O365CanceledException ex)
            {
                Expect(ex.Partial(RunResults.FromJson).Items.Count >= 1, "typed async handler: partial results kept");
            }
            try { handled.Wait(); } catch (AggregateException) { }
            Expect(handled.Status == TaskStatus.Canceled, "typed async handler: Canceled, not " + handled.Status);
            // Sync, typed: the same exception.
            plan = integration.PlanBulkCreate(null);
            try
            {
                integration.ApplyPlan(new ApplyPlanParams { Plan = plan }, ev => ev.Kind != "item_finished");
                Expect(false, "not stopped by the typed handler");
            }
            catch (O365CanceledException ex)
            {
                Expect(ex.Partial(RunResults.FromJson).Items.Count >= 1, "sync: partial results kept");
            }

            // A managed exception in the callback comes back.
            plan = integration.PlanBulkCreate(null);
            try
            {
                integration.ApplyPlan(new ApplyPlanParams { Plan = plan }, ev => { throw new InvalidOperationException("dashboard bug"); });
                Expect(false, "the callback's exception was lost");
            }
            catch (InvalidOperationException ex)
            {
                Expect(ex.Message == "dashboard bug", "rethrown: " + ex.Message);
            }

            // The lease: a second integration on the same store waits for the first's apply.
            plan = integration.PlanBulkCreate(null);
            int rest = plan.Items.Count(i => i is PlanItemCreateAccount);
            var events = new List<Event>();
            var progress = new Reporter(ev => { lock (events) events.Add(ev); });
            Task<RunResults> running = integration.ApplyPlanAsync(new ApplyPlanParams { Plan = plan }, CancellationToken.None, progress);
            using (var second = new Integration(config))
            {
                for (int i = 0; i < 500 && events.Count == 0; i++) Thread.Sleep(10);
                try
                {
                    second.ApplyPlan(new ApplyPlanParams { Plan = plan });
                    Expect(false, "the lease was not held");
                }
                catch (O365EngineException ex)
                {
                    Expect(ex.ErrorCode == ErrorCode.WorkHeld, "held: " + ex);
                }
                // With a lease wait it waits for the first to finish, then runs.
                var empty = new Plan { Id = Guid.NewGuid().ToString(), CreatedAt = DateTimeOffset.UtcNow,
                    TenantId = plan.TenantId, Items = new List<PlanItem>(), Skipped = new List<SkippedUser>(),
                    Seats = new List<SeatCount>() };
                RunResults after = second.ApplyPlanAsync(new ApplyPlanParams { Plan = empty },
                    CancellationToken.None, null, 120000).Result;
                Expect(running.IsCompleted, "waited for the lease: " + running.Status);
                Expect(after.Items.Count == 0, "then ran: " + after);
            }
            RunResults results = running.Result;
            Expect(results.Items.Count(i => i.Outcome == Outcome.Succeeded) == rest && rest > 0, "the rest created: " + rest);
            Expect(events.Any(e => e.Kind == "progress" && e.Total.HasValue), "progress reported through IProgress");
            Expect(integration.PlanBulkCreate(null).Items.Count(i => i is PlanItemCreateAccount) == 0, "nothing left");

            // The results file.
            Expect(results.ResultsFile != null && File.Exists(results.ResultsFile), "results file: " + results.ResultsFile);
            Expect(results.Counts.Succeeded == (ulong)rest && results.Counts.Failed == 0, "counts: " + results.Counts);

            // A distribution group of local users.
            DistributionGroup group = integration.CreateDistributionGroup(new NewDistributionGroup
            {
                Name = "Office",
                Alias = "office",
                PrimarySmtpAddress = "office@contoso.onmicrosoft.com",
                Members = new List<string> { "chloe.carter@contoso.onmicrosoft.com", "staff0007@contoso.onmicrosoft.com" },
            });
            Expect(group.PrimarySmtpAddress == "office@contoso.onmicrosoft.com", "group " + group);
            Expect(integration.ListDistributionGroups().Any(g => g.Members.Contains("staff0007@contoso.onmicrosoft.com")
                || g.MemberUserNames.Contains("staff0007@contoso.onmicrosoft.com")), "members");
            integration.AddGroupMembers(new GroupMembersParams { Group = group.Id, Members = new List<string> { "staff0008@contoso.onmicrosoft.com" } });
            integration.DeleteDistributionGroup(new GroupParams { Group = group.Id });
            Expect(!integration.ListDistributionGroups().Any(g => g.Id == group.Id), "group deleted");
            try
            {
                integration.CreateDistributionGroup(new NewDistributionGroup { Name = "No address", Alias = "noaddr" });
                Expect(false, "a group without its address");
            }
            catch (ArgumentNullException ex)
            {
                Expect(ex.ParamName == "PrimarySmtpAddress", "the missing field named: " + ex.ParamName);
            }

            // The device policy, its limits typed.
            integration.SetDevicePolicy(new DevicePolicyParams
            {
                PasswordEnabled = true,
                MinPasswordLength = 8,
                MaxPasswordFailedAttempts = 10,
                MaxInactivityLockMinutes = Limit.Unlimited,
                AlphanumericPasswordRequired = true,
            });
            DevicePolicy policy = integration.GetDevicePolicy();
            Expect(policy.MinPasswordLength == 8 && policy.MaxPasswordFailedAttempts.Value == 10
                && policy.MaxInactivityLockMinutes.Named == "unlimited", "device policy " + policy);
            Expect(integration.Licences().Count > 0, "licences");
            Expect(integration.ListLinks(new ListLinksParams()).Count >= 212, "links");
            Expect(Enum.IsDefined(typeof(AccessLevel), integration.GetDefaultAccessLevel()), "default access level read");

            // Errors: typed codes and families.
            try
            {
                integration.DeleteDistributionGroup(new GroupParams { Group = "no-such-group" });
                Expect(false, "deleted a group that is not there");
            }
            catch (O365ObjectException ex)
            {
                Expect(ex.ErrorCode == ErrorCode.NotFound && ex.Family == "object", "not found: " + ex);
            }

            // Four threads share the integration.
            var tasks = new Task<IntegrationStatus>[4];
            for (int i = 0; i < 4; i++) tasks[i] = integration.StatusAsync();
            Task.WaitAll(tasks);
            Expect(Array.TrueForAll(tasks, t => t.Result.Enabled), "threads");

            // The sync loop.
            int rounds = 0;
            using (var loop = integration.StartSyncLoop("{\"interval_secs\": 1}", ev => Interlocked.Increment(ref rounds)))
            {
                Thread.Sleep(1200);
                Expect(loop.Stop() >= 1, "loop rounds");
            }
            Expect(rounds >= 1, "rounds reported");

            Walk(integration, work, Field(info, "client_secret"));
            SignIns(integration, Field(info, "admin_url"));
            Canary(integration, config, work);
        }
    }

    // The rest of the table through the typed methods: each result read into its type
    // (a generated reader that does not fit the engine's answer throws here), each
    // expected failure as its family's exception (setup, teardown and roll_credential:
    // SignIns below).
    // setup and teardown sign an administrator in with a device code: the event handler
    // plays the person who enters the code shown, as Alex, who holds no directory role, so
    // both stop with the missing role named and nothing changed. Rolling the certificate
    // needs a registration setup made.
    private static void SignIns(Integration integration, string adminUrl)
    {
        for (int k = 0; k < 2; k++)
        {
            string op = k == 0 ? "setup" : "teardown";
            string shown = null;
            Func<Event, bool> enterTheCode = ev =>
            {
                JsonValue code;
                if (ev.Kind == "sign_in" && shown == null && ev.Value.TryField("user_code", out code))
                {
                    shown = code.AsString();
                    using (var web = new System.Net.WebClient())
                    {
                        web.Headers[System.Net.HttpRequestHeader.ContentType] = "application/json";
                        web.UploadString(adminUrl + "/devicecode/approve",
                            "{\"userCode\":\"" + shown + "\",\"user\":\"alex@contoso.onmicrosoft.com\"}");
                    }
                }
                return true;
            };
            try
            {
                var p = new SetupParams { ServerName = "ops", DryRun = true };
                if (k == 0) integration.Setup(p, enterTheCode); else integration.Teardown(p, enterTheCode);
                Expect(false, op + " without a role went through");
            }
            catch (O365Exception ex)
            {
                Expect(shown != null && ex.ErrorCode == ErrorCode.AdminRoleMissing, op + ": " + ex);
            }
        }
        try
        {
            integration.RollCredential();
            Expect(false, "rolled a certificate setup never made");
        }
        catch (O365Exception ex)
        {
            Expect(ex.ErrorCode == ErrorCode.NotSupported, "roll_credential: " + ex);
        }
    }

    private static void Walk(Integration integration, string work, string secret)
    {
        RequirementsReport req = integration.Requirements(new RequirementsParams());
        Expect(req.Checks.Count > 0, "requirements");
        Expect(integration.Licences().Any(s => s.EnabledUnits > 0), "licences");
        string lastResults = Directory.GetFiles(work, "bulk_create-*.json").OrderBy(File.GetLastWriteTimeUtc).Last();
        Plan retry = integration.PlanRetry(new PlanRetryParams { ResultsFile = lastResults });
        Expect(retry.Items.Count == 0, "nothing to retry");

        CreatedUser nora = integration.CreateUserWithAccount(new CreateUserParams
        {
            User = new NewLocalUser
            {
                SamAccountName = "nora.nash", UserPrincipalName = "nora.nash@essentials.test",
                GivenName = "Nora", Surname = "Nash", DisplayName = "Nora Nash",
            },
            Password = "Winter-Harbour-2027!",
            Domain = "contoso.onmicrosoft.com",
        });
        string guid = nora.Local.Guid;
        Expect(integration.OnlineUserNames(new OnlineUserNamesParams { LocalGuids = new List<string> { guid } })
            .Contains("nora.nash@contoso.onmicrosoft.com"), "online user names");
        Expect(integration.PasswordChanged(new PasswordChangedParams { LocalGuid = guid, Password = "Autumn-Leaves-2027!" }),
            "password queued");
        string ldif = "objectGUID: " + guid + "\nmsDS-KeyVersionNumber: 2\nvirtualClearTextUTF8:: U3ByaW5nLVJhaW4tMjAyOCE=\n";
        Expect(integration.CapturePassword(new CapturePasswordParams { Ldif = ldif }).Outcome == CaptureOutcome.Queued, "captured");
        Expect(integration.CapturePassword(new CapturePasswordParams { Ldif = ldif }).Outcome == CaptureOutcome.Repeated, "repeated");
        Expect(integration.ListLinks(new ListLinksParams { LocalUser = "nora.nash" }).Count == 1, "nora's link");
        ImportResult imported = integration.ImportUsers(new ImportRequest());
        Expect(imported.Imported.Count == 1, "alex imported: " + imported.Imported.Count);
        try
        {
            integration.Assign(new AssignParams { LocalGuid = guid, OnlineId = "nobody" });
            Expect(false, "assigned to nobody");
        }
        catch (O365ObjectException ex)
        {
            Expect(ex.ErrorCode == ErrorCode.NotFound, "assign: " + ex);
        }
        Expect(integration.Unassign(new UnassignParams { LocalGuid = guid }).State == LinkState.Unassigned, "unassigned");

        SyncPlan syncPlan = integration.PlanSync(new SyncParams());
        SyncReport applied = integration.ApplySyncPlan(new ApplySyncPlanParams { Plan = syncPlan });
        Expect(applied.Results != null, "sync plan applied");
        Expect(integration.SyncOnce(new SyncParams { AllowBeyondThreshold = false }).Results != null, "sync once");
        integration.DeliverPasswords();
        integration.PasswordProblems();

        DistributionGroup sales = integration.CreateDistributionGroup(new NewDistributionGroup
        {
            Name = "Sales", Alias = "sales", PrimarySmtpAddress = "sales@contoso.onmicrosoft.com",
            Members = new List<string> { "ava.adams@contoso.onmicrosoft.com" },
        });
        integration.AddGroupMembers(new GroupMembersParams { Group = "sales", Members = new List<string> { "liam.lopez@contoso.onmicrosoft.com" } });
        integration.RemoveGroupMembers(new GroupMembersParams { Group = "sales", Members = new List<string> { "ava.adams@contoso.onmicrosoft.com" } });
        integration.ReplaceGroupMembers(new GroupMembersParams { Group = "sales", Members = new List<string> { "kira.kowalski@contoso.onmicrosoft.com" } });
        DistributionGroup renamed = integration.UpdateDistributionGroup(new GroupUpdateParams
        {
            Group = "sales",
            Update = new DistributionGroupUpdate { DisplayName = "Sales team" },
        });
        Expect(renamed.DisplayName == "Sales team" && sales.Alias == "sales", "renamed");
        integration.DeleteDistributionGroup(new GroupParams { Group = "sales" });

        integration.SetDefaultAccessLevel(new AccessLevelParams { Level = AccessLevel.Quarantine });
        Expect(integration.GetDefaultAccessLevel() == AccessLevel.Quarantine, "default access level");
        AccessRule rule = integration.AddAccessRule(new NewAccessRule
        {
            AccessLevel = AccessLevel.Block, Characteristic = DeviceCharacteristic.DeviceModel, QueryString = "Nokia 3310",
        });
        Expect(integration.ListAccessRules().Any(r => r.Id == rule.Id && r.AccessLevel == AccessLevel.Block), "rule listed");
        integration.RemoveAccessRule(new IdParams { Id = rule.Id });

        List<MobileDevice> devices = integration.ListDevices(new DevicesParams { UserPrincipalName = "alex@contoso.onmicrosoft.com" });
        Expect(devices.Count == 1, "alex's device");
        string device = devices[0].Id;
        integration.SetDeviceAccess(new DeviceAccessParams { DeviceId = device, Allow = true });
        try
        {
            integration.WipeDevice(new WipeParams { DeviceId = device, Kind = WipeKind.Full, Confirm = "another" });
            Expect(false, "wiped without the confirmation");
        }
        catch (O365InputException ex)
        {
            Expect(ex.ErrorCode == ErrorCode.InvalidInput, "wipe confirmation: " + ex);
        }
        Expect(integration.WipeDevice(new WipeParams { DeviceId = device, Kind = WipeKind.AccountOnly, Confirm = device })
            == WipeStatus.Pending, "wipe pending");
        Expect(integration.WipeStatus(new DeviceParams { DeviceId = device }) == WipeStatus.Pending, "wipe status");
        Expect(integration.CancelWipe(new DeviceParams { DeviceId = device }) == WipeStatus.Cancelled, "wipe cancelled");

        // No custom domain here: each domain operation asks for one (O365InputException).
        var domainOps = new List<Action>
        {
            () => integration.DomainStage(new DomainParams()),
            () => integration.LinkDomain(new LinkDomainParams()),
            () => integration.ZoneFragment(new DomainParams()),
            () => integration.WriteRecordsFile(new RecordsFileParams()),
            () => integration.CheckRecords(new DomainParams()),
            () => integration.ApplyRecords(new ApplyRecordsParams()),
            () => integration.HealthReport(new DomainParams()),
        };
        foreach (Action op in domainOps)
        {
            try { op(); Expect(false, "a domain operation without a domain"); }
            catch (O365InputException ex) { Expect(ex.ErrorCode == ErrorCode.InvalidInput, "domain: " + ex); }
        }

        Library library = integration.CreateLibrary(new NewLibrary { Name = "Contracts", Description = "Signed" });
        Expect(integration.ListLibraries().Any(l => l.Id == library.Id), "library listed");
        integration.DeleteLibrary(new IdParams { Id = library.Id });
        // Site permissions need a certificate credential (the Rust suite runs them with one).
        var siteOps = new List<Action>
        {
            () => integration.GrantSiteAccess(new SiteAccessParams { UserPrincipalName = "ava.adams@contoso.onmicrosoft.com", Role = SiteRole.Member }),
            () => integration.ListSiteGroups(),
            () => integration.RevokeSiteAccess(new SiteAccessParams { UserPrincipalName = "ava.adams@contoso.onmicrosoft.com", Role = SiteRole.Member }),
        };
        foreach (Action op in siteOps)
        {
            try { op(); Expect(false, "site access with a secret"); }
            catch (O365Exception ex) { Expect(ex.ErrorCode == ErrorCode.CertificateRequired, "site: " + ex); }
        }
        Expect(!string.IsNullOrEmpty(integration.Launchpad().Portal), "launchpad");

        try
        {
            integration.ChangeCredentials(new ChangeCredentialsParams { Credential = new CredentialSecret { Secret = "wrong" } });
            Expect(false, "a wrong secret accepted");
        }
        catch (O365AuthException ex)
        {
            Expect(ex.ErrorCode == ErrorCode.Auth, "wrong secret: " + ex.CodeName);
        }
        integration.ChangeCredentials(new ChangeCredentialsParams { Credential = new CredentialSecret { Secret = secret } });
        integration.Disable();
        Expect(!integration.Status().Enabled, "disabled");
        DriftReport drift = integration.Enable();
        Expect(drift.Missing != null && integration.Status().Enabled, "enabled again");
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
        // Models print (ToString, what a debugger or a log shows) without their secrets.
        var typedUser = new CreateUserParams
        {
            User = new NewLocalUser { SamAccountName = "canary.net", UserPrincipalName = "canary.net@contoso.com", DisplayName = "Canary Net" },
            Password = password,
        };
        seen.AppendLine(typedUser.ToString());
        seen.AppendLine(new ChangeCredentialsParams { Credential = new CredentialSecret { Secret = secret } }.ToString());
        Expect(typedUser.ToString().Contains("<redacted>") && typedUser.ToJson().Contains(password),
            "ToString redacts, ToJson sends");
        string all = seen.ToString();
        Expect(all.Length > 1000, "what was searched: " + all.Length + " characters");
        // The closed integration's store finishes closing on its own (its WAL folded in).
        for (int i = 0; i < 100 && File.Exists(Path.Combine(work, "canary.db-wal")); i++) Thread.Sleep(50);
        foreach (string file in Directory.GetFiles(work, "*", SearchOption.AllDirectories))
        {
            byte[] bytes;
            try { bytes = File.ReadAllBytes(file); }
            catch (FileNotFoundException) { continue; } // a store's -wal/-shm gone since the listing
            all += System.Text.Encoding.UTF8.GetString(bytes) + System.Text.Encoding.Unicode.GetString(bytes);
            if (bytes.Length > 1) all += System.Text.Encoding.Unicode.GetString(bytes, 1, bytes.Length - 1);
        }
        foreach (string s in new[] { password, changed, secret })
        {
            Expect(!all.Contains(s), "a secret leaked: " + s.Substring(0, 6) + "...");
        }
    }
}
