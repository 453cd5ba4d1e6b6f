// The demo site's script. Pages with a gallery load the lightbox the first
// time a photo is opened: it is a chunk of its own (a dynamic import).
import { onReady } from "./_dom";

onReady(() => {
  const gallery = document.querySelector<HTMLElement>(".gallery");
  if (!gallery) {
    return;
  }
  for (const figure of gallery.querySelectorAll<HTMLElement>("figure")) {
    figure.tabIndex = 0;
    figure.setAttribute("role", "button");
  }
  const open = async (event: Event): Promise<void> => {
    const figure = (event.target as Element).closest("figure");
    if (!figure || !gallery.contains(figure)) {
      return;
    }
    event.preventDefault();
    const { openLightbox } = await import("./_lightbox");
    openLightbox(figure);
  };
  gallery.addEventListener("click", open);
  gallery.addEventListener("keydown", (event: KeyboardEvent) => {
    if (event.key === "Enter" || event.key === " ") {
      void open(event);
    }
  });
});
