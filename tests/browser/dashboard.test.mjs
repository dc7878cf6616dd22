// Browser test of the ferry dashboard, run by `run.sh` (node --test).
//
// Starts `ferry agent` (with an operator token) on the test bed for an app with
// selfHeal: false, drives Chromium through playwright-core and checks, as a user sees it:
// signing in, the app becoming Synced and Healthy, a live `kubectl scale` showing up as
// drift with its field manager, Sync healing it (and running the app's PreSync hook,
// shown in the history timeline), and a rollback to an earlier revision
// through the history timeline's confirmation dialog. Screenshots go to artifacts/browser/;
// with FERRY_UPDATE_SCREENSHOT=1 the drift view also replaces docs/dashboard.png.
//
// Needs: FERRY_BIN (the ferry binary), KUBECONFIG with the `ferry-testbed` context,
// Chromium at CHROMIUM (default /usr/bin/chromium).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const ARTIFACTS = path.join(ROOT, 'artifacts', 'browser');
const FERRY = process.env.FERRY_BIN || path.join(os.homedir(), '.cache/ferry/target/debug/ferry');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CONTEXT = 'ferry-testbed';
const TOKEN = `operator-${Math.random().toString(36).slice(2)}-${Date.now()}`;
const SECRET_VALUE = 'browser-test-secret-value-42';
const SUFFIX = Math.random().toString(36).slice(2, 8);
const APP = `shop-${SUFFIX}`;
const NS = `web-ui-${SUFFIX}`;
const WAIT = 45_000;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-browser-'));
const repo = path.join(tmp, 'repo');
let agent;
let agentLog;
let url;
let browser; // a persistent context with its own profile
let page;
const revisions = {};
const pageErrors = [];

function git(...args) {
  return execFileSync('git', ['-c', 'user.name=ferry tests', '-c', 'user.email=tests@ferry.invalid', '-c', 'commit.gpgsign=false', ...args],
    { cwd: repo, env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' } }).toString().trim();
}
function kubectl(...args) {
  return execFileSync('kubectl', ['--context', CONTEXT, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }).toString().trim();
}
function write(rel, text) {
  fs.mkdirSync(path.dirname(path.join(repo, rel)), { recursive: true });
  fs.writeFileSync(path.join(repo, rel), text);
}
function commit(message) {
  git('add', '--all');
  git('commit', '--quiet', '-m', message);
  return git('rev-parse', 'HEAD');
}
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
    srv.on('error', reject);
  });
}
async function eventually(what, check, timeout = WAIT) {
  const start = Date.now();
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() - start > timeout) throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
async function shot(name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}
const manifests = (color) => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: registry.k8s.io/pause:3.10
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  color: ${color}
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData:
  password: ${SECRET_VALUE}
---
apiVersion: v1
kind: ConfigMap
metadata:
  generateName: migrate-
  annotations:
    ferry.dev/hook: PreSync
    ferry.dev/hook-delete-policy: HookSucceeded
`;

before(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  assert.ok(fs.existsSync(FERRY), `no ferry binary at ${FERRY}: build it (cargo build -p ferry) or set FERRY_BIN`);
  kubectl('version'); // fails fast when the test bed is down

  fs.mkdirSync(repo);
  git('init', '--quiet', '--initial-branch=main');
  write('app/all.yaml', manifests('blue'));
  revisions.first = commit('first: blue settings');
  fs.writeFileSync(path.join(tmp, 'ferry.yaml'), `apps:
  - name: ${APP}
    source:
      repo: ${JSON.stringify(repo)}
      path: app
    destination:
      namespace: ${NS}
      createNamespace: true
    interval: 1s
    selfHeal: false
