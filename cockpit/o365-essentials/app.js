// The o365-essentials page: one more front door of the engine. Every button runs one
// operation of the engine's table through the command line, `o365-essentials --json`,
// spawned by Cockpit with administrative access; long work adds `-v` (its events as JSON
// lines: progress, sign-in code) and `--stop-on-input` (Cancel writes a line: the engine
// stops at the next item boundary and still answers with what was done). The page
// decides nothing the engine does not: it shows the engine's results, and its errors
// with the engine's message and action, as they are. See docs/DASHBOARD.md.
/* global cockpit */
import { PAGES } from "./operations.js";

const PROGRAM = "o365-essentials";
// Parameters that are secrets go to the program on standard input, never on its command
// line (which other users of the machine can read).
const SECRETS = new Set(["password", "credential", "secret", "client_secret", "passphrase"]);
let FIELDS = {}; // operation -> its parameter names, from `operations --json`
let SUMMARY = {};

const $ = (tag, attrs = {}, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
        if (k === "class") e.className = v;
        else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
        else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat(Infinity)) {
        if (c === null || c === undefined) continue;
        e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
};
const cli = op => op.replace(/_/g, "-");
const label = name => name.replace(/_/g, " ").replace(/^./, c => c.toUpperCase());

/// A secret as typed: a JSON object (a credential: `{"kind": "secret", ...}`) goes as
/// that object, anything else as the text typed. The engine checks either.
function secretValue(v) {
    if (typeof v === "string" && v.trim().startsWith("{")) {
        try { return JSON.parse(v) } catch (_) { return v }
    }
    return v;
}

/// Runs one operation. `params` maps parameter names to text as typed (passed as the
/// program's options, which parse and check it) or to JSON values and secrets (passed on
/// standard input). Resolves to {value} or {error} (the engine's error object).
export function run(op, params = {}, { onEvent, onStart } = {}) {
    const argv = [PROGRAM, "--json"];
    if (onEvent) argv.push("--verbose");
    if (onStart) argv.push("--stop-on-input");
    argv.push(cli(op));
    const input = {};
    for (const [k, v] of Object.entries(params)) {
        if (v === undefined || v === null || v === "") continue;
        if (typeof v === "string" && !SECRETS.has(k)) argv.push("--" + cli(k), v);
        else input[k] = secretValue(v);
    }
    const viaStdin = Object.keys(input).length > 0;
    if (viaStdin) argv.push("--params", "-");
    return new Promise(resolve => {
        let buffer = "";
        let last = null;
        const notes = [];
        const line = text => {
            if (!text.trim()) return;
            let v;
            try { v = JSON.parse(text); } catch (_) { notes.push(text); return }
            if (v && typeof v === "object" && !Array.isArray(v) && typeof v.event === "string") {
                if (onEvent) onEvent(v);
                else if (v.event === "sign_in") notes.push(v.message);
            } else {
                last = v;
            }
        };
        const proc = cockpit.spawn(argv, { superuser: "require", err: "out" });
        proc.stream(data => {
            buffer += data;
            let i;
            while ((i = buffer.indexOf("\n")) >= 0) {
                line(buffer.slice(0, i));
                buffer = buffer.slice(i + 1);
            }
        });
        const done = problem => {
            line(buffer);
            buffer = "";
            if (last && typeof last === "object" && last.error && !Array.isArray(last)) {
                resolve({ error: last.error, notes });
            } else if (problem && last === null) {
                // Cockpit's own refusal (no administrative access) or no program at all.
                const denied = ["access-denied", "not-authorized", "authentication-failed"].includes(problem.problem);
                resolve({
                    error: {
                        message: notes.join("\n") || problem.message || (denied
                            ? "Cockpit did not run o365-essentials as root: this session has no administrative access."
                            : `o365-essentials could not be run (${problem.problem || problem}).`),
                        action: denied
                            ? "Turn on administrative access (Cockpit's top bar): the page runs o365-essentials as root, as an administrator would."
                            : "Check that the o365-essentials package is installed (the program o365-essentials on the PATH).",
                        code_name: problem.problem || "spawn_failed",
                    },
                    notes: [],
                });
            } else {
                resolve({ value: last, notes });
            }
        };
        if (viaStdin) proc.input(JSON.stringify(input) + "\n", !!onStart);
        if (onStart) onStart({ stop: () => proc.input("stop\n", true) });
        proc.then(() => done(null)).catch(ex => done(ex));
    });
}

