// A click on a figure opens its desktop rendering at full size in an overlay that scrolls both ways
// (a second click or Escape closes it). On a phone the page shows the figure's phone rendering, with
// its panels stacked; the overlay is for a closer look at the wide one, without leaving the page.
document.addEventListener("DOMContentLoaded", () => {
  const close = () => document.querySelector("div.figure-overlay")?.remove();
  for (const img of document.querySelectorAll("div.cell_output img")) {
    img.classList.add("figure-zoomable");
    img.title = "Click to open the figure full size";
    img.addEventListener("click", () => {
      close();
      const overlay = document.createElement("div");
      overlay.className = "figure-overlay";
      overlay.setAttribute("role", "dialog");
      overlay.setAttribute("aria-label", "Figure at full size (click or press Escape to close)");
      const full = document.createElement("img");
      full.src = img.src;   // the desktop rendering, whichever one the page shows
      full.alt = img.alt;
      overlay.appendChild(full);
      overlay.addEventListener("click", close);
      document.body.appendChild(overlay);
    });
  }
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") close(); });
});
