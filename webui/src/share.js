// Sharing an inbox's link: a QR code drawn here, the prompt beside it, and the
// system share sheet where the browser has one (Copy is the page's own button).
// The QR code is drawn from the link the page built from its own key, never fetched
// as an image: a server could otherwise hand out a code for a key of its own.

import encodeQR from "qr";
import { $, element, say } from "./ui.js";
import { t } from "./i18n.js";

const SVG = "http://www.w3.org/2000/svg";
const QUIET_ZONE = 4; // modules of light margin that scanners need (ISO/IEC 18004)

function svgElement(tag, attributes) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

/** The QR code of `text` as an SVG element: one path of dark modules on a light
 *  square. Attributes only, no style: the CSP allows no inline style. */
export function qrSvg(text, label) {
  const modules = encodeQR(text, "raw", { ecc: "medium", border: QUIET_ZONE });
  const size = modules.length;
  let path = "";
  modules.forEach((row, y) => {
    for (let x = 0; x < size; x += 1) {
      if (!row[x]) continue;
      let run = 1;
      while (x + run < size && row[x + run]) run += 1;
      path += `M${x} ${y}h${run}v1h-${run}z`;
      x += run - 1;
    }
  });
  const svg = svgElement("svg", {
    viewBox: `0 0 ${size} ${size}`,
    role: "img",
    "aria-label": label,
    "shape-rendering": "crispEdges",
  });
  svg.append(
    svgElement("rect", { width: size, height: size, fill: "#ffffff" }),
    svgElement("path", { d: path, fill: "#000000" }),
  );
  return svg;
}

let shared = null; // { link, prompt }

async function share() {
  if (!shared) return;
  try {
    await navigator.share({
      title: "secretlink",
      text: shared.prompt || t("Send me an anonymous, end-to-end encrypted message."),
      url: shared.link,
    });
  } catch (err) {
    if (err?.name === "AbortError") return; // closed the share sheet
    say(t("Could not share: {error}. Copy the link instead.", { error: err?.message ?? err }), "error");
  }
}

/** Show the sharing block for `link` (the page's own, checked), with its prompt. */
export function showShare(link, prompt = "") {
  shared = { link, prompt };
  try {
    $("#share-qr").replaceChildren(qrSvg(link, t("QR code of the inbox link")));
  } catch {
    // Only a link longer than a QR code holds (an origin of thousands of characters).
    $("#share-qr").replaceChildren(
      element("p", { class: "hint" }, t("This link is too long for a QR code: copy it instead.")));
  }
  const caption = $("#share-prompt");
  caption.textContent = prompt;
  caption.hidden = !prompt;
  // Only where the browser has a share sheet (mostly phones); Copy works everywhere.
  $("#share-link").hidden = typeof navigator.share !== "function";
  $("#share").hidden = false;
}

export function hideShare() {
  shared = null;
  $("#share").hidden = true;
  $("#share-qr").replaceChildren();
}

$("#share-link").addEventListener("click", share);
