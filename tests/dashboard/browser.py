#!/usr/bin/env python3
"""The Cockpit page in headless Chromium (Debian's chromium + chromium-driver, Selenium).

Run by tests/it/dashboard.rs, which starts Samba, the emulator and cockpit-ws and checks
afterwards what the engine recorded. Every wait is for something on the page (no sleeps).
Exit 0 and a last line "N passed, 0 failed" when every scenario passed.
"""
import argparse
import os
import subprocess
import sys
import time
import traceback
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

A = argparse.ArgumentParser()
A.add_argument("--url", required=True)
A.add_argument("--out", required=True)
A.add_argument("--axe", required=True)
A.add_argument("--admin-url", required=True)
A.add_argument("--users", type=int, default=30)
# The same page served to a user without administrative access.
A.add_argument("--unprivileged-url", required=True)
# The DC (the password in DASHBOARD_LDAP_PASSWORD): the test disables a user there.
A.add_argument("--ldap-uri", required=True)
A.add_argument("--ldap-ca", required=True)
A.add_argument("--ldap-bind", required=True)
A.add_argument("--disable-dn", required=True)
ARGS = A.parse_args()
OUT = Path(ARGS.out)
OUT.mkdir(parents=True, exist_ok=True)
AXE = Path(ARGS.axe).read_text()

opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
          "--window-size=1280,800", "--no-first-run", "--disable-extensions"):
    opts.add_argument(a)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
driver.set_window_size(1280, 800)


def wait(cond, timeout=60, what="condition"):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: cond())
    except Exception as e:
        shot("failed")
        raise AssertionError(f"timed out waiting for {what}") from e


def q(css):
    return driver.find_elements(By.CSS_SELECTOR, css)


def one(css):
    return wait(lambda: (q(css) or [None])[0], what=css)


def shot(name, css=None):
    if css and q(css):
        driver.execute_script("arguments[0].scrollIntoView({behavior: 'instant', block: 'start'})", q(css)[0])
    driver.save_screenshot(str(OUT / f"{name}.png"))


def click(el):
    """Clicks as a person would: the element scrolled into the middle of the view first."""
    driver.execute_script("arguments[0].scrollIntoView({behavior: 'instant', block: 'center', inline: 'center'})", el)
    el.click()


def settled():
    """The tab's views have the engine's answers (their Loading… is gone)."""
    wait(lambda: "Loading…" not in driver.find_element(By.ID, "page").text, what="the tab's views")


def tab(name):
    b = one(f'#tabs li[data-tab="{name}"] button')
    # The tab strip scrolls sideways at phone width, as PatternFly's tabs do.
    driver.execute_script("arguments[0].scrollIntoView({behavior: 'instant', block: 'nearest', inline: 'center'})", b)
    b.click()
    wait(lambda: driver.find_element(By.ID, "page").get_attribute("data-tab") == name, what=f"tab {name}")
    settled()


def result_of(container_css):
    """Waits until the container has the engine's answer (no Loading/Working text)."""
    def done():
        els = q(container_css)
        if not els:
            return None
        t = els[0].text
        return els[0] if t and not t.startswith("Loading") and not t.startswith("Working") and not t.startswith("Planning") else None
    return wait(done, what=f"answer in {container_css}")


def open_form(op, index=0):
    d = wait(lambda: q(f'details[data-form="{op}"]')[index] if len(q(f'details[data-form="{op}"]')) > index else None, what=op)
    if d.get_attribute("open") is None:
        click(d.find_element(By.TAG_NAME, "summary"))
    return d


def run_form(op, values, index=0):
    d = open_form(op, index)
    for name, value in values.items():
        el = d.find_element(By.CSS_SELECTOR, f'input[name="{name}"]')
        el.clear()
        el.send_keys(value)
    click(d.find_element(By.CSS_SELECTOR, f'button[data-run="{op}"]'))
    return result_of(f'details[data-form="{op}"] [data-result="{op}"]') if index == 0 else \
        wait(lambda: (lambda r: r if r.text and not r.text.startswith("Working") else None)(
            q(f'details[data-form="{op}"]')[index].find_element(By.CSS_SELECTOR, f'[data-result="{op}"]')), what=op)


def axe(name):
    driver.execute_script(AXE)
    violations = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations"
        ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
        ".map(v => v.id + ' (' + v.impact + '): ' + v.nodes.map(n => n.target.join(' ')).slice(0, 3).join(', '))))"
        ".catch(e => done(['axe failed: ' + e]));")
    assert not violations, f"axe on {name}: {violations}"


