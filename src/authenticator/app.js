// The browser authenticator of the local API (served as /_local/authenticator.js): what a bank's
// phone app does in CIBA, in about 400 lines of plain JavaScript, as a reference.
//
//   1. Enrol: make a P-256 key pair whose private half never leaves the browser (non-extractable
//      WebCrypto key), send the public half with a one-time enrolment code to /device/register,
//      keep the device id and the key in IndexedDB.
//   2. Receive: a real app gets a push; here the page polls the local API's record of the pushes
//      sent to this device (/_local/pushes?device=…).
//   3. Show: the push is only a hint. The page asks the OP for the details with a request signed
//      by the device key (/device/transaction) and shows what the OP answers in `shown`.
//   4. Decide: the answer (/device/decision) is a JWS signed by the device key that carries
//      `txn_hash`, the SHA-256 of the RFC 8785 canonical JSON of `shown`: the OP accepts it only
//      if the user saw exactly what the client asked for, and puts that hash in the ID token.
//
// Every value from the server is rendered with textContent, never as HTML. The page's CSP allows
// scripts and connections to its own origin only.

const encoder = new TextEncoder();
const POLL_MS = 1000;

// === Encodings and hashes

/** base64url without padding (RFC 7515 §2), as JWS and JWK thumbprints use it. */
function base64url(bytes) {
  let binary = '';
  for (const byte of new Uint8Array(bytes)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

const randomBytes = (n) => crypto.getRandomValues(new Uint8Array(n));
const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
const now = () => Math.floor(Date.now() / 1000);

/** base64url(SHA-256(UTF-8 bytes of `text`)). */
async function sha256(text) {
  return base64url(await crypto.subtle.digest('SHA-256', encoder.encode(text)));
}

/**
 * RFC 8785 JSON Canonicalization Scheme (JCS). ECMAScript's JSON.stringify already serialises
 * literals, strings and numbers the way JCS requires (JCS is defined in its terms); what is left
 * is no whitespace and object members sorted by the UTF-16 code units of their names, which is
 * exactly what Array.prototype.sort does with no comparator.
 */
export function canonicalize(value) {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') {
    return JSON.stringify(value);
  }
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError('JCS: numbers must be finite');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalize).join(',')}]`;
  if (typeof value === 'object') {
    const members = Object.keys(value).sort()
      .filter((name) => value[name] !== undefined)
      .map((name) => `${JSON.stringify(name)}:${canonicalize(value[name])}`);
    return `{${members.join(',')}}`;
  }
  throw new TypeError(`JCS: cannot serialise a ${typeof value}`);
}

/** RFC 7638 thumbprint of a P-256 public JWK: the required members in lexicographic order, which
 * is what canonicalize produces from those four members. */
const thumbprint = (jwk) => sha256(canonicalize({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }));

/**
 * A compact JWS (RFC 7515) over `claims`, signed ES256 with the device's private key; `kid` is
 * the device id, which is how the OP finds the public key to verify it. WebCrypto's ECDSA
 * signature is already the 64-byte r||s that JWS wants (not DER).
 */
async function signJws(device, claims) {
  const header = { alg: 'ES256', typ: 'JWT', kid: device.device_id };
  const input = `${base64url(encoder.encode(JSON.stringify(header)))}.${base64url(encoder.encode(JSON.stringify(claims)))}`;
  const signature = await crypto.subtle.sign(
    { name: 'ECDSA', hash: 'SHA-256' }, device.keyPair.privateKey, encoder.encode(input));
  return `${input}.${base64url(signature)}`;
}

/** The claims every device request carries: a short life and a single-use id (the OP refuses a
 * replayed `jti`). */
function freshClaims(seconds) {
  const iat = now();
  return { iat, exp: iat + seconds, jti: base64url(randomBytes(16)) };
}

// === The device, kept in IndexedDB (CryptoKey objects survive structured cloning, still
// non-extractable), so a reload keeps the enrolment.

function withStore(mode, action) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open('ciba-authenticator', 1);
    open.onupgradeneeded = () => open.result.createObjectStore('device');
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const db = open.result;
      const tx = db.transaction('device', mode);
      const request = action(tx.objectStore('device'));
      tx.oncomplete = () => { db.close(); resolve(request.result); };
      tx.onerror = () => { db.close(); reject(tx.error); };
    };
  });
}
const loadDevice = () => withStore('readonly', (s) => s.get('current'));
const saveDevice = (device) => withStore('readwrite', (s) => s.put(device, 'current'));
const clearDevice = () => withStore('readwrite', (s) => s.delete('current'));

// === HTTP

/** A same-origin request; the answer's status and JSON body (null for 204 or no JSON). */
async function call(path, { method = 'GET', type, body } = {}) {
  const response = await fetch(path, {
    method, body, cache: 'no-store', headers: type ? { 'content-type': type } : {},
  });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  return { status: response.status, data };
}

/** The OP's errors are {"error", "error_description"}: the description is for people. */
const problem = ({ status, data }) =>
  data?.error_description || data?.error || `the server answered HTTP ${status}`;

// === Page state and helpers

const $ = (selector) => document.querySelector(selector);
let device = null; // {device_id, keyPair, jkt} once enrolled
let generation = 0; // bumped on enrol/forget: stale poll answers are ignored
const seen = new Map(); // txn -> 'loading' | 'shown' | 'dropped': the pushes already handled
const cards = new Map(); // txn -> {element, shown, state}

let errorFrom = null; // what showed the current error: 'poll' ones go when polling works again

function showError(message, from = 'page') {
  const box = $('[data-testid="error"]');
  box.textContent = message ?? '';
  box.hidden = !message;
  errorFrom = message ? from : null;
}

function show() {
  $('#enrol-section').hidden = Boolean(device);
  $('#device-section').hidden = !device;
  $('#requests-section').hidden = !device;
  if (device) {
    $('[data-testid="device-id"]').textContent = device.device_id;
    $('[data-testid="device-jkt"]').textContent = device.jkt;
  }
  $('#no-requests').hidden = cards.size > 0;
}

/** A definition list row, if there is a value; arrays are joined with commas. */
function row(dl, label, value) {
  if (value === undefined || value === null || value === '') return;
  const dt = document.createElement('dt');
  const dd = document.createElement('dd');
  dt.textContent = label;
  dd.textContent = Array.isArray(value) ? value.join(', ') : String(value);
  dl.append(dt, dd);
}

// === Step 1: enrolment

async function enrol(code) {
  // extractable=false applies to the private key; the public key can always be exported.
  const keyPair = await crypto.subtle.generateKey(
    { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']);
  const { kty, crv, x, y } = await crypto.subtle.exportKey('jwk', keyPair.publicKey);
  const answer = await call('/device/register', {
    method: 'POST',
    type: 'application/json',
    body: JSON.stringify({
      enrollment_code: code,
      public_key: { kty, crv, x, y },
      // A real app sends its FCM/APNs registration token; the local API only records pushes.
      push_token: `browser-${hex(randomBytes(16))}`,
      platform: 'GCM',
    }),
  });
  if (answer.status !== 201 || typeof answer.data?.device_id !== 'string') {
    throw new Error(`Enrolment refused: ${problem(answer)}`);
  }
  const enrolled = { device_id: answer.data.device_id, keyPair, jkt: await thumbprint({ kty, crv, x, y }) };
  await saveDevice(enrolled);
  return enrolled;
}

// === Step 2: pushes (polled; a real app is woken by FCM or APNs)

async function poll(myGeneration) {
  if (myGeneration !== generation) return; // the device was forgotten or replaced
  try {
    const url = `/_local/pushes?device=${encodeURIComponent(device.device_id)}&limit=20`;
    const answer = await call(url);
    if (answer.status !== 200 || !Array.isArray(answer.data)) throw new Error(`Listing pushes: ${problem(answer)}`);
    if (errorFrom === 'poll') showError(null);
    for (const push of answer.data) {
      const txn = push?.message?.txn;
      // Oldest first; skip other devices' pushes, the expired ones and those already handled.
      if (push?.device_id !== device.device_id || typeof txn !== 'string' || seen.has(txn)) continue;
      if (!(push.message.expires_at > now())) continue;
      seen.set(txn, 'loading');
      fetchDetails(txn, myGeneration); // in parallel; its errors are shown by itself
    }
  } catch (error) {
    if (myGeneration === generation) showError(error.message, 'poll');
  } finally {
    if (myGeneration === generation) setTimeout(() => poll(myGeneration), POLL_MS);
  }
}

// === Step 3: the details, from the OP, authenticated by the device key

async function fetchDetails(txn, myGeneration) {
  try {
    const jws = await signJws(device, { txn, ...freshClaims(60) });
    const answer = await call('/device/transaction', { method: 'POST', type: 'application/jwt', body: jws });
    if (myGeneration !== generation) return;
    if (answer.status === 200 && answer.data?.shown) {
      seen.set(txn, 'shown');
      addCard(txn, answer.data);
    } else if (answer.status === 409 || (answer.status === 400 && answer.data?.error === 'expired_token')) {
      seen.set(txn, 'dropped'); // decided on another device, or expired: nothing to ask
    } else if (answer.status >= 500) {
      seen.delete(txn); // try again at the next poll
      showError(`Loading request ${txn}: ${problem(answer)}`);
    } else {
      seen.set(txn, 'dropped');
      showError(`Loading request ${txn}: ${problem(answer)}`);
    }
  } catch (error) {
    seen.delete(txn); // a network error: try again at the next poll
    if (myGeneration === generation) showError(`Loading request ${txn}: ${error.message}`);
  }
}

/** Renders one entry of authorization_details (RFC 9396); false if this page cannot show its
 * type, in which case the user must not be offered Approve. */
function renderDetail(detail, container) {
  const section = document.createElement('section');
  section.className = 'detail';
  const heading = document.createElement('h4');
  const dl = document.createElement('dl');
  section.append(heading, dl);
  container.append(section);
  let understood = true;
  if (detail?.type === 'payment_initiation') {
    // The amount is a decimal string ("50.00"): shown as sent, never turned into a float.
    const amount = detail.instructedAmount ?? {};
    heading.textContent = `Pay ${amount.amount} ${amount.currency} to ${detail.creditorName}`;
    row(dl, 'Amount', `${amount.amount} ${amount.currency}`);
    row(dl, 'To', detail.creditorName);
    row(dl, 'To account', account(detail.creditorAccount));
    row(dl, 'From account', account(detail.debtorAccount));
    row(dl, 'Reference', detail.remittanceInformationUnstructured);
    row(dl, 'Actions', detail.actions);
    row(dl, 'Locations', detail.locations);
    row(dl, 'Identifier', detail.identifier);
  } else if (detail?.type === 'generic') {
    // shared/schemas/generic.json: the description is shown as it is, then the common fields.
    heading.textContent = detail.description;
    row(dl, 'Actions', detail.actions);
    row(dl, 'Data types', detail.datatypes);
    row(dl, 'Privileges', detail.privileges);
    row(dl, 'Locations', detail.locations);
    row(dl, 'Identifier', detail.identifier);
  } else {
    // The OP only sends types it validated, but an app must not approve what it cannot show.
    understood = false;
    heading.textContent = `Unsupported detail type: ${detail?.type}`;
    for (const [name, value] of Object.entries(detail ?? {})) {
      row(dl, name, typeof value === 'string' ? value : JSON.stringify(value));
    }
  }
  return understood;
}

/** An account of payment_initiation: exactly one of iban, bban, other. IBANs are shown in the
 * usual groups of four. */
function account(value) {
  if (!value) return undefined;
  if (value.iban) return `IBAN ${value.iban.replace(/(.{4})(?=.)/g, '$1 ')}`;
  if (value.bban) return `BBAN ${value.bban}`;
  return value.other;
}

function addCard(txn, details) {
  // Everything the user decides on comes from `shown`, which the decision's txn_hash covers; the
  // push itself is unauthenticated and only says that there is something to fetch.
  const { shown } = details;
  const element = $('#request-template').content.firstElementChild.cloneNode(true);
  const field = (name) => element.querySelector(`[data-field="${name}"]`);
  element.dataset.txn = txn;
  field('title').id = `request-${txn}`; // txns are [A-Za-z0-9._-]: the card is named by its title
  element.setAttribute('aria-labelledby', field('title').id);
  field('client_name').textContent = shown.client_name;
  field('binding_message').textContent = shown.binding_message ?? '';
  field('binding-row').hidden = !shown.binding_message;
  // The OP's one-line summary, outside `shown` (so outside the hash): a heading, not the record.
  field('summary').textContent = details.summary ?? '';
  field('summary').hidden = !details.summary;
  field('scope').textContent = shown.scope;
  field('acr_values').textContent = details.acr_values ?? '';
  field('acr_values').hidden = field('acr-label').hidden = !details.acr_values;
  let understood = true;
  for (const detail of shown.authorization_details ?? []) {
    understood = renderDetail(detail, field('details')) && understood;
  }
  const approve = element.querySelector('[data-testid="approve"]');
  const deny = element.querySelector('[data-testid="deny"]');
  approve.disabled = !understood;
  const card = { element, shown, state: 'pending', buttons: [approve, deny] };
  approve.addEventListener('click', () => decide(txn, card, 'approve'));
  deny.addEventListener('click', () => decide(txn, card, 'deny'));
  cards.set(txn, card);
  $('#requests').append(element);
  tick();
  show();
}

// === Step 4: the decision

function setOutcome(card, outcome, text) {
  const element = card.element.querySelector('[data-testid="outcome"]');
  element.dataset.outcome = outcome;
  element.textContent = text;
}

async function decide(txn, card, action) {
  if (card.state !== 'pending') return;
  card.state = 'sending';
  card.buttons.forEach((b) => { b.disabled = true; });
  try {
    // The hash of exactly what was shown: all five members of `shown` as the OP sent them
    // (nulls included), canonicalised with JCS so the OP computes the same bytes.
    const txn_hash = await sha256(canonicalize(card.shown));
    const jws = await signJws(device, { txn, action, txn_hash, ...freshClaims(120) });
    const answer = await call('/device/decision', { method: 'POST', type: 'application/jwt', body: jws });
    card.state = 'done';
    card.element.querySelector('[data-field="countdown"]').textContent = 'answered';
    if (answer.status === 204) {
      setOutcome(card, action === 'approve' ? 'approved' : 'denied', action === 'approve' ? 'Approved' : 'Denied');
    } else {
      const why = answer.status === 409 ? 'it was already answered on another device' : problem(answer);
      setOutcome(card, 'error', `Not recorded: ${why}`);
    }
  } catch (error) {
    card.state = 'pending'; // nothing reached the OP: the user may try again
    card.buttons.forEach((b) => { b.disabled = false; });
    setOutcome(card, 'error', `Not sent: ${error.message}`);
  }
}

/** Once a second: every pending card's countdown; an expired one can no longer be answered. */
function tick() {
  for (const card of cards.values()) {
    if (card.state !== 'pending') continue;
    const left = card.shown.expires_at - now();
    const countdown = card.element.querySelector('[data-field="countdown"]');
    if (left <= 0) {
      card.state = 'expired';
      card.buttons.forEach((b) => { b.disabled = true; });
      countdown.textContent = 'expired';
      setOutcome(card, 'expired', 'Expired: the request can no longer be answered');
    } else {
      const seconds = String(left % 60).padStart(2, '0');
      countdown.textContent = `in ${Math.floor(left / 60)}:${seconds}`;
    }
  }
}

// === Wiring

function start(enrolled) {
  device = enrolled;
  generation += 1;
  seen.clear();
  cards.clear();
  $('#requests').replaceChildren();
  show();
  if (device) poll(generation);
}

async function main() {
  $('#enrol-form').addEventListener('submit', async (event) => {
    event.preventDefault(); // no navigation (the CSP has form-action 'none')
    const input = $('[data-testid="enrollment-code"]');
    const button = $('[data-testid="enrol"]');
    const code = input.value.trim();
    if (!code) { showError('Type the enrolment code first.'); input.focus(); return; }
    button.disabled = true;
    showError(null);
    try {
      start(await enrol(code));
      input.value = '';
    } catch (error) {
      showError(error.message);
    } finally {
      button.disabled = false;
    }
  });
  $('[data-testid="forget"]').addEventListener('click', async () => {
    try {
      await clearDevice();
      showError(null);
      start(null);
      $('[data-testid="enrollment-code"]').focus();
    } catch (error) {
      showError(`Forgetting the device: ${error.message}`);
    }
  });
  setInterval(tick, 1000);
  try {
    start((await loadDevice()) ?? null);
  } catch (error) {
    start(null);
    showError(`This browser cannot keep the device (IndexedDB): ${error.message}`);
  }
}

// Imported under node (for the JCS self-check) there is no document: only the exports count.
if (typeof document !== 'undefined') main();
