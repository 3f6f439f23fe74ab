"""The emulator driven by Microsoft's own Python Graph SDK (msgraph-sdk) and identity
library (azure-identity / MSAL), through their own code paths, over HTTPS with the
emulator's generated CA.

The emulator binary is started here (path in O365_EMULATOR_BIN, default
target/debug/o365-essentials-emulator); the test fails loudly when it cannot start.
"""

import asyncio
import json
import os
import pathlib
import random
import ssl
import subprocess
import sys
import urllib.request

import httpx
import pytest
from azure.identity.aio import ClientSecretCredential
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.domains.item.verify.verify_request_builder import VerifyRequestBuilder  # noqa: F401
from msgraph.generated.models.domain import Domain
from msgraph.generated.models.list_ import List_
from msgraph.generated.models.list_info import ListInfo
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.password_profile import PasswordProfile
from msgraph.generated.models.user import User
from msgraph.generated.users.delta.delta_get_response import DeltaGetResponse
from msgraph.generated.users.delta.delta_request_builder import DeltaRequestBuilder
from msgraph.generated.users.users_request_builder import UsersRequestBuilder
from msgraph_core.requests.batch_request_content import BatchRequestContent
from msgraph_core.requests.batch_request_item import BatchRequestItem

ROOT = pathlib.Path(__file__).resolve().parents[3]
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    binary = os.environ.get("O365_EMULATOR_BIN", str(ROOT / "target/debug/o365-essentials-emulator"))
    if not os.path.exists(binary):
        pytest.fail(f"the emulator binary {binary} is missing: build it with cargo build -p o365-essentials-emulator")
    cfg = tmp_path_factory.mktemp("emu") / "config.json"
    ca = cfg.parent / "ca.pem"
    cfg.write_text(json.dumps({"tls": {"enabled": True, "ca_file": str(ca)}, "dns": {"verify_without_dns": True}}))
    proc = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--config", str(cfg)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        pytest.fail("the emulator printed nothing and exited")
    info = json.loads(line)
    # MSAL (requests) and kiota (httpx) trust the emulator's CA through these.
    os.environ["REQUESTS_CA_BUNDLE"] = str(ca)
    os.environ["SSL_CERT_FILE"] = str(ca)
    yield info
    proc.terminate()
    proc.wait(timeout=10)


def make_client(info):
    credential = ClientSecretCredential(
        info["tenant_id"],
        info["client_id"],
        info["client_secret"],
        authority=info["login_url"],
        disable_instance_discovery=True,
    )
    auth = AzureIdentityAuthenticationProvider(credential, scopes=[GRAPH_SCOPE], allowed_hosts=["127.0.0.1"])
    adapter = GraphRequestAdapter(auth)
    adapter.base_url = info["graph_url"]
    return GraphServiceClient(request_adapter=adapter), credential


def run(coro):
    return asyncio.run(coro)


def new_user(nick, password="Winter-2026!"):
    return User(
        account_enabled=True,
        display_name=f"SDK {nick}",
        mail_nickname=nick,
        user_principal_name=f"{nick}@contoso.onmicrosoft.com",
        password_profile=PasswordProfile(password=password, force_change_password_next_sign_in=False),
    )


def test_users_create_get_list_with_paging_update_delete(emulator):
    async def go():
        client, cred = make_client(emulator)
        try:
            created = [await client.users.post(new_user(f"sdk{i}")) for i in range(5)]
            assert all(u.id for u in created)
            got = await client.users.by_user_id(created[0].id).get()
            assert got.user_principal_name == "sdk0@contoso.onmicrosoft.com"

            config = RequestConfiguration(
                query_parameters=UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
                    top=2, select=["id", "userPrincipalName"]
                )
            )
            page = await client.users.get(request_configuration=config)
            seen = [u.user_principal_name for u in page.value]
            pages = 1
            while page.odata_next_link:
                page = await client.users.with_url(page.odata_next_link).get()
                seen += [u.user_principal_name for u in page.value]
                pages += 1
            assert len(seen) == 6 and len(set(seen)) == 6
            assert pages == 3

            await client.users.by_user_id(created[1].id).patch(User(display_name="Renamed", usage_location="GB"))
            again = await client.users.by_user_id(created[1].id).get()
            assert again.display_name == "Renamed"

            await client.users.by_user_id(created[2].id).delete()
            with pytest.raises(ODataError) as ei:
                await client.users.by_user_id(created[2].id).get()
            assert ei.value.response_status_code == 404
            assert ei.value.error.code == "Request_ResourceNotFound"
        finally:
            await cred.close()

    run(go())


