// Live progress of the collection page's connectors: while a sync runs, the state,
// the item seen / fetched / failed counts and the item being worked on follow it,
// read from the collection's progress.json (managers only). Polls every 2 s while
// a connector is queued or running, every 15 s otherwise (a sync started elsewhere
// shows up too); stops while the tab is hidden. Without script the page shows the
// counts of when it was loaded, as before.

const section = document.getElementById("connectors");
const url = section && section.dataset.progressUrl;
const FIELDS = ["state_display", "cursor", "seen", "fetched", "failed"];

async function poll() {
  let busy = false;
  if (!document.hidden) {
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.ok) {
        const data = await response.json();
        for (const connector of data.connectors) {
          const row = section.querySelector(`tr[data-connector="${connector.id}"]`);
          if (!row) continue;
          row.dataset.state = connector.state;
          for (const field of FIELDS) {
            const cell = row.querySelector(`[data-field="${field}"]`);
            const value = String(connector[field] ?? "");
            if (cell && cell.textContent !== value) cell.textContent = value;
          }
          busy = busy || connector.state !== "idle";
        }
      }
    } catch {
      // The server is briefly away (a restart): try again at the next tick.
    }
  }
  setTimeout(poll, busy ? 2000 : 15000);
}

if (url) poll();