`);
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  agentLog = path.join(ARTIFACTS, 'agent.log');
  const log = fs.openSync(agentLog, 'w');
  agent = spawn(FERRY, ['agent', '--file', path.join(tmp, 'ferry.yaml'), '--listen', `127.0.0.1:${port}`,
    '--data-dir', path.join(tmp, 'data'), '--token', `operator:${TOKEN}`], {
    env: { ...process.env, FERRY_CACHE: path.join(tmp, 'cache'), FERRY_CONTEXT: CONTEXT, NO_COLOR: '1', RUST_LOG: '' },
    stdio: ['ignore', log, log],
  });
  await eventually('the agent to serve /healthz', async () => {
    if (agent.exitCode !== null) throw new Error(`ferry agent exited with ${agent.exitCode}: ${fs.readFileSync(agentLog, 'utf8')}`);
    const r = await fetch(`${url}/healthz`).catch(() => null);
    return r && r.ok;
  });

  // A fresh profile in the test's temporary directory.
  browser = await chromium.launchPersistentContext(path.join(tmp, 'chromium'), {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--no-first-run'],
    viewport: { width: 1440, height: 960 },
  });
  page = browser.pages()[0] || await browser.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error' && !/status of 401/.test(m.text())) pageErrors.push(m.text()); });
});

after(async () => {
  if (page) await shot('last').catch(() => {});
  if (browser) await browser.close();
  if (agent && agent.exitCode === null) agent.kill('SIGTERM');
  try { kubectl('delete', 'namespace', NS, '--wait=false', '--ignore-not-found'); } catch { /* best effort */ }
  try { kubectl('-n', 'ferry-system', 'delete', 'configmap', `ferry-inventory-${APP}`, '--ignore-not-found'); } catch { /* best effort */ }
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('dashboard: sign in, see the app Synced and Healthy, drift explained, Sync heals it, roll back', async (t) => {
  await t.test('asks for a token and shows the app Synced and Healthy', async () => {
    await page.goto(url);
    const dialog = page.locator('dialog#login');
    await dialog.waitFor({ state: 'visible' });
    await shot('01-sign-in');
    await page.fill('#token', 'wrong-token-wrong-token');
    await page.press('#token', 'Enter');
    await page.locator('#login-error', { hasText: 'not accepted' }).waitFor();
    await page.fill('#token', TOKEN);
    await page.press('#token', 'Enter');
    await dialog.waitFor({ state: 'hidden' });
    assert.equal(await page.evaluate(() => sessionStorage.getItem('ferry.token')), TOKEN, 'the token is kept in sessionStorage');
    const row = page.locator(`tr[data-app="${APP}"]`);
    await row.locator('.badge[data-value="Synced"]').waitFor();
    await row.locator('.badge[data-value="Current"]', { hasText: 'Healthy' }).waitFor();
    await row.locator('code', { hasText: revisions.first.slice(0, 7) }).waitFor();
    assert.match(await row.innerText(), /first: blue settings/);
    await page.locator('#live[data-state="on"]').waitFor();
    await shot('02-overview');
  });

  await t.test('filters and search narrow the table', async () => {
    await page.keyboard.press('/');
    await page.keyboard.type('no-such-app');
    await page.locator('td.empty', { hasText: 'No app matches' }).waitFor();
    await page.fill('input.search', APP.slice(0, 6));
    await page.locator(`tr[data-app="${APP}"]`).waitFor();
    await page.click('button.chip:has-text("OutOfSync")');
    await page.locator('td.empty').waitFor();
    await page.click('button.chip:has-text("All")');
    await page.locator(`tr[data-app="${APP}"]`).waitFor();
  });

  await t.test('the app page shows the resource tree with health', async () => {
    await page.click(`tr[data-app="${APP}"] a`);
    await page.locator('h1', { hasText: APP }).waitFor();
    await page.locator('.node[data-kind="Deployment"][data-health="Current"]').waitFor();
    await eventually('2 healthy Pods in the tree', async () => (await page.locator('.node[data-kind="Pod"][data-health="Current"]').count()) === 2);
    await page.locator('.node[data-kind="ReplicaSet"]').waitFor();
    await page.locator('.node[data-kind="Secret"]').click();
    await page.locator('[role=tab][data-tab="live"]').click();
    const yaml = await page.locator('#tabpanel pre').innerText();
    assert.match(yaml, /password: "\*\*\*"/);
    assert.ok(!yaml.includes(SECRET_VALUE));
  });

  await t.test('a live change shows as drift with its field manager', async () => {
    kubectl('-n', NS, 'scale', 'deployment', 'web', '--replicas=4');
    const line = page.locator('section.drift li[data-path="spec.replicas"]');
    await line.waitFor();
    assert.equal(await line.getAttribute('data-manager'), 'kubectl');
    assert.match(await line.innerText(), /Deployment\/.*web\s*spec\.replicas changed by kubectl/);
    await page.locator('h1 ~ .badge[data-value="OutOfSync"]').waitFor();
    await page.locator('.node[data-kind="Deployment"] .badge', { hasText: 'drift' }).waitFor();
    await page.locator('.node[data-kind="Deployment"]').click();
    const diff = page.locator('#tabpanel pre.diff');
    await diff.waitFor();
    const text = await diff.innerText();
    assert.match(text, /-\s+replicas: 4/);
    assert.match(text, /\+\s+replicas: 2/);
    await page.locator('.detail .drift li[data-path="spec.replicas"]').waitFor();
    await shot('03-drift');
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard.png') });
    if (process.env.FERRY_UPDATE_SCREENSHOT === '1') {
      await page.screenshot({ path: path.join(ROOT, 'docs', 'dashboard.png') });
    }
  });

  await t.test('Sync heals the drift', async () => {
    await page.click('button[data-action="sync"]');
    await page.locator('h1 ~ .badge[data-value="Synced"]').waitFor();
    await page.locator('section.drift').waitFor({ state: 'hidden' });
    await eventually('2 replicas in the cluster', () => kubectl('-n', NS, 'get', 'deployment', 'web', '-o', 'jsonpath={.spec.replicas}') === '2');
    await page.locator('#tabpanel .insync', { hasText: 'Matches Git' }).waitFor();
    await page.locator('ol.timeline li .tl-meta', { hasText: 'manual' }).first().waitFor();
    // The manual sync ran the PreSync hook; the timeline shows it with its result.
    await page.locator('ol.timeline li .tl-hooks li.succeeded', { hasText: /PreSync hook ConfigMap\/migrate-\w+ · succeeded/ }).first().waitFor();
    await shot('04-healed');
  });

  await t.test('rolls back to an earlier revision after a confirmation', async () => {
    write('app/all.yaml', manifests('green'));
    revisions.second = commit('second: green settings');
    await page.locator('.facts code, .facts b.mono', { hasText: revisions.second.slice(0, 7) }).waitFor();
    await eventually('the green ConfigMap', () => kubectl('-n', NS, 'get', 'configmap', 'settings', '-o', 'jsonpath={.data.color}') === 'green');
    const entry = page.locator(`ol.timeline li[data-revision="${revisions.first}"]`).first();
    const button = entry.locator('button[data-rollback]');
    await button.waitFor();
    // Cancel first: nothing happens.
    await button.click();
    const dialog = page.locator('dialog#confirm');
    await dialog.waitFor({ state: 'visible' });
    assert.match(await dialog.innerText(), new RegExp(`Roll back ferry-system/${APP}\\?`));
    await page.click('#confirm-cancel');
    await dialog.waitFor({ state: 'hidden' });
    // Then confirm.
    await button.click();
    await dialog.waitFor({ state: 'visible' });
    await shot('05-rollback-confirm');
    await page.click('#confirm-ok');
    await page.locator('.app-head .badge', { hasText: 'Rolled back' }).waitFor();
    await page.locator('.facts b.mono', { hasText: revisions.first.slice(0, 7) }).waitFor();
    await eventually('the blue ConfigMap again', () => kubectl('-n', NS, 'get', 'configmap', 'settings', '-o', 'jsonpath={.data.color}') === 'blue');
    await page.locator('button[data-action="resume"]').waitFor();
    await page.locator(`ol.timeline li[data-revision="${revisions.first}"] .tl-meta`, { hasText: 'rollback' }).first().waitFor();
    await shot('06-rolled-back');
  });

  await t.test('no Secret value reached the browser, no script error', async () => {
    const html = await page.content();
    assert.ok(!html.includes(SECRET_VALUE), 'the Secret value is in the page');
    assert.ok(!html.includes(Buffer.from(SECRET_VALUE).toString('base64')), 'the base64 Secret value is in the page');
    assert.deepEqual(pageErrors, []);
    const log = fs.readFileSync(agentLog, 'utf8');
    assert.ok(!log.includes(TOKEN), 'the agent logged the token');
  });
});