PASSED, FAILED = [], []


def scenario(fn):
    name = fn.__name__
    t = time.monotonic()
    try:
        fn()
        PASSED.append(name)
        print(f"ok   {name} ({time.monotonic() - t:.1f}s)", flush=True)
    except Exception:
        FAILED.append(name)
        shot(f"failed-{name}")
        print(f"FAIL {name}\n{traceback.format_exc()}", flush=True)
    return fn


def load():
    driver.get(ARGS.url)
    wait(lambda: driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true", what="the page")


try:
    load()

    @scenario
    def the_wizard_checks_the_requirements_and_integrates():
        tab("m365")
        r = run_form("requirements", {})
        # The engine's checks, each with its state and what to do.
        assert r.find_elements(By.CSS_SELECTOR, "table"), r.text
        shot("m365-requirements")
        r = run_form("integrate", {})
        assert not r.find_elements(By.CSS_SELECTOR, ".o365-error"), r.text
        status = result_of('[data-op="status"]')
        assert status.text, "status shown"
        wait(lambda: q('[data-op="licences"]') and q('[data-op="licences"]')[0].text not in ("", "Loading…"), what="subscriptions")
        shot("m365")

    @scenario
    def bad_input_shows_the_engines_message_and_action():
        tab("accounts")
        r = run_form("assign", {"local_guid": "not-a-guid", "online_id": "x"})
        err = r.find_element(By.CSS_SELECTOR, ".o365-error")
        assert "What to do:" in err.text, err.text
        shot("bad-input", 'details[data-form="assign"]')

    @scenario
    def bulk_create_with_progress_cancel_and_a_rerun_of_the_rest():
        tab("accounts")
        # The subscriptions to choose from, with their seats.
        wait(lambda: q("input[data-licence]"), what="the licences to choose")
        assert "used of" in one(".o365-licences").text
        click(one('button[data-run="plan_bulk_create"]'))
        plan = result_of('[data-result="plan_bulk_create"]')
        assert plan.find_elements(By.CSS_SELECTOR, "table tbody tr"), plan.text[:500]
        # Choose: every user, the first with an online ID of the administrator's choosing.
        rows = wait(lambda: q(".o365-choices tbody tr"), what="the users to choose")
        assert len(rows) == ARGS.users, len(rows)
        mine = rows[0].find_element(By.CSS_SELECTOR, "input[data-online-id]")
        chosen = "first." + mine.get_attribute("value")
        mine.clear()
        mine.send_keys(chosen)
        click(one('button[data-run="preview_choices"]'))
        plan = result_of('[data-result="plan_bulk_create"]')
        wait(lambda: chosen in q('[data-result="plan_bulk_create"]')[0].text, what="the chosen online ID in the plan")
        shot("bulk-create-choose", ".o365-licences")
        click(one('button[data-run="apply_plan"]'))
        # The bar moves: at least one user done, then Cancel.
        wait(lambda: int(one(".o365-progress").get_attribute("aria-valuenow")) > 0, what="progress")
        shot("bulk-create-progress", 'button[data-run="plan_bulk_create"]')
        click(one('button[data-run="cancel"]'))
        res = result_of('[data-result="apply_plan"]')
        wait(lambda: "Done before it stopped" in res.text, what="the partial results")
        assert res.find_element(By.CSS_SELECTOR, "a[download]").get_attribute("href").startswith("data:application/json")
        shot("bulk-create-cancelled", ".o365-progress")
        # The rerun plans exactly the rest and creates it.
        click(one('button[data-run="plan_rest"]'))
        result_of('[data-result="plan_bulk_create"]')
        click(one('button[data-run="apply_plan"]'))
        wait(lambda: q('[data-result="apply_plan"]')[0].text.strip() != "" and q('.o365-progress-text')[0].text.startswith("Finished"),
             timeout=120, what="the rerun to finish")
        assert "failed" not in q('.o365-progress-text')[0].text.replace("0 failed", ""), q('.o365-progress-text')[0].text
        shot("bulk-create-done", ".o365-progress")
        links = result_of('[data-op="list_links"]')
        wait(lambda: len(links.find_elements(By.CSS_SELECTOR, "table.o365-table > tbody > tr")) >= ARGS.users,
             what=f"{ARGS.users} linked users")

    @scenario
    def a_disabled_user_is_shown_blocked_after_a_sync():
        # The service's first round reads the directory whole (its starting point).
        tab("service")
        r = run_form("sync_once", {})
        assert not r.find_elements(By.CSS_SELECTOR, ".o365-error"), r.text
        ldif = f"dn: {ARGS.disable_dn}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 546\n"
        subprocess.run(["ldapmodify", "-H", ARGS.ldap_uri, "-x", "-D", ARGS.ldap_bind,
                        "-w", os.environ["DASHBOARD_LDAP_PASSWORD"]],
                       input=ldif.encode(), check=True, env={**os.environ, "LDAPTLS_CACERT": ARGS.ldap_ca},
                       stdout=subprocess.DEVNULL)
        user = ARGS.disable_dn.split(",")[0].split("=")[1].replace(" ", "").lower()
        click(one('details[data-form="sync_once"] button[data-run="sync_once"]'))
        r = result_of('details[data-form="sync_once"] [data-result="sync_once"]')
        rows = [tr.text for tr in r.find_elements(By.CSS_SELECTOR, "tbody tr") if user in tr.text]
        assert any("disable" in row and "succeeded" in row for row in rows), f"{user}: {rows}\n{r.text[:800]}"
        shot("sync-blocked", 'details[data-form="sync_once"]')

    @scenario
    def a_distribution_group():
        tab("groups")
        r = run_form("create_distribution_group", {"name": "Sales", "alias": "sales", "display_name": "Sales team",
                                                       "primary_smtp_address": "sales@contoso.com"})
        assert not r.find_elements(By.CSS_SELECTOR, ".o365-error"), r.text
        wait(lambda: "Sales" in q('[data-op="list_distribution_groups"]')[0].text, what="the group listed")
        shot("groups")

    @scenario
    def a_wipe_is_refused_until_the_device_id_is_typed_again():
        tab("devices")
        r = run_form("list_devices", {"user_principal_name": "alex@contoso.onmicrosoft.com"})
        assert "Alex's iPhone" in r.text, r.text
        device = r.find_element(By.CSS_SELECTOR, "tbody tr td").text  # the engine's device id
        r = run_form("wipe_device", {"device_id": device, "kind": "full", "confirm": device[:-1]})
        err = r.find_element(By.CSS_SELECTOR, ".o365-error")
        assert "What to do:" in err.text, err.text
        shot("wipe-refused", 'details[data-form="wipe_device"]')
        r = run_form("wipe_device", {"device_id": device, "kind": "full", "confirm": device})
        assert not r.find_elements(By.CSS_SELECTOR, ".o365-error"), r.text
        shot("devices")

    @scenario
    def the_domain_records_with_copy_buttons():
        tab("domain")
        el = one('#page input[name="domain"]')
        el.send_keys("contoso.com")
        click(one('button[data-run="zone_fragment"]'))
        out = result_of('[data-result="domain"]')
        wait(lambda: out.find_elements(By.CSS_SELECTOR, "button[data-copy]") or out.find_elements(By.CSS_SELECTOR, ".o365-error"), what="records")
        assert not out.find_elements(By.CSS_SELECTOR, ".o365-error"), out.text
        assert "MX" in out.text, out.text
        shot("domain")

    @scenario
    def every_tab_passes_axe_and_fits_a_phone():
        for name in ("m365", "accounts", "groups", "devices", "domain", "sharepoint", "launchpad", "service"):
            tab(name)
            wait(lambda: "Loading…" not in driver.find_element(By.ID, "page").text, what=f"{name} loaded")
            axe(name)
            if name in ("sharepoint", "launchpad", "service"):
                shot(name)
        driver.set_window_size(390, 844)
        tab("accounts")
        wait(lambda: "Loading…" not in driver.find_element(By.ID, "page").text, what="phone")
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390 + 1, f"the page scrolls sideways at phone width: {width}px"
        axe("phone")
        shot("phone")
        driver.set_window_size(1280, 800)
    @scenario
    def without_administrative_access_the_page_says_what_to_do():
        driver.get(ARGS.unprivileged_url)
        err = one(".o365-error")
        assert "administrative access" in err.text, err.text
        shot("no-admin-access")
finally:
    driver.quit()

print(f"{len(PASSED)} passed, {len(FAILED)} failed")
sys.exit(1 if FAILED else 0)
