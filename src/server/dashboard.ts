/**
 * The live dashboard: one self-contained HTML page (inline CSS and JS, no external
 * assets, no build step). It polls `status` of this node and of every member whose HTTP
 * address is known (or the status URLs given as `?nodes=`), every 500 ms, and renders a
 * row per node, the leader highlighted, a commit-rate sparkline per node and the recent
 * leader changes.
 *
 * The script and style are exported separately so the HTTP layer can pin them with CSP
 * hashes. They are String.raw templates: no backticks or dollar-brace inside.
 */

export const DASHBOARD_STYLE = `
:root {
  color-scheme: light dark;
  --bg: #f6f7f9; --fg: #1b1f24; --muted: #57606a; --card: #ffffff; --line: #d0d7de;
  --leader-bg: #fff4d6; --leader-edge: #b7791f; --ok: #1a7f37; --bad: #b42318; --warn: #9a6700;
  --spark: #0969da;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0d1117; --fg: #e6edf3; --muted: #9da7b3; --card: #161b22; --line: #30363d;
    --leader-bg: #3a2f12; --leader-edge: #e3b341; --ok: #3fb950; --bad: #f85149; --warn: #d29922;
    --spark: #58a6ff;
  }
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
header { padding: 16px 24px 8px; display: flex; flex-wrap: wrap; align-items: baseline; gap: 8px 24px; }
h1 { font-size: 22px; margin: 0; }
h1 small { font-weight: 400; color: var(--muted); font-size: 15px; }
h2 { font-size: 16px; margin: 0 0 8px; }
main { padding: 8px 24px 24px; display: grid; gap: 16px; align-items: start; grid-template-columns: minmax(0, 3fr) minmax(260px, 1fr); }
@media (max-width: 900px) { main { grid-template-columns: minmax(0, 1fr); } }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; min-width: 0; }
#summary { margin: 0; display: flex; flex-wrap: wrap; gap: 6px 18px; color: var(--muted); }
#summary b { color: var(--fg); }
.pill { display: inline-block; padding: 1px 10px; border-radius: 999px; font-weight: 600; border: 1px solid currentColor; }
.pill.ok { color: var(--ok); } .pill.bad { color: var(--bad); } .pill.warn { color: var(--warn); }
.scroll { overflow-x: auto; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
caption { text-align: left; color: var(--muted); padding-bottom: 6px; font-size: 13px; }
th, td { padding: 7px 8px; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; }
thead th { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); font-weight: 600; }
tbody th { font-weight: 700; }
td, th { vertical-align: middle; }
td.num, th.num { text-align: right; }
tr.leader > * { background: var(--leader-bg); }
tr.leader > :first-child { box-shadow: inset 4px 0 0 var(--leader-edge); }
tr.down > * { color: var(--muted); }
.badge { display: inline-block; font-size: 12px; font-weight: 700; padding: 0 7px; border-radius: 4px; border: 1px solid var(--line); }
tr.leader .badge { border-color: var(--leader-edge); }
.state { font-size: 13px; }
.state.ok { color: var(--ok); } .state.bad { color: var(--bad); }
.spark { display: inline-flex; align-items: flex-end; gap: 8px; }
.spark .rate { line-height: 1; }
.spark svg { display: block; }
.spark polyline { fill: none; stroke: var(--spark); stroke-width: 1.5; }
.spark .base { stroke: var(--line); stroke-width: 1; }
.rate { min-width: 4.5em; text-align: right; display: inline-block; }
#events { list-style: none; margin: 0; padding: 0; max-height: 520px; overflow: auto; font-size: 14px; }
#events li { padding: 6px 0; border-bottom: 1px solid var(--line); }
#events time { color: var(--muted); font-variant-numeric: tabular-nums; margin-right: 8px; }
#events .who { color: var(--muted); font-size: 12px; }
.empty { color: var(--muted); font-style: italic; }
#alerts { margin: 0; flex-basis: 100%; display: flex; flex-direction: column; gap: 4px; }
.alert { color: var(--bad); font-weight: 600; overflow-wrap: anywhere; }
footer { padding: 0 24px 24px; color: var(--muted); font-size: 13px; }
footer a { color: inherit; }
code { font-size: 13px; }
`;

