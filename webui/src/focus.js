// Where focus goes after an action (issue 13, accessibility): keyboard and screen
// reader users land on what the action produced (the new link, the result of a send,
// the messages of the inbox just opened) instead of at the top of the page. Work in
// progress disables its button, and a disabled button drops focus to the body: the
// button takes it back when the work ends without a better place to go. Where an
// action removes the focused element (a deleted message), focus goes to its list.

const FOCUSABLE = "a[href], button, input, select, textarea, summary, [tabindex]";

/** Focus `node`; a heading or status becomes focusable by script (not by Tab) first. */
export function moveFocus(node) {
  if (!node || !node.isConnected || node.closest("[hidden]")) return;
  if (!node.matches(FOCUSABLE)) node.setAttribute("tabindex", "-1");
  node.focus();
}

/** Focus `node` at the end of work the user started with focus on `before`, unless
 *  they have moved it since (to a field they are typing in, say): taking it from
 *  there would send their next keys elsewhere. */
export function moveFocusUnlessMoved(node, before) {
  const active = document.activeElement;
  if (!active || active === document.body || active === before) moveFocus(node);
}

/** Give focus back to `node` when nothing holds it any more (it fell to the body). */
export function keepFocus(node) {
  const active = document.activeElement;
  if (!active || active === document.body) moveFocus(node);
}
