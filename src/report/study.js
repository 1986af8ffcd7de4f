// The script of the study page (pasted into the page of exmem study): draws,
// from the study's JSON embedded in the page, one figure per metric with one
// chart per combination of the axes other than x, as inline SVG:
//   with an x axis   one line per policy through the medians over seeds, a
//                    band from min to max (path.band-range) and, when a group
//                    has 4 or more runs, a darker one from q1 to q3
//                    (path.band-iqr); the line is path.median-line
//   without          policies as categories: a dot at the median, a whisker
//                    min-max (line.band-range), a box q1-q3 (rect.band-iqr)
// The charts of one metric share their y scale; it is logarithmic when the
// values above 0 span more than 3 decades and none is negative (the axis says
// so); zeros then sit at a foot of their own, below a gap.
// It records on <body>: data-plots (charts drawn), data-plot-rects (JSON:
// [{metric, facet, x, y, w, h}] of each chart's <svg>, in page pixels),
// data-drawn "ok" when done, or "error: <message>" (with data-study-error,
// the stack) if it failed.
'use strict';
(function () {
  const body = document.body;
  const SVGNS = 'http://www.w3.org/2000/svg';  // the SVG namespace name, not a resource
  let plots = 0;

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
  function arr(v) { return Array.isArray(v) ? v : []; }
  function str(v) { return v === null || v === undefined ? '' : String(v); }
  function num(v) { return typeof v === 'number' && isFinite(v); }
  function grouped(v) {
    const r = Math.round(Math.abs(v)).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
    return (v < 0 ? '-' : '') + r;
  }
  // A number in a tooltip: grouped when large, else 4 significant digits.
  function full(v) { return Math.abs(v) >= 1000 ? grouped(v) : String(+v.toPrecision(4)); }
  // A number on an axis.
  function short(v) {
    const a = Math.abs(v);
    if (a >= 1e12) return +(v / 1e12).toPrecision(3) + 'T';
    if (a >= 1e9) return +(v / 1e9).toPrecision(3) + 'G';
    if (a >= 1e6) return +(v / 1e6).toPrecision(3) + 'M';
    if (a >= 1e3) return +(v / 1e3).toPrecision(3) + 'k';
    if (a !== 0 && a < 1e-3) return v.toExponential(1);
    return +v.toPrecision(3) + '';
  }
  function clip(s, n) { return s.length > n ? s.slice(0, n - 1) + '\u2026' : s; }

  function niceStep(span) {
    if (!(span > 0)) return 1;
    const raw = span / 5;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw) return m * p;
    return 10 * p;
  }

  // The y scale over every value a metric's charts show: {log, ticks, frac(v) in [0, 1]}.
  function makeScale(values) {
    let lo = Infinity, hi = -Infinity;
    for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
    if (!values.length) { lo = 0; hi = 1; }
    // The smallest value above 0: with zeros and no negative value, a log
    // scale over the positive values keeps a foot for 0, below a gap.
    let pos = Infinity;
    for (const v of values) if (v > 0 && v < pos) pos = v;
    const withZero = lo === 0 && pos < Infinity;
    if ((lo > 0 || withZero) && hi / (withZero ? pos : lo) > 1000) {
      const a = Math.floor(Math.log10(withZero ? pos : lo));
      let b = Math.ceil(Math.log10(hi));
      if (b <= a) b = a + 1;
      const every = Math.max(1, Math.ceil((b - a) / 6));
      const ticks = withZero ? [0] : [];
      for (let e = a; e <= b; e += every) ticks.push(Math.pow(10, e));
      const gap = withZero ? 0.1 : 0;
      return { log: true, zero: withZero, ticks: ticks, frac: function (v) {
        return v <= 0 ? 0 : gap + (1 - gap) * (Math.log10(v) - a) / (b - a);
      } };
    }
    if (lo >= 0 && lo <= hi / 2) lo = 0;
    if (hi <= 0 && hi >= lo / 2) hi = 0;
    if (hi === lo) {
      const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
      hi += pad;
      if (lo !== 0) lo -= pad;
    }
    const step = niceStep(hi - lo);
    const bottom = Math.floor(lo / step + 1e-9) * step;
    const top = Math.max(bottom + step, Math.ceil(hi / step - 1e-9) * step);
    const ticks = [];
    for (let k = 0; bottom + k * step <= top + step / 2; k++) ticks.push(bottom + k * step);
    return { log: false, ticks: ticks, frac: function (v) { return (v - bottom) / (top - bottom); } };
  }

  // The stats of a group for one metric, when it has a median.
  function statOf(group, key) {
    if (!group || !group.stats) return null;
    const s = group.stats[key];
    return s && num(s.median) ? s : null;
  }
  function hasIqr(group, s) { return num(group.n) && group.n >= 4 && num(s.q1) && num(s.q3); }
  function hasRange(s) { return num(s.min) && num(s.max); }

  // Every combination of the values of `axes` (in study order): [[{axis, value}]].
  function combinations(axes) {
    let out = [[]];
    for (const a of axes) {
      const next = [];
      for (const c of out) for (const v of a.values) next.push(c.concat([{ axis: a.name, value: v }]));
      out = next;
    }
    return out;
  }

  function tooltip(policy, where, group, s, unit) {
    const u = unit ? ' ' + unit : '';
    const lines = [policy].concat(where);
    lines.push('median ' + full(s.median) + u);
    if (hasRange(s)) lines.push('min ' + full(s.min) + ', max ' + full(s.max));
    if (num(s.q1) && num(s.q3)) lines.push('q1 ' + full(s.q1) + ', q3 ' + full(s.q3));
    if (num(group.n)) lines.push(group.n + (group.n === 1 ? ' run' : ' runs'));
    return lines.join('\n');
  }

  // One chart: frame, axes and ticks; returns {root, X(i), Y(v), W} to draw on.
  function frame(fig, ctx, categories, axisTitle) {
    const W = ctx.width, H0 = 236, L = 64, R = 12, T = 12;
    const slot = (W - L - R) / Math.max(1, categories.length);
    let longest = 0;
    for (const c of categories) longest = Math.max(longest, Math.min(c.length, 22));
    const rotate = longest * 6.6 > slot - 4;
    const B = rotate ? 30 + Math.ceil(longest * 6.6 * 0.57) : 38;
    const H = H0 + B;
    const X = function (i) { return L + slot * (i + 0.5); };
    const Y = function (v) { return T + (H0 - T) * (1 - ctx.scale.frac(v)); };
    const root = svg('svg', { class: 'study-plot', width: W, height: H, viewBox: '0 0 ' + W + ' ' + H, role: 'img',
      'data-metric': ctx.metric.key, 'data-facet': ctx.facetTitle, 'aria-label': ctx.label });
    for (const v of ctx.scale.ticks) {
      const y = Y(v).toFixed(1);
      root.appendChild(svg('line', { x1: L, x2: W - R, y1: y, y2: y, stroke: '#e4e4e4' }));
      root.appendChild(svg('text', { x: L - 6, y: +y + 4, 'text-anchor': 'end' }, short(v)));
    }
    root.appendChild(svg('line', { x1: L, x2: L, y1: T, y2: H0, stroke: '#888' }));
    root.appendChild(svg('line', { x1: L, x2: W - R, y1: H0, y2: H0, stroke: '#888' }));
    categories.forEach(function (c, i) {
      root.appendChild(svg('line', { x1: X(i), x2: X(i), y1: H0, y2: H0 + 4, stroke: '#888' }));
      const t = rotate
        ? svg('text', { x: X(i), y: H0 + 14, 'text-anchor': 'end',
          transform: 'rotate(-35 ' + X(i).toFixed(1) + ' ' + (H0 + 14) + ')' }, clip(c, 22))
        : svg('text', { x: X(i), y: H0 + 16, 'text-anchor': 'middle' }, clip(c, 22));
      if (c.length > 22) t.appendChild(svg('title', {}, c));
      root.appendChild(t);
    });
    root.appendChild(svg('text', { x: (L + W - R) / 2, y: H - 5, 'text-anchor': 'middle', class: 'axis-title' },
      axisTitle));
    const yTitle = [ctx.metric.unit, ctx.scale.log ? (ctx.scale.zero ? 'log scale, 0 at the foot' : 'log scale') : '']
      .filter(Boolean).join(', ');
    if (yTitle) {
      root.appendChild(svg('text', { x: 12, y: (T + H0) / 2, 'text-anchor': 'middle', class: 'axis-title y-title',
        transform: 'rotate(-90 12 ' + ((T + H0) / 2) + ')' }, yTitle));
    }
    fig.appendChild(root);
    return { root: root, X: X, Y: Y, slot: slot };
  }

  // The band between lo(s) and hi(s) over runs of consecutive categories;
  // a lone category gets a narrow bar.
  function bands(g, points, lo, hi, cls, colour, opacity) {
    let run = [];
    const flush = function () {
      if (!run.length) return;
      let d;
      if (run.length === 1) {
        const p = run[0], w = Math.min(10, g.slot / 3);
        d = 'M' + (g.X(p.i) - w).toFixed(1) + ',' + g.Y(hi(p.s)).toFixed(1) + 'H' + (g.X(p.i) + w).toFixed(1) +
          'V' + g.Y(lo(p.s)).toFixed(1) + 'H' + (g.X(p.i) - w).toFixed(1) + 'Z';
      } else {
        d = run.map(function (p, k) { return (k ? 'L' : 'M') + g.X(p.i).toFixed(1) + ',' + g.Y(hi(p.s)).toFixed(1); }).join('') +
          run.slice().reverse().map(function (p) { return 'L' + g.X(p.i).toFixed(1) + ',' + g.Y(lo(p.s)).toFixed(1); }).join('') + 'Z';
      }
      g.root.appendChild(svg('path', { class: 'band ' + cls, d: d, fill: colour, 'fill-opacity': opacity, stroke: 'none',
        'data-policy': run[0].policy }));
      run = [];
    };
    for (const p of points) {
      if (p) run.push(p); else flush();
    }
    flush();
  }

  // Under a chart: the policies with values in other charts of the metric but
  // none in this one (the legend names those with none at all).
  function noValuesHere(fig, ctx, missing) {
    const here = missing.filter(function (p) { return ctx.withValues.has(p); });
    if (here.length) fig.appendChild(el('p', { class: 'no-values' }, 'no values here: ' + here.join(', ')));
  }

  function linePlot(fig, ctx, xAxis, facet) {
    const frameG = frame(fig, ctx, xAxis.values, xAxis.name);
    // Each policy a little to the side of the category (dodged), so policies
    // with the same values stay visible side by side.
    const dodge = Math.min(4, frameG.slot / 8 / Math.max(1, ctx.policies.length));
    const dodged = function (pi) {
      return { root: frameG.root, Y: frameG.Y, slot: frameG.slot,
        X: function (i) { return frameG.X(i) + dodge * (pi - (ctx.policies.length - 1) / 2); } };
    };
    const g = frameG;
    const missing = [];
    let lines = 0;
    const layers = [];
    ctx.policies.forEach(function (policy, pi) {
      const colour = ctx.colours[pi];
      const pts = xAxis.values.map(function (v, i) {
        const group = ctx.group(facet, xAxis.name, v, policy);
        const s = statOf(group, ctx.metric.key);
        return s ? { i: i, s: s, group: group, policy: policy, value: v } : null;
      });
      if (!pts.some(Boolean)) { missing.push(policy); return; }
      layers.push({ policy: policy, colour: colour, pts: pts, g: dodged(pi) });
    });
    // Bands under every line, then the lines, then the dots on top; the
    // bands fainter when many overlap.
    const faint = Math.sqrt(Math.min(1, 2 / Math.max(1, layers.length)));
    for (const l of layers) {
      bands(l.g, l.pts.map(function (p) { return p && hasRange(p.s) ? p : null; }),
        function (s) { return s.min; }, function (s) { return s.max; }, 'band-range', l.colour, (0.16 * faint).toFixed(3));
      bands(l.g, l.pts.map(function (p) { return p && hasIqr(p.group, p.s) ? p : null; }),
        function (s) { return s.q1; }, function (s) { return s.q3; }, 'band-iqr', l.colour, (0.3 * faint).toFixed(3));
    }
    for (const l of layers) {
      let d = '', prev = false;
      for (const p of l.pts) {
        if (!p) { prev = false; continue; }
        d += (prev ? 'L' : 'M') + l.g.X(p.i).toFixed(1) + ',' + g.Y(p.s.median).toFixed(1);
        prev = true;
      }
      g.root.appendChild(svg('path', { class: 'median-line', d: d, fill: 'none', stroke: l.colour, 'stroke-width': 2.2,
        'stroke-linejoin': 'round', 'data-policy': l.policy }));
      lines++;
    }
    for (const l of layers) {
      for (const p of l.pts) {
        if (!p) continue;
        const dot = svg('circle', { class: 'median-dot', cx: l.g.X(p.i).toFixed(1), cy: g.Y(p.s.median).toFixed(1), r: 3.5,
          fill: l.colour, 'data-policy': l.policy });
        dot.appendChild(svg('title', {}, tooltip(l.policy, [xAxis.name + ' = ' + p.value].concat(ctx.where), p.group, p.s,
          ctx.metric.unit)));
        g.root.appendChild(dot);
      }
    }
    g.root.setAttribute('data-lines', String(lines));
    noValuesHere(fig, ctx, missing);
  }

  function categoryPlot(fig, ctx, facet) {
    const g = frame(fig, ctx, ctx.policies, 'policy');
    const missing = [];
    let drawn = 0;
    ctx.policies.forEach(function (policy, i) {
      const colour = ctx.colours[i];
      const group = ctx.group(facet, null, null, policy);
      const s = statOf(group, ctx.metric.key);
      if (!s) { missing.push(policy); return; }
      const x = g.X(i);
      if (hasRange(s)) {
        g.root.appendChild(svg('line', { class: 'band band-range', x1: x, x2: x, y1: g.Y(s.min).toFixed(1),
          y2: g.Y(s.max).toFixed(1), stroke: colour, 'stroke-width': 2, 'data-policy': policy }));
        for (const v of [s.min, s.max]) {
          g.root.appendChild(svg('line', { class: 'whisker-cap', x1: x - 6, x2: x + 6, y1: g.Y(v).toFixed(1),
            y2: g.Y(v).toFixed(1), stroke: colour, 'stroke-width': 2 }));
        }
      }
      if (hasIqr(group, s)) {
        const w = Math.min(18, g.slot / 4);
        const top = g.Y(s.q3), bottom = g.Y(s.q1);
        g.root.appendChild(svg('rect', { class: 'band band-iqr', x: (x - w).toFixed(1), y: top.toFixed(1),
          width: (2 * w).toFixed(1), height: Math.max(1, bottom - top).toFixed(1), fill: colour, 'fill-opacity': 0.3,
          stroke: colour, 'data-policy': policy }));
      }
      const dot = svg('circle', { class: 'median-dot', cx: x.toFixed(1), cy: g.Y(s.median).toFixed(1), r: 5, fill: colour,
        'data-policy': policy });
      dot.appendChild(svg('title', {}, tooltip(policy, ctx.where, group, s, ctx.metric.unit)));
      g.root.appendChild(dot);
      drawn++;
    });
    g.root.setAttribute('data-lines', '0');
    g.root.setAttribute('data-dots', String(drawn));
    noValuesHere(fig, ctx, missing);
  }

  function draw(data) {
    const study = data.study || {};
    const axes = arr(study.axes).map(function (a) {
      return { name: str(a && a.name), values: arr(a && a.values).map(str) };
    });
    const policies = arr(study.policies).map(str);
    const palette = arr(data.colours);
    const colours = policies.map(function (p, i) { return str(palette[i]) || '#1f77b4'; });
    const xAxis = typeof study.x === 'string' ? axes.find(function (a) { return a.name === study.x; }) || null : null;
    const others = axes.filter(function (a) { return a !== xAxis; });
    const facets = combinations(others);

    // The summary's groups by their axis values and policy.
    const byKey = new Map();
    const keyOf = function (values, policy) { return JSON.stringify([values, policy]); };
    for (const g of arr(study.summary)) {
      if (!g) continue;
      const ax = g.axes || {};
      byKey.set(keyOf(axes.map(function (a) { return str(ax[a.name]); }), str(g.policy)), g);
    }
    const group = function (facet, xName, xValue, policy) {
      const values = axes.map(function (a) {
        if (a.name === xName) return xValue;
        const f = facet.find(function (c) { return c.axis === a.name; });
        return f ? f.value : '';
      });
      return byKey.get(keyOf(values, policy)) || null;
    };

    // With two or more axes besides x, a grid: one column per value of the
    // last of them (when they fit), one row per combination of the others.
    const last = others.length >= 2 ? others[others.length - 1] : null;
    const columns = last && last.values.length <= 3 ? last.values.length : 0;
    const across = columns || facets.length;
    const width = across === 1 ? 640 : across === 2 ? 600 : 410;
    arr(study.metrics).forEach(function (metric, mi) {
      const section = document.querySelector('section.metric[data-metric-index="' + mi + '"]');
      if (!section || !metric) return;
      const container = section.querySelector('.facets');
      if (columns) {
        container.style.display = 'grid';
        container.style.gridTemplateColumns = 'repeat(' + columns + ', ' + width + 'px)';
      }
      metric = { key: str(metric.key), label: str(metric.label) || str(metric.key), unit: str(metric.unit) };
      // One y scale for all of the metric's charts.
      const values = [];
      const withValues = new Set();
      for (const g of byKey.values()) {
        const s = statOf(g, metric.key);
        if (!s) continue;
        withValues.add(str(g.policy));
        for (const k of ['median', 'min', 'max', 'q1', 'q3']) if (num(s[k])) values.push(s[k]);
      }
      const scale = makeScale(values);
      const legend = el('div', { class: 'chart-legend' });
      policies.forEach(function (p, i) {
        const item = el('span', withValues.has(p) ? {} : { class: 'no-values' },
          p + (withValues.has(p) ? '' : ' (no values)'));
        item.style.setProperty('--c', colours[i]);
        legend.appendChild(item);
      });
      section.insertBefore(legend, container);
      if (!values.length) {
        container.appendChild(el('p', { class: 'missing' }, 'No run of the study has a value of ' + metric.key + '.'));
        return;
      }
      if (xAxis && !xAxis.values.length) {
        container.appendChild(el('p', { class: 'missing' }, 'The axis ' + xAxis.name + ' has no values.'));
        return;
      }
      for (const facet of facets) {
        const where = facet.map(function (c) { return c.axis + ' = ' + c.value; });
        const title = where.join(' \u00b7 ');
        const fig = el('figure', { class: 'plot', 'data-facet': title });
        fig.style.width = width + 'px';
        if (title) fig.appendChild(el('figcaption', { title: title }, title));
        container.appendChild(fig);
        const ctx = { metric: metric, scale: scale, policies: policies, colours: colours, group: group, where: where,
          facetTitle: title, width: width, label: metric.label + (title ? ', ' + title : ''), withValues: withValues };
        if (xAxis) linePlot(fig, ctx, xAxis, facet); else categoryPlot(fig, ctx, facet);
        plots++;
      }
    });
  }

  try {
    draw(JSON.parse(document.getElementById('exmem-study').textContent));
    body.setAttribute('data-drawn', 'ok');
  } catch (e) {
    body.setAttribute('data-drawn', 'error: ' + String(e && e.message || e));
    body.setAttribute('data-study-error', String(e && e.stack || e));
  }
  body.setAttribute('data-plots', String(plots));
  body.setAttribute('data-plot-rects', JSON.stringify(Array.prototype.map.call(
    document.querySelectorAll('svg.study-plot'), function (e) {
      const r = e.getBoundingClientRect();
      return { metric: e.getAttribute('data-metric'), facet: e.getAttribute('data-facet'),
        x: Math.round(r.left + window.scrollX), y: Math.round(r.top + window.scrollY),
        w: Math.round(r.width), h: Math.round(r.height) };
    })));
})();
