// Overview: servers and their health (live, from the gateway's server-sent events), calls and
// errors per server over the last hour (refreshed every 30 s), recent egress denials, pending
// tool approvals.
'use strict';
Gig.page('overview', async function (Gig) {
  const { h, $ } = Gig;
  let stats = {};
  let chartsNote = null;

  async function loadStats() {
    try {
      stats = await Gig.callStats();
      chartsNote = null;
    } catch (e) {
      stats = {};
      chartsNote = e.status === 403
        ? 'Call charts read the audit log, which your role cannot see.'
        : 'Call charts are unavailable: ' + e.message;
    }
  }

  let servers = null;

  async function loadServers() {
    try {
      servers = (await Gig.api('GET', '/api/servers')).servers;
    } catch (e) {
      Gig.fill($('#servers-body'), h('tr', {}, h('td', { colspan: 6 }, Gig.failure(e, { label: 'Servers' }))));
      return;
    }
    renderServers();
  }

  function renderServers() {
    const body = $('#servers-body');
    if (!servers) return;
    if (!servers.length) {
      Gig.fill(body, h('tr', {}, h('td', { colspan: 6, class: 'muted' },
        'No servers yet. ', h('a', { href: '/catalog' }, 'Install one from the catalog'), '.')));
      return;
    }
    Gig.fill(body, servers.map((s) => {
      const st = stats[s.name] || Gig.emptyStats();
      return h('tr', { 'data-server': s.name },
        h('th', { scope: 'row' }, h('a', { href: '/servers/' + encodeURIComponent(s.name) }, s.name)),
        h('td', {}, Gig.stateBadge(s.state)),
        h('td', { class: 'num' }, s.tools === null ? '—' : String(s.tools)),
        h('td', { class: 'num' }, chartsNote ? '—' : String(st.total)),
        h('td', { class: 'num' }, chartsNote ? '—' : String(st.failed)),
        h('td', { class: 'chart' }, chartsNote ? '' : Gig.chart(st, s.name)));
    }));
    const note = $('#charts-note');
    note.textContent = chartsNote || '';
    note.hidden = !chartsNote;
  }

  async function loadDenials() {
    const box = $('#denials');
    try {
      const data = await Gig.api('GET', '/api/audit?kind=egress&limit=500');
      const denied = data.records.filter((r) => r.result !== 'ok').slice(0, 10);
      if (!denied.length) {
        Gig.fill(box, h('p', { class: 'muted' }, 'No egress denials recorded. Servers only reached hosts they are allowed to.'));
        return;
      }
      Gig.fill(box, h('ul', {}, denied.map((r) => h('li', {},
        h('strong', {}, r.actor), ' → ', h('code', {}, r.target), ' ',
        h('span', { class: 'result-bad' }, r.result),
        (r.detail && r.detail.reason) ? ' (' + r.detail.reason + ')' : '',
        h('span', { class: 'muted small' }, ' · ' + new Date(r.at).toLocaleString())))));
    } catch (e) {
      Gig.fill(box, Gig.failure(e, { forbidden: 'Egress records are in the audit log, which your role cannot see.' }));
    }
  }

  async function loadApprovals() {
    const box = $('#approvals');
    try {
      const pending = (await Gig.api('GET', '/api/approvals')).pending || [];
      if (!pending.length) {
        Gig.fill(box, h('p', { class: 'muted' }, 'No tool changes are waiting for approval.'));
        return;
      }
      Gig.fill(box, h('ul', {}, pending.map((p) => h('li', {},
        h('a', { href: '/servers/' + encodeURIComponent(p.server) + '#h-approvals' }, p.server + ' / ' + p.tool),
        ' changed its definition'))));
    } catch (e) {
      Gig.fill(box, Gig.failure(e, { optional: 'Tool approvals are not available from this gateway’s /api yet (use gigmcp tools approve).' }));
    }
  }

  await loadStats();
  await Promise.all([loadServers(), loadDenials(), loadApprovals()]);
  // Each `servers` event is the whole list as GET /api/servers answers it, sent when it changes;
  // the browser reconnects by itself (the gateway ends a stream after five minutes).
  const live = new EventSource('/api/events/servers');
  live.addEventListener('servers', (event) => {
    try {
      servers = JSON.parse(event.data).servers;
    } catch (e) {
      return;
    }
    renderServers();
    $('#servers-table').setAttribute('data-live', 'on');
  });
  window.addEventListener('pagehide', () => live.close());
  window.setInterval(async () => {
    if (document.hidden) return;
    await loadStats();
    renderServers();
  }, 30000);
});
