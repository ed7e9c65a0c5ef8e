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
