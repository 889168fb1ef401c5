// The live patrol log: new entries arrive as server-sent events and go on top.
// Without this script the page still shows the log as it was when loaded.
(function () {
  "use strict";

  var list = document.getElementById("live-entries");
  var state = document.getElementById("live-state");
  var empty = document.getElementById("live-empty");
  if (!list || !state || !window.EventSource) {
    return;
  }
  var MAX_ROWS = 500; // a page left open all night stays light
  var banner = document.getElementById("alert-banner");
  var alertKinds = (list.dataset.alertKinds || "").split(" ");
  // Entries that open, answer or close an alert: the banner at the top is fetched again after them.
  var bannerKinds = alertKinds.concat(["alert_ack", "alert_clear"]);
  var bannerTimer = null;
  var QUIET_MS = 3000; // a planned reconnect takes far less; only say so when it is longer
  var words = list.dataset; // the page's words, in its language (host/live.html)

  function say(text, mode) {
    state.textContent = text;
    state.className = "flash" + (mode === "lost" || mode === "ended" ? " warning" : "");
    state.dataset.state = mode;
  }

  function tag(text, kind) {
    var span = document.createElement("span");
    span.className = "tag " + kind;
    span.textContent = text;
    return span;
  }

  function row(entry) {
    var li = document.createElement("li");
    li.id = "entry-" + entry.id;
    li.className = "card" + (entry.urgent ? " failed urgent" : "") + (entry.drill ? " drill" : "");
    if (entry.urgent) {
      li.append(tag(words.sayUrgent, "urgent"), " ");
    }
    if (entry.drill) {
      li.append(tag(words.sayDrill, "drill"), " ");
    }
    var label = document.createElement("strong");
    label.textContent = entry.label;
    var time = document.createElement("time");
    time.dateTime = entry.at;
    time.textContent = entry.shown_at;
    li.append(label, " · ", time, " · " + (entry.steward || words.sayNoSteward));
    // "(sealed)" is the stream's mark for words this watcher's keys do not open: said in the page's language.
    var sealed = function (words_) { return words_ === "(sealed)" ? words.saySealed : words_; };
    var place = sealed(entry.place) || entry.area;
    if (place) {
      li.append(" · " + place);
    }
    if (entry.area && entry.place && entry.place !== entry.area) {
      var area = document.createElement("span");
      area.className = "muted";
      area.textContent = words.sayArea.replace("{name}", function () { return entry.area; });
      li.append(" ", area);
    }
    if (alertKinds.indexOf(entry.kind) >= 0) {
      // An SOS links to its alert (where responders and the place are) rather than showing its code as a note.
      var link = document.createElement("a");
      link.href = list.dataset.alertUrl.replace(/\/1\/alert$/, "/" + entry.id + "/alert");
      link.textContent = entry.note && entry.note !== "(sealed)"
        ? list.dataset.sayAlert.replace("{words}", function () { return entry.note; }) : list.dataset.saySeeAlert;
      li.append(" · ", link);
    } else if (entry.note) {
      li.append(document.createElement("br"), words.sayNote.replace("{note}", function () { return sealed(entry.note); }));
    }
    var source = document.createElement("span");
    source.className = "muted from";
    source.textContent = words.sayFrom.replace("{source}", function () { return entry.source; });
    li.append(document.createElement("br"), source);
    return li;
  }

  // The open-alerts banner of every hub page, for a page opened before the alert: fetched again, as it is rendered.
  function refreshBanner() {
    if (!banner || !window.fetch || !list.dataset.banner) {
      return;
    }
    fetch(list.dataset.banner, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok || response.redirected) {
          throw new Error("refused");
        }
        return response.text();
      })
      .then(function (html) {
        banner.innerHTML = html;
      })
      .catch(function () {
        // The stream says so if the hub refuses this watcher; the banner keeps what it showed.
      });
  }

  var url = list.dataset.events + "?after=" + encodeURIComponent(list.dataset.newest || "0");
  var source = new EventSource(url);
  var quiet = null;

  source.onopen = function () {
    clearTimeout(quiet);
    quiet = null;
    say(words.sayLive, "live");
  };

  source.onmessage = function (event) {
    var entry = JSON.parse(event.data);
    if (document.getElementById("entry-" + entry.id)) {
      return; // already on the page
    }
    list.prepend(row(entry));
    if (bannerKinds.indexOf(entry.kind) >= 0) {
      clearTimeout(bannerTimer);
      bannerTimer = setTimeout(refreshBanner, 200);
    }
    if (empty) {
      empty.hidden = true;
    }
    while (list.children.length > MAX_ROWS) {
      list.lastElementChild.remove();
    }
  };

  // The hub ends the stream when this watcher's role lapses or they are logged
  // out, and says why: stop here, rather than reconnect to be refused.
  source.addEventListener("ended", function (event) {
    source.close();
    clearTimeout(quiet);
    var why = "";
    try {
      why = JSON.parse(event.data).message;
    } catch (error) {
      why = "";
    }
    say(why || words.sayEnded, "ended");
  });

  source.onerror = function () {
    if (source.readyState === EventSource.CLOSED) {
      // Refused (logged out, or the role lapsed): the browser will not try again.
      clearTimeout(quiet);
      say(words.sayRefused, "lost");
      return;
    }
    // Every stream ends after a while and the browser reconnects at once;
    // only a connection that stays lost is worth a word.
    if (quiet === null) {
      quiet = setTimeout(function () {
        say(words.sayLost, "lost");
      }, QUIET_MS);
    }
  };
})();
