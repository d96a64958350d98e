// Uploads on a collection page: files and whole folders, dropped or chosen, sent one
// file per request (a few at a time) to the same upload address as the plain form,
// each with its own progress bar and outcome (accepted, duplicate, rejected and why).
// Without this script the form still posts every chosen file at once.

const form = document.getElementById("upload-form");
const zone = document.getElementById("dropzone");
const list = document.getElementById("upload-progress");
const PARALLEL = 3;

const queue = [];
let running = 0;

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}

// A dropped folder arrives as an entry tree: read every level (readEntries answers in parts).
async function filesOf(entry, prefix = "") {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    return [{ file, path: prefix + file.name }];
  }
  if (!entry.isDirectory) return [];
  const reader = entry.createReader();
  const found = [];
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    for (const child of batch) found.push(...(await filesOf(child, `${prefix}${entry.name}/`)));
  }
  return found;
}

function hidden(path) {
  return path.split("/").some((part) => part.startsWith("."));
}

function restriction() {
  const select = form.querySelector("select[name=restrict_to_groups]");
  return select ? [...select.selectedOptions].map((o) => o.value) : [];
}

function item(path) {
  const progress = el("progress", { max: 100, value: 0 });
  progress.setAttribute("aria-label", path);
  const outcome = el("span", { className: "outcome" });
  const li = el("li", { className: "sending" }, el("span", { className: "name", textContent: path }), progress, outcome);
  list.append(li);
  return { li, progress, outcome };
}

function finish(view, kind, text, link) {
  view.li.className = kind;
  view.progress.value = 100;
  view.outcome.replaceChildren(text);
  if (link) view.outcome.append(" ", el("a", { href: link.url, textContent: link.name }));
}

function send({ file, path }, view) {
  return new Promise((resolve) => {
    const data = new FormData();
    data.append("csrfmiddlewaretoken", form.querySelector("input[name=csrfmiddlewaretoken]").value);
    data.append("files", file, file.name);
    for (const group of restriction()) data.append("restrict_to_groups", group);
    const request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("Accept", "application/json");
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) view.progress.value = Math.round((event.loaded / event.total) * 100);
    });
    request.addEventListener("load", () => {
      let answer = null;
      try {
        answer = JSON.parse(request.responseText);
      } catch (error) {
        answer = null;
      }
      const outcome = answer && answer.outcomes && answer.outcomes[0];
      if (outcome) {
        finish(view, outcome.outcome, outcome.message, outcome.outcome === "rejected" ? null : outcome.document);
      } else {
        finish(view, "rejected", (answer && answer.error) || `${request.status} ${request.statusText}`);
      }
      resolve();
    });
    request.addEventListener("error", () => {
      finish(view, "rejected", form.dataset.labelNetwork || "The connection was lost.");
      resolve();
    });
    request.send(data);
  });
}

function pump() {
  while (running < PARALLEL && queue.length) {
    const next = queue.shift();
    running += 1;
    send(next.file, next.view).then(() => {
      running -= 1;
      document.dispatchEvent(new CustomEvent("uploads:finished"));
      pump();
    });
  }
}

function enqueue(files) {
  for (const file of files) {
    if (hidden(file.path)) continue; // .DS_Store, .git: not documents
    document.dispatchEvent(new CustomEvent("uploads:started"));
    queue.push({ file, view: item(file.path) });
  }
  pump();
}

if (form && zone && list) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = [];
    for (const input of form.querySelectorAll("input[type=file]")) {
      for (const file of input.files) chosen.push({ file, path: file.webkitRelativePath || file.name });
      input.value = "";
    }
    enqueue(chosen);
  });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const items = [...(event.dataTransfer.items || [])];
    const entries = items.map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null));
    if (entries.length && entries.every((e) => e)) {
      const found = [];
      for (const entry of entries) found.push(...(await filesOf(entry)));
      enqueue(found);
    } else {
      enqueue([...event.dataTransfer.files].map((file) => ({ file, path: file.name })));
    }
  });
}
