// wsrelay ops console. Plain ES module, no dependencies: it uses only the
// documented admin API (SPEC 5) and the /ops telemetry WebSocket.

const main = document.getElementById('main');
const SERIES_SECONDS = 300; // latency chart: the last five minutes

const state = {
  token: sessionStorage.getItem('wsrelay.token'),
  user: JSON.parse(sessionStorage.getItem('wsrelay.user') || 'null'),
  ws: null,
  live: false,
  sessions: new Map(), // id -> session (active, from /ops)
  stats: new Map(), // endpointId -> { last, prev, series: [{t,p50,p99,p999}] }
  samples: [], // newest first, from /ops
  endpoints: [],
  sessionFilter: '',
  sampleEndpoint: '',
  audit: { page: 1, limit: 50, action: '', entityType: '', since: '', until: '' },
};

// ---------- helpers ----------

/** Builds an element; strings become text nodes (never HTML). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const isAdmin = () => state.user && state.user.role === 'admin';
const fmtInt = (n) => (n ?? 0).toLocaleString('en-US');
const fmtRate = (n) => (n >= 1e6 ? (n / 1e6).toFixed(1) + 'M' : n >= 1e3 ? (n / 1e3).toFixed(1) + 'k' : n.toFixed(n < 10 ? 1 : 0));
const fmtBytes = (n) => (n >= 1 << 30 ? (n / (1 << 30)).toFixed(1) + ' GiB' : n >= 1 << 20 ? (n / (1 << 20)).toFixed(1) + ' MiB' : n >= 1024 ? (n / 1024).toFixed(1) + ' KiB' : Math.round(n) + ' B');
const fmtUs = (us) => (us >= 1000 ? (us / 1000).toFixed(us >= 10000 ? 0 : 1) + ' ms' : Math.round(us) + ' µs');
const fmtTime = (iso) => (iso ? new Date(iso).toLocaleString() : '');

function toast(text, error = false) {
  const t = h('div', { class: error ? 'error' : '' }, text);
  document.getElementById('toast').append(t);
  setTimeout(() => t.remove(), 5000);
}

function banner(text) {
  const b = document.getElementById('banner');
  b.textContent = text || '';
  b.hidden = !text;
}

/** Calls the API; 401 logs out, 503 shows the database banner. */
async function api(method, path, body) {
  const opts = { method, headers: { Authorization: `Bearer ${state.token}` } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, opts);
  } catch (e) {
    banner('The admin API cannot be reached.');
    throw e;
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (res.status === 401 && path !== '/api/login') {
    logout('Your session has expired; log in again.');
    throw new Error('unauthorized');
  }
  if (res.status === 503) banner('The database is unavailable: relaying goes on, changes are refused until it is back.');
  else if (res.ok) banner('');
  // /ops opens once the token has proved good.
  if (res.ok && !state.ws) connectOps();
  return { status: res.status, data, headers: res.headers };
}

function errorText(r) {
  return (r.data && r.data.error && r.data.error.message) || `HTTP ${r.status}`;
}

// ---------- auth and /ops ----------

function logout(message) {
  sessionStorage.removeItem('wsrelay.token');
  sessionStorage.removeItem('wsrelay.user');
  state.token = null;
  state.user = null;
  if (state.ws) { state.ws.onclose = null; state.ws.close(); state.ws = null; }
  state.sessions.clear();
  state.stats.clear();
  state.samples = [];
  state.notice = message || '';
  history.replaceState(null, '', '#/login');
  render();
}

function connectOps() {
  if (!state.token || state.ws) return;
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${proto}://${location.host}/ops?token=${encodeURIComponent(state.token)}`);
  state.ws = ws;
  ws.onopen = () => { state.live = true; renderWho(); };
  ws.onmessage = (e) => onOps(JSON.parse(e.data));
  ws.onclose = () => {
    state.live = false;
    state.ws = null;
    renderWho();
    if (state.token) setTimeout(connectOps, 2000);
  };
}

let pending = false;
function soon() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; renderLive(); });
}

