/* StateRelay dashboard: progressive enhancement and live updates. No build step, no framework.
 *
 * Every form works without this file (POST, then a 303 back). With it, device forms are sent
 * with fetch and the page listens on a WebSocket for changes made anywhere else. After every
 * (re)connect it reads /dashboard/state.json, so a page never shows state it missed.
 */
(function () {
  "use strict";

  document.documentElement.classList.add("js");

  var SNAPSHOT_URL = "/dashboard/state.json";
  var LIVE_CHECK_URL = "/dashboard/live/check";
  var MAX_BACKOFF = 15000;

  function $all(selector, root) {
    return Array.prototype.slice.call((root || document).querySelectorAll(selector));
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  /* times: server text is UTC; show the reader's local time */

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function localTime(iso) {
    var date = new Date(iso);
    if (isNaN(date.getTime())) return null;
    var now = new Date();
    var time = pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds());
    if (date.toDateString() === now.toDateString()) return "today " + time;
    return date.toLocaleDateString(undefined, { day: "numeric", month: "short", year: "numeric" }) + " " + time;
  }

  function localizeTimes(root) {
    $all("time[datetime]", root).forEach(function (node) {
      var text = localTime(node.getAttribute("datetime"));
      if (text) {
        if (!node.title) node.title = node.getAttribute("datetime");
        node.textContent = text;
      }
    });
  }

  /* copy buttons */

  function copyText(text, button) {
    function done() {
      var label = button.textContent;
      button.textContent = "Copied";
      button.classList.add("copied");
      setTimeout(function () {
        button.textContent = label;
        button.classList.remove("copied");
      }, 1500);
    }
    function fallback() {
      var area = el("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "visually-hidden";
      document.body.appendChild(area);
      area.select();
      try {
        document.execCommand("copy");
        done();
      } finally {
        document.body.removeChild(area);
      }
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, fallback);
    } else {
      fallback();
    }
  }

  function bindCopyButtons(root) {
    $all("[data-copy]", root).forEach(function (button) {
      if (button.dataset.bound) return;
      button.dataset.bound = "1";
      button.hidden = false;
      button.addEventListener("click", function () {
        var target = document.querySelector(button.getAttribute("data-copy"));
        if (!target) return;
        copyText("value" in target && target.tagName === "INPUT" ? target.value : target.textContent, button);
      });
    });
  }

  /* choices that show or hide the fields that go with them */

  function bindChoices(name, attribute) {
    var radios = $all("input[" + name + "]");
    if (!radios.length) return;
    function update() {
      var chosen = radios.filter(function (r) { return r.checked; })[0];
      $all("[" + attribute + "]").forEach(function (node) {
        node.hidden = !chosen || node.getAttribute(attribute) !== chosen.value;
      });
    }
    radios.forEach(function (r) { r.addEventListener("change", update); });
    update();
  }

  /* device state on the page */

  function containers(id) {
    return $all('[data-device="' + CSS.escape(id) + '"]');
  }

  function applyDevice(view, flash) {
    containers(view.id).forEach(function (box) {
      var current = parseInt(box.dataset.version || "0", 10);
      if (current > view.version) return;
      var changed = current !== view.version;
      box.dataset.version = String(view.version);
      var state = view.state || {};
      box.dataset.active = String(state.power === "ON" || state.detection === "DETECTED");
      $all('[data-field="name"]', box).forEach(function (n) { n.textContent = view.name; });
      $all('[data-field="state"]', box).forEach(function (n) { n.textContent = view.state_text; });
      $all('[data-field="version"]', box).forEach(function (n) { n.textContent = String(view.version); });
      $all('[data-field="changed"]', box).forEach(function (n) {
        if (view.changed_at) {
          n.setAttribute("datetime", view.changed_at);
          n.textContent = localTime(view.changed_at) || view.changed_at;
        }
      });
      $all('[data-control="power"]', box).forEach(function (b) {
        var on = state.power === "ON";
        b.setAttribute("aria-checked", String(on));
        b.value = on ? "OFF" : "ON";
      });
      $all('[data-field="power-text"]', box).forEach(function (n) {
        n.textContent = state.power === "ON" ? "On" : "Off";
      });
      $all('[data-control="brightness"]', box).forEach(function (r) {
        if (state.brightness === undefined) return;
        r.dataset.server = String(state.brightness);
        /* while the user moves it, the server's echo must not move it back */
        if (!touched(r)) r.value = state.brightness;
      });
      $all('[data-field="brightness-text"]', box).forEach(function (n) {
        var range = n.form ? n.form.querySelector('[data-control="brightness"]') : null;
        if (range && touched(range)) return;
        if (state.brightness !== undefined) n.textContent = state.brightness + " %";
      });
      $all('[data-field="room"]', box).forEach(function (n) { n.textContent = view.room || ""; });
      if (box.classList.contains("device-card") && (box.dataset.room || "") !== (view.room || "")) {
        box.dataset.room = view.room || "";
        var grid = box.closest("[data-device-grid]");
        if (grid) placeCard(grid, box, view.room || "");
      }
      $all('[data-control="detection"]', box).forEach(function (b) {
        b.setAttribute("aria-pressed", String(b.value === state.detection));
      });
      $all('[data-control="temperature"]', box).forEach(function (input) {
        if (document.activeElement !== input && view.temperature) input.value = view.temperature.value;
      });
      $all('[data-field="last-pressed"]', box).forEach(function (n) {
        if (view.last_pressed_at) {
          n.setAttribute("datetime", view.last_pressed_at);
          n.textContent = localTime(view.last_pressed_at) || view.last_pressed_text;
        }
      });
      if (box.classList.contains("device-page")) {
        $all("[data-device-crumb]").forEach(function (n) { n.textContent = view.name; });
        document.title = view.name + " · StateRelay";
      }
      if (flash && changed && box.classList.contains("device-card")) {
        box.classList.remove("flash");
        void box.offsetWidth;
        box.classList.add("flash");
      }
    });
  }

  /* cards grouped by room: rooms A to Z, then the devices without one */

  function roomGroup(grid, room) {
    var groups = $all("[data-room-group]", grid);
    var found = groups.filter(function (g) { return g.getAttribute("data-room-group") === room; })[0];
    if (found) return found;
    var section = el("section", "room-group");
    section.setAttribute("data-room-group", room);
    if (room) section.setAttribute("aria-label", room);
    var cards = el("div", "device-grid");
    cards.setAttribute("data-room-cards", "");
    section.append(el("h2", "room-title", room || "No room"), cards);
    var key = room.toLowerCase();
    var before = groups.filter(function (g) {
      var other = g.getAttribute("data-room-group");
      return room && (!other || other.toLowerCase().localeCompare(key) > 0);
    })[0];
    grid.insertBefore(section, before || null);
    return section;
  }

  function tidyRooms(grid) {
    $all("[data-room-group]", grid).forEach(function (g) {
      if (!g.querySelector("[data-device]")) g.parentNode.removeChild(g);
    });
    var groups = $all("[data-room-group]", grid);
    groups.forEach(function (g) {
      var title = g.querySelector(".room-title");
      if (title) title.hidden = groups.length === 1 && !g.getAttribute("data-room-group");
    });
  }

  function placeCard(grid, card, room) {
    var cards = roomGroup(grid, room).querySelector("[data-room-cards]");
    if (card.parentNode !== cards) cards.appendChild(card);
    tidyRooms(grid);
  }

  function updateCount() {
    var count = $all("[data-device-table] tbody tr").length;
    $all("[data-device-count]").forEach(function (n) {
      n.textContent = count + " device" + (count === 1 ? "" : "s");
    });
    var cards = $all("[data-device-grid] [data-device]").length;
    var rows = count;
    $all("[data-empty-devices]").forEach(function (n) {
      n.hidden = (document.querySelector("[data-device-grid]") ? cards : rows) > 0;
    });
  }

  var adding = {};

  function addDevice(view) {
    $all("[data-device-grid]").forEach(function (grid) {
      if (grid.querySelector('[data-device="' + CSS.escape(view.id) + '"]') || adding[view.id]) return;
      adding[view.id] = true;
      var next = grid.getAttribute("data-next") || "/dashboard";
      fetch("/dashboard/devices/" + encodeURIComponent(view.id) + "/card?next=" + encodeURIComponent(next), {
        credentials: "same-origin",
        redirect: "manual",
      }).then(function (response) {
        if (!response.ok) return null;
        return response.text();
      }).then(function (html) {
        delete adding[view.id];
        if (!html || grid.querySelector('[data-device="' + CSS.escape(view.id) + '"]')) return;
        var holder = document.createElement("div");
        holder.innerHTML = html;
        var card = holder.querySelector("[data-device]");
        if (!card) return;
        placeCard(grid, card, card.dataset.room || "");
        bindLiveForms(card);
        localizeTimes(card);
        applyDevice(view, false);
        updateCount();
      }, function () {
        delete adding[view.id];
      });
    });
    $all("[data-device-table] tbody").forEach(function (body) {
      if (body.querySelector('[data-device="' + CSS.escape(view.id) + '"]')) return;
      var row = el("tr");
      row.dataset.device = view.id;
      row.dataset.version = String(view.version);
      var name = el("th");
      name.scope = "row";
      var link = el("a", null, view.name);
      link.href = "/dashboard/devices/" + encodeURIComponent(view.id);
      link.dataset.field = "name";
      name.appendChild(link);
      name.appendChild(el("span", "narrow-only meta", view.type_label));
      var type = el("td", "wide-only");
      type.appendChild(el("span", "type-cell", view.type_label));
      var state = el("td");
      var pill = el("span", "state-pill", view.state_text);
      pill.dataset.field = "state";
      state.appendChild(pill);
      var when = el("td", "wide-only");
      var time = el("time", null, localTime(view.changed_at) || "");
      time.setAttribute("datetime", view.changed_at || "");
      time.dataset.field = "changed";
      when.appendChild(time);
      row.append(name, type, state, when);
      body.appendChild(row);
      applyDevice(view, false);
    });
    updateCount();
  }

  function removeDevice(id) {
    containers(id).forEach(function (box) {
      if (box.classList.contains("device-page")) {
        $all("[data-removed-note]").forEach(function (n) { n.hidden = false; });
        $all("button, input, select", box).forEach(function (c) { c.disabled = true; });
        return;
      }
      var grid = box.closest("[data-device-grid]");
      box.parentNode.removeChild(box);
      if (grid) tidyRooms(grid);
    });
    updateCount();
  }

  /* activity lists */

  function activityItem(entry, showDevice) {
    var item = el("li", "activity-item new");
    item.dataset.activityId = String(entry.id);
    item.dataset.tone = entry.tone || "";
    item.dataset.kind = entry.kind;
    item.dataset.deviceId = entry.device_id || "";
    item.dataset.source = entry.source;
    var mark = el("span", "activity-mark");
    mark.setAttribute("aria-hidden", "true");
    var body = el("div", "activity-body");
    var text = el("p", "activity-text");
    if (showDevice && entry.device_name) {
      if (entry.device_id) {
        var link = el("a", null, entry.device_name);
        link.href = "/dashboard/devices/" + encodeURIComponent(entry.device_id);
        text.appendChild(link);
      } else {
        text.appendChild(document.createTextNode(entry.device_name));
      }
      text.appendChild(document.createTextNode(" · "));
    }
    text.appendChild(document.createTextNode(entry.text));
    var meta = el("p", "meta");
    meta.appendChild(el("span", "source-tag", entry.source_label));
    if (entry.cause) meta.appendChild(document.createTextNode(" · " + entry.cause));
    meta.appendChild(document.createTextNode(" · "));
    var time = el("time", null, localTime(entry.at) || entry.when);
    time.setAttribute("datetime", entry.at);
    meta.appendChild(time);
    body.append(text, meta);
    item.append(mark, body);
    return item;
  }

  function addActivity(entries) {
    if (!entries || !entries.length) return;
    $all("[data-activity-list][data-live-prepend]").forEach(function (list) {
      var device = list.getAttribute("data-device-filter");
      var source = list.getAttribute("data-source-filter");
      var limit = parseInt(list.getAttribute("data-limit") || "50", 10);
      var showDevice = list.getAttribute("data-show-device") === "true";
      entries.forEach(function (entry) {
        if (device && entry.device_id !== device) return;
        if (source && entry.source !== source) return;
        if (list.querySelector('[data-activity-id="' + entry.id + '"]')) return;
        var items = $all("[data-activity-id]", list);
        var before = items.filter(function (n) {
          return parseInt(n.dataset.activityId, 10) < entry.id;
        })[0];
        if (!before && items.length >= limit) return;
        list.insertBefore(activityItem(entry, showDevice), before || null);
      });
      $all("[data-activity-id]", list).slice(limit).forEach(function (n) { list.removeChild(n); });
      var empty = list.parentNode.querySelector("[data-empty-note]");
      if (empty) empty.hidden = list.children.length > 0;
    });
  }

  /* device forms sent with fetch */

  function showError(form, field, message) {
    var box = form.closest("[data-device]") || form;
    $all("[data-error-for]", box).forEach(function (n) {
      var mine = n.getAttribute("data-error-for") === field;
      n.hidden = !mine;
      n.textContent = mine ? message : "";
    });
    if (!$all('[data-error-for="' + field + '"]', box).length) {
      $all('[data-error-for="form"]', box).forEach(function (n) {
        n.hidden = false;
        n.textContent = message;
      });
    }
  }

  function clearErrors(form) {
    var box = form.closest("[data-device]") || form;
    $all("[data-error-for]", box).forEach(function (n) {
      n.hidden = true;
      n.textContent = "";
    });
  }

  /* the message of an HTML error page, so a refusal says why */
  function reasonOf(html) {
    try {
      var page = new DOMParser().parseFromString(html, "text/html");
      var text = page.querySelector(".error-page h1 + p");
      return text ? text.textContent.trim() : "";
    } catch (error) {
      return "";
    }
  }

  /* a range the user is moving, or whose value the server has not confirmed yet */
  function touched(range) {
    return Boolean(range.dataset.dragging || range.dataset.wanted !== undefined);
  }

  function settleRanges(form) {
    $all('[data-control="brightness"]', form).forEach(function (r) {
      delete r.dataset.wanted;
      if (!r.dataset.dragging && r.dataset.server !== undefined) {
        r.value = r.dataset.server;
        var output = form.querySelector("output");
        if (output) output.textContent = r.dataset.server + " %";
      }
    });
  }

  function sendForm(form, submitter) {
    if (form.dataset.busy) {
      // A tap while the last one is on its way (the live feed may already show its
      // result): send it as soon as the first answers, with the values of that moment.
      form._queued = submitter || form;
      return;
    }
    var data = new FormData(form, submitter || undefined);
    $all('[data-control="brightness"]', form).forEach(function (r) { r.dataset.sent = r.value; });
    form.dataset.busy = "1";
    if (submitter) submitter.setAttribute("aria-busy", "true");
    fetch(form.action, {
      method: "POST",
      body: data,
      credentials: "same-origin",
      redirect: "manual",
      headers: { Accept: "application/json" },
    }).then(function (response) {
      if (response.type === "opaqueredirect" || response.status === 401) {
        window.location.reload();
        return null;
      }
      var json = (response.headers.get("Content-Type") || "").indexOf("application/json") === 0;
      if (!json) {
        return response.text().then(function (html) {
          showError(form, "form", reasonOf(html) || "That did not work (" + response.status + "); reload the page and try again.");
        });
      }
      return response.json().then(function (body) {
        if (response.ok && body.device) {
          clearErrors(form);
          applyDevice(body.device, false);
        } else {
          showError(form, body.field || "form", body.error || "That did not work.");
        }
      });
    }).catch(function () {
      showError(form, "form", "StateRelay cannot be reached. Check the connection and try again.");
    }).then(function () {
      delete form.dataset.busy;
      if (submitter) submitter.removeAttribute("aria-busy");
      var queued = form._queued;
      if (queued) {
        form._queued = null;
        sendForm(form, queued === form ? undefined : queued);
      } else {
        settleRanges(form);
      }
    });
  }

  function bindLiveForms(root) {
    $all("form[data-live-form]", root).forEach(function (form) {
      if (form.dataset.bound) return;
      form.dataset.bound = "1";
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        sendForm(form, event.submitter);
      });
      if (form.getAttribute("data-submit-on") === "change") {
        $all('input[type="range"]', form).forEach(function (range) {
          var output = form.querySelector("output");
          /* Every step is sent: one request at a time, and a step made meanwhile is sent
           * with the value of that moment when it answers (the latest wins, the last is
           * never lost). Until the last answer, echoes do not move the control. */
          range.addEventListener("pointerdown", function () { range.dataset.dragging = "1"; });
          function release() {
            if (!range.dataset.dragging) return;
            delete range.dataset.dragging;
            if (!form.dataset.busy && !form._queued) settleRanges(form);
          }
          range.addEventListener("pointerup", release);
          range.addEventListener("pointercancel", release);
          range.addEventListener("input", function () {
            range.dataset.wanted = range.value;
            if (output) output.textContent = range.value + " %";
            sendForm(form, null);
          });
          range.addEventListener("change", function () {
            if (range.value !== range.dataset.sent) sendForm(form, null);
          });
        });
      }
    });
  }

  /* the live connection */

  function setStatus(state, text) {
    $all("[data-live-status]").forEach(function (n) {
      n.hidden = false;
      n.dataset.state = state;
      var label = n.querySelector("[data-live-text]");
      if (label) label.textContent = text;
    });
  }

  function showLiveProblem(text) {
    $all("[data-live-problem]").forEach(function (n) {
      n.hidden = !text;
      n.textContent = text ? "Live updates are refused: " + text : "";
    });
  }

  function explainRefusal() {
    var token = document.querySelector('input[name="csrf_token"]');
    if (!token) return;
    var body = new FormData();
    body.append("csrf_token", token.value);
    fetch(LIVE_CHECK_URL, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    }).then(function (response) {
      return response.json().then(function (answer) {
        showLiveProblem(response.ok ? "" : answer.error || "the server said " + response.status);
      });
    }).catch(function () {});
  }

  function resync() {
    return fetch(SNAPSHOT_URL, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) {
          window.location.reload();
          return null;
        }
        return response.ok ? response.json() : null;
      })
      .then(function (snapshot) {
        if (!snapshot) return;
        var known = {};
        snapshot.devices.forEach(function (view) {
          known[view.id] = true;
          if (containers(view.id).length) applyDevice(view, false);
          addDevice(view);
        });
        $all("[data-device-grid] [data-device], [data-device-table] [data-device]").forEach(function (box) {
          if (!known[box.dataset.device]) removeDevice(box.dataset.device);
        });
        $all(".device-page[data-device]").forEach(function (page) {
          if (!known[page.dataset.device]) removeDevice(page.dataset.device);
        });
        addActivity(snapshot.activity);
      })
      .catch(function () {
        /* the server went away again: the next hello resyncs */
      });
  }

  function handle(message) {
    if (message.type === "hello") {
      resync();
      return;
    }
    if (message.type === "device.removed") {
      removeDevice(message.device.id);
    } else if (message.device) {
      if (message.type === "device.added") addDevice(message.device);
      applyDevice(message.device, true);
    }
    addActivity(message.activity);
  }

  function connect(path) {
    var backoff = 500;
    var socket = null;
    var timer = null;
    var openedAt = 0;

    function schedule() {
      if (timer) return;
      var delay = Math.min(backoff, MAX_BACKOFF) * (0.75 + Math.random() * 0.5);
      backoff = Math.min(backoff * 2, MAX_BACKOFF);
      setStatus("down", "Reconnecting");
      timer = setTimeout(function () {
        timer = null;
        open();
      }, delay);
    }

    function open() {
      var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
      try {
        socket = new WebSocket(scheme + "//" + window.location.host + path);
      } catch (error) {
        schedule();
        return;
      }
      socket.addEventListener("open", function () {
        openedAt = Date.now();
        setStatus("live", "Live");
        showLiveProblem("");
      });
      socket.addEventListener("message", function (event) {
        var message;
        try {
          message = JSON.parse(event.data);
        } catch (error) {
          return;
        }
        if (message.type === "hello") backoff = 500;
        handle(message);
      });
      var attemptAt = Date.now();
      socket.addEventListener("close", function (event) {
        socket = null;
        if (event.code === 1008) {
          window.location.reload(); /* signed out elsewhere: the page asks to sign in */
          return;
        }
        if (openedAt < attemptAt) {
          /* refused before it opened: if the session is gone, show the sign-in page;
           * otherwise ask the server why (a browser hides a refused socket's answer) */
          fetch(SNAPSHOT_URL, { credentials: "same-origin", cache: "no-store" }).then(function (r) {
            if (r.status === 401) window.location.reload();
            else explainRefusal();
          }, function () {});
        } else if (Date.now() - openedAt > 30000) {
          backoff = 500;
        }
        schedule();
      });
    }

    window.addEventListener("online", function () {
      if (!socket && timer) {
        clearTimeout(timer);
        timer = null;
        open();
      }
    });
    open();
  }

  function start() {
    localizeTimes(document);
    bindCopyButtons(document);
    bindChoices("data-type-choice", "data-for-type");
    bindChoices("data-format-choice", "data-for-format");
    bindLiveForms(document);
    var live = document.body.getAttribute("data-live");
    if (live && window.WebSocket) connect(live);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
