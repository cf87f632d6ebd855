// The Postern edge dashboard: polls the admin API once a second with the
// admin token the operator entered (kept in this tab's sessionStorage
// only) and draws what it reads. No external assets, no framework.
'use strict';

const KEY = 'postern-admin-token';
const POINTS = 120; // two minutes of samples
const $ = (id) => document.getElementById(id);

let token = sessionStorage.getItem(KEY);
let timer = null;
let last = null; // previous counters sample: { at, apps: {name: {requests, failed}} }
const series = { rps: [], eps: [], p50: [], p99: [] };

async function api(path) {
  const r = await fetch(path, { headers: { Authorization: `Bearer ${token}` }, cache: 'no-store' });
  if (r.status === 401) {
    const e = new Error('the admin token was refused');
    e.unauthorized = true;
    throw e;
  }
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

function showLogin(message) {
  clearInterval(timer);
  timer = null;
  $('dashboard').hidden = true;
  $('sign-out').hidden = true;
  $('login').hidden = false;
  $('login-error').hidden = !message;
  $('login-error').textContent = message || '';
  $('token').focus();
}

function showDashboard() {
  $('login').hidden = true;
  $('dashboard').hidden = false;
  $('sign-out').hidden = false;
  tick();
  timer = setInterval(tick, 1000);
}

function cell(text, cls) {
  const td = document.createElement('td');
  td.textContent = text === undefined || text === null ? '-' : String(text);
  if (cls) td.className = cls;
  return td;
}

function fill(tableId, rows, empty) {
  const body = $(tableId).querySelector('tbody');
  body.replaceChildren();
  if (rows.length === 0) {
    const tr = document.createElement('tr');
    const td = cell(empty, 'off');
    td.colSpan = $(tableId).querySelectorAll('th').length;
    tr.append(td);
    body.append(tr);
    return;
  }
  for (const cells of rows) {
    const tr = document.createElement('tr');
    tr.append(...cells);
    body.append(tr);
  }
}

// The q-quantile, in ms, of cumulative bucket counts at `bounds`
// (seconds; the last count is +Inf), interpolated within its bucket.
function quantile(cumulative, bounds, q) {
  const total = cumulative[cumulative.length - 1];
  if (!total) return 0;
  const rank = q * total;
  for (let i = 0; i < bounds.length; i++) {
    if (cumulative[i] >= rank) {
      const lower = i === 0 ? 0 : bounds[i - 1];
      const below = i === 0 ? 0 : cumulative[i - 1];
      const inside = cumulative[i] - below;
      const f = inside ? (rank - below) / inside : 1;
      return (lower + (bounds[i] - lower) * f) * 1000;
    }
  }
  return bounds[bounds.length - 1] * 1000;
}

const num = (n, digits = 0) => (typeof n === 'number' ? n.toFixed(digits) : '-');
const sum = (o) => Object.values(o || {}).reduce((a, b) => a + b, 0);

function push(name, value) {
  series[name].push(value);
  if (series[name].length > POINTS) series[name].shift();
}

// A line chart of one or more series on a canvas, scaled to its maximum.
function draw(canvasId, lines) {
  const c = $(canvasId);
  const g = c.getContext('2d');
  const css = getComputedStyle(document.documentElement);
  const ink = css.getPropertyValue('--muted').trim() || '#666';
  const w = c.width, h = c.height, left = 40, bottom = 18, top = 8;
  g.clearRect(0, 0, w, h);
  const max = Math.max(1, ...lines.flatMap((l) => l.values)) * 1.1;
  g.strokeStyle = ink;
  g.fillStyle = ink;
  g.lineWidth = 1;
  g.font = '11px system-ui, sans-serif';
  for (const f of [0, 0.5, 1]) {
    const y = top + (h - top - bottom) * (1 - f);
    g.globalAlpha = 0.25;
    g.beginPath(); g.moveTo(left, y); g.lineTo(w, y); g.stroke();
    g.globalAlpha = 1;
    g.fillText(num(max * f, max < 10 ? 1 : 0), 2, y + 4);
  }
  g.fillText(`last ${POINTS} s`, left, h - 4);
  for (const l of lines) {
    g.strokeStyle = l.color;
    g.lineWidth = 2;
    g.beginPath();
    l.values.forEach((v, i) => {
      const x = left + ((w - left) * i) / (POINTS - 1);
      const y = top + (h - top - bottom) * (1 - v / max);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  }
  c.dataset.points = String(lines[0].values.length);
  c.dataset.last = String(lines[0].values[lines[0].values.length - 1] ?? 0);
}

async function tick() {
  let status, apps, connectors, counters, errors;
  try {
    [status, apps, connectors, counters, errors] = await Promise.all([
      api('/v1/status'), api('/v1/apps'), api('/v1/connectors'), api('/v1/counters'), api('/v1/recent-errors'),
    ]);
  } catch (e) {
    if (e.unauthorized) {
      sessionStorage.removeItem(KEY);
      showLogin('The admin token was refused.');
    } else {
      $('fetch-error').hidden = false;
      $('fetch-error').textContent = `Cannot reach the edge: ${e.message}`;
    }
    return;
  }
  $('fetch-error').hidden = true;
  $('edge-line').textContent =
    `postern ${status.version}, pid ${status.pid}, up ${Math.floor(status.uptime_seconds / 60)} min, ` +
    `${status.health.status}, app table version ${status.app_table_version}`;

  const now = performance.now();
  const totals = counters.apps || {};
  const rate = {};
  let rps = 0, eps = 0;
  if (last) {
    const dt = Math.max(0.001, (now - last.at) / 1000);
    for (const [name, t] of Object.entries(totals)) {
      const before = last.apps[name] || { requests: t.requests, failed: t.failed };
      rate[name] = Math.max(0, t.requests - before.requests) / dt;
      rps += rate[name];
      eps += Math.max(0, t.failed - before.failed) / dt;
    }
    push('rps', rps);
    push('eps', eps);
  }
  // Latency of the requests since the last sample: the difference of
  // the cumulative histogram buckets, summed over apps.
  const bounds = counters.backend_latency_bounds_s || [];
  const buckets = new Array(bounds.length + 1).fill(0);
  for (const t of Object.values(totals)) {
    (t.backend_latency_le || []).forEach((v, i) => { buckets[i] += v; });
  }
  const recent = last && last.buckets ? buckets.map((v, i) => Math.max(0, v - (last.buckets[i] || 0))) : null;
  last = {
    at: now,
    buckets,
    apps: Object.fromEntries(Object.entries(totals).map(([n, t]) => [n, { requests: t.requests, failed: t.failed }])),
  };
  const p50 = recent ? quantile(recent, bounds, 0.5) : 0;
  const p99 = recent ? quantile(recent, bounds, 0.99) : 0;
  push('p50', p50);
  push('p99', p99);
  $('rps').textContent = num(rps, 1);
  $('eps').textContent = num(eps, 1);
  $('p50').textContent = num(p50, 1);
  $('p99').textContent = num(p99, 1);
  draw('chart-rps', [{ values: series.rps, color: '#2563eb' }]);
  draw('chart-errors', [{ values: series.eps, color: '#c0262d' }]);
  draw('chart-latency', [{ values: series.p50, color: '#16a34a' }, { values: series.p99, color: '#d97706' }]);

  fill('apps', apps.apps.map((a) => {
    const t = totals[a.name] || {};
    return [
      cell(a.name), cell(a.external_url),
      cell(a.enabled === false ? 'disabled' : 'enabled', a.enabled === false ? 'off' : ''),
      cell(a.preauth || 'oidc'), cell(num(rate[a.name] || 0, 1), 'num'),
      cell(t.requests ?? 0, 'num'), cell(t.failed ?? 0, 'num'), cell(num(t.backend_latency_p99_ms, 1), 'num'),
    ];
  }), 'No app is published.');
  fill('connectors', connectors.connectors.map((c) => [
    cell(c.id), cell(c.host_name), cell(c.group), cell(c.state, c.state === 'active' ? '' : 'off'),
    cell(c.tunnels, 'num'), cell((c.tunnels_by_worker || []).join(' · ')), cell(c.version),
  ]), 'No connector is registered.');
  fill('features', Object.entries(totals).map(([name, t]) => [
    cell(name), cell(t.translated_responses ?? 0, 'num'), cell(t.links_translated ?? 0, 'num'),
    cell(sum(t.translate_skipped_by_reason), 'num'), cell(t.sign_ins ?? 0, 'num'),
    cell(t.sign_in_failures ?? 0, 'num'), cell(t.policy_denials ?? 0, 'num'),
  ]), 'No counters yet.');
  fill('errors', errors.errors.slice().reverse().map((e) => [
    cell(new Date(e.at_ms).toLocaleTimeString()), cell(e.request_id), cell(e.app),
    cell(`${e.method} ${e.path}`), cell(e.status ?? 'closed', 'num'), cell(e.source), cell(e.reason, 'wrap'),
  ]), 'No failed request since the edge started.');
}

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  token = $('token').value.trim();
  try {
    await api('/v1/status');
  } catch (e) {
    showLogin(e.unauthorized ? 'The admin token was refused.' : `Cannot reach the edge: ${e.message}`);
    return;
  }
  sessionStorage.setItem(KEY, token);
  $('token').value = '';
  showDashboard();
});

$('sign-out').addEventListener('click', () => {
  sessionStorage.removeItem(KEY);
  token = null;
  showLogin('');
});

if (token) showDashboard(); else showLogin('');
