// The documents table of a collection page, kept live: polls the JSON endpoint for
// the page on screen (same filters, order and page number as the address) while a
// document on it is still queued or being processed, or an upload is under way, and
// redraws only the rows of that page. Checked boxes survive a redraw.

const table = document.getElementById("documents");
const summary = document.getElementById("summary");
const ACTIVE = new Set(["queued", "parsing", "embedding"]);
const POLL_MS = 1500;
let timer = null;
let lastPayload = "";
let uploading = 0;

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function label(name) {
  return table.dataset[`label${name}`] || "";
}

function checkedIds() {
  return new Set([...table.querySelectorAll("tbody input[name=ids]:checked")].map((box) => box.value));
}

function statusCell(doc) {
  const td = el("td", {}, el("span", { className: `status ${doc.status}`, textContent: doc.status_label || doc.status }));
  if ((doc.status === "embedding" || doc.status === "parsing") && doc.progress_total) {
    const unit = doc.status === "parsing" ? `${label("Page")} ` : "";
    td.append(" ", el("span", { className: "muted small", textContent: `${unit}${doc.progress_done}/${doc.progress_total}` }));
  }
  return td;
}

function row(doc, checked) {
  const tr = el("tr");
  tr.dataset.id = doc.id;
  const box = el("input", { type: "checkbox", name: "ids", value: String(doc.id), checked: checked.has(String(doc.id)) });
  box.setAttribute("form", "bulk");
  box.setAttribute("aria-label", `${label("Select")} ${doc.name}`);
  const name = el("td", {}, doc.parent_id ? el("span", { className: "muted", textContent: "↳ " }) : null,
    el("a", { href: doc.url, textContent: doc.name }));
  if (doc.file_type) name.append(" ", el("span", { className: "muted small", textContent: doc.file_type }));
  if (doc.restricted_to.length) {
    name.append(" ", el("span", { className: "muted small", textContent: `🔒 ${doc.restricted_to.join(", ")}` }));
  }
  const time = el("td", { className: "nowrap", textContent: doc.created_label });
  if (doc.elapsed_s !== null) time.append(" ", el("span", { className: "muted small", textContent: `(${doc.elapsed_s} s)` }));
  const error = el("td", {}, doc.error ? el("span", { className: "error small", textContent: doc.error }) : null);
  if (doc.status === "failed") {
    const retry = el("button", { type: "submit", name: "retry", value: String(doc.id), className: "link", textContent: label("Retry") });
    retry.setAttribute("form", "bulk");
    error.append(" ", retry);
  }
  const remove = el("button", { type: "submit", name: "delete", value: String(doc.id), className: "link danger", textContent: label("Delete") });
  remove.setAttribute("form", "bulk");
  tr.append(
    el("td", {}, box), name, statusCell(doc),
    el("td", { textContent: doc.pages ?? "" }), el("td", { textContent: String(doc.chunks) }),
    el("td", { className: "nowrap", textContent: doc.size_label }), el("td", { textContent: doc.uploader }),
    time, error, el("td", {}, remove),
  );
  return tr;
}

function render(data) {
  const s = data.summary;
  summary.textContent = label("Summary")
    .replace("{total}", s.total).replace("{ready}", s.ready).replace("{failed}", s.failed)
    .replace("{active}", s.queued + s.parsing + s.embedding).replace("{chunks}", s.chunks);
  const pager = document.getElementById("pager-text");
  if (pager) {
    const p = data.page;
    pager.textContent = label("Pager").replace("{number}", p.number).replace("{pages}", p.pages).replace("{total}", p.total);
  }
  const checked = checkedIds();
  const body = table.tBodies[0];
  // Focus stays where it was when a redraw would not change what is shown.
  const rows = data.documents.map((doc) => row(doc, checked));
  if (!rows.length) {
    const td = el("td", { className: "muted", colSpan: 10, textContent: label("Empty") });
    rows.push(el("tr", { className: "empty" }, td));
  }
  body.replaceChildren(...rows);
}

async function poll() {
  timer = null;
  let active = uploading > 0;
  try {
    const response = await fetch(table.dataset.statusUrl + window.location.search, {
      credentials: "same-origin", headers: { Accept: "application/json" },
    });
    if (response.ok) {
      const text = await response.text();
      const data = JSON.parse(text);
      if (text !== lastPayload) {
        lastPayload = text;
        render(data);
      }
      active = active || data.documents.some((d) => ACTIVE.has(d.status)) || data.summary.queued + data.summary.parsing + data.summary.embedding > 0;
    } else {
      active = true;
    }
  } catch (error) {
    summary.textContent = label("Paused");
    active = true;
  }
  if (active) schedule();
}

function schedule() {
  if (timer === null) timer = setTimeout(poll, POLL_MS);
}

if (table) {
  // upload.js tells the table when uploads start and end: new rows appear while it runs.
  document.addEventListener("uploads:started", () => { uploading += 1; schedule(); });
  document.addEventListener("uploads:finished", () => { uploading = Math.max(0, uploading - 1); schedule(); });
  const all = document.getElementById("check-all");
  if (all) {
    all.addEventListener("change", () => {
      for (const box of table.querySelectorAll("tbody input[name=ids]")) box.checked = all.checked;
    });
  }
  poll();
}
