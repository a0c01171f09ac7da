// /queue: the operators' dashboard. A snapshot arrives over Server-Sent Events every couple of
// seconds; the tiles and tables are updated in place and the charts redrawn (uPlot).
(() => {
  "use strict";
  const live = document.getElementById("live");
  let snap = JSON.parse(document.getElementById("queue-data").textContent);
  const STAGES = snap.stages.map((s) => s.stage);
  const KEEP = 180; // live points of the depth chart (about six minutes)
  const depth = [[], ...STAGES.map(() => [])];
  const colours = ["#1f5fbf", "#b35c00", "#1b7a3d", "#8e24aa", "#00838f", "#c2185b"];
  const hhmm = (t) => new Date(t * 1000).toTimeString().slice(0, 5);
  const hhmmss = (t) => new Date(t * 1000).toTimeString().slice(0, 8);
  const charts = {};

  const make = (id, series, values, timeAxis) => {
    const holder = document.getElementById(id);
    if (!holder || !window.uPlot) return null;
    const chart = new window.uPlot(
      {
        width: holder.clientWidth || 300,
        height: 180,
        legend: { show: true, live: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: false }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
        axes: [{ values: (u, ticks) => ticks.map(timeAxis) }, { size: 40 }],
        series: [{}, ...series.map((label, i) => ({ label, stroke: colours[i % colours.length], width: 2 }))],
      },
      values,
      holder,
    );
    new ResizeObserver(() => chart.setSize({ width: holder.clientWidth, height: 180 })).observe(holder);
    return chart;
  };

  const historyData = (h) => [h.times, h.completed, h.failed];
  const stepNames = (h) => Object.keys(h.steps);
  const stepData = (h) => [h.times, ...stepNames(h).map((s) => h.steps[s])];

  const addDepth = (s) => {
    depth[0].push(s.at);
    s.stages.forEach((row, i) => depth[i + 1].push(row.queued + row.running + row.stalled));
    if (depth[0].length > KEEP) depth.forEach((col) => col.shift());
  };

  const setText = (el, value) => { if (el && el.textContent !== String(value)) el.textContent = value; };
  const clock = (t) => {
    const s = Math.round(t);
    return s >= 3600 ? `${Math.floor(s / 3600)}:${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`
      : `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  };

  const render = (s) => {
    for (const el of document.querySelectorAll(".tile-n[data-status]")) {
      setText(el, s.files_by_status[el.dataset.status] || 0);
    }
    setText(document.getElementById("done-hour"), s.finished_last_hour.completed || 0);
    setText(document.getElementById("failed-hour"), s.finished_last_hour.failed || 0);
    for (const row of s.stages) {
      const tr = document.querySelector(`#stages tr[data-stage="${row.stage}"]`);
      if (!tr) continue;
      setText(tr.querySelector('[data-k="queued"]'), row.queued);
      setText(tr.querySelector('[data-k="running"]'), row.running);
      setText(tr.querySelector('[data-k="stalled"]'), row.stalled);
      setText(tr.querySelector('[data-k="audio"]'), clock(row.audio_seconds));
    }
    setText(document.getElementById("queues"),
      Object.entries(s.queues).map(([q, n]) => `${q} ${n}`).join(" · "));
    setText(document.getElementById("unacked"), s.unacked);
    setText(document.getElementById("avg-steps"),
      Object.entries(s.avg_stage_seconds).map(([k, v]) => `${k} ${v.toFixed(1)} s`).join(" · "));
    const body = document.querySelector("#workers tbody");
    body.replaceChildren(...s.workers.map((w) => {
      const tr = document.createElement("tr");
      for (const [value, cls] of [[w.name, ""], [w.active, "num"], [w.tasks.join(", ") || "–", ""]]) {
        const td = document.createElement("td");
        td.textContent = value;
        if (cls) td.className = cls;
        tr.append(td);
      }
      return tr;
    }));
    document.getElementById("no-workers").hidden = s.workers.length > 0;
    addDepth(s);
    charts.depth?.setData(depth);
    charts.throughput?.setData(historyData(s.history));
    if (charts.times && stepNames(s.history).join() === charts.timesSteps) {
      charts.times.setData(stepData(s.history));
    } else {
      charts.times?.destroy();
      charts.timesSteps = stepNames(s.history).join();
      charts.times = make("times-chart", stepNames(s.history), stepData(s.history), hhmm);
    }
  };

  addDepth(snap);
  charts.depth = make("depth-chart", STAGES, depth, hhmmss);
  charts.throughput = make("throughput-chart", ["completed", "failed"], historyData(snap.history), hhmm);
  charts.timesSteps = stepNames(snap.history).join();
  charts.times = make("times-chart", stepNames(snap.history), stepData(snap.history), hhmm);

  const source = new EventSource("/queue/events");
  source.addEventListener("open", () => { live.dataset.state = "open"; live.textContent = "live"; });
  source.addEventListener("snapshot", (e) => {
    snap = JSON.parse(e.data);
    render(snap);
    live.dataset.updated = String(snap.at);
  });
  source.addEventListener("end", () => { source.close(); live.dataset.state = "closed"; live.textContent = "signed out"; });
  source.addEventListener("error", () => {
    live.dataset.state = source.readyState === EventSource.CLOSED ? "closed" : "connecting";
    live.textContent = source.readyState === EventSource.CLOSED ? "offline" : "reconnecting";
  });
})();