function onOps(m) {
  switch (m.type) {
    case 'sessionStarted':
    case 'sessionUpdated':
      state.sessions.set(m.session.id, m.session);
      break;
    case 'sessionEnded':
      state.sessions.delete(m.session.id);
      break;
    case 'stats': {
      const s = state.stats.get(m.endpointId) || { series: [] };
      s.prev = s.last;
      s.prevAt = s.lastAt;
      s.last = m;
      s.lastAt = performance.now();
      const w = m.windowUs || {};
      const pick = (k) => Math.max(w.in ? w.in[k] : 0, w.out ? w.out[k] : 0);
      const count = (w.in ? w.in.count : 0) + (w.out ? w.out.count : 0);
      s.series.push({ t: Date.now(), p50: count ? pick('p50') : null, p99: count ? pick('p99') : null, p999: count ? pick('p999') : null });
      if (s.series.length > SERIES_SECONDS) s.series.shift();
      state.stats.set(m.endpointId, s);
      break;
    }
    case 'sampledPayload':
      state.samples.unshift(m);
      if (state.samples.length > 500) state.samples.pop();
      break;
    case 'killed':
      toast(`Session ${m.sessionId.slice(0, 8)} killed.`);
      break;
    case 'error':
      toast(m.message || m.code, true);
      break;
    default:
      return;
  }
  soon();
}

function rates(s) {
  if (!s || !s.prev || !s.last) return { mIn: 0, mOut: 0, bIn: 0, bOut: 0 };
  const dt = Math.max(0.001, (s.lastAt - s.prevAt) / 1000);
  const d = (k) => Math.max(0, s.last[k] - s.prev[k]) / dt;
  return { mIn: d('messagesIn'), mOut: d('messagesOut'), bIn: d('bytesIn'), bOut: d('bytesOut') };
}

// ---------- layout ----------

const PAGES = [
  ['dashboard', 'Dashboard'],
  ['endpoints', 'Endpoints'],
  ['sessions', 'Sessions'],
  ['nodes', 'Nodes'],
  ['samples', 'Samples'],
  ['audit', 'Audit'],
  ['users', 'Users', true],
];

