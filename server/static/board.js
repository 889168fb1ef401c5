// The host's board: listens to the live log's event stream and fetches its panels again
// on each new entry, and every REFRESH besides (the clocks move without entries).
// Urgent entries change the page title and, once sound is enabled by a click, beep.
// Without this script the page reloads itself (a <noscript> refresh).
(function () {
  "use strict";

  var root = document.getElementById("board");
  var panels = document.getElementById("board-panels");
  var state = document.getElementById("board-state");
  var soundButton = document.getElementById("board-sound");
  if (!root || !panels || !state || !window.fetch || !window.EventSource) {
    return;
  }
  var words = root.dataset;
  var REFRESH_MS = parseInt(words.refreshMs, 10) || 30000;
  var SETTLE_MS = 250; // a burst of entries is one fetch
  var QUIET_MS = 3000; // a planned reconnect takes far less; only say so when it is longer
  var baseTitle = document.title;
  var audio = null;
  var beeps = 0;

  function say(text, mode) {
    state.textContent = text;
    state.dataset.state = mode;
  }

  // -- the panels --------------------------------------------------------------

  var fetching = false;
  var wanted = false;
  var settle = null;

  function refresh() {
    if (fetching) {
      wanted = true; // once this fetch is in, fetch again: something came in meanwhile
      return;
    }
    fetching = true;
    fetch(words.panels, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        // Logged out or no longer allowed: the hub answers with the login page or a refusal.
        if (!response.ok || response.redirected) {
          throw new Error("refused");
        }
        return response.text();
      })
      .then(function (html) {
        panels.innerHTML = html;
      })
      .catch(function (error) {
        if (error && error.message === "refused") {
          say(words.sayRefused, "ended");
        }
      })
      .then(function () {
        fetching = false;
        if (wanted) {
          wanted = false;
          refresh();
        }
      });
  }

  function soon() {
    clearTimeout(settle);
    settle = setTimeout(refresh, SETTLE_MS);
  }

  setInterval(refresh, REFRESH_MS);

  // -- sound and title -----------------------------------------------------------

  function tone(start, frequency, length) {
    var osc = audio.createOscillator();
    var gain = audio.createGain();
    osc.type = "square";
    osc.frequency.value = frequency;
    gain.gain.setValueAtTime(0.0001, start);
    gain.gain.exponentialRampToValueAtTime(0.3, start + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + length);
    osc.connect(gain);
    gain.connect(audio.destination);
    osc.start(start);
    osc.stop(start + length + 0.05);
  }

  function beep(times) {
    if (!audio) {
      return false;
    }
    if (audio.state === "suspended") {
      audio.resume();
    }
    var at = audio.currentTime + 0.05;
    for (var n = 0; n < times; n += 1) {
      tone(at + n * 0.35, n % 2 ? 660 : 880, 0.25);
    }
    beeps += 1;
    // Something a person (or a test) can see: how many times the board asked to play a sound.
    root.dataset.beeps = String(beeps);
    if (window.console && console.info) {
      console.info("board: sound played (" + beeps + ")");
    }
    return true;
  }

  function alarm(entry) {
    var what = entry.label + (entry.steward ? " · " + entry.steward : "") + " · " + entry.shown_at;
    document.title = words.urgentTitle.replace("{what}", function () { return what; });
    root.dataset.alarm = String(entry.id);
    beep(3);
  }

  // Whoever is at the board has seen it: a click or a key puts the title back.
  function seen() {
    if (root.dataset.alarm) {
      delete root.dataset.alarm;
      document.title = baseTitle;
    }
  }
  document.addEventListener("keydown", seen);
  document.addEventListener("click", function (event) {
    if (event.target !== soundButton) {
      seen();
    }
  });

  // Browsers play nothing until the page was clicked: one click here, then every urgent entry beeps.
  var Context = window.AudioContext || window.webkitAudioContext;
  if (soundButton && Context) {
    soundButton.hidden = false;
    soundButton.addEventListener("click", function () {
      if (!audio) {
        audio = new Context();
      }
      audio.resume();
      soundButton.setAttribute("aria-pressed", "true");
      soundButton.textContent = words.saySoundOn;
      root.dataset.sound = "on";
      beep(1); // so the one who enabled it hears what an alarm sounds like
    });
  }

  // -- the stream ------------------------------------------------------------------

  var url = words.events + "?after=" + encodeURIComponent(words.newest || "0");
  var source = new EventSource(url);
  var quiet = null;
  var lost = false;

  source.onopen = function () {
    clearTimeout(quiet);
    quiet = null;
    say(words.sayLive, "live");
    if (lost) {
      lost = false;
      soon(); // whatever changed while the connection was down
    }
  };

  source.onmessage = function (event) {
    var entry;
    try {
      entry = JSON.parse(event.data);
    } catch (error) {
      return;
    }
    if (entry.urgent) {
      alarm(entry);
    }
    soon();
  };

  // The hub ends the stream when this watcher's role lapses or they are logged out, and says why.
  source.addEventListener("ended", function (event) {
    source.close();
    clearTimeout(quiet);
    var why = "";
    try {
      why = JSON.parse(event.data).message;
    } catch (error) {
      why = "";
    }
    say(why || words.sayRefused, "ended");
  });

  source.onerror = function () {
    lost = true;
    if (source.readyState === EventSource.CLOSED) {
      clearTimeout(quiet);
      say(words.sayRefused, "ended");
      return;
    }
    // Every stream ends after a while and the browser reconnects at once; only a lasting loss is worth a word.
    if (quiet === null) {
      quiet = setTimeout(function () {
        say(words.sayLost, "lost");
      }, QUIET_MS);
    }
  };
})();
