"""The example scripts in examples/python, run as an administrator would, against the
emulator: bulk create from a CSV, offboarding a leaver, the nightly report."""

import json
import subprocess
import sys

import o365_essentials as o365
from conftest import ROOT, config

EXAMPLES = ROOT / "examples" / "python"


def run(script, *args, stdin=""):
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        input=stdin, capture_output=True, text=True, timeout=120,
    )


def test_bulk_create_offboard_and_report(emulator, tmp_path):
    cfg = tmp_path / "integration.json"
    cfg.write_text(json.dumps(config(emulator, tmp_path, people=20)))
    csv = tmp_path / "new-starters.csv"
    csv.write_text("user\nava.adams\nben.brooks\nstaff0003\nnobody.here\n")

    # Asked first: "no" changes nothing.
    out = run("bulk_create_from_csv.py", "--config", str(cfg), "--csv", str(csv), stdin="n\n")
    assert out.returncode == 1, out.stderr
    assert "3 accounts to create" in out.stdout and "not planned: nobody.here" in out.stdout
    assert "nothing was changed" in out.stdout
    out = run("bulk_create_from_csv.py", "--config", str(cfg), "--csv", str(csv), "--yes")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 succeeded" in out.stdout
    assert len(list(tmp_path.glob("bulk_create-*.json"))) == 1, "the results file"

    integration = o365.Integration(cfg)
    integration.create_distribution_group(
        name="Sales", alias="sales", primary_smtp_address="sales@contoso.onmicrosoft.com",
        members=["ava.adams@contoso.onmicrosoft.com", "ben.brooks@contoso.onmicrosoft.com"],
    )
    del integration

    out = run("offboard_leaver.py", "--config", str(cfg), "--user", "ava.adams", "--confirm-devices")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "sign-in blocked" in out.stdout and "removed from sales@contoso.onmicrosoft.com" in out.stdout
    integration = o365.Integration(cfg)
    groups = integration.list_distribution_groups()
    assert groups[0].member_user_names == ["ben.brooks@contoso.onmicrosoft.com"]
    del integration

    out = run("nightly_report.py", "--config", str(cfg))
    assert "Licences" in out.stdout and "Password problems" in out.stdout, out.stderr
    assert "DNS health" in out.stdout and "not checked" in out.stdout
