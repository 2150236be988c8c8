// The console's end-to-end browser test (issue 19), driven by
// cmd/hookgate/console_browser_test.go: Debian's chromium through
// playwright-core against a real `hookgate serve`. It is given a JSON file:
//
//   base        the gateway, http://127.0.0.1:PORT
//   token       the admin token
//   source      {id, ref, token}: the runtime source to create and its credential
//   control     the Go test's control server: POST /fault, /fix
//   shots       the directory for the screenshots
//   secrets     every secret value of the run, for the scan
//
// It prints progress, and one line "RESULT <json>" at the end; any failed
// check throws (exit 1).
"use strict";
const fs = require("fs");
const http = require("http");
const path = require("path");
const { chromium } = require("playwright-core");

const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const base = cfg.base;
const result = { checks: [], visited: [] };

function log(...a) { console.log(new Date().toISOString().slice(11, 23), ...a); }
function check(ok, what) {
  if (!ok) throw new Error("check failed: " + what);
  result.checks.push(what);
  log("ok:", what);
}
async function until(what, timeoutMs, fn) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error("timed out after " + timeoutMs + " ms waiting for " + what);
    await new Promise(r => setTimeout(r, 150));
  }
}

// a webhook to the runtime source (Citeck style: the token in the query),
// a Bitrix24-like form body naming a deal
async function postWebhook(deal) {
  const res = await fetch(`${base}/webhook/${cfg.source.id}?token=${encodeURIComponent(cfg.source.token)}`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: `event=deal.changed&data%5BFIELDS%5D%5BID%5D=${deal}&nonce=${Date.now()}`,
  });
  const body = await res.json();
  check(res.status === 200 && body.status === "accepted", `webhook for deal ${deal} accepted (${res.status} ${JSON.stringify(body)})`);
  return body.id;
}

async function control(what) {
  const res = await fetch(cfg.control + "/" + what, { method: "POST" });
  if (res.status !== 200) throw new Error("control " + what + ": " + res.status);
}

// escaped forms of a secret a page might hold it in
function forms(s) {
  const html = s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&#34;").replace(/'/g, "&#39;");
  return [...new Set([s, JSON.stringify(s).slice(1, -1), html, encodeURIComponent(s), encodeURIComponent(s).replace(/%20/g, "+")])];
}

