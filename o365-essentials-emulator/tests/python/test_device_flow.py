"""The emulator's device authorization grant (RFC 8628) driven by Microsoft's own Python
identity libraries: msal's ``initiate_device_flow`` / ``acquire_token_by_device_flow``
and azure-identity's ``DeviceCodeCredential``, over HTTPS with the emulator's generated
CA. The administrator's side (entering the code and signing in) is the emulator's admin
endpoint ``POST /_emulator/devicecode/approve``.

The emulator binary is started here (path in O365_EMULATOR_BIN, default
target/debug/o365-essentials-emulator).
"""

import base64
import json
import os
import pathlib
import ssl
import subprocess
import threading
import urllib.request

import msal
import pytest
from azure.identity import DeviceCodeCredential

ROOT = pathlib.Path(__file__).resolve().parents[3]
CLI_CLIENT = "14d82eec-204b-4c2f-b7e8-296a70dab67e"
ADMIN = "admin@contoso.onmicrosoft.com"
GLOBAL_ADMIN = "62e90394-69f5-4237-9190-012177145e10"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    binary = os.environ.get("O365_EMULATOR_BIN", str(ROOT / "target/debug/o365-essentials-emulator"))
    if not os.path.exists(binary):
        pytest.fail(f"the emulator binary {binary} is missing: build it with cargo build -p o365-essentials-emulator")
    cfg = tmp_path_factory.mktemp("emu") / "config.json"
    ca = cfg.parent / "ca.pem"
    cfg.write_text(json.dumps({"tls": {"enabled": True, "ca_file": str(ca)}, "identity": {"device_code_interval_secs": 1}}))
    proc = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--config", str(cfg)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        pytest.fail("the emulator printed nothing and exited")
    info = json.loads(line)
    os.environ["REQUESTS_CA_BUNDLE"] = str(ca)
    os.environ["SSL_CERT_FILE"] = str(ca)
    info["ssl"] = ssl.create_default_context(cafile=str(ca))
    yield info
    proc.terminate()
    proc.wait(timeout=10)


def admin_post(info, path, body):
    req = urllib.request.Request(
        info["admin_url"] + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, context=info["ssl"]) as r:
        return r.status


def claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def graph_get(info, token, path):
    req = urllib.request.Request(info["graph_url"] + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, context=info["ssl"]) as r:
        return json.loads(r.read())


def msal_app(info):
    return msal.PublicClientApplication(
        CLI_CLIENT,
        authority=f"{info['login_url']}/{info['tenant_id']}",
        instance_discovery=False,
    )


def test_msal_device_flow_signs_in_and_the_token_carries_scopes_and_roles(emulator):
    app = msal_app(emulator)
    flow = app.initiate_device_flow(
        scopes=["https://graph.microsoft.com/User.Read", "https://graph.microsoft.com/Application.ReadWrite.All"]
    )
    assert "user_code" in flow, flow
    assert flow["user_code"] in flow["message"]
    assert flow["verification_uri"].endswith("/devicelogin")
    # The administrator signs in while MSAL polls.
    timer = threading.Timer(1.5, admin_post, (emulator, "/devicecode/approve", {"userCode": flow["user_code"], "user": ADMIN}))
    timer.start()
    result = app.acquire_token_by_device_flow(flow)
    timer.join()
    assert "access_token" in result, result
    c = claims(result["access_token"])
    assert c["idtyp"] == "user"
    assert set(c["scp"].split()) == {"User.Read", "Application.ReadWrite.All"}
    assert GLOBAL_ADMIN in c["wids"]
    assert result["id_token_claims"]["preferred_username"] == ADMIN
    me = graph_get(emulator, result["access_token"], "/me")
    assert me["userPrincipalName"] == ADMIN
    # MSAL knows the account afterwards.
    assert [a["username"] for a in app.get_accounts()] == [ADMIN]


def test_msal_device_flow_hears_a_declined_sign_in(emulator):
    app = msal_app(emulator)
    flow = app.initiate_device_flow(scopes=["https://graph.microsoft.com/.default"])
    assert admin_post(emulator, "/devicecode/approve", {"userCode": flow["user_code"], "user": ADMIN, "decline": True}) == 204
    result = app.acquire_token_by_device_flow(flow)
    assert result.get("error") == "authorization_declined", result


def test_azure_identity_device_code_credential_signs_in(emulator):
    shown = []

    def prompt(verification_uri, user_code, expires_on):
        shown.append((verification_uri, user_code))
        threading.Timer(0.5, admin_post, (emulator, "/devicecode/approve", {"userCode": user_code, "user": ADMIN})).start()

    credential = DeviceCodeCredential(
        client_id=CLI_CLIENT,
        tenant_id=emulator["tenant_id"],
        authority=emulator["login_url"],
        disable_instance_discovery=True,
        prompt_callback=prompt,
        timeout=60,
    )
    token = credential.get_token("https://graph.microsoft.com/.default")
    assert shown and shown[0][0].endswith("/devicelogin")
    c = claims(token.token)
    assert "Application.ReadWrite.All" in c["scp"].split()
    assert c["oid"] == graph_get(emulator, token.token, "/me")["id"]
    # The application listing answers a Global Administrator's delegated token.
    assert graph_get(emulator, token.token, "/applications")["value"] == []
