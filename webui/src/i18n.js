// The page scripts' words, in the page's language. The server renders each page in
// one language (Flask-Babel, secretlink/web/i18n.py) and puts the translations of the
// scripts' strings in `<meta name="secretlink-catalogue">` as JSON: no second
// framework, no extra request, and no code (the CSP forbids inline scripts). An
// English page has no catalogue: the source strings are the English text.
//
//   t("Sent {when}.", { when })                     one string, {named} placeholders
//   tn("{count} file", "{count} files", n, {...})   plural forms by the language's
//                                                   rules (Arabic has six); {count} is n
//
// `make translations` extracts every t() and tn() call into messages.pot, so their
// first arguments must be plain string literals.

let catalogue = null;

function messages() {
  if (catalogue === null) {
    const meta = globalThis.document?.querySelector('meta[name="secretlink-catalogue"]');
    catalogue = meta ? JSON.parse(meta.content) : {};
  }
  return catalogue;
}

// The page's language, as `<html lang>` says ("en" where there is no page).
export const pageLocale = () => globalThis.document?.documentElement.lang || "en";

const formats = new Map();
function format(kind, make) {
  const key = `${kind}:${pageLocale()}`;
  if (!formats.has(key)) formats.set(key, make(pageLocale()));
  return formats.get(key);
}

export const formatNumber = (value) => format("number", (locale) => new Intl.NumberFormat(locale)).format(value);

// A share in percent, as the language writes it ("45 %", "45٪").
export const formatPercent = (value) => t("{number} %", { number: value });

const show = (value) => (typeof value === "number" ? formatNumber(value) : String(value));

function fill(text, params) {
  return text.replace(/\{([a-z_]+)\}/g, (whole, name) => (name in params ? show(params[name]) : whole));
}

export function t(msgid, params = {}) {
  const text = messages()[msgid];
  return fill(typeof text === "string" ? text : msgid, params);
}

export function tn(singular, plural, count, params = {}) {
  const forms = messages()[singular];
  let text;
  if (forms && typeof forms === "object") {
    const category = format("plural", (locale) => new Intl.PluralRules(locale)).select(count);
    text = forms[category] ?? forms.other;
  } else {
    text = new Intl.PluralRules("en").select(count) === "one" ? singular : plural;
  }
  return fill(text, { ...params, count });
}

// A size for people, with the page's digits and separators: exact bytes below 1 KiB,
// else one decimal of KiB, MiB or GiB (the units the server's limits are set in).
export function formatSize(bytes) {
  if (bytes < 1024) return tn("{count} byte", "{count} bytes", bytes);
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const number = format("size", (locale) => new Intl.NumberFormat(locale,
    { minimumFractionDigits: 1, maximumFractionDigits: 1, useGrouping: false }));
  return `${number.format(value)} ${units[unit]}`;
}

// A date and time in the page's language.
export const formatDate = (date) =>
  format("date", (locale) => new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "short" }))
    .format(date);

// "a, b and c" as the page's language joins a list.
export const formatList = (items) =>
  format("list", (locale) => new Intl.ListFormat(locale, { type: "conjunction" })).format(items);