function page() {
  const p = (location.hash.replace(/^#\//, '') || 'dashboard').split('?')[0];
  return p;
}

function renderNav() {
  const nav = document.getElementById('nav');
  nav.replaceChildren();
  if (!state.token) return;
  for (const [id, title, adminOnly] of PAGES) {
    if (adminOnly && !isAdmin()) continue;
    nav.append(h('a', { href: `#/${id}`, 'aria-current': page() === id ? 'page' : null }, title));
  }
}

function renderWho() {
  const who = document.getElementById('who');
  who.replaceChildren();
  if (!state.token) return;
  who.append(
    h('span', { class: state.live ? 'live on' : 'live', title: 'live telemetry (/ops)' }, state.live ? 'live' : 'offline'),
    h('span', {}, `${state.user.email} (${state.user.role})`),
    h('button', { type: 'button', onclick: () => logout() }, 'Log out'),
  );
}

async function render() {
  renderNav();
  renderWho();
  if (!state.token) {
    const notice = state.notice;
    state.notice = '';
    return renderLogin(notice);
  }
  const p = page();
  const pages = { dashboard: renderDashboard, endpoints: renderEndpoints, sessions: renderSessions, nodes: renderNodes, samples: renderSamples, audit: renderAudit, users: renderUsers };
  const fn = pages[p] || renderDashboard;
  try {
    if (p === 'users' && !isAdmin()) await renderDashboard();
    else await fn();
  } catch (e) {
    if (e.message !== 'unauthorized') throw e; // already back at the login page
  }
}

/** Re-renders the live parts of the current page. */
function renderLive() {
  const p = page();
  if (p === 'dashboard') renderDashboardBody();
  if (p === 'sessions') renderSessionRows();
  if (p === 'samples') renderSampleRows();
}

window.addEventListener('hashchange', () => render());

// ---------- login ----------

function renderLogin(message) {
  const err = h('p', { class: 'form-error', role: 'alert' }, message || '');
  const form = h('form', { onsubmit: async (e) => {
    e.preventDefault();
    const body = { email: form.email.value, password: form.password.value };
    const res = await fetch('/api/login', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    const data = await res.json().catch(() => null);
    if (res.ok) {
      state.token = data.token;
      state.user = data.user;
      sessionStorage.setItem('wsrelay.token', data.token);
      sessionStorage.setItem('wsrelay.user', JSON.stringify(data.user));
      location.hash = '#/dashboard';
      render();
    } else if (res.status === 429) {
      err.textContent = `Too many failed logins; try again in ${res.headers.get('Retry-After') || 'a few'} seconds.`;
    } else {
      err.textContent = (data && data.error && data.error.message) || `Login failed (HTTP ${res.status}).`;
    }
  } },
  h('label', {}, 'Email', h('input', { name: 'email', type: 'email', autocomplete: 'username', required: true })),
  h('label', {}, 'Password', h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true })),
  h('button', { class: 'primary', type: 'submit' }, 'Log in'),
  err);
  main.replaceChildren(h('div', { class: 'panel login' }, h('h1', {}, 'Log in to wsrelay'), form));
  form.email.focus();
}

// ---------- dashboard ----------

async function loadEndpoints() {
  const r = await api('GET', '/api/endpoints');
  state.endpoints = r.status === 200 ? r.data.items : [];
  return r;
}

async function loadActiveSessions() {
  const r = await api('GET', '/api/sessions?limit=1000');
  if (r.status === 200) {
    state.sessions.clear();
    for (const s of r.data.items) state.sessions.set(s.id, s);
  }
}

async function renderDashboard() {
  main.replaceChildren(h('h1', {}, 'Dashboard'), h('div', { id: 'dash' }));
  await Promise.all([loadEndpoints(), loadActiveSessions()]);
  renderDashboardBody();
}

function renderDashboardBody() {
  const dash = document.getElementById('dash');
  if (!dash) return;
  const ids = new Set([...state.endpoints.map((e) => e.id), ...state.stats.keys()]);
  if (ids.size === 0) {
    dash.replaceChildren(h('p', { class: 'empty' }, 'No endpoints yet.', isAdmin() ? ' Create one on the Endpoints page.' : ''));
    return;
  }
  const active = (id) => [...state.sessions.values()].filter((s) => s.endpointId === id).length;
  const cards = [...ids].sort().map((id) => {
    const s = state.stats.get(id);
    const r = rates(s);
    const last = s && s.last;
    return h('section', { class: 'panel', 'aria-label': `endpoint ${id}` },
      h('h2', {}, id),
      h('div', { class: 'kpis' },
        kpi(fmtInt(last ? last.activeSessions : active(id)), 'active sessions'),
        kpi(fmtRate(r.mIn), 'msgs/s in'),
        kpi(fmtRate(r.mOut), 'msgs/s out'),
        kpi(fmtBytes(r.bIn) + '/s', 'bytes in'),
        kpi(fmtBytes(r.bOut) + '/s', 'bytes out'),
      ),
      chart(s ? s.series : []),
      h('div', { class: 'legend' },
        h('span', {}, h('span', { class: 'swatch p50' }), 'p50'),
        h('span', {}, h('span', { class: 'swatch p99' }), 'p99'),
        h('span', {}, h('span', { class: 'swatch p999' }), 'p99.9'),
        h('span', {}, 'relay latency per second, last 5 min'),
      ));
  });
  dash.replaceChildren(h('div', { class: 'grid' }, cards));
}

function kpi(value, label) {
  return h('div', { class: 'kpi' }, h('b', {}, value), h('span', {}, label));
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

function chart(series) {
  const W = 360, H = 160, L = 44, B = 16;
  const root = svg('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'latency percentiles' });
  const vals = series.flatMap((p) => [p.p50, p.p99, p.p999]).filter((v) => v !== null);
  if (vals.length === 0) {
    const t = svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' });
    t.textContent = 'no traffic yet';
    root.append(t);
    return root;
  }
  const max = Math.max(...vals) * 1.1 || 1;
  const now = Date.now();
  const x = (t) => L + ((t - (now - SERIES_SECONDS * 1000)) / (SERIES_SECONDS * 1000)) * (W - L - 4);
  const y = (v) => H - B - (v / max) * (H - B - 6);
  for (const f of [0, 0.5, 1]) {
    root.append(svg('line', { class: 'grid-line', x1: L, x2: W - 4, y1: y(max * f), y2: y(max * f) }));
    const label = svg('text', { x: L - 4, y: y(max * f) + 3, 'text-anchor': 'end' });
    label.textContent = fmtUs(max * f);
    root.append(label);
  }
  for (const [key, color] of [['p50', '#1f6feb'], ['p99', '#e07b00'], ['p999', '#c62828']]) {
    const pts = series.filter((p) => p[key] !== null).map((p) => `${x(p.t).toFixed(1)},${y(p[key]).toFixed(1)}`);
    if (pts.length) root.append(svg('polyline', { points: pts.join(' '), fill: 'none', stroke: color, 'stroke-width': 1.5 }));
  }
  return root;
}

// ---------- endpoints ----------

const FIELDS = [
  ['id', 'ID (a-z, 0-9, -)', 'text'],
  ['name', 'Name', 'text'],
  ['targetUrl', 'Target URL (ws:// or wss://)', 'text'],
  ['limits.maxConnections', 'Max connections', 'number'],
  ['limits.maxMessageSize', 'Max message size (bytes)', 'number'],
  ['limits.timeoutMs', 'Idle timeout (ms)', 'number'],
  ['limits.maxMessagesPerSecond', 'Max messages/s per session (empty: none)', 'number'],
  ['sampling.percentage', 'Sampling percentage', 'number'],
  ['sampling.maxSamples', 'Samples kept', 'number'],
  ['allowedOrigins', 'Allowed origins (comma-separated; empty: any)', 'text'],
  ['auth.jwtSecret', 'Client JWT secret (HS256; empty: no auth)', 'password'],
];

function get(obj, path) {
  return path.split('.').reduce((o, k) => (o == null ? undefined : o[k]), obj);
}

async function renderEndpoints() {
  main.replaceChildren(h('h1', {}, 'Endpoints'), h('div', { id: 'ep-form' }), h('div', { id: 'ep-list' }, h('p', { class: 'muted' }, 'Loading…')));
  const r = await loadEndpoints();
  const list = document.getElementById('ep-list');
  if (r.status !== 200) {
    list.replaceChildren(h('p', { class: 'form-error' }, errorText(r)));
    return;
  }
  const toolbar = isAdmin() ? h('div', { class: 'toolbar' }, h('button', { class: 'primary', type: 'button', onclick: () => endpointForm(null) }, 'New endpoint')) : null;
  if (state.endpoints.length === 0) {
    list.replaceChildren(toolbar || '', h('p', { class: 'empty' }, 'No endpoints yet.'));
    return;
  }
  const rows = state.endpoints.map((e) => h('tr', { 'data-endpoint': e.id },
    h('td', { class: 'mono' }, e.id),
    h('td', {}, e.name),
    h('td', { class: 'mono opt' }, e.targetUrl),
    h('td', {}, h('span', { class: e.enabled ? 'badge on' : 'badge off' }, e.enabled ? 'enabled' : 'disabled')),
    h('td', { class: 'num opt' }, fmtInt(e.limits.maxConnections)),
    h('td', { class: 'opt' }, e.sampling.enabled ? `${e.sampling.percentage}%` : 'off'),
    isAdmin() ? h('td', {}, h('div', { class: 'actions' },
      h('button', { type: 'button', onclick: () => endpointForm(e) }, 'Edit'),
      h('button', { type: 'button', onclick: () => toggleEndpoint(e) }, e.enabled ? 'Disable' : 'Enable'),
      h('button', { type: 'button', class: 'danger', onclick: () => deleteEndpoint(e) }, 'Delete'))) : null));
  list.replaceChildren(toolbar || '', h('div', { class: 'panel scroll' }, h('table', {},
    h('thead', {}, h('tr', {}, h('th', {}, 'ID'), h('th', {}, 'Name'), h('th', { class: 'opt' }, 'Target'), h('th', {}, 'State'), h('th', { class: 'num opt' }, 'Max conns'), h('th', { class: 'opt' }, 'Sampling'), isAdmin() ? h('th', {}, 'Actions') : null)),
    h('tbody', {}, rows))));
}

function endpointForm(e) {
  const box = document.getElementById('ep-form');
  const inputs = {};
  const errors = {};
  const fields = FIELDS.map(([path, label, type]) => {
    let v = e ? get(e, path) : undefined;
    if (path === 'allowedOrigins' && Array.isArray(v)) v = v.join(', ');
    const input = h('input', { name: path, type, value: v ?? '', 'aria-describedby': `err-${path}`, disabled: e && path === 'id' });
    if (type === 'password') input.setAttribute('autocomplete', 'new-password');
    inputs[path] = input;
    errors[path] = h('span', { class: 'field-error', id: `err-${path}`, 'data-for': path });
    return h('label', {}, label, input, errors[path]);
  });
  const enabled = h('input', { type: 'checkbox', name: 'enabled', checked: e ? e.enabled : true });
  const sampling = h('input', { type: 'checkbox', name: 'sampling.enabled', checked: e ? e.sampling.enabled : false });
  const formError = h('p', { class: 'form-error full', role: 'alert' });
  const form = h('form', { class: 'fields panel', 'aria-label': e ? `Edit ${e.id}` : 'New endpoint', onsubmit: async (ev) => {
    ev.preventDefault();
    for (const k in errors) { errors[k].textContent = ''; inputs[k].removeAttribute('aria-invalid'); }
    formError.textContent = '';
    const body = { enabled: enabled.checked, limits: {}, sampling: { enabled: sampling.checked } };
    for (const [path, , type] of FIELDS) {
      const raw = inputs[path].value.trim();
      if (e && path === 'id') continue;
      if (raw === '') {
        if (path === 'limits.maxMessagesPerSecond' && e) body.limits.maxMessagesPerSecond = null;
        if (path === 'auth.jwtSecret' && e && e.auth) body.auth = null;
        continue;
      }
      const v = type === 'number' ? Number(raw) : raw;
      if (path === 'allowedOrigins') body.allowedOrigins = raw.split(',').map((s) => s.trim()).filter(Boolean);
      else if (path.includes('.')) { const [a, b] = path.split('.'); body[a] = body[a] || {}; body[a][b] = v; }
      else body[path] = v;
    }
    if (e && !inputs.allowedOrigins.value.trim()) body.allowedOrigins = [];
    const r = e ? await api('PATCH', `/api/endpoints/${encodeURIComponent(e.id)}`, body) : await api('POST', '/api/endpoints', body);
    if (r.status === 200 || r.status === 201) {
      toast(e ? `Endpoint ${e.id} saved.` : `Endpoint ${r.data.id} created.`);
      box.replaceChildren();
      renderEndpoints();
      return;
    }
    const f = r.data && r.data.error && r.data.error.fields;
    if (f) {
      for (const [k, msg] of Object.entries(f)) {
        const key = errors[k] ? k : (k === 'auth' ? 'auth.jwtSecret' : null);
        if (key) { errors[key].textContent = msg; inputs[key].setAttribute('aria-invalid', 'true'); } else formError.textContent += `${k}: ${msg} `;
      }
      const first = Object.keys(f).find((k) => inputs[k]);
      if (first) inputs[first].focus();
    } else {
      formError.textContent = errorText(r);
    }
  } },
  h('h2', { class: 'full' }, e ? `Edit ${e.id}` : 'New endpoint'),
  fields,
  h('label', { class: 'check' }, enabled, 'Enabled'),
  h('label', { class: 'check' }, sampling, 'Sample payloads'),
  formError,
  h('div', { class: 'actions full' }, h('button', { class: 'primary', type: 'submit' }, e ? 'Save' : 'Create'), h('button', { type: 'button', onclick: () => box.replaceChildren() }, 'Cancel')));
  box.replaceChildren(form);
  (e ? inputs.name : inputs.id).focus();
}

async function toggleEndpoint(e) {
  const r = await api('PATCH', `/api/endpoints/${encodeURIComponent(e.id)}`, { enabled: !e.enabled });
  if (r.status === 200) toast(`Endpoint ${e.id} ${e.enabled ? 'disabled' : 'enabled'}.`);
  else toast(errorText(r), true);
  renderEndpoints();
}

async function deleteEndpoint(e) {
  if (!confirm(`Delete endpoint ${e.id}? Its open sessions are closed with 1001.`)) return;
  const r = await api('DELETE', `/api/endpoints/${encodeURIComponent(e.id)}`);
  if (r.status === 204) toast(`Endpoint ${e.id} deleted.`);
  else toast(errorText(r), true);
  renderEndpoints();
}

// ---------- sessions ----------

async function renderSessions() {
  await Promise.all([loadEndpoints(), loadActiveSessions()]);
  const select = h('select', { id: 'session-filter', onchange: () => { state.sessionFilter = select.value; renderSessionRows(); } },
    h('option', { value: '' }, 'All endpoints'),
    state.endpoints.map((e) => h('option', { value: e.id, selected: state.sessionFilter === e.id }, e.id)));
  main.replaceChildren(h('h1', {}, 'Sessions'),
    h('div', { class: 'toolbar' }, h('label', {}, 'Endpoint', select), h('span', { class: 'muted', id: 'session-count' })),
    h('div', { class: 'panel scroll', id: 'session-table' }));
  renderSessionRows();
}

function renderSessionRows() {
  const box = document.getElementById('session-table');
  if (!box) return;
  const rows = [...state.sessions.values()]
    .filter((s) => !state.sessionFilter || s.endpointId === state.sessionFilter)
    .sort((a, b) => (a.startedAt < b.startedAt ? 1 : -1));
  document.getElementById('session-count').textContent = `${rows.length} active`;
  if (rows.length === 0) {
    box.replaceChildren(h('p', { class: 'empty' }, 'No active sessions.'));
    return;
  }
  box.replaceChildren(h('table', {},
    h('thead', {}, h('tr', {}, h('th', {}, 'Session'), h('th', {}, 'Endpoint'), h('th', { class: 'opt' }, 'Client'), h('th', { class: 'opt' }, 'Started'),
      h('th', { class: 'num' }, 'Msgs in'), h('th', { class: 'num' }, 'Msgs out'), h('th', { class: 'num opt' }, 'Bytes in'), h('th', { class: 'num opt' }, 'Bytes out'), h('th', { class: 'opt' }, 'Shard'), isAdmin() ? h('th', {}, '') : null)),
    h('tbody', {}, rows.map((s) => h('tr', { 'data-session': s.id },
      h('td', { class: 'mono', title: s.id }, s.id.slice(0, 8)),
      h('td', {}, s.endpointId),
      h('td', { class: 'mono opt' }, s.clientAddr),
      h('td', { class: 'opt' }, fmtTime(s.startedAt)),
      h('td', { class: 'num' }, fmtInt(s.msgsIn)),
      h('td', { class: 'num' }, fmtInt(s.msgsOut)),
      h('td', { class: 'num opt' }, fmtBytes(s.bytesIn)),
      h('td', { class: 'num opt' }, fmtBytes(s.bytesOut)),
      h('td', { class: 'opt' }, `${s.node} #${s.shard}`),
      isAdmin() ? h('td', {}, h('button', { type: 'button', class: 'danger', onclick: () => killSession(s) }, 'Kill')) : null)))));
}

async function killSession(s) {
  if (!confirm(`Kill session ${s.id}? The client gets close code 1008.`)) return;
  const r = await api('DELETE', `/api/sessions/${encodeURIComponent(s.id)}`);
  if (r.status === 204) toast(`Session ${s.id.slice(0, 8)} killed.`);
  else if (r.status === 404) { toast('That session is already gone.', true); state.sessions.delete(s.id); renderSessionRows(); }
  else toast(errorText(r), true);
}

// ---------- nodes ----------

/** Every node sharing the store (GET /api/nodes): up, draining or down. */
async function renderNodes() {
  const r = await api('GET', '/api/nodes');
  const list = r.status === 200 ? r.data.items : [];
  const refresh = h('button', { type: 'button', onclick: () => renderNodes() }, 'Refresh');
  main.replaceChildren(h('h1', {}, 'Nodes'),
    h('div', { class: 'toolbar' }, refresh, h('span', { class: 'muted' }, `${list.length} node${list.length === 1 ? '' : 's'}`)),
    r.status !== 200 ? h('p', { class: 'form-error' }, errorText(r)) : h('div', { class: 'panel scroll', id: 'node-table' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'Node'), h('th', {}, 'State'), h('th', { class: 'num' }, 'Sessions'), h('th', { class: 'opt' }, 'Version'),
        h('th', { class: 'opt' }, 'Host'), h('th', { class: 'opt' }, 'Started'), h('th', {}, 'Last heartbeat'))),
      h('tbody', {}, list.map((n) => h('tr', { 'data-node': n.id },
        h('td', { class: 'mono' }, n.id),
        h('td', {}, h('span', { class: `state ${n.state}` }, n.state)),
        h('td', { class: 'num' }, fmtInt(n.sessions)),
        h('td', { class: 'opt' }, n.version),
        h('td', { class: 'opt' }, n.host),
        h('td', { class: 'opt' }, fmtTime(n.startedAt)),
        h('td', {}, fmtTime(n.lastHeartbeat))))))));
}

