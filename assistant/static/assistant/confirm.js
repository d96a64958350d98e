// A confirmation before every destructive action: a form with data-confirm="question"
// asks it in the page's <dialog id="confirm-dialog"> and is sent only on "Confirm"
// (data-confirm-button names that button, e.g. "Revoke"). Without script the form is
// sent at once, as before; the server checks every action either way.

const dialog = document.getElementById("confirm-dialog");

if (dialog) {
  const text = dialog.querySelector("#confirm-text");
  const yes = dialog.querySelector("button[value=ok]");
  const yesLabel = yes.textContent;
  let pending = null;

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) return;
    if (form.dataset.confirmed === "1") {
      delete form.dataset.confirmed;
      return;
    }
    event.preventDefault();
    pending = { form, submitter: event.submitter };
    text.textContent = form.dataset.confirm;
    yes.textContent = form.dataset.confirmButton || yesLabel;
    dialog.returnValue = "";
    dialog.showModal();
    dialog.querySelector("button[value=cancel]").focus();
  });

  dialog.addEventListener("close", () => {
    const current = pending;
    pending = null;
    if (!current || dialog.returnValue !== "ok") return;
    current.form.dataset.confirmed = "1";
    current.form.requestSubmit(current.submitter && current.submitter.form === current.form ? current.submitter : undefined);
  });
}