def test_errors_come_back_as_odata_errors_with_graphs_codes(emulator):
    async def go():
        client, cred = make_client(emulator)
        try:
            await client.users.post(new_user("dup"))
            with pytest.raises(ODataError) as ei:
                await client.users.post(new_user("dup"))
            err = ei.value.error
            assert ei.value.response_status_code == 400
            assert err.code == "Request_BadRequest"
            assert "userPrincipalName already exists" in err.message
            assert err.details[0].code == "ObjectConflict"
            assert err.inner_error is not None
            with pytest.raises(ODataError) as ei:
                await client.users.post(new_user("weak", password="short"))
            assert "complexity" in ei.value.error.message
        finally:
            await cred.close()

    run(go())


def test_delta_with_next_and_delta_links(emulator):
    async def go():
        client, cred = make_client(emulator)
        try:
            config = RequestConfiguration(
                query_parameters=DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
                    select=["id", "userPrincipalName", "accountEnabled"]
                )
            )
            config.headers.add("Prefer", "odata.maxpagesize=2")
            resp = await client.users.delta.get(request_configuration=config)
            everyone = list(resp.value)
            while resp.odata_next_link:
                resp = await client.users.delta.with_url(resp.odata_next_link).get(request_configuration=config)
                everyone += resp.value
            assert resp.odata_delta_link
            assert any(u.user_principal_name == "admin@contoso.onmicrosoft.com" for u in everyone)

            u = await client.users.post(new_user("deltasdk"))
            await client.users.by_user_id(u.id).patch(User(account_enabled=False))
            changes = await client.users.delta.with_url(resp.odata_delta_link).get()
            assert isinstance(changes, DeltaGetResponse)
            mine = [c for c in changes.value if c.id == u.id]
            assert mine and mine[0].account_enabled is False

            await client.users.by_user_id(u.id).delete()
            removed = await client.users.delta.with_url(changes.odata_delta_link).get()
            gone = [c for c in removed.value if c.id == u.id]
            assert gone and gone[0].additional_data.get("@removed") == {"reason": "changed"}
        finally:
            await cred.close()

    run(go())


def test_domains_and_subscribed_skus(emulator):
    async def go():
        client, cred = make_client(emulator)
        try:
            d = await client.domains.post(Domain(id="sdk-example.com"))
            assert d.is_verified is False
            recs = await client.domains.by_domain_id("sdk-example.com").verification_dns_records.get()
            kinds = {r.record_type for r in recs.value}
            assert kinds == {"Txt", "Mx"}
            txt = next(r for r in recs.value if r.record_type == "Txt")
            assert txt.text.startswith("MS=ms")
            verified = await client.domains.by_domain_id("sdk-example.com").verify.post()
            assert verified.is_verified is True
            svc = await client.domains.by_domain_id("sdk-example.com").service_configuration_records.get()
            mx = [r for r in svc.value if r.record_type == "Mx"]
            assert mx and mx[0].mail_exchange.endswith(".mail.protection.outlook.com")
            skus = await client.subscribed_skus.get()
            assert {s.sku_part_number for s in skus.value} >= {"O365_BUSINESS_PREMIUM"}
            premium = next(s for s in skus.value if s.sku_part_number == "O365_BUSINESS_PREMIUM")
            assert premium.prepaid_units.enabled == 25
            org = await client.organization.get()
            assert org.value[0].id == emulator["tenant_id"]
        finally:
            await cred.close()

    run(go())


