// Live pages: every two seconds the page's <main> is fetched again (the server answers the
// `x-sluice-partial` header with <main>'s content only) and swapped in, until the page says
// it is settled (#live data-live="false": a job that ended). No reload, no framework.
(function () {
  "use strict";
  var EVERY_MS = 2000;
  var last = null;
  function live() {
    var flag = document.getElementById("live");
    return flag !== null && flag.getAttribute("data-live") === "true";
  }
  function tick() {
    if (!live()) { return; }
    fetch(window.location.href, { headers: { "x-sluice-partial": "1" }, credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 401 || r.status === 403) { window.location.href = "/ui/login"; return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        // Unchanged content is left alone: a button being clicked stays the same button.
        if (html !== null && html !== last) {
          last = html;
          document.querySelector("main").innerHTML = html;
          window.sluiceUpdates = (window.sluiceUpdates || 0) + 1;
        }
      })
      .catch(function () { /* the coordinator restarts: try again next tick */ })
      .then(function () { window.setTimeout(tick, EVERY_MS); });
  }
  window.setTimeout(tick, EVERY_MS);
})();
