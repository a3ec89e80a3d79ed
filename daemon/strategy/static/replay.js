// traderd replay page: draws the embedded bars, equity and drawdown as SVG; hover reads out, drag/wheel zoom.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("replay-data").textContent);
  const svg = document.getElementById("chart");
  const readout = document.getElementById("readout");
  const rangeText = document.getElementById("range");
  const NS = "http://www.w3.org/2000/svg";
  const W = 1200, L = 84, R = 12;
  const PANELS = [{ top: 22, bottom: 360 }, { top: 396, bottom: 580 }, { top: 612, bottom: 690 }];
  const n = data.ohlc.length;
  let lo = 0, hi = n - 1, drag = null, cross = null, sel = null;

  const money = (v) => (v < 0 ? "-$" : "$") + Math.round(Math.abs(v)).toLocaleString("en-US");
  const price = (v) => v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const step = () => (W - L - R) / (hi - lo + 1);
  const xOf = (i) => L + (i - lo + 0.5) * step();
  const indexAt = (x) => Math.max(lo, Math.min(hi, lo + Math.floor((x - L) / step())));

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const k in attrs) node.setAttribute(k, attrs[k]);
    (parent || svg).appendChild(node);
    return node;
  }

  function scale(panel, values, pad) {
    let min = Infinity, max = -Infinity;  // a loop: spreading 100,000 values into Math.min overflows the stack
    for (const v of values) { if (v < min) min = v; if (v > max) max = v; }
    if (!(max - min > 1e-9)) { min -= 1; max += 1; }
    const extra = (max - min) * pad;
    min -= extra; max += extra;
    const y = (v) => panel.top + (panel.bottom - panel.top) * (max - v) / (max - min);
    return { y, min, max };
  }

  function axis(panel, s, format) {
    for (let k = 0; k <= 4; k++) {
      const v = s.min + (s.max - s.min) * k / 4, y = s.y(v);
      el("line", { class: "grid", x1: L, x2: W - R, y1: y, y2: y });
      el("text", { x: L - 6, y: y + 4, "text-anchor": "end" }).textContent = format(v);
    }
  }

  function line(values, cls) {
    const pts = [];
    for (let i = lo; i <= hi; i++) pts.push(xOf(i).toFixed(1) + "," + values[i - lo].toFixed(1));
    el("polyline", { class: cls, points: pts.join(" ") });
  }

  function ticks() {  // at day changes (or month changes when many days are visible), never crowded
    const key = (i) => data.labels[i].slice(0, 10);
    const days = new Set();
    for (let i = lo; i <= hi; i++) days.add(key(i));
    const month = days.size > 40, intraday = !data.daily && days.size < (hi - lo + 1) / 3;
    const group = (i) => (month ? data.labels[i].slice(0, 7) : key(i));
    let last = -1e9;
    for (let i = lo; i <= hi; i++) {
      if (i !== lo && group(i) === group(i - 1)) continue;
      if (xOf(i) - last < 90) continue;
      last = xOf(i);
      const text = intraday || hi - lo < 2 ? data.labels[i].slice(5) : month ? data.labels[i].slice(0, 7) : key(i);
      el("line", { class: "grid", x1: last, x2: last, y1: PANELS[0].top, y2: PANELS[2].bottom });
      el("text", { x: last, y: 710, "text-anchor": "middle" }).textContent = text;
    }
  }

  function draw() {
    svg.textContent = "";
    const bars = data.ohlc.slice(lo, hi + 1);
    const p = scale(PANELS[0], bars.map((b) => b[2]).concat(bars.map((b) => b[1])), 0.04);
    axis(PANELS[0], p, price);
    ticks();
    if (hi - lo < 300) {
      const w = Math.max(1, step() * 0.7);
      bars.forEach((b, k) => {
        const x = xOf(lo + k), cls = b[3] >= b[0] ? "up" : "down";
        el("line", { class: cls, x1: x, x2: x, y1: p.y(b[1]), y2: p.y(b[2]) });
        const top = p.y(Math.max(b[0], b[3])), h = Math.max(1, p.y(Math.min(b[0], b[3])) - top);
        el("rect", { class: cls + " candle", x: x - w / 2, y: top, width: w, height: h });
      });
    } else {
      line(bars.map((b) => p.y(b[3])), "close");
    }
    data.trades.forEach((t, k) => {
      const tip = `#${k + 1} ${t.side} ${t.qty}: ${data.labels[t.entry]} ${price(t.entry_price)} -> ` +
        `${data.labels[t.exit]} ${price(t.exit_price)}, net ${money(t.net)}`;
      if (t.entry >= lo && t.entry <= hi) {
        const x = xOf(t.entry), y = p.y(t.entry_price), d = t.side === "buy" ? 1 : -1;
        const m = el("path", { class: (d > 0 ? "up" : "down") + " entry",
          d: `M${x},${y} l-6,${9 * d} h12 z` });
        el("title", {}, m).textContent = tip;
      }
      if (t.exit >= lo && t.exit <= hi) {
        const x = xOf(t.exit), y = p.y(t.exit_price);
        const m = el("path", { class: "exit", d: `M${x - 5},${y - 5} l10,10 m0,-10 l-10,10` });
        el("title", {}, m).textContent = tip;
      }
    });
    const eq = data.equity.slice(lo, hi + 1), hold = data.hold.slice(lo, hi + 1);
    const e = scale(PANELS[1], eq.concat(hold), 0.05);
    axis(PANELS[1], e, money);
    line(hold.map(e.y), "hold");
    line(eq.map(e.y), "equity");
    const dd = data.drawdown.slice(lo, hi + 1);
    const s = scale(PANELS[2], dd.concat([0]), 0);
    axis(PANELS[2], s, money);
    let path = `M${xOf(lo)},${s.y(0)}`;
    dd.forEach((v, k) => { path += ` L${xOf(lo + k).toFixed(1)},${s.y(v).toFixed(1)}`; });
    el("path", { class: "dd", d: path + ` L${xOf(hi)},${s.y(0)} Z` });
    const names = [`${data.symbol} price   \u25b2 long entry   \u25bc short entry   \u00d7 exit`,
      `equity: strategy (solid), buy and hold ${data.hold_quantity} (dashed)`, "drawdown"];
    PANELS.forEach((panel, k) => { el("text", { x: L, y: panel.top - 8, class: "name" }).textContent = names[k]; });
    cross = el("line", { class: "cross", x1: -10, x2: -10, y1: PANELS[0].top, y2: PANELS[2].bottom });
    sel = el("rect", { class: "sel", x: 0, y: PANELS[0].top, width: 0, height: PANELS[2].bottom - PANELS[0].top });
    rangeText.textContent = `bars ${lo + 1}-${hi + 1} of ${n}: ${data.labels[lo]} .. ${data.labels[hi]} ` +
      `(${data.zone})`;
  }

  function show(i) {
    const b = data.ohlc[i], x = xOf(i);
    cross.setAttribute("x1", x); cross.setAttribute("x2", x);
    const here = data.trades.map((t, k) => (t.entry === i ? `entry #${k + 1}` : t.exit === i ? `exit #${k + 1}` : ""))
      .filter(Boolean).join(", ");
    readout.textContent = `${data.labels[i]}  O ${price(b[0])} H ${price(b[1])} L ${price(b[2])} C ${price(b[3])}` +
      `  equity ${money(data.equity[i])}  buy and hold ${money(data.hold[i])}  drawdown ${money(data.drawdown[i])}` +
      (here ? "  " + here : "");
  }

  function zoom(a, b) {
    lo = Math.max(0, Math.min(a, b)); hi = Math.min(n - 1, Math.max(a, b));
    if (hi - lo < 4) { const mid = Math.round((lo + hi) / 2); lo = Math.max(0, mid - 2); hi = Math.min(n - 1, lo + 4); }
    draw();
  }

  function svgX(event) {
    const pt = svg.createSVGPoint();
    pt.x = event.clientX; pt.y = event.clientY;
    return pt.matrixTransform(svg.getScreenCTM().inverse()).x;
  }

  svg.addEventListener("pointerdown", (ev) => { drag = svgX(ev); svg.setPointerCapture(ev.pointerId); });
  svg.addEventListener("pointermove", (ev) => {
    const x = svgX(ev);
    show(indexAt(x));
    if (drag !== null) { sel.setAttribute("x", Math.min(drag, x)); sel.setAttribute("width", Math.abs(x - drag)); }
  });
  svg.addEventListener("pointerup", (ev) => {
    const x = svgX(ev), start = drag;
    drag = null;
    if (start !== null && Math.abs(x - start) > 8) zoom(indexAt(start), indexAt(x));
    else sel.setAttribute("width", 0);
  });
  svg.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const at = indexAt(svgX(ev)), span = hi - lo + 1, next = Math.round(span * (ev.deltaY > 0 ? 1.25 : 0.8));
    const share = (at - lo) / span;
    const a = Math.round(at - share * next);
    zoom(a, a + next - 1);
  }, { passive: false });
  svg.addEventListener("dblclick", () => zoom(0, n - 1));
  document.getElementById("reset").addEventListener("click", () => zoom(0, n - 1));

  const body = document.querySelector("#trades tbody");
  data.trades.forEach((t, k) => {
    const row = document.createElement("tr");
    const ret = t.ret === null ? "-" : (t.ret >= 0 ? "+" : "") + t.ret.toFixed(2) + "%";
    [k + 1, t.side, t.qty, data.labels[t.entry], price(t.entry_price), data.labels[t.exit], price(t.exit_price),
      t.exit - t.entry, price(t.net), ret].forEach((v) => {
      const cell = document.createElement("td");
      cell.textContent = v;
      row.appendChild(cell);
    });
    row.lastChild.className = row.lastChild.previousSibling.className = t.net >= 0 ? "win" : "loss";
    row.addEventListener("click", () => {
      const pad = Math.max(5, Math.round((t.exit - t.entry) / 2));
      zoom(t.entry - pad, t.exit + pad);
      window.scrollTo({ top: 0 });
    });
    body.appendChild(row);
  });
  draw();
})();
