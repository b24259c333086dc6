// The binding page's only script (served by payment-svc; the page's
// Content-Security-Policy allows no other). It tells the merchant's page
// the page's height (embedded) and its end (embedded and popup), with
// postMessage to the merchant's registered origin only, never "*"; it
// listens to nobody else; and it counts down to the next "send a new code".
(function () {
  "use strict";
  var data = document.body.dataset;
  var origin = data.parentOrigin || "";
  var sessionId = data.sessionId || "";
  var presentation = data.presentation || "";
  var state = data.state || "";
  var finished = state === "completed" || state === "failed" || state === "expired";

  // The window the merchant's page is in, if any.
  function merchantWindow() {
    if (presentation === "embedded" && window.parent !== window) {
      return window.parent;
    }
    if (presentation === "popup" && window.opener && !window.opener.closed) {
      return window.opener;
    }
    return null;
  }

  function send(message) {
    var to = merchantWindow();
    if (!to || !origin || !sessionId) {
      return false;
    }
    message.source = "paybind";
    message.session_id = sessionId;
    to.postMessage(message, origin);
    return true;
  }

  function reportHeight() {
    send({ type: "resize", height: Math.ceil(document.documentElement.scrollHeight) });
  }

  if (presentation === "embedded") {
    reportHeight();
    if (window.ResizeObserver) {
      new ResizeObserver(reportHeight).observe(document.body);
    } else {
      window.addEventListener("resize", reportHeight);
    }
  }

  if (finished && send({ type: "done", status: state }) && presentation === "popup") {
    // Long enough to read the result; the opener has the message already.
    window.setTimeout(function () { window.close(); }, 1500);
  }

  // The merchant's page may ask for the height and the end again (after
  // its own reload); any other window, or another origin, is ignored.
  window.addEventListener("message", function (event) {
    var from = merchantWindow();
    if (!from || event.source !== from || event.origin !== origin) {
      return;
    }
    var msg = event.data;
    if (!msg || msg.source !== "paybind-merchant" || msg.type !== "ping") {
      return;
    }
    reportHeight();
    if (finished) {
      send({ type: "done", status: state });
    }
  });

  // "Send a new code" waits for the resend interval.
  var wait = parseInt(data.resendIn || "0", 10);
  var resend = document.getElementById("resend");
  var waitLine = document.getElementById("resend-wait");
  var countdown = document.getElementById("resend-countdown");
  if (resend && wait > 0) {
    resend.disabled = true;
    var timer = window.setInterval(function () {
      wait -= 1;
      if (countdown) {
        countdown.textContent = String(Math.max(wait, 0));
      }
      if (wait <= 0) {
        window.clearInterval(timer);
        resend.disabled = false;
        if (waitLine) {
          waitLine.hidden = true;
        }
      }
    }, 1000);
  }
})();
