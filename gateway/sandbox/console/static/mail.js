// chatgate sandbox console: the customer's mailbox.
//
// chatgate's mail reaches the sandbox's SMTP server, which files it per recipient.
// Here the person reads it (headers, HTML in a sandboxed frame where tracked links
// and the open pixel work, the plain text), answers it — a real reply with
// In-Reply-To/References sent to chatgate's SMTP receiver at the Reply-To address —
// writes new mail to the shop, and unsubscribes with RFC 8058 one-click.
"use strict";

(() => {
  const {h, toast, requestJson, menuButton, action, emptyState, registerPane} = window.chatgateConsole;

  function mailPane(ctx) {
    const mail = ctx.config.mail;
    let persona = null;
    let seen = "";
    let items = [];
    let selected = null; // a message id
    let composing = null; // {mode: "reply" | "new", parentId}
    let showHtml = true;
    let exists = true;

    const title = h("div", {class: "title"}, "Mail");
    const subtitle = h("div", {class: "subtitle"});
    const menu = h("div", {class: "menu"});
    const banner = h("div", {class: "banner", hidden: true}, "This mailbox is deleted: mail to it is refused (550 5.1.1), a hard bounce for chatgate.");
    const list = h("div", {class: "mail-list"});
    const view = h("div", {class: "mail-view"});
    const el = h("section", {class: "pane mailbox", dataset: {pane: "mail"}},
      h("header", {class: "pane-header"}, h("div", {class: "who"}, title, subtitle), menu), banner, list, view);

    const address = () => persona && persona.email ? persona.email.toLowerCase() : null;
    const url = (path) => `${mail.control}${path}`;

    function when(value) {
      const date = value ? new Date(value) : null;
      return date && !Number.isNaN(date.getTime()) ? date.toLocaleString() : value || "";
    }

    function row(m) {
      const inbox = m.folder === "inbox";
      return h("button", {
        type: "button",
        class: `mail-row ${m.id === selected ? "selected" : ""} ${inbox ? "inbox" : "sent"}`,
        dataset: {id: m.id},
        onclick: () => { selected = m.id; composing = null; render(); },
      },
      h("span", {class: "folder", title: m.folder}, inbox ? "📥" : "📤"),
      h("span", {class: "party"}, inbox ? m.from : `to ${m.to.join(", ")}`),
      h("span", {class: "subject"}, m.subject || "(no subject)"),
      h("span", {class: "date"}, when(m.date)));
    }

    /** The HTML part in a frame that runs no script; links open in a new tab. */
    function htmlFrame(html) {
      const frame = h("iframe", {class: "mail-html", sandbox: "allow-popups allow-popups-to-escape-sandbox", title: "HTML part"});
      frame.srcdoc = `<!doctype html><meta charset="utf-8"><base target="_blank">${html}`;
      return frame;
    }

    function linkified(text) {
      const parts = text.split(/(https?:\/\/[^\s<>"]+)/g);
      return parts.map((part, i) => (i % 2 ? h("a", {href: part, target: "_blank", rel: "noopener"}, part) : part));
    }

    function composer(parent) {
      const subject = h("input", {type: "text", placeholder: "Subject", "aria-label": "mail subject", value: parent ? "" : "Вопрос"});
      const text = h("textarea", {rows: 5, placeholder: parent ? "Your reply…" : "Your message…", "aria-label": "mail text"});
      const form = h("form", {class: "mail-compose", onsubmit: action(ctx, async (event) => {
        event.preventDefault();
        if (!text.value.trim()) throw new Error("the text is empty");
        const sent = parent
          ? await requestJson(url(`/messages/${parent.id}/reply`), {method: "POST", body: {text: text.value}})
          : await requestJson(url(`/mailboxes/${encodeURIComponent(address())}/messages`), {method: "POST", body: {text: text.value, subject: subject.value}});
        toast(`Sent to ${sent.to.join(", ")}`);
        composing = null;
        selected = sent.id;
        seen = "";
      })},
      h("div", {class: "compose-head"}, parent ? `Reply to ${parent.answer_to}` : `New mail to ${mail.shop_address}`),
      parent ? null : subject, text,
      h("div", {class: "compose-actions"},
        h("button", {class: "primary", type: "submit"}, "Send"),
        h("button", {type: "button", onclick: () => { composing = null; render(); }}, "Cancel")));
      setTimeout(() => text.focus(), 0);
      return form;
    }

    function message(m) {
      const headers = h("table", {class: "mail-headers"}, m.headers.map(([name, value]) => h("tr", {},
        h("th", {}, name), h("td", {}, value))));
      const unsubscribe = m.unsubscribe.length ? h("div", {class: "unsubscribe"},
        "List-Unsubscribe: ",
        m.unsubscribe.map((u) => h("a", {href: u, target: "_blank", rel: "noopener"}, u.startsWith("mailto:") ? u : "link")),
        m.one_click ? h("button", {type: "button", class: "link-button", onclick: action(ctx, async () => {
          const {status} = await requestJson(url(`/messages/${m.id}/unsubscribe`), {method: "POST"});
          toast(`Unsubscribed (one-click POST answered ${status})`);
        })}, "Unsubscribe (one-click)") : null) : null;
      const body = m.html && showHtml ? htmlFrame(m.html) : h("pre", {class: "mail-text"}, linkified(m.text || "(no text part)"));
      return [
        h("div", {class: "mail-actions"},
          m.folder === "inbox" ? h("button", {type: "button", class: "primary", onclick: () => { composing = {mode: "reply", parentId: m.id}; render(); }}, "↩ Reply") : null,
          m.html ? h("button", {type: "button", onclick: () => { showHtml = !showHtml; render(); }}, showHtml ? "Text part" : "HTML part") : null,
          h("a", {href: url(`/messages/${m.id}/raw`), target: "_blank", rel: "noopener"}, "Raw")),
        headers, unsubscribe, body,
        composing && composing.parentId === m.id ? composer(m) : null,
      ];
    }

    function render() {
      list.replaceChildren(...(items.length
        ? [...items].reverse().map(row)
        : [emptyState(`No mail yet for ${address()}.`)]));
      const current = items.find((m) => m.id === selected);
      if (composing && composing.mode === "new") view.replaceChildren(composer(null));
      else view.replaceChildren(...(current ? message(current).filter(Boolean) : [h("div", {class: "muted pad"}, "Pick a message.")]));
    }

    async function refresh() {
      if (!address()) return;
      const box = await requestJson(url(`/mailboxes/${encodeURIComponent(address())}/messages`));
      const signature = JSON.stringify([box.exists, box.items.map((m) => m.id)]);
      if (signature === seen) return;
      if (box.exists !== exists) { exists = box.exists; renderMenu(); }
      const fresh = !seen;
      seen = signature;
      items = box.items;
      // New mail arriving selects itself, unless the person is writing.
      if (!composing && items.length && (fresh || !items.some((m) => m.id === selected) || items[items.length - 1].folder === "inbox")) {
        selected = items[items.length - 1].id;
      }
      render();
    }

    async function setExists(value) {
      await requestJson(url(`/mailboxes/${encodeURIComponent(address())}/state`), {method: "POST", body: {exists: value}});
      exists = value;
      seen = "";
      renderMenu();
    }

    function renderMenu() {
      menu.replaceChildren(
        menuButton("✉ New", () => { composing = {mode: "new"}; render(); }, `Write to ${mail.shop_address}`),
        exists
          ? menuButton("Delete", action(ctx, () => setExists(false)), "Delete the mailbox: chatgate's mail to it is refused 550 5.1.1")
          : menuButton("Restore", action(ctx, () => setExists(true)), "The mailbox takes mail again"));
      banner.hidden = exists;
    }

    function setPersona(next) {
      persona = next;
      seen = "";
      items = [];
      selected = null;
      composing = null;
      exists = true;
      banner.hidden = true;
      menu.replaceChildren();
      view.replaceChildren();
      if (!persona) {
        subtitle.textContent = "";
        list.replaceChildren(emptyState("Pick or create a test customer in the top bar."));
      } else if (!address()) {
        subtitle.textContent = "no mailbox";
        list.replaceChildren(emptyState(`${persona.name} has no mailbox in the sandbox.`,
          h("button", {class: "primary", type: "button", onclick: action(ctx, async () => {
            const value = prompt("Email address", `customer${Math.floor(1000 + Math.random() * 9000)}@example.org`);
            if (!value) return;
            persona.email = value.trim().toLowerCase();
            ctx.updatePersona(persona);
          })}, "Give them a mailbox")));
      } else {
        title.textContent = `Mail · ${address()}`;
        subtitle.textContent = `you: ${persona.name} · the shop is ${mail.shop_address}`;
        renderMenu();
        list.replaceChildren(emptyState("Loading…"));
      }
    }

    return {el, refresh, setPersona};
  }

  registerPane({type: "mail", enabled: (config) => Boolean(config.mail), create: mailPane}, "history");
})();
