// "Run now": the token the user typed is kept in this tab's sessionStorage and sent as a
// bearer header with fetch. No cookie carries it, so another site cannot make the browser
// trigger a drill (no CSRF); without JavaScript the buttons stay hidden.
(function () {
  "use strict";
  var KEY = "firedrill-token";
  var form = document.getElementById("token-form");
  var input = document.getElementById("token");
  if (!form || !input) return;
  form.hidden = false;
  input.value = sessionStorage.getItem(KEY) || "";
  input.addEventListener("input", function () { sessionStorage.setItem(KEY, input.value); });
  form.addEventListener("submit", function (e) { e.preventDefault(); });

  document.querySelectorAll("button.run-now").forEach(function (btn) {
    btn.hidden = false;
    btn.addEventListener("click", function () { trigger(btn); });
  });

  function say(btn, text, bad) {
    var out = btn.parentNode.querySelector("output.run-status");
    out.textContent = text;
    out.className = "run-status" + (bad ? " bad" : "");
    return out;
  }

  function trigger(btn) {
    var name = btn.getAttribute("data-scenario");
    var token = input.value.trim();
    if (!token) { say(btn, "type the API token above first", true); input.focus(); return; }
    btn.disabled = true;
    say(btn, "starting…", false);
    fetch("/api/v1/scenarios/" + encodeURIComponent(name) + "/runs", {
      method: "POST",
      headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
      body: JSON.stringify({ operator: "dashboard" }),
      credentials: "omit"
    }).then(function (resp) {
      return resp.json().catch(function () { return {}; }).then(function (body) {
        if (resp.status === 202) {
          var out = say(btn, "started run ", false);
          var a = document.createElement("a");
          a.href = "/runs/" + encodeURIComponent(body.id);
          a.textContent = body.id;
          a.className = "started-run";
          out.appendChild(a);
          // Show the run's state; the page then refreshes itself while it is in flight.
          setTimeout(function () { location.reload(); }, 1500);
          return;
        }
        btn.disabled = false;
        say(btn, (body && body.error) || ("HTTP " + resp.status), true);
      });
    }).catch(function (err) {
      btn.disabled = false;
      say(btn, "request failed: " + err, true);
    });
  }
})();
