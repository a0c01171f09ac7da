// /files: uploads with per-file progress (one request per file, drag and drop or the chooser)
// and live status over Server-Sent Events; changed rows are fetched as HTML from /files/rows,
// rendered by the same template as the page.
(() => {
  "use strict";
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const table = document.getElementById("files");
  const tbody = table.tBodies[0];
  const live = document.getElementById("live");
  const PARALLEL = 3;

  // --- uploads -------------------------------------------------------------------------------
  const form = document.getElementById("upload");
  if (form) {
    const input = document.getElementById("file-input");
    const drop = document.getElementById("drop");
    const list = document.getElementById("progress");
    const waiting = [];
    let running = 0;

    const pump = () => {
      while (running < PARALLEL && waiting.length) {
        running += 1;
        sendOne(waiting.shift()).finally(() => { running -= 1; pump(); });
      }
    };
    const enqueue = (files) => {
      for (const file of files) waiting.push({ file, item: progressItem(file) });
      pump();
    };
    const progressItem = (file) => {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.className = "pname";
      name.textContent = file.name;
      const state = document.createElement("span");
      state.className = "pstate";
      state.textContent = "waiting";
      const bar = document.createElement("progress");
      bar.max = 1;
      bar.value = 0;
      bar.setAttribute("aria-label", `upload of ${file.name}`);
      li.append(name, state, bar);
      list.prepend(li);
      return { li, state, bar };
    };
    const sendOne = ({ file, item }) => new Promise((resolve) => {
      const data = new FormData(form);
      data.delete("file");
      data.append("file", file, file.name);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.setRequestHeader("X-CSRF-Token", csrf);
      item.state.textContent = "uploading";
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) {
          item.bar.value = e.loaded / e.total;
          item.state.textContent = `${Math.round((100 * e.loaded) / e.total)} %`;
        }
      });
      xhr.addEventListener("load", () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch (_) { body = null; }
        if (xhr.status >= 200 && xhr.status < 300 && body && body.items) {
          const answer = body.items[0];
          item.bar.value = 1;
          item.state.textContent = answer.outcome === "duplicate" ? "already uploaded" : "uploaded";
          item.li.dataset.id = answer.id;
          wanted.add(answer.id);
          schedule();
        } else {
          item.li.classList.add("failed");
          item.state.textContent = (body && body.error) || `failed (HTTP ${xhr.status})`;
        }
        resolve();
      });
      xhr.addEventListener("error", () => {
        item.li.classList.add("failed");
        item.state.textContent = "failed (connection lost)";
        resolve();
      });
      xhr.send(data);
    });

    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (input.files.length) enqueue([...input.files]);
      input.value = "";
    });
    input.addEventListener("change", () => {
      if (input.files.length) enqueue([...input.files]);
      input.value = "";
    });
    for (const name of ["dragenter", "dragover"]) {
      drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
    }
    for (const name of ["dragleave", "drop"]) {
      drop.addEventListener(name, () => drop.classList.remove("over"));
    }
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      if (e.dataTransfer && e.dataTransfer.files.length) enqueue([...e.dataTransfer.files]);
    });
  }

  // --- live status ---------------------------------------------------------------------------
  const wanted = new Set();
  const filterStatus = table.dataset.filterStatus;
  const filterFormat = table.dataset.filterFormat;
  const firstPage = table.dataset.firstPage === "true";
  let timer = null;

  const schedule = () => {
    if (timer === null) timer = setTimeout(refresh, 150);
  };
  const matches = (row) =>
    (!filterStatus || row.dataset.status === filterStatus) &&
    (!filterFormat || row.cells[4].textContent.trim() === filterFormat);

  const refresh = async () => {
    timer = null;
    const ids = [...wanted].slice(0, 50);
    ids.forEach((id) => wanted.delete(id));
    if (!ids.length) return;
    const query = ids.map((id) => `id=${encodeURIComponent(id)}`).join("&");
    let html;
    try {
      const answer = await fetch(`/files/rows?${query}`, { headers: { Accept: "text/html" } });
      if (!answer.ok) return;
      html = await answer.text();
    } catch (_) {
      return;
    }
    const template = document.createElement("template");
    template.innerHTML = html;
    // Newest last, so that inserting each at the top keeps newest first.
    const rows = [...template.content.querySelectorAll("tr")].reverse();
    for (const row of rows) {
      const old = document.getElementById(row.id);
      if (old) {
        old.replaceWith(row);
      } else if (firstPage && matches(row)) {
        tbody.prepend(row);
        document.getElementById("empty")?.remove();
      }
    }
    if (wanted.size) schedule();
  };

  const connect = () => {
    const source = new EventSource("/files/events");
    source.addEventListener("open", () => { live.dataset.state = "open"; live.textContent = "live"; });
    source.addEventListener("status", (e) => {
      const change = JSON.parse(e.data);
      if (change.deleted) {
        document.getElementById(`file-${change.id}`)?.remove();
        return;
      }
      wanted.add(change.id);
      schedule();
    });
    source.addEventListener("end", () => {
      source.close();
      live.dataset.state = "closed";
      live.textContent = "signed out";
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        live.dataset.state = "closed";
        live.textContent = "offline";
      } else {
        live.dataset.state = "connecting";
        live.textContent = "reconnecting";
      }
    });
  };
  connect();
})();