// ---- rendering the engine's answers, as they are ----

function isObject(v) { return v !== null && typeof v === "object" && !Array.isArray(v) }

export function render(v) {
    if (v === null || v === undefined) return $("span", {}, "—");
    if (typeof v === "boolean") return $("span", {}, v ? "yes" : "no");
    if (typeof v !== "object") return $("span", {}, String(v));
    if (Array.isArray(v)) {
        if (v.length === 0) return $("span", { class: "o365-none" }, "none");
        if (v.every(isObject)) {
            const keys = [];
            for (const row of v) for (const k of Object.keys(row)) if (!keys.includes(k)) keys.push(k);
            return $("table", { class: "o365-table pf-c-table pf-m-compact pf-m-grid-md", role: "grid" },
                $("thead", {}, $("tr", {}, keys.map(k => $("th", { scope: "col" }, label(k))))),
                $("tbody", {}, v.map(row => $("tr", {}, keys.map(k => $("td", { "data-label": label(k) }, render(row[k])))))));
        }
        return $("span", {}, v.map(x => (typeof x === "object" ? JSON.stringify(x) : String(x))).join(", "));
    }
    return $("dl", { class: "o365-dl" },
        Object.entries(v).map(([k, x]) => [$("dt", {}, label(k)), $("dd", {}, render(x))]));
}

function errorBox(error) {
    const level = error.code_name === "cancelled" ? "warning" : "danger";
    return $("div", { class: `pf-c-alert pf-m-${level} pf-m-inline o365-error`, role: "alert" },
        $("p", { class: "pf-c-alert__title" }, error.message || "failed"),
        $("div", { class: "pf-c-alert__description" },
            error.action ? $("p", { class: "o365-action" }, "What to do: " + error.action) : null,
            error.code_name ? $("p", {}, $("small", {}, "Code: " + error.code_name)) : null));
}

function show(target, result, { ok } = {}) {
    target.replaceChildren();
    for (const n of result.notes || []) target.append($("p", { class: "o365-note" }, n));
    if (result.error) target.append(errorBox(result.error));
    else if (ok && (result.value === null || result.value === undefined)) target.append($("p", { class: "o365-done" }, ok));
    else target.append(render(result.value));
}

function card(title, ...body) {
    return $("article", { class: "pf-c-card o365-card" },
        $("div", { class: "pf-c-card__title" }, $("h2", { class: "pf-c-title pf-m-lg" }, title)),
        $("div", { class: "pf-c-card__body" }, body));
}

function button(text, onclick, kind = "secondary", attrs = {}) {
    return $("button", { class: `pf-c-button pf-m-${kind}`, type: "button", onclick, ...attrs }, text);
}

let uid = 0;
function field(name, { type = "text", value = "", help } = {}) {
    const id = `f${++uid}-${name}`;
    const input = $("input", { class: "pf-c-form-control", id, name, type, value, autocomplete: type === "password" ? "new-password" : "off" });
    return [$("div", { class: "pf-c-form__group" },
        $("label", { class: "pf-c-form__label", for: id }, $("span", { class: "pf-c-form__label-text" }, label(name))),
        input, help ? $("p", { class: "pf-c-form__helper-text" }, help) : null), input];
}

/// A view: one operation without input, shown on the tab with a Refresh button.
function view(op, title, params = {}) {
    const out = $("div", { class: "o365-result", "data-op": op });
    const refresh = async () => { out.replaceChildren($("p", {}, "Loading…")); show(out, await run(op, params)) };
    refresh();
    return [card(title, out, $("div", { class: "o365-actions" }, button("Refresh", refresh, "link", { "aria-label": `Refresh ${title}` }))), refresh];
}

