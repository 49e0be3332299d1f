// The map of the collection: every item a dot on a canvas (from /api/map.bin), zoom with
// the wheel, pan by dragging, thumbnails once few enough dots are in view, the name on
// hover, and a click opens the item's similar view. Dots are written straight into one
// ImageData buffer per frame, so 100,000 points stay smooth; names and ids arrive in the
// background from the JSON pages of /api/map. app.js calls bannermatchMap.show(onPick).
"use strict";

const bannermatchMap = (() => {
  const MAX_THUMBS = 250;        // thumbnails drawn at most per frame
  const PICK_RADIUS = 10;        // px: how near the pointer a dot must be
  const BUCKETS = 128;           // spatial index: BUCKETS x BUCKETS cells over [0, 1]
  const LABEL_PAGE = 20000;
  const COLORS = { plain: [110, 160, 230], group: [255, 170, 60], unique: [120, 220, 120] };

  const m = {
    count: 0, xy: null, groups: null, unique: null, ids: null, names: null, buckets: null,
    scale: 1, tx: 0, ty: 0, dirty: false, onPick: null, thumbs: new Map(), hover: -1,
    highlight: { group: true, unique: true }, stats: { frames: 0, frameMs: [], thumbs: 0 },
    canvas: null, ctx: null, tip: null, loaded: null,
  };

  async function load() {
    const response = await fetch("api/map.bin");
    if (!response.ok) {
      let detail = `HTTP ${response.status}`;
      try { detail = (await response.json()).detail || detail; } catch { /* not JSON */ }
      throw new Error(`The map is not available: ${detail}`);
    }
    const buffer = await response.arrayBuffer();
    const n = Number(response.headers.get("X-Map-Count"));
    m.count = n;
    m.xy = new Float32Array(buffer, 0, 2 * n);
    m.groups = new Int32Array(buffer, 8 * n, n);
    m.unique = new Int32Array(buffer, 12 * n, n);
    buildBuckets();
    loadLabels();  // in the background: hover and click wait for them
  }

  async function loadLabels() {
    const ids = new Array(m.count);
    const names = new Array(m.count);
    for (let offset = 0; offset < m.count; offset += LABEL_PAGE) {
      const page = await (await fetch(`api/map?offset=${offset}&limit=${LABEL_PAGE}`)).json();
      for (const p of page.points) { ids[p.index] = p.id; names[p.index] = p.name; }
    }
    m.ids = ids;
    m.names = names;
    m.canvas.dataset.labels = "loaded";
    redraw();  // thumbnails need the ids
  }

  function buildBuckets() {
    const cells = Array.from({ length: BUCKETS * BUCKETS }, () => []);
    for (let i = 0; i < m.count; i++) cells[cellOf(m.xy[2 * i], m.xy[2 * i + 1])].push(i);
    m.buckets = cells;
  }

  function cellOf(x, y) {
    const cx = Math.min(BUCKETS - 1, Math.max(0, Math.floor(x * BUCKETS)));
    const cy = Math.min(BUCKETS - 1, Math.max(0, Math.floor(y * BUCKETS)));
    return cy * BUCKETS + cx;
  }

  // ------------------------------------------------------------ view and drawing

  function resize() {
    const ratio = window.devicePixelRatio || 1;
    const box = m.canvas.getBoundingClientRect();
    m.canvas.width = Math.max(1, Math.round(box.width * ratio));
    m.canvas.height = Math.max(1, Math.round(box.height * ratio));
    m.ratio = ratio;
  }

  function fit() {
    const w = m.canvas.width, h = m.canvas.height;
    m.scale = 0.94 * Math.min(w, h);
    m.tx = (w - m.scale) / 2;
    m.ty = (h - m.scale) / 2;
    redraw();
  }

  function redraw() {
    if (m.dirty) return;
    m.dirty = true;
    requestAnimationFrame(draw);
  }

  function colorOf(i) {
    if (m.highlight.unique && m.unique[i] > 0) return COLORS.unique;
    if (m.highlight.group && m.groups[i] >= 0) return COLORS.group;
    return COLORS.plain;
  }

  function draw() {
    const started = performance.now();
    m.dirty = false;
    const w = m.canvas.width, h = m.canvas.height;
    const image = m.ctx.createImageData(w, h);
    const px = new Uint32Array(image.data.buffer);
    px.fill(0xff1f1a18);  // background, ABGR
    const visible = [];
    const dot = Math.round((m.count < 5000 ? 5 : 3) * Math.min(2, m.ratio));
    for (let i = 0; i < m.count; i++) {
      const x = Math.floor(m.xy[2 * i] * m.scale + m.tx);
      const y = Math.floor(m.xy[2 * i + 1] * m.scale + m.ty);
      if (x < 0 || y < 0 || x >= w - dot || y >= h - dot) continue;
      if (visible.length <= MAX_THUMBS) visible.push(i);
      const [r, g, b] = colorOf(i);
      const value = 0xff000000 | (b << 16) | (g << 8) | r;
      for (let dy = 0; dy < dot; dy++) px.fill(value, (y + dy) * w + x, (y + dy) * w + x + dot);
    }
    m.ctx.putImageData(image, 0, 0);
    m.stats.thumbs = visible.length <= MAX_THUMBS ? drawThumbs(visible) : 0;
    if (m.hover >= 0) drawHover(m.hover);
    m.stats.frames += 1;
    m.stats.frameMs.push(performance.now() - started);
    if (m.stats.frameMs.length > 600) m.stats.frameMs.shift();
    m.canvas.dataset.thumbs = String(m.stats.thumbs);
    m.canvas.dataset.scale = m.scale.toFixed(1);
  }

  function drawThumbs(rows) {
    if (!m.ids) return 0;
    const size = Math.min(120, Math.max(36, m.scale / Math.sqrt(m.count) / 2)) * m.ratio;
    let drawn = 0;
    for (const i of rows) {
      const img = thumb(i);
      if (!img.complete || !img.naturalWidth) continue;
      const h = size, w = (img.naturalWidth / img.naturalHeight) * h;
      const x = m.xy[2 * i] * m.scale + m.tx, y = m.xy[2 * i + 1] * m.scale + m.ty;
      m.ctx.drawImage(img, x - w / 2, y - h / 2, w, h);
      drawn += 1;
    }
    return drawn;
  }

  function thumb(i) {
    let img = m.thumbs.get(i);
    if (!img) {
      img = new Image();
      img.decoding = "async";
      img.onload = redraw;
      img.src = `api/items/${encodeURIComponent(m.ids[i])}/image`;
      m.thumbs.set(i, img);
      if (m.thumbs.size > 2000) m.thumbs.delete(m.thumbs.keys().next().value);
    }
    return img;
  }

  function drawHover(i) {
    const x = m.xy[2 * i] * m.scale + m.tx, y = m.xy[2 * i + 1] * m.scale + m.ty;
    m.ctx.strokeStyle = "#fff";
    m.ctx.lineWidth = 2 * m.ratio;
    m.ctx.beginPath();
    m.ctx.arc(x, y, 6 * m.ratio, 0, 2 * Math.PI);
    m.ctx.stroke();
  }

  // ------------------------------------------------------------ interaction

  function pick(clientX, clientY) {
    const box = m.canvas.getBoundingClientRect();
    const sx = (clientX - box.left) * m.ratio, sy = (clientY - box.top) * m.ratio;
    const x = (sx - m.tx) / m.scale, y = (sy - m.ty) / m.scale;
    const reach = (PICK_RADIUS * m.ratio) / m.scale;
    let best = -1, bestD = Infinity;
    const c0 = Math.floor((x - reach) * BUCKETS), c1 = Math.floor((x + reach) * BUCKETS);
    const r0 = Math.floor((y - reach) * BUCKETS), r1 = Math.floor((y + reach) * BUCKETS);
    for (let cy = Math.max(0, r0); cy <= Math.min(BUCKETS - 1, r1); cy++) {
      for (let cx = Math.max(0, c0); cx <= Math.min(BUCKETS - 1, c1); cx++) {
        for (const i of m.buckets[cy * BUCKETS + cx]) {
          const d = (m.xy[2 * i] - x) ** 2 + (m.xy[2 * i + 1] - y) ** 2;
          if (d < bestD) { bestD = d; best = i; }
        }
      }
    }
    return bestD <= reach * reach ? best : -1;
  }

  function zoomAt(clientX, clientY, factor) {
    const box = m.canvas.getBoundingClientRect();
    const sx = (clientX - box.left) * m.ratio, sy = (clientY - box.top) * m.ratio;
    const next = Math.min(Math.max(m.scale * factor, 50), 4e6);
    m.tx = sx - ((sx - m.tx) * next) / m.scale;
    m.ty = sy - ((sy - m.ty) * next) / m.scale;
    m.scale = next;
    redraw();
  }

  function showTip(i, clientX, clientY) {
    if (i < 0 || !m.names) { m.tip.hidden = true; return; }
    m.tip.hidden = false;
    m.tip.textContent = m.names[i];
    m.tip.style.left = `${clientX + 12}px`;
    m.tip.style.top = `${clientY + 12}px`;
  }

  function bind() {
    let drag = null;
    m.canvas.addEventListener("wheel", (event) => {
      event.preventDefault();
      zoomAt(event.clientX, event.clientY, Math.exp(-event.deltaY * 0.0015));
      m.hover = pick(event.clientX, event.clientY);  // the dot under the pointer changes
      showTip(m.hover, event.clientX, event.clientY);
    }, { passive: false });
    m.canvas.addEventListener("pointerdown", (event) => {
      drag = { x: event.clientX, y: event.clientY, moved: false };
      m.canvas.setPointerCapture(event.pointerId);
    });
    m.canvas.addEventListener("pointermove", (event) => {
      if (drag && event.buttons) {
        const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
        if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
        if (drag.moved) {
          m.tx += dx * m.ratio; m.ty += dy * m.ratio;
          drag.x = event.clientX; drag.y = event.clientY;
          redraw();
        }
        return;
      }
      const i = pick(event.clientX, event.clientY);
      if (i !== m.hover) { m.hover = i; redraw(); }
      showTip(i, event.clientX, event.clientY);
    });
    m.canvas.addEventListener("pointerup", (event) => {
      const moved = drag && drag.moved;
      drag = null;
      if (moved) return;
      const i = pick(event.clientX, event.clientY);
      if (i >= 0 && m.ids && m.onPick) m.onPick(m.ids[i]);
    });
    m.canvas.addEventListener("pointerleave", () => { m.tip.hidden = true; });
    window.addEventListener("resize", () => { if (m.canvas.offsetParent) { resize(); redraw(); } });
    for (const box of document.querySelectorAll("#map-legend input[data-highlight]")) {
      box.addEventListener("change", () => { m.highlight[box.dataset.highlight] = box.checked; redraw(); });
    }
  }

  async function show(onPick) {
    m.onPick = onPick;
    if (!m.canvas) {
      m.canvas = document.getElementById("map");
      m.ctx = m.canvas.getContext("2d");
      m.tip = document.getElementById("map-tip");
      bind();
    }
    document.getElementById("map-view").hidden = false;
    if (!m.loaded) m.loaded = load();
    try {
      await m.loaded;
    } catch (error) {
      m.loaded = null;
      throw error;
    }
    resize();
    fit();
    return m.count;
  }

  function hide() {
    const view = document.getElementById("map-view");
    if (view) view.hidden = true;
    if (m.tip) m.tip.hidden = true;
  }

  // for the browser tests and the performance figures (docs/performance.md)
  function point(i) {
    const box = m.canvas.getBoundingClientRect();
    return {
      x: box.left + (m.xy[2 * i] * m.scale + m.tx) / m.ratio,
      y: box.top + (m.xy[2 * i + 1] * m.scale + m.ty) / m.ratio,
      id: m.ids ? m.ids[i] : null,
    };
  }

  return { show, hide, zoomAt, point, pick, stats: m.stats, state: m };
})();
window.bannermatchMap = bannermatchMap;