// ---------- samples ----------

function hex(b64) {
  const bin = atob(b64);
  const out = [];
  for (let i = 0; i < bin.length; i++) out.push(bin.charCodeAt(i).toString(16).padStart(2, '0'));
  return out.join(' ');
}

let storedSamples = [];
async function renderSamples() {
  await loadEndpoints();
  if (!state.sampleEndpoint && state.endpoints.length) state.sampleEndpoint = (state.endpoints.find((e) => e.sampling.enabled) || state.endpoints[0]).id;
  const select = h('select', { id: 'sample-endpoint', onchange: () => { state.sampleEndpoint = select.value; renderSamples(); } },
    state.endpoints.map((e) => h('option', { value: e.id, selected: state.sampleEndpoint === e.id }, `${e.id}${e.sampling.enabled ? '' : ' (sampling off)'}`)));
  main.replaceChildren(h('h1', {}, 'Samples'), h('div', { class: 'toolbar' }, h('label', {}, 'Endpoint', select)), h('div', { class: 'panel scroll', id: 'sample-table' }));
  storedSamples = [];
  if (state.sampleEndpoint) {
    const r = await api('GET', `/api/endpoints/${encodeURIComponent(state.sampleEndpoint)}/samples?limit=200`);
    if (r.status === 200) storedSamples = r.data.items;
  }
  renderSampleRows();
}

