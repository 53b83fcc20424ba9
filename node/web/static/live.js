// dazibao member UI: optional live updates.  The pages work without this file.
//
// A page that shows a board or a thread names a JSON endpoint of this same node
// (data-url on #live) and the point it was rendered at (data-cursor).  Every few seconds this
// asks for what arrived since and adds it to the page, built with createElement and
// textContent only: text from other people is never parsed as HTML here.
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
