// The storefront's one script. It shows the payment institution's page
// embedded (an iframe) or in a popup window, and moves on when that page
// says it is done. A message is heard only from the payment origin, only
// from the frame or window this page opened, and only for this page's
// session; even then it is only a hint: the shop learns the outcome from
// the payment institution, server to server, at the done URL.
//
// Everything it needs is in the data- attributes of #payment-box (the
// page's Content-Security-Policy allows no inline script).
(function () {
  "use strict";

  var box = document.getElementById("payment-box");
  if (!box) {
    return;
  }
  var pageUrl = box.dataset.pageUrl;
  var paymentOrigin = box.dataset.paymentOrigin;
  var sessionId = box.dataset.sessionId;
  var doneUrl = box.dataset.doneUrl;
  var finished = false;

  // The message's data if it is one of ours, from `from`; else null.
  function heard(event, from) {
    if (!from || event.origin !== paymentOrigin || event.source !== from) {
      return null;
    }
    var data = event.data;
    if (!data || typeof data !== "object" || data.source !== "paybind" ||
        data.session_id !== sessionId) {
      return null;
    }
    return data;
  }

  function done() {
    if (finished) {
      return;
    }
    finished = true;
    window.location.assign(doneUrl);
  }

  if (box.dataset.presentation === "embedded") {
    var frame = document.getElementById("payment-frame");
    if (!frame) {
      return;
    }
    window.addEventListener("message", function (event) {
      var data = heard(event, frame.contentWindow);
      if (!data) {
        return;
      }
      if (data.type === "resize") {
        var height = Number(data.height);
        if (isFinite(height)) {
          // Bounded: a page cannot make the shop's page absurdly tall.
          height = Math.min(Math.max(Math.round(height), 240), 4000);
          frame.style.height = height + "px";
        }
      } else if (data.type === "done") {
        done();
      }
    });
    // The page may have spoken before this script listened: ask it again
    // for its height (and its end), to the payment origin only.
    var ping = function () {
      if (frame.contentWindow) {
        frame.contentWindow.postMessage({ source: "paybind-merchant", type: "ping" }, paymentOrigin);
      }
    };
    frame.addEventListener("load", ping);
    try {
      // Readable: still the frame's first blank document; "load" will come.
      void frame.contentWindow.location.href;
    } catch (e) {
      // Not readable: the payment page is already there.
      ping();
    }
    return;
  }

  var button = document.getElementById("open-popup");
  var status = document.getElementById("popup-status");
  if (!button) {
    return;
  }
  var popup = null;
  var watch = null;

  function say(text) {
    if (status) {
      status.textContent = text;
    }
  }

  window.addEventListener("message", function (event) {
    var data = heard(event, popup);
    if (data && data.type === "done") {
      if (watch) {
        window.clearInterval(watch);
      }
      // The page shows its result a moment and closes itself.
      done();
    }
  });

  button.addEventListener("click", function () {
    if (popup && !popup.closed) {
      popup.focus();
      return;
    }
    popup = window.open(pageUrl, "paybind", "popup,width=480,height=720");
    if (!popup) {
      // Blocked by the browser: the same page, in this window.
      window.location.assign(pageUrl);
      return;
    }
    say("The secure window is open. Finish there: this page moves on by itself.");
    if (watch) {
      window.clearInterval(watch);
    }
    watch = window.setInterval(function () {
      if (popup.closed && !finished) {
        window.clearInterval(watch);
        say("The secure window was closed before it was finished. Open it again to continue.");
      }
    }, 1000);
  });
})();
