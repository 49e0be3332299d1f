// bannermatch web page: plain JavaScript, no build step.
// Views live in the URL (?id=..., ?view=unique&page=N, ?view=image, ?view=text) so that
// links can be shared and the back button works (history.pushState + popstate).
"use strict";

const API = "api/";
const DEBOUNCE_MS = 150;
const UNIQUE_PAGE = 48;

const $ = (id) => document.getElementById(id);
const el = {
  form: $("search"), input: $("q"), list: $("suggestions"), status: $("status"),
  main: $("main"), query: $("query"), queryImg: $("query-img"), queryName: $("query-name"),
  queryMeta: $("query-meta"), queryLinks: $("query-links"), n: $("n"), nControls: $("n-controls"),
  gridTitle: $("grid-title"), grid: $("grid"), pager: $("pager"), prev: $("prev"),
  next: $("next"), pageLabel: $("page-label"), file: $("file"), drop: $("drop"),
  random: $("random"), info: $("info"), textLink: $("text-mode-link"), textMode: $("text-mode"),
  textForm: $("text-form"), textInput: $("text-q"), mirror: $("mirror"), flip: $("flip"),
  titleWeight: $("title-weight"), titleWeightControl: $("title-weight-control"),
};
const state = { info: null, lastImage: null, renderToken: 0 };

// ---------------------------------------------------------------- helpers

async function getJSON(url, options = {}) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  if (!response.ok) {
    const detail = body && body.detail;
    const text = typeof detail === "string" ? detail
      : Array.isArray(detail) ? detail.map((d) => d.msg).join("; ")
      : `${response.status} ${response.statusText}`;
    const error = new Error(text);
    error.status = response.status;
    throw error;
  }
  return body;
}

function setStatus(text, isError = false) {
  el.status.textContent = text;
  el.status.classList.toggle("error", isError);
}

