// lens browser UI: bring a photo in, show dots on regions and outlines on text, show matches,
// read and translate text. Plain JS, no build step.
//
// Security: OCR text, catalog titles and URLs are untrusted. They reach the page only through
// textContent, setAttribute on non-URL attributes, or URLs filtered by safeUrl(); never innerHTML.
// The gateway sends a CSP without 'unsafe-inline', so nothing here relies on inline script/style
// (element.style set from this file is CSSOM, which CSP allows).
"use strict";

(() => {
  // Longest side sent to the server. Stages work at 1600 px; OCR gains from a little more.
  const MAX_UPLOAD_SIDE = 2048;
  // Below this size an upright JPEG/PNG/WebP is sent as is (no re-encoding loss for small text).
  const PASSTHROUGH_BYTES = 4 * 1024 * 1024;
  const JPEG_QUALITY = 0.9;
  const ANALYSIS_TIMEOUT_MS = 180000;
  // A pointer drag shorter than this (CSS px) is a tap, not a box.
  const MIN_DRAG_PX = 12;
  // WCAG 2.2 target size (minimum): anything tappable is at least this big (CSS px); smaller
  // text outlines get an invisible margin that takes the taps.
  const MIN_TARGET_PX = 24;
  // Arrow keys move a selection corner by this share of the photo; the search runs again this
  // long after the last key press.
  const KEY_NUDGE = 0.02;
  const KEY_SEARCH_DELAY_MS = 500;
  // The server's text_search.max_query_chars (a longer query is a 400).
  const MAX_QUERY_CHARS = 200;
  const LANG_STORAGE_KEY = "lens.targetLang";
  const UI_LANG_STORAGE_KEY = "lens.uiLang";
  // The page's own languages: one message catalog each under /static/i18n/ (en is the fallback
  // for any key a catalog lacks). Names are written in their own language.
  const UI_LANGUAGES = {
    en: "English", vi: "Tiếng Việt", pt: "Português", es: "Español", fr: "Français", zh: "中文", ja: "日本語",
  };
  const TARGET_LANGUAGES = [
    "en", "pt", "es", "fr", "de", "it", "nl", "pl", "ru", "uk", "tr", "ar", "hi", "ja", "ko",
    "zh", "vi", "id", "th",
  ];

  const $ = (id) => document.getElementById(id);
  const el = {
    picker: $("picker"), dropZone: $("drop-zone"), cameraInput: $("camera-input"),
    fileInput: $("file-input"), progress: $("progress"), progressText: $("progress-text"),
    progressBar: $("progress-bar"), progressSteps: $("progress-steps"), cancel: $("cancel-button"), error: $("error"),
    errorText: $("error-text"), retry: $("retry-button"), errorNewPhoto: $("error-new-photo"),
    result: $("result"), newPhoto: $("new-photo-button"), modes: $("modes"),
    modeButtons: Array.from(document.querySelectorAll("#modes .mode")), stageHint: $("stage-hint"),
    placeholder: $("panel-placeholder"),
    copyAll: $("copy-all-button"), summary: $("result-summary"), stage: $("stage"),
    frame: $("photo-frame"), photo: $("photo"), translations: $("translations-layer"),
    overlay: $("overlay"), selection: $("selection"), panel: $("panel"),
    panelTitle: $("panel-title"), panelBody: $("panel-body"), panelClose: $("panel-close"),
    targetLang: $("target-lang"), uiLang: $("ui-lang"), toast: $("toast"), targetNote: $("target-note"),
    catalogSearch: $("catalog-search"), catalogSearchInput: $("catalog-search-input"),
    catalogResults: $("catalog-results"), catalogResultsTitle: $("catalog-results-title"),
    catalogResultsBody: $("catalog-results-body"),
  };

  const state = {
    photo: null, // {blob, url, canvas, width, height}
    jobId: null,
    result: null,
    request: null, // {abort()} of the work in flight
    retry: null, // function that repeats the last failed action
    returnFocus: null,
    mode: "search", // search | text | translate
    box: null, // the selection box in photo pixels, while one is shown
    textSearch: null, // a promise: does this server's /api/v1/search take `text`?
    generation: 0, // bumps on every new action so late answers of old ones are ignored
    languages: null, // GET /api/v1/languages: installed pairs, targets per source (null: unknown)
  };

  // ---------------------------------------------------------------------------------------
  // Small helpers

  class UserError extends Error {}

  function make(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // Only http(s) URLs (absolute or relative to this page) may become a link or an image source.
  function safeUrl(value) {
    if (typeof value !== "string" || value === "") return null;
    try {
      const url = new URL(value, window.location.href);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch {
      return null;
    }
  }

  // ---------------------------------------------------------------------------------------
  // Messages: every word the page shows comes from the catalog of the chosen UI language.

  const i18n = { lang: "en", messages: {}, fallback: {} };

  function t(key, params) {
    let text = i18n.messages[key];
    if (typeof text !== "string") text = i18n.fallback[key];
    if (typeof text !== "string") text = key;
    return params ? text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m)) : text;
  }

  // Plural forms by the language's rules: key_one, key_other (… _few, _many where a catalog has them).
  function tn(key, count, params) {
    let form = "other";
    try { form = new Intl.PluralRules(i18n.lang).select(count); } catch { /* old browser */ }
    const chosen = `${key}_${form}` in i18n.messages || `${key}_${form}` in i18n.fallback ? `${key}_${form}` : `${key}_other`;
    return t(chosen, { n: count, count, ...params });
  }

  async function loadCatalog(lang) {
    try {
      const response = await fetch(`/static/i18n/${lang}.json`, { headers: { Accept: "application/json" } });
      return response.ok ? await response.json() : {};
    } catch {
      return {};
    }
  }

  function browserUiLanguage() {
    const wanted = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"];
    for (const tag of wanted) {
      const base = String(tag).split("-")[0].toLowerCase();
      if (base in UI_LANGUAGES) return base;
    }
    return "en";
  }

  async function setUiLanguage(lang) {
    const [fallback, messages] = await Promise.all([
      Object.keys(i18n.fallback).length ? i18n.fallback : loadCatalog("en"),
      lang === "en" ? null : loadCatalog(lang),
    ]);
    i18n.fallback = fallback;
    i18n.messages = messages || fallback;
    i18n.lang = lang;
    document.documentElement.lang = lang;
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    for (const node of document.querySelectorAll("[data-i18n-aria-label]")) node.setAttribute("aria-label", t(node.dataset.i18nAriaLabel));
    for (const node of document.querySelectorAll("[data-i18n-alt]")) node.alt = t(node.dataset.i18nAlt);
    for (const node of document.querySelectorAll("[data-i18n-placeholder]")) node.placeholder = t(node.dataset.i18nPlaceholder);
    document.title = t("page.title");
    fillTargetLanguages();
  }

  function initUiLanguagePicker() {
    let stored = null;
    try { stored = localStorage.getItem(UI_LANG_STORAGE_KEY); } catch { /* private mode */ }
    const chosen = stored in UI_LANGUAGES ? stored : browserUiLanguage();
    for (const [code, name] of Object.entries(UI_LANGUAGES)) {
      const option = make("option", null, name);
      option.value = code;
      option.lang = code;
      el.uiLang.append(option);
    }
    el.uiLang.value = chosen;
    el.uiLang.addEventListener("change", async () => {
      try { localStorage.setItem(UI_LANG_STORAGE_KEY, el.uiLang.value); } catch { /* ignore */ }
      await setUiLanguage(el.uiLang.value);
      rerender();
    });
    return setUiLanguage(chosen);
  }

  function languageName(code) {
    if (!code) return t("lang.unknown");
    try {
      const names = new Intl.DisplayNames([i18n.lang], { type: "language" });
      return names.of(code) || code;
    } catch {
      return code;
    }
  }

  function show(section) {
    for (const s of [el.picker, el.progress, el.error, el.result]) s.hidden = s !== section;
  }

  let toastTimer = 0;
  function toast(message) {
    el.toast.textContent = message;
    el.toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.toast.hidden = true; }, 2200);
  }

  function setProgress(text, percent) {
    el.progressText.textContent = text;
    if (percent === null || percent === undefined) {
      el.progressBar.removeAttribute("value"); // indeterminate
    } else {
      el.progressBar.value = Math.max(0, Math.min(100, percent));
    }
  }

  function showError(message, retry) {
    state.retry = retry || null;
    el.errorText.textContent = message;
    el.retry.hidden = !retry;
    show(el.error);
    (retry ? el.retry : el.errorNewPhoto).focus();
  }

  // The API answers errors as {"error": {"code", "message"}}; anything else gets a plain sentence.
  function errorMessage(status, body) {
    if (body && body.error && body.error.code === "no_catalog") return t("err.no_catalog");
    if (body && body.error && typeof body.error.message === "string") return body.error.message;
    if (status === 413) return t("err.too_large");
    if (status === 415) return t("err.unsupported");
    if (status === 429) return t("err.busy");
    if (status >= 500) return t("err.server", { status });
    if (status === 0) return t("err.offline");
    return t("err.failed", { status });
  }

  function parseJson(text) {
    try { return JSON.parse(text); } catch { return null; }
  }

  // ---------------------------------------------------------------------------------------
  // Target language: follows the browser, can be changed, remembered.

  function initLanguagePicker() {
    const browser = (navigator.language || "en").split("-")[0].toLowerCase();
    let stored = null;
    try { stored = localStorage.getItem(LANG_STORAGE_KEY); } catch { /* private mode */ }
    const chosen = stored || browser;
    state.targetChoices = TARGET_LANGUAGES.includes(chosen) ? [...TARGET_LANGUAGES] : [chosen, ...TARGET_LANGUAGES];
    fillTargetLanguages(chosen);
    state.languagesReady = loadLanguages();
    el.targetLang.addEventListener("change", () => {
      try { localStorage.setItem(LANG_STORAGE_KEY, el.targetLang.value); } catch { /* ignore */ }
      // Translations depend on the target: ask again for the photo on screen.
      if (state.photo && state.result) analyze();
    });
  }

  // What the server's models translate (GET /api/v1/languages); until it answers, or when it
  // cannot, every target is offered as before and the server's answer per block says the rest.
  async function loadLanguages() {
    const { status, body } = await getJson("/api/v1/languages", new AbortController().signal).catch(() => ({ status: 0 }));
    if (status !== 200 || !body || typeof body.sources !== "object" || !Array.isArray(body.pairs)) return;
    state.languages = body;
    for (const code of body.targets || []) {
      if (!state.targetChoices.includes(code)) state.targetChoices.push(code);
    }
    fillTargetLanguages();
  }

  // The languages the photo's text is in, where translating it would make sense (not a number,
  // a name, or text whose language is unknown).
  const SOURCE_STATUSES = new Set(["translated", "no_model", "same_language", "same_text", "failed"]);
  function detectedSources() {
    const blocks = (state.result && Array.isArray(state.result.text_blocks)) ? state.result.text_blocks : [];
    const sources = new Set();
    for (const block of blocks) {
      if (block.language && (!block.translation_status || SOURCE_STATUSES.has(block.translation_status))) sources.add(block.language);
    }
    return [...sources];
  }

  function listNames(codes) {
    const names = codes.map((code) => languageName(code));
    try { return new Intl.ListFormat([i18n.lang], { type: "conjunction" }).format(names); } catch { return names.join(", "); }
  }

  // Can the server translate the photo's text (or, before a photo, anything) into `code`?
  // {ok, reason}: the reason in the viewer's words when it cannot.
  function targetAvailability(code, sources) {
    const langs = state.languages;
    if (!langs) return { ok: true, reason: null };
    const reachable = (src) => (langs.sources[src] || []).includes(code);
    if (!sources.length) {
      return (langs.targets || []).includes(code) ? { ok: true, reason: null } : { ok: false, reason: t("target.not_installed") };
    }
    if (sources.some(reachable)) return { ok: true, reason: null };
    if (sources.every((src) => src === code)) return { ok: false, reason: t("target.already") };
    return { ok: false, reason: t("target.no_model_from", { source: listNames(sources.filter((src) => src !== code)) }) };
  }

  // Language names follow the page's language; a target the server cannot reach from the
  // photo's languages is listed but disabled, with the reason in its label.
  function fillTargetLanguages(chosen) {
    const value = chosen || el.targetLang.value;
    const sources = detectedSources();
    el.targetLang.replaceChildren();
    const choices = state.targetChoices || TARGET_LANGUAGES;
    const rows = choices.map((code) => ({ code, ...targetAvailability(code, sources) }));
    // Available ones first, each group in the server's order.
    for (const row of [...rows.filter((r) => r.ok), ...rows.filter((r) => !r.ok)]) {
      const label = `${languageName(row.code)} (${row.code})`;
      const option = make("option", null, row.ok ? label : t("target.unavailable", { language: label, reason: row.reason }));
      option.value = row.code;
      option.disabled = !row.ok;
      option.dataset.available = String(row.ok);
      el.targetLang.append(option);
    }
    el.targetLang.value = value;
    state.noteSources = sources;
    updateTargetNote(sources);
  }

  // Under the toolbar: why the chosen target gives no translation of this photo, and what it can.
  // Only in the Text and Translate modes: in Search it would push the photo under a phone's
  // sheet (and the selection's handles with it) to explain something the viewer is not doing.
  function updateTargetNote(sources = state.noteSources || []) {
    if (!el.targetNote) return;
    const target = el.targetLang.value;
    const { ok, reason } = targetAvailability(target, sources);
    if (ok || !state.result || !sources.length || state.mode === "search") {
      el.targetNote.hidden = true;
      el.targetNote.textContent = "";
      return;
    }
    const reachable = [...new Set(sources.flatMap((src) => (state.languages.sources[src] || [])))];
    const text = `${t("target.note", { language: languageName(target), reason })} ${reachable.length
      ? t("target.note_available", { languages: listNames(reachable) }) : t("target.note_none", { source: listNames(sources) })}`;
    // Language names are lower case in some languages ("português"); a sentence starts upper.
    el.targetNote.textContent = text.charAt(0).toLocaleUpperCase(i18n.lang) + text.slice(1);
    el.targetNote.hidden = false;
  }

  // The models an operator would add for src -> dst: the missing hops through the pivot
  // language (Firefox models mostly pair a language with English), else the pair itself.
  function missingPairs(src, dst) {
    const langs = state.languages;
    if (!langs) return [`${src}-${dst}`];
    const have = new Set(langs.pairs.map((p) => `${p.source}-${p.target}`));
    const pivot = langs.pivot_language;
    if (pivot && src !== pivot && dst !== pivot) {
      const hops = [`${src}-${pivot}`, `${pivot}-${dst}`].filter((pair) => !have.has(pair));
      if (hops.length) return hops;
    }
    return [`${src}-${dst}`];
  }

  // ---------------------------------------------------------------------------------------
  // Bringing a photo in: camera, file picker, drag and drop, paste.

  function initInputs() {
    for (const input of [el.cameraInput, el.fileInput]) {
      input.addEventListener("change", () => {
        const file = input.files && input.files[0];
        input.value = ""; // choosing the same file again must fire change again
        if (file) handleFile(file);
      });
    }
    let dragDepth = 0;
    document.addEventListener("dragenter", (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      dragDepth += 1;
      document.body.classList.add("dragging");
    });
    document.addEventListener("dragleave", () => {
      dragDepth = Math.max(0, dragDepth - 1);
      if (dragDepth === 0) document.body.classList.remove("dragging");
    });
    document.addEventListener("dragover", (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = "copy";
    });
    document.addEventListener("drop", (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      dragDepth = 0;
      document.body.classList.remove("dragging");
      const file = firstImage(e.dataTransfer.files);
      if (file) handleFile(file);
      else showError(t("err.not_image_drop"), null);
    });
    document.addEventListener("paste", (e) => {
      const files = e.clipboardData ? e.clipboardData.files : null;
      const file = firstImage(files);
      if (file) {
        e.preventDefault();
        handleFile(file);
      }
    });
  }

  function hasFiles(e) {
    return e.dataTransfer && Array.from(e.dataTransfer.types || []).includes("Files");
  }

  function firstImage(files) {
    if (!files) return null;
    return Array.from(files).find((f) => f.type.startsWith("image/")) || null;
  }

  // Decode with EXIF orientation applied, downscale large photos, and keep an upright canvas
  // for sampling colours (translations) and cropping (fallback search).
  async function preparePhoto(file) {
    let source;
    try {
      source = await createImageBitmap(file, { imageOrientation: "from-image" });
    } catch {
      source = await decodeWithImg(file);
    }
    const scale = Math.min(1, MAX_UPLOAD_SIDE / Math.max(source.width, source.height));
    const width = Math.max(1, Math.round(source.width * scale));
    const height = Math.max(1, Math.round(source.height * scale));
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(source, 0, 0, width, height);
    if (source.close) source.close();

    const passthrough = scale === 1 && file.size <= PASSTHROUGH_BYTES &&
      ["image/jpeg", "image/png", "image/webp"].includes(file.type) && !(await hasExifRotation(file));
    const blob = passthrough ? file : await canvasToBlob(canvas, "image/jpeg", JPEG_QUALITY);
    return { blob, url: URL.createObjectURL(blob), canvas, width, height };
  }

  function decodeWithImg(file) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      const url = URL.createObjectURL(file);
      img.onload = () => { URL.revokeObjectURL(url); resolve(img); };
      img.onerror = () => {
        URL.revokeObjectURL(url);
        reject(new UserError(t("err.cannot_open")));
      };
      img.src = url;
    });
  }

  function canvasToBlob(canvas, type, quality) {
    return new Promise((resolve, reject) => {
      canvas.toBlob((b) => (b ? resolve(b) : reject(new UserError(t("err.cannot_prepare")))), type, quality);
    });
  }

  // A JPEG whose EXIF says "rotated" is re-encoded upright, so that the server, the <img> and
  // the canvas all agree on one pixel grid whatever each one does with EXIF.
  async function hasExifRotation(file) {
    if (file.type !== "image/jpeg") return false;
    try {
      return readExifRotation(new DataView(await file.slice(0, 128 * 1024).arrayBuffer()));
    } catch {
      return true; // unreadable EXIF: re-encoding is the safe choice
    }
  }

  function readExifRotation(bytes) {
    if (bytes.byteLength < 4 || bytes.getUint16(0) !== 0xffd8) return false;
    let offset = 2;
    while (offset + 4 <= bytes.byteLength) {
      const marker = bytes.getUint16(offset);
      const size = bytes.getUint16(offset + 2);
      if (marker === 0xffe1 && bytes.getUint32(offset + 4) === 0x45786966) {
        const tiff = offset + 10;
        if (tiff + 8 > bytes.byteLength) return true;
        const little = bytes.getUint16(tiff) === 0x4949;
        const ifd = tiff + bytes.getUint32(tiff + 4, little);
        if (ifd + 2 > bytes.byteLength) return true;
        const count = bytes.getUint16(ifd, little);
        for (let i = 0; i < count; i += 1) {
          const entry = ifd + 2 + i * 12;
          if (entry + 10 > bytes.byteLength) return true;
          if (bytes.getUint16(entry, little) === 0x0112) return bytes.getUint16(entry + 8, little) > 1;
        }
        return false;
      }
      if ((marker & 0xff00) !== 0xff00 || marker === 0xffda) return false;
      offset += 2 + size;
    }
    return false;
  }

  async function handleFile(file) {
    cancelInFlight();
    const generation = ++state.generation;
    await state.i18nReady;
    if (generation !== state.generation) return;
    show(el.progress);
    setProgress(t("progress.preparing"), 0);
    try {
      const photo = await preparePhoto(file);
      if (generation !== state.generation) return;
      if (state.photo) URL.revokeObjectURL(state.photo.url);
      state.photo = photo;
      state.result = null;
      state.mode = "search"; // a new photo starts in Search
      state.jobId = null;
      analyze();
    } catch (err) {
      if (generation !== state.generation) return;
      showError(err instanceof UserError ? err.message : t("err.cannot_open"),
        () => handleFile(file));
    }
  }

  // ---------------------------------------------------------------------------------------
  // Talking to the API

  function cancelInFlight() {
    if (state.request) state.request.abort();
    state.request = null;
  }

  // POST with upload progress (fetch cannot report it); resolves {status, body}.
  function postWithProgress(url, formData, onProgress) {
    const xhr = new XMLHttpRequest();
    const promise = new Promise((resolve, reject) => {
      xhr.open("POST", url);
      xhr.setRequestHeader("Accept", "application/json");
      // Answer 202 at once (even the embedded server) so that the job's stages can be shown.
      xhr.setRequestHeader("Prefer", "respond-async");
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
      xhr.onload = () => resolve({ status: xhr.status, body: parseJson(xhr.responseText) });
      xhr.onerror = () => resolve({ status: 0, body: null });
      xhr.onabort = () => reject(new DOMException("aborted", "AbortError"));
      xhr.send(formData);
    });
    return { promise, abort: () => xhr.abort() };
  }

  function sleep(ms, signal) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, ms);
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(new DOMException("aborted", "AbortError"));
      }, { once: true });
    });
  }

  async function getJson(url, signal) {
    let response;
    try {
      response = await fetch(url, { headers: { Accept: "application/json" }, signal });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      return { status: 0, body: null };
    }
    return { status: response.status, body: parseJson(await response.text()) };
  }

  // Some answers carry the result under "result", a synchronous 200 may be the result itself.
  function extractResult(body) {
    if (!body) return null;
    if (body.result && typeof body.result === "object") return body.result;
    if (Array.isArray(body.regions) || Array.isArray(body.text_blocks)) return body;
    return null;
  }

  async function analyze() {
    cancelInFlight();
    const generation = ++state.generation;
    const photo = state.photo;
    const controller = new AbortController();
    let upload = null;
    state.request = { abort: () => { controller.abort(); if (upload) upload.abort(); } };
    show(el.progress);
    el.progressSteps.replaceChildren();
    delete el.progress.dataset.stage;
    setProgress(t("progress.uploading", { pct: 0 }), 0);

    const form = new FormData();
    const name = photo.blob.type === "image/png" ? "photo.png" : photo.blob.type === "image/webp" ? "photo.webp" : "photo.jpg";
    form.append("image", photo.blob, name);
    form.append("target_lang", el.targetLang.value);

    try {
      upload = postWithProgress("/api/v1/analyze", form, (fraction) => {
        const pct = Math.round(fraction * 100);
        setProgress(fraction < 1 ? t("progress.uploading", { pct }) : t("progress.uploaded"), fraction * 40);
      });
      let { status, body } = await upload.promise;
      upload = null;
      if (status !== 200 && status !== 202) throw new UserError(errorMessage(status, body));
      state.jobId = (body && body.job_id) || null;
      let result = status === 200 ? extractResult(body) : null;
      if (!result) {
        const statusUrl = (body && safeUrl(body.status_url)) ||
          (state.jobId ? `/api/v1/jobs/${encodeURIComponent(state.jobId)}` : null);
        if (!statusUrl) throw new UserError(t("err.no_job"));
        stagePercent = 0;
        stagesSeen = new Set();
        showStage("uploaded");
        result = await followJob(statusUrl, controller.signal);
      }
      if (generation !== state.generation) return;
      state.request = null;
      showResult(result);
    } catch (err) {
      if (err.name === "AbortError" || generation !== state.generation) return;
      state.request = null;
      showError(err instanceof UserError ? err.message : t("err.generic", { message: err.message }), analyze);
    }
  }

  // Where the analysis is: the job's latest stage (server-sent events, else polling).
  // The bar only moves forward: in a fleet the two branches' stages interleave.
  const STAGE_PERCENT = { uploaded: 45, detecting: 55, searching: 70, reading_text: 80, translating: 90, done: 100 };
  // The chips under the bar (step.* messages); a stage the job skipped (no catalog) gets no tick.
  const STAGE_STEPS = ["uploaded", "detecting", "searching", "reading_text", "translating"];
  let stagePercent = 0;
  let stagesSeen = new Set();

  function showStage(stage, queued) {
    if (!(stage in STAGE_PERCENT)) return;
    stagePercent = Math.max(stagePercent, STAGE_PERCENT[stage]);
    stagesSeen.add(stage);
    const words = t(queued && stage === "uploaded" ? "stage.queued" : `stage.${stage}`);
    setProgress(words, stagePercent);
    el.progress.dataset.stage = stage;
    // One chip per stage: done, the current one, or still to come.
    const steps = el.progressSteps;
    if (!steps.children.length) {
      for (const name of STAGE_STEPS) {
        const step = make("li", "step", t(`step.${name}`));
        step.dataset.stage = name;
        steps.append(step);
      }
    }
    for (const step of steps.children) {
      const at = STAGE_PERCENT[step.dataset.stage];
      const seen = stagesSeen.has(step.dataset.stage);
      step.className = at === stagePercent && stage !== "done" ? "step current"
        : at < stagePercent ? (seen ? "step done" : "step skipped") : "step";
    }
  }

  // The job's events stream; polling when EventSource is missing or the stream keeps failing.
  function followJob(statusUrl, signal) {
    const eventsUrl = `${statusUrl.replace(/\/+$/, "")}/events`;
    if (typeof window.EventSource !== "function") return pollJob(statusUrl, signal);
    return new Promise((resolve, reject) => {
      const source = new EventSource(eventsUrl);
      let failures = 0;
      const stop = () => { source.close(); clearTimeout(timer); };
      const timer = setTimeout(() => {
        stop();
        reject(new UserError(t("err.too_long")));
      }, ANALYSIS_TIMEOUT_MS);
      signal.addEventListener("abort", () => { stop(); reject(new DOMException("aborted", "AbortError")); }, { once: true });
      source.addEventListener("progress", (e) => {
        failures = 0;
        const body = parseJson(e.data);
        if (body) showStage(body.stage, body.status === "queued");
      });
      source.addEventListener("end", (e) => {
        stop();
        jobOutcome(parseJson(e.data)).then(resolve, reject);
      });
      source.addEventListener("job-error", (e) => {
        stop();
        const body = parseJson(e.data);
        reject(new UserError(errorMessage(500, body)));
      });
      // Connection lost: EventSource reconnects by itself; after a few failures in a row, poll.
      source.addEventListener("error", () => {
        failures += 1;
        if (source.readyState === EventSource.CLOSED || failures > 3) {
          stop();
          pollJob(statusUrl, signal).then(resolve, reject);
        }
      });
    });
  }

  async function jobOutcome(body) {
    const jobStatus = body && body.status;
    if (jobStatus === "done") {
      const result = extractResult(body);
      if (!result) throw new UserError(t("err.no_result"));
      return result;
    }
    throw new UserError((body && body.message) || (body && body.error && body.error.message) ||
      t("err.analysis_failed"));
  }

  async function pollJob(statusUrl, signal) {
    const started = Date.now();
    let delay = 200;
    for (;;) {
      const { status, body } = await getJson(statusUrl, signal);
      if (status !== 200) throw new UserError(errorMessage(status, body));
      const jobStatus = body && body.status;
      if (jobStatus === "done" || jobStatus === "failed") return jobOutcome(body);
      const elapsed = Date.now() - started;
      if (elapsed > ANALYSIS_TIMEOUT_MS) {
        throw new UserError(t("err.too_long"));
      }
      showStage(body.stage || "uploaded", jobStatus === "queued");
      await sleep(delay, signal);
      delay = Math.min(600, delay * 1.5);
    }
  }

  // ---------------------------------------------------------------------------------------
  // The result view

  function showResult(result) {
    state.result = result;
    closePanel(false);
    hideSelection();
    el.overlay.replaceChildren();
    el.translations.replaceChildren();
    el.photo.src = state.photo.url;
    show(el.result);

    const width = result.width || state.photo.width;
    const height = result.height || state.photo.height;
    const regions = Array.isArray(result.regions) ? result.regions : [];
    const blocks = Array.isArray(result.text_blocks) ? result.text_blocks : [];

    const textBoxes = blocks.map((b) => polygonBounds(b.polygon));
    regions.forEach((region, index) => el.overlay.append(makeDot(region, index + 1, width, height, textBoxes)));
    blocks.forEach((block) => el.overlay.append(makeTextOutline(block, width, height)));
    blocks.forEach((block) => {
      if (block.translation) el.translations.append(makeTranslation(block, width, height));
    });

    fillTargetLanguages();
    const hasTranslations = blocks.some((b) => b.translation);
    const noModel = blocks.find((b) => b.translation_status === "no_model" && b.language);
    const modeText = el.modeButtons.find((b) => b.dataset.mode === "text");
    const modeTranslate = el.modeButtons.find((b) => b.dataset.mode === "translate");
    modeText.disabled = blocks.length === 0;
    modeText.title = blocks.length ? "" : t("hint.no_text");
    modeTranslate.disabled = !hasTranslations;
    modeTranslate.title = hasTranslations ? "" : noModel
      ? t("hint.no_model", { source: languageName(noModel.language), target: languageName(noModel.translation_language || el.targetLang.value) })
      : (blocks.length ? t("hint.no_translation", { language: languageName(el.targetLang.value) }) : t("hint.no_text"));
    setMode(state.mode === "translate" && !hasTranslations ? "search" : state.mode === "text" && !blocks.length ? "search" : state.mode, false);
    el.copyAll.disabled = blocks.length === 0;

    const parts = [tn("summary.regions", regions.length), tn("summary.blocks", blocks.length)];
    el.summary.textContent = regions.length || blocks.length
      ? t("summary.tap", { parts: parts.join(" · ") })
      : t("summary.nothing");
    if (Array.isArray(result.warnings) && result.warnings.length) {
      el.summary.textContent += ` (${result.warnings.join("; ")})`;
    }
    requestAnimationFrame(enlargeSmallTargets);
    const first = el.overlay.querySelector(state.mode === "search" ? "button" : ".text-box");
    if (first) first.focus({ preventScroll: true });
  }

  // ---------------------------------------------------------------------------------------
  // Modes: Search (dots, boxes, text outlines), Text (text only), Translate (drawn in place).

  function setMode(mode, focusFirst = true) {
    state.mode = mode;
    el.result.dataset.mode = mode;
    for (const button of el.modeButtons) button.setAttribute("aria-pressed", String(button.dataset.mode === mode));
    el.translations.hidden = mode !== "translate";
    el.stageHint.textContent = t(`hint.${mode}`);
    el.placeholder.textContent = t(`hint.${mode}`);
    updateTargetNote();
    if (!el.panel.hidden) closePanel(false);
    hideSelection();
    fitTranslations();
    requestAnimationFrame(enlargeSmallTargets);
    if (focusFirst) {
      const first = el.overlay.querySelector(mode === "search" ? ".dot" : ".text-box");
      if (first) first.focus({ preventScroll: true });
    }
  }

  function initModes() {
    for (const button of el.modeButtons) {
      button.addEventListener("click", () => { if (!button.disabled) setMode(button.dataset.mode, false); });
    }
  }

  // A text outline smaller than MIN_TARGET_PX gets a transparent margin (CSS ::after, sized by
  // these variables) so that a finger can still hit it; the drawn outline keeps the text's size.
  function enlargeSmallTargets() {
    for (const box of el.overlay.querySelectorAll(".text-box")) {
      box.style.setProperty("--hit-x", `${Math.max(0, (MIN_TARGET_PX - box.clientWidth) / 2)}px`);
      box.style.setProperty("--hit-y", `${Math.max(0, (MIN_TARGET_PX - box.clientHeight) / 2)}px`);
    }
  }

  // Percent positions keep every mark in place whatever size the photo is drawn at.
  function placeBox(node, box, width, height) {
    const [x1, y1, x2, y2] = box;
    node.style.left = `${(100 * x1) / width}%`;
    node.style.top = `${(100 * y1) / height}%`;
    node.style.width = `${(100 * (x2 - x1)) / width}%`;
    node.style.height = `${(100 * (y2 - y1)) / height}%`;
  }

  function makeDot(region, number, width, height, textBoxes) {
    const [cx, cy, side] = dotPosition(region.box, textBoxes, height);
    const dot = make("button", "dot", number);
    dot.type = "button";
    if (side) dot.classList.add(side);
    dot.style.left = `${(100 * cx) / width}%`;
    dot.style.top = `${(100 * cy) / height}%`;
    const what = region.label || t(region.kind === "salient" ? "region.salient" : "region.default");
    const count = Array.isArray(region.matches) ? region.matches.length : 0;
    dot.setAttribute("aria-label", tn("dot.aria", count, { n: number, what }));
    dot.dataset.kind = region.kind || "";
    dot.addEventListener("click", () => {
      selectMark(dot);
      showRegionBox(region.box);
      openRegionPanel(region, number);
    });
    return dot;
  }

  // A dot sits at its region's centre unless that covers a line of text (a sign is often the
  // salient thing): then it is pinned to the text's top or bottom edge and drawn just outside
  // it (CSS classes, so the gap holds in screen pixels at any zoom), inside its region if it can.
  function dotPosition(box, textBoxes, height) {
    const [x1, y1, x2, y2] = box;
    const cx = (x1 + x2) / 2;
    const cy = (y1 + y2) / 2;
    const margin = 0.02 * height;
    const covers = (y) => textBoxes.some((t) => cx >= t[0] && cx <= t[2] && y >= t[1] - margin && y <= t[3] + margin);
    if (!covers(cy)) return [cx, cy, null];
    const candidates = [];
    for (const t of textBoxes) {
      if (cx < t[0] || cx > t[2]) continue;
      candidates.push([t[1], "above", t[1] - 3 * margin], [t[3], "below", t[3] + 3 * margin]);
    }
    // Prefer an edge inside the region, then the nearer one; the probe point is where the dot is drawn.
    const cost = ([y, , probe]) => Math.abs(y - cy) + (y >= y1 && y <= y2 ? 0 : height) + (covers(probe) ? 2 * height : 0);
    const usable = candidates.filter(([, , probe]) => probe >= 0 && probe <= height).sort((a, b) => cost(a) - cost(b));
    return usable.length ? [cx, usable[0][0], usable[0][1]] : [cx, cy, null];
  }

  function polygonBounds(polygon) {
    const pts = Array.isArray(polygon) ? polygon.filter((p) => Array.isArray(p) && p.length >= 2) : [];
    if (!pts.length) return [0, 0, 0, 0];
    const xs = pts.map((p) => p[0]);
    const ys = pts.map((p) => p[1]);
    return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
  }

  function showRegionBox(box) {
    el.selection.classList.remove("searching");
    showSelection(box);
  }

  function photoSize() {
    return [(state.result && state.result.width) || state.photo.width, (state.result && state.result.height) || state.photo.height];
  }

  function showSelection(box) {
    const [width, height] = photoSize();
    state.box = box.map((v) => Math.round(v));
    el.selection.hidden = false;
    placeBox(el.selection, state.box, width, height);
  }

  function hideSelection() {
    state.box = null;
    el.selection.hidden = true;
  }

  // Geometry of a (possibly rotated) text polygon: centre, side lengths, angle.
  function polygonGeometry(polygon) {
    const pts = Array.isArray(polygon) ? polygon.filter((p) => Array.isArray(p) && p.length >= 2) : [];
    if (pts.length === 4) {
      const [p0, p1, , p3] = pts;
      const cx = pts.reduce((s, p) => s + p[0], 0) / 4;
      const cy = pts.reduce((s, p) => s + p[1], 0) / 4;
      const w = Math.hypot(p1[0] - p0[0], p1[1] - p0[1]);
      const h = Math.hypot(p3[0] - p0[0], p3[1] - p0[1]);
      const angle = Math.atan2(p1[1] - p0[1], p1[0] - p0[0]);
      if (w > 0 && h > 0) return { cx, cy, w, h, angle };
    }
    const xs = pts.map((p) => p[0]);
    const ys = pts.map((p) => p[1]);
    if (!xs.length) return { cx: 0, cy: 0, w: 0, h: 0, angle: 0 };
    const x1 = Math.min(...xs); const x2 = Math.max(...xs);
    const y1 = Math.min(...ys); const y2 = Math.max(...ys);
    return { cx: (x1 + x2) / 2, cy: (y1 + y2) / 2, w: x2 - x1, h: y2 - y1, angle: 0 };
  }

  function placePolygon(node, geometry, width, height) {
    const { cx, cy, w, h, angle } = geometry;
    node.style.left = `${(100 * (cx - w / 2)) / width}%`;
    node.style.top = `${(100 * (cy - h / 2)) / height}%`;
    node.style.width = `${(100 * w) / width}%`;
    node.style.height = `${(100 * h) / height}%`;
    if (Math.abs(angle) > 0.01) node.style.transform = `rotate(${angle}rad)`;
  }

  function makeTextOutline(block, width, height) {
    const button = make("button", "text-box");
    button.type = "button";
    placePolygon(button, polygonGeometry(block.polygon), width, height);
    // setAttribute on a non-URL attribute cannot run script; the text stays text.
    button.setAttribute("aria-label", block.language
      ? t("text.aria", { language: languageName(block.language), text: block.text || "" })
      : t("text.aria_unknown", { text: block.text || "" }));
    button.addEventListener("click", () => {
      selectMark(button);
      hideSelection();
      openTextPanel(block);
    });
    return button;
  }

  function selectMark(node) {
    for (const n of el.overlay.querySelectorAll(".selected")) n.classList.remove("selected");
    if (node) node.classList.add("selected");
    state.returnFocus = node;
  }

  // ---------------------------------------------------------------------------------------
  // Translations drawn in place: a box in the local background colour, the text fitted to it.

  function makeTranslation(block, width, height) {
    const geometry = polygonGeometry(block.polygon);
    const node = make("div", "translation");
    const span = make("span", "translation-text", block.translation);
    if (block.translation_language) span.lang = block.translation_language;
    node.append(span);
    placePolygon(node, geometry, width, height);
    const [r, g, b] = sampleBackground(geometry, width, height);
    node.style.backgroundColor = `rgb(${r}, ${g}, ${b})`;
    // WCAG relative luminance decides black or white text.
    const lum = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    node.style.color = lum > 140 ? "#111" : "#fff";
    return node;
  }

  // Median colour of the box and a thin ring around it: the background dominates a text box
  // (strokes cover a minority of its pixels), so the median lands on the background.
  function sampleBackground(geometry, width, height) {
    const canvas = state.photo.canvas;
    const sx = canvas.width / width;
    const sy = canvas.height / height;
    // The rotated box's axis-aligned extent plus a ring of 15% of its height: wider, it reaches
    // past a tight sign's border into the photo around the sign.
    const pad = Math.max(2, geometry.h * 0.15);
    const cos = Math.abs(Math.cos(geometry.angle || 0));
    const sin = Math.abs(Math.sin(geometry.angle || 0));
    const rx = (geometry.w * cos + geometry.h * sin) / 2 + pad;
    const ry = (geometry.w * sin + geometry.h * cos) / 2 + pad;
    const x1 = Math.max(0, Math.floor((geometry.cx - rx) * sx));
    const y1 = Math.max(0, Math.floor((geometry.cy - ry) * sy));
    const x2 = Math.min(canvas.width, Math.ceil((geometry.cx + rx) * sx));
    const y2 = Math.min(canvas.height, Math.ceil((geometry.cy + ry) * sy));
    if (x2 - x1 < 1 || y2 - y1 < 1) return [255, 255, 255];
    const data = canvas.getContext("2d", { willReadFrequently: true }).getImageData(x1, y1, x2 - x1, y2 - y1).data;
    const step = Math.max(1, Math.floor(Math.sqrt(data.length / 4 / 4000)));
    const channels = [[], [], []];
    const w = x2 - x1;
    for (let y = 0; y < y2 - y1; y += step) {
      for (let x = 0; x < w; x += step) {
        const i = (y * w + x) * 4;
        channels[0].push(data[i]); channels[1].push(data[i + 1]); channels[2].push(data[i + 2]);
      }
    }
    return channels.map((c) => {
      c.sort((a, b) => a - b);
      return c[Math.floor(c.length / 2)];
    });
  }

  // Largest font size at which the text fits its box (binary search on whole pixels).
  function fitTranslations() {
    if (el.translations.hidden) return;
    for (const node of el.translations.children) {
      const span = node.firstChild;
      let lo = 4;
      let hi = Math.max(lo, Math.floor(node.clientHeight * 0.9));
      while (lo < hi) {
        const mid = Math.ceil((lo + hi) / 2);
        span.style.fontSize = `${mid}px`;
        if (span.scrollWidth <= node.clientWidth + 1 && span.offsetHeight <= node.clientHeight + 1) lo = mid;
        else hi = mid - 1;
      }
      span.style.fontSize = `${lo}px`;
    }
  }

  function initResizeFitting() {
    new ResizeObserver(() => { fitTranslations(); enlargeSmallTargets(); }).observe(el.frame);
    const fit = () => { if (!el.panel.hidden) fitPanel(); };
    window.addEventListener("resize", fit);
    window.addEventListener("scroll", fit, { passive: true });
  }

  // ---------------------------------------------------------------------------------------
  // Details panel

  function openPanel(title) {
    el.panelTitle.textContent = title;
    el.panelBody.replaceChildren();
    el.panel.hidden = false;
    el.placeholder.hidden = true;
    document.body.classList.add("panel-open");
    fitPanel();
    return el.panelBody;
  }

  // Focus goes back to what opened the panel (a dot, a text outline, a selection corner).
  function closePanel(restoreFocus = true) {
    const opener = state.returnFocus;
    el.panel.hidden = true;
    el.placeholder.hidden = false;
    document.body.classList.remove("panel-open");
    selectMark(null);
    if (restoreFocus && opener && opener.isConnected) opener.focus({ preventScroll: true });
  }

  // Side panel (wide screens): never taller than the window below its top edge, so its end
  // (and its scroll bar) stays on screen whether or not the page is scrolled.
  function fitPanel() {
    if (!window.matchMedia("(min-width: 900px)").matches) {
      el.panel.style.maxHeight = "";
      return;
    }
    const top = Math.max(el.panel.getBoundingClientRect().top, 0);
    el.panel.style.maxHeight = `${Math.max(200, window.innerHeight - top - 16)}px`;
  }

  function focusPanel() {
    el.panel.focus({ preventScroll: true });
  }

  function openRegionPanel(region, number) {
    const what = region.label || t(region.kind === "salient" ? "region.salient" : "region.default");
    const body = openPanel(`${number}. ${what}`);
    const list = make("div", "panel-matches");
    renderMatches(list, closeMatches(region.matches, region, state.result));
    // The words go above the matches, so that the re-ranked list is in view right below them.
    body.append(refineForm(region.box, list), list);
    focusPanel();
  }

  // "Add words to this search" (multisearch): the same box again with words; the server
  // re-ranks the photo's shortlist by them. The matches below the form are replaced.
  function refineForm(box, list) {
    const form = make("form", "refine");
    form.setAttribute("role", "search");
    const input = make("input", "text-input");
    input.type = "search";
    input.name = "text";
    input.maxLength = MAX_QUERY_CHARS;
    input.autocomplete = "off";
    input.enterKeyHint = "search";
    input.placeholder = t("refine.placeholder");
    input.setAttribute("aria-label", t("refine.label"));
    const button = make("button", "button small", t("refine.button"));
    button.type = "submit";
    const note = make("p", "hint small refine-note");
    note.setAttribute("role", "status");
    form.append(make("p", "refine-title", t("refine.label")), input, button, note);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const words = input.value.trim();
      if (!words) {
        note.textContent = t("search.empty");
        input.focus();
        return;
      }
      note.textContent = t("select.searching");
      const generation = ++state.generation;
      try {
        const { matches, answer } = await requestSearch(box, words);
        if (generation !== state.generation) return;
        list.replaceChildren();
        renderMatches(list, closeMatches(matches, answer));
        note.textContent = t("refine.showing", { query: words });
      } catch (err) {
        if (generation !== state.generation) return;
        note.textContent = err instanceof UserError ? err.message : t("err.something");
      }
    });
    return form;
  }

  // The search field of the start screen: the catalog by words alone.
  function initCatalogSearch() {
    el.catalogSearch.addEventListener("submit", async (e) => {
      e.preventDefault();
      const words = el.catalogSearchInput.value.trim();
      el.catalogResults.hidden = false;
      el.catalogResultsBody.replaceChildren();
      if (!words) {
        el.catalogResultsTitle.textContent = t("catalog_search.label");
        el.catalogResultsBody.append(make("p", "hint small", t("search.empty")));
        el.catalogSearchInput.focus();
        return;
      }
      el.catalogResultsTitle.textContent = t("catalog_search.results", { query: words });
      const status = make("p", "searching-text", t("select.searching"));
      status.setAttribute("role", "status");
      el.catalogResultsBody.append(status);
      const generation = ++state.generation;
      let response;
      try {
        response = await postJson("/api/v1/search", { text: words });
      } catch (err) {
        response = { status: 0, body: null, message: err.message };
      }
      if (generation !== state.generation) return;
      el.catalogResultsBody.replaceChildren();
      if (response.status !== 200) {
        el.catalogResultsBody.append(make("p", "hint small", response.message || errorMessage(response.status, response.body)));
        return;
      }
      renderMatches(el.catalogResultsBody, closeMatches(matchesOf(response.body), response.body));
    });
  }

  // Only matches at or above the score floor the server reports (the retrieval calibration):
  // `no_close_match` says there is none; `match_floor` (or `min_score`) is the floor itself,
  // on the region, the search answer or the whole result. Without either, the server's own
  // cut (index.min_score) already applied.
  function closeMatches(matches, ...sources) {
    const list = Array.isArray(matches) ? matches : [];
    let floor = null;
    for (const source of sources) {
      if (!source || typeof source !== "object") continue;
      if (source.no_close_match === true) return [];
      for (const key of ["match_floor", "min_score"]) {
        if (floor === null && typeof source[key] === "number") floor = source[key];
      }
    }
    return floor === null ? list : list.filter((m) => typeof m.score === "number" && m.score >= floor);
  }

  function renderMatches(body, matches) {
    const sorted = [...matches].sort((a, b) => (b.score || 0) - (a.score || 0));
    if (!sorted.length) {
      const empty = make("div", "empty");
      empty.append(make("p", "empty-title", t("matches.none_title")));
      empty.append(make("p", "hint small", t("matches.none_hint")));
      body.append(empty);
      return;
    }
    const list = make("ol", "matches");
    list.setAttribute("aria-label", t("matches.aria"));
    for (const match of sorted) list.append(makeMatch(match));
    body.append(list);
  }

  function makeMatch(match) {
    const item = make("li", "match");
    const href = safeUrl(match.url);
    const container = href ? make("a", "match-link") : make("div", "match-link");
    if (href) {
      container.href = href;
      container.target = "_blank";
      container.rel = "noopener noreferrer";
    }
    const thumb = make("img", "match-thumb");
    thumb.alt = "";
    thumb.loading = "lazy";
    thumb.decoding = "async";
    const src = safeUrl(match.thumbnail_url);
    if (src) thumb.src = src;
    else thumb.classList.add("no-thumb");
    thumb.addEventListener("error", () => { thumb.removeAttribute("src"); thumb.classList.add("no-thumb"); });
    const text = make("div", "match-text");
    const title = make("span", "match-title", match.title || t("match.item", { id: match.item_id }));
    title.dir = "auto";
    const score = typeof match.score === "number" ? match.score : 0;
    const scoreLine = make("span", "match-score", t("match.similarity", { score: score.toFixed(2) }));
    const meter = make("meter", "match-meter");
    meter.min = 0; meter.max = 1; meter.value = Math.max(0, Math.min(1, score));
    meter.setAttribute("aria-hidden", "true");
    text.append(title, scoreLine, meter);
    container.append(thumb, text);
    item.append(container);
    return item;
  }

  function openTextPanel(block) {
    const body = openPanel(t("panel.text"));
    const original = make("p", "text-original", block.text || "");
    original.dir = "auto";
    if (block.language) original.lang = block.language;
    const conf = typeof block.language_confidence === "number"
      ? ` · ${t("text.sure", { pct: Math.round(block.language_confidence * 100) })}` : "";
    const language = `${languageName(block.language)}${block.language ? ` (${block.language})` : ""}`;
    const meta = make("p", "text-meta", `${t("text.language", { language })}${conf}`);
    body.append(meta, original);

    const target = block.translation_language || el.targetLang.value;
    body.append(make("h3", "text-heading", t("text.translation_heading", { language: languageName(target) })));
    if (block.translation) {
      const translated = make("p", "text-translation", block.translation);
      translated.dir = "auto";
      translated.lang = target;
      body.append(translated);
    } else {
      body.append(...untranslatedNote(block, target));
    }

    const actions = make("div", "panel-actions");
    const copyText = make("button", "button small", t("text.copy"));
    copyText.type = "button";
    copyText.addEventListener("click", () => copy(block.text || ""));
    actions.append(copyText);
    if (block.translation) {
      const copyTranslation = make("button", "button small", t("text.copy_translation"));
      copyTranslation.type = "button";
      copyTranslation.addEventListener("click", () => copy(block.translation));
      actions.append(copyTranslation);
    }
    actions.append(listenButton(block.text || "", block.language, "text.listen"));
    if (block.translation) actions.append(listenButton(block.translation, target, "text.listen_translation"));
    const copyAll = make("button", "button small", t("text.copy_all"));
    copyAll.type = "button";
    copyAll.addEventListener("click", copyAllText);
    actions.append(copyAll);
    body.append(actions);
    body.append(searchTextButton(block.text || ""));
    focusPanel();
  }

  // Why a block has no translation, from the server's status code, in the viewer's language;
  // for a missing model also the command that installs it (an operator's, not the viewer's).
  const STATUS_MESSAGES = {
    no_model: "status.no_model", same_language: "status.same_language", unknown_language: "status.unknown_language",
    number: "status.number", no_words: "status.no_words", too_short: "status.too_short", name: "status.name",
    same_text: "status.same_text", failed: "status.failed", unknown_target: "status.unknown_target",
  };

  function untranslatedNote(block, target) {
    const key = STATUS_MESSAGES[block.translation_status];
    const source = block.language;
    const note = make("p", "text-note", key
      ? t(key, { source: languageName(source), target: languageName(target) })
      : block.translation_note || t("text.no_translation"));
    note.dataset.status = block.translation_status || "";
    if (block.translation_status !== "no_model" || !source || !target) return [note];
    const how = make("div", "operator-hint");
    how.append(make("p", "operator-title", t("operator.how")));
    const fetches = missingPairs(source, target).map((pair) => `--fetch translate:${pair}`).join(" ");
    how.append(make("code", "operator-command", `lens models prepare ${fetches}`));
    how.append(make("p", "hint small", t("operator.offline")));
    return [note, how];
  }

  // Listen: the browser's own speech synthesis, in the text's language, when it has a voice
  // for it; otherwise the button says why it cannot.
  function voiceFor(lang) {
    if (!lang || !("speechSynthesis" in window)) return null;
    const base = String(lang).toLowerCase().split(/[-_]/)[0];
    return window.speechSynthesis.getVoices().find((v) => v.lang.toLowerCase().split(/[-_]/)[0] === base) || null;
  }

  function listenButton(text, lang, label) {
    const wrap = make("span", "action");
    const button = make("button", "button small listen", t(label));
    button.type = "button";
    button.dataset.lang = lang || "";
    const note = make("span", "action-note");
    note.id = `note-${Math.random().toString(36).slice(2)}`;
    const update = () => {
      const voice = voiceFor(lang);
      button.disabled = !voice || !text;
      note.textContent = voice ? "" : t("text.no_voice", { language: languageName(lang) });
      note.hidden = !!voice;
      if (voice) button.removeAttribute("aria-describedby");
      else button.setAttribute("aria-describedby", note.id);
    };
    update();
    if ("speechSynthesis" in window) window.speechSynthesis.addEventListener("voiceschanged", update, { once: true });
    button.addEventListener("click", () => {
      const synth = window.speechSynthesis;
      if (synth.speaking) {
        synth.cancel();
        return;
      }
      const utterance = new SpeechSynthesisUtterance(text);
      utterance.voice = voiceFor(lang);
      utterance.lang = utterance.voice ? utterance.voice.lang : lang;
      utterance.onend = utterance.onerror = () => { button.textContent = t(label); };
      button.textContent = t("text.stop");
      synth.speak(utterance);
    });
    wrap.append(button, note);
    return wrap;
  }

  // "Search this text": the catalog by words, where the server offers it (its OpenAPI document
  // lists a `text` field for /api/v1/search); otherwise disabled, with the reason shown.
  function serverSearchesText() {
    if (!state.textSearch) {
      state.textSearch = getJson("/api/v1/openapi.json", new AbortController().signal).then(({ status, body }) => {
        if (status !== 200 || !body) return false;
        const content = (((body.paths || {})["/api/v1/search"] || {}).post || {}).requestBody;
        const schema = content && content.content && content.content["application/json"];
        return !!(schema && schema.schema && schema.schema.properties && schema.schema.properties.text);
      }).catch(() => false);
    }
    return state.textSearch;
  }

  function searchTextButton(text) {
    const wrap = make("div", "action search-text-action");
    const button = make("button", "button small", t("text.search_this"));
    button.type = "button";
    button.disabled = true;
    const note = make("span", "action-note", t("text.search_unavailable"));
    note.id = `note-${Math.random().toString(36).slice(2)}`;
    button.setAttribute("aria-describedby", note.id);
    serverSearchesText().then((yes) => {
      if (!yes || !text) return;
      button.disabled = false;
      note.hidden = true;
      button.removeAttribute("aria-describedby");
    });
    button.addEventListener("click", () => searchText(text));
    wrap.append(button, note);
    return wrap;
  }

  async function searchText(text) {
    const body = openPanel(t("text.search_this"));
    body.append(make("p", "searching-text", t("select.searching")));
    const response = await postJson("/api/v1/search", { text });
    body.replaceChildren();
    if (response.status !== 200) {
      body.append(make("p", "hint small", errorMessage(response.status, response.body)));
      return;
    }
    renderMatches(body, closeMatches(matchesOf(response.body), response.body));
    focusPanel();
  }

  async function copy(text) {
    try {
      await navigator.clipboard.writeText(text);
      toast(t("toast.copied"));
    } catch {
      // Older browsers or no permission: the selection-based fallback.
      const area = make("textarea", "visually-hidden");
      area.value = text;
      document.body.append(area);
      area.select();
      const ok = document.execCommand && document.execCommand("copy");
      area.remove();
      toast(t(ok ? "toast.copied" : "err.copy_blocked"));
    }
  }

  function copyAllText() {
    const blocks = (state.result && state.result.text_blocks) || [];
    copy(blocks.map((b) => b.text || "").filter(Boolean).join("\n\n"));
  }

  // ---------------------------------------------------------------------------------------
  // Drag a box on the photo -> search that crop

  function initBoxSelection() {
    let start = null;
    el.overlay.addEventListener("pointerdown", (e) => {
      if (e.button !== 0 || e.target.closest("button") || !state.result || state.mode !== "search") return;
      e.preventDefault();
      const rect = el.frame.getBoundingClientRect();
      start = { x: e.clientX - rect.left, y: e.clientY - rect.top, rect, moved: false };
      el.overlay.setPointerCapture(e.pointerId);
    });
    el.overlay.addEventListener("pointermove", (e) => {
      if (!start) return;
      const box = dragBox(start, e);
      if (!start.moved && box.w < MIN_DRAG_PX && box.h < MIN_DRAG_PX) return;
      start.moved = true;
      el.selection.hidden = false;
      el.selection.classList.add("drawing");
      el.selection.style.left = `${box.x}px`;
      el.selection.style.top = `${box.y}px`;
      el.selection.style.width = `${box.w}px`;
      el.selection.style.height = `${box.h}px`;
    });
    const finish = (e) => {
      if (!start) return;
      const box = dragBox(start, e);
      const wasDrag = start.moved && box.w >= MIN_DRAG_PX && box.h >= MIN_DRAG_PX;
      const rect = start.rect;
      start = null;
      el.selection.classList.remove("drawing");
      if (!wasDrag) {
        hideSelection();
        if (!el.panel.hidden) closePanel(false);
        return;
      }
      const [width, height] = photoSize();
      const imageBox = [
        (box.x / rect.width) * width, (box.y / rect.height) * height,
        ((box.x + box.w) / rect.width) * width, ((box.y + box.h) / rect.height) * height,
      ];
      showSelection(imageBox);
      searchBox(state.box);
    };
    el.overlay.addEventListener("pointerup", finish);
    el.overlay.addEventListener("pointercancel", (e) => { if (start) { start.moved = false; finish(e); } });
    initHandles();
  }

  // Corner handles resize the box shown (a dragged one or a dot's region); letting go searches
  // the new box. Arrow keys move a focused corner.
  function initHandles() {
    let drag = null;
    let keyTimer = 0;
    const corners = { nw: [0, 1], ne: [2, 1], sw: [0, 3], se: [2, 3] };
    const moveCorner = (corner, x, y) => {
      const [width, height] = photoSize();
      const rect = el.frame.getBoundingClientRect();
      const minW = (MIN_DRAG_PX / rect.width) * width;
      const minH = (MIN_DRAG_PX / rect.height) * height;
      const box = [...state.box];
      const [ix, iy] = corners[corner];
      box[ix] = Math.max(0, Math.min(width, x));
      box[iy] = Math.max(0, Math.min(height, y));
      // A corner never crosses its opposite one.
      if (ix === 0) box[0] = Math.min(box[0], box[2] - minW); else box[2] = Math.max(box[2], box[0] + minW);
      if (iy === 1) box[1] = Math.min(box[1], box[3] - minH); else box[3] = Math.max(box[3], box[1] + minH);
      showSelection(box);
    };
    for (const handle of el.selection.querySelectorAll(".handle")) {
      handle.addEventListener("pointerdown", (e) => {
        if (e.button !== 0 || !state.box) return;
        e.preventDefault();
        e.stopPropagation();
        drag = { corner: handle.dataset.corner, rect: el.frame.getBoundingClientRect(), moved: false };
        handle.setPointerCapture(e.pointerId);
      });
      handle.addEventListener("pointermove", (e) => {
        if (!drag) return;
        const [width, height] = photoSize();
        drag.moved = true;
        moveCorner(drag.corner, ((e.clientX - drag.rect.left) / drag.rect.width) * width,
          ((e.clientY - drag.rect.top) / drag.rect.height) * height);
      });
      const release = () => {
        if (!drag) return;
        const moved = drag.moved;
        drag = null;
        if (moved && state.box) {
          state.returnFocus = handle;
          searchBox(state.box);
        }
      };
      handle.addEventListener("pointerup", release);
      handle.addEventListener("pointercancel", release);
      handle.addEventListener("keydown", (e) => {
        const step = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }[e.key];
        if (!step || !state.box) return;
        e.preventDefault();
        const [width, height] = photoSize();
        const [ix, iy] = corners[handle.dataset.corner];
        moveCorner(handle.dataset.corner, state.box[ix] + step[0] * KEY_NUDGE * width, state.box[iy] + step[1] * KEY_NUDGE * height);
        clearTimeout(keyTimer);
        keyTimer = setTimeout(() => {
          state.returnFocus = handle;
          searchBox(state.box, false);
        }, KEY_SEARCH_DELAY_MS);
      });
    }
  }

  function dragBox(start, e) {
    const x = Math.max(0, Math.min(start.rect.width, e.clientX - start.rect.left));
    const y = Math.max(0, Math.min(start.rect.height, e.clientY - start.rect.top));
    return {
      x: Math.min(start.x, x), y: Math.min(start.y, y),
      w: Math.abs(x - start.x), h: Math.abs(y - start.y),
    };
  }

  async function searchBox(box, moveFocus = true) {
    const opener = state.returnFocus && state.returnFocus.classList.contains("handle") ? state.returnFocus : null;
    selectMark(null);
    state.returnFocus = opener;
    const body = openPanel(t("select.title"));
    const status = make("p", "searching-text", t("select.searching"));
    status.setAttribute("role", "status");
    body.append(status);
    el.selection.classList.add("searching");
    const generation = ++state.generation;
    try {
      const { matches, answer } = await requestSearch(box);
      if (generation !== state.generation) return;
      body.replaceChildren();
      const list = make("div", "panel-matches");
      renderMatches(list, closeMatches(matches, answer, state.result));
      body.append(refineForm(box, list), list);
    } catch (err) {
      if (generation !== state.generation) return;
      body.replaceChildren();
      const failed = make("div", "empty");
      failed.append(make("p", "empty-title", t("select.failed")));
      failed.append(make("p", "hint small", err instanceof UserError ? err.message : t("err.something")));
      const retry = make("button", "button small", t("select.retry"));
      retry.type = "button";
      retry.addEventListener("click", () => searchBox(box));
      failed.append(retry);
      body.append(failed);
    } finally {
      if (generation === state.generation) el.selection.classList.remove("searching");
    }
    if (moveFocus) focusPanel();
  }

  // By job id when the server still holds the upload (nothing sent twice); otherwise (a cached
  // answer has no job, or the upload expired) the photo goes again with the box.
  async function requestSearch(box, text) {
    const words = text ? { text } : {};
    if (state.jobId) {
      const response = await postJson("/api/v1/search", { job_id: state.jobId, box, ...words });
      if (response.status === 200) return { matches: matchesOf(response.body), answer: response.body };
      if (response.status !== 404 && response.status !== 410) {
        throw new UserError(errorMessage(response.status, response.body));
      }
    }
    const form = new FormData();
    form.append("image", state.photo.blob, "photo");
    form.append("box", JSON.stringify(box));
    if (text) form.append("text", text);
    let response;
    try {
      response = await fetch("/api/v1/search", { method: "POST", body: form, headers: { Accept: "application/json" } });
    } catch {
      throw new UserError(errorMessage(0, null));
    }
    const body = parseJson(await response.text());
    if (response.status !== 200) throw new UserError(errorMessage(response.status, body));
    return { matches: matchesOf(body), answer: body };
  }

  async function postJson(url, payload) {
    try {
      const response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(payload),
      });
      return { status: response.status, body: parseJson(await response.text()) };
    } catch {
      throw new UserError(errorMessage(0, null));
    }
  }

  function matchesOf(body) {
    if (body && Array.isArray(body.matches)) return body.matches;
    throw new UserError(t("err.no_matches_list"));
  }

  // ---------------------------------------------------------------------------------------
  // Wiring

  function startOver() {
    cancelInFlight();
    state.generation += 1;
    closePanel(false);
    show(el.picker);
    el.fileInput.focus();
  }

  // After a change of UI language: words drawn from data are drawn again.
  function rerender() {
    if (state.result && !el.result.hidden) showResult(state.result);
  }

  function init() {
    initLanguagePicker();
    // Catalogs load while the page is wired; a photo brought in meanwhile waits for them.
    state.i18nReady = initUiLanguagePicker();
    initInputs();
    initModes();
    initResizeFitting();
    initBoxSelection();
    initCatalogSearch();
    el.cancel.addEventListener("click", () => (state.result ? (cancelInFlight(), show(el.result)) : startOver()));
    el.retry.addEventListener("click", () => { if (state.retry) state.retry(); });
    el.errorNewPhoto.addEventListener("click", startOver);
    el.newPhoto.addEventListener("click", startOver);
    el.copyAll.addEventListener("click", copyAllText);
    el.panelClose.addEventListener("click", () => closePanel());
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && !el.panel.hidden) closePanel();
    });
    el.photo.addEventListener("load", fitTranslations);
    state.i18nReady.then(() => document.body.classList.add("ready"));
  }

  init();
})();