(async () => {
  const browser = await chromium.launch({ executablePath: cfg.chromium || "/usr/bin/chromium", args: ["--no-sandbox"] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  page.on("dialog", d => d.accept());
  // every console answer the browser got (pages, fragments, POST results)
  const bodies = [];
  page.on("response", async r => {
    const u = r.url();
    if (!u.startsWith(base + "/console") || u.includes("/console/assets/")) return;
    if ((r.headers()["content-type"] || "").includes("event-stream")) { result.visited.push(u); return; }
    result.visited.push(u);
    try { bodies.push({ url: u, text: await r.text() }); } catch (e) { /* redirects have no body */ }
  });
  const shot = async name => {
    await page.screenshot({ path: path.join(cfg.shots, name + ".png"), fullPage: true });
    log("screenshot", name);
  };

  // --- login --------------------------------------------------------------
  await page.goto(base + "/console/");
  check(page.url().startsWith(base + "/console/login"), "without a session the console redirects to the login page");
  await shot("login");
  await page.fill("#token", "not-the-admin-token");
  const [wrong] = await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  const wrongText = await page.textContent("main");
  check(wrong && wrong.status() === 401 && wrongText.includes("Wrong token"), `a wrong token is refused (${wrong && wrong.status()}: ${wrongText.trim().slice(0, 80)})`);
  await page.fill("#token", cfg.token);
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  check(page.url() === base + "/console/", "the right token logs in to the overview");
  const cookie = (await context.cookies()).find(c => c.name === "hookgate_console");
  check(cookie && cookie.httpOnly && cookie.sameSite === "Strict" && cookie.expires > Date.now() / 1000, "the session cookie is HttpOnly, SameSite=Strict, with an expiry");

  // --- sources: create a runtime token source --------------------------------
  await page.click("a[href='/console/sources']");
  await page.click("a[href='/console/sources/new']");
  await page.fill("#id", cfg.source.id);
  await page.selectOption("#provider", "token");
  await page.fill("#secret", cfg.source.ref);
  await page.fill("#event", "deal.changed");
  await page.fill("#options", "colour=blue");
  const [bad] = await Promise.all([page.waitForNavigation(), page.click("#source-form button[type=submit]")]);
  const badText = await page.textContent("main .error");
  check(bad.status() === 400 && badText.includes("source.options.colour"), "the form shows the admin API's validation message: " + badText.trim());
  await page.fill("#options", "");
  await Promise.all([page.waitForNavigation(), page.click("#source-form button[type=submit]")]);
  check(page.url().startsWith(base + "/console/sources?saved="), "the source is saved");
  const row = page.locator(`tr[data-source="${cfg.source.id}"]`);
  const url = await row.locator("code.url").textContent();
  check(url === `${base}/webhook/${cfg.source.id}?token={token}`, "the page shows the URL and token parameter to paste: " + url);
  check((await row.textContent()).includes("readable"), "the new source's secret is readable");
  check((await page.locator(`tr[data-source="${cfg.broken}"]`).textContent()).includes("broken"), "a source whose secret is missing is shown as broken");
  await shot("sources");

  // --- live --------------------------------------------------------------
  await page.click("a[href='/console/live']");
  await page.fill("#f-source", cfg.source.id);
  await page.click("#live-filter button");
  await until("the live stream to connect", 10000, async () => (await page.textContent("#live-state")) === "connected");
  const posted = Date.now();
  const id1 = await postWebhook(3);
  await page.waitForSelector(`li[data-id="${id1}"]`, { timeout: 2000 });
  result.liveMS = Date.now() - posted;
  check(result.liveMS < 2000, `the event appears in Live within 2 s (${result.liveMS} ms)`);
  await page.click(`li[data-id="${id1}"] summary`);
  const liveJSON = await page.textContent(`li[data-id="${id1}"] pre`);
  check(liveJSON.includes(id1) && liveJSON.includes("[redacted]"), "the live event expands to its JSON, the token redacted");
  await shot("live");

  // --- history and trace ----------------------------------------------------
  await until("the event's trace (inbound, call, delivery) in history", 20000, async () => {
    await page.goto(`${base}/console/history/trace/${id1}`);
    return (await page.locator("#trace tbody tr").count()) >= 3;
  });
  const trace = await page.textContent("#trace");
  check(trace.includes("inbound deal.changed") && trace.includes("crm.deal.get") && trace.includes("deliver"), "the trace shows inbound, call and delivery on one timeline");
  await shot("trace");
  await page.goto(`${base}/console/history`);
  await page.fill("#h-event-id", id1);
  await page.selectOption("#h-direction", "inbound");
  await page.click("#history-form button[type=submit]"); // htmx: the results fragment only
  await until("the search results", 5000, async () => (await page.locator("#history-rows tbody tr").count()) === 1);
  check(page.url().includes("event_id=" + id1), "the search is in the address bar (htmx push)");
  await page.fill("#h-event-id", "");
  await page.selectOption("#h-direction", "");
  await page.click("#history-form button[type=submit]");
  await until("every row", 5000, async () => (await page.locator("#history-rows tbody tr").count()) > 1);
  await shot("history");
  await page.goto(`${base}/console/history?event_id=${id1}&direction=inbound`);
  await page.click("#history-rows tbody tr a");
  const headers = await page.textContent("#request-headers");
  check(headers.length > 10 && !headers.includes(cfg.source.token), "an exchange's detail shows its redacted headers");
  await shot("exchange");

  // --- dead letters: a permanent failure, fixed and replayed ------------------
  await control("fault"); // crm.deal.get answers ERROR_METHOD_NOT_FOUND
  const id2 = await postWebhook(4);
  const job = id2 + "/" + cfg.route;
  await until("the job in dead letters", 20000, async () => {
    await page.goto(base + "/console/dead");
    return (await page.locator(`tr[data-job="${job}"]`).count()) === 1;
  });
  await shot("dead");
  await page.click(`tr[data-job="${job}"] a`);
  check((await page.textContent("#last-error")).includes("ERROR_METHOD_NOT_FOUND"), "the dead job's detail shows its last error");
  await shot("dead-job");
  await control("fix");
  await page.goto(base + "/console/dead");
  await Promise.all([page.waitForNavigation(), page.click(`tr[data-job="${job}"] button[name=one]`)]);
  check((await page.textContent(".flash")).includes("Replayed 1"), "the job is replayed from the page");
  await until("the replayed delivery in history", 20000, async () => {
    await page.goto(`${base}/console/history?event_id=${id2}&event=deliver&outcome=ok`);
    return (await page.locator("#history-rows tbody tr").count()) >= 1;
  });
  check(true, "the replayed job's delivery is in History");

  // --- routes: a 410 disables the route, the button enables it ----------------
  await postWebhook(cfg.goneDeal); // the platform answers 410 Gone for this deal
  await until("the route disabled by the 410", 20000, async () => {
    await page.goto(base + "/console/routes");
    return (await page.locator(`tr[data-route="${cfg.route}"] button`).count()) === 1;
  });
  check((await page.textContent(`tr[data-route="${cfg.route}"]`)).includes("disabled by 410"), "the routes page shows the route disabled by a 410");
  await shot("routes");
  await Promise.all([page.waitForNavigation(), page.click(`tr[data-route="${cfg.route}"] button`)]);
  check((await page.textContent(`tr[data-route="${cfg.route}"]`)).includes("enabled"), "the enable button enables it again");

  // a refused webhook, for the overview's rejection reasons
  const refused = await fetch(`${base}/webhook/${cfg.source.id}?token=not-the-token`, { method: "POST", body: "x=1",
    headers: { "Content-Type": "application/x-www-form-urlencoded" } });
  check(refused.status === 401, "a webhook with a wrong token is refused (401)");
  await until("the overview's rejection reason", 20000, async () => {
    await page.goto(base + "/console/");
    return (await page.textContent("main")).includes("invalid_token");
  });
  await page.waitForFunction(() => document.querySelectorAll(".uplot").length === 2);
  check(true, "the overview shows the rejection reason and draws its two charts");
  await shot("overview");
  // its refresh (what hx-trigger="every 30s" sends), at once
  await page.evaluate(() => { window.__settled = false; document.addEventListener("htmx:afterSettle", () => { window.__settled = true; }, { once: true }); });
  await page.evaluate(() => htmx.ajax("GET", "/console/", { target: "#overview", select: "#overview", swap: "outerHTML" }));
  await page.waitForFunction(() => window.__settled && document.querySelectorAll("#overview .uplot").length === 2);
  check(true, "the overview refreshes in place (htmx) and draws its charts again");

  // --- cross-site requests change nothing ------------------------------------
  const csrf = await page.getAttribute("input[name=_csrf]", "value");
  const del = `${base}/console/sources/delete/${cfg.source.id}`;
  const attempts = [
    ["a valid token, another Origin", { Origin: "http://evil.example" }, { _csrf: csrf }],
    ["a valid token, Sec-Fetch-Site cross-site", { "Sec-Fetch-Site": "cross-site" }, { _csrf: csrf }],
    ["no CSRF token", {}, {}],
    ["a wrong CSRF token", {}, { _csrf: "x" + csrf.slice(1) }],
  ];
  for (const [what, headers, form] of attempts) {
    const r = await page.request.post(del, { headers, form, maxRedirects: 0 });
    check(r.status() === 403, `POST with the session cookie and ${what} is refused (${r.status()})`);
  }
  // a real cross-site form post from another origin: the browser holds the
  // SameSite=Strict cookie back, the console sees no session
  const evil = http.createServer((req, res) => {
    res.setHeader("Content-Type", "text/html");
    res.end(`<form id=f method=post action="${del}"><input name=_csrf value="${csrf}"></form><script>document.getElementById('f').submit()</script>`);
  });
  await new Promise(r => evil.listen(0, "127.0.0.1", r));
  const evilURL = `http://localhost:${evil.address().port}/`; // another site: localhost, not 127.0.0.1
  const crossP = page.waitForResponse(r => r.url() === del && r.request().method() === "POST", { timeout: 10000 });
  await page.goto(evilURL, { waitUntil: "commit" });
  const crossResp = await crossP;
  await page.waitForURL(del, { waitUntil: "load" });
  check(crossResp.status() === 401, `a form posted from another site gets 401 (${crossResp.status()})`);
  evil.close();
  await page.goto(base + "/console/sources");
  check(await page.locator(`tr[data-source="${cfg.source.id}"]`).count() === 1, "after the cross-site attempts the source still exists");

  // --- the secret scan: every page and fragment visited, fetched again --------
  const urls = [...new Set(result.visited)].filter(u => !u.includes("/logout") && !u.includes("/login"));
  for (const u of urls) {
    if (u.includes("/live/stream")) continue;
    const r = await page.request.get(u, { maxRedirects: 0 });
    bodies.push({ url: u, text: await r.text() });
  }
  // the event stream, read for a while with a new event on it
  const sse = new AbortController();
  const streamRes = await fetch(`${base}/console/live/stream`, { headers: { Cookie: `hookgate_console=${cookie.value}` }, signal: sse.signal });
  const reader = streamRes.body.getReader();
  let sseText = "";
  const reading = (async () => { try { for (;;) { const { value, done } = await reader.read(); if (done) break; sseText += Buffer.from(value).toString(); } } catch (e) { } })();
  const id3 = await postWebhook(5);
  await until("the event on the stream", 5000, async () => sseText.includes(id3));
  sse.abort();
  await reading;
  bodies.push({ url: base + "/console/live/stream", text: sseText });
  const leaks = [];
  for (const b of bodies) for (const s of cfg.secrets) for (const f of forms(s)) if (b.text.includes(f)) leaks.push(`${b.url} holds a secret (${f.length} chars)`);
  result.scanned = bodies.length;
  check(leaks.length === 0, `no secret in the ${bodies.length} pages, fragments and streams fetched (${urls.length} distinct URLs)` + (leaks.length ? ": " + leaks.join("; ") : ""));

  // --- logout -------------------------------------------------------------------
  await Promise.all([page.waitForNavigation(), page.click("header form button")]);
  check(page.url().startsWith(base + "/console/login"), "logout lands on the login page");
  for (const u of [base + "/console/", base + "/console/history", base + "/console/dead"]) {
    const r = await page.request.get(u, { maxRedirects: 0 });
    check(r.status() === 303 && (await r.text()) === "", `after logout ${u.slice(base.length)} answers ${r.status()} without content`);
  }
  const r = await page.request.get(base + "/console/live/stream", { maxRedirects: 0 });
  check(r.status() === 401, "after logout the live stream answers 401");
  const old = await fetch(base + "/console/sources", { headers: { Cookie: `hookgate_console=${cookie.value}` }, redirect: "manual" });
  check(old.status === 303, "the old session cookie no longer works");

  await browser.close();
  console.log("RESULT " + JSON.stringify({ checks: result.checks.length, liveMS: result.liveMS, scanned: result.scanned }));
})().catch(e => { console.error(e); process.exit(1); });
