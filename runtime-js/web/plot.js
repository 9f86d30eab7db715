// A scrolling strip chart on a canvas: one panel per group of channels (frames in, outputs
// out), the last `window` frames, each panel scaled to what it shows.

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

export class StripChart {
  /**
   * @param canvas the canvas element
   * @param panels `[{title, channels: [names]}]`, drawn top to bottom
   * @param window frames shown
   */
  constructor(canvas, panels, window = 300) {
    this.canvas = canvas;
    this.panels = panels.map((p) => ({ ...p, rows: [] }));
    this.window = window;
    this.frame = 0;
    this._pending = false;
  }

  /** Append one frame's values to each panel (`values[k]` for panel k) and redraw soon. */
  push(values) {
    this.frame += 1;
    values.forEach((v, k) => {
      const rows = this.panels[k].rows;
      rows.push(Array.from(v, Number));
      if (rows.length > this.window) rows.shift();
    });
    if (!this._pending) {
      this._pending = true;
      requestAnimationFrame(() => {
        this._pending = false;
        this.draw();
      });
    }
  }

  clear() {
    for (const p of this.panels) p.rows = [];
    this.frame = 0;
    this.draw();
  }

  draw() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth;
    const h = c.clientHeight;
    if (c.width !== w * dpr || c.height !== h * dpr) {
      c.width = w * dpr;
      c.height = h * dpr;
    }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const ph = h / this.panels.length;
    this.panels.forEach((p, k) => this._panel(g, p, 0, k * ph, w, ph));
  }

  _panel(g, panel, x0, y0, w, h) {
    const left = 52;
    const top = y0 + 20;
    const height = h - 34;
    const width = w - left - 10;
    g.font = "12px system-ui, sans-serif";
    g.fillStyle = "#1d2430";
    g.fillText(panel.title, left, y0 + 13);
    let lo = Infinity;
    let hi = -Infinity;
    for (const row of panel.rows) for (const v of row) if (Number.isFinite(v)) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
    if (!Number.isFinite(lo)) [lo, hi] = [-1, 1];
    if (hi - lo < 1e-9) [lo, hi] = [lo - 0.5, hi + 0.5];
    const pad = (hi - lo) * 0.08;
    lo -= pad;
    hi += pad;
    const y = (v) => top + height - ((v - lo) / (hi - lo)) * height;
    g.strokeStyle = "#e4e7ec";
    g.fillStyle = "#667085";
    g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const v = lo + ((hi - lo) * i) / 4;
      g.beginPath();
      g.moveTo(left, y(v));
      g.lineTo(left + width, y(v));
      g.stroke();
      g.fillText(v.toPrecision(3), 4, y(v) + 4);
    }
    const first = this.frame - panel.rows.length; // frame index of the oldest row
    g.fillText(`frame ${Math.max(first, 0)}`, left, top + height + 13);
    g.fillText(`${this.frame}`, left + width - 30, top + height + 13);
    const step = width / Math.max(this.window - 1, 1);
    panel.channels.forEach((_, ch) => {
      g.strokeStyle = COLORS[ch % COLORS.length];
      g.lineWidth = 1.6;
      g.beginPath();
      panel.rows.forEach((row, i) => {
        const px = left + i * step;
        if (i === 0) g.moveTo(px, y(row[ch]));
        else g.lineTo(px, y(row[ch]));
      });
      g.stroke();
    });
  }

  /** Legend HTML for panel `k`. */
  legend(k) {
    return this.panels[k].channels
      .map((name, ch) => `<span><i style="background:${COLORS[ch % COLORS.length]}"></i>${name}</span>`)
      .join("");
  }
}
