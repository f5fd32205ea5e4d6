// ssehub browser client: an ES module with no build step, served by the hub at /static/ssehub.js.
//
//   import { SSEClient } from '/static/ssehub.js';
//   new SSEClient('/api/v1/sse/stream/project:1:stage:rewrite')
//     .on('token', (data) => console.log(data.content))
//     .on('done', (data) => console.log(data.full_text))
//     .connect();
//
// Handlers receive (data, event): `data` is the parsed JSON payload (the raw string when it is
// not JSON) and `event` is {type, id, data (raw text), channel?}. Server events keep their names
// (the stages' `error` included); the client's own lifecycle events are `statechange`
// ({state, previous}), `open`, `connectionerror` ({attempt, delayMs, status, message, fatal}) and
// `fallback` ({transport}). `*` receives every server event.
//
// Runs: on a stage channel the client follows the current or next run. A run that had already
// ended when the client joined (its `snapshot` says so) is history: its snapshot and its
// replayed `done`/`error` are not delivered (`previousRuns: true` delivers them).
//
// Outages: network loss never ends the subscription. The browser's own EventSource retries are
// not counted; the client's own attempts back off up to `reconnect.maxMs` and go on for as long
// as the network is down (the window's `online` event reconnects at once). Only HTTP answers
// end it: 400/401/403/404/405/413 at once, other error statuses after `reconnect.maxAttempts`.
// With single-use tickets, pass `ticket: async () => (await getTicket()).ticket`: each
// connection attempt asks for a fresh one.

export const STATES = Object.freeze({ CONNECTING: 'connecting', OPEN: 'open', CLOSED: 'closed' });

// Event types an EventSource transport listens for even without a handler, so that `*` sees
// them: EventSource only dispatches named events to listeners registered for that name.
export const KNOWN_TYPES = [
  'message', 'connected', 'reset', 'snapshot', 'heartbeat',
  'token', 'stage_update', 'progress', 'done', 'error',
  'start', 'chunk', 'complete', 'cancelled',
  'user_message', 'ai_response_start', 'ai_response_chunk', 'ai_response_complete',
  'conversation_error', 'join', 'leave',
  'task.created', 'task.progress', 'task.completed', 'task.failed',
];

const LIFECYCLE = new Set(['statechange', 'open', 'connectionerror', 'fallback']);
const FATAL_STATUS = new Set([400, 401, 403, 404, 405, 413]);
const DEFAULT_RECONNECT = { initialMs: 1000, maxMs: 30000, factor: 2, jitter: 0.5, maxAttempts: 10 };

/** Parse a payload as JSON, or return the text itself when it is not JSON. */
export function parseData(text) {
  if (typeof text !== 'string' || text === '') return text;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** Add query parameters to a URL (relative URLs resolve against the page). */
export function withQuery(url, params) {
  const u = new URL(url, globalThis.location ? globalThis.location.href : 'http://localhost/');
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') u.searchParams.set(key, value);
  }
  return u.toString();
}

/** Delay before reconnect attempt `attempt` (1-based): exponential, capped, with jitter. */
export function backoffDelay(attempt, options = {}) {
  const { initialMs, maxMs, factor, jitter } = { ...DEFAULT_RECONNECT, ...options };
  const base = Math.min(maxMs, initialMs * factor ** Math.max(0, attempt - 1));
  return Math.round(base * (1 - jitter * Math.random()));
}

/**
 * Incremental text/event-stream parser per the WHATWG HTML spec, 9.2.6 "Interpreting an event
 * stream": CR, LF and CRLF end lines (a CR at a chunk's end waits for a possible LF), a leading
 * BOM is dropped, `:` lines are comments, an id containing NUL is ignored, and an event is
 * dispatched on a blank line only when its data buffer is not empty.
 */
export class SSEParser {
  constructor() {
    this.decoder = new TextDecoder('utf-8');
    this.buffer = '';
    this.pendingCR = false;
    this.started = false;
    this.lastEventId = '';
    this.retry = null;
    this._reset();
  }

  _reset() {
    this.data = [];
    this.type = '';
  }

