// A real browser for the sign-in tests: Debian's headless Chromium driven
// by playwright-core (never a downloaded browser). One JSON argument:
//   { "edge_port": 12345,            the edge's https listener on 127.0.0.1
//     "hosts": ["app.example.com"],  names mapped to that listener
//     "steps": [ ...step ] }
// Each step runs in order and adds one observation to the JSON printed at
// the end; the Rust test decides what is right. A step is one of:
//   { "open": URL, "context": NAME }                 navigate
//   { "sign_in": URL, "user", "password", "context" } navigate, fill the
//        provider's login form, submit, wait to land back on URL's host
//        (past the edge's callback page, unless it answered an error)
//   { "click": SELECTOR, "context" }                 click and wait
// and any step may say "wait": SELECTOR, to wait for it afterwards (when
// the page moves on by script, as the edge's sign-in pages do).
// Contexts (separate cookie jars) are made on first use. An observation is
// { url, status (of the last top-level response), text (the body's text),
//   cookies: [names on that context] }.
import { chromium } from 'playwright-core';

const cfg = JSON.parse(process.argv[2]);
const rules = cfg.hosts.map((h) => `MAP ${h}:443 127.0.0.1:${cfg.edge_port}`).join(', ');
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [`--host-resolver-rules=${rules}`, '--no-sandbox', '--disable-dev-shm-usage'],
  timeout: 30000,
});
const contexts = new Map();
const statuses = new Map();
async function page(name = 'default') {
  if (!contexts.has(name)) {
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
    const p = await ctx.newPage();
    p.setDefaultTimeout(15000);
    p.on('response', (r) => {
      if (r.request().isNavigationRequest() && r.frame() === p.mainFrame()) statuses.set(name, r.status());
    });
    contexts.set(name, { ctx, p });
  }
  return contexts.get(name);
}

async function observe(name) {
  const { ctx, p } = await page(name);
  await p.waitForLoadState('load');
  const text = await p.evaluate(() => document.body ? document.body.innerText : '');
  const cookies = (await ctx.cookies()).map((c) => c.name);
  return { url: p.url(), status: statuses.get(name) ?? 0, text, cookies };
}

const out = [];
try {
  for (const step of cfg.steps) {
    const name = step.context || 'default';
    const { p } = await page(name);
    if (step.open) {
      await p.goto(step.open);
    } else if (step.sign_in) {
      await p.goto(step.sign_in);
      await p.waitForSelector('#login');
      await p.fill('#login', step.user);
      await p.fill('#password', step.password);
      const host = new URL(step.sign_in).host;
      await Promise.all([
        p.waitForURL((u) => u.host === host, { waitUntil: 'load' }),
        p.click('#submit'),
      ]);
      // The callback's 200 page moves on by script; its errors stay.
      if (p.url().includes('/.postern/callback') && statuses.get(name) === 200) {
        await p.waitForURL((u) => !u.pathname.includes('/.postern/'), { waitUntil: 'load' });
      }
    } else if (step.click) {
      await Promise.all([p.waitForNavigation({ waitUntil: 'load' }), p.click(step.click)]);
    }
    if (step.wait) await p.waitForSelector(step.wait);
    out.push(await observe(name));
  }
} catch (e) {
  const last = contexts.size ? await observe([...contexts.keys()].pop()).catch(() => null) : null;
  process.stdout.write(JSON.stringify({ error: String(e.message || e), observations: out, last }) + '\n');
  await browser.close();
  process.exit(1);
}
process.stdout.write(JSON.stringify({ observations: out }) + '\n');
await browser.close();
