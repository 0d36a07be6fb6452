// chatgate sandbox console: chat with the bots as emulated users, watch the stored history.
//
// Plain browser JavaScript, no build step. Each pane is one factory function
// (telegramPane, vkPane, historyPane) registered in PANE_TYPES; a pane returns
// {el, refresh(), setPersona(persona)} and the shell polls refresh() about once a second.
// Panes in other files (sms.js, mail.js, managers.js) use the helpers this file
// exports as window.chatgateConsole and add themselves with registerPane(); the
// shell starts once every script has run (DOMContentLoaded).
"use strict";

(() => {
  // ---------------------------------------------------------------- DOM helpers

  /** Create an element: h("button", {class: "x", onclick: f}, "label", child, ...). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (key === "class") el.className = value;
      else if (key === "dataset") Object.assign(el.dataset, value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  /** Render a bot's Telegram HTML with only the tags Telegram itself allows. */
  const TG_TAGS = new Set([
    "B", "STRONG", "I", "EM", "U", "INS", "S", "STRIKE", "DEL", "CODE", "PRE",
    "BLOCKQUOTE", "TG-SPOILER", "SPAN", "A", "BR",
  ]);
  function safeHtml(html) {
    const doc = new DOMParser().parseFromString(`<body>${html}</body>`, "text/html");
    const copy = (node) => {
      if (node.nodeType === Node.TEXT_NODE) return document.createTextNode(node.textContent);
      if (node.nodeType !== Node.ELEMENT_NODE) return null;
      const children = [...node.childNodes].map(copy).filter(Boolean);
      if (!TG_TAGS.has(node.tagName)) return h("span", {}, children);
      const attrs = {};
      if (node.tagName === "A") {
        const href = node.getAttribute("href") || "";
        if (/^(https?:|tg:|mailto:)/i.test(href)) Object.assign(attrs, {href, target: "_blank", rel: "noopener"});
      }
      if (node.tagName === "TG-SPOILER" || node.classList.contains("tg-spoiler")) {
        return h("span", {class: "spoiler", title: "spoiler", onclick: (e) => e.currentTarget.classList.add("shown")}, children);
      }
      return h(node.tagName.toLowerCase(), attrs, children);
    };
    return [...doc.body.childNodes].map(copy).filter(Boolean);
  }

  /** An ISO time as the history shows it: the time today, date and time before. */
  function stamp(iso) {
    const date = new Date(iso);
    const today = date.toDateString() === new Date().toDateString();
    return today ? date.toLocaleTimeString() : date.toLocaleString();
  }

  function clock(seconds) {
    const date = new Date(seconds * 1000);
    return date.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
  }

  function toast(text, kind = "info", ms = 3500) {
    const el = h("div", {class: `toast ${kind}`}, text);
    document.getElementById("toasts").append(el);
    setTimeout(() => el.remove(), ms);
  }

  /** Keep a scrolled feed pinned to the bottom only if the reader was already there. */
  function replaceFeed(feed, nodes) {
    const atBottom = feed.scrollHeight - feed.scrollTop - feed.clientHeight < 40;
    feed.replaceChildren(...nodes);
    if (atBottom) feed.scrollTop = feed.scrollHeight;
  }

  // ---------------------------------------------------------------- HTTP

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function requestJson(url, {method = "GET", body, headers = {}} = {}) {
    const init = {method, headers: {...headers}};
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (err) {
      throw new HttpError(0, `network error: ${err.message}`);
    }
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = {error: text.slice(0, 200)}; }
    if (!response.ok || (data && data.ok === false)) {
      const reason = data && (data.message || data.error || data.description);
      throw new HttpError(response.status, reason || `HTTP ${response.status}`);
    }
    return data;
  }

  function query(params) {
    const pairs = Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== "");
    return pairs.length ? `?${new URLSearchParams(pairs)}` : "";
  }

  // ---------------------------------------------------------------- clients

  /** chatgate's own JSON API, with the key from the top bar. */
  function apiClient(config, keyInput) {
    return {
      get(path, params = {}) {
        const key = keyInput.value.trim();
        return requestJson(`${config.api_base}${path}${query(params)}`, {
          headers: key ? {Authorization: `Bearer ${key}`} : {},
        });
      },
    };
  }

  /** The Telegram emulator's /control API, speaking for one bot. */
  function telegramControl(tg) {
    const botId = Number(String(tg.bot_token).split(":")[0]);
    const call = (method, path, body = {}) => requestJson(
      `${tg.control}${path}${method === "GET" ? query({bot_id: botId, ...body}) : ""}`,
      method === "GET" ? {} : {method, body: {bot_id: botId, ...body}},
    ).then((reply) => reply.result);
    return {
      botId,
      get: (path, params) => call("GET", path, params),
      post: (path, body) => call("POST", path, body),
    };
  }

  /** The VK emulator's /control API, speaking for one community. */
  function vkControl(vk) {
    const groupId = vk.group_id;
    return {
      groupId,
      get: (path, params = {}) => requestJson(`${vk.control}${path}${query({group_id: groupId, ...params})}`),
      post: (path, body = {}) => requestJson(`${vk.control}${path}`, {method: "POST", body: {group_id: groupId, ...body}}),
    };
  }

  // ---------------------------------------------------------------- test customers

  // A persona is the person the console plays: {key, name, phone, email, customerId,
  // telegram: {userId} | null, vk: {userId} | null}; the phone is their SMS phone,
  // the email their sandbox mailbox. Kept in localStorage so a
  // reload (or a restarted server) brings the same people back.
  const STORE_KEY = "chatgate.console.personas";
  const personas = {
    all() {
      try { return JSON.parse(localStorage.getItem(STORE_KEY)) || []; } catch { return []; }
    },
    save(persona) {
      const rest = this.all().filter((p) => p.key !== persona.key);
      localStorage.setItem(STORE_KEY, JSON.stringify([persona, ...rest].slice(0, 30)));
      localStorage.setItem(`${STORE_KEY}.current`, persona.key);
    },
    current() {
      const key = localStorage.getItem(`${STORE_KEY}.current`);
      return this.all().find((p) => p.key === key) || null;
    },
  };

  function splitName(name) {
    const [first, ...rest] = name.trim().split(/\s+/);
    return {first: first || "Test", last: rest.join(" ") || null};
  }

  /** A Russian mobile number nobody has: +7 9xx in the range operators leave unused. */
  function madeUpPhone() {
    return `+7999${String(Math.floor(Math.random() * 1e7)).padStart(7, "0")}`;
  }

  function madeUpEmail() {
    return `customer${Math.floor(1000 + Math.random() * 9000)}@example.org`;
  }

  /** The phone as chatgate stores it: E.164 digits with "+" (a leading 8 is Russia's 7). */
  function normalPhone(raw) {
    let digits = String(raw).replace(/[^\d]/g, "");
    if (digits.length === 11 && digits.startsWith("8")) digits = `7${digits.slice(1)}`;
    if (digits.length === 10 && !String(raw).trim().startsWith("+")) digits = `7${digits}`;
    return `+${digits}`;
  }

  // ---------------------------------------------------------------- phone frame

  /** The shell shared by messenger panes: header, banner, feed, keyboard, composer. */
  function phoneFrame({theme, title, onSend, placeholder = "Message"}) {
    const titleEl = h("div", {class: "title"}, title);
    const subtitle = h("div", {class: "subtitle"});
    const menu = h("div", {class: "menu"});
    const banner = h("div", {class: "banner", hidden: true});
    const feed = h("div", {class: "feed"});
    const keyboard = h("div", {class: "reply-keyboard", hidden: true});
    const input = h("input", {type: "text", placeholder, "aria-label": `${theme} message`});
    const send = h("button", {class: "send", type: "submit", title: "Send"}, "➤");
    const composer = h("form", {
      class: "composer",
      onsubmit: async (event) => {
        event.preventDefault();
        const text = input.value.trim();
        if (!text) return;
        input.value = "";
        try { await onSend(text); } catch (err) { input.value = text; toast(err.message, "error"); }
      },
    }, input, send);
    const el = h("section", {class: `pane phone ${theme}`, dataset: {pane: theme}},
      h("header", {class: "phone-header"}, h("div", {class: "who"}, titleEl, subtitle), menu),
      banner, feed, keyboard, composer);
    return {
      el, feed, keyboard, menu, input, subtitle,
      setBanner(content) {
        banner.hidden = !content;
        banner.replaceChildren(...(content ? [content].flat() : []));
      },
      setEnabled(enabled, why = "") {
        input.disabled = send.disabled = !enabled;
        input.placeholder = enabled ? (input.dataset.placeholder || placeholder) : why;
      },
      setPlaceholder(text) {
        input.dataset.placeholder = text || placeholder;
        if (!input.disabled) input.placeholder = input.dataset.placeholder;
      },
    };
  }

  function menuButton(label, onclick, title) {
    return h("button", {type: "button", class: "menu-button", title, onclick}, label);
  }

  /** Run a user action, report its failure, then refresh every pane at once. */
  function action(ctx, fn) {
    return async (...args) => {
      try {
        await fn(...args);
      } catch (err) {
        toast(err.message, "error");
      }
      ctx.refreshSoon();
    };
  }

  function emptyState(text, ...buttons) {
    return h("div", {class: "empty"}, h("p", {}, text), buttons);
  }

  // ---------------------------------------------------------------- Telegram pane

  function telegramPane(ctx) {
    const tg = telegramControl(ctx.config.telegram);
    let persona = null;
    let seen = "";
    let botName = `bot ${tg.botId}`;
    let blocked = false;
    const frame = phoneFrame({theme: "telegram", title: botName, onSend: (text) => send("/text", {text})});

    const uid = () => persona && persona.telegram && persona.telegram.userId;

    async function ensureUser() {
      const {first, last} = splitName(persona.name);
      await tg.post("/users", {user_id: uid(), first_name: first, last_name: last, phone: persona.phone || null});
    }

    /** A user action; a user the emulator forgot (restart) is registered again once. */
    async function send(path, body = {}) {
      try {
        return await tg.post(`/users/${uid()}${path}`, body);
      } catch (err) {
        if (!/no user/.test(err.message)) throw err;
        await ensureUser();
        return tg.post(`/users/${uid()}${path}`, body);
      } finally {
        ctx.refreshSoon();
      }
    }

    async function shareContact() {
      try {
        await send("/contact");
      } catch (err) {
        if (!/no phone/.test(err.message)) throw err;
        const phone = prompt("Phone number to share (e.g. +79001234567)", persona.phone || "+7");
        if (!phone) return;
        persona.phone = phone;
        personas.save(persona);
        const {first, last} = splitName(persona.name);
        await send("/contact", {phone_number: phone, first_name: first, last_name: last, contact_user_id: uid()});
      }
    }

    async function pressInline(message, button) {
      const {callback_query_id: id} = await send("/press", {message_id: message.message_id, data: button.callback_data});
      // The bot answers the callback query a moment later; show it like Telegram does.
      for (let i = 0; i < 10; i += 1) {
        await new Promise((r) => setTimeout(r, 300));
        const answer = await tg.get(`/callbacks/${id}`).catch(() => null);
        if (answer) {
          if (answer.text) toast(answer.text, answer.show_alert ? "alert" : "info", answer.show_alert ? 6000 : 3500);
          if (answer.url) toast(`open ${answer.url}`);
          return;
        }
      }
    }

    function pressReply(button) {
      if (button.request_contact) return shareContact();
      if (button.request_location) return send("/location", {latitude: 55.7558, longitude: 37.6173});
      return send("/text", {text: button.text});
    }

    function inlineKeyboard(message) {
      const rows = (message.reply_markup && message.reply_markup.inline_keyboard) || [];
      if (!rows.length) return null;
      return h("div", {class: "inline-keyboard"}, rows.map((row) => h("div", {class: "row"}, row.map((button) => {
        if (button.url) {
          return h("a", {class: "kb-button link", href: button.url, target: "_blank", rel: "noopener"}, button.text, " ↗");
        }
        if (button.callback_data !== undefined) {
          return h("button", {class: "kb-button", type: "button", onclick: action(ctx, () => pressInline(message, button))}, button.text);
        }
        return h("button", {class: "kb-button", type: "button", disabled: true, title: "not emulated in the console"}, button.text);
      }))));
    }

    function replyKeyboard(messages) {
      // The last reply keyboard (or removal) a bot sent stays until replaced.
      let markup = null;
      let sentAt = -1;
      messages.forEach((m, i) => {
        const rm = m.reply_markup;
        if (m.from.id === tg.botId && rm && (rm.keyboard || rm.remove_keyboard)) { markup = rm; sentAt = i; }
      });
      if (!markup || markup.remove_keyboard) return null;
      const answered = messages.slice(sentAt + 1).some((m) => m.from.id !== tg.botId);
      if (markup.one_time_keyboard && answered) return null;
      return markup;
    }

    function content(m) {
      const parts = [];
      if (m.contact) parts.push(h("div", {class: "attachment"}, "📞 ", m.contact.phone_number, " · ", m.contact.first_name));
      if (m.location) parts.push(h("div", {class: "attachment"}, `📍 ${m.location.latitude}, ${m.location.longitude}`));
      if (m.photo) parts.push(h("div", {class: "attachment"}, "🖼 photo"));
      if (m.document) parts.push(h("div", {class: "attachment"}, "📄 ", m.document.file_name || "document"));
      if (m.voice) parts.push(h("div", {class: "attachment"}, `🎤 voice ${m.voice.duration}s`));
      if (m.sticker) parts.push(h("div", {class: "attachment sticker"}, m.sticker.emoji || "sticker"));
      if (m.html) parts.push(h("div", {class: "text"}, safeHtml(m.html)));
      else if (m.text !== undefined) parts.push(h("div", {class: "text"}, m.text));
      if (m.caption !== undefined) parts.push(h("div", {class: "text"}, m.caption));
      if (!parts.length) parts.push(h("div", {class: "text muted"}, `(${m.method || "message"})`));
      return parts;
    }

    function bubble(m) {
      const mine = m.from.id !== tg.botId;
      return h("div", {class: `msg ${mine ? "out" : "in"}`, dataset: {id: m.message_id}},
        h("div", {class: "bubble"}, content(m),
          h("span", {class: "meta"}, m.edit_date ? "edited " : "", clock(m.date), mine ? " ✓✓" : "")),
        mine ? null : inlineKeyboard(m));
    }

    function renderMenu() {
      frame.menu.replaceChildren(
        menuButton("/start", action(ctx, () => send("/start")), "Open the bot: sends /start"),
        menuButton("📞 Contact", action(ctx, shareContact), "Share my phone as a contact"),
        blocked
          ? menuButton("Unblock", action(ctx, () => send("/unblock")), "Unblock the bot")
          : menuButton("Block", action(ctx, () => send("/block")), "Block the bot: its sends get 403"),
      );
    }

    async function refresh() {
      if (!uid()) return;
      const [messages, stats] = await Promise.all([
        tg.get(`/chats/${uid()}/messages`),
        tg.get("/stats"),
      ]);
      blocked = stats.blocked_by.includes(uid());
      const markup = replyKeyboard(messages);
      const signature = JSON.stringify([messages, blocked, markup]);
      if (signature === seen) return;
      seen = signature;
      renderMenu();
      frame.setBanner(blocked ? "You blocked this bot. It can't write to you until you unblock it." : null);
      frame.setEnabled(!blocked, "Unblock the bot to write");
      replaceFeed(frame.feed, messages.length
        ? messages.map(bubble)
        : [emptyState("No messages yet.", h("button", {class: "primary", type: "button", onclick: action(ctx, () => send("/start"))}, "START"))]);
      frame.setPlaceholder(markup && markup.input_field_placeholder);
      frame.keyboard.hidden = !markup;
      frame.keyboard.replaceChildren(...(markup ? markup.keyboard.map((row) => h("div", {class: "row"}, row.map((button) => {
        const b = typeof button === "string" ? {text: button} : button;
        const supported = !(b.request_users || b.request_chat || b.request_poll || b.web_app);
        return h("button", {
          class: "kb-button", type: "button", disabled: !supported || blocked,
          title: b.request_contact ? "shares your phone number as a contact"
            : b.request_location ? "sends a location in Moscow"
              : supported ? null : "not emulated in the console",
          onclick: action(ctx, () => pressReply(b)),
        }, b.text);
      }))) : []));
    }

    async function loadBotName() {
      const bots = await tg.get("/bots").catch(() => []);
      const me = bots.find((b) => b.id === tg.botId);
      if (me) {
        botName = me.first_name;
        frame.el.querySelector(".title").textContent = botName;
      }
    }

    function setPersona(next) {
      persona = next;
      seen = "";
      frame.keyboard.hidden = true;
      if (!persona) {
        frame.subtitle.textContent = "";
        frame.menu.replaceChildren();
        frame.setEnabled(false, "Pick a customer first");
        replaceFeed(frame.feed, [emptyState("Pick or create a test customer in the top bar.")]);
      } else if (!uid()) {
        frame.subtitle.textContent = "no Telegram account";
        frame.menu.replaceChildren();
        frame.setEnabled(false, "No Telegram user");
        replaceFeed(frame.feed, [emptyState(`${persona.name} has no Telegram account in the sandbox.`,
          h("button", {class: "primary", type: "button", onclick: action(ctx, async () => {
            const {first, last} = splitName(persona.name);
            const user = await tg.post("/users", {first_name: first, last_name: last, phone: persona.phone || null});
            persona.telegram = {userId: user.id};
            ctx.updatePersona(persona);
          })}, "Create a Telegram user"))]);
      } else {
        frame.subtitle.textContent = `you: ${persona.name} · id ${uid()}`;
        frame.setEnabled(true);
        renderMenu();
        replaceFeed(frame.feed, []);
      }
    }

    loadBotName();
    return {el: frame.el, refresh, setPersona};
  }

  // ---------------------------------------------------------------- VK pane

  function vkPane(ctx) {
    const vk = vkControl(ctx.config.vk);
    let persona = null;
    let seen = "";
    let allowed = null; // unknown until the user allows or denies in this console
    const frame = phoneFrame({theme: "vk", title: `club${vk.groupId}`, onSend: (text) => send("/messages", {text}), placeholder: "Write a message…"});

    const uid = () => persona && persona.vk && persona.vk.userId;

    async function send(path, body = {}) {
      try {
        return await vk.post(`/users/${uid()}${path}`, body);
      } catch (err) {
        if (!/no user/.test(err.message)) throw err;
        const {first, last} = splitName(persona.name);
        await vk.post("/users", {user_id: uid(), first_name: first, last_name: last || ""});
        return vk.post(`/users/${uid()}${path}`, body);
      } finally {
        ctx.refreshSoon();
      }
    }

    async function pressCallback(message, button) {
      const {event_id: eventId} = await send("/button", {
        payload: button.action.payload || null,
        conversation_message_id: message.conversation_message_id,
      });
      // The community answers with messages.sendMessageEventAnswer: show its snackbar.
      for (let i = 0; i < 10; i += 1) {
        await new Promise((r) => setTimeout(r, 300));
        const stats = await vk.get("/stats").catch(() => null);
        const answer = stats && stats.event_answers.find((a) => a.event_id === eventId);
        if (answer) {
          const data = answer.event_data || {};
          if (data.type === "show_snackbar") toast(data.text);
          else if (data.type === "open_link") toast(`open ${data.link}`);
          return;
        }
      }
    }

    function vkButton(message, button, {disabled = false} = {}) {
      const a = button.action || {};
      const color = button.color || (a.type === "text" || a.type === "callback" ? "secondary" : "");
      const cls = `kb-button ${color}`;
      if (a.type === "open_link") {
        return h("a", {class: `${cls} link`, href: a.link, target: "_blank", rel: "noopener"}, a.label, " ↗");
      }
      if (a.type === "text") {
        return h("button", {class: cls, type: "button", disabled, onclick: action(ctx, () => send("/messages", {text: a.label, payload: a.payload || null}))}, a.label);
      }
      if (a.type === "callback") {
        return h("button", {class: cls, type: "button", disabled, onclick: action(ctx, () => pressCallback(message, button))}, a.label);
      }
      const labels = {location: "📍 Send location", vkpay: "VK Pay", intent_subscribe: "Subscribe", intent_unsubscribe: "Unsubscribe"};
      return h("button", {class: cls, type: "button", disabled: true, title: "not emulated in the console"}, a.label || labels[a.type] || a.type);
    }

    function keyboardRows(message, keyboard, options) {
      return keyboard.buttons.map((row) => h("div", {class: "row"}, row.map((b) => vkButton(message, b, options))));
    }

    function persistentKeyboard(messages) {
      let found = null;
      let at = -1;
      messages.forEach((m, i) => {
        if (m.out && m.keyboard && !m.keyboard.inline) { found = m; at = i; }
      });
      if (!found || !found.keyboard.buttons.length) return null;
      const answered = messages.slice(at + 1).some((m) => !m.out);
      return found.keyboard.one_time && answered ? null : found;
    }

    function bubble(m) {
      const kb = m.out && m.keyboard && m.keyboard.inline ? m.keyboard : null;
      const attachments = (m.attachments || []).map((a) => h("div", {class: "attachment"}, "📎 ", typeof a === "string" ? a : a.type || "attachment"));
      return h("div", {class: `msg ${m.out ? "in" : "out"}`, dataset: {id: m.message_id}},
        h("div", {class: "bubble"},
          m.text ? h("div", {class: "text"}, m.text) : null, attachments,
          h("span", {class: "meta"}, clock(m.date))),
        kb ? h("div", {class: "inline-keyboard"}, keyboardRows(m, kb)) : null);
    }

    function renderMenu() {
      frame.menu.replaceChildren(
        menuButton("✓ Read", action(ctx, async () => {
          const {read_message_id: id} = await send("/read");
          toast(`VK: read up to message ${id}`);
        }), "Mark the dialog as read (message_read)"),
        menuButton("Allow", action(ctx, async () => { await send("/allow"); allowed = true; renderMenu(); }),
          "Allow messages from the community (message_allow)"),
        menuButton("Deny", action(ctx, async () => { await send("/deny"); allowed = false; renderMenu(); }),
          "Deny messages from the community (message_deny)"),
      );
      frame.menu.querySelectorAll(".menu-button")[allowed === true ? 1 : 2].classList.toggle("active", allowed !== null);
      frame.setBanner(allowed === false ? "You denied messages from this community; it can't write first." : null);
    }

    async function refresh() {
      if (!uid()) return;
      const {items} = await vk.get(`/peers/${uid()}/messages`);
      const keyboardOwner = persistentKeyboard(items);
      const signature = JSON.stringify([items, allowed]);
      if (signature === seen) return;
      seen = signature;
      replaceFeed(frame.feed, items.length
        ? items.map(bubble)
        : [emptyState("No messages yet.", h("button", {class: "primary", type: "button",
          onclick: action(ctx, () => send("/messages", {text: "Начать", payload: JSON.stringify({command: "start"})}))}, "Начать / Start"))]);
      frame.keyboard.hidden = !keyboardOwner;
      frame.keyboard.replaceChildren(...(keyboardOwner ? keyboardRows(keyboardOwner, keyboardOwner.keyboard) : []));
    }

    function setPersona(next) {
      persona = next;
      seen = "";
      allowed = null;
      frame.keyboard.hidden = true;
      if (!persona) {
        frame.subtitle.textContent = "";
        frame.menu.replaceChildren();
        frame.setBanner(null);
        frame.setEnabled(false, "Pick a customer first");
        replaceFeed(frame.feed, [emptyState("Pick or create a test customer in the top bar.")]);
      } else if (!uid()) {
        frame.subtitle.textContent = "no VK account";
        frame.menu.replaceChildren();
        frame.setBanner(null);
        frame.setEnabled(false, "No VK user");
        replaceFeed(frame.feed, [emptyState(`${persona.name} has no VK account in the sandbox.`,
          h("button", {class: "primary", type: "button", onclick: action(ctx, async () => {
            const {first, last} = splitName(persona.name);
            const user = await vk.post("/users", {first_name: first, last_name: last || ""});
            persona.vk = {userId: user.id};
            ctx.updatePersona(persona);
          })}, "Create a VK user"))]);
      } else {
        frame.subtitle.textContent = `you: ${persona.name} · id${uid()}`;
        frame.setEnabled(true);
        renderMenu();
        replaceFeed(frame.feed, []);
      }
    }

    return {el: frame.el, refresh, setPersona};
  }

  // ---------------------------------------------------------------- history pane

  const CHANNEL_LABELS = {telegram: "TG", vk: "VK", sms: "SMS", email: "Mail"};

  function historyPane(ctx) {
    let persona = null;
    let customerId = null;
    let others = [];
    let seen = "";
    let lastLookup = 0;
    const title = h("div", {class: "title"}, "Stored history");
    const subtitle = h("div", {class: "subtitle"}, "chatgate's conversation store, all channels");
    const profileEl = h("div", {class: "profile"});
    const notice = h("div", {class: "banner", hidden: true});
    const list = h("div", {class: "history-list"});
    const el = h("section", {class: "pane history", dataset: {pane: "history"}},
      h("header", {class: "pane-header"}, h("div", {class: "who"}, title, subtitle)),
      profileEl, notice, list);

    function identityOf(persona) {
      const keys = [];
      if (persona.telegram && ctx.config.telegram) {
        keys.push({channel: "telegram", address: String(persona.telegram.userId)});
      }
      if (persona.vk && ctx.config.vk) keys.push({channel: "vk", address: String(persona.vk.userId)});
      if (persona.phone && ctx.config.sms) keys.push({channel: "sms", address: normalPhone(persona.phone)});
      if (persona.email && ctx.config.mail) keys.push({channel: "email", address: persona.email.toLowerCase()});
      return keys;
    }

    /** The customers chatgate stored for the persona's accounts, found by name and phone. */
    async function lookup() {
      const wanted = identityOf(persona);
      const probes = [persona.name, persona.phone, persona.email].filter(Boolean);
      const found = new Map();
      for (const q of probes) {
        const {items} = await ctx.api.get("/customers", {q, limit: 20});
        for (const c of items) {
          if (found.has(c.id)) continue;
          const profile = await ctx.api.get(`/customers/${c.id}`);
          const hits = profile.identities.filter((i) => wanted.some((w) => w.channel === i.channel && w.address === i.address));
          if (hits.length) found.set(profile.id, hits.map((i) => i.channel));
        }
      }
      return found;
    }

    async function fetchHistory(id) {
      const items = [];
      let cursor = null;
      for (let page = 0; page < 10; page += 1) {
        const reply = await ctx.api.get(`/customers/${id}/messages`, {limit: 200, cursor});
        items.push(...reply.items);
        cursor = reply.next_cursor;
        if (!cursor) break;
      }
      return items;
    }

    function entry(m) {
      const who = m.direction === "in" ? "customer" : m.author;
      return h("div", {class: `entry ${m.direction} author-${m.author}`},
        h("div", {class: "entry-head"},
          h("span", {class: `badge channel-${m.channel}`}, CHANNEL_LABELS[m.channel] || m.channel),
          h("span", {class: "author"}, m.direction === "in" ? "→ " : "← ", who),
          m.kind && m.kind !== "text" ? h("span", {class: "kind"}, m.kind) : null,
          h("span", {class: "spacer"}),
          m.delivery_status ? h("span", {class: `status status-${m.delivery_status}`}, m.delivery_status) : null,
          h("time", {datetime: m.sent_at, title: m.sent_at}, stamp(m.sent_at))),
        h("div", {class: "entry-text"}, m.text || (m.attachments && m.attachments.length ? `📎 ${m.attachments.length} attachment(s)` : "—")));
    }

    function renderProfile(profile) {
      profileEl.replaceChildren(
        h("div", {class: "profile-line"},
          h("strong", {}, profile.name || "(no name)"), ` · customer #${profile.id}`,
          profile.phone ? ` · ${profile.phone}` : "", profile.email ? ` · ${profile.email}` : ""),
        h("div", {class: "identities"}, profile.identities.map((i) => h("span", {
          class: `identity ${i.reachable ? "" : "unreachable"}`,
          title: `${i.channel} account ${i.account}, address ${i.address}${i.verified ? ", verified" : ""}${i.reachable ? "" : ", unreachable"}`,
        }, h("span", {class: `badge channel-${i.channel}`}, CHANNEL_LABELS[i.channel] || i.channel),
        ` ${i.display_name || i.address}`, i.verified ? " ✔" : "", i.reachable ? "" : " ⛔"))));
    }

    async function refresh() {
      if (!persona) return;
      if (!customerId && Date.now() - lastLookup > 2500) {
        lastLookup = Date.now();
        const found = await lookup();
        const ids = [...found.keys()];
        if (ids.length) {
          customerId = ids[0];
          others = ids.slice(1).map((id) => ({id, channels: found.get(id)}));
          persona.customerId = customerId;
          ctx.updatePersona(persona, {quiet: true});
        }
      }
      if (!customerId) {
        if (!seen) {
          seen = "waiting";
          profileEl.replaceChildren();
          list.replaceChildren(emptyState("chatgate has stored nothing for this customer yet: write to a bot from one of the phones."));
        }
        return;
      }
      const profile = await ctx.api.get(`/customers/${customerId}`);
      if (profile.id !== customerId) {
        // Merged into another customer since: follow the survivor.
        customerId = profile.id;
        persona.customerId = customerId;
        ctx.updatePersona(persona, {quiet: true});
      }
      const items = await fetchHistory(customerId);
      const signature = JSON.stringify([profile, items, others]);
      if (signature === seen) return;
      seen = signature;
      title.textContent = `Stored history · #${profile.id}`;
      renderProfile(profile);
      notice.hidden = !others.length;
      notice.replaceChildren(...others.map((o) => h("div", {},
        `The ${o.channels.join("/")} account is still a separate customer #${o.id} (not linked). `,
        h("button", {type: "button", class: "link-button", onclick: () => {
          others = [{id: customerId, channels: ["other"]}, ...others.filter((x) => x.id !== o.id)];
          customerId = o.id;
          seen = "";
          ctx.refreshSoon();
        }}, `Show #${o.id}`))));
      replaceFeed(list, items.length ? items.map(entry) : [emptyState("No stored messages yet.")]);
    }

    function setPersona(next) {
      persona = next;
      customerId = persona ? persona.customerId || null : null;
      others = [];
      seen = "";
      lastLookup = 0;
      title.textContent = "Stored history";
      profileEl.replaceChildren();
      notice.hidden = true;
      list.replaceChildren(emptyState(persona ? "Loading…" : "Pick or create a test customer in the top bar."));
    }

    return {el, refresh, setPersona};
  }

  // ---------------------------------------------------------------- customer picker

  function customerPicker(ctx, root) {
    const current = h("button", {type: "button", class: "current", title: "Pick or create a test customer"});
    const search = h("input", {type: "search", placeholder: "Search customers by name, phone, email…", "aria-label": "search customers"});
    const results = h("div", {class: "results"});
    const nameInput = h("input", {type: "text", placeholder: "Name", "aria-label": "new customer name"});
    const phoneInput = h("input", {type: "tel", placeholder: "+79001234567 (made up if empty)", "aria-label": "new customer phone"});
    const emailInput = h("input", {type: "email", placeholder: "name@example.org (made up if empty)", "aria-label": "new customer email"});
    const create = h("form", {class: "create", onsubmit: (e) => { e.preventDefault(); createPersona(); }},
      h("div", {class: "section-title"}, "New test customer (Telegram and VK users, a phone, a mailbox)"),
      nameInput, phoneInput, emailInput, h("button", {class: "primary", type: "submit"}, "Create"));
    const dropdown = h("div", {class: "dropdown", hidden: true}, search, results, create);
    root.replaceChildren(h("span", {class: "label"}, "Customer"), current, dropdown);

    const open = (show) => {
      dropdown.hidden = !show;
      if (show) {
        nameInput.value = nameInput.value || `Test Customer ${Math.floor(100 + Math.random() * 900)}`;
        search.focus();
        renderResults();
      }
    };
    current.addEventListener("click", () => open(dropdown.hidden));
    document.addEventListener("click", (e) => { if (!root.contains(e.target)) open(false); });
    document.addEventListener("keydown", (e) => { if (e.key === "Escape") open(false); });

    let timer = null;
    search.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(renderResults, 250); });

    function describe(p) {
      if (!p) return "none — pick or create";
      const bits = [p.name];
      if (p.customerId) bits.push(`#${p.customerId}`);
      return bits.join(" · ");
    }

    async function renderResults() {
      const q = search.value.trim().toLowerCase();
      const local = personas.all().filter((p) => !q || p.name.toLowerCase().includes(q) || (p.phone || "").includes(q));
      const rows = [h("div", {class: "section-title"}, "Sandbox customers (this browser)")];
      rows.push(...(local.length ? local.map((p) => h("button", {type: "button", class: "result", onclick: () => { ctx.choose(p); open(false); }},
        h("strong", {}, p.name), h("span", {}, [p.telegram && `TG ${p.telegram.userId}`, p.vk && `VK ${p.vk.userId}`, p.customerId && `#${p.customerId}`].filter(Boolean).join(" · "))))
        : [h("div", {class: "muted"}, "none yet")]));
      rows.push(h("div", {class: "section-title"}, "Stored in chatgate"));
      results.replaceChildren(...rows, h("div", {class: "muted"}, "loading…"));
      try {
        const {items} = await ctx.api.get("/customers", {q: search.value.trim(), limit: 20});
        results.replaceChildren(...rows, ...(items.length ? items.map((c) => h("button", {type: "button", class: "result", onclick: () => { chooseStored(c.id); open(false); }},
          h("strong", {}, c.name || "(no name)"), h("span", {}, [`#${c.id}`, c.phone, c.email].filter(Boolean).join(" · "))))
          : [h("div", {class: "muted"}, "no match")]));
      } catch (err) {
        results.replaceChildren(...rows, h("div", {class: "muted error"}, `API: ${err.message}`));
      }
    }

    /** Play an existing customer: their Telegram chat and VK peer come from the identities. */
    async function chooseStored(id) {
      try {
        const profile = await ctx.api.get(`/customers/${id}`);
        const pick = (channel, account) => {
          const ids = profile.identities.filter((i) => i.channel === channel);
          const exact = ids.find((i) => i.account === String(account)) || ids[0];
          return exact && /^\d+$/.test(exact.address) ? {userId: Number(exact.address)} : null;
        };
        const existing = personas.all().find((p) => p.customerId === profile.id);
        ctx.choose({
          key: existing ? existing.key : `c${profile.id}`,
          name: profile.name || `Customer ${profile.id}`,
          phone: profile.phone || (profile.identities.find((i) => i.channel === "sms") || {}).address || null,
          email: profile.email || (profile.identities.find((i) => i.channel === "email") || {}).address || null,
          customerId: profile.id,
          telegram: ctx.config.telegram ? pick("telegram", ctx.tgBotId) : null,
          vk: ctx.config.vk ? pick("vk", ctx.config.vk.group_id) : null,
        });
      } catch (err) {
        toast(`API: ${err.message}`, "error");
      }
    }

    async function createPersona(given = null) {
      const name = (given ? given.name : nameInput.value).trim() || "Test Customer";
      const phone = (given ? given.phone : phoneInput.value.trim()) || (ctx.config.sms ? madeUpPhone() : null);
      const email = ((given ? given.email : emailInput.value) || "").trim().toLowerCase() || (ctx.config.mail ? madeUpEmail() : null);
      const {first, last} = splitName(name);
      try {
        const persona = {key: given ? given.key : `p${Date.now()}`, name, phone, email, customerId: null, telegram: null, vk: null};
        if (ctx.config.telegram) {
          const tg = telegramControl(ctx.config.telegram);
          const user = await tg.post("/users", {first_name: first, last_name: last, phone});
          persona.telegram = {userId: user.id};
        }
        if (ctx.config.vk) {
          const user = await vkControl(ctx.config.vk).post("/users", {first_name: first, last_name: last || ""});
          persona.vk = {userId: user.id};
        }
        nameInput.value = "";
        phoneInput.value = "";
        emailInput.value = "";
        open(false);
        ctx.choose(persona);
        toast(`${name} created`);
      } catch (err) {
        toast(err.message, "error");
      }
    }

    return {
      createPersona,
      show(persona) {
        current.textContent = describe(persona);
      },
    };
  }

  /** `?name=&phone=&email=` opens the console as that customer (made once, then reused). */
  async function personaFromUrl(picker) {
    const params = new URLSearchParams(window.location.search);
    const phone = params.get("phone");
    const email = params.get("email");
    if (!phone && !email) return null;
    const key = `url:${phone || ""}:${(email || "").toLowerCase()}`;
    const known = personas.all().find((p) => p.key === key);
    if (known) return known;
    await picker.createPersona({key, name: params.get("name") || "Test Customer", phone, email});
    return personas.current();
  }

  // ---------------------------------------------------------------- the shell

  // Pane types in display order; a type shows when its channel is configured.
  const PANE_TYPES = [
    {type: "telegram", enabled: (config) => Boolean(config.telegram), create: telegramPane},
    {type: "vk", enabled: (config) => Boolean(config.vk), create: vkPane},
    {type: "history", enabled: () => true, create: historyPane},
  ];

  /** Add a pane type from another script, before the type named `before` (else last). */
  function registerPane(spec, before = null) {
    const at = PANE_TYPES.findIndex((t) => t.type === before);
    PANE_TYPES.splice(at < 0 ? PANE_TYPES.length : at, 0, spec);
  }

  window.chatgateConsole = {
    h, safeHtml, stamp, clock, toast, replaceFeed, requestJson, query, HttpError, splitName,
    normalPhone, phoneFrame, menuButton, action, emptyState, personas, registerPane, CHANNEL_LABELS,
  };

  async function main() {
    const config = await requestJson("config");
    const keyInput = document.getElementById("api-key");
    keyInput.value = localStorage.getItem("chatgate.console.key") || config.api_key || "";
    const connection = document.getElementById("connection");
    let timer = null;

    const ctx = {
      config,
      api: apiClient(config, keyInput),
      tgBotId: config.telegram ? Number(String(config.telegram.bot_token).split(":")[0]) : null,
      refreshSoon() { clearTimeout(timer); timer = setTimeout(tick, 50); },
      choose(persona) {
        personas.save(persona);
        picker.show(persona);
        for (const pane of panes) pane.setPersona(persona);
        ctx.refreshSoon();
      },
      /** A pane learned something (a new user id, the customer id): keep it, tell the rest. */
      updatePersona(persona, {quiet = false} = {}) {
        personas.save(persona);
        picker.show(persona);
        if (!quiet) ctx.choose(persona);
      },
    };

    keyInput.addEventListener("change", () => {
      const key = keyInput.value.trim();
      if (key && key !== config.api_key) localStorage.setItem("chatgate.console.key", key);
      else localStorage.removeItem("chatgate.console.key");
      ctx.refreshSoon();
    });

    const picker = customerPicker(ctx, document.getElementById("customer-picker"));
    const panes = PANE_TYPES.filter((t) => t.enabled(config)).map((t) => t.create(ctx));
    document.getElementById("panes").replaceChildren(...panes.map((p) => p.el));

    const persona = (await personaFromUrl(picker)) || personas.current();
    picker.show(persona);
    for (const pane of panes) pane.setPersona(persona);

    let running = false;
    async function tick() {
      clearTimeout(timer);
      if (running) { timer = setTimeout(tick, 100); return; }
      running = true;
      if (!document.hidden) {
        const results = await Promise.allSettled(panes.map((p) => p.refresh()));
        const failure = results.find((r) => r.status === "rejected");
        connection.textContent = failure ? `⚠ ${failure.reason.message}` : "● live";
        connection.className = `connection ${failure ? "bad" : "ok"}`;
      }
      running = false;
      timer = setTimeout(tick, config.poll_interval_ms || 1000);
    }
    tick();
  }

  // Pane scripts after this one register themselves first; then the shell starts.
  document.addEventListener("DOMContentLoaded", () => main().catch((err) => {
    document.getElementById("panes").replaceChildren(h("p", {class: "fatal"}, `The console could not start: ${err.message}`));
  }));
})();
