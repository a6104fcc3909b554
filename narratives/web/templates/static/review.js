// The review page's only script: a live grapheme counter for post text and click-to-seek
// in the transcript. Everything else works without it.
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

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("textarea[data-graphemes]").forEach(watch);
    seekLinks();
  });
})();