  /** Feed bytes (Uint8Array) or text; returns the events completed by this chunk. */
  feed(chunk) {
    let text = typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
    if (!this.started && text.length) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this.pendingCR && text.startsWith('\n')) text = text.slice(1);
    this.pendingCR = false;
    this.buffer += text;
    const events = [];
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer[i];
      if (c !== '\n' && c !== '\r') continue;
      const line = this.buffer.slice(start, i);
      if (c === '\r') {
        if (i + 1 === this.buffer.length) this.pendingCR = true;
        else if (this.buffer[i + 1] === '\n') i++;
      }
      start = i + 1;
      const event = this._line(line);
      if (event) events.push(event);
    }
    this.buffer = this.buffer.slice(start);
    return events;
  }

  _line(line) {
    if (line === '') {
      if (!this.data.length) {
        this._reset();
        return null;
      }
      const event = { type: this.type || 'message', data: this.data.join('\n'), id: this.lastEventId };
      this._reset();
      return event;
    }
    if (line[0] === ':') return null;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.type = value;
    else if (field === 'id' && !value.includes('\0')) this.lastEventId = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.retry = Number(value);
    return null;
  }
}

/** Read a fetch Response body as SSE, calling onEvent for each event; resolves at its end. */
export async function readEventStream(response, onEvent, parser = new SSEParser()) {
  const reader = response.body.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    for (const event of parser.feed(value)) onEvent(event);
  }
  // At the end of the stream an incomplete event is discarded, as the spec says.
  return parser;
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    return body?.error?.message || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

/** An HTTP error answer, with the hub's JSON error code and message. */
export class HTTPError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'HTTPError';
    this.status = status;
  }
}

/**
 * POST a JSON body and read the text/event-stream answer (e.g. a chat answer's POST stream).
 * `handlers` maps event types to fn(data, event); `handlers['*']` sees every event.
 * Options: {token, headers, signal}. Resolves with the list of events when the stream ends.
 */
export async function streamPost(url, body, handlers = {}, options = {}) {
  const headers = { 'Content-Type': 'application/json', Accept: 'text/event-stream', ...options.headers };
  if (options.token) headers.Authorization = `Bearer ${options.token}`;
  const response = await fetch(url, {
    method: 'POST',
    headers,
    body: JSON.stringify(body ?? {}),
    signal: options.signal,
    credentials: options.withCredentials ? 'include' : 'same-origin',
  });
  if (!response.ok) throw new HTTPError(response.status, await errorMessage(response));
  const events = [];
  await readEventStream(response, (raw) => {
    const event = { ...raw };
    const data = parseData(raw.data);
    events.push({ ...event, parsed: data });
    handlers[raw.type]?.(data, event);
    handlers['*']?.(data, event);
  });
  return events;
}

/**
 * One SSE subscription with reconnection. Transports: `eventsource` (default; the browser
 * resumes with Last-Event-ID by itself and this client takes over with backoff when it gives
 * up), `fetch` (streams with fetch: Authorization header, every event type), and `poll` (the
 * JSON history endpoint, for one concrete channel). `fallback: 'poll'` switches to polling
 * when EventSource is missing or keeps failing.
 */
export class SSEClient {
  constructor(url, options = {}) {
    this.url = url;
    this.options = { ...options };
    this.reconnectOptions = { ...DEFAULT_RECONNECT, ...(options.reconnect || {}) };
    this.transport = options.transport || (typeof EventSource === 'undefined' ? 'poll' : 'eventsource');
    this.state = STATES.CLOSED;
    this.lastEventId = options.lastEventId || '';
    this.clientId = null;
    this.attempts = 0;
    this.handlers = new Map();
    this._source = null;
    this._abort = null;
    this._timer = null;
    this._wanted = false;
    this._listening = new Set();
    this._historyRuns = new Map(); // ended earlier run id → its last event id (not delivered)
    this._seenRuns = new Set(); // run ids this client received events of
    this._online = () => this._wanted && this.state !== STATES.OPEN && this._reopenNow();
  }

