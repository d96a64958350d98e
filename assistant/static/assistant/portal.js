// Live document status on a collection page: polls the JSON status endpoint while
// anything is still queued or being processed.

const table = document.getElementById("documents");
const summary = document.getElementById("summary");
const ACTIVE = new Set(["queued", "parsing", "embedding"]);
let reloading = false;

function cell(text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.textContent = text ?? "";
  return td;
}

function render(data) {
  const s = data.summary;
  summary.textContent = `${s.ready} ready · ${s.queued + s.parsing + s.embedding} in progress · ${s.failed} failed · ${s.chunks} passages`;
  for (const doc of data.documents) {
    const row = table.querySelector(`tr[data-id="${doc.id}"]`);
    if (!row) {
      // A file found inside another (an attachment, an archive member) appeared:
      // reload once to show it with its delete form.
      if (!reloading) {
        reloading = true;
        window.location.reload();
      }
      continue;
    }
    const statusCell = row.children[2];
    const badge = document.createElement("span");
    badge.className = `status ${doc.status}`;
    badge.textContent = doc.status;
    statusCell.replaceChildren(badge);
    if ((doc.status === "embedding" || doc.status === "parsing") && doc.progress_total) {
      const progress = document.createElement("span");
      progress.className = "muted small";
      const unit = doc.status === "parsing" ? "page " : "";
      progress.textContent = ` ${unit}${doc.progress_done}/${doc.progress_total}`;
      statusCell.append(progress);
    }
    if (doc.error) {
      const err = document.createElement("div");
      err.className = "error small";
      err.textContent = doc.error;
      statusCell.append(err);
    }
    row.children[1].textContent = doc.file_type;
    row.children[3].textContent = doc.pages ?? "";
    row.children[4].textContent = doc.chunks;
    row.children[5].textContent = doc.elapsed_s == null ? "" : `${doc.elapsed_s} s`;
  }
  return data.documents.some((d) => ACTIVE.has(d.status));
}

async function poll() {
  try {
    const response = await fetch(table.dataset.statusUrl, { credentials: "same-origin" });
    if (response.ok && !render(await response.json())) return;
  } catch (error) {
    summary.textContent = "Status updates paused (connection lost); retrying…";
  }
  setTimeout(poll, 1500);
}

if (table) poll();
