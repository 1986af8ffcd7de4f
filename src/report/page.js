// The script of the report page (pasted into index.html): draws the region
// maps on <canvas> and the time series as inline SVG from the JSON embedded
// in the page, then records on <body> what it drew:
//   data-maps-drawn, data-charts-drawn   counts
//   data-map-rects    JSON: [{run, policy, when, x, y, w, h}] of each map canvas, in page pixels
//   data-diff-rects   JSON: [{run, policy, kind, changed, shown, side, x, y, w, h}] of each run's
//                     difference views: kind "changed" (the whole map, unchanged cells greyed) and
//                     "zoom" (only the changed cells, large); `side` is a cell's coloured square in pixels
//   data-report-ready "1" when done; data-report-error with the message if it failed
'use strict';
(function () {
  const body = document.body;
  const SVGNS = 'http://www.w3.org/2000/svg';  // the SVG namespace name, not a resource
  const MAP_W = 560;
  const MAP_H = 280;
  const MAX_CELLS = 2 * MAP_W * MAP_H;  // beyond this the script merges cells itself
  const REGION_BYTES = 2 * 1024 * 1024;
  const COVERAGE = ['hole', '1G leaf', '2M leaf', 'split to 4K'];
  const CONTENT = ['free', 'secret/unmapped', 'page tables', 'kernel', 'user', 'reserved',
    'other', 'no RAM'];

  const UNCHANGED = [236, 236, 236];  // a cell the run did not change, in the difference view
  const ZOOM_CELL = 10;  // pixels per cell in the zoom on the changed cells
  const ZOOM_MAX = Math.floor(MAP_W / ZOOM_CELL) * 40;

  let mapsDrawn = 0;
  let chartsDrawn = 0;
  const drawnMaps = [];
  const drawnDiffs = [];

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVGNS, tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function num(v) { return typeof v === 'number' && isFinite(v); }
  function grouped(v) { return Math.round(v).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ','); }
  function size(bytes) {
    if (bytes === 0) return '0';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let u = 0;
    while (u < units.length - 1 && bytes >= 1024 && bytes % 1024 === 0) { bytes /= 1024; u++; }
    if (u < units.length - 1 && bytes >= 1024) {
      while (u < units.length - 1 && bytes >= 1024) { bytes /= 1024; u++; }
      return bytes.toFixed(1) + ' ' + units[u];
    }
    return bytes + ' ' + units[u];
  }
  function short(v) {
    const a = Math.abs(v);
    if (a >= 1e9) return +(v / 1e9).toPrecision(3) + 'G';
    if (a >= 1e6) return +(v / 1e6).toPrecision(3) + 'M';
    if (a >= 1e4) return +(v / 1e3).toPrecision(3) + 'k';
    return +v.toPrecision(3) + '';
  }
  function rgb(hex) {
    const h = /^#([0-9a-f]{6})$/i.exec(hex || '');
    if (!h) return [255, 0, 255];
    const n = parseInt(h[1], 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }

  // ---- region maps ----

  // A cell's legend key (see the legend in the page).
  function swatchOf(code) {
    const coverage = code & 3;
    const content = (code >> 2) & 7;
    if (coverage === 0) return 'hole';
    if (content === 1) return coverage === 3 ? 'secret-4K' : 'secret-leaf';
    if (content === 2) return 'page-table';
    const key = coverage === 1 ? '1G' : coverage === 2 ? '2M' : '4K';
    return content === 0 ? key + '-free' : key;
  }

  function decode(b64) {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  // As model::merge_regions(): worst coverage; secret, then page tables,
  // then the most frequent content; not-present if any.
  function merge(cells, k) {
    const out = new Uint8Array(Math.ceil(cells.length / k));
    for (let c = 0; c < out.length; c++) {
      let coverage = 0;
      let np = 0;
      const votes = [0, 0, 0, 0, 0, 0, 0, 0];
      for (let i = c * k; i < Math.min(cells.length, (c + 1) * k); i++) {
        coverage = Math.max(coverage, cells[i] & 3);
        np |= cells[i] & 0x20;
        votes[(cells[i] >> 2) & 7]++;
      }
      let content = 7;
      if (votes[1]) content = 1;
      else if (votes[2]) content = 2;
      else {
        let most = 0;
        for (const x of [0, 3, 4, 5, 6]) if (votes[x] > most) { most = votes[x]; content = x; }
      }
      out[c] = coverage | (content << 2) | np;
    }
    return out;
  }

  function layout(n) {
    const cell = Math.max(1, Math.min(16, Math.floor(Math.sqrt(MAP_W * MAP_H / Math.max(1, n)))));
    let cols = 1;
    while (cols * 2 * cell <= MAP_W) cols *= 2;
    return { cell: cell, cols: cols, rows: Math.max(1, Math.ceil(n / cols)) };
  }

  function paint(canvas, cells, lay, colours) {
    paintCells(canvas, cells.length, lay, function (i) { return colours[cells[i] & 0x3f]; });
  }

  // n cells, cell i in colourOf(i), row after row on the layout's grid.
  function paintCells(canvas, n, lay, colourOf) {
    const w = lay.cols * lay.cell;
    const h = lay.rows * lay.cell;
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext('2d');
    const img = ctx.createImageData(w, h);
    const px = img.data;
    for (let i = 0; i < px.length; i++) px[i] = 255;  // white where no cell is
    const gap = lay.cell >= 6 ? 1 : 0;
    const side = lay.cell - gap;
    for (let i = 0; i < n; i++) {
      const c = colourOf(i);
      const x0 = (i % lay.cols) * lay.cell;
      const y0 = Math.floor(i / lay.cols) * lay.cell;
      for (let y = 0; y < side; y++) {
        let o = ((y0 + y) * w + x0) * 4;
        for (let x = 0; x < side; x++, o += 4) {
          px[o] = c[0]; px[o + 1] = c[1]; px[o + 2] = c[2]; px[o + 3] = 255;
        }
      }
    }
    ctx.putImageData(img, 0, 0);
  }

  function caption(map, start) {
    const cov = map.coverage_regions || {};
    const pages = map.content_pages || {};
    const parts = [];
    const covText = [['1G', '1G-leaf regions'], ['2M', '2M leaves'], ['4K', 'split to 4K'],
      ['hole', 'hole']].filter(function (p) { return num(cov[p[0]]); })
      .map(function (p) { return grouped(cov[p[0]]) + ' ' + p[1]; });
    if (covText.length) parts.push(covText.join(', '));
    if (start && num(cov['4K']) && start.coverage_regions && num(start.coverage_regions['4K'])) {
      const d = cov['4K'] - start.coverage_regions['4K'];
      parts.push((d >= 0 ? '+' : '') + grouped(d) + ' split since the start');
    }
    const pageText = [['secret', 'secret/unmapped pages'], ['page_table', 'page-table pages'],
      ['free', 'free pages']].filter(function (p) { return num(pages[p[0]]); })
      .map(function (p) { return grouped(pages[p[0]]) + ' ' + p[1]; });
    if (pageText.length) parts.push(pageText.join(', '));
    if (num(map.not_present_pages)) parts.push(grouped(map.not_present_pages) + ' pages not present in the direct map');
    return parts.join('; ');
  }

  function drawMap(figure, run, runIndex, when, map, colours, startMap) {
    figure.appendChild(el('div', { class: 'when' }, when));
    if (!map || typeof map.data !== 'string') {
      figure.appendChild(el('p', { class: 'missing' }, 'no ' + when + ' snapshot in this run'));
      return null;
    }
    let cells;
    try {
      cells = decode(map.data);
    } catch (e) {
      figure.appendChild(el('p', { class: 'missing' }, 'the ' + when + ' snapshot is not readable: ' + e.message));
      return null;
    }
    let perCell = num(map.regions_per_cell) && map.regions_per_cell >= 1 ? map.regions_per_cell : 1;
    let k = 1;
    while (cells.length / k > MAX_CELLS) k *= 2;
    if (k > 1) { cells = merge(cells, k); perCell *= k; }
    const lay = layout(cells.length);
    const cellBytes = perCell * (num(map.region_bytes) ? map.region_bytes : REGION_BYTES);
    const frame = el('div', { class: 'map-frame' });
    const gutter = el('div', { class: 'gutter' });
    gutter.style.height = (lay.rows * lay.cell) + 'px';
    const labelEvery = Math.max(1, Math.ceil(16 / lay.cell));
    for (let r = 0; r < lay.rows; r += labelEvery) {
      const s = el('span', {}, size(r * lay.cols * cellBytes));
      s.style.top = (r * lay.cell + lay.cell / 2) + 'px';
      gutter.appendChild(s);
    }
    const canvas = el('canvas', { class: 'map', 'data-run': runIndex, 'data-when': when });
    frame.appendChild(gutter);
    frame.appendChild(canvas);
    figure.appendChild(frame);
    paint(canvas, cells, lay, colours);
    const readout = el('div', { class: 'readout' }, '\u00a0');
    canvas.addEventListener('mousemove', function (ev) {
      const i = Math.floor(ev.offsetY / lay.cell) * lay.cols + Math.floor(ev.offsetX / lay.cell);
      if (i < 0 || i >= cells.length || ev.offsetX >= lay.cols * lay.cell) { readout.textContent = '\u00a0'; return; }
      const c = cells[i];
      readout.textContent = '0x' + (i * cellBytes).toString(16) + ' (' + size(i * cellBytes) + '), ' +
        size(cellBytes) + ': ' + COVERAGE[c & 3] + ', ' + CONTENT[(c >> 2) & 7] +
        ((c & 0x20) ? ', pages not present' : '');
    });
    canvas.addEventListener('mouseleave', function () { readout.textContent = '\u00a0'; });
    figure.appendChild(readout);
    figure.appendChild(el('div', { class: 'caption' }, caption(map, startMap)));
    mapsDrawn++;
    drawnMaps.push({ canvas: canvas, run: runIndex, policy: run.policy, when: when });
    return { perCell: perCell, cellBytes: cellBytes, lay: lay, cells: cells };
  }

  // What the run changed: every cell whose code differs between the start and
  // the end map, in the end's colour over grey, then the same cells alone and
  // large, with counts beside them.
  function drawDiff(figure, run, runIndex, start, end, colours) {
    figure.appendChild(el('div', { class: 'when' }, 'changed during the run'));
    if (!start || !end || start.cells.length !== end.cells.length) {
      figure.appendChild(el('p', { class: 'missing' }, 'needs the start and end snapshots'));
      return;
    }
    const a = start.cells, b = end.cells;
    const changed = [];
    let split = 0, healed = 0, content = 0, unmapped = 0;
    for (let i = 0; i < b.length; i++) {
      if (a[i] === b[i]) continue;
      changed.push(i);
      if ((b[i] & 3) > (a[i] & 3)) split++;
      else if ((b[i] & 3) < (a[i] & 3)) healed++;
      else content++;
      if ((b[i] & 0x20) && !(a[i] & 0x20)) unmapped++;
    }
    figure.setAttribute('data-changed-cells', String(changed.length));
    const counts = el('div', { class: 'diff-counts' });
    counts.appendChild(el('b', {}, grouped(changed.length)));
    counts.appendChild(document.createTextNode(' of ' + grouped(b.length) + ' cells changed: ' +
      grouped(split) + ' split further, ' + grouped(healed) + ' back to larger leaves, ' +
      grouped(content) + ' other content; ' + grouped(unmapped) + ' newly hold pages not present'));
    figure.appendChild(counts);
    const lay = end.lay;
    const whole = el('canvas', { class: 'map diff', 'data-run': runIndex, 'data-kind': 'changed' });
    const marked = new Uint8Array(b.length);
    for (const i of changed) marked[i] = 1;
    paintCells(whole, b.length, lay, function (i) { return marked[i] ? colours[b[i] & 0x3f] : UNCHANGED; });
    figure.appendChild(whole);
    const side = lay.cell - (lay.cell >= 6 ? 1 : 0);
    drawnDiffs.push({ canvas: whole, run: runIndex, policy: run.policy, kind: 'changed', changed: changed.length,
      shown: changed.length, side: side });
    if (!changed.length) {
      figure.appendChild(el('p', { class: 'explain' }, 'No cell changed.'));
      return;
    }
    const shown = changed.slice(0, ZOOM_MAX);
    figure.appendChild(el('div', { class: 'when' }, 'the changed cells alone, in address order' +
      (shown.length < changed.length ? ' (the first ' + grouped(shown.length) + ')' : '')));
    const zcols = Math.floor(MAP_W / ZOOM_CELL);
    const zlay = { cell: ZOOM_CELL, cols: zcols, rows: Math.max(1, Math.ceil(shown.length / zcols)) };
    const zoom = el('canvas', { class: 'map zoom', 'data-run': runIndex, 'data-kind': 'zoom' });
    paintCells(zoom, shown.length, zlay, function (k) { return colours[b[shown[k]] & 0x3f]; });
    const readout = el('div', { class: 'readout' }, '\u00a0');
    zoom.addEventListener('mousemove', function (ev) {
      const k = Math.floor(ev.offsetY / ZOOM_CELL) * zlay.cols + Math.floor(ev.offsetX / ZOOM_CELL);
      if (k < 0 || k >= shown.length) { readout.textContent = '\u00a0'; return; }
      const i = shown[k];
      readout.textContent = '0x' + (i * end.cellBytes).toString(16) + ': ' + COVERAGE[a[i] & 3] + ', ' +
        CONTENT[(a[i] >> 2) & 7] + ' \u2192 ' + COVERAGE[b[i] & 3] + ', ' + CONTENT[(b[i] >> 2) & 7];
    });
    figure.appendChild(zoom);
    figure.appendChild(readout);
    drawnDiffs.push({ canvas: zoom, run: runIndex, policy: run.policy, kind: 'zoom', changed: changed.length,
      shown: shown.length, side: ZOOM_CELL - 1 });
  }

  function drawMaps(data) {
    const grid = document.getElementById('map-grid');
    const runs = data.runs;
    const palette = data.palette || {};
    const colours = [];
    for (let code = 0; code < 64; code++) colours.push(rgb(palette[swatchOf(code)]));
    if (!runs.length) { grid.appendChild(el('p', { class: 'missing' }, 'No runs in this report.')); return; }
    let scale = null;
    runs.forEach(function (run, i) {
      const section = el('div', { class: 'policy-maps', 'data-run': i });
      section.appendChild(el('h3', {}, run.policy));
      const pair = el('div', { class: 'pair' });
      section.appendChild(pair);
      grid.appendChild(section);
      const maps = run.region_map || {};
      const drawn = {};
      // A page of maps alone (data.maps_only: a real machine's map) has one map per run, `now`.
      for (const when of data.maps_only ? ['now'] : ['start', 'end']) {
        const fig = el('figure', { class: 'map', 'data-when': when });
        pair.appendChild(fig);
        drawn[when] = drawMap(fig, run, i, when, maps[when], colours, when === 'end' ? maps.start : null);
        if (drawn[when] && !scale) scale = drawn[when];
      }
      if (data.maps_only) return;
      const diff = el('figure', { class: 'map diff', 'data-when': 'changed' });
      pair.appendChild(diff);
      drawDiff(diff, run, i, drawn.start, drawn.end, colours);
    });
    const note = document.getElementById('map-scale');
    if (scale) {
      note.textContent = 'One cell = ' + size(scale.cellBytes) +
        (scale.perCell > 1 ? ' (' + scale.perCell + ' regions of 2 MiB merged per cell: the worst coverage is shown, ' +
          'secret pages and page tables win over the rest)' : ' (one region)') +
        '; one row = ' + size(scale.lay.cols * scale.cellBytes) + '.';
    } else {
      note.textContent = 'No run in this report carries a region map (region_map.start / region_map.end).';
    }
  }

  // ---- time series ----

  function niceStep(span) {
    if (!(span > 0)) return 1;
    const raw = span / 4;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw) return m * p;
    return 10 * p;
  }

  function drawChart(container, metric, runs, colours) {
    const fig = el('figure', { class: 'chart', 'data-metric': metric.key });
    fig.appendChild(el('figcaption', {}, metric.title));
    container.appendChild(fig);
    const series = [];
    runs.forEach(function (run, i) {
      const pts = (run.over_time || []).filter(function (s) {
        return s && num(s.events) && num(s[metric.key]);
      }).map(function (s) { return [s.events, s[metric.key] * metric.scale]; });
      if (pts.length) series.push({ name: run.policy, colour: colours[i % colours.length], pts: pts });
    });
    if (!series.length) {
      fig.appendChild(el('p', { class: 'missing' }, 'no samples of ' + metric.key + ' in this report'));
      return false;
    }
    const W = 620, H = 250, L = 64, R = 14, T = 10, B = 36;
    let xmax = 0, ymax = 0;
    for (const s of series) for (const p of s.pts) { xmax = Math.max(xmax, p[0]); ymax = Math.max(ymax, p[1]); }
    if (xmax <= 0) xmax = 1;
    const ystep = niceStep(ymax > 0 ? ymax : 1);
    const ytop = Math.max(ystep, Math.ceil(ymax / ystep) * ystep);
    const xstep = niceStep(xmax);
    const xtop = Math.max(xstep, Math.ceil(xmax / xstep) * xstep);
    const X = function (v) { return L + (W - L - R) * v / xtop; };
    const Y = function (v) { return H - B - (H - T - B) * v / ytop; };
    const root = svg('svg', { width: W, height: H, viewBox: '0 0 ' + W + ' ' + H, role: 'img',
      'aria-label': metric.title + ' over the run' });
    for (let v = 0; v <= ytop + ystep / 2; v += ystep) {
      root.appendChild(svg('line', { x1: L, x2: W - R, y1: Y(v), y2: Y(v), stroke: v === 0 ? '#888' : '#e4e4e4' }));
      root.appendChild(svg('text', { x: L - 6, y: Y(v) + 4, 'text-anchor': 'end' }, short(v)));
    }
    for (let v = 0; v <= xtop + xstep / 2; v += xstep) {
      root.appendChild(svg('line', { x1: X(v), x2: X(v), y1: H - B, y2: H - B + 4, stroke: '#888' }));
      root.appendChild(svg('text', { x: X(v), y: H - B + 16, 'text-anchor': 'middle' }, short(v)));
    }
    root.appendChild(svg('line', { x1: L, x2: L, y1: T, y2: H - B, stroke: '#888' }));
    root.appendChild(svg('text', { x: (L + W - R) / 2, y: H - 4, 'text-anchor': 'middle' }, 'events'));
    for (const s of series) {
      const points = s.pts.map(function (p) { return X(p[0]).toFixed(1) + ',' + Y(p[1]).toFixed(1); }).join(' ');
      root.appendChild(svg('polyline', { points: points, fill: 'none', stroke: s.colour, 'stroke-width': 2 }));
      for (const p of s.pts) {
        const dot = svg('circle', { cx: X(p[0]).toFixed(1), cy: Y(p[1]).toFixed(1), r: 2.5, fill: s.colour });
        dot.appendChild(svg('title', {}, s.name + ': ' + grouped(p[0]) + ' events, ' + short(p[1])));
        root.appendChild(dot);
      }
    }
    fig.appendChild(root);
    const legend = el('div', { class: 'chart-legend' });
    for (const s of series) {
      const item = el('span', {}, s.name);
      item.style.setProperty('--c', s.colour);
      legend.appendChild(item);
    }
    fig.appendChild(legend);
    return true;
  }

  function drawCharts(data) {
    const grid = document.getElementById('chart-grid');
    const colours = data.series_colours && data.series_colours.length ? data.series_colours : ['#1f77b4'];
    // The figures to chart ({key, title, scale}) come with the data (sim/metrics.hpp).
    const charts = Array.isArray(data.charts) ? data.charts : [];
    for (const m of charts) if (drawChart(grid, m, data.runs, colours)) chartsDrawn++;
  }

  try {
    const data = JSON.parse(document.getElementById('exmem-data').textContent);
    data.runs = Array.isArray(data.runs) ? data.runs : [];
    drawMaps(data);
    if (!data.maps_only) drawCharts(data);
  } catch (e) {
    body.setAttribute('data-report-error', String(e && e.stack || e));
  }
  body.setAttribute('data-maps-drawn', String(mapsDrawn));
  body.setAttribute('data-charts-drawn', String(chartsDrawn));
  body.setAttribute('data-map-rects', JSON.stringify(drawnMaps.map(function (m) {
    const r = m.canvas.getBoundingClientRect();
    return { run: m.run, policy: m.policy, when: m.when, x: Math.round(r.left + window.scrollX) + 1,
      y: Math.round(r.top + window.scrollY) + 1, w: m.canvas.width, h: m.canvas.height };
  })));
  body.setAttribute('data-diff-rects', JSON.stringify(drawnDiffs.map(function (m) {
    const r = m.canvas.getBoundingClientRect();
    return { run: m.run, policy: m.policy, kind: m.kind, changed: m.changed, shown: m.shown, side: m.side,
      x: Math.round(r.left + window.scrollX) + 1, y: Math.round(r.top + window.scrollY) + 1,
      w: m.canvas.width, h: m.canvas.height };
  })));
  body.setAttribute('data-report-ready', '1');
})();
