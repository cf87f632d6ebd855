// The admin dashboard in a real browser: Debian's headless Chromium driven
// by playwright-core. One JSON argument:
//   { "admin": "http://127.0.0.1:PORT", "token": "...", "app": NAME,
//     "connector": ID, "seconds": N }
// It signs in with a wrong token, then the right one, waits for the app
// and the connector to show, samples the requests-per-second figure and
// the chart for N seconds (the Rust test sends load meanwhile), and prints
// what it saw as JSON; the Rust test decides what is right.
import { chromium } from 'playwright-core';

const cfg = JSON.parse(process.argv[2]);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
  timeout: 30000,
});
const out = { requests: [], console: [] };
try {
  const page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(15000);
  page.on('request', (r) => out.requests.push(r.url()));
  page.on('console', (m) => { if (m.type() === 'error') out.console.push(m.text()); });
  page.on('pageerror', (e) => out.console.push(String(e)));

  const root = await page.goto(`${cfg.admin}/`);
  out.root_url = page.url();
  out.root_status = root ? root.status() : 0;
  await page.waitForSelector('#login:not([hidden])');

  await page.fill('#token', 'not-the-token');
  await page.click('#login-form button');
  await page.waitForSelector('#login-error:not([hidden])');
  out.wrong_token = await page.textContent('#login-error');
  out.dashboard_after_wrong = await page.isVisible('#dashboard');

  await page.fill('#token', cfg.token);
  await page.click('#login-form button');
  await page.waitForSelector('#dashboard:not([hidden])');
  await page.waitForFunction((name) => document.querySelector('#apps tbody').innerText.includes(name), cfg.app);
  await page.waitForFunction((id) => document.querySelector('#connectors tbody').innerText.includes(id), cfg.connector);
  out.apps = await page.innerText('#apps tbody');
  out.connectors = await page.innerText('#connectors tbody');

  out.rps = [];
  out.p99 = [];
  out.points = [];
  const until = Date.now() + cfg.seconds * 1000;
  while (Date.now() < until) {
    await page.waitForTimeout(500);
    out.rps.push(Number(await page.textContent('#rps')));
    out.p99.push(Number(await page.textContent('#p99')));
    out.points.push(Number(await page.getAttribute('#chart-rps', 'data-points')));
  }
  out.chart_last = Number(await page.getAttribute('#chart-rps', 'data-last'));
  out.errors = await page.innerText('#errors tbody');
  out.features = await page.innerText('#features tbody');
  out.ok = true;
} catch (e) {
  out.ok = false;
  out.error = String(e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
