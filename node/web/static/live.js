// dazibao member UI: optional live updates and the characters-left counter.  The pages work
// without this file (the server then says how many characters are too many).
//
// The counter: a textarea with data-max-bytes names its counter (aria-describedby); it shows
// how many more characters of the kind typed so far fit (a Chinese character takes three bytes
// of UTF-8, a Latin letter one), or how many characters are too many, counted as the server
// counts them (node/web/pages/common.py, characters_over).
//
// A page that shows a board or a thread names a JSON endpoint of this same node
// (data-url on #live) and the point it was rendered at (data-cursor).  Every few seconds this
// asks for what arrived since and adds it to the page, built with createElement and
// textContent only: text from other people is never parsed as HTML here.
(function () {
  "use strict";
  function utf8(ch) {
    var c = ch.codePointAt(0);
    return c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
  }

  function count(area, out) {
    var max = parseInt(area.dataset.maxBytes, 10);
    var chars = Array.from(area.value.replace(/\r\n?/g, "\n"));
    var size = 0;
    chars.forEach(function (ch) { size += utf8(ch); });
    var text;
    if (size > max) {
      var over = 0;
      for (var i = chars.length - 1; i >= 0 && size > max; i--) { size -= utf8(chars[i]); over++; }
      text = out.dataset.msgOver.replace("%(num)s", over.toLocaleString("en"));
      out.classList.add("over");
    } else {
      var perChar = chars.length ? Math.max(1, Math.round(size / chars.length)) : 1;
      text = out.dataset.msgLeft.replace("%(num)s", Math.floor((max - size) / perChar).toLocaleString("en"));
      out.classList.remove("over");
    }
    if (out.textContent !== text) { out.textContent = text; }
  }

  Array.prototype.forEach.call(document.querySelectorAll("textarea[data-max-bytes]"), function (area) {
    var out = document.getElementById(area.getAttribute("aria-describedby") || "");
    if (!out || !out.dataset.msgLeft) { return; }
    out.hidden = false;
    count(area, out);
    area.addEventListener("input", function () { count(area, out); });
  });
}());

(function () {
  "use strict";
  var live = document.getElementById("live");
  var list = document.getElementById("live-list");
  if (!live || !list || !live.dataset.url || !window.fetch) { return; }
  var cursor = live.dataset.cursor;
  var delay = 3000;
  var MAX_DELAY = 60000;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text) { node.textContent = text; }
    return node;
  }

  function authorNode(author) {
    var span = el("span", "author" + (author.shared ? " shared" : ""));
    var a = el("a");
    a.href = author.url;
    if (author.name) {
      a.appendChild(el("bdi", "name", author.name));
      a.appendChild(document.createTextNode(" "));
    }
    a.appendChild(el("code", "fp", author.fingerprint));
    span.appendChild(a);
    return span;
  }

  function timeNode(item) {
    var t = el("time", "", item.time);
    t.setAttribute("datetime", item.iso);
    return t;
  }

  function addThread(item) {
    var li = el("li", "thread live-new");
    li.id = "p-" + item.id;
    var a = el("a", "title");
    a.href = item.url;
    a.appendChild(el("bdi", "", item.title));
    li.appendChild(a);
    var meta = el("div", "meta");
    meta.appendChild(authorNode(item.author));
    meta.appendChild(el("span", "sep", " · "));
    meta.appendChild(timeNode(item));
    meta.appendChild(el("span", "sep", " · "));
    meta.appendChild(el("span", "tag ok", live.dataset.msgNew));
    li.appendChild(meta);
    list.insertBefore(li, list.firstChild);
  }

  function addReply(item) {
    var article = el("article", "post live-text");
    article.id = "p-" + item.id;
    var meta = el("header", "meta");
    meta.appendChild(authorNode(item.author));
    meta.appendChild(el("span", "sep", " · "));
    var link = el("a");
    link.href = item.url;
    link.appendChild(timeNode(item));
    meta.appendChild(link);
    meta.appendChild(el("span", "sep", " · "));
    meta.appendChild(el("span", "tag ok", live.dataset.msgNew));
    article.appendChild(meta);
    var body = el("div", "body", item.text);
    body.setAttribute("dir", "auto");
    article.appendChild(body);
    list.appendChild(article);
  }

  function banner() {
    if (document.querySelector(".live-banner")) { return; }
    var p = el("p", "live-banner", live.dataset.msgReload);
    p.setAttribute("role", "status");
    live.parentNode.insertBefore(p, live);
  }

  function schedule() { window.setTimeout(poll, delay); }

  function poll() {
    if (document.hidden) { schedule(); return; }
    var url = live.dataset.url + "&after=" + encodeURIComponent(cursor);
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        delay = 3000;
        if (data.reload) { banner(); return; }
        cursor = data.cursor;
        data.items.forEach(function (item) {
          if (document.getElementById("p-" + item.id)) { return; }
          if (list.dataset.mode === "thread") { addReply(item); } else { addThread(item); }
        });
        schedule();
      })
      .catch(function () {
        delay = Math.min(delay * 2, MAX_DELAY);
        schedule();
      });
  }

  schedule();
}());

// The Peers page while "Sync now" runs: each peer's line follows /api/sync, written with
// textContent only.  Without this file the page reloads itself (a <noscript> refresh).
(function () {
  "use strict";
  var box = document.getElementById("sync-live");
  if (!box || !box.dataset.url || !window.fetch) { return; }

  function show(peer) {
    var lines = box.querySelectorAll("li[data-url]");
    for (var i = 0; i < lines.length; i += 1) {
      if (lines[i].dataset.url === peer.url) {
        lines[i].dataset.phase = peer.phase;
        lines[i].querySelector(".state").textContent = peer.text;
      }
    }
  }

  function finished() {
    var note = document.querySelector(".sync-running");
    if (note) { note.parentNode.removeChild(note); }
    var button = document.querySelector("form[action='/peers/sync'] button");
    if (button) { button.disabled = false; }
  }

  function poll() {
    fetch(box.dataset.url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        data.peers.forEach(show);
        if (data.running) { window.setTimeout(poll, 1000); } else { finished(); }
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }

  window.setTimeout(poll, 1000);
}());
