// Streams an answer from the server-sent events of POST /chat/<id>/ask.
// Plain module, no dependencies: the page loads nothing from outside the product.

const form = document.getElementById("ask");
const thread = document.getElementById("thread");

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// Replaces the streamed plain text with the same text where each [n] naming a
// source links to it. Text nodes only: answer text is never parsed as HTML.
function linkMarkers(body, citations, prefix) {
  const known = new Set(citations.map((c) => c.n));
  const text = body.textContent;
  body.replaceChildren();
  let last = 0;
  for (const match of text.matchAll(/\[(\d{1,3})\]/g)) {
    const n = Number(match[1]);
    if (!known.has(n)) continue;
    body.append(document.createTextNode(text.slice(last, match.index)));
    const a = el("a", "cite", `[${n}]`);
    a.href = `#${prefix}-c${n}`;
    body.append(a);
    last = match.index + match[0].length;
  }
  body.append(document.createTextNode(text.slice(last)));
}

function renderCitations(list, citations, prefix) {
  list.replaceChildren();
  for (const c of citations) {
    const item = el("li", c.cited === false ? "uncited" : "");
    item.value = c.n;
    item.id = `${prefix}-c${c.n}`;
    item.append(el("strong", "", c.document));
    if (c.page_label) item.append(document.createTextNode(`, page ${c.page_label}`));
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

form?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const textarea = form.querySelector("textarea");
  const question = textarea.value.trim();
  if (!question) return;
  const button = form.querySelector("button");
  button.disabled = true;

  const asked = el("article", "msg user");
  asked.append(el("div", "body", question));
  const answer = el("article", "msg assistant streaming");
  const body = el("div", "body");
  const notice = el("p", "muted small");
  const warning = el("p", "warning");
  warning.setAttribute("role", "status");
  warning.hidden = true;
  const citations = el("ol", "citations");
  const footer = el("p", "muted small");
  const prefix = `live${Date.now()}`;
  let sources = [];
  answer.append(notice, warning, body, citations, footer);
  thread.append(asked, answer);
  textarea.value = "";

  try {
    const data = new FormData();
    data.append("question", question);
    const response = await fetch(form.action, {
      method: "POST",
      body: data,
      headers: { "X-CSRFToken": form.querySelector("[name=csrfmiddlewaretoken]").value },
      credentials: "same-origin",
    });
    if (!response.ok) throw new Error(await response.text() || `HTTP ${response.status}`);
    for await (const ev of readEvents(response)) {
      if (ev.event === "sources") {
        sources = ev.citations;
        renderCitations(citations, sources, prefix);
        if (ev.low_relevance) {
          warning.textContent = thread.dataset.lowRelevanceWarning;
          warning.hidden = false;
        }
        if (ev.pending_documents) notice.textContent = `${ev.pending_documents} document(s) of this collection are still being indexed and could not be searched yet.`;
      } else if (ev.event === "token") {
        body.textContent += ev.text;
        answer.scrollIntoView({ block: "end" });
      } else if (ev.event === "done" || ev.event === "error") {
        // The stored answer replaces the streamed text: markers naming no source are
        // removed from it, and the sources say which of them the answer cites.
        if (typeof ev.text === "string") body.textContent = ev.text;
        if (ev.citations) {
          sources = ev.citations;
          renderCitations(citations, sources, prefix);
        }
        linkMarkers(body, sources, prefix);
        if (ev.event === "done") {
          footer.textContent = ev.model ? `Answered by ${ev.model}` : "";
          if (ev.message_id && form.dataset.feedbackUrl) {
            answer.append(feedbackForm(form.dataset.feedbackUrl.replace("/0/", `/${ev.message_id}/`)));
          }
        } else {
          answer.append(el("p", "error", ev.message));
        }
      }
    }
  } catch (error) {
    answer.append(el("p", "error", `The answer could not be loaded: ${error.message}`));
  } finally {
    answer.classList.remove("streaming");
    button.disabled = false;
  }
});

// Thumbs up/down under each answer: a POST with the CSRF token, no page reload.
function csrfToken() {
  return form?.querySelector("[name=csrfmiddlewaretoken]")?.value ?? "";
}

function feedbackForm(url) {
  const node = el("form", "feedback");
  node.method = "post";
  node.action = url;
  for (const [value, label, symbol] of [["1", "Helpful", "👍"], ["-1", "Not helpful", "👎"]]) {
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
  comment.placeholder = "Comment (optional)";
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
    status.textContent = "Thanks for the feedback.";
  } catch (error) {
    status.textContent = `Feedback not saved: ${error.message}`;
  }
});
