// The chat page: streams answers from the server-sent events of POST /chat/<id>/ask,
// with stop, regenerate, copy, edit-and-resend and the source panel.
// Plain module, no dependencies: the page loads nothing from outside the product.
// Answer text is shown as plain text while it streams; at the end the server's
// sanitized HTML (Markdown rendered, citation chips) replaces it.
// Texts are translated through Django's JavaScript catalog (/jsi18n/, loaded before
// this module); without it they stay English.

const gettext = window.gettext ?? ((text) => text);
const ngettext = window.ngettext ?? ((one, many, n) => (n === 1 ? one : many));
const interpolate = window.interpolate ?? ((format, values) => format.replace(/%\((\w+)\)s/g, (_, k) => String(values[k])));
// "%(name)s" placeholders filled from an object.
const fill = (format, values) => interpolate(format, values, true);

const form = document.getElementById("ask");
const thread = document.getElementById("thread");
const panel = document.getElementById("source-panel");
const sidebar = document.getElementById("sidebar");

// A phone shows the conversation list folded.
if (sidebar && window.matchMedia("(max-width: 48rem)").matches) sidebar.open = false;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function csrfToken() {
  return document.querySelector("[name=csrfmiddlewaretoken]")?.value ?? "";
}

// Where a connector found the document, as chat/_source_link.html shows it. Only
// source_url becomes a link: the server sets it for web addresses alone
// (assistant/chat/links.py); any other source_link is text to copy.
function inSource(c) {
  const where = el("p", "in-source small");
  if (c.source_url) {
    const open = el("a", "open-in-source", gettext("Open in source"));
    open.href = c.source_url;
    open.target = "_blank";
    open.rel = "noopener noreferrer";
    where.append(open);
  } else {
    const path = el("code", "copyable", c.source_link);
    path.title = gettext("Copy this path to open the file in its share");
    where.append(el("span", "label", gettext("In the source:")), " ", path);
  }
  return where;
}

function renderCitations(list, citations, messageId) {
  list.replaceChildren();
  for (const c of citations) {
    const item = el("li", c.cited === false ? "uncited" : "");
    item.value = c.n;
    item.id = `m${messageId}-c${c.n}`;
    const link = el("a", "source-link", c.document + (c.page_label ? ", " + fill(gettext("page %(page)s"), { page: c.page_label }) : ""));
    link.href = `#${item.id}`;
    link.dataset.n = c.n;
    item.append(link);
    if (c.source_link) item.append(inSource(c));
    item.append(el("blockquote", "", c.text.length > 400 ? c.text.slice(0, 399) + "…" : c.text));
    list.append(item);
  }
}

// Parses an SSE byte stream into {event, data} objects.
async function* readEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
      if (data) yield JSON.parse(data);
    }
  }
}

// --- The question box: Enter sends, Shift+Enter adds a line, the limit is shown ---

const textarea = form?.querySelector("textarea");
const sendButton = form?.querySelector("button.send");
const stopButton = form?.querySelector("button.stop");
const counter = document.getElementById("question-count");
const max = Number(form?.dataset.max || 4000);
let replaceLast = false;
let streaming = null; // the AbortController of the answer being streamed

function updateCounter() {
  const length = textarea.value.trim().length;
  const over = length > max;
  const numbers = { length: length.toLocaleString(), max: max.toLocaleString() };
  counter.textContent = over
    ? fill(gettext("%(length)s / %(max)s characters: shorten the question to send it."), numbers)
    : length > max * 0.8 ? fill(gettext("%(length)s / %(max)s characters"), numbers) : "";
  counter.classList.toggle("error", over);
  textarea.setAttribute("aria-invalid", over ? "true" : "false");
  sendButton.disabled = over || streaming !== null;
}

textarea?.addEventListener("input", updateCounter);
textarea?.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});

function lastOf(selector) {
  const all = thread.querySelectorAll(selector);
  return all.length ? all[all.length - 1] : null;
}

// The last question and its answer leave the page when they are asked again.
function dropLastTurn() {
  const question = lastOf("article.msg.user");
  if (!question) return;
  let node = question;
  while (node) {
    const next = node.nextElementSibling;
    node.remove();
    node = next;
  }
}

function answerActions(article) {
  const actions = el("div", "answer-actions");
  const copy = el("button", "link copy", gettext("Copy"));
  copy.type = "button";
  const again = el("button", "link regenerate", gettext("Regenerate"));
  again.type = "button";
  const status = el("span", "muted small action-status");
  status.setAttribute("aria-live", "polite");
  actions.append(copy, again, status);
  article.append(actions);
}

