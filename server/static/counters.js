// Live length counters for the long fields a form marks with data-limit (templates/macros.html).
// It only counts: it never cuts what is typed or pasted (no maxlength); the server still refuses overlong
// text with its count and keeps every word. Without this script the field says "Up to N characters." as before.
(function () {
  "use strict";

  var script = document.currentScript;
  var fields = document.querySelectorAll("[data-limit]");
  if (!script || !fields.length) {
    return;
  }
  var words = script.dataset; // "{n} characters left" in each plural form of the page's language (web/counters.py)
  var lang = document.documentElement.lang || "en";
  var plurals = null;
  try {
    plurals = new Intl.PluralRules(lang);
  } catch (error) {
    plurals = null; // an old browser: the language's "other" form
  }
  var QUIET_MS = 1000; // a screen reader hears the count once typing pauses, never on every key

  function say(kind, n) {
    var category = plurals ? plurals.select(n) : "other";
    var key = "say" + kind + category.charAt(0).toUpperCase() + category.slice(1);
    var sentence = words[key] || words["say" + kind + "Other"];
    return sentence.replace("{n}", function () { return String(n); });
  }

  // What the server will count: characters (not UTF-16 halves: an emoji is one), and a line break as the
  // browser sends it, two characters (CR LF) where the field does not turn it into one.
  function length(field) {
    var count = Array.from(field.value).length;
    if (field.dataset.lineBreak === "2") {
      count += (field.value.match(/\n/g) || []).length;
    }
    return count;
  }

  function counter(field) {
    var limit = parseInt(field.dataset.limit, 10);
    if (!(limit > 0)) {
      return;
    }
    // Near the limit: the last tenth, and at least the last ten characters.
    var near = Math.max(10, Math.ceil(limit / 10));
    var shown = document.createElement("p");
    shown.className = "counter";
    shown.id = field.id + "-count";
    shown.setAttribute("aria-hidden", "true"); // what a screen reader hears is the polite line below
    shown.hidden = true;
    var heard = document.createElement("p");
    heard.className = "visually-hidden";
    heard.id = field.id + "-count-heard";
    heard.setAttribute("aria-live", "polite");
    field.after(shown, heard);
    var timer = null;
    var lastHeard = "";

    function update(aloud) {
      var left = limit - length(field);
      var over = left < 0;
      var text = over ? say("Over", -left) : say("Left", left);
      var close = over || left <= near;
      shown.hidden = !close;
      shown.textContent = close ? text : "";
      shown.classList.toggle("over", over);
      field.classList.toggle("over-limit", over);
      if (!aloud) {
        return;
      }
      clearTimeout(timer);
      timer = setTimeout(function () {
        // Far from the limit nothing is said; near it, the count once typing pauses, when it changed.
        var line = close ? text : "";
        if (line !== lastHeard) {
          heard.textContent = line;
          lastHeard = line;
        }
      }, QUIET_MS);
    }

    field.addEventListener("input", function () { update(true); });
    update(false); // a form sent back with too much in it shows the count at once (the error summary speaks)
  }

  Array.prototype.forEach.call(fields, counter);
})();