function make(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function itemHref(id) {
  return `?id=${encodeURIComponent(id)}`;
}

function card(hit, sub) {
  const caption = make("span", { class: "caption" }, [
    make("span", { class: "name", text: hit.name }),
  ]);
  if (hit.score !== undefined) {
    // a text search's banner-text or name match is scored as a match, not a similarity
    const label = hit.matched && hit.matched[0] !== "image" ? "match" : "similarity";
    caption.append(make("span", { class: "score", text: `${label} ${hit.score.toFixed(3)}` }));
  }
  if (hit.verified) {
    const title = `${hit.inliers} local features agree on one geometry`;
    caption.append(make("span", { class: "verified", text: "verified", title }));
  }
  if (sub) caption.append(make("span", { class: "sub", text: sub }));
  const img = make("img", { src: hit.image_url, alt: "", loading: "lazy", decoding: "async" });
  const link = make("a", { href: itemHref(hit.id), "data-id": hit.id, title: hit.name }, [
    img, caption,
  ]);
  return make("li", { class: "card" }, [link]);
}

function matchedBy(hit) {
  const read = hit.banner_text ? ` · reads “${hit.banner_text}”` : "";
  return `${hit.matched.join(" + ")}${read}`;
}

function showGrid(title, items, subOf) {
  el.gridTitle.textContent = title;
  el.grid.replaceChildren(...items.map((hit) => card(hit, subOf ? subOf(hit) : undefined)));
}

function markNav(view) {
  for (const a of document.querySelectorAll(".modes a[data-nav]")) {
    if (a.dataset.nav === view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

// ---------------------------------------------------------------- navigation

function navigate(params, { replace = false } = {}) {
  const search = new URLSearchParams(params).toString();
  const url = search ? `?${search}` : location.pathname;
  if (replace) history.replaceState(params, "", url);
  else history.pushState(params, "", url);
  render();
}

function currentParams() {
  return Object.fromEntries(new URLSearchParams(location.search));
}

async function render() {
  const token = ++state.renderToken;
  const params = currentParams();
  closeList();
  el.pager.hidden = true;
  el.textMode.hidden = true;
  bannermatchMap.hide();
  try {
    if (params.id) await renderItem(params.id, Number(params.n) || defaultN(), turnOf(params), token);
    else if (params.view === "unique") await renderUnique(Math.max(1, Number(params.page) || 1), token);
    else if (params.view === "image") renderImageResults();
    else if (params.view === "text") renderTextMode();
    else if (params.view === "map") await renderMap(token);
    else await renderFeatured(token);
  } catch (error) {
    if (token !== state.renderToken) return;
    setStatus(error.message, true);
    el.query.hidden = true;
    showGrid("", []);
  }
}

function defaultN() {
  const k = state.info ? state.info.stored_k : 0;
  return k >= 1 ? Math.min(k, 100) : 10;
}

function stale(token) {
  return token !== state.renderToken;
}

// ---------------------------------------------------------------- views

// an item's metadata (a names sidecar's columns) as short "key: value" texts
function describeMetadata(metadata) {
  return Object.entries(metadata || {})
    .filter(([key]) => !["file", "path", "width", "height", "group_size"].includes(key))
    .slice(0, 6)
    .map(([key, value]) => `${key.replace(/_/g, " ")}: ${Array.isArray(value) ? value.join(", ") : value}`);
}

function showQuery(item, meta) {
  el.query.hidden = false;
  el.nControls.hidden = false;
  el.nControls.classList.remove("upload");
  el.queryImg.src = item.image_url;
  el.queryImg.alt = `Banner of ${item.name}`;
  el.queryName.textContent = item.name;
  const read = item.banner_text ? [`banner text: “${item.banner_text}”`] : [];
  el.queryMeta.textContent = [meta, ...read, ...describeMetadata(item.metadata)].join(" · ");
  const links = [];
  if (item.store_url) links.push(make("a", { href: item.store_url, rel: "noopener", target: "_blank", text: "Steam store" }));
  if (item.steamdb_url) links.push(make("a", { href: item.steamdb_url, rel: "noopener", target: "_blank", text: "SteamDB" }));
  el.queryLinks.replaceChildren(...links);
}

// the query image turned (?mirror=1, ?flip=1): embedded on the fly by the server
// ... and ?tw=W: the banner text's weight beside the image (similar?text_weight=W)
function turnOf(params) {
  const tw = ["0.25", "0.5", "0.75"].includes(params.tw) ? params.tw : "";
  return { mirror: params.mirror === "1", flip: params.flip === "1", tw };
}

function turnWords(turn) {
  return [turn.mirror && "mirrored", turn.flip && "flipped"].filter(Boolean).join(" and ");
}

function itemParams(id, n, turn) {
  const params = { id };
  if (n) params.n = n;
  if (turn.mirror) params.mirror = "1";
  if (turn.flip) params.flip = "1";
  if (turn.tw) params.tw = turn.tw;
  return params;
}

async function renderItem(id, n, turn, token) {
  markNav(null);
  setStatus(turn.mirror || turn.flip ? "Embedding the turned banner…" : "Loading…");
  const flags = `${turn.mirror ? "&mirror=1" : ""}${turn.flip ? "&flip=1" : ""}${turn.tw ? `&text_weight=${turn.tw}` : ""}`;
  const data = await getJSON(`${API}items/${encodeURIComponent(id)}/similar?n=${n}${flags}`);
  if (stale(token)) return;
  el.mirror.checked = turn.mirror;
  el.flip.checked = turn.flip;
  el.titleWeight.value = turn.tw || "0";
  el.queryImg.classList.toggle("mirrored", turn.mirror);
  el.queryImg.classList.toggle("flipped", turn.flip);
  showQuery(data.query, `id ${data.query.id}`);
  if (![...el.n.options].some((o) => Number(o.value) === n)) el.n.append(make("option", { text: String(n) }));
  el.n.value = String(n);
  el.input.value = data.query.name;
  document.title = `${data.query.name} · bannermatch`;
  const turned = [turnWords(turn), turn.tw && "with the title"].filter(Boolean).join(", ");
  showGrid(`Most similar to ${data.query.name}${turned ? ` (${turned})` : ""}`, data.results);
  setStatus(`${data.results.length} most similar banners.`);
}

async function renderUnique(page, token) {
  markNav("unique");
  el.query.hidden = true;
  setStatus("Loading…");
  const offset = (page - 1) * UNIQUE_PAGE;
  const data = await getJSON(`${API}unique?offset=${offset}&limit=${UNIQUE_PAGE}`);
  if (stale(token)) return;
  document.title = "Most unique · bannermatch";
  showGrid(
    "Most unique: banners least like any other",
    data.results,
    (hit) => `#${hit.rank} · nearest: ${hit.nearest.name}`,
  );
  const pages = Math.max(1, Math.ceil(data.total / UNIQUE_PAGE));
  el.pager.hidden = pages <= 1;
  el.prev.disabled = page <= 1;
  el.next.disabled = page >= pages;
  el.pageLabel.textContent = `Page ${page} of ${pages}`;
  el.prev.onclick = () => navigate({ view: "unique", page: page - 1 });
  el.next.onclick = () => navigate({ view: "unique", page: page + 1 });
  setStatus(`${data.total} items ranked; the score is the similarity to the nearest one.`);
}

async function renderFeatured(token) {
  markNav("home");
  el.query.hidden = true;
  document.title = "bannermatch";
  const data = await getJSON(`${API}featured`);
  if (stale(token)) return;
  showGrid(data.source === "queries" ? "Featured" : "A few of the banners", data.results);
  setStatus("Search a name, pick a banner, or drop an image anywhere on the page.");
}

function renderImageResults() {
  markNav(null);
  const last = state.lastImage;
  if (!last) {
    el.query.hidden = true;
    showGrid("", []);
    setStatus("Choose or drop an image to find banners that look like it.");
    return;
  }
  el.query.hidden = false;
  // of the controls, an upload has the title's weight only (when the banners were read)
  el.nControls.hidden = !(state.info && state.info.banner_text);
  el.nControls.classList.add("upload");
  el.titleWeight.value = last.tw || "0";
  el.queryImg.classList.remove("mirrored", "flipped");
  el.queryImg.src = last.previewUrl;
  el.queryImg.alt = `Your image ${last.data.query.filename || ""}`.trim();
  el.queryName.textContent = last.data.query.filename || "Your image";
  const q = last.data.query;
  const read = q.banner_text != null ? [`banner text: “${q.banner_text}”`] : [];
  el.queryMeta.textContent = [`${q.width}×${q.height} ${q.format}`, ...read].join(" · ");
  el.queryLinks.replaceChildren();
  document.title = "Image search · bannermatch";
  showGrid(`Banners that look like your image${last.tw ? " (with the title)" : ""}`, last.data.results);
  setStatus(`${last.data.results.length} banners that look like your image.`);
}

// ---------------------------------------------------------------- search by image

// tw: the title's weight (text_weight; the server reads the upload's text), "" for none
async function searchImage(file, tw = "") {
  if (!file) return;
  if (!file.type.startsWith("image/")) {
    setStatus(`${file.name} is not an image.`, true);
    return;
  }
  setStatus(tw ? `Reading the text on ${file.name} and searching…` : `Searching for banners like ${file.name}…`);
  const body = new FormData();
  body.append("file", file, file.name);
  try {
    const n = state.info ? Math.max(defaultN(), 20) : 20;
    const weight = tw ? `&text_weight=${tw}` : "";
    const data = await getJSON(`${API}search/image?n=${n}${weight}`, { method: "POST", body });
    const again = state.lastImage && state.lastImage.file === file;
    if (state.lastImage && !again) URL.revokeObjectURL(state.lastImage.previewUrl);
    const previewUrl = again ? state.lastImage.previewUrl : URL.createObjectURL(file);
    state.lastImage = { data, file, tw, previewUrl };
    navigate({ view: "image" }, { replace: again && currentParams().view === "image" });
  } catch (error) {
    setStatus(`Image search failed: ${error.message}`, true);
  }
}

el.file.addEventListener("change", () => {
  searchImage(el.file.files[0]);
  el.file.value = "";
});

let dragDepth = 0;
window.addEventListener("dragenter", (event) => {
  if (![...(event.dataTransfer?.types || [])].includes("Files")) return;
  event.preventDefault();
  dragDepth += 1;
  el.drop.hidden = false;
});
window.addEventListener("dragover", (event) => {
  if ([...(event.dataTransfer?.types || [])].includes("Files")) event.preventDefault();
});
window.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) el.drop.hidden = true;
});
window.addEventListener("drop", (event) => {
  event.preventDefault();
  dragDepth = 0;
  el.drop.hidden = true;
  searchImage(event.dataTransfer?.files?.[0]);
});

// ---------------------------------------------------------------- autocomplete (combobox)

const combo = { items: [], active: -1, timer: 0, controller: null, seq: 0 };

function openList() {
  el.list.hidden = false;
  el.input.setAttribute("aria-expanded", "true");
}

function closeList() {
  el.list.hidden = true;
  el.input.setAttribute("aria-expanded", "false");
  el.input.removeAttribute("aria-activedescendant");
  combo.active = -1;
}

function setActive(index) {
  const options = el.list.querySelectorAll('[role="option"]');
  if (!options.length) return;
  combo.active = (index + options.length) % options.length;
  options.forEach((option, i) => option.setAttribute("aria-selected", String(i === combo.active)));
  const current = options[combo.active];
  el.input.setAttribute("aria-activedescendant", current.id);
  current.scrollIntoView({ block: "nearest" });
}

function showSuggestions(results) {
  combo.items = results;
  combo.active = -1;
  if (!results.length) {
    el.list.replaceChildren(make("li", { class: "empty", text: "No matching names", "aria-disabled": "true" }));
    openList();
    return;
  }
  el.list.replaceChildren(...results.map((hit, i) => {
    const option = make("li", { role: "option", id: `option-${i}`, "aria-selected": "false", "data-index": i }, [
      make("img", { src: hit.image_url, alt: "", loading: "lazy" }),
      make("span", { text: hit.name }),
      make("span", { class: "id", text: hit.id }),
    ]);
    option.addEventListener("mousedown", (event) => event.preventDefault()); // keep focus
    option.addEventListener("click", () => choose(i));
    return option;
  }));
  openList();
}

function choose(index) {
  const hit = combo.items[index];
  if (!hit) return;
  closeList();
  el.input.value = hit.name;
  navigate({ id: hit.id });
}

async function fetchSuggestions(text) {
  if (combo.controller) combo.controller.abort();
  combo.controller = new AbortController();
  const seq = ++combo.seq;
  try {
    const data = await getJSON(`${API}names?q=${encodeURIComponent(text)}&limit=10`, {
      signal: combo.controller.signal,
    });
    if (seq === combo.seq && el.input.value.trim() === text) showSuggestions(data.results);
    return data.results;
  } catch (error) {
    if (error.name !== "AbortError") setStatus(error.message, true);
    return [];
  }
}

el.input.addEventListener("input", () => {
  clearTimeout(combo.timer);
  const text = el.input.value.trim();
  if (!text) {
    closeList();
    return;
  }
  combo.timer = setTimeout(() => fetchSuggestions(text), DEBOUNCE_MS);
});

el.input.addEventListener("keydown", (event) => {
  const open = !el.list.hidden && combo.items.length > 0;
  if (event.key === "ArrowDown") {
    event.preventDefault();
    if (!open && el.input.value.trim()) fetchSuggestions(el.input.value.trim());
    else setActive(combo.active + 1);
  } else if (event.key === "ArrowUp") {
    event.preventDefault();
    if (open) setActive(combo.active - 1);
  } else if (event.key === "Enter") {
    if (open && combo.active >= 0) {
      event.preventDefault();
      choose(combo.active);
    }
  } else if (event.key === "Escape") {
    if (!el.list.hidden) {
      event.preventDefault();
      closeList();
    } else {
      el.input.value = "";
    }
  }
});

el.input.addEventListener("blur", () => setTimeout(closeList, 100));

el.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = el.input.value.trim();
  if (!text) return;
  clearTimeout(combo.timer);
  const results = await fetchSuggestions(text); // an id or the best name match
  if (results.length) {
    closeList();
    navigate({ id: results[0].id });
  } else {
    setStatus(`Nothing matches “${text}”.`, true);
  }
});

