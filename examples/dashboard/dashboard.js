// authx dashboard: fetches /api/usage, /api/security and /api/health and
// draws them as inline SVG.  No libraries, nothing loaded from elsewhere.
'use strict';

(function () {
  const REFRESH_MS = 30000;
  const HOUR = 3600 * 1000;
  const SINCE_VALUES = ['1 hour', '24 hours', '7 days', '30 days'];
  const SEVERITIES = ['info', 'low', 'medium', 'high', 'critical'];
  const SVGNS = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);
  const last = { usage: null, security: null, health: null };
  let timer = null;
  let generation = 0;

  // ------------------------------------------------------------ formatting
  const intFmt = new Intl.NumberFormat('en-US');
  const fmtInt = (n) => (n == null || isNaN(n) ? '–' : intFmt.format(n));

  function fmtCompact(n) {
    const a = Math.abs(n);
    if (a >= 1e9) return trimZero((n / 1e9).toFixed(1)) + 'G';
    if (a >= 1e6) return trimZero((n / 1e6).toFixed(1)) + 'M';
    if (a >= 1e4) return trimZero((n / 1e3).toFixed(0)) + 'k';
    if (a >= 1e3) return trimZero((n / 1e3).toFixed(1)) + 'k';
    return trimZero(Number(n).toFixed(a < 10 && n % 1 ? 1 : 0));
  }
  const trimZero = (s) => s.replace(/\.0$/, '');

  function fmtMs(ms) {
    if (ms == null || isNaN(ms)) return '–';
    const n = Number(ms);
    if (n >= 10000) return trimZero((n / 1000).toFixed(1)) + ' s';
    if (n >= 100) return n.toFixed(0) + ' ms';
    if (n >= 10) return n.toFixed(1) + ' ms';
    if (n >= 1) return n.toFixed(2) + ' ms';
    return n.toFixed(3) + ' ms';
  }

  function fmtPct(r) {
    if (r == null || isNaN(r)) return '–';
    const p = Number(r) * 100;
    return (p === 0 ? '0' : p < 0.1 ? p.toFixed(2) : p < 10 ? p.toFixed(1) : p.toFixed(0)) + '%';
  }

  const pad2 = (n) => String(n).padStart(2, '0');
  const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const fmtClock = (d) => pad2(d.getHours()) + ':' + pad2(d.getMinutes());
  const fmtDay = (d) => MONTHS[d.getMonth()] + ' ' + d.getDate();
  const fmtStamp = (d) => fmtDay(d) + ' ' + fmtClock(d);

  function parseTime(s) {
    const t = Date.parse(s);
    return isNaN(t) ? null : t;
  }

  const num = (v) => (v == null || v === '' || isNaN(Number(v)) ? null : Number(v));
  const arr = (v) => (Array.isArray(v) ? v : []);

  function truncate(s, n) {
    s = String(s);
    return s.length > n ? s.slice(0, n - 1) + '…' : s;
  }

  // ------------------------------------------------------------ DOM / SVG
  function h(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text != null) e.textContent = text;
    return e;
  }

  function s(tag, attrs, parent, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text != null) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  function tip(parent, text) { s('title', {}, parent, text); }

  function newSvg(container, height) {
    container.textContent = '';
    const width = Math.max(280, Math.floor(container.clientWidth || 560));
    const svg = s('svg', {
      viewBox: '0 0 ' + width + ' ' + height, width: width, height: height,
      class: 'svg-chart', role: 'img',
    }, container);
    return { svg, width, height };
  }

  function emptyChart(container, height, text) {
    const { svg, width } = newSvg(container, height);
    svg.classList.add('is-empty');
    s('rect', { x: 0.5, y: 0.5, width: width - 1, height: height - 1, rx: 8, class: 'empty-frame' }, svg);
    s('text', { x: width / 2, y: height / 2, class: 'empty-label', 'text-anchor': 'middle', 'dominant-baseline': 'middle' },
      svg, text || 'no data');
    return svg;
  }

  // A nice axis: [0, top] in `count` steps of 1, 2, 2.5 or 5 × 10^k.
  function niceScale(max, count) {
    if (!(max > 0)) return { top: 1, step: 0.25 };
    const raw = max / count;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= raw);
    return { top: Math.ceil(max / step - 1e-9) * step, step };
  }

  // ------------------------------------------------------------ time series
  // The hourly slots from..to (the SQL series lists only hours with data).
  function hourSlots(usage) {
    let from = parseTime(usage.from);
    let to = parseTime(usage.to);
    const rows = arr(usage.series).filter((r) => parseTime(r.hour) != null);
    const times = rows.map((r) => parseTime(r.hour));
    if (from == null) from = times.length ? Math.min(...times) : Date.now() - 24 * HOUR;
    if (to == null) to = Date.now();
    from = Math.floor(from / HOUR) * HOUR;
    let end = Math.floor(to / HOUR) * HOUR;
    if (times.length) end = Math.max(end, Math.max(...times));
    const byHour = new Map(rows.map((r) => [Math.floor(parseTime(r.hour) / HOUR) * HOUR, r]));
    const slots = [];
    for (let t = from; t <= end && slots.length < 24 * 800; t += HOUR) slots.push({ t, row: byHour.get(t) || null });
    return { slots, hasData: rows.length > 0 };
  }

  // Which slots get an x label, and how it reads.
  function xTicks(slots, plotW) {
    const n = slots.length;
    const maxTicks = Math.max(2, Math.floor(plotW / 64));
    const step = [1, 2, 3, 4, 6, 12, 24, 48, 72, 168, 336].find((st) => n / st <= maxTicks) || 720;
    const ticks = [];
    slots.forEach((sl, i) => {
      const d = new Date(sl.t);
      const hr = d.getHours();
      let take;
      if (step < 24) take = hr % step === 0;
      else take = hr === 0 && Math.floor((sl.t - d.getTimezoneOffset() * 60000) / (24 * HOUR)) % (step / 24) === 0;
      if (take) {
        const label = step >= 24 || (hr === 0 && n > 24) ? fmtDay(d) : fmtClock(d);
        ticks.push({ i, label });
      }
    });
    if (!ticks.length && n) ticks.push({ i: 0, label: n > 24 ? fmtDay(new Date(slots[0].t)) : fmtClock(new Date(slots[0].t)) });
    return ticks;
  }

  // kind 'bars' (stacked) or 'lines'; series: [{name, cls, value(row) -> number|null}]
  // The height a chart box offers: at least 220 px, more when the panel
  // beside it in the grid row is taller (the box is a flex: 1 item).
  function boxHeight(container) {
    container.textContent = '';
    return Math.max(220, Math.floor(container.clientHeight || 0));
  }

  function timeChart(container, slots, series, opt) {
    const height = boxHeight(container);
    const { svg, width } = newSvg(container, height);
    const m = { l: 46, r: 14, t: 12, b: 26 };
    const pw = width - m.l - m.r;
    const ph = height - m.t - m.b;
    const n = slots.length;
    const band = pw / Math.max(1, n);
    const xc = (i) => m.l + band * (i + 0.5);

    const vals = series.map((se) => slots.map((sl) => (sl.row ? num(se.value(sl.row)) : opt.kind === 'bars' ? 0 : null)));
    let max = 0;
    if (opt.kind === 'bars') {
      for (let i = 0; i < n; i++) max = Math.max(max, vals.reduce((a, v) => a + (v[i] || 0), 0));
    } else {
      vals.forEach((v) => v.forEach((x) => { if (x != null) max = Math.max(max, x); }));
    }
    const { top, step } = niceScale(max, 4);
    const y = (v) => m.t + ph - (v / top) * ph;

    // grid and y axis
    const grid = s('g', { class: 'grid' }, svg);
    for (let v = 0; v <= top + step / 2; v += step) {
      s('line', { x1: m.l, x2: width - m.r, y1: y(v), y2: y(v), class: v === 0 ? 'axis' : 'gridline' }, grid);
      s('text', { x: m.l - 8, y: y(v), 'text-anchor': 'end', 'dominant-baseline': 'middle', class: 'tick' }, grid,
        opt.yFormat ? opt.yFormat(v) : fmtCompact(v));
    }
    // x axis
    const xg = s('g', { class: 'xaxis' }, svg);
    xTicks(slots, pw).forEach(({ i, label }) => {
      s('line', { x1: xc(i), x2: xc(i), y1: m.t + ph, y2: m.t + ph + 4, class: 'axis' }, xg);
      const anchor = xc(i) < m.l + 20 ? 'start' : xc(i) > width - m.r - 20 ? 'end' : 'middle';
      s('text', { x: xc(i), y: height - 6, 'text-anchor': anchor, class: 'tick' }, xg, label);
    });

    const plot = s('g', { class: 'plot' }, svg);
    if (opt.kind === 'bars') {
      const bw = Math.max(1, Math.min(band * 0.72, 42));
      for (let i = 0; i < n; i++) {
        let acc = 0;
        const g = s('g', { class: 'bar' }, plot);
        const parts = [];
        series.forEach((se, k) => {
          const v = vals[k][i] || 0;
          parts.push(se.name + ' ' + fmtInt(v));
          if (v <= 0) return;
          const y0 = y(acc);
          acc += v;
          const y1 = y(acc);
          s('rect', { x: xc(i) - bw / 2, y: y1, width: bw, height: Math.max(1, y0 - y1), class: se.cls, rx: bw > 6 ? 2 : 0 }, g);
        });
        // A transparent hit area carries the tooltip for the whole hour.
        const hit = s('rect', { x: m.l + band * i, y: m.t, width: band, height: ph, class: 'hit' }, g);
        tip(hit, fmtStamp(new Date(slots[i].t)) + '\n' + parts.join('\n'));
      }
    } else {
      series.forEach((se, k) => {
        let d = '';
        let pen = false;
        vals[k].forEach((v, i) => {
          if (v == null) { pen = false; return; }
          d += (pen ? 'L' : 'M') + xc(i).toFixed(1) + ' ' + y(v).toFixed(1);
          pen = true;
        });
        if (d) s('path', { d, class: 'line ' + se.cls }, plot);
        // Dots where a line would not show (isolated hours) or when sparse.
        vals[k].forEach((v, i) => {
          if (v == null) return;
          const lone = (i === 0 || vals[k][i - 1] == null) && (i === n - 1 || vals[k][i + 1] == null);
          if (lone || n <= 48) {
            const c = s('circle', { cx: xc(i), cy: y(v), r: lone ? 3.5 : 2.5, class: 'dot ' + se.cls }, plot);
            tip(c, fmtStamp(new Date(slots[i].t)) + '  ' + se.name + ' ' + fmtMs(v));
          }
        });
      });
    }
    return svg;
  }

  // ------------------------------------------------------------ bar lists
  // rows: [{label, value, part (drawn over value, e.g. errors), note, title, cls}]
  function barList(container, rows, opt) {
    opt = opt || {};
    if (!rows.length) return emptyChart(container, opt.emptyHeight || 150, opt.empty || 'no data');
    const rowH = 26;
    const height = rows.length * rowH + 8;
    const { svg, width } = newSvg(container, height);
    const labelW = opt.labelWidth || Math.min(230, Math.round(width * 0.36));
    const noteW = opt.noteWidth || 120;
    const bx = labelW + 10;
    const bwMax = Math.max(40, width - bx - noteW - 8);
    const max = Math.max(1, ...rows.map((r) => r.value || 0));
    const maxChars = Math.max(8, Math.floor(labelW / 7.2));
    rows.forEach((r, i) => {
      const yy = 4 + i * rowH;
      const g = s('g', { class: 'row' + (r.cls ? ' ' + r.cls : '') }, svg);
      const t = s('text', { x: labelW, y: yy + rowH / 2, 'text-anchor': 'end', 'dominant-baseline': 'middle', class: 'row-label' },
        g, truncate(r.label, maxChars));
      if (String(r.label).length > maxChars) tip(t, r.label);
      s('rect', { x: bx, y: yy + 5, width: bwMax, height: rowH - 10, rx: 3, class: 'track' }, g);
      const w = r.value > 0 ? Math.max(2, (r.value / max) * bwMax) : 0;
      if (w) s('rect', { x: bx, y: yy + 5, width: w, height: rowH - 10, rx: 3, class: 'fill ' + (r.fillCls || 's-req') }, g);
      if (r.part > 0 && r.value > 0) {
        const pw = Math.max(2, (r.part / max) * bwMax);
        s('rect', { x: bx, y: yy + 5, width: Math.min(pw, w), height: rowH - 10, rx: 3, class: 'fill s-err' }, g);
      }
      s('text', { x: bx + bwMax + 8, y: yy + rowH / 2, 'dominant-baseline': 'middle', class: 'row-note' }, g, r.note);
      const hit = s('rect', { x: 0, y: yy, width, height: rowH, class: 'hit' }, g);
      tip(hit, r.title || r.label + ': ' + r.note);
    });
    return svg;
  }

  // ------------------------------------------------------------ panels
  function setKpi(id, value, sub, cls) {
    const k = $(id);
    k.querySelector('.kpi-value').textContent = value;
    k.querySelector('.kpi-sub').textContent = sub || '';
    k.className = 'kpi' + (cls ? ' ' + cls : '');
  }

  function panelError(sectionId, err) {
    const c = $(sectionId).querySelector('.chart');
    if (c) emptyChart(c, 150, 'unavailable: ' + truncate(err, 60));
  }

  function renderUsage(u) {
    const { slots, hasData } = hourSlots(u);
    const reqC = $('chart-requests').querySelector('.chart');
    const latC = $('chart-latency').querySelector('.chart');
    const errC = $('chart-errors').querySelector('.chart');
    if (!hasData) {
      emptyChart(reqC, boxHeight(reqC), 'no data');
      emptyChart(latC, boxHeight(latC), 'no data');
      emptyChart(errC, boxHeight(errC), 'no data');
    } else {
      timeChart(reqC, slots, [{ name: 'requests', cls: 's-req', value: (r) => r.requests }], { kind: 'bars' });
      timeChart(latC, slots, [
        { name: 'p50', cls: 's-p50', value: (r) => r.p50_ms },
        { name: 'p95', cls: 's-p95', value: (r) => r.p95_ms },
        { name: 'p99', cls: 's-p99', value: (r) => r.p99_ms },
      ], { kind: 'lines', yFormat: (v) => fmtCompact(v) });
      const anyErr = arr(u.series).some((r) => (num(r.errors_4xx) || 0) + (num(r.errors_5xx) || 0) > 0);
      if (anyErr) {
        timeChart(errC, slots, [
          { name: '4xx', cls: 's-4xx', value: (r) => r.errors_4xx },
          { name: '5xx', cls: 's-5xx', value: (r) => r.errors_5xx },
        ], { kind: 'bars' });
      } else {
        emptyChart(errC, boxHeight(errC), 'no errors');
      }
    }

    const eps = arr(u.top_endpoints).map((e) => ({
      label: e.endpoint,
      value: num(e.requests) || 0,
      part: num(e.errors) || 0,
      note: fmtCompact(num(e.requests) || 0) + ' · p95 ' + fmtMs(num(e.p95_ms)),
      title: e.endpoint + '\n' + fmtInt(e.requests) + ' requests, ' + fmtInt(e.errors) + ' errors, p95 ' + fmtMs(num(e.p95_ms)),
    }));
    barList($('top-endpoints').querySelector('.chart'), eps, { empty: 'no data', noteWidth: 130 });

    const ipsC = $('top-ips').querySelector('.chart');
    if (u.top_ips == null && u.api_key_id) {
      emptyChart(ipsC, 150, 'not available per API key');
    } else {
      const ips = arr(u.top_ips).map((e) => {
        const rq = num(e.requests) || 0;
        const er = num(e.errors) || 0;
        return {
          label: e.ip, value: rq, part: er,
          note: fmtCompact(rq) + (er ? ' · ' + fmtPct(er / rq) + ' err' : ''),
          title: e.ip + '\n' + fmtInt(rq) + ' requests, ' + fmtInt(er) + ' errors (4xx/5xx)',
        };
      });
      barList(ipsC, ips, { empty: 'no data', labelWidth: 150, noteWidth: 110 });
    }

    const lat = u.latency_ms || {};
    const req = num(u.requests) || 0;
    const hours = Math.max(1, slots.length);
    setKpi('kpi-requests', fmtInt(req), req ? '≈ ' + fmtCompact(req / hours) + ' per hour' : 'no requests recorded');
    const e4 = num(u.errors_4xx) || 0;
    const e5 = num(u.errors_5xx) || 0;
    const rate = num(u.error_rate);
    setKpi('kpi-errors', req ? fmtPct(rate) : '–', fmtInt(e4) + ' 4xx · ' + fmtInt(e5) + ' 5xx',
      rate >= 0.05 ? 'bad' : rate >= 0.01 ? 'warn' : '');
    setKpi('kpi-latency', fmtMs(num(lat.p95)),
      lat.p50 == null ? '' : 'p50 ' + fmtMs(num(lat.p50)) + ' · p99 ' + fmtMs(num(lat.p99)));
    const bound = num(lat.relative_error_bound);
    $('error-bound').textContent = bound != null ? 'within ' + String(Number((bound * 100).toFixed(2))) + '%' : 'approximate';

    const from = parseTime(u.from);
    const to = parseTime(u.to);
    $('window').textContent = from && to ? fmtStamp(new Date(from)) + ' – ' + fmtStamp(new Date(to)) : '';
  }

  function renderSecurity(sec) {
    const bySev = sec.by_severity && typeof sec.by_severity === 'object' ? sec.by_severity : {};
    const names = SEVERITIES.concat(Object.keys(bySev).filter((k) => !SEVERITIES.includes(k)));
    const total = num(sec.events) || 0;
    const rows = names.map((name) => {
      const n = num(bySev[name]) || 0;
      return {
        label: name, value: n, fillCls: 'sev-' + name, cls: n ? '' : 'zero',
        note: fmtInt(n) + (total ? ' · ' + fmtPct(n / total) : ''),
      };
    });
    const c = $('security').querySelector('.chart');
    if (!total) emptyChart(c, 150, 'no security events');
    else barList(c, rows, { labelWidth: 70, noteWidth: 110 });

    const note = [];
    note.push(fmtInt(num(sec.lockouts) || 0) + ' lockouts');
    note.push(fmtInt(num(sec.auto_blocks) || 0) + ' auto-blocks');
    note.push(fmtInt(num(sec.active_blocks) || 0) + ' active blocks');
    $('security-note').textContent = note.join(' · ');

    fillList($('security-types'), arr(sec.by_type).slice(0, 6).map((t) => ({
      text: t.event_type, badge: t.severity, count: num(t.count),
    })), 'no events');
    fillList($('security-ips'), arr(sec.top_ips).slice(0, 6).map((t) => ({
      text: t.ip, badge: t.blocked ? 'blocked' : null,
      count: num(t.events), sub: num(t.failed_logins) ? fmtInt(t.failed_logins) + ' failed logins' : '',
    })), 'no addresses');

    const hi = (num(bySev.high) || 0) + (num(bySev.critical) || 0);
    setKpi('kpi-security', fmtInt(total), hi ? fmtInt(hi) + ' high or critical' : 'none high or critical',
      num(bySev.critical) ? 'bad' : hi ? 'warn' : '');
  }

  function fillList(ol, items, empty) {
    ol.textContent = '';
    if (!items.length) { ol.appendChild(h('li', { class: 'muted' }, empty)); return; }
    items.forEach((it) => {
      const li = h('li');
      li.appendChild(h('span', { class: 'li-text' }, it.text));
      if (it.badge) li.appendChild(h('span', { class: 'pill sev-' + it.badge }, it.badge));
      if (it.sub) li.appendChild(h('span', { class: 'li-sub muted' }, it.sub));
      li.appendChild(h('span', { class: 'li-count' }, fmtInt(it.count)));
      ol.appendChild(li);
    });
  }

  function renderHealth(hl) {
    const status = String(hl.status || 'unknown');
    const badge = $('health-status');
    badge.textContent = status;
    badge.className = 'badge status-' + status;
    const at = parseTime(hl.at);
    const raised = Array.isArray(hl.alerts) ? hl.alerts : [];
    $('health-at').textContent = (raised.length ? 'alerts raised: ' + raised.join(', ').replace(/_/g, ' ') + ' · ' : '') +
      (at ? 'checked ' + fmtClock(new Date(at)) : '');

    const box = $('health-checks');
    box.textContent = '';
    const checks = hl.checks && typeof hl.checks === 'object' ? hl.checks : {};
    const names = Object.keys(checks);
    let okCount = 0;
    names.forEach((name) => {
      const c = checks[name];
      const ok = c && typeof c === 'object' ? c.ok !== false : Boolean(c);
      if (ok) okCount++;
      const tile = h('div', { class: 'check ' + (ok ? 'ok' : 'fail'), 'data-check': name });
      const head = h('div', { class: 'check-head' });
      head.appendChild(h('span', { class: 'dot' }));
      head.appendChild(h('span', { class: 'check-name' }, name.replace(/_/g, ' ')));
      tile.appendChild(head);
      const dl = h('dl');
      if (c && typeof c === 'object') {
        Object.keys(c).filter((k) => k !== 'ok').forEach((k) => {
          dl.appendChild(h('dt', {}, k.replace(/_/g, ' ')));
          dl.appendChild(h('dd', {}, detail(k, c[k])));
        });
      }
      tile.appendChild(dl);
      box.appendChild(tile);
    });
    if (!names.length) box.appendChild(h('p', { class: 'muted' }, 'no checks reported'));
    setKpi('kpi-health', status, names.length ? okCount + ' of ' + names.length + ' checks ok' : '',
      status === 'ok' ? 'good' : status === 'degraded' ? 'warn' : 'bad');
  }

  function detail(k, v) {
    if (v == null) return '–';
    if (typeof v === 'boolean') return v ? 'yes' : 'no';
    if (typeof v === 'number') {
      if (k === 'pid') return String(v);
      if (v === -1 && /_us$|_ms$/.test(k)) return 'n/a';
      if (/(fill|rate)$/.test(k)) return fmtPct(v);
      if (/_ms$/.test(k)) return fmtMs(v);
      if (/_us$/.test(k)) return fmtMs(v / 1000);
      return fmtInt(v);
    }
    if (Array.isArray(v)) return v.length ? v.map(String).join(', ') : 'none';
    if (typeof v === 'object') return JSON.stringify(v);
    return String(v);
  }

  // ------------------------------------------------------------ loading
  async function getJson(path) {
    let res;
    try {
      res = await fetch(path, { cache: 'no-store', headers: { Accept: 'application/json' } });
    } catch (e) {
      throw new Error('dashboard server unreachable');
    }
    let body = null;
    try { body = await res.json(); } catch (e) { /* not JSON */ }
    if (!res.ok || body == null || typeof body !== 'object') {
      const msg = body && body.error ? body.error : 'HTTP ' + res.status;
      throw new Error(msg + (body && body.sqlstate ? ' (SQLSTATE ' + body.sqlstate + ')' : ''));
    }
    return body;
  }

  function currentSince() {
    const v = $('since').value;
    return SINCE_VALUES.includes(v) ? v : '24 hours';
  }

  async function load() {
    const gen = ++generation;
    const since = encodeURIComponent(currentSince());
    document.body.dataset.state = 'loading';
    const [u, sec, hl] = await Promise.allSettled([
      getJson('api/usage?since=' + since),
      getJson('api/security?since=' + since),
      getJson('api/health'),
    ]);
    if (gen !== generation) return;   // a newer load started meanwhile
    const errors = [];
    const step = (res, name, render, onError) => {
      if (res.status === 'fulfilled') {
        last[name] = res.value;
        try { render(res.value); } catch (e) { errors.push(name + ': cannot draw (' + e.message + ')'); console.error(e); }
      } else {
        last[name] = null;
        errors.push(name + ': ' + res.reason.message);
        onError(res.reason.message);
      }
    };
    step(sec, 'security', renderSecurity, (m) => {
      panelError('security', m);
      setKpi('kpi-security', '–', 'unavailable', 'bad');
    });
    step(hl, 'health', renderHealth, (m) => {
      const b = $('health-status');
      b.textContent = 'unavailable';
      b.className = 'badge status-failing';
      $('health-checks').textContent = m;
      setKpi('kpi-health', '–', 'unavailable', 'bad');
    });
    // Usage last: its time charts take the height of their grid rows.
    step(u, 'usage', renderUsage, (m) => {
      ['chart-requests', 'chart-latency', 'chart-errors', 'top-endpoints', 'top-ips'].forEach((id) => panelError(id, m));
      ['kpi-requests', 'kpi-errors', 'kpi-latency'].forEach((id) => setKpi(id, '–', 'unavailable', 'bad'));
    });
    const banner = $('error');
    banner.textContent = errors.join(' — ');
    banner.hidden = errors.length === 0;
    $('updated').textContent = 'updated ' + fmtClock(new Date()) + ':' + pad2(new Date().getSeconds());
    document.body.dataset.state = errors.length ? 'error' : 'ready';
  }

  function schedule() {
    if (timer) clearInterval(timer);
    timer = setInterval(load, REFRESH_MS);
  }

  // Redraw from the last answers (charts are sized to their boxes).
  function redraw() {
    if (last.security) renderSecurity(last.security);
    if (last.usage) renderUsage(last.usage);
  }

  function init() {
    const sel = $('since');
    const params = new URLSearchParams(location.search);
    const want = params.get('since');
    if (want && SINCE_VALUES.includes(want)) sel.value = want;
    sel.addEventListener('change', () => {
      const p = new URLSearchParams(location.search);
      p.set('since', sel.value);
      history.replaceState(null, '', '?' + p.toString());
      load();
      schedule();
    });
    $('refresh').addEventListener('click', () => { load(); schedule(); });
    let rt = null;
    window.addEventListener('resize', () => { clearTimeout(rt); rt = setTimeout(redraw, 150); });
    load();
    schedule();
  }

  init();
}());
