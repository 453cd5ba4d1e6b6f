// A photo at full size in a modal <dialog> (Escape and a click close it).
import { element } from "./_dom";

let dialog: HTMLDialogElement | undefined;

function lightbox(): HTMLDialogElement {
  if (!dialog) {
    dialog = element("dialog", "lightbox");
    dialog.addEventListener("click", () => dialog?.close());
    document.body.append(dialog);
  }
  return dialog;
}

export function openLightbox(figure: Element): void {
  const picture = figure.querySelector("picture, img");
  if (!picture) {
    return;
  }
  const photo = picture.cloneNode(true) as HTMLElement;
  photo.querySelector("img")?.setAttribute("sizes", "100vw");
  const caption = figure.querySelector("figcaption")?.textContent ?? "";
  const box = lightbox();
  box.replaceChildren(photo, element("p", "lightbox__caption", document.createTextNode(caption)));
  box.showModal();
}
