// chatgate sandbox console: the customer's SMS phone.
//
// The sandbox's Twilio keeps a thread per phone: what chatgate sent through the
// Messages API, and what the person texted, which the emulator posts to chatgate's
// /webhooks/sms/twilio signed as Twilio would. The phone can be switched off: then
// Twilio reports "undelivered" (30003) for what chatgate sends.
"use strict";

(() => {
  const {h, replaceFeed, requestJson, phoneFrame, menuButton, action, emptyState, registerPane, normalPhone} = window.chatgateConsole;

  function smsPane(ctx) {
    const sms = ctx.config.sms;
    let persona = null;
    let seen = "";
    let reachable = true;
    const frame = phoneFrame({theme: "sms", title: `SMS · ${sms.number}`, onSend: (text) => send(text), placeholder: "Text message"});
    const phone = () => persona && persona.phone ? normalPhone(persona.phone) : null;
    const url = (path) => `${sms.control}/phones/${encodeURIComponent(phone())}${path}`;

    async function send(text) {
      try {
        await requestJson(url("/messages"), {method: "POST", body: {text}});
      } finally {
        ctx.refreshSoon();
      }
    }

    function timeOf(seconds) {
      return new Date(seconds * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
    }

    function bubble(m) {
      const mine = m.direction === "sent";
      const meta = mine
        ? (m.webhook_status >= 200 && m.webhook_status < 300 ? " ✓" : ` ⚠ chatgate answered ${m.webhook_status || "nothing"}`)
        : ` · ${m.status}${m.error_code ? ` (${m.error_code})` : ""}`;
      return h("div", {class: `msg ${mine ? "out" : "in"}`, dataset: {sid: m.sid}},
        h("div", {class: "bubble"},
          h("div", {class: "text"}, m.body),
          h("span", {class: "meta", title: `${m.segments} ${m.encoding} part(s) · ${m.sid}`}, timeOf(m.date), meta)));
    }

    function renderMenu() {
      frame.menu.replaceChildren(reachable
        ? menuButton("Switch off", action(ctx, () => setReachable(false)), "Unreachable: Twilio reports undelivered (30003)")
        : menuButton("Switch on", action(ctx, () => setReachable(true)), "Reachable again"));
      frame.setBanner(reachable ? null : "The phone is switched off: what chatgate sends now is undelivered.");
    }

    async function setReachable(value) {
      await requestJson(url("/state"), {method: "POST", body: {reachable: value}});
      reachable = value;
      renderMenu();
    }

    async function refresh() {
      if (!phone()) return;
      const thread = await requestJson(url("/messages"));
      const signature = JSON.stringify(thread);
      if (signature === seen) return;
      seen = signature;
      reachable = thread.reachable;
      renderMenu();
      replaceFeed(frame.feed, thread.items.length
        ? thread.items.map(bubble)
        : [emptyState(`No SMS yet. Text ${sms.number} from here, or let chatgate write to ${phone()}.`)]);
    }

    function setPersona(next) {
      persona = next;
      seen = "";
      frame.setBanner(null);
      frame.menu.replaceChildren();
      if (!persona) {
        frame.subtitle.textContent = "";
        frame.setEnabled(false, "Pick a customer first");
        replaceFeed(frame.feed, [emptyState("Pick or create a test customer in the top bar.")]);
      } else if (!phone()) {
        frame.subtitle.textContent = "no phone";
        frame.setEnabled(false, "No phone number");
        replaceFeed(frame.feed, [emptyState(`${persona.name} has no phone in the sandbox.`,
          h("button", {class: "primary", type: "button", onclick: action(ctx, async () => {
            const number = prompt("Phone number (e.g. +79001234567)", "+7999");
            if (!number) return;
            persona.phone = normalPhone(number);
            ctx.updatePersona(persona);
          })}, "Give them a phone"))]);
      } else {
        frame.subtitle.textContent = `you: ${persona.name} · ${phone()}`;
        frame.setEnabled(true);
        replaceFeed(frame.feed, []);
      }
    }

    return {el: frame.el, refresh, setPersona};
  }

  registerPane({type: "sms", enabled: (config) => Boolean(config.sms), create: smsPane}, "history");
})();
