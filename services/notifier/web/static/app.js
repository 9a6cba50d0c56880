// newswatch web app: the live alert view (Server-Sent Events). Everything else is plain
// forms and htmx attributes; no inline script (the Content-Security-Policy forbids it).
(function () {
  "use strict";

  function webUrl(value) {
    return /^https?:\/\//i.test(value || "") ? value : "";
  }

  function text(tag, className, value) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    node.textContent = value;
    return node;
  }

  function render(alert) {
    const item = document.createElement("li");
    item.className = "card";
    const when = new Date(alert.delivered_at);
    item.appendChild(
      text("p", "muted", when.toISOString().slice(0, 16).replace("T", " ") + " UTC · " +
        alert.subscription_id + " · " + alert.topic_id + " · " + alert.channel)
    );
    const heading = document.createElement("h3");
    heading.className = "alert-title";
    const url = webUrl(alert.item && alert.item.url);
    const title = (alert.item && alert.item.title) || "(untitled)";
    if (url) {
      const link = text("a", "", title);
      link.href = url;
      link.rel = "noopener noreferrer";
      heading.appendChild(link);
    } else {
      heading.textContent = title;
    }
    item.appendChild(heading);
    if (alert.reason && alert.reason.snippet) item.appendChild(text("p", "snippet", alert.reason.snippet));
    const terms = Object.keys((alert.reason && alert.reason.terms) || {});
    if (terms.length) item.appendChild(text("p", "why", "Why: " + terms.join(", ")));
    return item;
  }

  function live() {
    const box = document.getElementById("live");
    if (!box || !window.EventSource) return;
    const list = document.getElementById("live-list");
    const source = new EventSource(box.dataset.stream);
    source.addEventListener("alert", function (event) {
      let alert;
      try {
        alert = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      box.hidden = false;
      list.insertBefore(render(alert), list.firstChild);
      while (list.children.length > 50) list.removeChild(list.lastChild);
    });
  }

  document.addEventListener("DOMContentLoaded", live);
})();
