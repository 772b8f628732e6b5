// Floe's console: one page, no dependencies, talks only to the node that served it.
// Every view polls its JSON route once a second while it is shown. The admin token lives in
// the `token` variable below and nowhere else (no storage, no cookie).
"use strict";

(function () {
  const POLL_MS = 1000;
  const VIEWS = ["overview", "rates", "segments", "cluster", "decode", "admin"];
  let token = null;
  let view = "overview";
  let timer = null;
  let rates = { samples: [], totals: { ids: {}, requests: {} }, capacity: 900 };

  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  // Integers above 2^53 (IDs, marks near the end of the space) keep every digit as BigInt.
  function parseJson(text) {
    return JSON.parse(text, (key, value, ctx) => {
      if (typeof value === "number" && !Number.isSafeInteger(value) && Number.isInteger(value)
          && ctx && /^-?\d+$/.test(ctx.source)) {
        return BigInt(ctx.source);
      }
      return value;
    });
  }

  class HttpError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (token && (path.startsWith("/admin/"))) headers.Authorization = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", cache: "no-store", redirect: "error",
    });
    const text = await res.text();
    let data = null;
    try { data = text ? parseJson(text) : null; } catch (_) { data = null; }
    if (!res.ok) {
      const e = data && data.error ? data.error : { code: String(res.status), message: text };
      throw new HttpError(res.status, e.code, e.message);
    }
    return data;
  }

  function show(v) {
    if (v === null || v === undefined) return "—";
    if (typeof v === "bigint") return v.toString();
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(2);
    return String(v);
  }
  const iso = (ms) => (ms === null || ms === undefined ? "—" : new Date(Number(ms)).toISOString());
  function duration(s) {
    s = Math.floor(Number(s));
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    if (d > 0) return `${d} d ${h} h`;
    if (h > 0) return `${h} h ${m} min`;
    if (m > 0) return `${m} min ${s % 60} s`;
    return `${s} s`;
  }
  function get(obj, path) {
    return path.split(".").reduce((o, k) => (o === null || o === undefined ? undefined : o[k]), obj);
  }
  function set(el, text) { if (el && el.textContent !== text) el.textContent = text; }
  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }
  function fill(tbody, rows) {
    const frag = document.createDocumentFragment();
    for (const cells of rows) {
      const tr = document.createElement("tr");
      cells.forEach((c, i) => {
        if (i === 0) {
          const th = document.createElement("th");
          th.scope = "row";
          th.textContent = c;
          tr.appendChild(th);
        } else cell(tr, c, typeof c === "string" && c.length > 40 ? "wrap" : "");
      });
      frag.appendChild(tr);
    }
    tbody.replaceChildren(frag);
  }

  // ---- header and overview: /v1/info -------------------------------------------------------
  function renderInfo(info) {
    const badge = $("#ready-badge");
    set(badge, info.ready ? "ready" : "not ready");
    badge.className = "badge " + (info.ready ? "ok" : "bad");
    set($("#status-text"), info.ready ? "" : show(info.not_ready_reason));
    set($("#node-name"), info.listen ? info.listen.http : "");
    const fields = {
      identity: Object.entries(info.identity || {}).map(([k, v]) => `${k}=${show(v)}`).join(" "),
      instance: info.instance,
      version: info.version,
      uptime: duration(Number(info.uptime_ms) / 1000),
      listen: info.listen ? `tcp ${info.listen.tcp}, http ${info.listen.http}` : "—",
      modes: Object.entries(info.modes || {}).filter(([, on]) => on).map(([m]) => m).join(", "),
      ready: info.ready,
      not_ready_reason: info.not_ready_reason,
      layout: info.layout,
      "capacity.ids_per_second_per_node": get(info, "capacity.ids_per_second_per_node"),
      "capacity.ids_per_tick_per_lane": get(info, "capacity.ids_per_tick_per_lane"),
      "capacity.lanes": get(info, "capacity.lanes"),
      "capacity.nodes": get(info, "capacity.nodes"),
      "capacity.tick_ms": show(get(info, "capacity.tick_ms")) + " ms",
      layout_end: info.layout_end,
      layout_seconds_left: show(info.layout_seconds_left) + " s (" + duration(info.layout_seconds_left) + ")",
      layout_warning: info.layout_warning,
      "clock.wall_ms": iso(info.clock.wall_ms),
      "clock.logical_ms": Number(info.clock.logical_ms) === 0 ? "no ID issued yet" : iso(info.clock.logical_ms),
      "clock.behind_ms": info.clock.behind_ms,
      "clock.drift_ms": info.clock.drift_ms,
      high_water_ms: iso(info.high_water_ms),
      "clock.rollback_exceeded": info.clock.rollback_exceeded,
      "lease.worker_id": info.lease ? info.lease.worker_id : "static identity",
      "lease.epoch": info.lease ? info.lease.epoch : null,
      "lease.fence_in_s": info.lease
        ? (info.lease.fence_in_ms === null ? "never expires" : (Number(info.lease.fence_in_ms) / 1000).toFixed(1))
        : null,
      "lease.status": info.lease ? info.lease.status : "no registry",
      "lease.registry": info.lease ? info.lease.registry : "static",
    };
    for (const [k, v] of Object.entries(fields)) set($(`[data-field="${k}"]`), show(v));
  }

  // ---- rates: /v1/console/rates -------------------------------------------------------------
  const sum = (o) => Object.values(o || {}).reduce((a, b) => a + Number(b), 0);
  function mergeRates(r) {
    const last = rates.samples.length ? rates.samples[rates.samples.length - 1].unix_ms : 0;
    const fresh = r.samples.filter((s) => s.unix_ms > last);
    rates.samples = rates.samples.concat(fresh).slice(-r.capacity);
    rates.totals = r.totals;
    rates.capacity = r.capacity;
  }
  function renderRates() {
    const latest = rates.samples[rates.samples.length - 1];
    set($('[data-rate="requests"]'), latest ? show(sum(latest.requests_per_second)) : "—");
    set($('[data-rate="ids"]'), latest ? show(sum(latest.ids_per_second)) : "—");
    set($('[data-rate="p50"]'), latest ? show(latest.p50_ms) : "—");
    set($('[data-rate="p99"]'), latest ? show(latest.p99_ms) : "—");
    const keys = new Set([...Object.keys(rates.totals.ids), ...Object.keys(latest ? latest.ids_per_second : {})]);
    const rows = [...keys].sort().map((k) => [`IDs ${k}`, show(latest ? latest.ids_per_second[k] : null), show(rates.totals.ids[k])]);
    const protos = new Set([...Object.keys(rates.totals.requests), ...Object.keys(latest ? latest.requests_per_second : {})]);
    for (const p of [...protos].sort()) {
      rows.push([`requests ${p}`, show(latest ? latest.requests_per_second[p] : null), show(rates.totals.requests[p])]);
    }
    const tbody = $("#rates-table tbody");
    fill(tbody, rows);
    $$("tr", tbody).forEach((tr, i) => { tr.dataset.series = rows[i][0]; });
    drawChart();
  }
  function drawChart() {
    const canvas = $("#rate-chart");
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (!w || !h) return;
    if (canvas.width !== Math.round(w * ratio)) { canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio); }
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, w, h);
    const style = getComputedStyle(document.documentElement);
    const fg = style.getPropertyValue("--muted").trim() || "#555";
    const series = [
      { name: "IDs/s", color: style.getPropertyValue("--accent").trim() || "#1d4ed8", value: (s) => sum(s.ids_per_second) },
      { name: "requests/s", color: style.getPropertyValue("--ok").trim() || "#116329", value: (s) => sum(s.requests_per_second) },
    ];
    const pad = { l: 56, r: 8, t: 10, b: 22 };
    const n = rates.capacity, samples = rates.samples;
    const max = Math.max(1, ...samples.flatMap((s) => series.map((x) => x.value(s))));
    g.font = "12px system-ui, sans-serif";
    g.fillStyle = fg; g.strokeStyle = fg; g.lineWidth = 0.5;
    for (let i = 0; i <= 4; i++) {
      const y = pad.t + (h - pad.t - pad.b) * (i / 4);
      g.beginPath(); g.moveTo(pad.l, y); g.lineTo(w - pad.r, y); g.stroke();
      g.fillText(Math.round(max * (1 - i / 4)).toString(), 4, y + 4);
    }
    g.fillText("−15 min", pad.l, h - 6);
    g.fillText("now", w - pad.r - 24, h - 6);
    const x = (i) => pad.l + (w - pad.l - pad.r) * (i / Math.max(1, n - 1));
    const y = (v) => pad.t + (h - pad.t - pad.b) * (1 - v / max);
    const offset = n - samples.length;
    series.forEach((s, k) => {
      g.strokeStyle = s.color; g.lineWidth = 1.5; g.beginPath();
      samples.forEach((p, i) => { const fn = i ? "lineTo" : "moveTo"; g[fn](x(offset + i), y(s.value(p))); });
      g.stroke();
      g.fillStyle = s.color; g.fillText(s.name, pad.l + 8 + k * 90, pad.t + 12);
    });
    const latest = samples[samples.length - 1];
    set($("#rate-caption"), latest
      ? `${samples.length} samples; now ${show(sum(latest.ids_per_second))} IDs/s and ${show(sum(latest.requests_per_second))} requests/s; peak ${show(max)} per second.`
      : "No samples yet.");
  }

  // ---- segments: /v1/console/segments -------------------------------------------------------
  const range = (r) => (r ? `${show(r.start)}–${show(r.end)}` : "—");
  function renderSegments(data) {
    set($("#segments-note"), data.enabled ? `${data.tags.length} tags in the store.` : "Segment mode is off on this node (segment.enabled = false).");
    const cache = data.tags.filter((t) => t.buffer).map((t) => {
      const b = t.buffer;
      return [t.tag, range(b.current), show(b.next_id), b.next_range ? range(b.next_range) : (b.next_ready ? "ready" : "not loaded"),
        b.fill_percent.toFixed(1), show(b.remaining), show(b.step),
        b.step_history.map((c) => show(c.step)).join(" → ") || "—",
        b.last_refill_ms === null ? "—" : b.last_refill_ms.toFixed(2), show(b.refills), show(b.refill_errors), show(b.last_error)];
    });
    fill($("#cache-table tbody"), cache);
    fill($("#db-table tbody"), data.tags.map((t) => [t.tag, show(t.max_id), show(t.step)]));
    const names = $("#tag-names");
    names.replaceChildren(...data.tags.map((t) => { const o = document.createElement("option"); o.value = t.tag; return o; }));
  }

  // ---- cluster: /v1/console/cluster ---------------------------------------------------------
  function renderCluster(data) {
    set($('[data-cluster="registry"]'), show(data.registry));
    set($('[data-cluster="namespace"]'), show(data.namespace));
    set($('[data-cluster="pool_size"]'), show(data.pool_size));
    fill($("#cluster-table tbody"), data.holders.map((h) => [show(h.worker_id), show(h.held), show(h.owner), show(h.epoch),
      h.expires_in_ms === null ? "—" : (Number(h.expires_in_ms) / 1000).toFixed(1), iso(h.high_water_ms), h.this_node ? "this node" : ""]));
  }

  // ---- polling ------------------------------------------------------------------------------
  async function poll() {
    try {
      const info = await api("GET", "/v1/info");
      renderInfo(info);
      if (view === "rates") {
        const since = rates.samples.length ? rates.samples[rates.samples.length - 1].unix_ms : 0;
        mergeRates(await api("GET", `/v1/console/rates?since=${since}`));
        renderRates();
      } else if (view === "segments") {
        renderSegments(await api("GET", "/v1/console/segments"));
      } else if (view === "cluster") {
        renderCluster(await api("GET", "/v1/console/cluster"));
      }
      document.body.dataset.updated = String(Date.now());
    } catch (e) {
      const badge = $("#ready-badge");
      set(badge, "unreachable");
      badge.className = "badge bad";
      set($("#status-text"), e.message);
    }
  }
  function schedule() {
    clearTimeout(timer);
    poll().finally(() => { timer = setTimeout(schedule, POLL_MS); });
  }

  // ---- navigation ---------------------------------------------------------------------------
  function viewOf(path) {
    const m = /^\/console\/([a-z]+)\/?$/.exec(path);
    return m && VIEWS.includes(m[1]) ? m[1] : "overview";
  }
  function go(v, push) {
    view = v;
    for (const s of $$("[data-view]")) s.hidden = s.dataset.view !== v;
    for (const a of $$("[data-nav]")) {
      if (a.dataset.nav === v) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    }
    document.title = `Floe console · ${v[0].toUpperCase()}${v.slice(1)}`;
    if (push) history.pushState({ v }, "", `/console/${v}`);
    document.body.dataset.view = v;
    schedule();
  }

  // ---- decode -------------------------------------------------------------------------------
  async function decode(ev) {
    ev.preventDefault();
    const text = $("#decode-id").value.trim();
    const out = $("#decode-result");
    set($("#decode-error"), "");
    out.replaceChildren();
    try {
      const d = await api("GET", `/v1/decode/${encodeURIComponent(text)}`);
      const rows = [["id", d.id], ["id_hex", d.id_hex], ["time", d.time], ["unix_ms", d.unix_ms], ["layout", d.layout]];
      for (const [k, v] of Object.entries(d.fields || {})) rows.push([`field ${k}`, v]);
      for (const [k, v] of Object.entries(d)) {
        if (!["id", "id_hex", "time", "unix_ms", "layout", "fields"].includes(k)) rows.push([k, typeof v === "object" && v !== null ? JSON.stringify(v) : v]);
      }
      for (const [k, v] of rows) {
        const dt = document.createElement("dt"); dt.textContent = k;
        const dd = document.createElement("dd"); dd.textContent = show(v); dd.dataset.decoded = k;
        out.append(dt, dd);
      }
    } catch (e) {
      set($("#decode-error"), e.message);
    }
  }

  // ---- admin --------------------------------------------------------------------------------
  function adminResult(text, bad) {
    const p = $("#admin-result");
    p.className = bad ? "error" : "";
    p.textContent = text;
  }
  async function useToken(ev) {
    ev.preventDefault();
    token = $("#admin-token").value;
    $("#admin-token").value = "";
    try {
      const level = await api("GET", "/admin/log-level");
      set($("#current-level"), level.level);
      $("#level").value = level.level;
      $("#admin-actions").disabled = false;
      set($("#admin-status"), "Token accepted. Admin actions are enabled until you forget it or reload.");
    } catch (e) {
      token = null;
      $("#admin-actions").disabled = true;
      set($("#admin-status"), e.status === 404
        ? "Admin is disabled on this node (no server.admin_token configured)."
        : `Token refused: ${e.message}`);
    }
  }
  function forget() {
    token = null;
    $("#admin-actions").disabled = true;
    set($("#admin-status"), "Token forgotten.");
  }
  async function adminAction(ev, run) {
    ev.preventDefault();
    try { adminResult(await run(), false); schedule(); } catch (e) { adminResult(`${e.code}: ${e.message}`, true); }
  }

  function init() {
    for (const a of $$("[data-nav]")) {
      a.addEventListener("click", (ev) => {
        if (ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.button !== 0) return;
        ev.preventDefault();
        go(a.dataset.nav, true);
        $("#main").focus();
      });
    }
    window.addEventListener("popstate", () => go(viewOf(location.pathname), false));
    window.addEventListener("resize", () => { if (view === "rates") drawChart(); });
    $("#decode-form").addEventListener("submit", decode);
    $("#token-form").addEventListener("submit", useToken);
    $("#forget-token").addEventListener("click", forget);
    $("#create-form").addEventListener("submit", (ev) => adminAction(ev, async () => {
      const row = await api("POST", "/admin/tags", {
        tag: $("#create-tag").value, start: Number($("#create-start").value), step: Number($("#create-step").value),
      });
      return `Created tag ${row.tag}: first ID ${show(row.max_id)}, step ${show(row.step)}.`;
    }));
    $("#step-form").addEventListener("submit", (ev) => adminAction(ev, async () => {
      const tag = $("#step-tag").value;
      const row = await api("PUT", `/admin/tags/${encodeURIComponent(tag)}`, { step: Number($("#step-step").value) });
      return `Tag ${row.tag} now claims ${show(row.step)} IDs per segment.`;
    }));
    $("#level-form").addEventListener("submit", (ev) => adminAction(ev, async () => {
      const r = await api("PUT", "/admin/log-level", { level: $("#level").value });
      set($("#current-level"), r.level);
      return `Log level is now ${r.level}.`;
    }));
    go(viewOf(location.pathname), false);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
