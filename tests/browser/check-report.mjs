#!/usr/bin/env node
// Opens an AgentTrail evidence report (report.html) in Debian's Chromium, as a person would,
// and checks what it shows:
//   - every expected step label is visible in the timeline (#timeline);
//   - every expected literal text is visible on the page (e.g. a hostile prompt shown as text);
//   - nothing from the data ran: no <script> element, none of the globals the payload tries to
//     set, no page error, no console error (a CSP refusal would be one);
//   - the page loads nothing but itself (no CDN, no font, no image from anywhere);
// and writes a full-page screenshot.
//
// Usage: node check-report.mjs REPORT.html SCREENSHOT.png EXPECTED.json
// EXPECTED.json: {"steps": ["invoke_agent customer-agent", ...], "texts": ["<script>…"],
//                 "absentGlobals": ["__pwned"]}
// Exit codes: 0 all checks pass, 1 a check failed (one line per failure on stderr), 2 usage.
//
// It never downloads a browser: it launches /usr/bin/chromium (apt-get install chromium), or
// the executable named by AGENTTRAIL_CHROMIUM, with a fresh profile that is removed afterwards.

import { chromium } from 'playwright-core';
import { mkdtempSync, readFileSync, rmSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const CHROMIUM = process.env.AGENTTRAIL_CHROMIUM || '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const TIMEOUT_MS = 60_000;

function usage(msg) {
  console.error(`check-report: ${msg}`);
  console.error('usage: node check-report.mjs REPORT.html SCREENSHOT.png EXPECTED.json');
  process.exit(2);
}

const [reportArg, shotArg, expectedArg] = process.argv.slice(2);
if (!reportArg || !shotArg || !expectedArg || process.argv.length !== 5) usage('want exactly three arguments');
const reportPath = resolve(reportArg);
const shotPath = resolve(shotArg);
if (!existsSync(reportPath)) usage(`report not found: ${reportPath}`);
if (!existsSync(CHROMIUM)) {
  console.error(`check-report: ${CHROMIUM} is missing: apt-get install chromium (this check never downloads a browser)`);
  process.exit(1);
}
let expected;
try {
  expected = JSON.parse(readFileSync(resolve(expectedArg), 'utf8'));
} catch (e) {
  usage(`cannot read ${expectedArg}: ${e.message}`);
}
const steps = expected.steps ?? [];
const texts = expected.texts ?? [];
const absentGlobals = expected.absentGlobals ?? [];
if (!Array.isArray(steps) || steps.length === 0) usage('EXPECTED.json: "steps" must be a non-empty array of labels');

const watchdog = setTimeout(() => {
  console.error(`check-report: FAIL: gave up after ${TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, TIMEOUT_MS);

const failures = [];
const fail = (m) => failures.push(m);
const started = Date.now();
const profile = mkdtempSync(join(tmpdir(), 'agenttrail-chromium-'));
const reportURL = pathToFileURL(reportPath).href;
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1440, height: 900 },
    deviceScaleFactor: 1,
    offline: true,
    timezoneId: 'UTC',
    locale: 'en-US',
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const requests = [];
  page.on('request', (r) => {
    if (r.url() !== reportURL) requests.push(r.url());
  });
  page.on('pageerror', (e) => fail(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') fail(`console error: ${m.text()}`);
  });
  // Anything but the report itself is refused and reported.
  await context.route('**/*', (route) => {
    const url = route.request().url();
    return url === reportURL ? route.continue() : route.abort('blockedbyclient');
  });

  await page.goto(reportURL, { waitUntil: 'load' });
  await page.waitForSelector('#timeline .row', { state: 'visible' });
  await page.evaluate(() => document.fonts.ready);

  for (const label of steps) {
    const loc = page.locator('#timeline .row .lbl').filter({ hasText: label }).first();
    if ((await loc.count()) === 0 || !(await loc.isVisible())) {
      fail(`step label not visible in the timeline: ${JSON.stringify(label)}`);
    }
  }
  for (const text of texts) {
    const loc = page.getByText(text, { exact: false }).first();
    if ((await loc.count()) === 0 || !(await loc.isVisible())) {
      fail(`text not visible on the page (it must be shown literally): ${JSON.stringify(text)}`);
    }
  }
  const state = await page.evaluate((names) => ({
    scripts: document.querySelectorAll('script').length,
    handlers: [...document.querySelectorAll('*')].filter((el) => [...el.attributes].some((a) => a.name.startsWith('on'))).length,
    set: names.filter((n) => n in window),
    title: document.title,
    width: document.documentElement.scrollWidth,
    viewport: window.innerWidth,
  }), absentGlobals);
  if (state.scripts !== 0) fail(`the page holds ${state.scripts} <script> element(s); the report has none of its own`);
  if (state.handlers !== 0) fail(`${state.handlers} element(s) carry an on* event handler attribute`);
  for (const n of state.set) fail(`window.${n} is set: a script from the data ran`);
  if (state.width > state.viewport + 1) fail(`the page is wider than the window (${state.width} > ${state.viewport} px): something overflows`);
  for (const u of requests) fail(`the report requested an external resource: ${u}`);

  mkdirSync(dirname(shotPath), { recursive: true });
  await page.screenshot({ path: shotPath, fullPage: true });
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  if (failures.length === 0) {
    console.log(`check-report: OK: ${steps.length} steps visible, ${texts.length} literal texts shown, no script ran, no request left the page; "${state.title}"; screenshot ${shotPath} (${secs} s)`);
  }
} catch (e) {
  fail(e.message.split('\n')[0]);
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  clearTimeout(watchdog);
}
if (failures.length > 0) {
  for (const f of failures) console.error(`check-report: FAIL: ${f}`);
  process.exit(1);
}