function renderSampleRows() {
  const box = document.getElementById('sample-table');
  if (!box) return;
  const key = (s) => `${s.sessionId}|${s.capturedAt}|${s.direction}|${s.payload.length}`;
  const seen = new Set();
  const rows = [...state.samples.filter((s) => s.endpointId === state.sampleEndpoint), ...storedSamples]
    .filter((s) => { const k = key(s); if (seen.has(k)) return false; seen.add(k); return true; })
    .slice(0, 200);
  if (rows.length === 0) {
    box.replaceChildren(h('p', { class: 'empty' }, state.endpoints.length ? 'No samples yet. Enable sampling on the endpoint to capture payloads.' : 'No endpoints yet.'));
    return;
  }
  box.replaceChildren(h('table', {},
    h('thead', {}, h('tr', {}, h('th', {}, 'Time'), h('th', { class: 'opt' }, 'Session'), h('th', {}, 'Direction'), h('th', { class: 'num' }, 'Size'), h('th', {}, 'Payload'))),
    h('tbody', {}, rows.map((s) => h('tr', { 'data-sample': s.opcode === 1 ? 'text' : 'binary' },
      h('td', {}, fmtTime(s.capturedAt)),
      h('td', { class: 'mono opt' }, s.sessionId.slice(0, 8)),
      h('td', {}, s.direction === 'client_to_target' ? 'client → target' : 'target → client'),
      h('td', { class: 'num' }, fmtBytes(s.size)),
      h('td', { class: 'mono' }, s.encoding === 'text' ? s.payload : hex(s.payload)))))));
}

