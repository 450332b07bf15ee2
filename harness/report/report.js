/* splitbench report.html: the budget controls, the recommendation rule and the interactive trade-off plot.
 *
 * The rule is harness.analysis.recommend.choose's, applied to the numbers Python computed for it (the page's JSON
 * holds Python's doubles: latency under each network, upload in kB, accuracy, memory, privacy), so a
 * comparison here gives the answer it gives there; tests/test_report_browser.py moves these controls in
 * headless Chromium and checks the highlighted configurations against choose() on many budgets.
 * Numbers are printed as harness/core/units.py prints them (three significant digits, us under 1 ms).
 * No library, no network: the page must open offline from an e-mail attachment.
 */
(function () {
  'use strict';
  var DATA = JSON.parse(document.getElementById('splitbench-data').textContent);
  var STATE = [], RESULTS = [];

  // ------------------------------------------------------------------ numbers (harness/core/units.py)
  function isNum(x) { return typeof x === 'number' && isFinite(x); }
  function thousands(s) {
    var parts = s.split('.'), neg = parts[0].charAt(0) === '-', int = neg ? parts[0].slice(1) : parts[0];
    int = int.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
    return (neg ? '-' : '') + int + (parts.length > 1 ? '.' + parts[1] : '');
  }
  function pyExp(x, decimals) {  // Python's f"{x:.{decimals}e}": at least two exponent digits
    var s = x.toExponential(decimals), i = s.indexOf('e'), mant = s.slice(0, i), exp = s.slice(i + 1);
    var sign = exp.charAt(0) === '-' ? '-' : '+', digits = exp.replace(/^[+-]/, '');
    if (digits.length < 2) { digits = '0' + digits; }
    return mant + 'e' + sign + digits;
  }
  function fixed(x, dec) {  // Python's f"{x:.{dec}f}": an exact tie rounds half to even (JS's toFixed rounds up)
    var s = x.toFixed(dec), exact = Math.abs(x).toFixed(Math.min(100, dec + 70)), dot = exact.indexOf('.');
    if (/^50*$/.test(exact.slice(dot + 1 + dec))) {
      var kept = exact.slice(0, dec ? dot + 1 + dec : dot);
      if (Number(kept.charAt(kept.length - 1)) % 2 === 0) { s = (x < 0 ? '-' : '') + kept; }
    }
    return s;
  }
  function sig(x, digits) {
    digits = digits || 3;
    if (x === null || x === undefined || !isNum(x)) { return '\u2014'; }
    if (x === 0) { return '0'; }
    var mag = Math.floor(Math.log10(Math.abs(x)));
    if (mag >= 6 || mag < -4) { return pyExp(x, digits - 1); }
    var s = fixed(x, Math.max(digits - 1 - mag, 0));
    return mag >= 3 ? thousands(s) : s;
  }
  function fmtMs(ms) {
    if (!isNum(ms)) { return '\u2014'; }
    if (Math.abs(ms) < 1) { return sig(ms * 1000) + ' \u00b5s'; }
    if (Math.abs(ms) >= 1000) { return sig(ms / 1000) + ' s'; }
    return sig(ms) + ' ms';
  }
  function fmtMb(mb) {
    if (!isNum(mb)) { return '\u2014'; }
    if (Math.abs(mb) < 1) { return sig(mb * 1000) + ' kB'; }
    if (Math.abs(mb) >= 1000) { return sig(mb / 1000) + ' GB'; }
    return sig(mb) + ' MB';
  }
  function fmtBytes(n) {
    if (!isNum(n)) { return '\u2014'; }
    if (Math.abs(n) < 1000) { return Math.trunc(n) + ' B'; }
    return fmtMb(n / 1e6);
  }
  function g(x) {  // Python's f"{x:g}" (six significant digits, trailing zeros dropped)
    if (x === 0) { return '0'; }
    var p = Number(x.toPrecision(6)), e = Math.floor(Math.log10(Math.abs(p)));
    if (e < -4 || e >= 6) {
      var s = pyExp(p, 5), i = s.indexOf('e');
      return s.slice(0, i).replace(/\.?0+$/, '') + s.slice(i);
    }
    return String(p);
  }
  // harness/core/text.py's visible(): control and bidi formatting characters, line separators and a path's
  // undecodable bytes (lone surrogates) shown as escapes, so a name holding U+202E is shown, never obeyed.
  var HIDDEN = /(?![\n\t])[\p{Cc}\p{Cs}\p{Zl}\p{Zp}\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;
  function hex(n, width) { var h = n.toString(16); while (h.length < width) { h = '0' + h; } return h; }
  function visible(s) {
    return String(s).replace(HIDDEN, function (ch) {
      var code = ch.codePointAt(0);
      if (code >= 0xdc80 && code <= 0xdcff) { return '\\x' + hex(code - 0xdc00, 2); }
      if (ch === '\r') { return '\\r'; }
      return code <= 0xff ? '\\x' + hex(code, 2) : '\\u' + hex(code, 4);
    });
  }
  function esc(s) {
    return visible(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
  }
  function nm(s) { return '<bdi>' + esc(s) + '</bdi>'; }  // a name inside a sentence: isolated
  function attr(s) {  // a data value in an attribute: HTML-escaped only, matched to DATA as it is
    return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
  }

  // ---------------------------------------------------------- the rule (harness.analysis.recommend.choose)
  var LIMITS = ['max_latency_ms', 'max_memory_mb', 'max_upload_kb', 'min_accuracy'];

  function latencyOf(c, budget) { var v = c.lat[budget.network]; return isNum(v) ? v : null; }

  // _candidate's breaks: what ``c`` breaks of ``budget``, and the summed relative excess.
  function evaluate(c, budget, scored) {
    var breaks = [], excess = 0;
    if (!c.ok) { return { breaks: [c.fail || ('measurement ' + c.status)], excess: Infinity }; }
    function over(value, limit, what, unit, lower) {
      if (limit === null || limit === undefined) { return; }
      if (value === null || value === undefined) {
        breaks.push(what + ' not measured (needed by the ' + what + ' limit)');
        excess = Infinity;
      } else if (lower ? value < limit : value > limit) {
        breaks.push(what + ' ' + sig(value) + unit + ' ' + (lower ? '<' : '>') + ' ' + g(limit) + unit);
        excess += limit ? Math.abs(value - limit) / Math.abs(limit) : Infinity;
      }
    }
    if (c.nomedian && budget.max_latency_ms !== null) { breaks.push(c.nomedian); excess = Infinity; }
    over(latencyOf(c, budget), budget.max_latency_ms, 'latency', ' ms');
    over(c.memory, budget.max_memory_mb, 'memory', ' MB');
    over(c.upload_kb, budget.max_upload_kb, 'upload', ' kB');
    over(c.accuracy, budget.min_accuracy, 'accuracy', '', true);
    if (scored && !c.onprem && c.privacy === null) { breaks.push('privacy not scored'); excess = Infinity; }
    return { breaks: breaks, excess: excess };
  }

  function cmp(a, b) {  // Python's tuple comparison
    for (var k = 0; k < a.length; k++) {
      if (a[k] < b[k]) { return -1; }
      if (a[k] > b[k]) { return 1; }
    }
    return 0;
  }
  function num(x) { return isNum(x) ? x : -Infinity; }        // recommend._num
  function rank(x) { return isNum(x) ? x : Infinity; }        // recommend._latency

  function choose(m, budget) {
    var shown = m.candidates.filter(function (c) {
      return (!budget.backends || budget.backends.indexOf(c.backend) >= 0) &&
             (!budget.targets || budget.targets.indexOf(c.target) >= 0);
    });
    var scored = shown.some(function (c) { return c.privacy !== null; });
    var ev = {};
    shown.forEach(function (c) { ev[c.i] = evaluate(c, budget, scored); });
    var cands = shown.filter(function (c) { return !c.onprem; });
    var onprem = shown.filter(function (c) { return c.onprem; });
    var fitting = cands.filter(function (c) { return ev[c.i].breaks.length === 0; });
    function key(c) {
      var lat = rank(latencyOf(c, budget));
      return scored ? [c.privacy, -lat, c.config] : [lat, num(c.memory), c.config];
    }
    var order = scored ? 1 : -1;  // max(privacy, -latency, name) or min(latency, memory, name); first wins ties
    var choice = null, runner = null;
    fitting.forEach(function (c) {
      if (choice === null || cmp(key(c), key(choice)) * order > 0) { runner = choice; choice = c; }
      else if (runner === null || cmp(key(c), key(runner)) * order > 0) { runner = c; }
    });
    var closest = null;
    if (choice === null) {
      var xkey = function (c) {
        return [ev[c.i].excess, ev[c.i].breaks.length, -num(c.privacy), num(latencyOf(c, budget)), c.config];
      };
      cands.forEach(function (c) { if (closest === null || cmp(xkey(c), xkey(closest)) < 0) { closest = c; } });
    }
    return { shown: shown, ev: ev, cands: cands, onprem: onprem, fitting: fitting, choice: choice,
             runner: runner, closest: closest, scored: scored };
  }

  function impossibleLine(m, res) {
    var c = res.closest;
    if (!c) { return m.model + ': no split configuration was measured'; }
    var line = 'nothing fits the budget for ' + m.model + ': closest is ' + c.config + ' on ' + c.where +
               ', which breaks ' + res.ev[c.i].breaks.join('; ');
    var full = res.onprem.filter(function (b) { return res.ev[b.i].breaks.length === 0; });
    if (full.length) { line += ' (the whole model on the phone fits: on-premise on ' + full[0].where + ')'; }
    return line;
  }

  // ratio_ranges: the noise ratios that fit, as runs of consecutive ratios of the sweep
  function ratioRanges(all, picked) {
    var runs = [], prevPicked = false;
    all.forEach(function (r) {
      if (picked.indexOf(r) < 0) { prevPicked = false; return; }
      if (prevPicked) { runs[runs.length - 1].push(r); } else { runs.push([r]); }
      prevPicked = true;
    });
    return runs.map(function (run) {
      return run.length === 1 ? g(run[0]) : g(run[0]) + '\u2013' + g(run[run.length - 1]);
    }).join(', ');
  }

  // -------------------------------------------------------------------------------- budget state
  function budgetOf(mi) {
    var st = STATE[mi], m = DATA.models[mi], b = { network: st.network };
    LIMITS.forEach(function (k) { b[k] = st[k]; });
    b.backends = st.backends.length === m.backends.length ? null : st.backends.slice();
    b.targets = st.targets.length === m.targets.length ? null : st.targets.slice();
    return b;
  }

  function commandLine(mi) {
    var m = DATA.models[mi], b = budgetOf(mi), args = ['splitbench recommend ' + m.dir];
    var flags = { max_latency_ms: '--max-latency-ms', max_memory_mb: '--max-memory-mb',
                  max_upload_kb: '--max-upload-kb', min_accuracy: '--min-accuracy' };
    LIMITS.forEach(function (k) { if (b[k] !== null) { args.push(flags[k] + ' ' + g(b[k])); } });
    var net = m.networks.filter(function (n) { return n.key === b.network; })[0];
    args.push(net ? net.args : '--network ' + b.network);
    (b.targets || []).forEach(function (t) { args.push('--target ' + t); });
    (b.backends || []).forEach(function (x) { args.push('--backend ' + x); });
    return args.join(' ');
  }

  // slider position <-> limit: log scale for the maxima, linear for the accuracy floor; an end is "no limit"
  function fromSlider(m, key, pos) {
    var lo = m.ranges[key][0], hi = m.ranges[key][1];
    if (key === 'min_accuracy') {
      if (pos <= 0) { return null; }
      return Number((lo + (hi - lo) * (pos - 1) / 999).toFixed(3));
    }
    if (pos >= 1000) { return null; }
    return Number((lo * Math.pow(hi / lo, pos / 999)).toPrecision(3));
  }
  function toSlider(m, key, v) {
    var lo = m.ranges[key][0], hi = m.ranges[key][1];
    if (key === 'min_accuracy') {
      if (v === null) { return 0; }
      return Math.min(1000, Math.max(1, 1 + Math.round(999 * (v - lo) / (hi - lo))));
    }
    if (v === null) { return 1000; }
    if (v <= lo) { return 0; }
    return Math.min(999, Math.max(0, Math.round(999 * Math.log(v / lo) / Math.log(hi / lo))));
  }

  // ---------------------------------------------------------------------------------- rendering
  function metric(label, value, note, key) {
    return '<div class="metric" data-metric="' + esc(key) + '"><div class="label">' + esc(label) +
           '</div><div class="value">' + esc(value) + '</div><div class="note">' + esc(note || '') + '</div></div>';
  }
  function vs(text) { return !text || text === '\u2014' ? '' : text + ' vs on-premise'; }

  function renderCard(mi) {
    var m = DATA.models[mi], res = RESULTS[mi], st = STATE[mi], box = document.querySelector(
      '.model-answer[data-model="' + mi + '"] .answer');
    if (!box) { return; }
    var c = res.choice, net = st.network;
    if (!c) {
      var none = res.shown.length ? impossibleLine(m, res) : 'no backend or target selected';
      box.innerHTML = '<div class="card nothing" data-choice="" data-closest="' + (res.closest ? res.closest.i : '') +
        '" data-model="' + attr(m.model) + '"><div class="headline">Nothing fits this budget</div><p class="why">' +
        esc(none) + '</p></div>';
      return;
    }
    var v = c.vs || {}, parts = [];
    if (res.scored) {
      parts.push(metric('log-rank privacy (' + m.estimator + ')', c.t.privacy, '0 = always identified, 1 = never',
                        'privacy'));
      parts.push(metric('primary accuracy', c.t.accuracy, '', 'accuracy'));
    }
    parts.push(metric('end-to-end latency', c.t.lat[net], vs(v.lat && v.lat[net]), 'latency'));
    parts.push(metric('phone inference', c.t.phone, vs(v.phone), 'phone'));
    parts.push(metric('phone model memory', c.t.memory, vs(v.memory), 'memory'));
    parts.push(metric('load (cold)', c.t.load, vs(v.load), 'load'));
    parts.push(metric('upload', c.t.upload, c.t.up_ms[net] + ' on ' + net, 'upload'));
    var n = res.fitting.length, base = c.onprem_i !== null ? m.candidates[c.onprem_i] : null;
    var why = nm(m.model) + ': ' + (res.scored ? 'the most private' : 'the fastest') + ' of ' + n + ' configuration' +
              (n !== 1 ? 's' : '') + ' (of ' + res.cands.length + ') that fit' +
              (res.runner ? '; next: ' + nm(res.runner.config) + ' on ' + nm(res.runner.where) : '') + '.';
    var tags = (c.agg ? ' <span class="tag" title="the phone\'s tool reported only a summary (median, mean, ' +
                        'percentiles); no samples">tool aggregate</span>' : '') +
               (c.host_int8 ? ' <span class="tag" title="' + esc(c.host_int8) + '">host int8</span>' : '') +
               (res.scored ? '' : ' <span class="tag noprivacy" title="no privacy.csv: chosen by end-to-end latency ' +
                                  'alone">privacy not scored</span>');
    box.innerHTML = '<div class="card" data-choice="' + c.i + '" data-model="' + attr(m.model) + '">' +
      '<div class="headline"><span class="kicker">Recommended</span> <b class="config">' + esc(c.config) +
      '</b> <span class="where">on ' + esc(c.where) + '</span>' + tags + '</div><div class="metrics">' +
      parts.join('') + '</div><p class="why">' + why + ' Rule: ' + esc(m.rule) + '.' +
      (base ? ' Ratios are against on-premise (the whole model on the phone: ' + nm(base.config) + ') on ' +
              nm(base.where) + '.' : '') +
      '</p></div>';
  }

  function renderTable(mi) {
    var m = DATA.models[mi], res = RESULTS[mi], st = STATE[mi];
    var table = document.querySelector('table.configs[data-model="' + mi + '"]');
    if (!table) { return; }
    table.querySelectorAll('tr[data-row]').forEach(function (tr) {
      var shown = st.backends.indexOf(tr.getAttribute('data-backend')) >= 0 &&
                  st.targets.indexOf(tr.getAttribute('data-target')) >= 0;
      var ids = (tr.getAttribute('data-cands') || '').split(',').filter(Boolean).map(Number);
      var mine = ids.map(function (i) { return m.candidates[i]; });
      var fit = mine.filter(function (c) { return res.ev[c.i] && res.ev[c.i].breaks.length === 0; });
      var chosen = res.choice !== null && ids.indexOf(res.choice.i) >= 0;
      tr.classList.toggle('hidden', !shown);
      tr.classList.toggle('fits', shown && fit.length > 0);
      tr.classList.toggle('nofit', !shown || fit.length === 0);
      tr.classList.toggle('chosen', chosen);
      var cell = tr.querySelector('td.fit');
      if (!cell || !shown) { return; }
      var text;
      if (mine.length && mine[0].onprem) { text = fit.length ? 'fits (baseline)' : 'no (baseline)'; }
      else if (!res.scored || mine.every(function (c) { return c.r === null; })) { text = fit.length ? 'yes' : 'no'; }
      else {
        var rr = ratioRanges(mine.map(function (c) { return c.r; }), fit.map(function (c) { return c.r; }));
        text = rr ? 'r = ' + rr : 'none';
      }
      cell.textContent = (chosen ? '\u2605 ' : '') + text;
    });
    table.querySelectorAll('tr.group').forEach(function (tr) {
      var gi = Number(tr.getAttribute('data-group')), grp = m.groups[gi];
      tr.classList.toggle('hidden', !!grp && (st.backends.indexOf(grp.backend) < 0 || st.targets.indexOf(grp.target) < 0));
    });
  }

  function renderRatios(mi, ref) {
    var m = DATA.models[mi], table = document.querySelector('table.configs[data-model="' + mi + '"]');
    var ratios = (m.refs || {})[ref];
    if (!table || !ratios) { return; }
    table.querySelectorAll('tr[data-row]').forEach(function (tr) {
      var r = ratios[Number(tr.getAttribute('data-row'))];
      tr.querySelectorAll('td.ratio').forEach(function (td) { td.textContent = r[Number(td.getAttribute('data-k'))]; });
    });
  }

  // ------------------------------------------------------------------------------------- the plot
  var PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f',
                 '#bcbd22', '#17becf'];
  var AXES = {
    latency: { label: 'end-to-end latency', get: function (c, st) { return latencyOf(c, st); }, fmt: fmtMs, limit: 'max_latency_ms' },
    phone: { label: 'phone inference (median)', get: function (c) { return c.phone; }, fmt: fmtMs },
    memory: { label: 'phone model memory', get: function (c) { return c.memory; }, fmt: fmtMb, limit: 'max_memory_mb' },
    upload: { label: 'uploaded feature', get: function (c) { return c.upload_bytes; }, fmt: fmtBytes, limit: 'max_upload_kb', scale: 1000 },
    privacy: { label: 'log-rank privacy', get: function (c) { return c.privacy; }, fmt: sig, linear: true },
    accuracy: { label: 'primary accuracy', get: function (c) { return c.accuracy; }, fmt: sig, limit: 'min_accuracy', linear: true }
  };

  function scale(values, px0, px1, linear) {  // a cost spanning decades on a log scale; privacy, accuracy linear
    var vals = values.filter(isNum), lo = Math.min.apply(null, vals), hi = Math.max.apply(null, vals);
    var log = !linear && vals.length > 1 && lo > 0 && hi / lo > 30;
    if (!vals.length) { lo = 0; hi = 1; }
    if (log) { lo = lo / 1.3; hi = hi * 1.3; } else {
      var pad = (hi - lo) * 0.06 || Math.abs(hi) * 0.1 || 1; lo -= pad; hi += pad;
      if (values.every(function (v) { return !isNum(v) || v >= 0; }) && lo < 0) { lo = 0; }
    }
    var f = log ? function (v) { return px0 + (Math.log(v) - Math.log(lo)) / (Math.log(hi) - Math.log(lo)) * (px1 - px0); }
                : function (v) { return px0 + (v - lo) / (hi - lo) * (px1 - px0); };
    f.ticks = function () {
      var out = [];
      if (log) {
        for (var e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
          [1, 2, 5].forEach(function (k) { var v = k * Math.pow(10, e); if (v >= lo && v <= hi) { out.push(v); } });
        }
        return out;
      }
      var step = Math.pow(10, Math.floor(Math.log10((hi - lo) / 5)));
      if ((hi - lo) / step > 10) { step *= 2; }
      if ((hi - lo) / step > 10) { step *= 2.5; }
      for (var v = Math.ceil(lo / step) * step; v <= hi; v += step) { out.push(Number(v.toPrecision(12))); }
      return out;
    };
    f.log = log;
    return f;
  }

  function drawPlot(mi) {
    var box = document.querySelector('.plotbox[data-model="' + mi + '"]');
    if (!box) { return; }
    var m = DATA.models[mi], st = STATE[mi], res = RESULTS[mi], b = budgetOf(mi);
    var ax = AXES[st.x], ay = AXES[st.y], W = 1100, H = 430, L = 78, R = 16, T = 14, B = 44;
    var pts = [], vlines = [];
    res.shown.forEach(function (c) {
      var x = ax.get(c, b), y = ay.get(c, b);
      if (!isNum(x)) { return; }
      if (!isNum(y)) { if (c.onprem) { vlines.push({ c: c, x: x }); } return; }
      pts.push({ c: c, x: x, y: y });
    });
    var xs = pts.map(function (p) { return p.x; }).concat(vlines.map(function (p) { return p.x; }));
    var sx = scale(xs, L, W - R, ax.linear), sy = scale(pts.map(function (p) { return p.y; }), H - B, T, ay.linear);
    var out = ['<svg viewBox="0 0 ' + W + ' ' + H + '" class="tradeoff" data-x="' + st.x + '" data-y="' + st.y + '">'];
    sx.ticks().forEach(function (v) {
      var x = sx(v).toFixed(1);
      out.push('<line class="grid" x1="' + x + '" x2="' + x + '" y1="' + T + '" y2="' + (H - B) + '"/>' +
               '<text class="axis" x="' + x + '" y="' + (H - B + 15) + '" text-anchor="middle">' + esc(ax.fmt(v)) + '</text>');
    });
    sy.ticks().forEach(function (v) {
      var y = sy(v).toFixed(1);
      out.push('<line class="grid" x1="' + L + '" x2="' + (W - R) + '" y1="' + y + '" y2="' + y + '"/>' +
               '<text class="axis" x="' + (L - 6) + '" y="' + (Number(y) + 4) + '" text-anchor="end">' + esc(ay.fmt(v)) + '</text>');
    });
    out.push('<rect x="' + L + '" y="' + T + '" width="' + (W - L - R) + '" height="' + (H - T - B) +
             '" fill="none" stroke="#9aa4ad"/>');
    var xl = ax.label + (sx.log ? ' (log scale)' : '') + (st.x === 'latency' ? ', ' + st.network : '');
    var yl = ay.label + (st.y === 'privacy' ? ' (' + m.estimator + ')' : '') + (sy.log ? ' (log scale)' : '');
    out.push('<text class="axis" x="' + ((L + W - R) / 2) + '" y="' + (H - 6) + '" text-anchor="middle">' + esc(xl) + '</text>');
    out.push('<text class="axis" transform="translate(14,' + ((T + H - B) / 2) + ') rotate(-90)" text-anchor="middle">' +
             esc(yl) + '</text>');
    // the budget's limits on these axes
    [[ax, sx, true], [ay, sy, false]].forEach(function (a) {
      var lim = a[0].limit && b[a[0].limit];
      if (lim === null || lim === undefined) { return; }
      var v = lim * (a[0].scale || 1), p = a[1](v);
      if (!isNum(p)) { return; }
      var within = a[2] ? p >= L && p <= W - R : p >= T && p <= H - B;
      if (!within) { return; }
      out.push(a[2] ? '<line x1="' + p + '" x2="' + p + '" y1="' + T + '" y2="' + (H - B) + '" stroke="#a8321f" stroke-dasharray="6 4"/>' +
                      '<text class="axis" x="' + (p + 4) + '" y="' + (T + 12) + '" fill="#a8321f">budget</text>'
                    : '<line x1="' + L + '" x2="' + (W - R) + '" y1="' + p + '" y2="' + p + '" stroke="#a8321f" stroke-dasharray="6 4"/>' +
                      '<text class="axis" x="' + (L + 4) + '" y="' + (p - 4) + '" fill="#a8321f">budget</text>');
    });
    vlines.forEach(function (v) {
      var x = sx(v.x).toFixed(1), col = PALETTE[v.c.group % PALETTE.length];
      out.push('<line class="pt onprem-line" data-i="' + v.c.i + '" x1="' + x + '" x2="' + x + '" y1="' + T + '" y2="' +
               (H - B) + '" stroke="' + col + '" stroke-width="2" stroke-dasharray="2 4"/>');
    });
    function fits(c) { return res.ev[c.i] && res.ev[c.i].breaks.length === 0; }
    pts.sort(function (p, q) { return (fits(p.c) ? 1 : 0) - (fits(q.c) ? 1 : 0); });
    pts.forEach(function (p) {
      var c = p.c, col = PALETTE[c.group % PALETTE.length], ok = fits(c), x = sx(p.x).toFixed(1), y = sy(p.y).toFixed(1);
      var key = attr(c.config + '|' + c.backend + '|' + c.target + '|' + c.device);
      var cls = 'pt ' + (ok ? 'fits' : 'nofit') + (res.choice === c ? ' chosen' : '') + (c.onprem ? ' onprem' : '');
      if (c.onprem) {
        out.push('<rect class="' + cls + '" data-i="' + c.i + '" data-key="' + key + '" x="' + (x - 5) + '" y="' + (y - 5) +
                 '" width="10" height="10" fill="' + (ok ? col : '#fff') + '" stroke="' + col + '" stroke-width="1.5"/>');
      } else {
        out.push('<circle class="' + cls + '" data-i="' + c.i + '" data-key="' + key + '" cx="' + x + '" cy="' + y +
                 '" r="5" fill="' + (ok ? col : '#fff') + '" stroke="' + col + '" stroke-width="1.5"/>');
      }
    });
    var ch = res.choice && pts.filter(function (p) { return p.c === res.choice; })[0];
    if (ch) {
      var cx = sx(ch.x), cy = sy(ch.y), right = cx < W - 260;
      out.push('<circle cx="' + cx.toFixed(1) + '" cy="' + cy.toFixed(1) + '" r="10" fill="none" stroke="#111" stroke-width="2"/>' +
               '<text x="' + (right ? cx + 14 : cx - 14).toFixed(1) + '" y="' + (cy - 10).toFixed(1) + '" text-anchor="' +
               (right ? 'start' : 'end') + '" font-size="13" font-weight="600">\u2605 ' + esc(ch.c.config) + ' (' + esc(ch.c.where) + ')</text>');
    }
    out.push('</svg><div class="tip"></div>');
    box.querySelector('.plot').innerHTML = out.join('');
  }

  function tipHtml(mi, c) {
    var res = RESULTS[mi], st = STATE[mi], net = st.network, ev = res.ev[c.i];
    var lines = ['<b>' + nm(c.onprem ? 'on-premise (full)' : c.config) + '</b> on ' + nm(c.where)];
    if (res.scored && !c.onprem) {
      lines.push('log-rank privacy ' + esc(c.t.privacy) + ' (' + esc(DATA.models[mi].estimator) + '), accuracy ' + esc(c.t.accuracy));
    }
    lines.push('latency ' + esc(c.t.lat[net]) + ' = phone ' + esc(c.t.phone) + ' + upload ' + esc(c.t.up_ms[net]) +
               (c.t.cloud ? ' + cloud ' + esc(c.t.cloud) : '') + ' (' + esc(net) + ')');
    lines.push('memory ' + esc(c.t.memory) + ', load ' + esc(c.t.load) + ', upload ' + esc(c.t.upload));
    if (c.vs) { lines.push('vs on-premise: inference ' + esc(c.vs.phone) + ', memory ' + esc(c.vs.memory)); }
    lines.push(ev && ev.breaks.length ? '<span style="color:#a8321f">breaks: ' + esc(ev.breaks.join('; ')) + '</span>'
               : (res.choice === c ? '<b>recommended</b>' : 'fits the budget'));
    return lines.join('<br>');
  }

  // ------------------------------------------------------------------------------------ wiring
  function update(mi, moved) {
    var m = DATA.models[mi], st = STATE[mi];
    RESULTS[mi] = choose(m, budgetOf(mi));
    var root = document.querySelector('.model-answer[data-model="' + mi + '"]');
    if (root) {
      LIMITS.forEach(function (k) {
        var slider = root.querySelector('input[data-slider="' + k + '"]');
        if (slider && moved !== slider) { slider.value = toSlider(m, k, st[k]); }
      });
      var cmd = root.querySelector('code.cmd');
      if (cmd) { cmd.textContent = visible(commandLine(mi)); }
    }
    renderCard(mi);
    renderTable(mi);
    drawPlot(mi);
  }

  function init(mi) {
    var m = DATA.models[mi], root = document.querySelector('.model-answer[data-model="' + mi + '"]');
    var st = { network: m.network, backends: m.backends.slice(), targets: m.targets.slice(),
               x: 'latency', y: m.scored ? 'privacy' : 'memory' };
    LIMITS.forEach(function (k) { st[k] = m.budget[k]; });
    STATE[mi] = st;
    if (root) {
      root.querySelectorAll('input[data-limit]').forEach(function (input) {
        input.addEventListener('input', function () {
          var k = input.getAttribute('data-limit'), text = input.value.trim(), v = text === '' ? null : Number(text);
          var bad = v !== null && (!isFinite(v) || v < 0 || (k === 'min_accuracy' && v > 1));
          input.classList.toggle('invalid', bad);
          if (bad) { return; }
          st[k] = v;
          update(mi, input);
        });
      });
      root.querySelectorAll('input[data-slider]').forEach(function (slider) {
        slider.addEventListener('input', function () {
          var k = slider.getAttribute('data-slider'), v = fromSlider(m, k, Number(slider.value));
          st[k] = v;
          var input = root.querySelector('input[data-limit="' + k + '"]');
          if (input) { input.value = v === null ? '' : String(v); input.classList.remove('invalid'); }
          update(mi, slider);
        });
      });
      var sel = root.querySelector('select[data-limit="network"]');
      if (sel) { sel.addEventListener('change', function () { st.network = sel.value; update(mi); }); }
      root.querySelectorAll('input[data-backend], input[data-target]').forEach(function (box) {
        box.addEventListener('change', function () {
          var list = box.hasAttribute('data-backend') ? m.backends : m.targets;
          var which = box.hasAttribute('data-backend') ? 'backends' : 'targets';
          var attr = box.hasAttribute('data-backend') ? 'data-backend' : 'data-target';
          st[which] = list.filter(function (x) {
            var el = root.querySelector('input[' + attr + '="' + x + '"]');
            return el && el.checked;
          });
          update(mi);
        });
      });
    }
    var ref = document.querySelector('select.ref[data-model="' + mi + '"]');
    if (ref) { ref.addEventListener('change', function () { renderRatios(mi, ref.value); }); }
    var pbox = document.querySelector('.plotbox[data-model="' + mi + '"]');
    if (pbox) {
      var xs = pbox.querySelector('select.xaxis'), ys = pbox.querySelector('select.yaxis');
      xs.value = st.x; ys.value = st.y;
      xs.addEventListener('change', function () { st.x = xs.value; drawPlot(mi); });
      ys.addEventListener('change', function () { st.y = ys.value; drawPlot(mi); });
      var plot = pbox.querySelector('.plot');
      plot.addEventListener('mousemove', function (e) {
        var tip = plot.querySelector('.tip'), t = e.target;
        if (!tip) { return; }
        if (!t.hasAttribute || !t.hasAttribute('data-i')) { tip.style.display = 'none'; return; }
        tip.innerHTML = tipHtml(mi, m.candidates[Number(t.getAttribute('data-i'))]);
        var r = plot.getBoundingClientRect(), x = e.clientX - r.left + 14, y = e.clientY - r.top + 14;
        tip.style.display = 'block';
        if (x + tip.offsetWidth > r.width) { x = e.clientX - r.left - tip.offsetWidth - 14; }
        tip.style.left = Math.max(0, x) + 'px';
        tip.style.top = y + 'px';
      });
      plot.addEventListener('mouseleave', function () { var tip = plot.querySelector('.tip'); if (tip) { tip.style.display = 'none'; } });
    }
    update(mi);
  }

  DATA.models.forEach(function (m, mi) { init(mi); });

  // Each figure's load state, in the DOM (the browser test reads it).
  window.addEventListener('load', function () {
    var imgs = document.querySelectorAll('img'), ok = 0;
    imgs.forEach(function (im) {
      var loaded = im.complete && im.naturalWidth > 0;
      im.setAttribute('data-loaded', loaded ? 'yes' : 'no');
      if (loaded) { ok += 1; }
    });
    var s = document.getElementById('img-status');
    if (s) {
      s.setAttribute('data-total', imgs.length);
      s.setAttribute('data-loaded', ok);
      s.textContent = ok + ' of ' + imgs.length + ' figures loaded';
    }
  });

  window.splitbench = { data: DATA, state: STATE, results: RESULTS, choose: choose, update: update,
                        fmt: { sig: sig, ms: fmtMs, mb: fmtMb, bytes: fmtBytes, g: g } };
}());
