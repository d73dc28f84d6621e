// The console's small behaviours: running timers and the selected row.
(function () {
  "use strict";

  function pad(n) { return String(n).padStart(2, "0"); }

  function tick() {
    const now = Date.now();
    document.querySelectorAll("time.timer").forEach((el) => {
      const since = Date.parse(el.getAttribute("datetime"));
      const until = el.dataset.until ? Date.parse(el.dataset.until) : now;
      const seconds = Math.max(0, Math.floor((until - since) / 1000));
      const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
      el.textContent = (h ? h + ":" + pad(m) : m) + ":" + pad(s);
    });
  }

  function markSelected() {
    const panel = document.querySelector("#session-panel .session-detail");
    const selected = panel ? panel.id.replace("session-detail-", "") : null;
    document.querySelectorAll("#session-rows tr[data-session]").forEach((row) => {
      row.setAttribute("aria-selected", String(row.dataset.session === selected));
    });
  }

  // The customer's page closed: the video area says so instead of its connection state,
  // following the head the server pushes (data-customer), until the customer is back.
  function showPresence() {
    const head = document.querySelector("#session-panel .session-head");
    const area = document.querySelector("#session-panel .video-area");
    if (!head || !area) return;
    const away = head.dataset.customer === "away";
    area.classList.toggle("customer-away", away);
    const note = area.querySelector(".video-away");
    if (note) note.hidden = !away;
  }

  // A row opens its panel: a click anywhere on it, or its name's link (Tab, Enter).
  // Delegated from the document: the list is replaced whenever a session changes, and a
  // click on a row htmx had not processed yet would be lost. The link opened in a new tab
  // (or without scripts) is the console with that session open.
  document.addEventListener("click", (event) => {
    const row = event.target.closest("#session-rows tr[data-detail]");
    if (!row) return;
    const link = event.target.closest("a.row-open");
    if (link) {
      if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
      event.preventDefault();
    } else if (event.target.closest("button, a")) {
      return;
    }
    openPanel(row.dataset.detail);
  });

  function openPanel(url) {
    htmx.ajax("GET", url, { target: "#session-panel" });
  }

  // /console/?session=N (a row's link opened on its own): that session's panel
  document.addEventListener("DOMContentLoaded", () => {
    const grid = document.querySelector(".console-grid[data-open]");
    if (grid) openPanel(grid.dataset.open);
  });

  document.addEventListener("htmx:afterSettle", () => { tick(); markSelected(); showPresence(); });
  document.addEventListener("htmx:oobAfterSwap", () => { tick(); markSelected(); showPresence(); });
  document.addEventListener("DOMContentLoaded", () => { tick(); setInterval(tick, 1000); });
})();

// A message belongs to the action that caused it: clear it when the next one starts.
document.addEventListener("htmx:beforeRequest", () => {
  const messages = document.getElementById("messages");
  if (messages) messages.replaceChildren();
});