// ---------- audit ----------

async function renderAudit() {
  const a = state.audit;
  const q = new URLSearchParams({ page: a.page, limit: a.limit });
  for (const k of ['action', 'entityType', 'since', 'until']) if (a[k]) q.set(k, a[k]);
  const field = (name, label, input) => h('label', {}, label, input);
  const action = h('select', { name: 'action' }, ['', 'endpoint.create', 'endpoint.update', 'endpoint.delete', 'session.kill', 'user.create', 'user.delete', 'login.success', 'login.failure']
    .map((v) => h('option', { value: v, selected: a.action === v }, v || 'any action')));
  const entity = h('select', { name: 'entityType' }, ['', 'endpoint', 'session', 'user'].map((v) => h('option', { value: v, selected: a.entityType === v }, v || 'any entity')));
  const since = h('input', { type: 'date', name: 'since', value: a.since });
  const until = h('input', { type: 'date', name: 'until', value: a.until });
  const filters = h('form', { class: 'toolbar', onsubmit: (e) => {
    e.preventDefault();
    Object.assign(a, { action: action.value, entityType: entity.value, since: since.value, until: until.value, page: 1 });
    renderAudit();
  } },
  field('action', 'Action', action), field('entityType', 'Entity', entity), field('since', 'From', since), field('until', 'Before', until),
  h('button', { type: 'submit', class: 'primary' }, 'Filter'),
  h('button', { type: 'button', onclick: () => exportAudit('csv') }, 'Export CSV'),
  h('button', { type: 'button', onclick: () => exportAudit('ndjson') }, 'Export NDJSON'));
  const table = h('div', { class: 'panel scroll' }, h('p', { class: 'muted' }, 'Loading…'));
  main.replaceChildren(h('h1', {}, 'Audit log'), filters, table);
  const r = await api('GET', `/api/audit?${q}`);
  if (r.status !== 200) { table.replaceChildren(h('p', { class: 'form-error' }, errorText(r))); return; }
  const pages = Math.max(1, Math.ceil(r.data.total / a.limit));
  const diff = (x) => (x === null || x === undefined ? '' : JSON.stringify(x));
  table.replaceChildren(
    r.data.items.length === 0 ? h('p', { class: 'empty' }, 'No audit entries match.') : h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'Time'), h('th', {}, 'Actor'), h('th', {}, 'Action'), h('th', {}, 'Entity'), h('th', { class: 'opt' }, 'Client'), h('th', { class: 'opt' }, 'Before → after'))),
      h('tbody', {}, r.data.items.map((e) => h('tr', { 'data-action': e.action },
        h('td', {}, fmtTime(e.at)), h('td', {}, e.actor), h('td', {}, e.action),
        h('td', { class: 'mono' }, `${e.entityType}${e.entityId ? ' ' + e.entityId : ''}`),
        h('td', { class: 'mono opt' }, e.clientAddr || ''),
        h('td', { class: 'mono opt' }, [diff(e.before), diff(e.after)].filter(Boolean).join(' → ')))))),
    h('div', { class: 'pager' },
      h('button', { type: 'button', disabled: a.page <= 1, onclick: () => { a.page -= 1; renderAudit(); } }, 'Previous'),
      h('span', { id: 'audit-page' }, `Page ${a.page} of ${pages} (${fmtInt(r.data.total)} entries)`),
      h('button', { type: 'button', disabled: a.page >= pages, onclick: () => { a.page += 1; renderAudit(); } }, 'Next')));
}