// ---------------------------------------------------------------- other controls

el.n.addEventListener("change", () => {
  const params = currentParams();
  if (params.id) navigate(itemParams(params.id, el.n.value, turnOf(params)));
});

for (const box of [el.mirror, el.flip, el.titleWeight]) {
  box.addEventListener("change", () => {
    const params = currentParams();
    const tw = el.titleWeight.value === "0" ? "" : el.titleWeight.value;
    const turn = { mirror: el.mirror.checked, flip: el.flip.checked, tw };
    if (params.id) navigate(itemParams(params.id, params.n, turn));
    else if (params.view === "image" && state.lastImage) searchImage(state.lastImage.file, tw);
  });
}

el.random.addEventListener("click", async () => {
  try {
    const item = await getJSON(`${API}random`);
    navigate({ id: item.id });
  } catch (error) {
    setStatus(error.message, true);
  }
});

// result cards and nav links: navigate in place, but keep ctrl/middle-click "open in new tab"
document.addEventListener("click", (event) => {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  const link = event.target.closest("a");
  if (!link) return;
  if (link.dataset.id) {
    event.preventDefault();
    navigate({ id: link.dataset.id });
    el.main.focus({ preventScroll: true });
    window.scrollTo({ top: 0 });
  } else if (link.dataset.nav) {
    event.preventDefault();
    const view = link.dataset.nav;
    navigate(view === "home" ? {} : { view });
  }
});

