// Built-in live page: reads /live, follows /live/stream, draws with the bundled ECharts.
// Plain ES2017, no build step. The API key (if anonymous reading is off) comes from ?key=
// or a prompt and is kept in localStorage; it is sent as `Authorization: Bearer`, which is
// why the stream is read with fetch() rather than EventSource (that cannot send headers).
(function () {
  "use strict";

  const I18N = {
    zh: {
      title: "实时能源与碳", set_key: "设置密钥", grid_import: "电网购电", renewable: "光伏/风电",
      green_direct: "绿电直供", load: "负荷", export: "上网电量", storage_net: "储能净放电",
      green_share: "绿电占比", intensity: "碳排放强度", updated: "更新于", stale: "离线设备",
      flows: "实时能流", gauges: "绿电占比与碳强度", today: "今日曲线（平均功率）",
      evaluation: "零碳园区评价", loading: "加载中…", live: "实时", connecting: "连接中…",
      reconnecting: "重新连接…", need_key: "需要 API 密钥", key_prompt: "请输入 API 密钥（只读）：",
      grid: "电网", pv_wind: "光伏/风电", direct: "绿电直供", discharge: "储能放电",
      loads: "负荷", exported: "上网", charge: "储能充电", none: "无",
      indicator: "指标", value: "数值", target: "目标", result: "结果", projection: "年末预测",
      pass: "达标", fail: "未达标", completeness: "数据完整度", unconfirmed: "（目标待确认）",
      green_share_gauge: "绿电占比 %", intensity_gauge: "碳强度 g/kWh",
      load_kw: "负荷", import_kw: "购电", renewable_kw: "光伏/风电", direct_kw: "绿电直供",
      export_kw: "上网", no_eval: "暂无评价数据",
      repaired: "今日数据含修复：", insufficient: "数据不足",
      q_estimated: "估算", q_glitch: "异常读数已剔除", q_implausible: "不合理增量",
      q_conflict: "冲突读数", q_reset: "计量表复位", intervals: "个区间",
    },
    en: {
      title: "Live energy and carbon", set_key: "set key", grid_import: "Grid import",
      renewable: "PV / wind", green_direct: "Direct green", load: "Load", export: "Export",
      storage_net: "Storage net discharge", green_share: "Green share",
      intensity: "Carbon intensity", updated: "updated", stale: "stale devices",
      flows: "Live energy flows", gauges: "Green share and carbon intensity",
      today: "Today (average power)", evaluation: "Zero-carbon park evaluation",
      loading: "loading…", live: "live", connecting: "connecting…",
      reconnecting: "reconnecting…", need_key: "API key needed",
      key_prompt: "API key (viewer):", grid: "Grid", pv_wind: "PV / wind",
      direct: "Direct green", discharge: "Storage discharge", loads: "Loads",
      exported: "Export", charge: "Storage charge", none: "none", indicator: "Indicator",
      value: "Value", target: "Target", result: "Result", projection: "Year-end projection",
      pass: "pass", fail: "fail", completeness: "Data completeness",
      unconfirmed: " (target unconfirmed)", green_share_gauge: "Green share %",
      intensity_gauge: "Carbon g/kWh", load_kw: "Load", import_kw: "Grid import",
      renewable_kw: "PV / wind", direct_kw: "Direct green", export_kw: "Export",
      no_eval: "no evaluation data yet",
      repaired: "Today's figures rest on repaired data:", insufficient: "insufficient data",
      q_estimated: "estimated", q_glitch: "glitch-suppressed", q_implausible: "implausible",
      q_conflict: "conflicting", q_reset: "meter reset", intervals: "intervals",
    },
  };

  const body = document.body;
  const park = body.dataset.park;
  const lang = body.dataset.lang === "en" ? "en" : "zh";
  const t = (k) => I18N[lang][k] || k;
  const base = "/api/v1/parks/" + encodeURIComponent(park);
  const KEY_STORE = "lingtan.apiKey";

  // A key in the address is remembered, then removed from the address bar and history.
  const params = new URLSearchParams(location.search);
  if (params.get("key")) {
    localStorage.setItem(KEY_STORE, params.get("key"));
    params.delete("key");
    const q = params.toString();
    history.replaceState(null, "", location.pathname + (q ? "?" + q : ""));
  }
  const headers = () => {
    const key = localStorage.getItem(KEY_STORE);
    return key ? { Authorization: "Bearer " + key } : {};
  };
  function askKey() {
    const key = window.prompt(t("key_prompt"), "");
    if (key) { localStorage.setItem(KEY_STORE, key.trim()); location.reload(); }
  }
  document.getElementById("set-key").addEventListener("click", (e) => { e.preventDefault(); askKey(); });
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });

  const statusEl = document.getElementById("status");
  function status(text, cls) { statusEl.textContent = text; statusEl.className = "status " + (cls || ""); }

  let askedForKey = false;
  async function getJson(url) {
    const r = await fetch(url, { headers: headers() });
    if (r.status === 401) {
      status(t("need_key"), "err");
      if (!askedForKey) { askedForKey = true; askKey(); }
      throw new Error("401");
    }
    if (!r.ok) throw new Error(r.status + " " + (await r.text()));
    return r.json();
  }

  const num = (v, d) => (typeof v === "number" && isFinite(v) ? v.toFixed(d) : "–");
  const pct = (v, d) => (typeof v === "number" && isFinite(v) ? (v * 100).toFixed(d) : "–");
  const setText = (id, text) => { document.getElementById(id).textContent = text; };

  const sankey = echarts.init(document.getElementById("sankey"));
  const gauges = echarts.init(document.getElementById("gauges"));
  const curves = echarts.init(document.getElementById("curves"));
  window.addEventListener("resize", () => { sankey.resize(); gauges.resize(); curves.resize(); });

  // Split the live supplies over the sinks for drawing: export and charging are taken from
  // renewables first (surplus), the loads get what is left. Sums match the /live flows.
  function flowLinks(d) {
    const src = {
      grid: d.grid_import_kw || 0, pv_wind: d.renewable_kw || 0,
      direct: d.green_direct_kw || 0, discharge: d.storage_discharge_kw || 0,
    };
    const sinks = [
      ["exported", d.grid_export_kw || 0, ["pv_wind", "direct", "discharge", "grid"]],
      ["charge", d.storage_charge_kw || 0, ["pv_wind", "direct", "grid", "discharge"]],
      ["loads", Infinity, ["discharge", "pv_wind", "direct", "grid"]],
    ];
    const links = [];
    for (const [sink, amount, order] of sinks) {
      let need = amount;
      for (const s of order) {
        const take = Math.min(src[s], need);
        if (take > 1e-6) { links.push({ source: t(s), target: t(sink), value: +take.toFixed(1) }); }
        src[s] -= take; need -= take;
      }
    }
    return links;
  }

  function renderSankey(d) {
    const links = flowLinks(d);
    const names = new Set();
    links.forEach((l) => { names.add(l.source); names.add(l.target); });
    sankey.setOption({
      tooltip: { trigger: "item" },
      series: [{
        type: "sankey", emphasis: { focus: "adjacency" }, nodeAlign: "justify",
        data: Array.from(names, (n) => ({ name: n })), links: links,
        label: { formatter: "{b}" }, lineStyle: { color: "gradient", curveness: 0.5 },
      }],
    }, { notMerge: true });
  }

  function gauge(center, name, value, max, unit, colors) {
    return {
      type: "gauge", center: center, radius: "70%", min: 0, max: max,
      axisLine: { lineStyle: { width: 12, color: colors } },
      pointer: { width: 4 }, splitNumber: 5, axisLabel: { distance: 16, fontSize: 10 },
      title: { offsetCenter: [0, "85%"], fontSize: 12 },
      detail: { valueAnimation: true, fontSize: 18, offsetCenter: [0, "45%"],
        formatter: (v) => v.toFixed(unit === "%" ? 1 : 0) },
      data: [{ value: value, name: name }],
    };
  }

  function renderGauges(d) {
    const share = typeof d.green_share_physical === "number" ? d.green_share_physical * 100 : 0;
    const ci = typeof d.carbon_intensity_g_per_kwh === "number" ? d.carbon_intensity_g_per_kwh : 0;
    gauges.setOption({
      series: [
        gauge(["27%", "50%"], t("green_share_gauge"), share, 100, "%",
          [[0.3, "#c0504d"], [0.7, "#e0a030"], [1, "#2e8b57"]]),
        gauge(["75%", "50%"], t("intensity_gauge"), ci, 1000, "g",
          [[0.3, "#2e8b57"], [0.6, "#e0a030"], [1, "#c0504d"]]),
      ],
    });
  }

  let lastDoc = null;
  function renderLive(d) {
    lastDoc = d;
    setText("kpi-grid", num(d.grid_import_kw, 1));
    setText("kpi-renewable", num(d.renewable_kw, 1));
    setText("kpi-green-direct", num(d.green_direct_kw, 1));
    setText("kpi-load", num(d.load_kw, 1));
    setText("kpi-export", num(d.grid_export_kw, 1));
    setText("kpi-storage", num((d.storage_discharge_kw || 0) - (d.storage_charge_kw || 0), 1));
    setText("kpi-green-share", pct(d.green_share_physical, 1));
    setText("kpi-intensity", num(d.carbon_intensity_g_per_kwh, 0));
    setText("updated", d.time || "–");
    const stale = (d.stale_devices || []).concat(d.missing_devices || []);
    setText("stale", stale.length ? stale.join(", ") : t("none"));
    renderQuality(d.today && d.today.quality);
    renderSankey(d);
    renderGauges(d);
    if (!curvesLoadedAt) loadCurves();
    if (!evalLoaded) loadEvaluation();
  }

  // What today's figures rest on (docs/intervals.md, "Quality travels with the numbers").
  const QUALITY = ["glitch", "implausible", "conflict", "reset", "estimated"];
  function qualityText(q) {
    if (!q || !q.repaired) return "";
    return QUALITY.filter((k) => q[k] && q[k].intervals).map((k) => t("q_" + k) + " "
      + q[k].intervals + " " + t("intervals") + " (" + q[k].devices.join(", ") + ")").join(" · ");
  }
  function renderQuality(q) {
    const el = document.getElementById("quality");
    const text = qualityText(q);
    el.hidden = !text;
    el.textContent = text ? "⚠ " + t("repaired") + " " + text : "";
  }

  // Today = local midnight of the park → now; both from the /live document (park zone).
  function todayWindow(d) {
    const m = /^(\d{4}-\d{2}-\d{2})T[\d:.]+(Z|[+-]\d{2}:\d{2})$/.exec(d.time || "");
    if (!m) return null;
    const start = d.today && d.today.start ? d.today.start : m[1] + "T00:00:00" + m[2];
    return Date.parse(start) < Date.parse(d.time) ? [start, d.time] : null;
  }

  // 15-minute buckets, or hourly when the park's meters report hourly (15-minute buckets of
  // hourly intervals would be spikes).
  let step = null;
  async function curveStep() {
    if (!step) {
      try {
        const p = await getJson(base);
        const info = p.items ? p.items[0] : p;
        step = info && info.interval_minutes >= 60 ? "1h" : "15m";
      } catch (e) { return "15m"; }
    }
    return step;
  }

  let curvesLoadedAt = 0;
  async function loadCurves() {
    if (!lastDoc) return;
    const w = todayWindow(lastDoc);
    curvesLoadedAt = Date.now();
    if (!w) return;
    const q = "?every=" + (await curveStep()) + "&start=" + encodeURIComponent(w[0]) + "&end=" + encodeURIComponent(w[1]);
    let doc;
    try { doc = await getJson(base + "/balance" + q); } catch (e) { console.warn("balance:", e.message); return; }
    // Category axis labelled with the park's local clock (a time axis would use the browser's).
    const kw = (b, f) => {
      const h = (Date.parse(b.end) - Date.parse(b.start)) / 3.6e6;
      return h > 0 ? +((b[f] || 0) / h).toFixed(2) : 0;
    };
    const line = (name, f) => ({ name: t(name), type: "line", showSymbol: false,
      data: doc.buckets.map((b) => kw(b, f)) });
    curves.setOption({
      tooltip: { trigger: "axis" }, legend: { top: 0 },
      grid: { left: 50, right: 20, top: 30, bottom: 30 },
      xAxis: { type: "category", boundaryGap: false,
        data: doc.buckets.map((b) => b.start.slice(11, 16)) }, yAxis: { type: "value", name: "kW" },
      series: [
        line("load_kw", "consumption_kwh"), line("import_kw", "grid_import_kwh"),
        line("renewable_kw", "renewable_kwh"), line("direct_kw", "green_direct_kwh"),
        line("export_kw", "grid_export_kwh"),
      ],
    });
  }

  let evalLoaded = false;
  async function loadEvaluation() {
    if (!lastDoc) return;
    evalLoaded = true;
    const year = (lastDoc.time || "").slice(0, 4) || String(new Date().getFullYear());
    setText("eval-year", year);
    const box = document.getElementById("evaluation");
    let doc;
    try { doc = await getJson(base + "/evaluation?format=json&year=" + year); }
    catch (e) { box.textContent = t("no_eval"); console.warn("evaluation:", e.message); return; }
    const verdict = (p) => (p === true ? '<span class="pass">' + t("pass") + "</span>"
      : p === false ? '<span class="fail">' + t("fail") + "</span>" : "–");
    const fmt = (ind, v) => (ind.unit === "ratio" ? pct(v, 1) + " %" : num(v, 3) + " " + ind.unit);
    const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
    const rows = [doc.core].concat(doc.guiding || []).map((ind) =>
      "<tr><td>" + esc(ind.name[lang] || ind.id) + (ind.target_confirmed ? "" : esc(t("unconfirmed")))
      + "</td><td>" + esc(fmt(ind, ind.value)) + "</td><td>"
      + (ind.target == null ? "–" : esc((ind.comparison || "") + " " + fmt(ind, ind.target)))
      + "</td><td>" + verdict(ind.pass) + "</td><td>"
      + (ind.projection && ind.projection.status === "insufficient_data" ? esc(t("insufficient"))
        : esc(fmt(ind, ind.projection && ind.projection.value)) + " "
          + verdict(ind.projection && ind.projection.pass)) + "</td></tr>");
    box.innerHTML = "<table><thead><tr><th>" + t("indicator") + "</th><th>" + t("value")
      + "</th><th>" + t("target") + "</th><th>" + t("result") + "</th><th>" + t("projection")
      + "</th></tr></thead><tbody>" + rows.join("") + "</tbody></table><p class=\"meta\">"
      + t("completeness") + ": " + pct(doc.completeness, 1) + " %"
      + (qualityText(doc.quality) ? " · ⚠ " + esc(qualityText(doc.quality)) : "") + "</p>";
  }

  // Server-Sent Events over fetch(): blocks end with a blank line; `data:` lines form the body.
  async function follow() {
    const r = await fetch(base + "/live/stream", { headers: headers(), cache: "no-store" });
    if (r.status === 401) { status(t("need_key"), "err"); return false; }
    if (!r.ok || !r.body) throw new Error("stream " + r.status);
    status(t("live"), "ok");
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return true;
      buf += value;
      let m;
      while ((m = /\r?\n\r?\n/.exec(buf))) {
        const block = buf.slice(0, m.index);
        buf = buf.slice(m.index + m[0].length);
        let event = "message";
        const data = [];
        for (const line of block.split(/\r?\n/)) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (event === "live" && data.length) renderLive(JSON.parse(data.join("\n")));
      }
    }
  }

  async function run() {
    status(t("connecting"));
    try { renderLive(await getJson(base + "/live")); } catch (e) { console.warn("live:", e.message); }
    let delay = 1000;
    for (;;) {
      try {
        if ((await follow()) === false) return; // needs a key: wait for the user
        delay = 1000;
      } catch (e) {
        console.warn("stream:", e.message);
        delay = Math.min(delay * 2, 30000);
      }
      status(t("reconnecting"), "err");
      await new Promise((res) => setTimeout(res, delay));
    }
  }

  setInterval(() => { if (Date.now() - curvesLoadedAt > 5 * 60 * 1000) loadCurves(); }, 30000);
  setInterval(() => { evalLoaded = false; }, 30 * 60 * 1000);
  run();
})();
