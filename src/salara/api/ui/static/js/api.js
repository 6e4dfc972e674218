// The page's requests: same origin only, the session cookie, and the CSRF
// token (from the sign-in) on every request that changes something.

export const session = { name: null, rights: [], csrf: null, tokens: false };

export function can(right) {
  return session.rights.includes(right);
}

let onSignedOut = () => {};

/** Called when a request answers 401: the session ended. */
export function whenSignedOut(handler) {
  onSignedOut = handler;
}

/** fetch() a path of this server: {status, body} (body parsed from JSON, else null). */
export async function request(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && session.csrf) headers["X-CSRF-Token"] = session.csrf;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  let parsed = null;
  const text = await response.text();
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = null;
    }
  }
  if (response.status === 401 && path !== "/ui/api/session") onSignedOut();
  return { status: response.status, body: parsed };
}

/** The message of an error answer, for people. */
export function problem(answer) {
  const body = answer.body || {};
  return body.message || body.text || `HTTP ${answer.status}`;
}

export function take(who) {
  session.name = who.name;
  session.rights = who.rights || [];
  session.csrf = who.csrf || null;
  session.tokens = Boolean(who.tokens);
}