def test_team_site_libraries_and_their_drives(emulator):
    async def go():
        client, cred = make_client(emulator)
        try:
            site = await client.sites.by_site_id("root").get()
            assert site.web_url == "https://contoso.sharepoint.com"
            assert site.site_collection.hostname == "contoso.sharepoint.com"
            assert site.id.startswith("contoso.sharepoint.com,")
            lists = client.sites.by_site_id(site.id).lists
            created = await lists.post(
                List_(display_name="SDK library", description="from the SDK", list_=ListInfo(template="documentLibrary"))
            )
            assert created.list_.template == "documentLibrary"
            assert created.web_url == "https://contoso.sharepoint.com/SDK%20library"
            try:
                await lists.post(List_(display_name="sdk LIBRARY", list_=ListInfo(template="documentLibrary")))
                raise AssertionError("a duplicate library name was accepted")
            except ODataError as e:
                assert e.response_status_code == 409
                assert e.error.code == "nameAlreadyExists"
            drive = None
            for _ in range(50):
                try:
                    drive = await lists.by_list_id(created.id).drive.get()
                    break
                except ODataError as e:
                    assert e.response_status_code == 404
                    await asyncio.sleep(0.1)
            assert drive is not None and drive.drive_type == "documentLibrary"
            drives = await client.sites.by_site_id(site.id).drives.get()
            assert drive.id in {d.id for d in drives.value}
            every = await lists.get()
            assert {"Documents", "SDK library"} <= {x.display_name for x in every.value}
            await lists.by_list_id(created.id).delete()
            every = await lists.get()
            assert "SDK library" not in {x.display_name for x in every.value}
        finally:
            await cred.close()

    run(go())


def test_the_sdk_batch_helper_gets_graphs_answer_to_absolute_urls(emulator):
    """msgraph-sdk-python #1015: a batch item built from an absolute URL keeps it; Graph
    answers such an item with 400 "Resource not found for the segment ...", and so does
    the emulator. An item with a relative URL, built the same way, succeeds."""

    async def go():
        client, cred = make_client(emulator)
        try:
            absolute = urllib.request.Request(f"{emulator['graph_url']}/organization", method="GET")
            relative = client.organization.to_get_request_information()
            batch = BatchRequestContent()
            batch.add_request(None, BatchRequestItem.create_with_urllib_request(absolute, id="abs"))
            batch.add_request(None, BatchRequestItem(request_information=relative, id="rel"))
            assert batch.requests["abs"].url.startswith("https://")
            resp = await client.batch.post(batch_request_content=batch)
            # (msgraph-core reads item bodies only as base64 strings, so the JSON error body of
            # the item is checked in the wire-format test below.)
            assert resp.get_response_by_id("abs").status == 400
            assert resp.get_response_by_id("rel").status == 200
        finally:
            await cred.close()

    run(go())


