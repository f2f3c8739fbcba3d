// One request to the API, for the pages and for the workers that upload a file's
// parts (seal-worker.js), which load no translations: the answer's status and JSON,
// never an exception (status 0: no answer came). Wording errors is api.js's part.

// `body` goes as JSON; `bytes` (a piece of an upload) as application/octet-stream. The
// pieces are Blobs: Chromium hands a Blob to its network process as it is, where a
// typed array body costs copies, time and memory (docs/PERFORMANCE.md, "P6").
export async function exchange(method, url, { body, bytes, token, headers: extra = {} } = {}) {
  const headers = { ...extra };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (bytes !== undefined) headers["Content-Type"] = "application/octet-stream";
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: bytes ?? (body === undefined ? undefined : JSON.stringify(body)),
      credentials: "omit",
      cache: "no-store",
    });
  } catch {
    return { status: 0, ok: false, data: null };
  }
  const data = response.status === 204 ? null : await jsonOrNull(response);
  return { status: response.status, ok: response.ok, data };
}

export async function jsonOrNull(response) {
  try {
    return await response.json();
  } catch {
    return null; // a proxy's HTML error page, say: a generic message then
  }
}