function markLastTurn() {
  for (const node of thread.querySelectorAll(".edit-question")) node.remove();
  const question = lastOf("article.msg.user");
  if (question && !streaming) {
    const edit = el("button", "link edit-question", gettext("Edit and resend"));
    edit.type = "button";
    question.append(edit);
  }
  for (const button of thread.querySelectorAll("button.regenerate")) {
    button.hidden = button.closest("article") !== lastOf("article.msg.assistant") || streaming !== null;
  }
}

async function ask(question, { replace = false } = {}) {
  if (replace) dropLastTurn();
  const asked = el("article", "msg user");
  asked.append(el("div", "body", question));
  const searched = el("p", "searched muted small");
  searched.hidden = true;
  asked.append(searched);
  const answer = el("article", "msg assistant streaming");
  const warning = el("p", "warning");
  warning.setAttribute("role", "status");
  warning.hidden = true;
  const notice = el("p", "banner");
  notice.hidden = true;
  const reasoning = el("details", "reasoning");
  reasoning.append(el("summary", "", gettext("Reasoning")), el("div", "reasoning-text"));
  reasoning.hidden = true;
  const body = el("div", "body");
  const citations = el("ol", "citations");
  const footer = el("p", "muted small");
  answer.append(notice, warning, reasoning, body, citations, footer);
  thread.append(asked, answer);

  const controller = new AbortController();
  streaming = controller;
  stopButton.hidden = false;
  updateCounter();
  markLastTurn();
  let sources = [];
  let ended = false;
  try {
    const data = new FormData();
    data.append("question", question);
    if (replace) data.append("replace_last", "1");
    const response = await fetch(form.action, {
      method: "POST",
      body: data,
      headers: { "X-CSRFToken": csrfToken() },
      credentials: "same-origin",
      signal: controller.signal,
    });
    if (!response.ok) throw new Error((await response.text()) || `HTTP ${response.status}`);
    textarea.value = ""; // only now: a refused question stays in the box
    updateCounter();
    for await (const ev of readEvents(response)) {
      if (ev.event === "sources") {
        sources = ev.citations;
        renderCitations(citations, sources, "live");
        if (ev.searched && ev.searched.length && (ev.searched.length > 1 || ev.searched[0] !== question)) {
          searched.textContent = fill(gettext("Searched for: %(queries)s"), { queries: ev.searched.join(" · ") });
          searched.hidden = false;
        }
        if (ev.low_relevance) {
          warning.textContent = thread.dataset.lowRelevanceWarning;
          warning.hidden = false;
        }
        if (ev.pending_documents) {
          notice.textContent = fill(
            ngettext(
              "%(count)s document of this collection is still being indexed and could not be searched yet.",
              "%(count)s documents of this collection are still being indexed and could not be searched yet.",
              ev.pending_documents,
            ),
            { count: ev.pending_documents },
          );
          notice.hidden = false;
        }
      } else if (ev.event === "reasoning") {
        reasoning.hidden = false;
        reasoning.querySelector(".reasoning-text").textContent += ev.text;
      } else if (ev.event === "token") {
        body.textContent += ev.text;
      } else if (ev.event === "done" || ev.event === "error") {
        ended = true;
        answer.id = `m${ev.message_id}`;
        answer.dataset.messageId = ev.message_id;
        // The stored answer replaces the streamed text: rendered and sanitized by the
        // server, markers naming no source removed, each cited source a chip.
        if (typeof ev.html === "string") {
          body.innerHTML = ev.html;
          body.classList.add("md");
        }
        if (ev.citations) renderCitations(citations, ev.citations, ev.message_id);
        if (ev.event === "done") {
          footer.textContent = ev.model ? fill(gettext("Answered by %(model)s"), { model: ev.model }) : "";
          answerActions(answer);
          if (ev.message_id && form.dataset.feedbackUrl) {
            answer.append(feedbackForm(form.dataset.feedbackUrl.replace("/0/", `/${ev.message_id}/`)));
          }
        } else {
          failed(answer, ev.message);
        }
      }
    }
    if (!ended) throw new Error(gettext("the connection closed before the answer was complete"));
  } catch (error) {
    if (error.name === "AbortError") {
      answer.append(el("p", "muted small stopped", gettext("Stopped. The question can be asked again with Retry.")));
      retryButton(answer, question);
    } else {
      if (!body.textContent && !textarea.value) textarea.value = question; // nothing lost on an error
      updateCounter();
      failed(answer, fill(gettext("The answer could not be loaded: %(reason)s"), { reason: error.message }), question);
    }
  } finally {
    answer.classList.remove("streaming");
    streaming = null;
    stopButton.hidden = true;
    updateCounter();
    markLastTurn();
  }
}

function failed(answer, message, question) {
  const error = el("p", "error", message);
  error.setAttribute("role", "alert");
  answer.append(error);
  retryButton(answer, question ?? lastOf("article.msg.user")?.querySelector(".body")?.textContent ?? "");
}

