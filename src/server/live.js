// kiln watch: live reload. Listens to /__kiln/events (Server-Sent Events):
// swaps stylesheets in place on `css`, reloads on `reload`, shows build
// errors over the page on `problem` and hides them on `ok`. Reconnects by
// itself; a restarted server (new instance) or a missed event reloads.
const OVERLAY_ID = "kiln-overlay";
let seen = null;

function connect() {
  const source = new EventSource("/__kiln/events");
  source.addEventListener("hello", (event) => {
    const hello = JSON.parse(event.data);
    const missed =
      seen !== null &&
      (hello.instance !== seen.instance || hello.generation !== seen.generation);
    seen = hello;
    // For tests and curious developers: the channel is up.
    window.__kilnLive = "connected";
    if (missed) location.reload();
  });
  source.addEventListener("css", (event) => {
    const message = JSON.parse(event.data);
    if (seen) seen.generation = message.generation;
    hideOverlay();
    for (const swap of message.swaps) swapStylesheet(swap);
  });
  source.addEventListener("reload", () => location.reload());
  source.addEventListener("problem", (event) => {
    showOverlay(JSON.parse(event.data).problems);
  });
  source.addEventListener("ok", hideOverlay);
  source.onerror = () => {
    // EventSource retries by itself unless the server refused the stream.
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, 1000);
  };
}

// `old` and `new` are output paths: they end the link's URL whatever the
// site's base URL is.
function swapStylesheet({ old, new: next, integrity }) {
  for (const link of document.querySelectorAll('link[rel~="stylesheet"]')) {
    const url = new URL(link.href);
    if (!url.pathname.endsWith("/" + old)) continue;
    url.pathname = url.pathname.slice(0, -old.length) + next;
    const fresh = link.cloneNode();
    fresh.href = url.href;
    if (integrity && link.hasAttribute("integrity")) fresh.integrity = integrity;
    else fresh.removeAttribute("integrity");
    // The old sheet stays until the new one applies: no flash of unstyled page.
    const done = () => link.remove();
    fresh.addEventListener("load", done, { once: true });
    fresh.addEventListener("error", done, { once: true });
    link.after(fresh);
  }
}

function showOverlay(problems) {
  hideOverlay();
  const overlay = document.createElement("div");
  overlay.id = OVERLAY_ID;
  overlay.setAttribute("role", "alert");
  overlay.style.cssText =
    "position:fixed;inset:0;z-index:2147483647;overflow:auto;padding:2rem;" +
    "background:rgba(20,20,24,.94);color:#f3f3f3;font:14px/1.5 ui-monospace,monospace";
  const title = document.createElement("h2");
  title.textContent = "kiln: the last rebuild failed";
  title.style.cssText = "margin:0 0 1rem;color:#ff6b6b;font-size:18px";
  overlay.append(title);
  for (const problem of problems) {
    const block = document.createElement("pre");
    block.style.cssText = "white-space:pre-wrap;margin:0 0 1.5rem";
    let text = problem.message + "\n";
    if (problem.file) {
      text += `  --> ${problem.file}:${problem.line}:${problem.column}\n`;
    }
    if (problem.frame) text += problem.frame;
    block.textContent = text;
    overlay.append(block);
  }
  const hint = document.createElement("p");
  hint.textContent = "Fix the file and save: this page updates by itself. Still serving the last good build.";
  hint.style.cssText = "color:#aaa";
  overlay.append(hint);
  document.documentElement.append(overlay);
}

function hideOverlay() {
  document.getElementById(OVERLAY_ID)?.remove();
}

connect();
