// chatgate sandbox console: the managers' group, where the person plays a manager.
//
// The managers' group is a forum supergroup in the Telegram emulator: one topic per
// conversation that needs a person, opened by a customer card, with every message
// of the conversation mirrored into it. Here: the topic list, one topic's messages,
// and a composer that writes in the topic as the manager — commands (/take,
// /release, /close, /history, /note, /via, /link, /card) and plain replies, which
// chatgate relays to the customer. "General" is the group outside any topic
// (/queue, /mine).
"use strict";

(() => {
  const {h, safeHtml, clock, toast, replaceFeed, requestJson, query, action, emptyState, registerPane} = window.chatgateConsole;

  const TOPIC_COMMANDS = ["/take", "/release", "/close", "/history 20", "/card", "/link", "/via telegram", "/via vk", "/via sms", "/via email"];
  const GENERAL_COMMANDS = ["/queue", "/mine"];

  function managersPane(ctx) {
    const cfg = ctx.config.managers;
    const control = (path, params = {}) => `${cfg.control}${path}${query(params)}`;
    let persona = null;
    let topics = [];
    let selected = null; // a message_thread_id, or null for General
    let pinned = false; // the person picked a topic themselves
    let seen = "";

    const subtitle = h("div", {class: "subtitle"}, `you: manager ${cfg.manager_id}`);
    const topicList = h("div", {class: "topic-list"});
    const heading = h("div", {class: "topic-heading"});
    const feed = h("div", {class: "feed"});
    const commands = h("div", {class: "commands"});
    const input = h("input", {type: "text", placeholder: "Reply to the customer, or /command", "aria-label": "manager message"});
    const composer = h("form", {class: "composer", onsubmit: async (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      input.value = "";
      try { await write(text); } catch (err) { input.value = text; toast(err.message, "error"); }
    }}, input, h("button", {class: "send", type: "submit", title: "Send"}, "➤"));
    const el = h("section", {class: "pane managers", dataset: {pane: "managers"}},
      h("header", {class: "pane-header"}, h("div", {class: "who"}, h("div", {class: "title"}, "Managers' group"), subtitle)),
      h("div", {class: "managers-body"}, topicList,
        h("div", {class: "topic-view"}, heading, feed, commands, composer)));

    async function write(text) {
      try {
        await requestJson(control(`/groups/${cfg.chat_id}/messages`), {
          method: "POST",
          body: {user_id: cfg.manager_id, text, thread_id: selected},
        });
      } finally {
        ctx.refreshSoon();
      }
    }

    function bubble(m) {
      const mine = m.from && m.from.id === cfg.manager_id;
      const who = m.from ? [m.from.first_name, m.from.last_name].filter(Boolean).join(" ") : "";
      const body = m.html ? safeHtml(m.html) : (m.text || (m.forum_topic_created ? `topic “${m.forum_topic_created.name}” created` : `(${m.method || "message"})`));
      return h("div", {class: `msg ${mine ? "out" : "in"}`, dataset: {id: m.message_id}},
        h("div", {class: "bubble"},
          mine ? null : h("div", {class: "sender"}, who, m.from && m.from.is_bot ? " · bot" : ""),
          h("div", {class: "text"}, body),
          h("span", {class: "meta"}, clock(m.date))));
    }

    function choose(threadId, byPerson) {
      selected = threadId;
      pinned = pinned || byPerson;
      seen = "";
      ctx.refreshSoon();
    }

    function renderTopics() {
      const rows = [h("button", {type: "button", class: `topic ${selected === null ? "selected" : ""}`, onclick: () => choose(null, true)}, "# General")];
      for (const t of topics) {
        rows.push(h("button", {
          type: "button",
          class: `topic ${t.message_thread_id === selected ? "selected" : ""} ${t.closed ? "closed" : ""}`,
          dataset: {thread: t.message_thread_id},
          onclick: () => choose(t.message_thread_id, true),
        }, t.closed ? "🔒 " : "💬 ", t.name));
      }
      topicList.replaceChildren(...rows);
    }

    function renderCommands() {
      const list = selected === null ? GENERAL_COMMANDS : TOPIC_COMMANDS;
      commands.replaceChildren(...list.map((c) => h("button", {type: "button", class: "kb-button", onclick: action(ctx, () => write(c))}, c)),
        selected === null ? null : h("button", {type: "button", class: "kb-button", onclick: () => { input.value = "/note "; input.focus(); }}, "/note …"));
    }

    /** The customer's own topic, by their name or customer number, unless the person chose one. */
    function followPersona() {
      if (pinned || !persona) return;
      const name = persona.name.toLowerCase();
      const number = persona.customerId ? new RegExp(`#${persona.customerId}(?!\\d)`) : null;
      const mine = topics.filter((t) => t.name.toLowerCase().includes(name) || (number && number.test(t.name)));
      if (mine.length) selected = mine[mine.length - 1].message_thread_id;
    }

    async function refresh() {
      const [topicReply, messageReply] = await Promise.all([
        requestJson(control(`/groups/${cfg.chat_id}/topics`)),
        requestJson(control(`/chats/${cfg.chat_id}/messages`)),
      ]);
      topics = topicReply.result;
      followPersona();
      const inThread = messageReply.result.filter((m) => (selected === null
        ? !m.message_thread_id || !m.is_topic_message
        : m.message_thread_id === selected));
      const signature = JSON.stringify([topics, selected, inThread]);
      if (signature === seen) return;
      seen = signature;
      renderTopics();
      renderCommands();
      const topic = topics.find((t) => t.message_thread_id === selected);
      heading.textContent = topic ? topic.name : "General — outside any topic";
      replaceFeed(feed, inThread.length ? inThread.map(bubble)
        : [emptyState(selected === null
          ? "Nothing here yet. A customer who asks for a person gets a topic on the left."
          : "No messages in this topic.")]);
    }

    function setPersona(next) {
      persona = next;
      pinned = false;
      seen = "";
    }

    return {el, refresh, setPersona};
  }

  registerPane({type: "managers", enabled: (config) => Boolean(config.managers && config.telegram), create: managersPane});
})();
