// The web app's part of the team approval test (tests/tests/team.rs): two phones sign in
// with pairing codes (CODE_CAROL, CODE_DAN). Carol's device is made the person `carol`, an
// approver; Dan's is nobody's. Once the run of `team` has its first vote (from Telegram),
// Dan's phone shows the prompt without buttons, and Carol taps approve: the second
// agreeing vote completes the run. Exits non-zero when a step fails.
import { chromium } from 'playwright-core';

const URL_ = process.env.GATEWAY_URL;
const TOKEN = process.env.ADMIN_TOKEN;
const api = async (method, path, body) => {
  const r = await fetch(URL_ + path, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return [r.status, await r.json().catch(() => null)];
};
const until = async (what, check, ms = 60000) => {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
});
const phone = async (code, name) => {
  const context = await browser.newContext({ viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true });
  const page = await context.newPage();
  await page.goto(`${URL_}/app/login`);
  await page.getByLabel('Pairing code').fill(code);
  await page.getByLabel('Name this device').fill(name);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/app/inbox');
  return page;
};
try {
  const carol = await phone(process.env.CODE_CAROL, 'carols-phone');
  const dan = await phone(process.env.CODE_DAN, 'dans-tablet');
  const [st, body] = await api('POST', '/api/gateway/people', { name: 'carol', identities: ['device:web: carols-phone'] });
  if (st !== 200) throw new Error(`people: ${st} ${JSON.stringify(body)}`);
  console.log('ready');
  const run = await until('the team run with its first vote', async () => {
    const [, runs] = await api('GET', '/api/gateway/runs?status=waiting&limit=50');
    return (runs.items || []).find((r) => r.bundle_id === 'team' && (r.waiting.votes || []).length === 1);
  });
  await dan.goto(`${URL_}/app/runs/${run.run_id}`);
  await dan.locator('.not-mine').waitFor();
  if (await dan.getByRole('button', { name: 'approve' }).count() !== 0) throw new Error('a stranger got buttons');
  await dan.goto(`${URL_}/app/inbox`);
  if (await dan.locator('#inbox .card').count() !== 0) throw new Error("the prompt is in a stranger's inbox");
  await carol.goto(`${URL_}/app/inbox`);
  const card = carol.locator('#inbox .card', { hasText: 'Ship v3?' });
  await card.locator('.approvers', { hasText: 'votes: telegram:1001 via telegram: approve' }).waitFor();
  await card.getByRole('button', { name: 'approve' }).click();
  await until('the run to complete', async () => (await api('GET', `/api/gateway/runs/${run.run_id}`))[1].status === 'completed');
  await carol.screenshot({ path: `${process.env.SCREENSHOTS || '.'}/team-carol.png`, fullPage: true }).catch(() => {});
  console.log('team: web steps passed');
} catch (e) {
  console.error(`FAILED: ${e.stack || e}`);
  await browser.close();
  process.exit(1);
}
await browser.close();
