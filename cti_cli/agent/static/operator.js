// cti operator page: this operator's screen pops over server-sent events.
// Every string from the PBX or the directory is written with textContent, never as HTML.
(function () {
  "use strict";

  var TEXT = {
    en: {
      title: "Calls", connecting: "Connecting…", live: "Connected",
      reconnecting: "Connection lost, reconnecting…",
      refused: "This link is not valid any more (replaced or revoked). Ask the administrator for the current one.",
      auto: "Open the card automatically", notify: "Allow notifications",
      popups: "Allow pop-ups for this page to open cards automatically.",
      idle: "Waiting for a call…", history: "Last calls", nocalls: "No calls yet.",
      unknown: "Unknown caller", number: "Number", queue: "Queue", dialed: "Dialled",
      time: "Time", state: "State", talking: "In progress", ended: "Ended",
      talk: "talk time", missed: "Missed", answered: "Answered", employee: "Employee card",
      form: "Request form", openCard: "Open card", openForm: "New request",
      noEmployee: "Not found in the directory.", operator: "Operator"
    },
    ru: {
      title: "Звонки", connecting: "Подключение…", live: "Подключено",
      reconnecting: "Связь потеряна, переподключение…",
      refused: "Эта ссылка больше не действует (заменена или отозвана). Попросите у администратора актуальную.",
      auto: "Открывать карточку автоматически", notify: "Разрешить уведомления",
      popups: "Разрешите всплывающие окна для этой страницы, чтобы карточки открывались сами.",
      idle: "Ожидание звонка…", history: "Последние звонки", nocalls: "Звонков пока нет.",
      unknown: "Неизвестный абонент", number: "Номер", queue: "Очередь", dialed: "Набранный номер",
      time: "Время", state: "Состояние", talking: "Идёт разговор", ended: "Завершён",
      talk: "разговор", missed: "Пропущен", answered: "Принят", employee: "Карточка сотрудника",
      form: "Форма заявки", openCard: "Открыть карточку", openForm: "Новая заявка",
      noEmployee: "В справочнике не найден.", operator: "Оператор"
    }
  };

  function pickLanguage() {
    var list = navigator.languages && navigator.languages.length ? navigator.languages
      : [navigator.language || "en"];
    for (var i = 0; i < list.length; i++) {
      var code = String(list[i]).toLowerCase().slice(0, 2);
      if (TEXT[code]) { return code; }
    }
    return "en";
  }

  var lang = pickLanguage();
  function t(key) { return TEXT[lang][key] || TEXT.en[key] || key; }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function $(id) { return document.getElementById(id); }

  // A caller sets their own caller-ID name, of any length: a name of thousands of characters
  // must not push the number and the card out of sight. Cut by code points (never half an
  // emoji); the whole name stays in the tooltip.
  var NAME_CHARS = 100;
  function nameEl(name) {
    var text = String(name || t("unknown"));
    var chars = Array.from(text);
    var node = el("span", "name", chars.length > NAME_CHARS
      ? chars.slice(0, NAME_CHARS - 1).join("") + "…" : text);
    if (chars.length > NAME_CHARS) { node.title = text; }
    return node;
  }

  function safeUrl(url) {
    return typeof url === "string" && /^https?:\/\//i.test(url) ? url : null;
  }

  function duration(seconds) {
    var s = Math.max(0, Math.round(Number(seconds) || 0));
    var m = Math.floor(s / 60);
    var rest = s % 60;
    return m + ":" + (rest < 10 ? "0" : "") + rest;
  }

  function clock(epoch) {
    if (!epoch) { return ""; }
    var date = new Date(Number(epoch) * 1000);
    var opts = { hour: "2-digit", minute: "2-digit" };
    if (date.toDateString() !== new Date().toDateString()) {
      opts.day = "numeric";
      opts.month = "short";
    }
    return date.toLocaleString(lang, opts);
  }

  // ---------------------------------------------------------------- remembered ids
  function remembered(key) {
    try { return JSON.parse(localStorage.getItem(key) || "[]"); } catch (e) { return []; }
  }
  function remember(key, id) {
    var list = remembered(key).filter(function (x) { return x !== id; });
    list.push(id);
    try { localStorage.setItem(key, JSON.stringify(list.slice(-50))); } catch (e) { /* private mode */ }
  }

  // ---------------------------------------------------------------- state
  var params = new URLSearchParams(location.search);
  var token = params.get("t") || "";
  var lastId = null;
  var seenEvents = new Set();
  var cards = new Map();      // pop id → card element
  var endedCalls = new Map(); // call id → call data
  var history = [];
  var skew = 0;               // server clock − browser clock, ms
  var popTtl = 60;
  var source = null;

  function setState(state, text) {
    document.body.dataset.state = state;
    var status = $("status");
    status.textContent = text;
    status.className = "status " + state;
  }

  // ---------------------------------------------------------------- cards
  function row(table, label, value) {
    var tr = el("tr");
    tr.appendChild(el("th", null, label));
    var shown = value === null || value === undefined || value === "" ? "—"
      : (typeof value === "object" ? JSON.stringify(value) : value);
    tr.appendChild(el("td", null, shown));
    table.appendChild(tr);
  }

  function link(url, label, cls) {
    var a = el("a", "button " + cls, label);
    a.href = url;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    return a;
  }

  function setEnded(card, call) {
    var state = card.querySelector(".state");
    var text;
    if (call.answered) {
      text = t("ended") + " · " + t("talk") + " " + duration(call.talk);
    } else {
      text = t("missed");
    }
    state.textContent = text;
    card.classList.add("ended");
    card.dataset.ended = "1";
    if (call.talk !== null && call.talk !== undefined) { card.dataset.talk = String(call.talk); }
  }

  function showPop(pop, receivedAt) {
    if (!pop || typeof pop.id !== "string" || cards.has(pop.id)) { return; }
    var call = pop.call || {};
    var age = (Date.now() + skew) / 1000 - Number(pop.received_at || 0);
    var fresh = age < popTtl;

    var card = el("article", "pop");
    card.dataset.popId = pop.id;
    card.dataset.callId = String(call.call_id || "");
    card.dataset.receivedAt = String(receivedAt);
    if (!fresh) { card.classList.add("old"); }

    var head = el("div", "caller");
    head.appendChild(nameEl(call.caller_name));
    head.appendChild(el("span", "number", call.caller_e164 || call.caller || ""));
    card.appendChild(head);

    var meta = el("table", "meta");
    row(meta, t("queue"), call.queue);
    row(meta, t("dialed"), call.dialed);
    row(meta, t("time"), clock(pop.received_at));
    var tr = el("tr");
    tr.appendChild(el("th", null, t("state")));
    tr.appendChild(el("td", "state", t("talking")));
    meta.appendChild(tr);
    card.appendChild(meta);

    var links = pop.links || {};
    var cardUrl = safeUrl(links.card);
    var formUrl = safeUrl(links.form);
    if (cardUrl || formUrl) {
      var buttons = el("div", "links");
      if (cardUrl) { buttons.appendChild(link(cardUrl, t("openCard"), "card-link")); }
      if (formUrl) { buttons.appendChild(link(formUrl, t("openForm"), "form-link")); }
      card.appendChild(buttons);
    }

    var opened = Array.isArray(pop.open) ? pop.open : [];
    var sawEmployee = false;
    opened.forEach(function (item) {
      if (!item || typeof item !== "object") { return; }
      if (item.type === "employee_card" && item.employee && typeof item.employee === "object") {
        sawEmployee = true;
        var box = el("section", "employee");
        box.appendChild(el("h3", null, t("employee")));
        var table = el("table");
        Object.keys(item.employee).forEach(function (key) { row(table, key, item.employee[key]); });
        box.appendChild(table);
        card.appendChild(box);
      } else if (item.type === "request_form" && item.fields && typeof item.fields === "object") {
        var form = el("section", "form");
        form.appendChild(el("h3", null, t("form")));
        var fields = el("table");
        Object.keys(item.fields).forEach(function (key) { row(fields, key, item.fields[key]); });
        form.appendChild(fields);
        card.appendChild(form);
      }
    });
    if (!sawEmployee) { card.appendChild(el("p", "noemployee", t("noEmployee"))); }

    var endedCall = endedCalls.get(call.call_id);
    if (endedCall) { setEnded(card, endedCall); }

    var pops = $("pops");
    pops.insertBefore(card, pops.firstChild);
    $("idle").hidden = true;
    cards.set(pop.id, card);
    var all = pops.querySelectorAll("article.pop");
    for (var i = 3; i < all.length; i++) {
      cards.delete(all[i].dataset.popId);
      all[i].remove();
    }

    if (fresh && !endedCall) { announce(pop, cardUrl); }
  }

  function announce(pop, cardUrl) {
    var call = pop.call || {};
    if (window.Notification && Notification.permission === "granted" &&
        remembered("cti.notified").indexOf(pop.id) < 0) {
      remember("cti.notified", pop.id);
      try {
        new Notification(nameEl(call.caller_name || call.caller_e164 || call.caller).textContent, {
          body: [call.caller_e164 || call.caller, call.queue].filter(Boolean).join(" · "),
          tag: pop.id
        });
      } catch (e) { /* not allowed in this context */ }
    }
    if (cardUrl && $("auto").checked && remembered("cti.opened").indexOf(pop.id) < 0) {
      remember("cti.opened", pop.id);
      var tab = window.open(cardUrl, "_blank");
      if (tab) { tab.opener = null; } else { $("hint").hidden = false; }
    }
  }

  // ---------------------------------------------------------------- history
  function upsertCall(call) {
    endedCalls.set(call.call_id, call);
    history = history.filter(function (h) { return h.call_id !== call.call_id; });
    history.unshift(call);
    history = history.slice(0, 20);
    renderHistory();
    cards.forEach(function (card) {
      if (card.dataset.callId === String(call.call_id)) { setEnded(card, call); }
    });
  }

  function renderHistory() {
    var list = $("calls");
    while (list.firstChild) { list.removeChild(list.firstChild); }
    history.forEach(function (call) {
      var item = el("li", call.answered ? "answered" : "missed");
      item.dataset.callId = String(call.call_id || "");
      item.appendChild(el("span", "when", clock(call.started)));
      item.appendChild(el("span", "badge", call.answered ? t("answered") : t("missed")));
      var who = el("span", "who");
      who.appendChild(nameEl(call.caller_name));
      who.appendChild(el("span", "number", call.caller || ""));
      item.appendChild(who);
      item.appendChild(el("span", "talk", call.answered ? duration(call.talk) : ""));
      list.appendChild(item);
    });
    $("nocalls").hidden = history.length > 0;
  }

  // ---------------------------------------------------------------- stream
  function fresh(event) {
    var id = event.lastEventId;
    if (id) {
      if (seenEvents.has(id)) { return false; }
      seenEvents.add(id);
      lastId = id;
    }
    return true;
  }

  function parse(event) {
    try { return JSON.parse(event.data); } catch (e) { return null; }
  }

  function connect() {
    var url = "operator/events?t=" + encodeURIComponent(token) +
      (lastId !== null ? "&last=" + encodeURIComponent(lastId) : "");
    source = new EventSource(url);
    source.addEventListener("open", function () { setState("live", t("live")); });
    source.addEventListener("hello", function (event) {
      var hello = parse(event);
      if (!hello) { return; }
      skew = Number(hello.now) * 1000 - Date.now();
      popTtl = Number(hello.pop_ttl) || popTtl;
      var op = hello.operator || {};
      $("who").textContent = [op.name || op.login, op.team].filter(Boolean).join(" · ");
      history = Array.isArray(hello.history) ? hello.history.slice(0, 20) : [];
      history.forEach(function (call) { endedCalls.set(call.call_id, call); });
      renderHistory();
      setState("live", t("live"));
    });
    source.addEventListener("pop", function (event) {
      var receivedAt = Date.now();
      if (!fresh(event)) { return; }
      var pop = parse(event);
      if (pop) { showPop(pop, receivedAt); }
    });
    source.addEventListener("call", function (event) {
      if (!fresh(event)) { return; }
      var call = parse(event);
      if (call && call.call_id) { upsertCall(call); }
    });
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        check();
      } else {
        setState("reconnecting", t("reconnecting"));
      }
    };
  }

  // The stream failed for good (an HTTP error): a revoked link, or the proxy without the agent.
  function check() {
    setState("reconnecting", t("reconnecting"));
    fetch(location.href, { cache: "no-store", credentials: "omit" }).then(function (reply) {
      if (reply.status === 401) {
        setState("refused", t("refused"));
        var problem = $("problem");
        problem.textContent = t("refused");
        problem.hidden = false;
        return;
      }
      setTimeout(connect, 3000);
    }, function () { setTimeout(connect, 3000); });
  }

  // ---------------------------------------------------------------- controls
  function setup() {
    document.documentElement.lang = lang;
    document.title = t("title") + " — CTI";
    Array.prototype.forEach.call(document.querySelectorAll("[data-i18n]"), function (node) {
      node.textContent = t(node.getAttribute("data-i18n"));
    });
    var auto = $("auto");
    auto.checked = localStorage.getItem("cti.autoOpen") === "1";
    auto.addEventListener("change", function () {
      try { localStorage.setItem("cti.autoOpen", auto.checked ? "1" : "0"); } catch (e) { /* */ }
    });
    var notify = $("notify");
    if (window.Notification && Notification.permission === "default") {
      notify.hidden = false;
      notify.addEventListener("click", function () {
        Notification.requestPermission().then(function () {
          notify.hidden = Notification.permission !== "default";
        });
      });
    }
    renderHistory();
    connect();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setup);
  } else {
    setup();
  }
}());