  /** Register a handler; returns the client for chaining. */
  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(fn);
    if (this._source && !LIFECYCLE.has(type) && type !== '*') this._listen(this._source, type);
    return this;
  }

  /** Receive these event types through `*` too (EventSource needs a listener per type). */
  listen(...types) {
    this.options.types = [...(this.options.types || []), ...types];
    if (this._source) for (const type of types) this._listen(this._source, type);
    return this;
  }

  /** Remove a handler (or every handler of `type` when fn is omitted). */
  off(type, fn) {
    if (fn === undefined) this.handlers.delete(type);
    else this.handlers.get(type)?.delete(fn);
    return this;
  }

  isConnected() {
    return this.state === STATES.OPEN;
  }

  /** Open the stream (no-op when already open or connecting). */
  connect() {
    if (this._wanted) return this;
    this._wanted = true;
    this.attempts = 0;
    globalThis.addEventListener?.('online', this._online);
    if (this.transport === 'poll' && !this.pollChannel()) {
      this._fail({ fatal: true, message: 'polling needs one concrete channel' });
      return this;
    }
    this._open();
    return this;
  }

  /** Close the stream and stop reconnecting. */
  disconnect() {
    this._wanted = false;
    globalThis.removeEventListener?.('online', this._online);
    this._teardown();
    this._setState(STATES.CLOSED);
    return this;
  }

  /** The URL of the next attempt: token (or ticket) and resume position as query parameters. */
  streamUrl(ticket) {
    return withQuery(this.url, {
      access_token: this.options.token,
      ticket,
      lastEventId: this.lastEventId || undefined,
    });
  }

  /** The network is back: reconnect now instead of waiting for the backoff or the browser. */
  _reopenNow() {
    this.attempts = 0;
    this._open();
  }

  /** The channel polled by the `poll` transport: options.pollChannel or the stream URL's. */
  pollChannel() {
    if (this.options.pollChannel) return this.options.pollChannel;
    const u = new URL(this.url, globalThis.location?.href || 'http://localhost/');
    const m = u.pathname.match(/\/api\/v1\/sse\/stream\/([^/]+)$/);
    if (!m || u.searchParams.getAll('channel').length) return null;
    const channel = decodeURIComponent(m[1]);
    return channel.includes('*') ? null : channel;
  }

  _emit(type, data, event) {
    for (const fn of [...(this.handlers.get(type) || [])]) {
      try {
        fn(data, event);
      } catch (err) {
        console.error(`ssehub: handler for ${type} failed`, err);
      }
    }
  }

  /** True for an event of a run that had ended before this client joined (see Runs above). */
  _isHistory(type, data, id) {
    const rid = data && typeof data === 'object' ? data.run_id : undefined;
    if (typeof rid !== 'string' || !rid) {
      return !!id && this._historyRuns.size > 0 && [...this._historyRuns.values()].includes(id);
    }
    if (type === 'snapshot' && data.status && data.status !== 'running' && !this._seenRuns.has(rid)) {
      this._historyRuns.set(rid, data.last_event_id || '');
      if (this._historyRuns.size > 1000) this._historyRuns.delete(this._historyRuns.keys().next().value);
    }
    if (this._historyRuns.has(rid)) return true;
    if (type !== 'snapshot') {
      this._seenRuns.add(rid);
      if (this._seenRuns.size > 1000) this._seenRuns.delete(this._seenRuns.values().next().value);
    }
    return false;
  }

  _deliver(type, raw, id, channel) {
    if (id) this.lastEventId = id;
    const data = parseData(raw);
    if (this._isHistory(type, data, id) && !this.options.previousRuns) return;
    if (type === 'connected' && data && typeof data === 'object') this.clientId = data.client_id;
    const event = { type, id: id || '', data: raw };
    if (channel) event.channel = channel;
    this._emit(type, data, event);
    this._emit('*', data, event);
  }

  _setState(state) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this._emit('statechange', { state, previous }, { type: 'statechange' });
  }

  _opened() {
    this.attempts = 0;
    this._setState(STATES.OPEN);
    this._emit('open', { transport: this.transport }, { type: 'open' });
  }

  _teardown() {
    clearTimeout(this._timer);
    this._timer = null;
    if (this._source) {
      this._source.close();
      this._source = null;
    }
    if (this._abort) {
      this._abort.abort();
      this._abort = null;
    }
    this._listening.clear();
  }

  async _open() {
    this._teardown();
    if (!this._wanted) return;
    this._setState(STATES.CONNECTING);
    const attempt = (this._attemptSeq = (this._attemptSeq || 0) + 1);
    let ticket;
    if (typeof this.options.ticket === 'function' && this.transport !== 'poll') {
      try {
        ticket = await this.options.ticket();
      } catch (err) {
        if (attempt === this._attemptSeq) this._retry({ status: err?.status ?? null });
        return;
      }
      if (attempt !== this._attemptSeq || !this._wanted) return; // superseded meanwhile
    }
    if (this.transport === 'poll') this._poll();
    else if (this.transport === 'fetch') this._openFetch(ticket);
    else this._openEventSource(ticket);
  }

  _listen(source, type) {
    if (this._listening.has(type)) return;
    this._listening.add(type);
    source.addEventListener(type, (ev) => {
      // A connection failure also fires `error` on the EventSource, without data.
      if (source !== this._source || !('data' in ev)) return;
      this._deliver(type, ev.data, ev.lastEventId);
    });
  }

  _openEventSource(ticket) {
    const source = new EventSource(this.streamUrl(ticket), { withCredentials: !!this.options.withCredentials });
    this._source = source;
    const types = new Set([...KNOWN_TYPES, ...(this.options.types || []), ...this.handlers.keys()]);
    for (const type of types) if (!LIFECYCLE.has(type) && type !== '*') this._listen(source, type);
    source.addEventListener('open', () => source === this._source && this._opened());
    source.addEventListener('error', (ev) => {
      if (source !== this._source || 'data' in ev) return;
      if (source.readyState === EventSource.CONNECTING && typeof this.options.ticket !== 'function') {
        // The browser retries by itself with Last-Event-ID, for as long as the network is
        // down: those retries are not this client's attempts and never make it give up.
        this._setState(STATES.CONNECTING);
        this._emit('connectionerror', { attempt: this.attempts, delayMs: null, status: null, fatal: false }, { type: 'connectionerror' });
      } else if (source.readyState === EventSource.CLOSED && typeof this.options.ticket !== 'function') {
        // The browser gave up (an HTTP error or wrong content type) without saying why: ask
        // once with fetch, then stop on a refusal (400, 401, 403, ...) or back off and retry.
        this._explainRefusal(source);
      } else {
        // The browser gave up (an HTTP error or wrong content type: an answer, which counts
        // toward maxAttempts), or its retry would reuse a single-use ticket: reconnect with
        // backoff (and a fresh ticket).
        this._retry({ answered: source.readyState === EventSource.CLOSED });
      }
    });
  }

  async _explainRefusal(source) {
    const abort = new AbortController();
    this._abort = abort;
    let status = null;
    let message;
    try {
      const response = await fetch(this.streamUrl(), {
        headers: { Accept: 'text/event-stream' },
        signal: abort.signal,
        cache: 'no-store',
        credentials: this.options.withCredentials ? 'include' : 'same-origin',
      });
      if (!response.ok) [status, message] = [response.status, await errorMessage(response)];
    } catch {
      // unreachable: retry below
    }
    abort.abort(); // a stream that does open now is not read here: EventSource reconnects
    if (source !== this._source || this._abort !== abort || !this._wanted) return;
    this._abort = null;
    if (FATAL_STATUS.has(status)) this._fail({ status, message, fatal: true });
    else this._retry({ status, message, answered: true });
  }

  async _openFetch(ticket) {
    const abort = new AbortController();
    this._abort = abort;
    const headers = { Accept: 'text/event-stream' };
    if (this.options.token) headers.Authorization = `Bearer ${this.options.token}`;
    if (this.lastEventId) headers['Last-Event-ID'] = this.lastEventId;
    let status = null;
    let message;
    const parser = new SSEParser();
    try {
      const response = await fetch(withQuery(this.url, { ticket }), {
        headers,
        signal: abort.signal,
        cache: 'no-store',
        credentials: this.options.withCredentials ? 'include' : 'same-origin',
      });
      status = response.status;
      if (!response.ok) throw new HTTPError(status, await errorMessage(response));
      this._opened();
      status = null; // what follows is a drop of an open stream, not an HTTP answer
      await readEventStream(response, (e) => this._deliver(e.type, e.data, e.id), parser);
    } catch (err) {
      if (abort.signal.aborted) return;
      if (err instanceof HTTPError && FATAL_STATUS.has(err.status)) {
        this._fail({ status: err.status, message: err.message, fatal: true });
        return;
      }
      if (err instanceof HTTPError) message = err.message;
    }
    if (parser.retry !== null) this.serverRetryMs = parser.retry; // the server's `retry:`
    if (this._abort !== abort || !this._wanted) return;
    this._retry({ status, message });
  }

  async _poll() {
    const channel = this.pollChannel();
    const base = new URL(this.url, globalThis.location?.href || 'http://localhost/');
    // Without a position, the first poll only learns where the channel is (as a stream starts
    // live), instead of replaying its kept history.
    const positioned = !!this.lastEventId;
    const url = withQuery(`${base.origin}/api/v1/channels/${encodeURIComponent(channel)}/events`, {
      after: this.lastEventId || undefined,
      limit: positioned ? 100 : 1,
    });
    const abort = new AbortController();
    this._abort = abort;
    let full = false;
    try {
      const headers = this.options.token ? { Authorization: `Bearer ${this.options.token}` } : {};
      const response = await fetch(url, { headers, signal: abort.signal, cache: 'no-store' });
      if (!response.ok) {
        const err = new HTTPError(response.status, await errorMessage(response));
        if (FATAL_STATUS.has(err.status)) return this._fail({ status: err.status, message: err.message, fatal: true });
        throw err;
      }
      const page = await response.json();
      if (this.state !== STATES.OPEN) this._opened();
      if (page.reset && this.lastEventId) this._deliver('reset', JSON.stringify({ reason: 'history_gap', resume_from: page.last_id }), '');
      for (const e of positioned ? page.events : []) {
        const raw = typeof e.data === 'string' ? e.data : JSON.stringify(e.data);
        this._deliver(e.event || 'message', raw, e.id, e.channel);
      }
      this.lastEventId = page.last_id || this.lastEventId;
      full = positioned && page.events.length >= 100;
    } catch (err) {
      if (abort.signal.aborted || this._abort !== abort) return;
      return this._retry({ status: err.status ?? null });
    }
    if (this._abort !== abort || !this._wanted) return;
    this._timer = setTimeout(() => this._poll(), full ? 0 : this.options.pollIntervalMs ?? 2000);
  }

  _retry({ status = null, message, answered = status !== null }) {
    this._teardown();
    if (!this._wanted) return;
    this.attempts++;
    // Only HTTP error answers use up attempts; a network loss is waited out (or, with
    // `fallback: 'poll'`, sent to polling after maxAttempts).
    const spent = this.attempts > this.reconnectOptions.maxAttempts;
    if (spent && (answered || this.options.fallback === 'poll')) return this._giveUp({ status });
    const first = this.attempts === 1 && this.serverRetryMs != null;
    const delayMs = first ? this.serverRetryMs : backoffDelay(this.attempts, this.reconnectOptions);
    this._setState(STATES.CONNECTING);
    this._emit('connectionerror', { attempt: this.attempts, delayMs, status, message, fatal: false }, { type: 'connectionerror' });
    this._timer = setTimeout(() => this._open(), delayMs);
  }

  _giveUp({ status = null }) {
    if (this.options.fallback === 'poll' && this.transport !== 'poll' && this.pollChannel()) {
      this.transport = 'poll';
      this.attempts = 0;
      this._emit('fallback', { transport: 'poll' }, { type: 'fallback' });
      this._open();
      return;
    }
    this._fail({ status, fatal: true, message: 'gave up reconnecting' });
  }

  _fail(info) {
    this._wanted = false;
    globalThis.removeEventListener?.('online', this._online);
    this._teardown();
    this._emit('connectionerror', { attempt: this.attempts, delayMs: null, ...info }, { type: 'connectionerror' });
    this._setState(STATES.CLOSED);
  }
}

/** Several named streams by name: connect, get, disconnect, disconnectAll. */
export class ConnectionManager {
  constructor(defaults = {}) {
    this.defaults = defaults;
    this.clients = new Map();
  }

  /** Open (or replace) the stream called `name`; returns its SSEClient, not yet connected. */
  open(name, url, options = {}) {
    this.disconnect(name);
    const client = new SSEClient(url, { ...this.defaults, ...options });
    this.clients.set(name, client);
    return client;
  }

  /** Open and connect in one call. */
  connect(name, url, options = {}) {
    return this.open(name, url, options).connect();
  }

  get(name) {
    return this.clients.get(name);
  }

  names() {
    return [...this.clients.keys()];
  }

  /** Close one stream; true when it existed. */
  disconnect(name) {
    const client = this.clients.get(name);
    if (!client) return false;
    client.disconnect();
    this.clients.delete(name);
    return true;
  }

  disconnectAll() {
    for (const name of this.names()) this.disconnect(name);
  }
}
