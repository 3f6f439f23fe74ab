"""Shared fixtures: the emulator binary, started per test, and a configuration for it."""

import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


#: An online-only user with a phone, and the company's domain verified.
SEED = {
    "users": [{"user_principal_name": "alex@contoso.onmicrosoft.com", "display_name": "Alex Adams"}],
    "domains": [{"name": "contoso.com", "verified": True}],
    "devices": [
        {
            "user": "alex@contoso.onmicrosoft.com",
            "device_id": "APPLEA1",
            "model": "iPhone15,2",
            "device_type": "iPhone",
            "os": "iOS 17.1",
        }
    ],
}


def start_emulator(folder, **settings):
    binary = os.environ.get("O365_EMULATOR_BIN", str(ROOT / "target/debug/o365-essentials-emulator"))
    if not os.path.exists(binary):
        pytest.fail(f"the emulator binary {binary} is missing: build it with cargo build -p o365-essentials-emulator")
    cfg = folder / "emulator.json"
    cfg.write_text(json.dumps({"latency": {"write": {"fixed_ms": 30, "jitter_ms": 20}}, **settings}))
    proc = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--config", str(cfg)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        pytest.fail(f"the emulator {binary} did not start")
    return proc, json.loads(line)


@pytest.fixture()
def emulator(tmp_path):
    proc, info = start_emulator(tmp_path)
    yield info
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture()
def seeded_emulator(tmp_path):
    """The emulator with :data:`SEED` (a wipe is acknowledged only after a minute)."""
    proc, info = start_emulator(
        tmp_path, seed=SEED, exchange={"wipe_ack_delay_ms": 60000}, identity={"device_code_interval_secs": 1}
    )
    yield info
    proc.terminate()
    proc.wait(timeout=10)


def config(info, folder, people=100):
    return {
        "directory": {"demo_company": {"people": people}},
        "tenant": {
            "tenant_id": info["tenant_id"],
            "client_id": info["client_id"],
            "credential": {"kind": "secret", "secret": info["client_secret"]},
            "login_url": info["login_url"],
            "graph_url": info["graph_url"],
            "exchange_url": info["exchange_url"],
            "sharepoint_url": info["sharepoint_url"],
        },
        "store": str(folder / "state.db"),
        "results_folder": str(folder),
        "concurrency": 8,
    }


