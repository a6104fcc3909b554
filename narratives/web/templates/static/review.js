// The review page's only script: a live grapheme counter for post text and click-to-seek
// in the transcript, select-all in the queue, and who else has a draft open (refreshed).
// Everything else works without it.
(function () {
  "use strict";

  var segmenter = (typeof Intl !== "undefined" && Intl.Segmenter)
    ? new Intl.Segmenter(undefined, { granularity: "grapheme" }) : null;

  // As Bluesky counts: extended grapheme clusters (an emoji family is one).
  function graphemes(text) {
    if (segmenter) {
      var n = 0;
      for (var _ of segmenter.segment(text)) { n++; }
      return n;
    }
    return Array.from(text).length;
  }

  function posts(text) {
    return text.replace(/\r\n/g, "\n").split(/^[ \t]*-{3,}[ \t]*$/m)
      .map(function (p) { return p.trim().replace(/\n{3,}/g, "\n\n"); })
      .filter(function (p) { return p.length > 0; });
  }

  function watch(area) {
    var limit = parseInt(area.getAttribute("data-graphemes"), 10);
    var counter = document.getElementById(area.getAttribute("data-counter"));
    var warning = document.getElementById(area.getAttribute("data-warning"));
    function update() {
      var parts = posts(area.value);
      var over = false;
      counter.textContent = parts.map(function (p, i) {
        var n = graphemes(p);
        if (n > limit) { over = true; }
        return "Post " + (i + 1) + ": " + n + " / " + limit;
      }).join(" · ") || "Empty";
      counter.classList.toggle("warn", over);
      area.classList.toggle("over", over);
      if (warning) { warning.hidden = !over; }
    }
    area.addEventListener("input", update);
    update();
  }

  function seekLinks() {
    var player = document.getElementById("player");
    if (!player) { return; }
    document.querySelectorAll("a.ts[data-t]").forEach(function (link) {
      link.addEventListener("click", function (event) {
        event.preventDefault();
        player.currentTime = parseFloat(link.getAttribute("data-t"));
        var played = player.play();
        if (played && played.catch) { played.catch(function () {}); }
      });
    });
  }

  // The queue's "select all on this page" for bulk approve and reject.
  function selectAll() {
    var all = document.getElementById("select-all");
    if (!all) { return; }
    var boxes = document.querySelectorAll("#queue-rows input[name=ids]");
    all.addEventListener("change", function () {
      boxes.forEach(function (box) { box.checked = all.checked; });
    });
  }

  // The draft page's "Also open by ...": asked again every 30 s while the page is open (the
  // page shows it without this script too; the asking keeps this editor listed for others).
  function presence() {
    var box = document.getElementById("presence");
    if (!box || !window.fetch) { return; }
    var url = box.getAttribute("data-viewers-url");
    function show(names) {
      box.textContent = "";
      if (!names.length) { return; }
      var p = document.createElement("p");
      p.className = "viewers small";
      p.id = "viewers";
      var who = document.createElement("strong");
      who.textContent = names.join(", ");
      p.append("Also open by ", who,
        " (in the last two minutes): talk before you both change it.");
      box.appendChild(p);
    }
    setInterval(function () {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) { if (data) { show(data.viewers); } })
        .catch(function () {});
    }, 30000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("textarea[data-graphemes]").forEach(watch);
    seekLinks();
    selectAll();
    presence();
  });
})();
