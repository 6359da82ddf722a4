// The web app in real headless Chromium (Debian's, driven by playwright-core) at a phone
// viewport, against a real `switchboard serve` started by tests/tests/web.rs, which passes
// GATEWAY_URL, ADMIN_TOKEN (for the API side of each scenario), PAIRING_CODE and SCREENSHOTS
// (a folder: one PNG per step, FAILED-*.png on failure). Exits non-zero when a step fails.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

const URL_ = process.env.GATEWAY_URL;
const TOKEN = process.env.ADMIN_TOKEN;
const CODE = process.env.PAIRING_CODE;
const SHOTS = process.env.SCREENSHOTS || 'screenshots';
mkdirSync(SHOTS, { recursive: true });

const api = async (method, path, body) => {
  const r = await fetch(URL_ + path, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return [r.status, await r.json().catch(() => null)];
};
const startRun = async (flow, text) => {
  const [status, run] = await api('POST', '/api/gateway/runs/start', { bundle_id: flow, input_data: { text } });
  if (status !== 200) throw new Error(`start ${flow}: ${status} ${JSON.stringify(run)}`);
  return run.run_id;
};
const runOf = async (id) => (await api('GET', `/api/gateway/runs/${id}`))[1];
const until = async (what, check, ms = 15000) => {
  const end = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};
const expectEq = (got, want, what) => {
  if (got !== want) throw new Error(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const context = await browser.newContext({
  viewport: { width: 360, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
});
const page = await context.newPage();
page.on('pageerror', (e) => console.error('page error:', e.message));
let n = 0;
const shot = (name) => page.screenshot({ path: `${SHOTS}/${String(++n).padStart(2, '0')}-${name}.png`, fullPage: true });
const step = async (name, fn) => {
  try {
    await fn();
    await shot(name);
    console.log(`ok ${name}`);
  } catch (e) {
    await page.screenshot({ path: `${SHOTS}/FAILED-${name}.png`, fullPage: true }).catch(() => {});
    console.error(`FAILED ${name}: ${e.stack || e}`);
    await browser.close();
    process.exit(1);
  }
};
// Set on a page; still there later means the page was never reloaded.
const mark = () => page.evaluate(() => { window.__stayed = true; });
const stayed = async () => expectEq(await page.evaluate(() => window.__stayed === true), true, 'no reload');
const card = (text) => page.locator('#inbox .card', { hasText: text });

await step('sign-in-with-a-pairing-code', async () => {
  await page.goto(`${URL_}/app/inbox`);
  expectEq(new URL(page.url()).pathname, '/app/login', 'unsigned visitors are sent to sign in');
  await page.getByLabel('Pairing code').fill(CODE);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/app/inbox');
  await page.getByRole('heading', { name: 'Inbox' }).waitFor();
  const cookie = (await context.cookies()).find((c) => c.name === 'sb_session');
  expectEq(cookie && cookie.httpOnly, true, 'HttpOnly');
  expectEq(cookie && cookie.sameSite, 'Strict', 'SameSite');
  expectEq(cookie && cookie.path, '/app', 'Path');
});

await step('answer-from-the-inbox-and-see-the-run-complete', async () => {
  await mark();
  const id = await startRun('approval', 'deploy v2');
  await card('Approve or reject: deploy v2').waitFor();
  await card('Approve or reject: deploy v2').getByRole('button', { name: 'approve' }).click();
  await page.locator('#recent li', { hasText: 'approval: approve · completed' }).waitFor();
  await stayed();
  expectEq(await card('deploy v2').count(), 0, 'the answered card left the inbox');
  const run = await runOf(id);
  expectEq(run.status, 'completed', 'run status');
  expectEq(run.output.decision, 'approve', 'decision');
});

await step('a-prompt-answered-over-the-api-disappears-live', async () => {
  await mark();
  const id = await startRun('approval', 'rotate keys');
  await card('Approve or reject: rotate keys').waitFor();
  const run = await runOf(id);
  const [status] = await api('POST', '/api/gateway/commands', {
    command_id: `api-${id}`, run_id: id, type: 'resume', channel: 'api',
    payload: { wait_key: run.waiting.wait_key, payload: { response: 'reject' } },
  });
  expectEq(status, 200, 'the API answer');
  await card('rotate keys').waitFor({ state: 'detached' });
  await stayed();
});

await step('pause-and-resume-a-run', async () => {
  const id = await startRun('approval', 'pause me');
  await page.goto(`${URL_}/app/runs/${id}`);
  await page.locator('#status', { hasText: 'waiting' }).waitFor();
  await mark();
  await page.getByRole('button', { name: 'Pause' }).click();
  await page.locator('#status', { hasText: 'paused' }).waitFor();
  await until('the gateway to pause it', async () => (await runOf(id)).status === 'paused');
  await page.locator('.timeline .entry.status', { hasText: 'Paused' }).waitFor();
  await page.getByRole('button', { name: 'Resume' }).click();
  await page.locator('#status', { hasText: 'waiting' }).waitFor();
  await stayed();
  expectEq((await runOf(id)).status, 'waiting', 'resumed');
});

await step('the-run-list-follows-status-changes-live', async () => {
  await page.goto(`${URL_}/app/runs`);
  await mark();
  const id = await startRun('approval', 'listed live');
  const row = page.locator(`#runs a[href="/app/runs/${id}"]`);
  await row.locator('.badge', { hasText: 'waiting' }).waitFor();
  const [status] = await api('POST', '/api/gateway/commands',
    { command_id: `cancel-${id}`, run_id: id, type: 'cancel', channel: 'api', payload: {} });
  expectEq(status, 200, 'the API cancel');
  await row.locator('.badge', { hasText: 'cancelled' }).waitFor();
  await stayed();
});

await step('llm-output-streams-into-the-run-page', async () => {
  const id = await startRun('chat', 'DRIP tell me about streams and rivers please');
  await page.goto(`${URL_}/app/runs/${id}`);
  await mark();
  const live = page.locator('#live');
  await live.waitFor({ state: 'visible' });
  await until('the reply to grow', async () => (await live.textContent()).length > 0);
  await page.locator('.timeline .entry.llm', { hasText: 'echo: DRIP tell me about streams and rivers please' }).waitFor();
  await live.waitFor({ state: 'hidden' });
  await stayed();
});

await step('start-a-flow-from-its-form', async () => {
  await page.goto(`${URL_}/app/start`);
  await page.getByRole('link', { name: /Approval/ }).click();
  await page.getByLabel('Text').fill('ship it');
  await page.getByRole('button', { name: 'Start Approval' }).click();
  await page.waitForURL(/\/app\/runs\/[0-9a-f-]+$/);
  await page.getByRole('heading', { name: 'Approve or reject: ship it' }).waitFor();
  await page.getByRole('button', { name: 'reject' }).waitFor();
});

await step('approve-a-tool-call-in-the-chat-view', async () => {
  const id = await startRun('agent', 'CALL echo {"text": "from the phone"}');
  await page.goto(`${URL_}/app/runs/${id}/chat`);
  await mark();
  await page.locator('#chat .bubble.user', { hasText: 'CALL echo' }).waitFor();
  await page.locator('#composer .question', { hasText: 'Allow the tool call echo(text: "from the phone") (flow:echo)?' }).waitFor();
  await page.locator('#composer').getByRole('button', { name: 'allow' }).click();
  const tool = page.locator('#chat .bubble.tool', { hasText: '🔧 echo("from the phone") → {"text":"from the phone"}' });
  await tool.waitFor();
  await page.locator('#chat .bubble.bot', { hasText: 'done: {"text":"from the phone"}' }).waitFor();
  await until('the agent to ask for the next message', async () => {
    const run = await runOf(id);
    return run.status === 'waiting' && run.waiting.wait_key === 'next.1';
  });
  await page.locator('#composer input[name=response_text]').waitFor();
  await page.locator('#chat .bubble.tool summary').first().click();
  await page.locator('#chat .bubble.tool pre', { hasText: '"arguments"' }).first().waitFor({ state: 'visible' });
  await stayed();
});

await step('deny-a-tool-call-typed-in-the-chat-view', async () => {
  const [, runs] = await api('GET', '/api/gateway/runs?status=waiting&limit=200');
  const run = runs.items.find((r) => r.bundle_id === 'agent' && r.waiting.wait_key === 'next.1');
  await page.goto(`${URL_}/app/runs/${run.run_id}/chat`);
  await mark();
  await page.locator('#composer input[name=response_text]').fill('CALL echo {"text": "no"}');
  await page.locator('#composer').getByRole('button', { name: 'Send' }).click();
  await page.locator('#chat .bubble.user', { hasText: 'CALL echo {"text": "no"}' }).waitFor();
  await page.locator('#composer').getByRole('button', { name: 'deny' }).click();
  await page.locator('#chat .bubble.note', { hasText: 'deny: flow:echo' }).waitFor();
  await page.locator('#chat .bubble.bot', { hasText: 'done: error: the call was denied by' }).waitFor();
  await stayed();
  await page.goto(`${URL_}/app/runs/${run.run_id}`);
  const entry = page.locator('.timeline .entry.tool').first();
  await entry.locator('summary', { hasText: '🔧 echo' }).click();
  await entry.locator('pre', { hasText: '"output"' }).waitFor({ state: 'visible' });
});

await step('a-reply-streams-into-the-chat-view', async () => {
  const id = await startRun('chat', 'DRIP tell me about rivers in the chat view please');
  await page.goto(`${URL_}/app/runs/${id}/chat`);
  await mark();
  const live = page.locator('#live');
  await live.waitFor({ state: 'visible' });
  await until('the reply to grow', async () => (await live.textContent()).length > 0);
  await page.locator('#chat .bubble.bot', { hasText: 'echo: DRIP tell me about rivers in the chat view please' }).waitFor();
  await live.waitFor({ state: 'hidden' });
  expectEq(await page.locator('#chat .bubble.bot').count(), 1, 'the reply and the flow saying it again are one bubble');
  await stayed();
});

await step('reload-offline-and-see-the-cached-shell', async () => {
  await page.goto(`${URL_}/app/inbox`);
  await page.evaluate(() => navigator.serviceWorker.ready);
  await until('the service worker to control the page', () => page.evaluate(() => !!navigator.serviceWorker.controller));
  await page.reload(); // through the worker: this version of the page is kept
  await page.getByRole('heading', { name: 'Inbox' }).waitFor();
  await context.setOffline(true);
  await page.reload();
  await page.getByRole('heading', { name: 'Inbox' }).waitFor();
  await page.locator('#offline').waitFor({ state: 'visible' });
  await card('Approve or reject: pause me').waitFor();
});

await step('sign-out-revokes-the-device-and-drops-cached-pages', async () => {
  await context.setOffline(false);
  await page.goto(`${URL_}/app/inbox`);
  const cachedPages = () => page.evaluate(async () => {
    const c = await caches.open('sb-pages');
    return (await c.keys()).map((r) => new URL(r.url).pathname);
  });
  expectEq((await cachedPages()).includes('/app/inbox'), true, 'the inbox was cached while signed in');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL('**/app/login');
  const [, devices] = await api('GET', '/api/gateway/devices');
  const web = (devices.items || devices).filter((d) => (d.name || '').startsWith('web:'));
  expectEq(web.length > 0 && web.every((d) => d.revoked_at), true, 'the web device is revoked');
  const left = (await cachedPages()).filter((p) => p !== '/app/login' && p !== '/app/offline');
  expectEq(JSON.stringify(left), '[]', 'no signed-in page stays readable offline');
  // Offline after signing out: the inbox is not shown from the cache.
  await context.setOffline(true);
  await page.goto(`${URL_}/app/inbox`).catch(() => {});
  expectEq(await page.getByRole('heading', { name: 'Inbox' }).count(), 0, 'no cached inbox offline');
  await context.setOffline(false);
  await page.goto(`${URL_}/app/inbox`);
  expectEq(new URL(page.url()).pathname, '/app/login', 'signed out');
});

await browser.close();
console.log('web app: all steps passed');