window.addEventListener("popstate", render);

// ---------------------------------------------------------------- text search
// /api/info says whether the server can search by text, and how: "clip" (the CLIP text
// tower) or "labels" (an ImageNet classifier's classes whose names match the words).

const textSearch = {
  enabled: false,
  mode: null,
  async run(text) {
    const data = await getJSON(`${API}search/text?q=${encodeURIComponent(text)}&n=${defaultN()}`);
    // each card says which signals found it ("banner text", "name", "image") and the text read
    showGrid(`Banners matching “${text}”`, data.results, matchedBy);
    const words = data.results.filter((h) => !h.matched.every((m) => m === "image")).length;
    if (words) {
      setStatus(`${words} found by ${data.signals.filter((s) => s !== "image").join(" or ")}, then by the image.`);
    } else if (data.mode === "labels") {
      const names = data.classes.slice(0, 6).map((c) => c.name.split(",")[0]);
      const more = data.classes.length > 6 ? ` and ${data.classes.length - 6} more` : "";
      const ignored = data.unmatched_words.length
        ? ` No ImageNet class has “${data.unmatched_words.join("”, “")}”: ignored.`
        : "";
      setStatus(`Ranked by the probability of the ImageNet classes matching your words: ${names.join("; ")}${more}.${ignored}`);
    } else {
      setStatus(`${data.results.length} banners matching your words.`);
    }
  },
};

