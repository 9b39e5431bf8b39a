// Calls and errors per server over the last hour, from the audit log's tool.call records,
// drawn as tiny inline SVG bar charts (fixed size: a refresh never moves the page).
'use strict';
(function (Gig) {
  const BUCKETS = 12;
  const STEP = 300; // seconds per bar
  const SVG = 'http://www.w3.org/2000/svg';

  /** {server: {calls: [12], errors: [12], total, failed}} for the last hour. */
  Gig.callStats = async function (server) {
    const now = Math.floor(Date.now() / 1000);
    const since = now - BUCKETS * STEP;
    const stats = {};
    let cursor = null;
    for (let page = 0; page < 5; page++) {
      let query = '/api/audit?kind=tool.call&limit=1000&since=' + since;
      if (server) query += '&server=' + encodeURIComponent(server);
      if (cursor !== null) query += '&cursor=' + cursor;
      const data = await Gig.api('GET', query);
      for (const record of data.records) {
        const name = record.target.split('/')[0];
        const at = Math.floor(Date.parse(record.at) / 1000);
        const slot = Math.min(BUCKETS - 1, Math.max(0, Math.floor((at - since) / STEP)));
        const s = stats[name] || (stats[name] = { calls: new Array(BUCKETS).fill(0), errors: new Array(BUCKETS).fill(0), total: 0, failed: 0 });
        s.calls[slot] += 1;
        s.total += 1;
        if (record.result !== 'ok') { s.errors[slot] += 1; s.failed += 1; }
      }
      if (data.next_cursor === null || data.next_cursor === undefined) break;
      cursor = data.next_cursor;
    }
    return stats;
  };

  Gig.emptyStats = () => ({ calls: new Array(BUCKETS).fill(0), errors: new Array(BUCKETS).fill(0), total: 0, failed: 0 });

  function node(tag, attrs) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    return el;
  }

  /** A 120×36 bar chart: calls in blue, errors in red over them. */
  Gig.chart = function (stats, label) {
    const width = 120, height = 36, bar = width / BUCKETS;
    const max = Math.max(1, ...stats.calls);
    const text = label + ': ' + stats.total + ' calls, ' + stats.failed + ' errors in the last hour';
    const svg = node('svg', { viewBox: '0 0 ' + width + ' ' + height, width, height, role: 'img', 'aria-label': text, class: 'chart-svg' });
    const title = node('title', {});
    title.textContent = text;
    svg.append(title);
    svg.append(node('line', { x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5, stroke: '#8a96a3', 'stroke-width': 1 }));
    stats.calls.forEach((calls, i) => {
      const hCalls = calls ? Math.max(2, (calls / max) * (height - 2)) : 0;
      const hErrors = stats.errors[i] ? Math.max(2, (stats.errors[i] / max) * (height - 2)) : 0;
      if (hCalls) svg.append(node('rect', { x: i * bar + 1, y: height - 1 - hCalls, width: bar - 2, height: hCalls, fill: '#1f4f8a' }));
      if (hErrors) svg.append(node('rect', { x: i * bar + 1, y: height - 1 - hErrors, width: bar - 2, height: hErrors, fill: '#a4262c' }));
    });
    return svg;
  };
})(window.Gig);
