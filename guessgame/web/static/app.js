// guessgame's page: the live game from /api/events and play over /play.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const transcript = $("transcript");
  const line = $("line");
  const joinButton = $("join");
  const ended = $("ended");
  const endedText = $("ended-text");
  const statusText = $("status");

  // The live view: /api/stats and /api/leaderboard, kept fresh by /api/events.

  function setText(id, value) {
    const el = $(id);
    const text = String(value);
    if (el.textContent !== text) {
      el.textContent = text;
      el.classList.remove("bump");
      void el.offsetWidth; // restart the animation
      el.classList.add("bump");
    }
  }

  function getJSON(path) {
    return fetch(path, { cache: "no-store" }).then((r) => {
      if (!r.ok) throw new Error(path + ": " + r.status);
      return r.json();
    });
  }

  function loadStats() {
    return getJSON("/api/stats").then((s) => {
      setText("round", s.rounds);
      setText("range", s.range);
      setText("players", s.players);
    }).catch(() => {});
  }

  let shownBoard = new Map();

  function loadBoard() {
    return getJSON("/api/leaderboard?limit=10").then((rows) => {
      const body = $("leaderboard");
      body.replaceChildren();
      if (rows.length === 0) {
        const tr = document.createElement("tr");
        tr.className = "empty";
        const td = document.createElement("td");
        td.colSpan = 4;
        td.textContent = "No winners yet.";
        tr.appendChild(td);
        body.appendChild(tr);
      }
      const seen = new Map();
      for (const row of rows) {
        const tr = document.createElement("tr");
        for (const value of [row.rank, row.name, row.wins, row.best]) {
          const td = document.createElement("td");
          td.textContent = String(value);
          tr.appendChild(td);
        }
        if (shownBoard.size && shownBoard.get(row.name) !== row.wins) tr.className = "fresh";
        seen.set(row.name, row.wins);
        body.appendChild(tr);
      }
      shownBoard = seen;
    }).catch(() => {});
  }

  function addWin(win) {
    const list = $("wins");
    const empty = list.querySelector(".empty");
    if (empty) empty.remove();
    const li = document.createElement("li");
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = win.name;
    const when = document.createElement("span");
    when.className = "when";
    when.textContent = new Date().toLocaleTimeString();
    li.append(who, " found " + win.number + " in " + win.guesses +
      (win.guesses === 1 ? " guess" : " guesses"), when);
    list.prepend(li);
    while (list.children.length > 10) list.lastElementChild.remove();
  }

  function follow() {
    const live = $("live");
    const events = new EventSource("/api/events");
    events.onopen = () => {
      live.textContent = "live";
      live.classList.add("on");
      loadStats();
      loadBoard();
    };
    events.onerror = () => {
      live.textContent = "reconnecting\u2026";
      live.classList.remove("on");
    };
    events.onmessage = (e) => {
      let event;
      try { event = JSON.parse(e.data); } catch (err) { return; }
      if (event.type === "round") {
        setText("round", event.round);
        setText("range", event.range);
      } else if (event.type === "players") {
        setText("players", event.count);
      } else if (event.type === "win") {
        addWin(event);
        loadBoard();
      }
    };
  }

  // Playing: one WebSocket message per line each way.

  let socket = null;
  let lastLine = "";
  let waiting = [];

  function show(text, kind) {
    const div = document.createElement("div");
    div.className = "ln " + kind;
    div.textContent = text;
    transcript.appendChild(div);
    while (transcript.children.length > 500) transcript.firstElementChild.remove();
    transcript.scrollTop = transcript.scrollHeight;
  }

  function kindOf(text) {
    if (text.startsWith("Correct!")) return "win";
    if (text.startsWith("Too low!")) return "low";
    if (text.startsWith("Too high!")) return "high";
    if (text.endsWith("Goodbye!") || text.startsWith("*** The server is full") ||
        text.startsWith("*** Too many connections")) return "bye";
    if (text.startsWith("*** ")) return "notice";
    return "reply";
  }

  function endingFor(text) {
    const won = /^Correct! The number was (\d+)\. You won in (\d+ guess(?:es)?)!$/.exec(text);
    if (won) return ["won", "You won! The number was " + won[1] + ", found in " + won[2] + "."];
    if (text.startsWith("Correct!")) return ["won", "You won!"];
    if (text.startsWith("*** You have been removed")) return ["gone", "The administrator removed you from the game."];
    if (text.startsWith("*** The server is shutting down")) return ["gone", "The server is shutting down."];
    if (text.startsWith("*** Idle for too long")) return ["gone", "You were idle for too long."];
    if (text.startsWith("*** The server is full")) return ["gone", "The server is full. Try again later."];
    if (text.startsWith("*** Too many connections")) return ["gone", "Too many connections from your address."];
    if (text.startsWith("*** Line too long")) return ["gone", "That line was too long."];
    if (text === "Goodbye!") return ["", "You left the game."];
    return ["gone", "The connection was closed."];
  }

  function setPlaying(on, over) {
    statusText.textContent = on ? "playing" : "not playing";
    statusText.classList.toggle("on", on);
    joinButton.hidden = on || over;
    line.placeholder = on
      ? "Your guess, then Enter"
      : over ? "Play again, or type a guess and Enter" : "Press Join, then type a number and Enter";
  }

  function join() {
    if (socket !== null) return;
    ended.hidden = true;
    transcript.replaceChildren();
    lastLine = "";
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + "/play");
    socket = ws;
    ws.onopen = () => {
      setPlaying(true, false);
      for (const text of waiting) ws.send(text);
      waiting = [];
      line.focus();
    };
    ws.onmessage = (e) => {
      if (typeof e.data !== "string") return;
      lastLine = e.data;
      show(e.data, kindOf(e.data));
    };
    ws.onclose = () => {
      socket = null;
      waiting = [];
      setPlaying(false, true);
      const [kind, text] = endingFor(lastLine);
      ended.className = "ended" + (kind ? " " + kind : "");
      endedText.textContent = text;
      ended.hidden = false;
      $("again").focus();
    };
  }

  $("play-form").addEventListener("submit", (e) => e.preventDefault());
  line.addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    e.preventDefault();
    const text = line.value;
    line.value = "";
    if (socket !== null && socket.readyState === WebSocket.OPEN) {
      show(text, "you");
      socket.send(text);
    } else {
      join();
      show(text, "you");
      waiting.push(text);
    }
  });
  joinButton.addEventListener("click", join);
  $("again").addEventListener("click", join);

  loadStats();
  loadBoard();
  follow();
})();