export const DASHBOARD_SCRIPT = String.raw`
'use strict';
(function () {
  var POLL_MS = 500, HISTORY = 60, TIMEOUT_MS = 2000, MAX_EVENTS = 40;
  var body = document.body;
  var errors = 0;
  function noteError() { errors++; body.setAttribute('data-errors', String(errors)); }
  window.addEventListener('error', noteError);
  window.addEventListener('unhandledrejection', noteError);

  function normalize(u) {
    if (!/^https?:\/\//i.test(u)) u = 'http://' + u;
    var url = new URL(u);
    if (url.pathname === '/' || url.pathname === '') url.pathname = '/status';
    return url.href;
  }

  var params = new URLSearchParams(location.search);
  var explicit = (params.get('nodes') || '').split(',').map(function (s) { return s.trim(); })
    .filter(Boolean).map(normalize);
  var discover = explicit.length === 0;
  var sources = new Map();
  function addSource(url, discovered) {
    if (sources.has(url)) return;
    sources.set(url, { url: url, discovered: discovered, st: null, ok: false, err: 'waiting', hist: [],
      inflight: false, dup: false, seenOk: false });
  }
  if (explicit.length > 0) explicit.forEach(function (u) { addSource(u, false); });
  else addSource(new URL('status', location.href).href, false);

  // ?supervisor=host:port: the report of the process that runs the nodes (raftkv cluster), naming the
  // nodes that are down and why.
  var supParam = params.get('supervisor');
  var supUrl = null;
  if (supParam) {
    supUrl = /^https?:\/\//i.test(supParam) ? supParam : 'http://' + supParam;
    var su = new URL(supUrl);
    if (su.pathname === '/' || su.pathname === '') su.pathname = '/nodes';
    supUrl = su.href;
  }
  var supById = new Map(), supByHost = new Map(), supInflight = false;
  function pollSupervisor() {
    if (!supUrl || supInflight) return;
    supInflight = true;
    var ctl = new AbortController();
    var timer = setTimeout(function () { ctl.abort(); }, TIMEOUT_MS);
    fetch(supUrl, { signal: ctl.signal, cache: 'no-store' }).then(function (r) {
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return r.json();
    }).then(function (j) {
      supById = new Map(); supByHost = new Map();
      (j && Array.isArray(j.nodes) ? j.nodes : []).forEach(function (n) {
        if (!n || typeof n.id !== 'string') return;
        supById.set(n.id, n);
        if (typeof n.http === 'string') supByHost.set(n.http, n);
      });
    }).catch(function () { /* the supervisor is optional */ }).finally(function () {
      clearTimeout(timer);
      supInflight = false;
      scheduleRender();
    });
  }

  // ---------------------------------------------------------------- events
  var events = new Map();
  function addEvent(key, at, text, who, kind) {
    var e = events.get(key);
    if (e) { if (who && e.who.indexOf(who) < 0) e.who.push(who); return; }
    events.set(key, { at: at, text: text, who: who ? [who] : [], kind: kind });
    if (events.size > 400) {
      var old = Array.from(events.entries()).sort(function (a, b) { return a[1].at - b[1].at; });
      for (var i = 0; i < old.length - 200; i++) events.delete(old[i][0]);
    }
  }
  function noteServerEvents(st) {
    (st.events || []).forEach(function (e) {
      // Leader changes only: one line per (term, leader), naming the nodes that saw it.
      if (e.kind === 'leader-elected') addEvent('L|' + e.term + '|' + e.leader, e.at, e.message, st.id, e.kind);
      else if (e.kind === 'leader-lost') addEvent('X|' + e.term + '|' + st.id, e.at, st.id + ': ' + e.message, '', e.kind);
    });
  }

  // ---------------------------------------------------------------- polling
  function pollOne(src) {
    if (src.inflight || src.dup) return;
    src.inflight = true;
    var ctl = new AbortController();
    var timer = setTimeout(function () { ctl.abort(); }, TIMEOUT_MS);
    fetch(src.url, { signal: ctl.signal, cache: 'no-store' }).then(function (r) {
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return r.json();
    }).then(function (st) {
      if (!st || typeof st.id !== 'string') throw new Error('not a raftkv status');
      for (var other of sources.values()) {
        if (other !== src && other.ok && other.st && other.st.id === st.id && !other.dup) {
          if (src.discovered) { src.dup = true; return; }
        }
      }
      if (src.seenOk && !src.ok) addEvent('up|' + st.id + '|' + Date.now(), Date.now(), st.id + ' reachable again', '', 'up');
      src.st = st; src.ok = true; src.err = ''; src.seenOk = true;
      // Rates use the node's own clock: immune to polling jitter and to a throttled tab.
      src.hist.push({ t: typeof st.time === 'number' ? st.time : Date.now(), commit: st.commit });
      if (src.hist.length > HISTORY + 1) src.hist.shift();
      noteServerEvents(st);
      if (discover) (st.members || []).forEach(function (m) { if (m.http) addSource(normalize(m.http), true); });
    }).catch(function (e) {
      var why = e && e.name === 'AbortError' ? 'timeout' : (e && e.message) || String(e);
      if (src.ok && src.st) addEvent('down|' + src.st.id + '|' + Date.now(), Date.now(), src.st.id + ' unreachable (' + why + ')', '', 'down');
      src.ok = false; src.err = why;
      var prevT = src.hist.length ? src.hist[src.hist.length - 1].t : 0;
      src.hist.push({ t: prevT, commit: null });
      if (src.hist.length > HISTORY + 1) src.hist.shift();
    }).finally(function () {
      clearTimeout(timer);
      src.inflight = false;
      scheduleRender();
    });
  }
  function pollAll() { sources.forEach(pollOne); pollSupervisor(); }

  // ---------------------------------------------------------------- rendering
  var pending = false, eventsSig = null;
  function scheduleRender() {
    if (pending) return;
    pending = true;
    setTimeout(function () { pending = false; render(); }, 30);
  }
  function el(tag, attrs, kids) {
    var n = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { n.setAttribute(k, attrs[k]); });
    (kids || []).forEach(function (k) { if (k != null) n.append(k); });
    return n;
  }
  var SVG = 'http://www.w3.org/2000/svg';
  function rates(hist) {
    var out = [];
    // Each point spans up to two polling intervals (about 1 s), to smooth out batching.
    for (var i = 1; i < hist.length; i++) {
      var a = hist[i >= 2 && hist[i - 2].commit != null ? i - 2 : i - 1], b = hist[i];
      if (a.commit == null || b.commit == null || b.t <= a.t) { out.push(null); continue; }
      out.push(Math.max(0, (b.commit - a.commit) * 1000 / (b.t - a.t)));
    }
    return out;
  }
  function sparkline(hist) {
    var r = rates(hist), W = 96, H = 24;
    var max = 1;
    r.forEach(function (v) { if (v != null && v > max) max = v; });
    var svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('width', String(W)); svg.setAttribute('height', String(H));
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H); svg.setAttribute('aria-hidden', 'true');
    var base = document.createElementNS(SVG, 'line');
    base.setAttribute('x1', '0'); base.setAttribute('x2', String(W));
    base.setAttribute('y1', String(H - 1)); base.setAttribute('y2', String(H - 1));
    base.setAttribute('class', 'base');
    svg.append(base);
    var pts = [], step = W / HISTORY, x0 = W - r.length * step;
    r.forEach(function (v, i) {
      if (v == null) return;
      pts.push((x0 + (i + 1) * step).toFixed(1) + ',' + (H - 2 - (v / max) * (H - 4)).toFixed(1));
    });
    if (pts.length > 0) {
      var pl = document.createElementNS(SVG, 'polyline');
      pl.setAttribute('points', pts.join(' '));
      svg.append(pl);
    }
    var last = null;
    for (var i = r.length - 1; i >= 0 && i >= r.length - 4; i--) if (r[i] != null) { last = (last || 0) + r[i]; }
    var n = 0;
    for (var j = r.length - 1; j >= 0 && j >= r.length - 4; j--) if (r[j] != null) n++;
    var now = n > 0 ? last / n : null;
    var label = now == null ? '—' : (now >= 100 ? Math.round(now) : now.toFixed(1)) + '/s';
    return el('span', { class: 'spark', role: 'img', 'aria-label': 'commit rate ' + label + ' over the last ' + (HISTORY * POLL_MS / 1000) + ' s' },
      [el('span', { class: 'rate' }, [label]), svg]);
  }
  function hostOf(u) { try { return new URL(u).host; } catch (e) { return u; } }
  function fmt(n) { return n == null ? '—' : Number(n).toLocaleString('en-US'); }
  function time(ms) {
    var d = new Date(ms);
    return d.toLocaleTimeString('en-GB', { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
  }

  function render() {
    var byId = new Map();
    sources.forEach(function (s) {
      if (s.dup) return;
      var id = s.st ? s.st.id : null;
      var key = id || '\uffff' + s.url;
      var cur = byId.get(key);
      if (!cur || (!cur.ok && s.ok)) byId.set(key, s);
    });
    // The leader: the reachable node that says it leads, with the highest term.
    var leader = null;
    byId.forEach(function (s) {
      if (s.ok && s.st.role === 'leader' && (!leader || s.st.term > leader.st.term)) leader = s;
    });
    // Members known from any status but not polled (no HTTP address).
    var members = new Map();
    byId.forEach(function (s) {
      if (s.st) (s.st.members || []).forEach(function (m) { if (!members.has(m.id)) members.set(m.id, m); });
    });
    members.forEach(function (m, id) { if (!byId.has(id)) byId.set(id, { url: '', ok: false, st: null, err: 'no HTTP address known', hist: [], member: m }); });

    var progress = new Map();
    if (leader) (leader.st.progress || []).forEach(function (p) { progress.set(p.id, p); });
    var maxTerm = 0, maxCommit = 0, reachable = 0;
    byId.forEach(function (s) {
      if (s.ok) { reachable++; maxTerm = Math.max(maxTerm, s.st.term); maxCommit = Math.max(maxCommit, s.st.commit); }
    });

    var rows = Array.from(byId.entries()).sort(function (a, b) { return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0; });
    var tbody = el('tbody');
    var downNotes = [];
    rows.forEach(function (entry) {
      var s = entry[1], st = s.st, id = st ? st.id : entry[0];
      if (!st && !s.member) id = hostOf(s.url);
      var sv = supById.get(id) || (s.url ? supByHost.get(hostOf(s.url)) : undefined);
      var svDown = !s.ok && sv && sv.state === 'down';
      if (svDown) {
        id = sv.id;
        var lines = Array.isArray(sv.lastLines) ? sv.lastLines : [];
        downNotes.push({ id: sv.id, text: sv.id + ' is down (' + (sv.exit || 'exited') + ')' + (lines.length ? ': ' + lines[lines.length - 1] : ''), title: lines.join('\n') });
      }
      var isLeader = leader && s === leader;
      var cls = (isLeader ? 'leader' : '') + (s.ok ? '' : ' down');
      var p = progress.get(id);
      var lag = isLeader ? 0 : p ? Math.max(0, leader.st.lastIndex - p.match) : (st && s.ok && leader ? Math.max(0, leader.st.commit - st.commit) : null);
      var role = st ? st.role : (s.member ? s.member.role : 'unknown');
      var roleCell = isLeader ? el('span', { class: 'badge' }, ['★ leader']) : el('span', null, [role]);
      var stateCell = s.ok ? el('span', { class: 'state ok' }, ['● up'])
        : svDown ? el('span', { class: 'state bad', title: (sv.lastLines || []).join('\n') }, ['○ down (' + (sv.exit || 'exited') + ')'])
        : el('span', { class: 'state bad', title: s.err }, ['○ ' + (s.err || 'down')]);
      var lagText = lag == null ? '—' : fmt(lag) + (p && p.state && p.state !== 'replicate' && !isLeader ? ' (' + p.state + ')' : '');
      tbody.append(el('tr', { class: cls.trim(), 'data-node': id }, [
        el('th', { scope: 'row' }, [id]),
        el('td', null, [roleCell]),
        el('td', null, [stateCell]),
        el('td', { class: 'num' }, [st ? fmt(st.term) : '—']),
        el('td', null, [st ? (st.leader || 'none') : '—']),
        el('td', { class: 'num' }, [st ? fmt(st.commit) : '—']),
        el('td', { class: 'num' }, [st ? fmt(st.applied) : '—']),
        el('td', { class: 'num' }, [lagText]),
        el('td', null, [sparkline(s.hist || [])]),
      ]));
    });
    var table = document.getElementById('nodes');
    table.replaceChild(tbody, table.tBodies[0]);

    var summary = document.getElementById('summary');
    var total = byId.size;
    var health = !leader ? ['bad', 'no leader'] : reachable < total ? ['warn', 'degraded'] : ['ok', 'healthy'];
    summary.replaceChildren(
      el('span', { class: 'pill ' + health[0] }, [health[1]]),
      el('span', null, ['leader ', el('b', null, [leader ? leader.st.id : 'none'])]),
      el('span', null, ['term ', el('b', null, [fmt(maxTerm)])]),
      el('span', null, ['commit ', el('b', null, [fmt(maxCommit)])]),
      el('span', null, ['nodes up ', el('b', null, [reachable + '/' + total])]),
      el('span', null, ['updated ', el('b', null, [time(Date.now())])])
    );

    var alerts = document.getElementById('alerts');
    alerts.replaceChildren.apply(alerts, downNotes.map(function (d) {
      return el('span', { class: 'alert', 'data-down': d.id, title: d.title }, [d.text]);
    }));
    alerts.hidden = downNotes.length === 0;

    var list = document.getElementById('events');
    var evs = Array.from(events.values()).sort(function (a, b) { return b.at - a.at; }).slice(0, MAX_EVENTS);
    // Touch the (aria-live) list only when it changed, so screen readers hear new events once.
    var sig = evs.map(function (e) { return e.at + e.text + e.who.join(); }).join('|');
    if (sig === eventsSig) {
      // unchanged
    } else if ((eventsSig = sig), evs.length === 0) list.replaceChildren(el('li', { class: 'empty' }, ['no leader changes seen yet']));
    else list.replaceChildren.apply(list, evs.map(function (e) {
      return el('li', { 'data-kind': e.kind }, [
        el('time', { datetime: new Date(e.at).toISOString() }, [time(e.at)]),
        e.text,
        e.who.length ? el('span', { class: 'who' }, [' · seen by ' + e.who.sort().join(', ')]) : null,
      ]);
    }));

    var src = document.getElementById('sources');
    src.textContent = Array.from(sources.values()).filter(function (s) { return !s.dup; })
      .map(function (s) { return s.url; }).join('  ·  ');
    body.setAttribute('data-ready', reachable > 0 ? '1' : '0');
    body.setAttribute('data-nodes', String(total));
  }

  render();
  pollAll();
  setInterval(pollAll, POLL_MS);
})();
`;

