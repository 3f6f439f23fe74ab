// A separate program that uses the binding only as a .NET developer gets it: from the
// O365Essentials .nupkg installed through a local feed (scripts/test packs it, installs it
// with `nuget install -Source <folder>`, compiles this against the package's dll and runs
// it on Mono with the package's native library). It starts the emulator, integrates and
// makes the bulk-create plan through the typed methods.
// usage: mono PackageTest.exe EMULATOR_BINARY WORK_FOLDER; prints what it did, exits 0 when right.
using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using O365Essentials;

internal static class Program
{
    private static int Main(string[] args)
    {
        if (args.Length != 2) { Console.Error.WriteLine("usage: PackageTest EMULATOR WORK"); return 2; }
        var emu = Process.Start(new ProcessStartInfo(args[0], "--listen 127.0.0.1:0")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
        });
        try
        {
            JsonValue info = JsonValue.Parse(emu.StandardOutput.ReadLine());
            JsonValue tenant = JsonValue.NewObject();
            foreach (string k in new[] { "tenant_id", "client_id", "login_url", "graph_url", "exchange_url", "sharepoint_url" })
                tenant.Add(k, info[k]);
            JsonValue credential = JsonValue.NewObject();
            credential.Add("kind", JsonValue.From("secret"));
            credential.Add("secret", info["client_secret"]);
            tenant.Add("credential", credential);
            JsonValue config = JsonValue.NewObject();
            config.Add("directory", JsonValue.From("demo"));
            config.Add("tenant", tenant);
            config.Add("store", JsonValue.From(Path.Combine(args[1], "state.db")));
            config.Add("results_folder", JsonValue.From(args[1]));
            using (var integration = new Integration(config.ToJson()))
            {
                IntegrationStatus status = integration.Integrate();
                Plan plan = integration.PlanBulkCreate(new BulkCreateRequest());
                int creates = plan.Items.Count(i => i is PlanItemCreateAccount);
                Console.WriteLine("O365Essentials " + Integration.Version + ": integrated with " + status.Organization
                    + ", " + creates + " accounts to create");
                return status.Enabled && creates > 0 ? 0 : 1;
            }
        }
        finally
        {
            emu.Kill();
            emu.WaitForExit();
        }
    }
}
