// Convoy's dashboard: one Server-Sent Events stream (/api/stream) feeds
// everything on the page, so it never polls. `snapshot` messages carry nodes,
// services and new metric samples; `cluster` messages carry each event.
// A service's "Logs" opens a second stream (/api/logs) into the log panel
// while the panel is open.
// Text from the cluster (names, probe output, messages) only ever goes into
// textContent, never into markup.
'use strict';

(function () {
  const FEED_MAX = 200;
  const HISTORY_MAX = 120;
  // The log panel: lines asked for on opening, and kept on the page.
  const LOG_TAIL = 100;
  const LOG_MAX = 2000;
  const LOG_COLOURS = 6;
  const SVG = 'http://www.w3.org/2000/svg';

  const state = {
    nodes: [],
    services: [],
    history: {}, // node -> [{unix_ms, cpu_percent, memory_used_bytes, memory_total_bytes, gpus?}]
    skewMs: 0, // server clock - browser clock
    snapshots: 0,
    events: 0,
  };
  // For tests and the curious: a reload would reset loadedAt.
  window.convoy = { loadedAt: Date.now(), state: state };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === 'class') node.className = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function bytes(n) {
    if (!n) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (n >= 10 || i === 0 ? n.toFixed(0) : n.toFixed(1)) + ' ' + units[i];
  }

  function age(ms) {
    if (ms < 0) ms = 0;
    if (ms < 10000) return (ms / 1000).toFixed(1) + ' s ago';
    if (ms < 120000) return Math.round(ms / 1000) + ' s ago';
    if (ms < 7200000) return Math.round(ms / 60000) + ' min ago';
    return Math.round(ms / 3600000) + ' h ago';
  }

  function serverNow() { return Date.now() + state.skewMs; }

  function sparkline(samples, value, max, label) {
    const w = 120, h = 26;
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
    svg.setAttribute('width', w);
    svg.setAttribute('height', h);
    svg.setAttribute('class', 'spark');
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', label);
    const title = document.createElementNS(SVG, 'title');
    title.textContent = label;
    svg.append(title);
    if (samples.length > 1) {
      const step = w / (HISTORY_MAX - 1);
      const x0 = w - step * (samples.length - 1);
      const pts = samples.map((s, i) => {
        const m = max(s) || 1;
        const y = h - 1 - Math.max(0, Math.min(1, value(s) / m)) * (h - 2);
        return `${(x0 + i * step).toFixed(1)},${y.toFixed(1)}`;
      });
      const area = document.createElementNS(SVG, 'polygon');
      area.setAttribute('points', `${x0.toFixed(1)},${h} ${pts.join(' ')} ${w},${h}`);
      area.setAttribute('class', 'area');
      const line = document.createElementNS(SVG, 'polyline');
      line.setAttribute('points', pts.join(' '));
      line.setAttribute('class', 'line');
      svg.append(area, line);
    }
    return svg;
  }

  function renderSummary() {
    const ready = state.nodes.filter((n) => n.state === 'ready').length;
    const lost = state.nodes.filter((n) => n.state === 'lost').length;
    let want = 0, ok = 0;
    for (const s of state.services) {
      want += s.desired;
      ok += s.has_checks ? s.healthy : s.running;
    }
    const parts = [
      `${state.nodes.length} node${state.nodes.length === 1 ? '' : 's'} (${ready} ready${lost ? `, ${lost} lost` : ''})`,
      `${state.services.length} service${state.services.length === 1 ? '' : 's'}`,
      `${ok}/${want} instances ok`,
    ];
    const summary = document.getElementById('summary');
    summary.textContent = parts.join(' · ');
    summary.className = lost || ok < want ? 'warn' : 'good';
  }

  // Several coordinators on etcd (docs/HA.md): who leads, the store's
  // health. Hidden for one coordinator on its embedded store.
  function renderPlane(plane) {
    const box = document.getElementById('plane');
    const store = (plane && plane.store) || {};
    if (!plane || (store.backend !== 'etcd' && plane.coordinators.length <= 1)) {
      box.hidden = true;
      return;
    }
    const names = plane.coordinators.map((c) => (c.leader ? `${c.id} (leader)` : c.id));
    const health = store.healthy ? 'healthy' : `UNHEALTHY: ${store.error}`;
    box.textContent = `coordinators ${names.join(', ')}${plane.leader ? '' : ' · NO LEADER'} · store ${store.backend} ${health}`;
    box.title = (store.members || []).join('\n');
    box.className = `plane ${store.healthy && plane.leader ? 'good' : 'warn'}`;
    box.hidden = false;
  }

  // One utilization sparkline per GPU of the node, or a dash.
  function gpuCell(n, hist) {
    const gpus = n.gpus || [];
    if (!gpus.length) return el('td', { class: 'metric' }, '–');
    const now = (n.metrics && n.metrics.gpus) || [];
    const lines = gpus.map((g) => {
      const cur = now.find((s) => s.index === g.index);
      const util = cur ? `${cur.utilization_percent.toFixed(0)}%` : '–';
      const of = (s) => (s.gpus || []).find((x) => x.index === g.index);
      return el('div', { class: 'gpu', 'data-testid': `gpu-${n.name}-${g.index}`, title: `${g.uuid} · ${bytes(g.memory_total_bytes)}` },
        sparkline(hist, (s) => (of(s) ? of(s).utilization_percent : 0), () => 100,
          `GPU ${g.index} (${g.name}) ${util}`),
        el('span', {}, `${g.index}: ${util}`));
    });
    return el('td', { class: 'metric gpus' }, ...lines);
  }

  // The node's Swarm role beside its Docker version (docs/SWARM.md).
  function swarmBadge(sw) {
    if (!sw) return null;
    const word = sw.manager_reachable ? sw.role : `${sw.role}, no manager`;
    return el('span', { class: 'swarm', title: `node ${sw.node_id} · cluster ${sw.cluster_id || 'unknown'}` },
      ` · swarm ${word}`);
  }

  function renderNodes() {
    const body = document.getElementById('nodes');
    const rows = state.nodes.map((n) => {
      const hist = state.history[n.name] || [];
      const m = n.metrics;
      const cpu = m ? `${m.cpu_percent.toFixed(0)}%` : '–';
      const mem = m ? `${bytes(m.memory_used_bytes)} / ${bytes(m.memory_total_bytes)}` : '–';
      return el('tr', { 'data-testid': `node-${n.name}`, 'data-state': n.state },
        el('td', { class: 'name' }, n.name),
        el('td', {}, el('span', { class: `badge ${n.state}` }, n.state),
          n.scheduling && n.scheduling !== 'active'
            ? el('span', { class: 'badge cordoned', 'data-testid': `scheduling-${n.name}` }, n.scheduling)
            : null),
        el('td', {}, n.hostname || '–'),
        el('td', {}, [n.os, n.arch].filter(Boolean).join(' / ') || '–'),
        el('td', { class: 'num' }, n.cpus || '–'),
        el('td', { class: 'num' }, bytes(n.memory_bytes)),
        el('td', {}, n.docker_version || '–', swarmBadge(n.swarm)),
        el('td', { class: 'age', 'data-heartbeat': n.last_heartbeat_unix_ms }, ''),
        el('td', { class: 'metric' },
          sparkline(hist, (s) => s.cpu_percent, () => 100, `CPU ${cpu}`), el('span', {}, cpu)),
        el('td', { class: 'metric' },
          sparkline(hist, (s) => s.memory_used_bytes, (s) => s.memory_total_bytes, `memory ${mem}`),
          el('span', {}, mem)),
        gpuCell(n, hist));
    });
    body.replaceChildren(...rows);
    document.getElementById('no-nodes').hidden = rows.length > 0;
    updateAges();
  }

  function updateAges() {
    const now = serverNow();
    for (const td of document.querySelectorAll('td.age')) {
      const hb = Number(td.getAttribute('data-heartbeat'));
      td.textContent = hb ? age(now - hb) : 'never';
    }
  }

  function rollup(s) {
    if (s.has_checks) return { text: `${s.healthy}/${s.desired} healthy`, ok: s.healthy >= s.desired };
    return { text: `${s.running}/${s.desired} running`, ok: s.running >= s.desired };
  }

  // A Swarm service: its Swarm name, cluster and driver, and Swarm's
  // update state while one is not completed.
  function swarmLine(s) {
    const w = s.swarm;
    const driver = !w.driver ? 'no driver'
      : w.driver_connected ? `driven by ${w.driver}`
        : `driver ${w.driver} unreachable: Swarm keeps the service running; tasks as last reported`;
    const update = w.update_state && w.update_state !== 'completed'
      ? ` · update ${w.update_state}${w.update_message ? `: ${w.update_message}` : ''}` : '';
    return el('p', {
      class: `swarm ${w.driver_connected ? '' : 'lost'}`, 'data-testid': `swarm-${s.name}`,
    }, `Swarm service ${w.service_name} on cluster ${w.cluster}, ${driver}${update}`);
  }

  function renderServices() {
    const box = document.getElementById('services');
    const cards = state.services.map((s) => {
      const r = rollup(s);
      const rows = s.instances.map((i) => {
        const why = [i.failing_probe, i.health_output || i.reason].filter(Boolean).join(': ');
        return el('tr', {
          'data-testid': `instance-${i.id}`, 'data-health': i.health, 'data-state': i.state,
        },
        el('td', { class: 'name' }, i.id),
        el('td', { class: i.node_connected ? '' : 'lost' }, i.node || '–'),
        el('td', { class: 'num' }, `r${i.revision}`),
        el('td', {}, el('span', { class: `badge ${i.state}` }, i.state)),
        el('td', {}, el('span', { class: `badge health-${i.health}` }, i.health)),
        el('td', { class: 'num' }, i.restarts),
        el('td', { class: 'output', title: why || undefined }, why));
      });
      return el('article', {
        class: 'service', 'data-testid': `service-${s.name}`, 'data-env': s.env,
      },
      el('header', {},
        el('h3', {}, s.name),
        el('span', { class: 'env' }, s.env),
        el('span', { class: 'rev' }, `revision ${s.revision}`),
        el('code', { class: 'image' }, s.image),
        el('span', { class: `rollup ${r.ok ? 'good' : 'warn'}`, 'data-testid': `rollup-${s.name}` }, r.text),
        // Swarm keeps a Swarm service's logs (docs/SWARM.md).
        s.swarm ? null : el('button', {
          type: 'button', class: 'logs-open', 'data-testid': `logs-${s.name}`,
          'data-env': s.env, 'data-service': s.name, title: `Follow the logs of ${s.name}`,
        }, 'Logs')),
      s.swarm ? swarmLine(s) : null,
      el('table', { class: 'instances' },
        el('thead', {}, el('tr', {},
          el('th', {}, 'Instance'), el('th', {}, 'Node'), el('th', {}, 'Rev'), el('th', {}, 'State'),
          el('th', {}, 'Health'), el('th', {}, 'Restarts'), el('th', {}, 'Last check / reason'))),
        el('tbody', {}, ...rows)));
    });
    box.replaceChildren(...cards);
    document.getElementById('no-services').hidden = cards.length > 0;
  }

  function eventItem(ev) {
    const what = [ev.instance || [ev.env, ev.service].filter(Boolean).join('/'), ev.node]
      .filter(Boolean).join(' @ ');
    const kindClass = ev.kind.replace(/[^a-z0-9]+/gi, '-');
    return el('li', {
      'data-kind': ev.kind, 'data-seq': ev.seq, 'data-instance': ev.instance || undefined,
      'data-node': ev.node || undefined, 'data-service': ev.service || undefined,
      'data-health': ev.fields && ev.fields.health,
      class: `kind-${kindClass}`,
    },
    el('time', { datetime: ev.time, title: ev.time }, new Date(ev.unix_ms).toLocaleTimeString()),
    el('span', { class: 'kind' }, ev.kind),
    el('span', { class: 'target' }, what),
    el('span', { class: 'message', title: ev.message }, ev.message));
  }

  function addEvent(ev) {
    const list = document.getElementById('events');
    list.prepend(eventItem(ev));
    while (list.children.length > FEED_MAX) list.lastElementChild.remove();
    state.events++;
  }

  function onSnapshot(snap) {
    state.skewMs = snap.now_unix_ms - Date.now();
    state.nodes = snap.nodes;
    state.services = snap.services;
    for (const [node, samples] of Object.entries(snap.history || {})) {
      const have = state.history[node] || (state.history[node] = []);
      const last = have.length ? have[have.length - 1].unix_ms : -Infinity;
      for (const s of samples) if (s.unix_ms > last) have.push(s);
      if (have.length > HISTORY_MAX) have.splice(0, have.length - HISTORY_MAX);
    }
    if (snap.events) {
      // The first snapshot of a connection: the feed starts again from the
      // server's recent events (a restarted coordinator numbers anew).
      document.getElementById('events').replaceChildren();
      for (const ev of snap.events) addEvent(ev);
    }
    state.snapshots++;
    renderPlane(snap.control_plane);
    renderSummary();
    renderNodes();
    renderServices();
  }

  function setConn(text, cls) {
    const conn = document.getElementById('conn');
    conn.textContent = text;
    conn.className = `conn ${cls}`;
    conn.setAttribute('data-state', cls);
  }

  function connect() {
    const es = new EventSource('/api/stream');
    es.addEventListener('open', () => setConn('live', 'live'));
    es.addEventListener('snapshot', (e) => onSnapshot(JSON.parse(e.data)));
    es.addEventListener('cluster', (e) => addEvent(JSON.parse(e.data)));
    es.addEventListener('error', () => {
      if (es.readyState === EventSource.CLOSED) {
        // The server refused the stream (signed out, token revoked, too
        // many streams): check which, then retry or send to sign-in.
        es.close();
        setConn('disconnected', 'down');
        fetch('/api/nodes', { credentials: 'same-origin' }).then((r) => {
          if (r.status === 401) window.location.assign('/login');
          else setTimeout(connect, 3000);
        }, () => setTimeout(connect, 3000));
      } else {
        setConn('reconnecting…', 'down');
      }
    });
  }

  // ---- the log panel -------------------------------------------------

  // The open log stream: {es, env, service, opened, colours}, or null.
  let logs = null;

  function setLogStatus(text, st) {
    const status = document.getElementById('logs-status');
    status.textContent = text;
    status.setAttribute('data-state', st);
  }

  function logLine(line) {
    const box = document.getElementById('log-lines');
    // Follow the end unless the reader scrolled up to read.
    const atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    let colour = logs.colours.get(line.instance);
    if (colour === undefined) {
      colour = logs.colours.size % LOG_COLOURS;
      logs.colours.set(line.instance, colour);
    }
    const when = new Date(Math.floor(line.unix_nanos / 1e6));
    box.append(el('div', {
      class: `log-line stream-${line.stream}`, 'data-testid': 'log-line',
      'data-instance': line.instance, 'data-stream': line.stream,
    },
    el('span', { class: `instance c${colour}`, title: `${line.instance} on ${line.node} · ${when.toISOString()}` },
      line.instance),
    el('span', { class: 'text' }, line.text)));
    while (box.children.length > LOG_MAX) box.firstElementChild.remove();
    if (atEnd) box.scrollTop = box.scrollHeight;
  }

  function closeLogs() {
    if (logs) logs.es.close();
    logs = null;
    window.convoy.logs = null;
    document.getElementById('logs').hidden = true;
    document.body.classList.remove('logs-open');
    document.getElementById('log-lines').replaceChildren();
    setLogStatus('', 'closed');
  }

  // Why the server refused a stream: an EventSource cannot see the
  // answer, so ask again and read it (stopping a stream that opens).
  function explainRefusal(url, mine) {
    const abort = new AbortController();
    fetch(url, { credentials: 'same-origin', signal: abort.signal }).then((r) => {
      if (r.ok) {
        abort.abort();
        return 'the stream broke';
      }
      if (r.status === 401) window.location.assign('/login');
      return r.json().then((j) => j.error, () => `HTTP ${r.status}`);
    }).catch(() => 'the coordinator cannot be reached').then((why) => {
      if (logs === mine) setLogStatus(why, 'refused');
    });
  }

  function openLogs(env, service) {
    closeLogs();
    const url = '/api/logs?' + new URLSearchParams({ env, target: service, tail: String(LOG_TAIL) });
    const es = new EventSource(url);
    const mine = { es, env, service, opened: false, colours: new Map() };
    logs = mine;
    window.convoy.logs = mine;
    document.getElementById('logs-title').textContent = `Logs: ${service} (${env})`;
    document.getElementById('logs').hidden = false;
    document.body.classList.add('logs-open');
    setLogStatus('connecting…', 'connecting');
    es.addEventListener('open', () => {
      mine.opened = true;
      setLogStatus('live', 'live');
    });
    es.addEventListener('line', (e) => { if (logs === mine) logLine(JSON.parse(e.data)); });
    es.addEventListener('end', () => {
      es.close();
      if (logs === mine) setLogStatus('ended: no instance is sending any more', 'ended');
    });
    es.addEventListener('error', () => {
      // No reconnect: it would start again from the last lines, twice.
      es.close();
      if (logs !== mine) return;
      if (mine.opened) setLogStatus('disconnected: open the logs again to resume', 'down');
      else explainRefusal(url, mine);
    });
  }

  document.addEventListener('DOMContentLoaded', () => {
    connect();
    setInterval(updateAges, 1000);
    // Cards are redrawn on each snapshot: one listener for all their buttons.
    document.getElementById('services').addEventListener('click', (e) => {
      const button = e.target.closest('button.logs-open');
      if (button) openLogs(button.getAttribute('data-env'), button.getAttribute('data-service'));
    });
    document.getElementById('logs-close').addEventListener('click', closeLogs);
  });
})();
