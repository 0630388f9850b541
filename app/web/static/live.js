// Built-in live page: reads /live, follows /live/stream, draws with the bundled ECharts.
// Plain ES2017, no build step. Keys: the page never prompts. A viewer key is kept by the
// server in an HttpOnly cookie (display link /kiosk?park=..&key=.., or the key form, which
// posts to /kiosk); same-origin fetches send it, so the stream is read with fetch() as well.
// See docs/live-page.md.
(function () {
  "use strict";

  const I18N = {
    zh: {
      title: "实时能源与碳", set_key: "设置密钥", display_mode: "大屏模式",
      grid_import: "电网购电", renewable: "光伏/风电",
      green_direct: "绿电直供", load: "电力负荷", export: "上网电量", storage_net: "储能净放电",
      green_share: "绿电占比", intensity: "用电碳强度",
      intensity_note: "每千瓦时用电，仅电力",
      heat_supplied: "供热功率", boiler_fuel: "锅炉燃料", district_heat: "外购热力",
      hydrogen: "外购氢气", emission_location: "园区碳排放速率（基于位置）",
      emission_market: "园区碳排放速率（基于市场）",
      emission_note: "范围一 + 范围二 + 外购热力，全园区每小时",
      incomplete: "不完整：缺 ", complete: "数据完整",
      updated: "更新于", offline: "离线设备：", waiting: "等待第二条读数：",
      stale_quantities: "过期数据项：", quality: "数据质量：", alarms: "告警：",
      flows: "实时能流（电与热，kW）", gauges: "绿电占比与用电碳强度",
      emissions_now: "当前碳排放速率构成（kgCO₂/h）",
      today: "今日曲线（平均功率；无数据的时段留空）",
      tou_period: "当前电价时段", import_price: "购电电价", export_price: "上网电价",
      cost_rate: "当前用能成本速率", cost_today: "今日电费与能源成本", saved_today: "今日节省",
      demand_peak: "本月最大需量（15 分钟）", tariff_unconfirmed: "电价未经核实",
      period_names: { critical_peak: "尖峰", peak: "高峰", flat: "平段", valley: "低谷" },
      saved_parts: "光伏/风电 {r} · 绿电直供 {g} · 储能 {s}", month_charge: "需量电费（至今）{c} CNY",
      evaluation: "零碳园区评价", loading: "加载中…", live: "实时", connecting: "连接中…",
      reconnecting: "重新连接…", need_key: "需要 API 密钥",
      need_key_long: "读取数据需要只读（viewer）API 密钥：点击“设置密钥”。",
      need_key_display: "此大屏没有有效密钥：请重新打开大屏链接 /kiosk?park=…&key=…（只读密钥）。",
      key_label: "只读（viewer）API 密钥：", key_save: "保存到此浏览器", key_forget: "清除",
      key_hint: "密钥保存在 HttpOnly Cookie 中，页面脚本无法读取。",
      grid: "电网", pv_wind: "光伏/风电", direct: "绿电直供", discharge: "储能放电",
      loads: "电力负荷", loads_other: "其他电力负荷", exported: "上网", charge: "储能充电", none: "无",
      heat_pump: "热泵", electrolyzer: "电解槽", ambient: "环境热", boiler: "锅炉",
      dh_in: "外购热力", recovered: "余热回收", heat: "热负荷", losses: "锅炉损失",
      h2_in: "外购氢气", h2_use: "用氢",
      natural_gas: "天然气", coal: "煤", diesel: "柴油", lpg: "液化石油气", biomass: "生物质",
      indicator: "指标", value: "数值", target: "目标", result: "结果", projection: "年末预测",
      pass: "达标", fail: "未达标", completeness: "数据完整度", unconfirmed: "（目标待确认）",
      green_share_gauge: "绿电占比 %", intensity_gauge: "用电碳强度 gCO₂/kWh",
      load_kw: "电力负荷", import_kw: "购电", renewable_kw: "光伏/风电", direct_kw: "绿电直供",
      export_kw: "上网", heat_kw: "外购热力", emissions_kg_h: "碳排放 kgCO₂/h（市场）",
      no_eval: "暂无评价数据",
      scope1: "范围一（燃料）", scope2: "范围二（电力）", heat_purchased: "外购热力",
      h2_beside: "氢气（另列）", location: "基于位置", market: "基于市场",
      ago_s: " 秒前", ago_min: " 分钟前", ago_h: " 小时前",
      repaired: "今日数据含修复：", insufficient: "数据不足",
      q_estimated: "估算", q_glitch: "异常读数已剔除", q_implausible: "不合理增量",
      q_conflict: "冲突读数", q_reset: "计量表复位", intervals: "个区间",
    },
    en: {
      title: "Live energy and carbon", set_key: "set key", display_mode: "wall display",
      grid_import: "Grid import", renewable: "PV / wind", green_direct: "Direct green",
      load: "Electric load", export: "Export", storage_net: "Storage net discharge",
      green_share: "Green share", intensity: "Electricity carbon intensity",
      intensity_note: "per kWh used now, electricity only",
      heat_supplied: "Heat supplied", boiler_fuel: "Boiler fuel", district_heat: "District heat in",
      hydrogen: "Hydrogen bought", emission_location: "Park emission rate (location)",
      emission_market: "Park emission rate (market)",
      emission_note: "scope 1 + scope 2 + purchased heat, whole park per hour",
      incomplete: "incomplete: no data from ", complete: "all sources reporting",
      updated: "updated", offline: "offline:", waiting: "awaiting a second reading:",
      stale_quantities: "stale quantities:", quality: "data quality:", alarms: "alarms:",
      flows: "Live energy flows (electricity and heat, kW)",
      gauges: "Green share and electricity carbon intensity",
      emissions_now: "Park emission rate now by source (kgCO₂/h)",
      today: "Today (average power; hours without data left blank)",
      tou_period: "Time-of-use period now", import_price: "Import price", export_price: "export",
      cost_rate: "Energy cost rate now", cost_today: "Energy cost today", saved_today: "Saved today",
      demand_peak: "Month's max 15-min demand", tariff_unconfirmed: "tariff not confirmed",
      period_names: { critical_peak: "critical peak", peak: "peak", flat: "flat", valley: "valley" },
      saved_parts: "renewables {r} · green line {g} · storage {s}", month_charge: "demand charge so far {c} CNY",
      evaluation: "Zero-carbon park evaluation",
      loading: "loading…", live: "live", connecting: "connecting…",
      reconnecting: "reconnecting…", need_key: "API key needed",
      need_key_long: "Reading needs a viewer API key: use “set key”.",
      need_key_display: "This display has no valid key: open its display link again, /kiosk?park=…&key=… (a viewer key).",
      key_label: "Viewer API key:", key_save: "keep in this browser", key_forget: "forget",
      key_hint: "The key is kept in an HttpOnly cookie; page scripts cannot read it.",
      grid: "Grid", pv_wind: "PV / wind", direct: "Direct green", discharge: "Storage discharge",
      loads: "Electric loads", loads_other: "Other electric loads", exported: "Export", charge: "Storage charge", none: "none",
      heat_pump: "Heat pump", electrolyzer: "Electrolyzer", ambient: "Ambient heat",
      boiler: "Boiler", dh_in: "District heat", recovered: "Recovered heat", heat: "Heat loads",
      losses: "Boiler losses", h2_in: "Hydrogen bought", h2_use: "Hydrogen use",
      natural_gas: "Natural gas", coal: "Coal", diesel: "Diesel", lpg: "LPG", biomass: "Biomass",
      indicator: "Indicator",
      value: "Value", target: "Target", result: "Result", projection: "Year-end projection",
      pass: "pass", fail: "fail", completeness: "Data completeness",
      unconfirmed: " (target unconfirmed)", green_share_gauge: "Green share %",
      intensity_gauge: "Electricity gCO₂/kWh", load_kw: "Electric load", import_kw: "Grid import",
      renewable_kw: "PV / wind", direct_kw: "Direct green", export_kw: "Export",
      heat_kw: "District heat", emissions_kg_h: "Emissions kgCO₂/h (market)",
      no_eval: "no evaluation data yet",
      scope1: "Scope 1 (fuels)", scope2: "Scope 2 (electricity)", heat_purchased: "Purchased heat",
      h2_beside: "Hydrogen (shown apart)", location: "location", market: "market",
      ago_s: " s ago", ago_min: " min ago", ago_h: " h ago",
      repaired: "Today's figures rest on repaired data:", insufficient: "insufficient data",
      q_estimated: "estimated", q_glitch: "glitch-suppressed", q_implausible: "implausible",
      q_conflict: "conflicting", q_reset: "meter reset", intervals: "intervals",
    },
  };

  const body = document.body;
  const park = body.dataset.park;
  const lang = body.dataset.lang === "en" ? "en" : "zh";
  const display = body.dataset.display === "1";
  const t = (k) => I18N[lang][k] || k;
  const base = "/api/v1/parks/" + encodeURIComponent(park);
  const FUEL_UNITS = { gas_m3: "m³/h", fuel_kg: "kg/h", fuel_l: "L/h" };

  // Earlier versions kept the key in localStorage: forget it (the cookie replaces it).
  try { localStorage.removeItem("lingtan.apiKey"); } catch (e) { /* storage disabled */ }

  const keyForm = document.getElementById("key-form");
  document.getElementById("set-key").addEventListener("click", (e) => {
    e.preventDefault();
    keyForm.hidden = !keyForm.hidden;
    if (!keyForm.hidden) keyForm.querySelector("input[name=key]").focus();
  });
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });

  const statusEl = document.getElementById("status");
  function status(text, cls) { statusEl.textContent = text; statusEl.className = "status " + (cls || ""); }

  // No prompt, ever: a missing or revoked key shows a line (and the form outside displays).
  function needKey() {
    status(t("need_key"), "err");
    const p = document.getElementById("need-key");
    p.textContent = display ? t("need_key_display") : t("need_key_long");
    p.hidden = false;
    if (!display) keyForm.hidden = false;
  }

  async function getJson(url) {
    const r = await fetch(url, { credentials: "same-origin" });
    if (r.status === 401) { needKey(); throw new Error("401"); }
    if (!r.ok) throw new Error(r.status + " " + (await r.text()));
    return r.json();
  }

  const num = (v, d) => (typeof v === "number" && isFinite(v) ? v.toFixed(d) : "–");
  const pct = (v, d) => (typeof v === "number" && isFinite(v) ? (v * 100).toFixed(d) : "–");
  const setText = (id, text) => { document.getElementById(id).textContent = text; };

  // Park-local time from an RFC 3339 string of the API (already in the park's zone), for
  // people: "2026-06-01 14:00:05 (UTC+08:00)", no fractions of a second.
  function localTime(iso, withDate) {
    const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.\d+)?(Z|[+-]\d{2}:\d{2})$/.exec(iso || "");
    if (!m) return "–";
    const zone = m[3] === "Z" ? "UTC" : "UTC" + m[3];
    return (withDate ? m[1] + " " : "") + m[2] + " (" + zone + ")";
  }
  function age(s) {
    if (typeof s !== "number") return "–";
    if (s < 90) return Math.round(s) + t("ago_s");
    if (s < 5400) return Math.round(s / 60) + t("ago_min");
    return (s / 3600).toFixed(1) + t("ago_h");
  }

  const sankey = echarts.init(document.getElementById("sankey"));
  const gauges = echarts.init(document.getElementById("gauges"));
  const emissions = echarts.init(document.getElementById("emissions"));
  const curves = echarts.init(document.getElementById("curves"));
  window.addEventListener("resize", () => {
    sankey.resize(); gauges.resize(); emissions.resize(); curves.resize();
  });

  // Split the live supplies over the sinks for drawing: export and charging are taken from
  // renewables first (surplus), then the heat pumps and electrolyzers (sub-meters inside the
  // loads), the other loads get what is left. Sums match the /live flows.
  function electricLinks(d, th) {
    const src = {
      grid: d.grid_import_kw || 0, pv_wind: d.renewable_kw || 0,
      direct: d.green_direct_kw || 0, discharge: d.storage_discharge_kw || 0,
    };
    const load = d.load_kw || 0;
    const hp = Math.min(th.heat_pump_kw || 0, load);
    const el = Math.min(th.electrolyzer_kw || 0, load - hp);
    const loadOrder = ["discharge", "pv_wind", "direct", "grid"];
    const sinks = [
      ["exported", d.grid_export_kw || 0, ["pv_wind", "direct", "discharge", "grid"]],
      ["charge", d.storage_charge_kw || 0, ["pv_wind", "direct", "grid", "discharge"]],
      ["heat_pump", hp, loadOrder],
      ["electrolyzer", el, loadOrder],
      [hp + el > 1e-6 ? "loads_other" : "loads", Infinity, loadOrder],
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

  // Heat, fuel and hydrogen (kW; fuels on the standard-coal energy basis, hydrogen at 120 MJ/kg).
  function thermalLinks(th) {
    const links = [];
    const add = (s, d, v) => { if (v > 1e-6) links.push({ source: t(s), target: t(d), value: +v.toFixed(1) }); };
    const fuels = th.fuels || [];
    const fuelName = fuels.length === 1 ? fuels[0].fuel : "boiler_fuel";
    add(fuelName, "boiler", th.boiler_fuel_kw || 0);
    add("boiler", "heat", th.boiler_heat_kw || 0);
    add("boiler", "losses", (th.boiler_fuel_kw || 0) - (th.boiler_heat_kw || 0));
    add("dh_in", "heat", th.district_heat_kw || 0);
    add("recovered", "heat", th.heat_recovered_kw || 0);
    add("ambient", "heat_pump", (th.heat_pump_heat_kw || 0) - (th.heat_pump_kw || 0));
    add("heat_pump", "heat", th.heat_pump_heat_kw || 0);
    add("h2_in", "h2_use", th.hydrogen_kw || 0);
    return links;
  }

  const THERMAL_NODES = new Set(["boiler", "heat", "losses", "dh_in", "recovered", "ambient",
    "h2_in", "h2_use", "natural_gas", "coal", "diesel", "lpg", "biomass", "boiler_fuel"].map(t));

  function renderSankey(d) {
    const th = d.thermal || {};
    const links = electricLinks(d, th).concat(thermalLinks(th));
    const names = new Set();
    links.forEach((l) => { names.add(l.source); names.add(l.target); });
    sankey.setOption({
      tooltip: { trigger: "item",
        formatter: (p) => (p.dataType === "edge"
          ? p.data.source + " → " + p.data.target + ": " + p.data.value + " kW ("
            + (p.data.value * 0.0036).toFixed(2) + " GJ/h)"
          : p.name) },
      series: [{
        type: "sankey", emphasis: { focus: "adjacency" }, nodeAlign: "justify", nodeGap: 10,
        layoutIterations: 32, left: 8, right: 110,
        data: Array.from(names, (n) => ({ name: n,
          itemStyle: { color: THERMAL_NODES.has(n) ? "#d9822b" : (n === t("heat_pump") ? "#b5651d" : "#2e7d5b") } })),
        links: links,
        label: { formatter: "{b}" }, lineStyle: { color: "gradient", curveness: 0.5, opacity: 0.35 },
      }],
    }, { notMerge: true });
  }

  function gauge(center, name, value, max, unit, colors) {
    return {
      type: "gauge", center: center, radius: "80%", min: 0, max: max,
      axisLine: { lineStyle: { width: 10, color: colors } },
      pointer: { width: 4 }, splitNumber: 5, axisLabel: { distance: 14, fontSize: 9 },
      title: { offsetCenter: [0, "88%"], fontSize: 11 },
      detail: { valueAnimation: true, fontSize: 16, offsetCenter: [0, "50%"],
        formatter: (v) => v.toFixed(unit === "%" ? 1 : 0) },
      data: [{ value: value, name: name }],
    };
  }

  function renderGauges(d) {
    const share = typeof d.green_share_physical === "number" ? d.green_share_physical * 100 : 0;
    const ci = typeof d.carbon_intensity_g_per_kwh === "number" ? d.carbon_intensity_g_per_kwh : 0;
    gauges.setOption({
      series: [
        gauge(["27%", "55%"], t("green_share_gauge"), share, 100, "%",
          [[0.3, "#c0504d"], [0.7, "#e0a030"], [1, "#2e8b57"]]),
        gauge(["75%", "55%"], t("intensity_gauge"), ci, 1000, "g",
          [[0.3, "#2e8b57"], [0.6, "#e0a030"], [1, "#c0504d"]]),
      ],
    });
  }

  function renderEmissions(d) {
    const r = d.emission_rate_kg_per_h || {};
    const bar = (key, color, loc, mkt) => ({ name: t(key), type: "bar", stack: "e",
      itemStyle: { color: color }, data: [+(loc || 0).toFixed(1), +(mkt || 0).toFixed(1)] });
    emissions.setOption({
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      legend: { top: 0, textStyle: { fontSize: 11 } },
      grid: { left: 70, right: 20, top: 48, bottom: 24 },
      xAxis: { type: "value", name: "kgCO₂/h", nameLocation: "end", nameGap: -40, nameTextStyle: { padding: [28, 0, 0, 0] } },
      yAxis: { type: "category", data: [t("location"), t("market")] },
      series: [
        bar("scope1", "#d9822b", r.scope1, r.scope1),
        bar("scope2", "#5470c6", r.scope2_location, r.scope2_market),
        bar("heat_purchased", "#c0504d", r.heat_purchased, r.heat_purchased),
      ],
    }, { notMerge: true });
  }

  // A `quality` object on /live (glitch and estimated flags) is shown when present.
  function show(boxId, textId, text) {
    document.getElementById(boxId).hidden = !text;
    setText(textId, text || "");
  }

  let lastDoc = null;
  function renderLive(d) {
    lastDoc = d;
    document.getElementById("need-key").hidden = true;
    setText("kpi-grid", num(d.grid_import_kw, 1));
    setText("kpi-renewable", num(d.renewable_kw, 1));
    setText("kpi-green-direct", num(d.green_direct_kw, 1));
    setText("kpi-load", num(d.load_kw, 1));
    setText("kpi-export", num(d.grid_export_kw, 1));
    setText("kpi-storage", num((d.storage_discharge_kw || 0) - (d.storage_charge_kw || 0), 1));
    setText("kpi-green-share", pct(d.green_share_physical, 1));
    setText("kpi-intensity", num(d.carbon_intensity_g_per_kwh, 0));
    const th = d.thermal || {};
    setText("kpi-heat", num(th.heat_kw, 0));
    setText("kpi-heat-gj", num(th.heat_gj_per_h, 2));
    const fuels = th.fuels || [];
    setText("kpi-fuel", fuels.length === 1 ? num(fuels[0].per_h, 1) : num(th.boiler_fuel_kw, 0));
    setText("kpi-fuel-unit", fuels.length === 1 ? FUEL_UNITS[fuels[0].counter] || "" : "kW");
    setText("kpi-district", num(th.district_heat_gj_per_h, 2));
    setText("kpi-h2", num(th.hydrogen_kg_per_h, 1));
    setText("kpi-emission-location", num(d.emission_rate_location_kg_per_h, 0));
    setText("kpi-emission-market", num(d.emission_rate_market_kg_per_h, 0));
    const er = d.emission_rate_kg_per_h || {};
    const erMissing = er.missing_devices || [];
    setText("emission-complete", erMissing.length ? t("incomplete") + erMissing.join(", ") : t("complete"));
    document.getElementById("emission-complete").className = erMissing.length ? "warn" : "";
    setText("updated", localTime(d.time, !display));
    setText("clock", localTime(d.time, false));
    // offline: stale by the device's own cadence, or never seen (sub-meters included)
    const fresh = d.freshness || {};
    const offline = (d.stale_devices || []).concat(Object.keys(fresh).filter((k) => fresh[k] === null));
    const since = (k) => (typeof fresh[k] === "number" ? k + " (" + age(fresh[k]) + ")" : k);
    setText("stale", offline.length ? offline.map(since).join(", ") : t("none"));
    const waiting = (d.missing_devices || []).filter((k) => !offline.includes(k));
    show("waiting-box", "waiting", waiting.join(", "));
    const sq = d.stale_quantities || {};
    show("stale-q-box", "stale-q", Object.keys(sq).map((k) => k + " (" + sq[k].join(", ") + ")").join("; "));
    renderQuality(d.today && d.today.quality);
    // open alarms (docs/alarms.md): the park's message in the page's language
    const alarms = (d.alarms || []).map((a) => ((a.message && (a.message[lang] || a.message.en))
      || a.rule + " " + a.subject) + (a.state === "acknowledged" ? " ✓" : ""));
    show("alarms-box", "alarms", alarms.join(" · "));
    renderCost(d);
    renderSankey(d);
    renderGauges(d);
    renderEmissions(d);
    if (!curvesLoadedAt) loadCurves();
    if (!evalLoaded && !display) loadEvaluation();
  }

  // Tariff period and price now, today's cost and savings (docs/cost.md).
  function renderCost(d) {
    const tf = d.tariff;
    const panel = document.getElementById("cost-panel");
    panel.hidden = !tf;
    if (!tf) return;
    setText("kpi-period", (t("period_names") || {})[tf.period] || tf.period);
    setText("kpi-period-note", tf.confirmed ? tf.name : tf.name + " · " + t("tariff_unconfirmed"));
    document.getElementById("kpi-period-note").className = tf.confirmed ? "" : "warn";
    setText("kpi-price", num(tf.import_cny_per_kwh, 3));
    setText("kpi-export-price", num(tf.export_cny_per_kwh, 3));
    setText("kpi-cost-rate", num(tf.cost_rate_cny_per_h, 1));
    const c = d.today && d.today.cost;
    setText("kpi-cost-today", c ? num(d.today.cost_cny, 0) : "–");
    const periods = c ? Object.keys(c.by_period).map((p) =>
      ((t("period_names") || {})[p] || p) + " " + num(c.by_period[p].cny, 0)).join(" · ") : "";
    setText("kpi-cost-periods", periods);
    const sv = c ? c.saved_cny : null;
    setText("kpi-saved-today", sv ? num(sv.total, 0) : "–");
    setText("kpi-saved-parts", sv ? t("saved_parts").replace("{r}", num(sv.renewable, 0))
      .replace("{g}", num(sv.green_direct, 0)).replace("{s}", num(sv.storage, 0)) : "");
    setText("kpi-demand", c ? num(c.demand_peak_kw, 0) : "–");
    const months = c ? Object.values(c.demand_months) : [];
    setText("kpi-demand-month", months.length ? t("month_charge").replace("{c}", num(months[months.length - 1].charge_cny, 0)) : "");
  }

  // What today's figures rest on (docs/intervals.md, "Quality travels with the numbers").
  const QUALITY = ["glitch", "implausible", "conflict", "reset", "estimated"];
  function qualityText(q) {
    if (!q || !q.repaired) return "";
    return QUALITY.filter((k) => q[k] && q[k].intervals).map((k) => t("q_" + k) + " "
      + q[k].intervals + " " + t("intervals") + " (" + q[k].devices.join(", ") + ")").join(" · ");
  }
  function renderQuality(q) {
    const text = qualityText(q);
    show("quality-box", "quality", text ? "⚠ " + t("repaired") + " " + text : "");
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
    // A bucket without any interval (measured or estimated) is a gap: null, drawn as a break,
    // never as 0 kW. Category axis labelled with the park's local clock.
    const hasData = (b) => (b.measured_intervals || 0) + (b.estimated_intervals || 0) > 0;
    const perHour = (b, v) => {
      const h = (Date.parse(b.end) - Date.parse(b.start)) / 3.6e6;
      return h > 0 && hasData(b) ? +(v / h).toFixed(2) : null;
    };
    const line = (name, f, extra) => Object.assign({ name: t(name), type: "line", showSymbol: false,
      connectNulls: false, data: doc.buckets.map((b) => perHour(b, b[f] || 0)) }, extra || {});
    const emitted = (b) => (b.scope1_kg || 0) + (b.scope2_market_kg || 0) + (b.heat_purchased_kg || 0);
    curves.setOption({
      tooltip: { trigger: "axis" }, legend: { top: 0 },
      grid: { left: 56, right: 70, top: 36, bottom: 30 },
      xAxis: { type: "category", boundaryGap: false,
        data: doc.buckets.map((b) => b.start.slice(11, 16)) },
      yAxis: [{ type: "value", name: "kW" }, { type: "value", name: "kgCO₂/h", splitLine: { show: false } }],
      series: [
        line("load_kw", "consumption_kwh"), line("import_kw", "grid_import_kwh"),
        line("renewable_kw", "renewable_kwh"), line("direct_kw", "green_direct_kwh"),
        line("export_kw", "grid_export_kwh"),
        Object.assign(line("heat_kw", "heat_purchased_gj"), {
          data: doc.buckets.map((b) => { const v = perHour(b, b.heat_purchased_gj || 0); return v === null ? null : +(v / 0.0036).toFixed(2); }) }),
        Object.assign(line("emissions_kg_h", "net_kg", { yAxisIndex: 1, lineStyle: { type: "dashed" } }), {
          data: doc.buckets.map((b) => perHour(b, emitted(b))) }),
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
    const r = await fetch(base + "/live/stream", { credentials: "same-origin", cache: "no-store" });
    if (r.status === 401) { needKey(); return false; }
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
        const ok = await follow();
        // a wall display keeps trying (its key may be fixed server-side); a desk waits
        if (ok === false && !display) return;
        delay = ok === false ? 60000 : 1000;
      } catch (e) {
        console.warn("stream:", e.message);
        delay = Math.min(delay * 2, 30000);
      }
      if (delay < 60000) status(t("reconnecting"), "err");
      await new Promise((res) => setTimeout(res, delay));
    }
  }

  setInterval(() => { if (Date.now() - curvesLoadedAt > 5 * 60 * 1000) loadCurves(); }, 30000);
  setInterval(() => { evalLoaded = false; }, 30 * 60 * 1000);
  run();
})();