async function renderMap(token) {
  markNav("map");
  el.query.hidden = true;
  showGrid("", []);
  setStatus("Loading the map…");
  const count = await bannermatchMap.show((id) => navigate({ id }));
  if (stale(token)) return;
  setStatus(`${count.toLocaleString()} banners, placed by how alike they look.`);
}

function renderTextMode() {
  markNav("text");
  el.query.hidden = true;
  showGrid("", []);
  if (!textSearch.enabled) {
    setStatus("Text search is not available on this server.", true);
    return;
  }
  el.textMode.hidden = false;
  if (textSearch.mode === "labels") el.textInput.placeholder = "a sports car, a castle, a dog";
  const read = state.info && state.info.banner_text ? " The words on the banners were read: a title finds them first." : "";
  setStatus(
    (textSearch.mode === "labels"
      ? "This model cannot read text: your words pick ImageNet classes (animals, objects, vehicles…)."
      : "Describe the picture you are looking for.") + read,
  );
}

el.textForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = el.textInput.value.trim();
  if (!textSearch.enabled || !text) return;
  try {
    await textSearch.run(text);
  } catch (error) {
    setStatus(error.message, true);
  }
});

// ---------------------------------------------------------------- start

async function start() {
  try {
    state.info = await getJSON(`${API}info`);
    el.info.textContent = `${state.info.count.toLocaleString()} banners · ${state.info.model}`;
    textSearch.enabled = Boolean(state.info.text_search);
    textSearch.mode = state.info.text_mode;
    el.textLink.hidden = !textSearch.enabled;
    el.titleWeightControl.hidden = !state.info.banner_text;
  } catch (error) {
    setStatus(`The server is not answering: ${error.message}`, true);
  }
  await render();
}

start();
