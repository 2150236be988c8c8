// hookgate console: the little JavaScript the pages need. No inline
// scripts (the Content-Security-Policy allows none): everything hangs off
// ids and data- attributes.
(function () {
  "use strict";

  // forms that ask first (delete a source)
  document.addEventListener("submit", function (e) {
    var msg = e.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) e.preventDefault();
  });

  // dead letters: the "select all" box
  document.addEventListener("change", function (e) {
    if (e.target.id !== "select-all") return;
    document.querySelectorAll("input[name=id][type=checkbox]").forEach(function (b) {
      b.checked = e.target.checked;
    });
  });

  function charts() {
    var el = document.getElementById("series");
    if (!el || typeof uPlot === "undefined") return;
    var d = JSON.parse(el.getAttribute("data-series"));
    var width = Math.max(320, Math.min(900, (document.querySelector("main") || document.body).clientWidth - 40));
    function chart(target, title, lines) {
      var box = document.getElementById(target);
      if (!box) return;
      box.textContent = "";
      var series = [{}], data = [d.x];
      lines.forEach(function (l) {
        series.push({ label: l[1], stroke: l[2], width: 2 });
        data.push(d.series[l[0]]);
      });
      new uPlot({ title: title, width: width, height: 220, series: series, axes: [{}, { label: "per minute" }] }, data, box);
    }
    chart("chart-inbound", "Inbound, last hour", [["accepted", "accepted", "#2b7a3d"], ["rejected", "rejected", "#b3261e"]]);
    chart("chart-outbound", "Outbound, last hour", [["delivered", "ok", "#1f5fa8"], ["failed", "retry / failed", "#c77700"]]);
  }

  function live() {
    var list = document.getElementById("live-events");
    if (!list) return;
    var form = document.getElementById("live-filter");
    var state = document.getElementById("live-state");
    var src = null;
    function connect() {
      if (src) src.close();
      var q = new URLSearchParams(new FormData(form));
      for (var k of Array.from(q.keys())) if (!q.get(k)) q.delete(k);
      var qs = q.toString();
      history.replaceState(null, "", location.pathname + (qs ? "?" + qs : ""));
      src = new EventSource(form.getAttribute("data-stream") + (qs ? "?" + qs : ""));
      src.onopen = function () { state.textContent = "connected"; state.className = "ok"; };
      src.onerror = function () { state.textContent = "reconnecting…"; state.className = "warn"; };
      src.addEventListener("dropped", function (m) {
        var li = document.createElement("li");
        li.className = "note";
        li.textContent = m.data + " event(s) skipped: this browser was too slow";
        list.prepend(li);
      });
      src.onmessage = function (m) {
        var ev = JSON.parse(m.data);
        var li = document.createElement("li");
        li.className = "live-event";
        li.setAttribute("data-id", ev.id);
        var det = document.createElement("details");
        var sum = document.createElement("summary");
        sum.textContent = ev.time.replace("T", " ").replace("Z", "") + "  " + ev.source + "  " + ev.event + "  " + ev.id;
        var pre = document.createElement("pre");
        pre.textContent = ev.json;
        var a = document.createElement("a");
        a.href = "history/trace/" + encodeURIComponent(ev.id);
        a.textContent = "trace";
        det.append(sum, a, pre);
        li.append(det);
        list.prepend(li);
        while (list.children.length > 200) list.lastElementChild.remove();
        var empty = document.getElementById("live-empty");
        if (empty) empty.remove();
      };
    }
    form.addEventListener("submit", function (e) { e.preventDefault(); connect(); });
    connect();
  }

  document.addEventListener("DOMContentLoaded", function () { charts(); live(); });
  // the overview refreshes itself (htmx): draw its charts again
  document.addEventListener("htmx:afterSettle", function () {
    var box = document.getElementById("chart-inbound");
    if (box && !box.querySelector(".uplot")) charts();
  });
})();