export function dashboardHtml(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>raftkv dashboard</title>
<link rel="icon" href="data:,">
<style>${DASHBOARD_STYLE}</style>
</head>
<body data-ready="0">
<header>
<h1>raftkv <small>cluster dashboard</small></h1>
<p id="summary">connecting…</p>
<p id="alerts" role="alert" hidden></p>
</header>
<main>
<section aria-labelledby="nodes-h">
<h2 id="nodes-h">Nodes</h2>
<div class="scroll">
<table id="nodes">
<caption>Polled every 500 ms. Lag: entries a node is behind the leader's last log index (from the leader's replication progress).</caption>
<thead><tr>
<th scope="col">Node</th><th scope="col">Role</th><th scope="col">Status</th><th scope="col" class="num">Term</th>
<th scope="col">Leader</th><th scope="col" class="num">Commit</th><th scope="col" class="num">Applied</th>
<th scope="col" class="num">Lag</th><th scope="col">Commit rate (30 s)</th>
</tr></thead>
<tbody></tbody>
</table>
</div>
</section>
<section aria-labelledby="events-h">
<h2 id="events-h">Recent events</h2>
<ol id="events" aria-live="polite"></ol>
</section>
</main>
<footer>
<p>Polling: <span id="sources"></span></p>
<p>Raw data: <a href="status">status (JSON)</a> · <a href="metrics">metrics (Prometheus)</a>.
Pick the nodes with <code>?nodes=host:port,host:port</code> (their HTTP addresses).</p>
<noscript><p>The live view needs JavaScript; the raw status and metrics above do not.</p></noscript>
</footer>
<script>${DASHBOARD_SCRIPT}</script>
</body>
</html>
`;
}