/// A form for one operation: one input per parameter of the engine's table (or the ones
/// named), a button, and the engine's answer under it.
function form(op, { title, fields, values = {}, kind = "primary", ok = "Done.", after, confirmText } = {}) {
    const names = fields || FIELDS[op] || [];
    const inputs = {};
    const groups = names.map(n => {
        const [g, i] = field(n, { type: SECRETS.has(n) ? "password" : "text", value: values[n] || "" });
        inputs[n] = i;
        return g;
    });
    const out = $("div", { class: "o365-result", "data-result": op });
    const go = async () => {
        if (confirmText && !window.confirm(confirmText)) return;
        const params = {};
        for (const [n, i] of Object.entries(inputs)) params[n] = i.value.trim();
        // Shown while it runs: the sign-in code (setup, teardown) and how far it has come.
        const live = $("p", { class: "o365-live", "aria-live": "polite" }, "Working…");
        out.replaceChildren(live);
        const r = await run(op, params, {
            onEvent: e => {
                if (e.event === "sign_in") live.textContent = e.message;
                else if (e.event === "progress" && e.total) live.textContent = `Working… ${e.done} of ${e.total}`;
            },
        });
        show(out, r, { ok });
        if (after && !r.error) after(r.value);
    };
    return $("details", { class: "o365-form-card", "data-form": op },
        $("summary", {}, title || SUMMARY[op] || label(op)),
        $("p", {}, SUMMARY[op] || ""),
        $("form", { class: "o365-form", onsubmit: e => { e.preventDefault(); go() } }, groups),
        $("div", { class: "o365-actions" }, button(title ? title.replace(/\s*\(.*$/, "") : label(op), go, kind, { "data-run": op })),
        out);
}

function download(name, text, type = "application/json") {
    const a = $("a", { href: `data:${type};charset=utf-8,` + encodeURIComponent(text), download: name, class: "pf-c-button pf-m-link" }, `Download ${name}`);
    return a;
}

function copyButton(text, what) {
    return button("Copy", () => navigator.clipboard && navigator.clipboard.writeText(text), "link", { "aria-label": `Copy ${what}`, "data-copy": text });
}

// ---- the tabs ----

function m365() {
    const [status, refreshStatus] = view("status", "Status and tenant");
    const [subs] = view("licences", "Subscriptions (used and free seats)");
    // The integration wizard: the engine's steps in order.
    const wizard = card("Integrate with Microsoft 365",
        $("ol", { class: "o365-wizard" },
            $("li", {}, $("span", { class: "o365-step" }, "1. Requirements: each check and what to do"),
                form("requirements", { title: "Check the requirements", fields: ["custom_domain"] })),
            $("li", {}, $("span", { class: "o365-step" }, "2. Set up the app registration (sign in with a code), or give existing credentials"),
                form("setup", { title: "Set up (sign in)", fields: ["server_name", "public_client_id", "dry_run"] }),
                form("change_credentials", { title: "Use existing credentials" })),
            $("li", {}, $("span", { class: "o365-step" }, "3. Integrate"),
                form("integrate", { title: "Integrate", after: refreshStatus })),
            $("li", {}, $("span", { class: "o365-step" }, "4. Optional: link your domain"),
                form("link_domain", { title: "Link the domain", fields: ["domain", "services", "take_over_mail"] }))));
    const manage = card("Manage the integration",
        form("change_credentials", { title: "Change the credential" }),
        form("roll_credential", { title: "Roll the certificate" }),
        form("disable", { title: "Disable", kind: "warning", ok: "Propagation stopped.", after: refreshStatus }),
        form("enable", { title: "Enable", after: refreshStatus }),
        form("teardown", { title: "Remove the app registration", kind: "danger", fields: ["server_name", "public_client_id", "dry_run"],
            confirmText: "Remove the app registration from the tenant?" }));
    return [status, subs, wizard, manage];
}

function accounts() {
    const [links, refreshLinks] = view("list_links", "Local users and their online accounts");
    const [preview] = view("match_preview", "Match preview (nothing written)");
    // Bulk create, as the WSE wizard did: choose, preview, apply with progress, results.
    const [gUsers, users] = field("users", { help: "the local users' object GUIDs, comma-separated; empty: every local user without an online account" });
    const [gDomain, domain] = field("domain");
    // The licences to give: the tenant's subscriptions, each with its free seats.
    const gLic = $("fieldset", { class: "pf-c-form__group o365-licences" }, $("legend", { class: "pf-c-form__label" }, "Licences"), $("span", {}, "Loading…"));
    run("licences").then(r => {
        gLic.lastChild.remove();
        if (r.error) return gLic.append(errorBox(r.error));
        for (const sku of r.value) {
            const id = `lic-${sku.sku_id}`;
            gLic.append($("div", { class: "pf-c-check" },
                $("input", { class: "pf-c-check__input", type: "checkbox", id, value: sku.sku_id, "data-licence": sku.sku_part_number }),
                $("label", { class: "pf-c-check__label", for: id }, `${sku.sku_part_number} (${sku.consumed_units} used of ${sku.enabled_units})`)));
        }
    });
    const chosenLicences = () => [...gLic.querySelectorAll("input:checked")].map(i => ({ sku_id: i.value }));
    // Each planned user: included or not, and the online ID to give (the engine's
    // suggestion first); "Preview with these choices" plans again with them.
    const choicesOut = $("div", { class: "o365-choices" });
    const choose = value => {
        const rows = (value.items || []).filter(i => i.action === "create_account");
        choicesOut.replaceChildren();
        if (!rows.length) return;
        choicesOut.append($("h3", { class: "pf-c-title pf-m-md" }, "Choose users and their online IDs"),
            $("table", { class: "o365-table pf-c-table pf-m-compact pf-m-grid-md", role: "grid" },
                $("thead", {}, $("tr", {}, $("th", { scope: "col" }, "Create"), $("th", { scope: "col" }, "Local user"), $("th", { scope: "col" }, "Online ID"))),
                $("tbody", {}, rows.map(i => {
                    const name = i.local.sam_account_name;
                    return $("tr", { "data-user": i.local.guid, "data-upn": i.user_principal_name },
                        $("td", { "data-label": "Create" }, $("input", { type: "checkbox", checked: true, "aria-label": `Create an account for ${name}`, "data-include": "" })),
                        $("td", { "data-label": "Local user" }, name),
                        $("td", { "data-label": "Online ID" }, $("input", { class: "pf-c-form-control", type: "text", value: i.user_principal_name, "aria-label": `Online ID of ${name}`, "data-online-id": "" })));
                }))),
            $("div", { class: "o365-actions" }, button("Preview with these choices", () => {
                const chosen = [...choicesOut.querySelectorAll("tbody tr")].filter(tr => tr.querySelector("[data-include]").checked);
                previewPlan("plan_bulk_create", {
                    ...request(),
                    users: chosen.map(tr => tr.dataset.user),
                    choices: chosen.filter(tr => tr.querySelector("[data-online-id]").value.trim() !== tr.dataset.upn)
                        .map(tr => ({ user: tr.dataset.user, user_principal_name: tr.querySelector("[data-online-id]").value.trim() })),
                }, false);
            }, "secondary", { "data-run": "preview_choices" })));
    };
    const request = () => {
        const lic = chosenLicences();
        return { users: users.value.trim(), domain: domain.value.trim(), licences: lic.length ? lic : undefined, usage_location: location.value.trim() };
    };
    const [gLoc, location] = field("usage_location");
    const planOut = $("div", { class: "o365-result", "data-result": "plan_bulk_create" });
    const progress = $("div", { class: "o365-progress", role: "progressbar", "aria-label": "Bulk create progress", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0" }, $("div"));
    const progressText = $("p", { class: "o365-progress-text", "aria-live": "polite" });
    const runOut = $("div", { class: "o365-result", "data-result": "apply_plan" });
    let plan = null;
    let stopper = null;
    const applyBtn = button("Apply", () => apply(), "primary", { disabled: true, "data-run": "apply_plan" });
    const cancelBtn = button("Cancel", () => { if (stopper) { stopper.stop(); cancelBtn.disabled = true; progressText.textContent += " — stopping at the next user" } }, "danger", { disabled: true, "data-run": "cancel" });
    const previewPlan = async (op = "plan_bulk_create", params, offerChoices = true) => {
        params = params || request();
        planOut.replaceChildren($("p", {}, "Planning…"));
        const r = await run(op, params);
        show(planOut, r);
        plan = r.error ? null : r.value;
        applyBtn.disabled = !plan;
        if (plan && offerChoices) choose(plan);
    };
    const apply = async () => {
        if (!plan) return;
        applyBtn.disabled = true;
        cancelBtn.disabled = false;
        runOut.replaceChildren();
        progressText.textContent = "Starting…";
        const r = await run("apply_plan", { plan }, {
            onStart: s => { stopper = s },
            onEvent: e => {
                if (e.event === "progress" && e.total) {
                    const pct = Math.floor((100 * e.done) / e.total);
                    progress.firstChild.style.width = pct + "%";
                    progress.setAttribute("aria-valuenow", String(pct));
                    progressText.textContent = `${e.done} of ${e.total}` + (e.current ? ` — ${e.current}` : "");
                } else if (e.event === "run_finished") {
                    progressText.textContent = "Finished: " + Object.entries(e.counts).map(([k, v]) => `${v} ${k}`).join(", ");
                }
            },
        });
        stopper = null;
        cancelBtn.disabled = true;
        plan = null;
        const results = r.error ? r.error.partial : r.value;
        show(runOut, r);
        if (results) {
            if (r.error) runOut.append($("h3", { class: "pf-c-title pf-m-md" }, "Done before it stopped"), render(results.items));
            const failed = (results.items || []).filter(i => i.outcome === "failed");
            runOut.append($("div", { class: "o365-actions" },
                download(`${results.kind || "bulk_create"}-${results.run_id}.json`, JSON.stringify(results, null, 2)),
                failed.length ? button(`Retry the ${failed.length} failed`, () => previewPlan("plan_bulk_create", {
                    ...request(), users: failed.map(i => i.local_guid),
                }), "secondary", { "data-run": "retry" }) : null,
                button("Plan the rest", () => previewPlan(), "secondary", { "data-run": "plan_rest" })));
        }
        refreshLinks();
    };
    const bulk = card("Create online accounts for local users",
        $("form", { class: "o365-form", onsubmit: e => { e.preventDefault(); previewPlan() } }, gUsers, gDomain, gLic, gLoc),
        $("div", { class: "o365-actions" }, button("Preview", () => previewPlan(), "secondary", { "data-run": "plan_bulk_create" }), applyBtn, cancelBtn),
        choicesOut, planOut, progress, progressText, runOut);
    const more = card("Other account tasks",
        form("assign", { title: "Assign an existing account", after: refreshLinks }),
        form("unassign", { title: "Unassign (release licences, block sign-in)", kind: "warning", after: refreshLinks }),
        form("import_users", { title: "Import online accounts as local users", after: refreshLinks }),
        form("create_user_with_account", { title: "Create a user with an account", after: refreshLinks }),
        form("plan_retry", { title: "Plan again the failed users of a results file", after: v => { plan = v; planOut.replaceChildren(render(v)); applyBtn.disabled = false } }),
        form("online_user_names", { title: "Online user names of local users" }));
    return [links, preview, bulk, more];
}

function groups() {
    const [list, refresh] = view("list_distribution_groups", "Distribution groups");
    return [list, card("Change groups",
        form("create_distribution_group", { title: "Create a group", after: refresh }),
        form("add_group_members", { title: "Add members", after: refresh }),
        form("remove_group_members", { title: "Remove members", after: refresh }),
        form("replace_group_members", { title: "Set the members", after: refresh }),
        form("update_distribution_group", { title: "Change a group", after: refresh }),
        form("delete_distribution_group", { title: "Delete a group", kind: "danger", after: refresh, confirmText: "Delete this distribution group?" }),
        form("online_user_names", { title: "Online user names of local users" }))];
}

function devices() {
    const [policy, refreshPolicy] = view("get_device_policy", "Mobile device policy");
    const [level, refreshLevel] = view("get_default_access_level", "Devices no rule names");
    const [rules, refreshRules] = view("list_access_rules", "Access rules");
    return [policy, level, rules, card("Devices",
        form("list_devices", { title: "A user's devices", kind: "secondary" }),
        form("set_device_access", { title: "Allow or block a device" }),
        // The engine wipes only when the device id is typed again (confirm).
        form("wipe_device", { title: "Wipe a device (type its id again to confirm)", kind: "danger", fields: ["device_id", "kind", "confirm"] }),
        form("wipe_status", { title: "Wipe status", kind: "secondary" }),
        form("cancel_wipe", { title: "Cancel a wipe", kind: "warning" })),
    card("Policy and rules",
        form("set_device_policy", { title: "Set the policy", after: refreshPolicy }),
        form("set_default_access_level", { title: "Set the default access", after: refreshLevel }),
        form("add_access_rule", { title: "Add a rule", after: refreshRules }),
        form("remove_access_rule", { title: "Remove a rule", kind: "danger", after: refreshRules }))];
}

function domainTab() {
    const [gDomain, domain] = field("domain", { help: "The custom domain, e.g. contoso.com" });
    const out = $("div", { class: "o365-result", "data-result": "domain" });
    const one = (op, text) => button(text, async () => {
        out.replaceChildren($("p", {}, "Working…"));
        const r = await run(op, { domain: domain.value.trim() });
        show(out, r);
        if (!r.error && op === "zone_fragment") {
            const text = r.value.text || r.value.fragment || Object.values(r.value).find(x => typeof x === "string" && x.includes("\n")) || "";
            out.replaceChildren($("h3", { class: "pf-c-title pf-m-md" }, "Records (zone-file lines)"),
                $("div", { class: "o365-records" }, text.split("\n").filter(l => l.trim()).map(l =>
                    $("div", { class: "o365-line" }, $("code", {}, l), copyButton(l, "record")))),
                $("div", { class: "o365-actions" }, download(`${domain.value.trim()}.zone`, text, "text/plain"), copyButton(text, "all records")));
        }
        if (!r.error && op === "write_records_file" && r.value.path) {
            const content = await cockpit.file(r.value.path, { superuser: "require" }).read();
            out.append($("div", { class: "o365-actions" }, download(r.value.path.split("/").pop(), content || "", "text/plain")));
        }
    }, "secondary", { "data-run": op });
    return [card("Your domain",
        $("form", { class: "o365-form", onsubmit: e => e.preventDefault() }, gDomain),
        $("div", { class: "o365-actions" },
            one("domain_stage", "Stages"), one("zone_fragment", "Records"), one("check_records", "Check records"),
            one("health_report", "Health score"), one("write_records_file", "Records file")),
        out),
    card("Link and publish",
        form("link_domain", { title: "Link the domain (resumable)" }),
        form("apply_records", { title: "Publish the missing records on our DNS server" }))];
}

function sharepoint() {
    const [libs, refreshLibs] = view("list_libraries", "Document libraries");
    const [groups, refreshGroups] = view("list_site_groups", "Owners, members and visitors");
    return [libs, groups, card("Change",
        form("create_library", { title: "Create a library", after: refreshLibs }),
        form("delete_library", { title: "Delete a library", kind: "danger", after: refreshLibs, confirmText: "Delete this library and its files?" }),
        form("grant_site_access", { title: "Grant access", after: refreshGroups }),
        form("revoke_site_access", { title: "Revoke access", kind: "warning", after: refreshGroups }))];
}

function launchpad() {
    const out = $("div", { class: "o365-result", "data-op": "launchpad" });
    run("launchpad").then(r => {
        if (r.error || !isObject(r.value)) return show(out, r);
        out.replaceChildren($("ul", { class: "pf-c-list" }, Object.entries(r.value).map(([k, url]) =>
            $("li", {}, typeof url === "string" && /^https:\/\//.test(url)
                ? $("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, label(k)) : [label(k), ": ", render(url)]))));
    });
    return [card("Launchpad", out)];
}

const UNITS = ["o365-essentials.service", "o365-essentials-syncpasswords.service"];

function service() {
    const [status] = view("status", "Last sync round and delivery");
    const units = $("div", { class: "o365-result", "data-result": "units" });
    cockpit.spawn(["systemctl", "show", "--property=Id,Description,LoadState,ActiveState,SubState,UnitFileState", ...UNITS], { err: "message" })
        .then(text => units.replaceChildren(render(text.trim().split("\n\n").map(block =>
            Object.fromEntries(block.split("\n").map(l => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]))))))
        .catch(ex => units.replaceChildren(errorBox({ message: ex.message, action: "systemd is not running here: the units' state cannot be read" })));
    const log = $("pre", { class: "o365-pre", "data-result": "journal", tabindex: "0" });
    cockpit.spawn(["journalctl", "--no-pager", "-n", "50", "-o", "short-iso", ...UNITS.flatMap(u => ["-u", u])], { superuser: "require", err: "message" })
        .then(text => { log.textContent = text || "(no entries)" })
        .catch(ex => { log.textContent = "The journal cannot be read: " + ex.message });
    const [problems] = view("password_problems", "Password problems");
    return [card("Units", units), status, problems, card("Run now",
        form("sync_once", { title: "Sync now" }),
        form("plan_sync", { title: "What a sync would do (nothing written)", kind: "secondary" }),
        form("apply_sync_plan", { title: "Apply a reviewed sync plan" }),
        form("deliver_passwords", { title: "Deliver queued passwords" })),
    card("The service's log (last 50 lines)", log)];
}

const BUILDERS = { m365, accounts, groups, devices, domain: domainTab, sharepoint, launchpad, service };

function go(tab) {
    if (!BUILDERS[tab]) tab = "m365";
    for (const li of document.querySelectorAll("#tabs li")) {
        const on = li.dataset.tab === tab;
        li.classList.toggle("pf-m-current", on);
        li.firstChild.setAttribute("aria-selected", on ? "true" : "false");
    }
    const page = document.getElementById("page");
    page.replaceChildren($("h2", { class: "pf-c-title pf-m-xl o365-tab-title" }, PAGES[tab].label), ...BUILDERS[tab]());
    page.dataset.tab = tab;
}

async function start() {
    const tabs = document.getElementById("tabs");
    for (const [key, p] of Object.entries(PAGES)) {
        tabs.append($("li", { class: "pf-c-tabs__item", "data-tab": key, role: "presentation" },
            $("button", { class: "pf-c-tabs__link", type: "button", role: "tab", id: `tab-${key}`, "aria-selected": "false",
                onclick: () => cockpit.location.go([key]) },
            $("span", { class: "pf-c-tabs__item-text" }, p.label))));
    }
    const ops = await run("operations");
    if (ops.error) {
        document.getElementById("page").replaceChildren(errorBox(ops.error));
        return;
    }
    for (const o of ops.value) { FIELDS[o.name] = o.fields; SUMMARY[o.name] = o.summary }
    const route = () => go(cockpit.location.path[0] || "m365");
    cockpit.addEventListener("locationchanged", route);
    route();
    document.body.dataset.ready = "true";
}

start();
