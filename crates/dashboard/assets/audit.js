// Audit log: filters (kind, server, actor, time range), newest first, paged by cursor; export
// of the same filters as JSON lines (a plain same-origin download).
'use strict';
Gig.page('audit', async function (Gig) {
  const { h, $ } = Gig;
  const body = $('#audit-body');
  const more = $('#audit-more');
  const status = $('#audit-status');
  let cursor = null;

  function filters() {
    const params = new URLSearchParams();
    for (const key of ['kind', 'server', 'actor']) {
      const value = $('#f-' + key).value.trim();
      if (value) params.set(key, value);
    }
    for (const key of ['since', 'until']) {
      const value = $('#f-' + key).value;
      if (value) params.set(key, String(Math.floor(new Date(value).getTime() / 1000)));
    }
    return params;
  }

  function row(r) {
    const bad = r.result !== 'ok';
    const detail = r.detail && Object.keys(r.detail).length ? JSON.stringify(r.detail) : '';
    return h('tr', {},
      h('td', {}, h('time', { datetime: r.at }, new Date(r.at).toLocaleString())),
      h('td', {}, r.actor), h('td', {}, h('code', {}, r.action)), h('td', {}, r.target),
      h('td', { class: bad ? 'result-bad' : 'result-ok' }, r.result),
      h('td', { class: 'detail' }, detail));
  }

  async function load(append) {
    const params = filters();
    $('#export').setAttribute('href', '/api/audit/export' + (params.toString() ? '?' + params : ''));
    params.set('limit', '100');
    if (append && cursor !== null) params.set('cursor', String(cursor));
    try {
      const page = await Gig.api('GET', '/api/audit?' + params);
      cursor = page.next_cursor;
      more.hidden = cursor === null || cursor === undefined;
      if (!append) Gig.fill(body);
      for (const r of page.records) body.append(row(r));
      if (!body.children.length) {
        Gig.fill(body, h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No records match these filters.')));
      }
      Gig.status(status, body.querySelectorAll('tr').length + ' records shown' + (more.hidden ? '.' : '; older ones below.'));
    } catch (e) {
      Gig.fill(body, h('tr', {}, h('td', { colspan: 6 }, Gig.failure(e, { forbidden: 'The audit log needs the operator role.' }))));
      more.hidden = true;
    }
  }

  $('#audit-filters').addEventListener('submit', (event) => { event.preventDefault(); load(false); });
  more.addEventListener('click', () => load(true));
  await load(false);
});
