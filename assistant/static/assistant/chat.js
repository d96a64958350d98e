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
    const item = el("li");
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
      } else if (ev.event === "done") {
        linkMarkers(body, sources, prefix);
        footer.textContent = ev.model ? `Answered by ${ev.model}` : "";
      } else if (ev.event === "error") {
        answer.append(el("p", "error", ev.message));
      }
    }
  } catch (error) {
    answer.append(el("p", "error", `The answer could not be loaded: ${error.message}`));
  } finally {
    answer.classList.remove("streaming");
    button.disabled = false;
  }
});