def test_batches_in_the_real_wire_format(emulator):
    """Relative URLs and dependsOn, as Graph documents them; the SDK's snake-case
    depends_on (msgraph-sdk-python-core #996) is ignored, as Graph ignores it."""

    async def go():
        _, cred = make_client(emulator)
        try:
            token = (await cred.get_token(GRAPH_SCOPE)).token
        finally:
            await cred.close()
        ct = {"Content-Type": "application/json"}
        body = {
            "requests": [
                {"id": "1", "method": "POST", "url": "/users", "headers": ct,
                 "body": {"accountEnabled": True, "displayName": "B", "mailNickname": "wirebad",
                          "userPrincipalName": "wirebad@contoso.onmicrosoft.com",
                          "passwordProfile": {"password": "weak"}}},
                {"id": "2", "method": "GET", "url": "/users/wirebad@contoso.onmicrosoft.com", "dependsOn": ["1"]},
                {"id": "3", "method": "GET", "url": "/organization", "depends_on": ["1"]},
                {"id": "4", "method": "GET", "url": f"{emulator['graph_url']}/organization"},
            ]
        }
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])) as http:
            r = await http.post(f"{emulator['graph_url']}/$batch", json=body, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        by_id = {x["id"]: x for x in r.json()["responses"]}
        assert by_id["1"]["status"] == 400
        assert "complexity" in by_id["1"]["body"]["error"]["message"]
        assert by_id["2"]["status"] == 424
        assert by_id["3"]["status"] == 200
        assert by_id["4"]["status"] == 400
        assert by_id["4"]["body"]["error"]["message"] == "Resource not found for the segment 'https:'."

    run(go())


# Microsoft's own host names, resolved to the emulator as a test resolver would.
MICROSOFT_HOSTS = [
    "graph.microsoft.com",
    "login.microsoftonline.com",
    "contoso.sharepoint.com",
    "outlook.office365.com",
]


@pytest.fixture
def emulator_as_microsoft(tmp_path):
    """The emulator started with --tls --microsoft-hosts on port 443 of a loopback address
    of its own: clients keep the URL's port, so it must listen on 443 (root or
    CAP_NET_BIND_SERVICE, as the suite runs)."""
    binary = os.environ.get("O365_EMULATOR_BIN", str(ROOT / "target/debug/o365-essentials-emulator"))
    if not os.path.exists(binary):
        pytest.fail(f"the emulator binary {binary} is missing: build it with cargo build -p o365-essentials-emulator")
    ca = tmp_path / "ca.pem"
    address = f"127.65.{os.getpid() % 250 + 1}.{random.randrange(1, 250)}"
    proc = subprocess.Popen(
        [binary, "--listen", f"{address}:443", "--tls", "--microsoft-hosts", "--ca-file", str(ca)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if not line:
        err = proc.stderr.read()
        proc.kill()
        pytest.fail(f"the emulator could not start on {address}:443 (root or CAP_NET_BIND_SERVICE is needed): {err}")
    info = json.loads(line)
    yield info, address, ca
    proc.terminate()
    proc.wait(timeout=10)


# Run in a fresh interpreter: aiohttp reads the trusted CAs once, at import, and this
# client must see only its environment (SSL_CERT_FILE) and its resolver.
UNMODIFIED_CLIENT = """
import asyncio, json, socket, sys
from azure.identity.aio import ClientSecretCredential
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphServiceClient
from msgraph.generated.models.password_profile import PasswordProfile
from msgraph.generated.models.user import User
from msgraph.generated.users.users_request_builder import UsersRequestBuilder

info, address, hosts = json.loads(sys.argv[1]), sys.argv[2], set(json.loads(sys.argv[3]))
real_getaddrinfo = socket.getaddrinfo

def resolve(host, service, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    return real_getaddrinfo(address if name in hosts else host, service, *args, **kwargs)

# The test's resolver: requests, aiohttp and httpx all ask socket.getaddrinfo.
socket.getaddrinfo = resolve

async def go():
    credential = ClientSecretCredential(info["tenant_id"], info["client_id"], info["client_secret"])
    client = GraphServiceClient(credentials=credential, scopes=["https://graph.microsoft.com/.default"])
    try:
        for i in range(3):
            await client.users.post(User(
                account_enabled=True, display_name=f"Public {i}", mail_nickname=f"public{i}",
                user_principal_name=f"public{i}@contoso.onmicrosoft.com",
                password_profile=PasswordProfile(password="Winter-2026!", force_change_password_next_sign_in=False),
            ))
        config = RequestConfiguration(
            query_parameters=UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(top=2)
        )
        page = await client.users.get(request_configuration=config)
        links = [page.odata_next_link]
        seen = len(page.value)
        while page.odata_next_link:
            page = await client.users.with_url(page.odata_next_link).get()
            seen += len(page.value)
        print(json.dumps({"first_next_link": links[0], "seen": seen}))
    finally:
        await credential.close()

asyncio.run(go())
"""


def test_an_unmodified_sdk_reaches_it_as_graph_microsoft_com(emulator_as_microsoft, tmp_path):
    """msgraph-sdk and azure-identity with their defaults: no base URL, no authority, no
    allowed-hosts list, only the CA trusted and the names resolved. The SDK attaches its
    token only to hosts it knows as Graph's (kiota's allowed hosts), so a next link naming
    127.0.0.1 went out without one; with the public URLs every link names
    https://graph.microsoft.com (issue 31). The SDK's default base URL also makes it ask
    for /v1.0//users, which Graph serves."""
    info, address, ca = emulator_as_microsoft
    assert info["public"]["graph_url"] == "https://graph.microsoft.com"
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")}
    env["SSL_CERT_FILE"] = str(ca)
    env["REQUESTS_CA_BUNDLE"] = str(ca)
    out = subprocess.run(
        [sys.executable, "-c", UNMODIFIED_CLIENT, json.dumps(info), address, json.dumps(MICROSOFT_HOSTS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["first_next_link"].startswith("https://graph.microsoft.com/v1.0/users?")
    assert result["seen"] == 4