async function exportAudit(format) {
  const a = state.audit;
  const q = new URLSearchParams({ format });
  if (a.since) q.set('startDate', a.since);
  if (a.until) q.set('endDate', a.until);
  const res = await fetch(`/api/audit/export?${q}`, { headers: { Authorization: `Bearer ${state.token}` } });
  if (res.status === 401) return logout('Your session has expired; log in again.');
  if (!res.ok) return toast(`Export failed (HTTP ${res.status}).`, true);
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const link = h('a', { href: url, download: `wsrelay-audit.${format}` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// ---------- users ----------

async function renderUsers() {
  const r = await api('GET', '/api/users');
  const list = r.status === 200 ? r.data.items : [];
  const err = h('p', { class: 'form-error full', role: 'alert' });
  const email = h('input', { name: 'email', type: 'email', required: true });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'new-password', required: true, minlength: 12 });
  const role = h('select', { name: 'role' }, h('option', { value: 'viewer' }, 'viewer (read only)'), h('option', { value: 'admin' }, 'admin'));
  const form = h('form', { class: 'fields panel', onsubmit: async (e) => {
    e.preventDefault();
    const res = await api('POST', '/api/users', { email: email.value, password: password.value, role: role.value });
    if (res.status === 201) { toast(`User ${res.data.email} added.`); renderUsers(); return; }
    const f = res.data && res.data.error && res.data.error.fields;
    err.textContent = f ? Object.entries(f).map(([k, v]) => `${k}: ${v}`).join('; ') : errorText(res);
  } },
  h('h2', { class: 'full' }, 'Add a user'),
  h('label', {}, 'Email', email), h('label', {}, 'Password (12+ characters)', password), h('label', {}, 'Role', role),
  h('div', { class: 'actions full' }, h('button', { type: 'submit', class: 'primary' }, 'Add user')), err);
  main.replaceChildren(h('h1', {}, 'Users'),
    r.status !== 200 ? h('p', { class: 'form-error' }, errorText(r)) : h('div', { class: 'panel scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'Email'), h('th', {}, 'Role'), h('th', { class: 'opt' }, 'Created'), h('th', {}, ''))),
      h('tbody', {}, list.map((u) => h('tr', { 'data-user': u.email },
        h('td', {}, u.email), h('td', {}, u.role), h('td', { class: 'opt' }, fmtTime(u.createdAt)),
        h('td', {}, u.id === userId() ? h('span', { class: 'muted' }, 'you') : h('button', { type: 'button', class: 'danger', onclick: () => deleteUser(u) }, 'Delete'))))))),
    form);
}

function userId() {
  return state.user && state.user.id;
}

async function deleteUser(u) {
  if (!confirm(`Delete user ${u.email}?`)) return;
  const r = await api('DELETE', `/api/users/${encodeURIComponent(u.id)}`);
  if (r.status === 204) toast(`User ${u.email} deleted.`);
  else toast(errorText(r), true);
  renderUsers();
}

render();
