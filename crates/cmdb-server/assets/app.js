// cmdb web UI behaviour. No inline scripts anywhere (the Content-Security-Policy forbids them), so
// everything the pages do beyond plain HTML and htmx is wired here from data attributes.
(function () {
  "use strict";

  // Forms that destroy something ask first: <form data-confirm="Revoke ...?">.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  // The column chooser: the ticked columns become the list's `cols` parameter.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.closest("#column-chooser")) {
      return;
    }
    var chosen = Array.prototype.filter
      .call(form.querySelectorAll("input.column-choice"), function (box) { return box.checked; })
      .map(function (box) { return box.value; });
    form.querySelector("input[name=cols]").value = chosen.join(",");
  });

  // Copy buttons beside secrets shown once: <button data-copy="...">.
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button[data-copy]") : null;
    if (!button) {
      return;
    }
    var text = button.dataset.copy || "";
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(function () {
        button.textContent = "Copied";
      });
    }
  });

  // htmx requests carry the session's CSRF token as a header (read from the logout form, which every
  // logged-in page has), so a future htmx POST needs no per-form wiring.
  document.addEventListener("htmx:configRequest", function (event) {
    var field = document.querySelector("#logout-form input[name=csrf]");
    if (field) {
      event.detail.headers["X-CSRF-Token"] = field.value;
    }
  });

  // Changing a filter select or the as-of date applies the filters at once.
  document.addEventListener("change", function (event) {
    var element = event.target;
    if (element.form && element.form.id === "filters" && (element.tagName === "SELECT" || element.type === "date")) {
      element.form.requestSubmit();
    }
  });
})();

// The scan page: a barcode scanner types a code and Enter. Each scan is queued (and kept in
// localStorage, so a reload loses nothing), sent in order to the REST API with the session's CSRF
// token, retried until the server answers, and answered on screen at once.
(function () {
  "use strict";
  var page = document.getElementById("scan");
  var form = document.getElementById("scan-form");
  if (!page || !form) {
    return;
  }
  var id = page.dataset.stocktake;
  var input = document.getElementById("scan-code");
  var results = document.getElementById("scan-results");
  var pending = document.getElementById("scan-pending");
  var key = "cmdb-scan-queue-" + id;
  var queue = [];
  try { queue = JSON.parse(localStorage.getItem(key) || "[]"); } catch (e) { queue = []; }
  var sending = false;
  var labels = { verified: "verified", moved: "moved", unexpected: "not on this list", unknown: "unknown code", already_seen: "already seen" };

  function save() {
    var bodies = queue.map(function (item) { return { body: item.body }; });
    try { localStorage.setItem(key, JSON.stringify(bodies)); } catch (e) { /* private mode: memory only */ }
    pending.hidden = queue.length === 0;
    pending.textContent = queue.length + " scan(s) waiting to be sent";
  }

  function show(item, answer) {
    var line = item.line;
    if (!line) {
      line = document.createElement("li");
      results.insertBefore(line, results.firstChild);
      item.line = line;
    }
    if (!answer) {
      line.className = "pending";
      line.textContent = item.body.code + " … sending";
      return;
    }
    line.className = answer.outcome;
    var text = item.body.code + ": " + (labels[answer.outcome] || answer.outcome);
    if (answer.hostname) { text += " (" + answer.hostname + ")"; }
    if (answer.differences && answer.differences.length) { text += " — record says " + answer.differences.join("; "); }
    line.textContent = text;
    Object.keys(answer.counts || {}).forEach(function (name) {
      var cell = document.querySelector("[data-count=" + name + "]");
      if (cell) { cell.textContent = answer.counts[name]; }
    });
  }

  function csrf() {
    var field = document.querySelector("#logout-form input[name=csrf]");
    return field ? field.value : "";
  }

  function send() {
    if (sending || queue.length === 0) {
      return;
    }
    sending = true;
    var item = queue[0];
    fetch("/api/v1/stocktakes/" + id + "/sightings", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(item.body)
    }).then(function (response) {
      return response.json().then(function (body) { return { status: response.status, body: body }; });
    }).then(function (answer) {
      sending = false;
      if (answer.status >= 500 || answer.status === 429) {
        throw new Error("retry");
      }
      queue.shift();
      save();
      if (answer.status === 200) {
        show(item, answer.body);
      } else {
        item.line.className = "unknown";
        item.line.textContent = item.body.code + ": " + (answer.body.message || ("refused (" + answer.status + ")"));
      }
      send();
    }).catch(function () {
      sending = false;
      setTimeout(send, 2000);
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var code = input.value.trim();
    input.value = "";
    input.focus();
    if (!code) {
      return;
    }
    var body = { code: code };
    var idc = document.getElementById("scan-idc").value.trim();
    var cabinet = document.getElementById("scan-cabinet").value.trim();
    if (idc) { body.idc = idc; }
    if (cabinet) { body.cabinet = cabinet; }
    var item = { body: body };
    queue.push(item);
    save();
    show(item, null);
    send();
  });

  // The code field keeps the focus unless a person is typing a location.
  document.addEventListener("click", function (event) {
    if (!event.target.closest || !event.target.closest(".scan-location")) {
      input.focus();
    }
  });
  // Scans left from a previous visit go out first.
  queue.forEach(function (item) { show(item, null); });
  save();
  send();
  input.focus();
})();
