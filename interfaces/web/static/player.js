// /files/{id}: the transcript follows the audio (the word being spoken is highlighted), a click
// on a word or a turn's time seeks there, keywords and entities jump to where they are said,
// and the sentiment line shows the call's mood with the player's position on it.
(() => {
  "use strict";
  const data = JSON.parse(document.getElementById("player-data").textContent);
  const audio = document.getElementById("player");
  const position = document.getElementById("position");
  const box = document.getElementById("transcript");
  const words = box ? [...box.querySelectorAll(".w")] : [];
  const starts = words.map((w) => parseFloat(w.dataset.s));
  let current = null;
  let chart = null;

  const clock = (t) => {
    const s = Math.max(0, Math.floor(t));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const ss = String(s % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
  };
  // The last word that started at or before t (binary search; -1 before the first).
  const indexAt = (t) => {
    let lo = 0;
    let hi = starts.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (starts[mid] <= t + 0.02) { found = mid; lo = mid + 1; } else { hi = mid - 1; }
    }
    return found;
  };
  const visible = (el) => {
    const a = el.getBoundingClientRect();
    const b = box.getBoundingClientRect();
    return a.top >= b.top && a.bottom <= b.bottom;
  };
  const highlight = () => {
    const t = audio.currentTime;
    position.textContent = clock(t);
    const i = indexAt(t);
    const word = i >= 0 ? words[i] : null;
    if (word !== current) {
      if (current) { current.classList.remove("now"); current.removeAttribute("aria-current"); }
      if (word) {
        word.classList.add("now");
        word.setAttribute("aria-current", "true");
        if (!visible(word)) word.scrollIntoView({ block: "nearest" });
      }
      current = word;
    }
    if (chart) chart.redraw(false, false);
  };
  const seek = (t) => {
    if (!Number.isFinite(t)) return;
    audio.currentTime = Math.max(0, t);
    highlight();
  };

  const play = document.getElementById("play");
  play.addEventListener("click", () => { if (audio.paused) audio.play(); else audio.pause(); });
  audio.addEventListener("play", () => { play.textContent = "Pause"; });
  audio.addEventListener("pause", () => { play.textContent = "Play"; });

  let frame = null;
  const follow = () => { highlight(); frame = audio.paused ? null : requestAnimationFrame(follow); };
  audio.addEventListener("play", () => { if (frame === null) frame = requestAnimationFrame(follow); });
  audio.addEventListener("timeupdate", highlight);
  audio.addEventListener("seeked", highlight);

  if (box) {
    box.addEventListener("click", (e) => {
      const target = e.target.closest(".w, .t");
      if (target) seek(parseFloat(target.dataset.s));
    });
  }
  for (const button of document.querySelectorAll(".term[data-times]")) {
    const times = button.dataset.times.split(" ").filter(Boolean).map(Number);
    let next = 0;
    button.addEventListener("click", () => {
      if (!times.length) return;
      seek(times[next % times.length]);
      next += 1;
    });
  }

  // ?t=12.3 (a search hit): start there once the player knows the media.
  const wantedAt = parseFloat(new URLSearchParams(location.search).get("t"));
  if (Number.isFinite(wantedAt)) {
    const go = () => seek(wantedAt);
    if (audio.readyState >= 1) go(); else audio.addEventListener("loadedmetadata", go, { once: true });
  }

  // --- sentiment line ------------------------------------------------------------------------
  const holder = document.getElementById("sentiment-chart");
  if (holder && window.uPlot && data.sentiment.length) {
    const xs = data.sentiment.map((p) => p[0]);
    const ys = data.sentiment.map((p) => p[1]);
    const cursorLine = (u) => {
      const x = u.valToPos(audio.currentTime, "x", true);
      if (!Number.isFinite(x)) return;
      const ctx = u.ctx;
      ctx.save();
      ctx.strokeStyle = "#b3261e";
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(x, u.bbox.top);
      ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke();
      ctx.restore();
    };
    const options = {
      width: holder.clientWidth || 300,
      height: 160,
      legend: { show: false },
      cursor: { y: false, drag: { x: false, y: false } },
      scales: {
        x: { time: false, range: [0, Math.max(data.duration || 0, xs[xs.length - 1] || 1)] },
        y: { range: [-1, 1] },
      },
      axes: [
        { values: (u, ticks) => ticks.map(clock) },
        { values: (u, ticks) => ticks.map((v) => v.toFixed(1)), size: 40 },
      ],
      series: [{}, { label: "sentiment", stroke: "#1f5fbf", width: 2, points: { show: true } }],
      hooks: { draw: [cursorLine] },
    };
    chart = new window.uPlot(options, [xs, ys], holder);
    chart.over.addEventListener("click", (e) => {
      const rect = chart.over.getBoundingClientRect();
      seek(chart.posToVal(e.clientX - rect.left, "x"));
    });
    new ResizeObserver(() => chart.setSize({ width: holder.clientWidth, height: 160 })).observe(holder);
  }

  // --- not finished yet: follow the file and show the result when it is done -----------------
  if (data.status === "pending" || data.status === "processing") {
    const source = new EventSource(`/files/${data.file_id}/events`);
    const status = document.getElementById("file-status");
    source.addEventListener("status", (e) => {
      const state = JSON.parse(e.data);
      status.textContent = state.status;
      status.className = `status s-${state.status}`;
    });
    source.addEventListener("end", () => {
      source.close();
      location.replace(`/files/${data.file_id}`);
    });
  }
})();
