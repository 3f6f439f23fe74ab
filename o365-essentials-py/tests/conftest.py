"""Shared fixtures: the emulator binary, started per test, and a configuration for it."""

import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture()
def emulator(tmp_path):
    binary = os.environ.get("O365_EMULATOR_BIN", str(ROOT / "target/debug/o365-essentials-emulator"))
    if not os.path.exists(binary):
        pytest.fail(f"the emulator binary {binary} is missing: build it with cargo build -p o365-essentials-emulator")
    cfg = tmp_path / "emulator.json"
    cfg.write_text(json.dumps({"latency": {"write": {"fixed_ms": 30, "jitter_ms": 20}}}))
    proc = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--config", str(cfg)], stdout=subprocess.PIPE, text=True)
    info = json.loads(proc.stdout.readline())
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