function retryButton(answer, question) {
  if (!question) return;
  const retry = el("button", "retry", gettext("Retry"));
  retry.type = "button";
  retry.addEventListener("click", () => ask(question, { replace: true }));
  answer.append(retry);
}

form?.addEventListener("submit", (event) => {
  event.preventDefault();
  const question = textarea.value.trim();
  if (!question || question.length > max || streaming) return;
  const replace = replaceLast;
  replaceLast = false;
  ask(question, { replace });
});

stopButton?.addEventListener("click", () => streaming?.abort());

// --- Actions on answers: copy, regenerate, edit and resend, open a source ---

thread?.addEventListener("click", async (event) => {
  const target = event.target instanceof Element ? event.target : null;
  if (!target) return;
  const article = target.closest("article");
  if (target.matches("button.copy")) {
    const status = article.querySelector(".action-status");
    try {
      await navigator.clipboard.writeText(article.querySelector(".body").innerText);
      status.textContent = gettext("Copied.");
    } catch {
      status.textContent = gettext("Copying is not allowed here: select the text instead.");
    }
  } else if (target.matches("button.regenerate")) {
    const question = lastOf("article.msg.user")?.querySelector(".body")?.textContent;
    if (question && !streaming) ask(question, { replace: true });
  } else if (target.matches("button.edit-question")) {
    textarea.value = article.querySelector(".body").textContent;
    replaceLast = true;
    updateCounter();
    textarea.focus();
  } else if (target.matches("a.cite, a.source-link")) {
    const id = article?.dataset.messageId;
    if (!id || !panel) return; // still streaming: the anchor below is enough
    event.preventDefault();
    openSource(id, target.dataset.n, target);
  }
});

let opener = null;

async function openSource(messageId, n, from) {
  const content = panel.querySelector(".source-content");
  const url = form.dataset.sourceUrl.replace(/\/0\/sources\/0$/, `/${messageId}/sources/${n}`);
  opener = from;
  panel.hidden = false;
  content.textContent = gettext("Loading the source…");
  try {
    const response = await fetch(url, { credentials: "same-origin" });
    const text = await response.text();
    if (!response.ok) throw new Error(text || `HTTP ${response.status}`);
    // Rendered by the server from escaped text: no script can run from it (and the
    // page's policy refuses inline script anyway).
    const parsed = new DOMParser().parseFromString(text, "text/html");
    content.replaceChildren(...parsed.body.childNodes);
  } catch (error) {
    content.textContent = fill(gettext("The source could not be opened: %(reason)s"), { reason: error.message });
  }
  panel.querySelector("button.close").focus();
}

function closeSource() {
  panel.hidden = true;
  opener?.focus();
}

panel?.querySelector("button.close").addEventListener("click", closeSource);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && panel && !panel.hidden) closeSource();
});

// Thumbs up/down under each answer: a POST with the CSRF token, no page reload.
function feedbackForm(url) {
  const node = el("form", "feedback");
  node.method = "post";
  node.action = url;
  for (const [value, label, symbol] of [["1", gettext("Helpful"), "👍"], ["-1", gettext("Not helpful"), "👎"]]) {
    const button = el("button", "link", symbol);
    button.type = "submit";
    button.name = "rating";
    button.value = value;
    button.title = label;
    button.setAttribute("aria-label", label);
    node.append(button);
  }
  const comment = el("input", "small");
  comment.type = "text";
  comment.name = "comment";
  comment.maxLength = 2000;
  comment.placeholder = gettext("Comment (optional)");
  comment.setAttribute("aria-label", gettext("Comment on this answer"));
  const status = el("span", "muted small status");
  status.setAttribute("aria-live", "polite");
  node.append(comment, status);
  return node;
}

thread?.addEventListener("submit", async (event) => {
  const target = event.target;
  if (!(target instanceof HTMLFormElement) || !target.classList.contains("feedback")) return;
  event.preventDefault();
  const rating = event.submitter?.value;
  if (!rating) return;
  const status = target.querySelector(".status");
  const data = new FormData();
  data.append("rating", rating);
  data.append("comment", target.querySelector("[name=comment]").value);
  try {
    const response = await fetch(target.action, {
      method: "POST",
      body: data,
      headers: { "X-CSRFToken": csrfToken() },
      credentials: "same-origin",
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error?.message || `HTTP ${response.status}`);
    for (const button of target.querySelectorAll("button[name=rating]")) {
      button.classList.toggle("chosen", button.value === String(body.rating));
    }
    target.dataset.rating = String(body.rating);
    status.textContent = gettext("Thanks for the feedback.");
  } catch (error) {
    status.textContent = fill(gettext("Feedback not saved: %(reason)s"), { reason: error.message });
  }
});

if (form) {
  updateCounter();
  markLastTurn();
}
