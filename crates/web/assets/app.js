// ferry dashboard: plain JavaScript, no framework, no build step, no external requests.
// Everything it shows comes from the agent's JSON API (see /api/openapi.json); live
// updates come from the Server-Sent Events stream at /api/v1/stream.
'use strict';

(() => {
  const TOKEN_KEY = 'ferry.token';
  const HEALTH = {
    Current: ['Healthy', 'ok'],
    InProgress: ['Progressing', 'info'],
    Failed: ['Degraded', 'bad'],
    NotFound: ['Missing', 'warn'],
    Terminating: ['Terminating', 'purple'],
    Unknown: ['Unknown', ''],
  };
  const SYNC = {
    Synced: ['Synced', 'ok'],
    OutOfSync: ['OutOfSync', 'warn'],
    Unknown: ['Unknown', ''],
  };

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || '',
    role: null,
    apps: new Map(),
    appsLoaded: false,
    filter: { sync: null, health: null, suspended: false, q: '' },
    sort: { key: 'name', dir: 1 },
    view: null, // the mounted page: {kind: 'overview'|'app', ...}
  };

  // ---------- small helpers ----------

  /** Builds an element; attributes starting with "on" become listeners. Text is never parsed as HTML. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const $ = (sel) => document.querySelector(sel);
  /** Replaces an element's children, skipping null, undefined and false. */
  function put(el, ...kids) {
    el.replaceChildren(...kids.flat().filter((k) => k !== null && k !== undefined && k !== false));
  }
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const short = (sha) => (sha || '').slice(0, 7);

  function ago(when) {
    const t = typeof when === 'number' ? when : Date.parse(when);
    if (!t || Number.isNaN(t)) return '';
    const s = Math.max(0, Math.round((Date.now() - t) / 1000));
    if (s < 5) return 'just now';
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
  }
  function timeEl(when) {
    const t = typeof when === 'number' ? when : Date.parse(when);
    if (!t || Number.isNaN(t)) return h('span', { class: 'muted' }, '—');
    const iso = new Date(t).toISOString();
    return h('time', { datetime: iso, title: iso.replace('T', ' ').replace(/\.\d+Z$/, ' UTC'), 'data-ago': t }, ago(t));
  }
  function badge(map, value, extra) {
    const [label, cls] = map[value] || [value || 'Unknown', ''];
    return h('span', { class: `badge ${cls}`, 'data-value': value }, extra ? `${label} ${extra}` : label);
  }
  const healthBadge = (v) => badge(HEALTH, v);
  const syncBadge = (v) => badge(SYNC, v);
  const objKey = (s) => [s.group, s.version, s.kind, s.namespace || '', s.name].join('/');
  /** An app's identity, `namespace/name`, and its URL path. */
  const appKey = (a) => `${a.appNamespace}/${a.name}`;
  const appPath = (key) => key.split('/').map(encodeURIComponent).join('/');
  const objName = (s) => `${s.kind}/${s.namespace ? s.namespace + '/' : ''}${s.name}`;

  function toast(message, bad) {
    const t = h('div', { class: `toast${bad ? ' bad' : ''}` }, message);
    $('#toasts').append(t);
    setTimeout(() => t.remove(), bad ? 8000 : 4000);
  }

  // ---------- API and sign-in ----------

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function authHeaders() {
    return state.token ? { Authorization: `Bearer ${state.token}` } : {};
  }

  /** Calls the API; on 401 asks for a token and retries. POSTs always send JSON. */
  async function api(path, opts = {}) {
    for (;;) {
      const headers = { Accept: 'application/json', ...authHeaders() };
      let body;
      if (opts.method === 'POST') {
        headers['Content-Type'] = 'application/json';
        body = JSON.stringify(opts.body || {});
      }
      const resp = await fetch(path, { method: opts.method || 'GET', headers, body, cache: 'no-store' });
      if (resp.status === 401) {
        await login(state.token ? 'That token was not accepted.' : '');
        continue;
      }
      const text = await resp.text();
      let data = null;
      try { data = text ? JSON.parse(text) : null; } catch { data = text; }
      if (!resp.ok) throw new HttpError(resp.status, (data && data.error) || `HTTP ${resp.status}`);
      return data;
    }
  }

  let loginPromise = null;
  /** Shows the sign-in dialog until a token is accepted; concurrent callers share it. */
  function login(message) {
    if (loginPromise) return loginPromise;
    loginPromise = new Promise((resolve) => {
      const dialog = $('#login');
      const input = $('#token');
      const error = $('#login-error');
      error.textContent = message || '';
      input.value = '';
      const submit = async (ev) => {
        ev.preventDefault();
        const token = input.value.trim();
        if (!token) return;
        const resp = await fetch('/api/v1/whoami', { headers: { Authorization: `Bearer ${token}` }, cache: 'no-store' });
        if (!resp.ok) {
          error.textContent = resp.status === 401 ? 'That token was not accepted.' : `The agent answered HTTP ${resp.status}.`;
          input.select();
          return;
        }
        state.token = token;
        sessionStorage.setItem(TOKEN_KEY, token);
        $('#login-form').removeEventListener('submit', submit);
        dialog.close();
        loginPromise = null;
        await loadRole();
        resolve();
      };
      $('#login-form').addEventListener('submit', submit);
      if (!dialog.open) dialog.showModal();
      input.focus();
    });
    return loginPromise;
  }

  async function loadRole() {
    try {
      const me = await api('/api/v1/whoami');
      state.role = me.role;
    } catch {
      state.role = null;
    }
    const role = $('#role');
    role.hidden = !state.role;
    role.textContent = state.role || '';
    role.title = state.role === 'viewer' ? 'Read-only: actions need an operator token' : 'May sync, refresh, suspend and roll back';
    $('#signout').hidden = !state.token;
    document.body.dataset.role = state.role || '';
  }
  const canAct = () => state.role === 'operator';

  // ---------- live stream ----------

  function setLive(on) {
    const el = $('#live');
    el.dataset.state = on ? 'on' : 'off';
    el.textContent = on ? 'live' : 'reconnecting…';
    el.title = on ? 'Receiving live updates from the agent' : 'Lost the live stream; reconnecting';
  }

  function handleEvent(block) {
    let name = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) continue;
      if (line.startsWith('event:')) name = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
    if (!data.length) return;
    let payload;
    try { payload = JSON.parse(data.join('\n')); } catch { return; }
    if (name === 'ready') {
      setLive(true);
      loadApps().then(changed).catch(() => {});
    } else if (name === 'app') {
      state.apps.set(appKey(payload), payload);
      changed(appKey(payload));
    } else if (name === 'removed') {
      state.apps.delete(appKey(payload));
      changed(appKey(payload));
    } else if (name === 'resync') {
      loadApps().then(changed).catch(() => {});
    }
  }

  async function stream() {
    let delay = 1000;
    for (;;) {
      try {
        const resp = await fetch('/api/v1/stream', { headers: authHeaders(), cache: 'no-store' });
        if (resp.status === 401) {
          await login('');
          continue;
        }
        if (!resp.ok || !resp.body) throw new Error(`HTTP ${resp.status}`);
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        delay = 1000;
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value.replace(/\r\n/g, '\n');
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            handleEvent(buf.slice(0, i));
            buf = buf.slice(i + 2);
          }
        }
      } catch {
        // fall through to reconnect
      }
      setLive(false);
      await sleep(delay);
      delay = Math.min(delay * 2, 15000);
    }
  }

  async function loadApps() {
    const all = [];
    for (let offset = 0; ;) {
      const page = await api(`/api/v1/apps?limit=1000&offset=${offset}`);
      all.push(...page.items);
      offset += page.items.length;
      if (!page.items.length || offset >= page.total) break;
    }
    state.apps = new Map(all.map((a) => [appKey(a), a]));
    state.appsLoaded = true;
  }

  /** Something changed (an app, or everything): refresh what is on screen, throttled. */
  let pending = false;
  function changed(name) {
    const v = state.view;
    if (v && v.kind === 'app' && (name === undefined || name === v.name)) v.scheduleRefresh();
    if (pending) return;
    pending = true;
    setTimeout(() => {
      pending = false;
      if (state.view && state.view.kind === 'overview') state.view.update();
    }, 150);
  }

  // ---------- overview ----------

  const SYNC_CHIPS = [['Synced', 'ok'], ['OutOfSync', 'warn'], ['Unknown', '']];
  const HEALTH_CHIPS = [['Current', 'ok'], ['InProgress', 'info'], ['Failed', 'bad'], ['NotFound', 'warn'], ['Unknown', '']];

  function matches(a, f, ignore) {
    if (ignore !== 'sync' && f.sync && a.sync !== f.sync) return false;
    if (ignore !== 'health' && f.health && a.health !== f.health) return false;
    if (ignore !== 'suspended' && f.suspended && !a.suspended) return false;
    if (f.q) {
      const q = f.q.toLowerCase();
      const hay = [a.name, a.appNamespace, a.namespace, a.repo, a.path, a.message, a.revision].join(' ').toLowerCase();
      if (!hay.includes(q)) return false;
    }
    return true;
  }

  const SORTS = {
    name: (a) => a.name,
    sync: (a) => a.sync,
    health: (a) => a.health,
    namespace: (a) => a.namespace || '',
    lastSync: (a) => a.lastSyncAt || 0,
  };

  function mountOverview() {
    const f = state.filter;
    const search = h('input', {
      class: 'search', type: 'search', placeholder: 'Search apps…  ( / )', 'aria-label': 'Search apps',
      value: f.q,
      oninput: (e) => { f.q = e.target.value; update(); },
    });
    const chips = h('div', { class: 'chips', role: 'group', 'aria-label': 'Filter by state' });
    const table = h('table', { class: 'apps' });
    const countLine = h('p', { class: 'count-line', 'aria-live': 'polite' });
    const header = (key, label, cls) => h('th', { scope: 'col', class: cls, 'aria-sort': state.sort.key === key ? (state.sort.dir > 0 ? 'ascending' : 'descending') : null },
      h('button', { type: 'button', onclick: () => {
        state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
        mountOverview();
      } }, label, state.sort.key === key ? (state.sort.dir > 0 ? ' ▲' : ' ▼') : ''));
    table.append(h('thead', {}, h('tr', {},
      header('name', 'Name'), header('sync', 'Sync'), header('health', 'Health'),
      header('namespace', 'Namespace', 'col-ns'), h('th', { scope: 'col' }, 'Revision'),
      header('lastSync', 'Last sync'), h('th', { scope: 'col', class: 'col-src' }, 'Source'))));
    const tbody = h('tbody');
    table.append(tbody);

    function chip(label, cls, count, pressed, onclick) {
      return h('button', { type: 'button', class: 'chip', 'aria-pressed': pressed ? 'true' : 'false', onclick },
        cls !== null ? h('span', { class: `dot ${cls}` }) : null, label, h('span', { class: 'n' }, count));
    }

    function update() {
      const apps = [...state.apps.values()];
      put(chips);
      const none = !f.sync && !f.health && !f.suspended;
      chips.append(chip('All', null, apps.length, none, () => { f.sync = f.health = null; f.suspended = false; update(); }));
      for (const [v, cls] of SYNC_CHIPS) {
        const n = apps.filter((a) => a.sync === v && matches(a, f, 'sync')).length;
        chips.append(chip(SYNC[v][0], cls, n, f.sync === v, () => { f.sync = f.sync === v ? null : v; update(); }));
      }
      for (const [v, cls] of HEALTH_CHIPS) {
        const n = apps.filter((a) => a.health === v && matches(a, f, 'health')).length;
        chips.append(chip(HEALTH[v][0], cls, n, f.health === v, () => { f.health = f.health === v ? null : v; update(); }));
      }
      const ns = apps.filter((a) => a.suspended && matches(a, f, 'suspended')).length;
      chips.append(chip('Suspended', 'purple', ns, f.suspended, () => { f.suspended = !f.suspended; update(); }));

      const key = SORTS[state.sort.key];
      const shown = apps.filter((a) => matches(a, f))
        .sort((a, b) => {
          const x = key(a); const y = key(b);
          return (x < y ? -1 : x > y ? 1 : a.name < b.name ? -1 : 1) * state.sort.dir;
        });
      put(tbody, ...shown.map(row));
      if (!shown.length) {
        tbody.append(h('tr', {}, h('td', { colspan: 7, class: 'empty' },
          state.appsLoaded ? (apps.length ? 'No app matches these filters.' : 'The agent has no apps.') : 'Loading…')));
      }
      countLine.textContent = `${shown.length} of ${apps.length} apps`;
    }

    function row(a) {
      return h('tr', { 'data-app': a.name, 'data-app-namespace': a.appNamespace },
        h('td', { class: 'name' }, h('a', { href: `#/apps/${appPath(appKey(a))}` },
          h('span', { class: 'muted' }, `${a.appNamespace}/`), a.name)),
        h('td', {}, syncBadge(a.sync), a.suspended ? [' ', badge({ s: ['Suspended', 'purple'] }, 's')] : null),
        h('td', {}, healthBadge(a.health)),
        h('td', { class: 'col-ns' }, a.namespace || h('span', { class: 'muted' }, '—')),
        h('td', { class: 'rev' }, a.revision
          ? h('div', { class: 'rev-line' }, h('code', { title: a.revision }, short(a.revision)), h('span', { class: 'msg', title: a.message }, a.message))
          : h('span', { class: 'muted' }, a.reason || 'not synced yet')),
        h('td', {}, a.lastSyncAt ? timeEl(a.lastSyncAt) : h('span', { class: 'muted' }, '—')),
        h('td', { class: 'col-src' }, h('div', { class: 'src', title: `${a.repo} ${a.path}` }, a.path ? `${a.repo} · ${a.path}` : a.repo)));
    }

    const main = $('#main');
    put(main,
      h('div', { class: 'toolbar' }, h('h1', {}, 'Apps'), h('span', { class: 'spacer' }), search),
      h('div', { class: 'toolbar' }, chips),
      h('section', { class: 'panel', 'aria-label': 'Apps' }, h('div', { class: 'table-wrap' }, table)),
      countLine);
    put($("#crumbs"));
    document.title = 'Apps · ferry';
    state.view = { kind: 'overview', update, search };
    update();
    if (!state.appsLoaded) loadApps().then(update).catch((e) => toast(`Cannot load apps: ${e.message}`, true));
  }

  // ---------- app page ----------

  function diffView(text) {
    const pre = h('pre', { class: 'code diff', tabindex: 0 });
    for (const line of text.replace(/\n$/, '').split('\n')) {
      let cls = '';
      if (line.startsWith('+++') || line.startsWith('---')) cls = 'file';
      else if (line.startsWith('@@')) cls = 'hunk';
      else if (line.startsWith('+')) cls = 'add';
      else if (line.startsWith('-')) cls = 'del';
      pre.append(h('span', { class: cls }, line || ' '));
    }
    return pre;
  }
  const yamlView = (text) => h('pre', { class: 'code yaml', tabindex: 0 }, ...text.replace(/\n$/, '').split('\n').map((l) => h('span', {}, l || ' ')));

  function driftLine(subject, f) {
    // e.g. "spec.replicas changed by kubectl 2 min ago"
    const parts = [h('span', { class: 'field' }, f.path), ' '];
    if (f.change === 'missing') parts.push('missing on the cluster (set in Git)');
    else {
      parts.push(f.change === 'extra' ? 'added' : 'changed');
      if (f.manager) {
        parts.push(' by ', h('span', { class: 'mgr' }, f.manager));
        if (f.subresource) parts.push(h('span', { class: 'muted' }, ` (${f.subresource})`));
      } else parts.push(' on the cluster');
      if (f.time) parts.push(' ', timeEl(f.time));
      if (f.change === 'extra') parts.push(h('span', { class: 'muted' }, ' (not in Git)'));
    }
    return h('li', { 'data-path': f.path, 'data-manager': f.manager || '' },
      subject ? h('span', { class: 'obj' }, objName(subject)) : null, h('span', {}, ...parts));
  }

  function mountApp(name) {
    const v = {
      kind: 'app', name,
      status: null, tree: null, history: null, events: null, diff: null,
      selected: null, detail: null, tab: null,
      refreshTimer: null, pollTimer: null, loading: false, again: false,
    };
    const head = h('div', { class: 'app-head' });
    const facts = h('div', { class: 'facts' });
    const banners = h('div');
    const drift = h('section', { class: 'panel drift', 'aria-label': 'Drift explained', hidden: true });
    const treePanel = h('section', { class: 'panel', 'aria-labelledby': 'tree-title' },
      h('header', {}, h('h2', { id: 'tree-title' }, 'Resources')), h('div', { class: 'tree-body' }, h('p', { class: 'empty' }, 'Loading…')));
    const detailPanel = h('section', { class: 'panel detail', 'aria-label': 'Object' },
      h('p', { class: 'empty' }, 'Select an object to see its diff against Git, its live YAML and its field managers.'));
    const historyPanel = h('section', { class: 'panel', 'aria-labelledby': 'history-title' },
      h('header', {}, h('h2', { id: 'history-title' }, 'History')), h('div', { class: 'history-body' }, h('p', { class: 'empty' }, 'Loading…')));
    const eventsPanel = h('section', { class: 'panel', 'aria-labelledby': 'events-title' },
      h('header', {}, h('h2', { id: 'events-title' }, 'Events')), h('div', { class: 'events-body' }, h('p', { class: 'empty' }, 'Loading…')));
    put($('#main'), head, facts, banners, drift,
      h('div', { class: 'grid' }, treePanel, detailPanel),
      h('div', { class: 'grid2' }, historyPanel, eventsPanel));
    put($('#crumbs'), h('a', { href: '#/' }, 'Apps'), h('span', { class: 'sep', 'aria-hidden': 'true' }, '/'), h('span', {}, name));
    document.title = `${name} · ferry`;

    async function act(action, body, label) {
      try {
        await api(`/api/v1/apps/${appPath(name)}/${action}`, { method: 'POST', body });
        toast(label);
        v.scheduleRefresh(300);
      } catch (e) {
        toast(`${action} failed: ${e.message}`, true);
      }
    }

    function renderHead() {
      const s = v.status;
      const actionBtn = (label, action, toastText, cls, extra) => h('button', {
        type: 'button', class: `btn ${cls || ''}`, 'data-action': action,
        disabled: !canAct(), title: canAct() ? null : 'Needs an operator token',
        onclick: async (e) => {
          e.currentTarget.disabled = true;
          await act(action, undefined, toastText);
          renderHead();
        },
      }, label, extra);
      put(head,
        h('div', { class: 'title' }, h('h1', {}, name), syncBadge(s.sync), healthBadge(s.health),
          s.suspended ? badge({ s: ['Suspended', 'purple'] }, 's') : null,
          s.pinned ? badge({ p: ['Rolled back', 'purple'] }, 'p', short(s.pinned)) : null),
        h('div', { class: 'actions' },
          actionBtn('Refresh', 'refresh', 'Refresh requested: fetching Git'),
          s.suspended || s.pinned
            ? actionBtn('Resume', 'resume', 'Resumed')
            : actionBtn('Suspend', 'suspend', 'Suspended'),
          actionBtn('Sync', 'sync', 'Sync requested', 'primary')));
      const src = s.spec.source;
      const ready = (s.conditions || []).find((c) => c.type === 'Ready');
      put(facts,
        h('span', {}, 'Revision ', s.revision ? h('b', { class: 'mono', title: s.revision }, short(s.revision)) : h('b', {}, '—'), s.message ? ` ${s.message}` : ''),
        h('span', {}, 'Source ', h('b', {}, src.repo), src.path ? ` · ${src.path}` : '', src.ref ? ` @ ${src.ref}` : ''),
        h('span', {}, 'Namespace ', h('b', {}, s.spec.destination.namespace || '—')),
        h('span', {}, 'Last sync ', s.lastSyncAt ? timeEl(s.lastSyncAt) : '—'),
        h('span', {}, 'Self-heal ', h('b', {}, s.spec.selfHeal === false ? 'off' : 'on')),
        ready ? h('span', {}, 'Status ', h('b', {}, ready.reason)) : null);
      const b = [];
      if (s.suspended) {
        b.push(h('div', { class: 'banner purple', role: 'status' }, h('span', { class: 'grow' }, 'Reconciliation is suspended: ferry neither applies Git nor heals drift for this app.')));
      }
      if (s.pinned) {
        b.push(h('div', { class: 'banner purple', role: 'status' }, h('span', { class: 'grow' },
          `Rolled back: pinned to revision ${short(s.pinned)} until resumed. New commits are not deployed meanwhile.`)));
      }
      const stalled = (s.conditions || []).find((c) => c.type === 'Stalled' && c.status === 'True');
      if (stalled || (ready && ready.status === 'False' && /Failed$/.test(ready.reason))) {
        const c = stalled || ready;
        b.push(h('div', { class: 'banner bad', role: 'alert' }, h('b', {}, c.reason), h('span', { class: 'grow' }, c.message)));
      }
      put(banners, ...b);
    }

    function renderDrift() {
      const s = v.status;
      const lines = [];
      if (s.sync === 'OutOfSync' && v.diff) {
        for (const c of v.diff.changes) {
          if (c.action === 'unchanged' || c.action === 'orphan') continue;
          if (c.drift && c.drift.length) {
            for (const f of c.drift) lines.push(driftLine(c.subject, f));
          } else {
            const what = { create: 'missing on the cluster (will be created)', prune: 'left Git (will be pruned)', recreate: 'will be re-created', update: 'differs from Git' }[c.action] || c.action;
            lines.push(h('li', {}, h('span', { class: 'obj' }, objName(c.subject)), h('span', {}, what)));
          }
        }
      } else if (s.sync === 'OutOfSync') {
        for (const o of s.drifted || []) lines.push(h('li', {}, h('span', { class: 'obj' }, objName(o)), h('span', { class: 'muted' }, 'differs from Git')));
      }
      drift.hidden = !lines.length;
      const heal = s.spec.selfHeal === false ? 'Self-heal is off: press Sync to restore what Git says.' : 'Self-heal is on: ferry restores what Git says.';
      put(drift,
        h('header', {}, h('h2', {}, 'Drift explained'), h('span', { class: 'muted' }, heal)),
        h('ul', {}, ...lines));
    }

    function renderTree() {
      const body = treePanel.querySelector('.tree-body');
      if (!v.tree) return;
      if (v.tree.error) { put(body, h('p', { class: 'empty' }, v.tree.error)); return; }
      const item = (n) => {
        const key = objKey(n.subject);
        const [hl] = HEALTH[n.health.status] || [n.health.status];
        const btn = h('button', {
          type: 'button', class: `node${n.managed ? '' : ' child'}`, 'data-key': key,
          'data-kind': n.subject.kind, 'data-name': n.subject.name, 'data-health': n.health.status,
          'aria-current': v.selected && objKey(v.selected) === key ? 'true' : 'false',
          title: `${objName(n.subject)}: ${hl}${n.health.message ? ` — ${n.health.message}` : ''}`,
          onclick: () => select(n.subject),
        },
        h('span', { class: `hd ${n.health.status}`, role: 'img', 'aria-label': hl }),
        h('span', { class: 'kind' }, n.subject.kind), h('span', { class: 'nm' }, n.subject.name),
        n.drifted ? h('span', { class: 'badge warn' }, 'drift') : null,
        h('span', { class: 'inf' }, n.info || (n.health.status === 'Current' ? '' : hl)));
        return h('li', {}, btn, n.children.length ? h('ul', {}, ...n.children.map(item)) : null);
      };
      put(body, v.tree.nodes.length
        ? h('ul', { class: 'tree' }, ...v.tree.nodes.map(item))
        : h('p', { class: 'empty' }, 'No objects yet.'));
    }

    function select(subject) {
      v.selected = subject;
      v.tab = null;
      v.detail = null;
      renderTree();
      renderDetail();
      loadDetail();
    }

    async function loadDetail() {
      const s = v.selected;
      if (!s) return;
      const q = new URLSearchParams({ group: s.group, version: s.version, kind: s.kind, name: s.name });
      if (s.namespace) q.set('namespace', s.namespace);
      try {
        const d = await api(`/api/v1/apps/${appPath(name)}/resource?${q}`);
        if (v.selected !== s) return;
        v.detail = d;
      } catch (e) {
        if (v.selected !== s) return;
        v.detail = { error: e.message };
      }
      renderDetail();
    }

    function renderDetail() {
      const s = v.selected;
      if (!s) return;
      const d = v.detail;
      const header = h('header', {}, h('h2', {}, h('span', { class: 'muted' }, `${s.kind} `), s.name),
        d && d.health ? healthBadge(d.health.status) : null);
      if (!d) { put(detailPanel, header, h('p', { class: 'empty' }, 'Loading…')); return; }
      if (d.error) { put(detailPanel, header, h('p', { class: 'empty' }, d.error)); return; }
      const c = d.comparison;
      const tabs = [];
      if (c) tabs.push(['diff', 'Diff']);
      tabs.push(['live', 'Live YAML']);
      if (c && c.desiredYaml) tabs.push(['desired', 'Desired YAML']);
      tabs.push(['managers', 'Field managers']);
      if (!v.tab || !tabs.some(([id]) => id === v.tab)) v.tab = tabs[0][0];
      const tablist = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Object views' });
      for (const [id, label] of tabs) {
        tablist.append(h('button', {
          type: 'button', role: 'tab', class: 'tab', id: `tab-${id}`, 'data-tab': id,
          'aria-selected': v.tab === id ? 'true' : 'false', tabindex: v.tab === id ? 0 : -1,
          'aria-controls': 'tabpanel',
          onclick: () => { v.tab = id; renderDetail(); detailPanel.querySelector(`#tab-${id}`).focus(); },
          onkeydown: (e) => {
            const i = tabs.findIndex(([t]) => t === id);
            const next = e.key === 'ArrowRight' ? tabs[(i + 1) % tabs.length] : e.key === 'ArrowLeft' ? tabs[(i + tabs.length - 1) % tabs.length] : null;
            if (next) { e.preventDefault(); v.tab = next[0]; renderDetail(); detailPanel.querySelector(`#tab-${next[0]}`).focus(); }
          },
        }, label));
      }
      let content;
      if (v.tab === 'diff') {
        if (c.error) content = h('p', { class: 'empty' }, c.error);
        else if (!c.diff) content = h('div', { class: 'insync' }, syncBadge('Synced'), 'Matches Git.');
        else content = diffView(c.diff);
      } else if (v.tab === 'live') {
        content = d.yaml ? yamlView(d.yaml) : h('p', { class: 'empty' }, 'The object does not exist in the cluster.');
      } else if (v.tab === 'desired') {
        content = yamlView(c.desiredYaml);
      } else {
        content = d.managers.length
          ? h('dl', { class: 'kv' }, ...d.managers.flatMap((m) => [
            h('dt', {}, m.manager),
            h('dd', {}, [m.operation, m.subresource ? `subresource ${m.subresource}` : null].filter(Boolean).join(', '), m.time ? [' · ', timeEl(m.time)] : '')]))
          : h('p', { class: 'empty' }, 'No field managers.');
      }
      const driftList = c && c.drift && c.drift.length
        ? h('div', { class: 'drift' }, h('ul', {}, ...c.drift.map((f) => driftLine(null, f)))) : null;
      const health = d.health && d.health.message ? h('p', { class: 'body muted' }, d.health.message) : null;
      put(detailPanel, header, health, driftList, tablist, h('div', { id: 'tabpanel', role: 'tabpanel', 'aria-labelledby': `tab-${v.tab}` }, content));
    }

    function renderHistory() {
      const body = historyPanel.querySelector('.history-body');
      if (!v.history) return;
      if (v.history.error) { put(body, h('p', { class: 'empty' }, v.history.error)); return; }
      if (!v.history.length) { put(body, h('p', { class: 'empty' }, 'No syncs yet.')); return; }
      const current = v.history.find((e) => e.outcome === 'succeeded' && e.revision === v.status.revision);
      const seen = new Set();
      const items = v.history.map((e) => {
        const sum = e.summary || {};
        const counts = [sum.create ? `+${sum.create}` : '', sum.update ? `~${sum.update}` : '', sum.prune ? `−${sum.prune}` : ''].filter(Boolean).join(' ') || 'no changes';
        const canRollback = e.outcome === 'succeeded' && e.revision && e.revision !== v.status.revision && !seen.has(e.revision);
        if (e.revision) seen.add(e.revision);
        return h('li', { class: `${e.outcome}${e === current ? ' current' : ''}`, 'data-id': e.id, 'data-revision': e.revision },
          h('div', { class: 'tl-head' },
            h('code', { title: e.revision }, short(e.revision) || '—'),
            h('span', { class: 'tl-msg' }, e.message || ''),
            e === current ? h('span', { class: 'badge ok plain' }, 'current') : null,
            canRollback ? h('button', {
              type: 'button', class: 'btn small danger', 'data-rollback': e.id,
              disabled: !canAct(), title: canAct() ? `Roll back to ${short(e.revision)}` : 'Needs an operator token',
              onclick: () => rollback(e),
            }, 'Roll back') : null),
          h('div', { class: 'tl-meta' }, `#${e.id} · ${e.trigger} · ${e.outcome} · ${counts} · `, timeEl(e.started_at), ` · ${e.duration_ms} ms`),
          e.error ? h('div', { class: 'tl-err' }, e.error) : null,
          phasesOf(e.changeset));
      });
      put(body, h('ol', { class: 'timeline' }, ...items));
    }

    // The waves and hooks of one sync: which ran, their result and how long.
    function phasesOf(cs) {
      const waves = (cs && cs.waves) || [];
      const hooks = (cs && cs.hooks) || [];
      if (!waves.length && !hooks.length) return null;
      const secs = (ms) => (ms == null ? '' : ` · ${(ms / 1000).toFixed(1)} s`);
      return h('ul', { class: 'tl-hooks' },
        ...waves.map((w) => h('li', { class: w.result }, `wave ${w.wave} · ${w.objects} object(s) · ${w.result}${secs(w.duration_ms)}${w.message ? ` · ${w.message}` : ''}`)),
        ...hooks.map((k) => h('li', { class: k.result }, `${k.phase} hook ${k.subject.kind}/${k.subject.name} · ${k.result}${secs(k.duration_ms)}${k.message ? ` · ${k.message}` : ''}`)));
    }

    async function rollback(e) {
      const ok = await confirmDialog(`Roll back ${name}?`,
        `Deploy revision ${short(e.revision)} (“${e.message}”) and pin the app to it. New commits are not deployed until you press Resume.`,
        'Roll back');
      if (ok) await act('rollback', { target: String(e.id) }, `Rolling back to ${short(e.revision)}`);
    }

    function renderEvents() {
      const body = eventsPanel.querySelector('.events-body');
      if (!v.events) return;
      if (v.events.error) { put(body, h('p', { class: 'empty' }, v.events.error)); return; }
      if (!v.events.length) { put(body, h('p', { class: 'empty' }, 'No events.')); return; }
      put(body, h('ul', { class: 'events' }, ...v.events.map((e) => h('li', { class: e.type },
        h('div', { class: 'ev-head' }, h('span', { class: 'reason' }, e.reason), h('span', { class: 'muted' }, `${e.object.kind}/${e.object.name}`),
          e.count > 1 ? h('span', { class: 'muted' }, `×${e.count}`) : null, h('span', { class: 'spacer' }), e.time ? timeEl(e.time) : null),
        h('div', {}, e.message)))));
    }

    const settle = (p) => p.then((x) => x, (e) => ({ error: e.message, status: e.status }));

    async function refresh() {
      if (v.loading) { v.again = true; return; }
      v.loading = true;
      try {
        const base = `/api/v1/apps/${appPath(name)}`;
        const status = await settle(api(base));
        if (state.view !== v) return;
        if (status.error) {
          put(head, h('div', { class: 'title' }, h('h1', {}, name)));
          put(banners, h('div', { class: 'banner bad', role: 'alert' }, status.status === 404 ? `There is no app named “${name}”.` : status.error));
          return;
        }
        v.status = status;
        renderHead();
        const [tree, history, events, diff] = await Promise.all([
          settle(api(`${base}/tree`)),
          settle(api(`${base}/history?limit=30`)),
          settle(api(`${base}/events`)),
          status.sync === 'OutOfSync' ? settle(api(`${base}/diff`)) : Promise.resolve(null),
        ]);
        if (state.view !== v) return;
        v.tree = tree;
        v.history = history.error ? history : history.items;
        v.events = events.error ? events : events.items;
        v.diff = diff && !diff.error ? diff : null;
        renderDrift();
        renderTree();
        renderHistory();
        renderEvents();
        if (v.selected) await loadDetail();
      } finally {
        v.loading = false;
        if (v.again) { v.again = false; refresh(); }
      }
    }

    v.scheduleRefresh = (delay = 400) => {
      clearTimeout(v.refreshTimer);
      v.refreshTimer = setTimeout(refresh, delay);
    };
    // Pods and ReplicaSets change without the app's status changing: poll the tree too.
    v.pollTimer = setInterval(() => { if (!document.hidden) refresh(); }, 15000);
    v.unmount = () => { clearTimeout(v.refreshTimer); clearInterval(v.pollTimer); };
    state.view = v;
    refresh();
  }

  // ---------- dialogs ----------

  function confirmDialog(title, body, okLabel) {
    return new Promise((resolve) => {
      const dialog = $('#confirm');
      $('#confirm-title').textContent = title;
      $('#confirm-body').textContent = body;
      $('#confirm-ok').textContent = okLabel || 'Confirm';
      const form = $('#confirm-form');
      const done = (ok) => {
        form.removeEventListener('submit', onSubmit);
        $('#confirm-cancel').removeEventListener('click', onCancel);
        dialog.removeEventListener('close', onClose);
        if (dialog.open) dialog.close();
        resolve(ok);
      };
      const onSubmit = (e) => { e.preventDefault(); done(true); };
      const onCancel = () => done(false);
      const onClose = () => done(false);
      form.addEventListener('submit', onSubmit);
      $('#confirm-cancel').addEventListener('click', onCancel);
      dialog.addEventListener('close', onClose);
      dialog.showModal();
      $('#confirm-cancel').focus();
    });
  }

  // ---------- routing and start ----------

  function route() {
    if (state.view && state.view.unmount) state.view.unmount();
    const m = location.hash.match(/^#\/apps\/([^/?]+)\/([^/?]+)/);
    if (m) mountApp(`${decodeURIComponent(m[1])}/${decodeURIComponent(m[2])}`);
    else mountOverview();
    $('#main').focus({ preventScroll: true });
  }

  document.addEventListener('keydown', (e) => {
    const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
    if (e.key === '/' && !typing && state.view && state.view.kind === 'overview') {
      e.preventDefault();
      state.view.search.focus();
    }
  });
  // Keep relative times fresh.
  setInterval(() => {
    for (const t of document.querySelectorAll('time[data-ago]')) t.textContent = ago(Number(t.dataset.ago));
  }, 10000);

  $('#signout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = '';
    location.reload();
  });
  $('#login').addEventListener('cancel', (e) => e.preventDefault());

  window.addEventListener('hashchange', route);
  (async () => {
    await loadRole();
    route();
    stream();
  })();
})();