// The New session dialog: tabs (click, arrow keys), Enter sends the open tab's button,
// Copy link (clipboard API; where it is missing or refused, the link is selected instead).
(function () {
  "use strict";

  function selectTab(tab, focus) {
    const list = tab.closest("[role=tablist]");
    list.querySelectorAll("[role=tab]").forEach((other) => {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      other.tabIndex = selected ? 0 : -1;
      const panel = document.getElementById(other.getAttribute("aria-controls"));
      if (panel) panel.hidden = !selected;
    });
    if (focus) tab.focus();
  }

  document.addEventListener("click", (event) => {
    const tab = event.target.closest("#new-session [role=tab]");
    if (tab) selectTab(tab, false);
    const copy = event.target.closest("#new-session [data-copy]");
    if (copy) copyLink(copy);
  });

  document.addEventListener("keydown", (event) => {
    const tab = event.target.closest("#new-session [role=tab]");
    if (tab) {
      const tabs = Array.from(tab.closest("[role=tablist]").querySelectorAll("[role=tab]"));
      const at = tabs.indexOf(tab);
      const next = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: tabs.length - 1 }[event.key];
      if (next !== undefined) {
        event.preventDefault();
        selectTab(tabs[(next + tabs.length) % tabs.length], true);
      }
      return;
    }
    const input = event.target.closest("form[data-new-session] input");
    if (input && event.key === "Enter" && input.type !== "radio") {
      // Implicit submission would press the first button (Create PIN); press the open tab's.
      const button = input.form.querySelector(".tabpanel:not([hidden]) button[type=submit]");
      if (button) {
        event.preventDefault();
        button.click();
      }
    }
  });

  function copyLink(button) {
    const field = document.querySelector(button.dataset.copy);
    const status = button.closest(".join-link").querySelector(".copy-status");
    const selectInstead = () => {
      field.focus();
      field.select();
      status.textContent = status.dataset.select;
    };
    if (!navigator.clipboard || !window.isSecureContext) {
      selectInstead();
      return;
    }
    navigator.clipboard.writeText(field.value).then(() => {
      status.textContent = status.dataset.copied;
    }, selectInstead);
  }
})();

// The New session window follows its session, as the manual has it: the page tells the
// socket which session the window shows ({type: "dialog"}), and the server pushes the
// window's customer line ("Customer connected", Start session) whenever it changes.
// Escape, Close, Cancel and a click outside close the window; its Start session closes it once the session
// has started.
(function () {
  "use strict";
  let told = null; // the session the server was last told about

  function shown() {
    const dialog = document.querySelector("#new-session[data-dialog-session]");
    return dialog ? Number(dialog.dataset.dialogSession) : null;
  }

  function tell(force) {
    if (!window.LensSocket) return;
    const session = shown();
    if (!force && session === told) return;
    if (LensSocket.send({ type: "dialog", session: session })) told = session;
  }

  function closeDialog() {
    const dialog = document.getElementById("new-session");
    if (dialog && dialog.open) dialog.close();
    if (dialog) dialog.remove();
    tell(false);
  }

  // A native modal <dialog>: focus moves into it, the page behind is inert, Escape closes
  // it. Each answer of the form brings a new one, opened as it comes.
  function openDialog() {
    const dialog = document.querySelector("#dialog-slot dialog#new-session");
    if (dialog && !dialog.open && dialog.isConnected) dialog.showModal();
  }

  document.addEventListener("DOMContentLoaded", () => {
    const slot = document.getElementById("dialog-slot");
    if (!slot) return;
    new MutationObserver(() => {
      // the session started (here or from the list): the window has done its job
      if (slot.querySelector("#new-session .dialog-customer:is([data-state=active], [data-state=on_hold])")) {
        closeDialog();
      }
      openDialog();
      tell(false);
    }).observe(slot, { childList: true, subtree: true });
    openDialog();
    if (window.LensSocket) LensSocket.onOpen(() => tell(true)); // a new socket knows nothing of the window
  });

  // Escape (the dialog's own "cancel"), Close, Cancel: closed, then gone from the page.
  document.addEventListener("close", (event) => {
    if (event.target.id !== "new-session" || !event.target.isConnected) return;
    event.target.remove();
    tell(false);
  }, true);

  document.addEventListener("click", (event) => {
    if (event.target.closest("#new-session [data-close-dialog]")) {
      closeDialog();
      return;
    }
    // a click on the backdrop lands on the dialog itself, outside its box
    const dialog = event.target;
    if (dialog.id !== "new-session" || dialog.tagName !== "DIALOG" || !dialog.open) return;
    const box = dialog.getBoundingClientRect();
    const inside = event.clientX >= box.left && event.clientX <= box.right &&
      event.clientY >= box.top && event.clientY <= box.bottom;
    if (!inside) closeDialog();
  });

  document.addEventListener("htmx:afterRequest", (event) => {
    const button = event.detail.elt;
    if (button && button.matches && button.matches("[data-dialog-start]") && event.detail.successful) {
      closeDialog();
    }
  });
})();
