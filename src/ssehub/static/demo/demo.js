// The demo page: live log, publish form, chat, stage run and admin panels on ssehub.js.
import { ConnectionManager, HTTPError, KNOWN_TYPES, STATES } from '/static/ssehub.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const manager = new ConnectionManager();
const LOG_LIMIT = 500;

let token = localStorage.getItem('ssehub.token') || params.get('token') || '';

// -- helpers ---------------------------------------------------------------------------------

function authHeaders() {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function api(method, path, body) {
  const init = { method, headers: { ...authHeaders() } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) throw new HTTPError(response.status, json?.error?.message || `HTTP ${response.status}`);
  return json;
}

function parseInput(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function clock(date = new Date()) {
  return date.toLocaleTimeString([], { hour12: false }) + '.' + String(date.getMilliseconds()).padStart(3, '0');
}

function compact(data) {
  const text = typeof data === 'string' ? data : JSON.stringify(data);
  return text.length > 600 ? `${text.slice(0, 600)}…` : text;
}

function humanBytes(n) {
  if (typeof n !== 'number') return '–';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function humanCount(n) {
  return typeof n === 'number' ? n.toLocaleString() : '–';
}

function humanDuration(s) {
  if (typeof s !== 'number') return '–';
  if (s < 60) return `${Math.floor(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${Math.floor(s % 60)}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

function setResult(el, text, ok) {
  el.textContent = text;
  el.className = `result ${ok ? 'ok' : 'bad'}`;
}

function setMiniState(el, state, label = state) {
  el.dataset.state = state;
  el.lastElementChild.textContent = label;
}

function waitOpen(client, timeoutMs = 8000) {
  if (client.isConnected()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('stream did not open')), timeoutMs);
    client.on('statechange', ({ state }) => {
      if (state === STATES.OPEN) {
        clearTimeout(timer);
        resolve();
      } else if (state === STATES.CLOSED) {
        clearTimeout(timer);
        reject(new Error('stream closed'));
      }
    });
  });
}

function streamUrl(channel) {
  const names = channel.split(',').map((c) => c.trim()).filter(Boolean);
  if (names.length === 1) return `/api/v1/sse/stream/${encodeURIComponent(names[0])}`;
  return `/api/v1/sse/stream?${names.map((c) => `channel=${encodeURIComponent(c)}`).join('&')}`;
}

// -- token -----------------------------------------------------------------------------------

$('token').value = token;
$('token-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  token = $('token').value.trim();
  if (token) localStorage.setItem('ssehub.token', token);
  else localStorage.removeItem('ssehub.token');
  connectMain();
  connectInbox();
  refreshAdmin();
});

// -- live stream -----------------------------------------------------------------------------

const log = $('log');
let logCount = 0;

function addEntry(list, type, id, data, limit = LOG_LIMIT) {
  const li = document.createElement('li');
  li.dataset.type = type;
  if (id) li.dataset.id = id;
  const time = document.createElement('span');
  time.className = 'time';
  time.textContent = clock();
  const kind = document.createElement('span');
  kind.className = 'type';
  kind.textContent = type;
  if (id) {
    const small = document.createElement('span');
    small.className = 'id';
    small.textContent = id;
    kind.append(small);
  }
  const body = document.createElement('span');
  body.className = 'data';
  body.textContent = compact(data);
  li.append(time, kind, body);
  list.prepend(li);
  while (list.children.length > limit) list.lastElementChild.remove();
  return li;
}

// Ids already in the log: an event reaches it once, whichever way (stream or history) comes first.
const shown = new Set();

function logEvent(data, event) {
  if (event.id && event.type !== 'connected') {
    if (shown.has(event.id)) return;
    shown.add(event.id);
    if (shown.size > 2 * LOG_LIMIT) shown.delete(shown.values().next().value);
  }
  logCount++;
  $('log-count').textContent = `${logCount} event${logCount === 1 ? '' : 's'}`;
  $('log-empty').hidden = true;
  addEntry(log, event.type, event.id, data);
}

function showState(state) {
  const pill = $('state');
  pill.dataset.state = state;
  $('state-text').textContent = state;
}

// EventSource dispatches only the event types it has listeners for. For the others, the log
// reads the channels' JSON history every 2 s, shows what the stream could not, and listens for
// those types from then on.
let discovery = null;

function stopDiscovery() {
  clearTimeout(discovery?.timer);
  discovery = null;
}

function discoverTypes(client, channels, after) {
  stopDiscovery();
  if (client.transport !== 'eventsource' || !after) return;
  const exact = channels.filter((c) => !c.includes('*'));
  if (exact.length < channels.length) {
    addEntry(log, 'client', '', 'on patterns EventSource shows only the event types it listens for: choose "fetch stream" to see every type');
  }
  if (!exact.length) return;
  const listened = new Set([...KNOWN_TYPES, ...(client.options.types || [])]);
  const state = { cursors: new Map(exact.map((c) => [c, after])), timer: null };
  const poll = async () => {
    for (const [channel, cursor] of state.cursors) {
      try {
        const page = await api('GET', `/api/v1/channels/${encodeURIComponent(channel)}/events?after=${encodeURIComponent(cursor)}&limit=100`);
        if (discovery !== state) return;
        state.cursors.set(channel, page.last_id || cursor);
        for (const e of page.events) {
          if (!listened.has(e.event)) {
            listened.add(e.event);
            client.listen(e.event);
          }
          if (!KNOWN_TYPES.includes(e.event)) logEvent(e.data, { type: e.event, id: e.id });
        }
      } catch {
        // the stream itself reports connection problems
      }
    }
    if (discovery === state) state.timer = setTimeout(poll, 2000);
  };
  discovery = state;
  state.timer = setTimeout(poll, 2000);
}

// Why the main stream is not open, shown until it opens again.
let streamProblem = '';

function connectMain(project = null) {
  const url = project ? `/api/v1/sse/projects/${encodeURIComponent(project)}/` : null;
  let channel = url ? `project ${project}` : $('channel').value.trim() || 'demo';
  const transport = $('transport').value;
  streamProblem = '';
  const client = manager.open('main', url || streamUrl(channel), {
    token,
    transport,
    fallback: 'poll',
    reconnect: { initialMs: 500, maxMs: 5000, maxAttempts: Infinity },
    types: [$('pub-event').value.trim()].filter(Boolean),
  });
  client
    .on('*', logEvent)
    .on('connected', (data, event) => {
      const channels = Array.isArray(data?.channels) ? data.channels : [];
      // A project stream names its channels only here (their prefix is the hub's setting).
      if (url && channels.length) $('channel').value = channel = channels.join(',');
      if (!url) discoverTypes(client, channels, event.id); // project streams carry stage types
    })
    .on('statechange', ({ state, previous }) => {
      showState(state);
      if (previous !== state) addEntry(log, 'client', '', `${previous} → ${state} (${client.transport})`);
      if (state === STATES.OPEN) streamProblem = '';
      const shownState = streamProblem ? `${state} · ${streamProblem}` : state;
      $('stream-meta').textContent = state === STATES.OPEN ? `${channel} · ${client.transport}` : shownState;
    })
    .on('connectionerror', (info) => {
      if (!info.status && !info.fatal) return;
      const why = `${info.status ? `HTTP ${info.status}` : 'no connection'}${info.message ? `: ${info.message}` : ''}`;
      streamProblem = why;
      $('stream-meta').textContent = `${info.fatal ? 'refused' : 'retrying'} · ${why}`;
      addEntry(log, 'client', '', info.fatal ? `stream refused: ${why}` : `retrying in ${info.delayMs} ms: ${why}`);
    })
    .on('fallback', ({ transport: t }) => addEntry(log, 'client', '', `falling back to ${t}`))
    .connect();
  // A single channel typed here is also where the publish form publishes.
  if (!url && !/[*,]/.test(channel)) $('pub-channel').value = channel;
  updateCurl();
}

$('stream-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  connectMain();
});
$('disconnect').addEventListener('click', () => {
  stopDiscovery();
  manager.disconnect('main');
  showState(STATES.CLOSED);
  $('stream-meta').textContent = 'not connected';
});
$('clear-log').addEventListener('click', () => {
  log.replaceChildren();
  logCount = 0;
  $('log-count').textContent = '0 events';
  $('log-empty').hidden = false;
});
$('watch-project-btn').addEventListener('click', () => {
  // The project stream: every stage of the project; its channels fill the field once known.
  connectMain($('watch-project').value.trim() || '1');
});

// -- publish ---------------------------------------------------------------------------------

function shellQuote(text) {
  return `'${text.replace(/'/g, "'\\''")}'`;
}

function updateCurl() {
  const channel = $('pub-channel').value.trim() || 'demo';
  const body = { event: $('pub-event').value.trim() || null, data: parseInput($('pub-data').value) };
  const auth = token ? ' \\\n  -H "Authorization: Bearer $TOKEN"' : '';
  $('pub-curl').textContent =
    `curl -X POST ${location.origin}/api/v1/publish/${channel}${auth} \\\n` +
    `  -H 'Content-Type: application/json' \\\n  -d ${shellQuote(JSON.stringify(body))}`;
}

for (const id of ['pub-channel', 'pub-event', 'pub-data']) $(id).addEventListener('input', updateCurl);

$('publish-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const channel = $('pub-channel').value.trim();
  const event = $('pub-event').value.trim() || null;
  if (event) manager.get('main')?.listen(event);
  try {
    const out = await api('POST', `/api/v1/publish/${encodeURIComponent(channel)}`, {
      event,
      data: parseInput($('pub-data').value),
    });
    setResult($('pub-result'), `published ${out.id}`, true);
  } catch (err) {
    setResult($('pub-result'), err.message, false);
  }
});

// -- chat ------------------------------------------------------------------------------------

const chat = $('chat-messages');
let conversationId = null;
let answer = null;

function bubble(role, text) {
  chat.querySelector('.empty')?.remove();
  const div = document.createElement('div');
  div.className = `msg ${role}`;
  div.textContent = text;
  chat.append(div);
  chat.scrollTop = chat.scrollHeight;
  return div;
}

function answerBubble() {
  if (!answer) {
    answer = bubble('assistant', '');
    answer.dataset.status = 'streaming';
  }
  return answer;
}

async function openConversation() {
  const created = await api('POST', '/api/v1/conversations', {});
  conversationId = created.id ?? created.conversation_id;
  const client = manager.open('chat', `/api/v1/conversations/${encodeURIComponent(conversationId)}/stream`, { token });
  client
    .on('statechange', ({ state }) => setMiniState($('chat-state'), state))
    .on('ai_response_start', () => {
      answerBubble();
      $('chat-stop').hidden = false;
    })
    .on('ai_response_chunk', (d) => {
      const el = answerBubble();
      $('chat-stop').hidden = false;
      el.textContent = d.accumulated_content ?? el.textContent + (d.content || '');
      chat.scrollTop = chat.scrollHeight;
    })
    .on('ai_response_complete', (d) => {
      const el = answerBubble();
      el.textContent = d.final_content ?? el.textContent;
      el.dataset.status = d.status === 'cancelled' ? 'cancelled' : 'complete';
      $('chat-stop').hidden = true;
      answer = null;
    })
    .on('conversation_error', (d) => {
      const el = answerBubble();
      el.textContent = `${el.textContent}\n⚠ ${d.error || 'error'}`.trim();
      el.dataset.status = 'error';
      $('chat-stop').hidden = true;
      answer = null;
    })
    .connect();
  await waitOpen(client);
  const model = created.model || created.provider;
  $('chat-result').textContent = `conversation ${conversationId}${model ? ` · model: ${model}` : ''}`;
  $('chat-result').className = 'result';
}

$('chat-stop').addEventListener('click', async () => {
  try {
    await api('POST', `/api/v1/conversations/${encodeURIComponent(conversationId)}/cancel`);
  } catch (err) {
    setResult($('chat-result'), err.message, false);
  }
});

$('chat-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const content = $('chat-input').value.trim();
  if (!content) return;
  $('chat-send').disabled = true;
  try {
    if (!conversationId) await openConversation();
    bubble('user', content);
    $('chat-input').value = '';
    await api('POST', `/api/v1/conversations/${encodeURIComponent(conversationId)}/messages`, { content });
  } catch (err) {
    setResult($('chat-result'), err.status === 404 ? 'the chat API is not available on this hub' : err.message, false);
  } finally {
    $('chat-send').disabled = false;
  }
});

// -- stage run -------------------------------------------------------------------------------

function setProgress(value) {
  const pct = Math.max(0, Math.min(100, Math.round(Number(value) || 0)));
  $('stage-bar').style.width = `${pct}%`;
  $('stage-progress').dataset.value = String(pct);
  $('stage-progress').setAttribute('aria-valuenow', String(pct));
  $('stage-percent').textContent = `${pct}%`;
}

function setStageStatus(status) {
  $('stage-status').dataset.status = status;
  $('stage-status').textContent = status;
}

let stageTask = null;
let stageRun = null; // the run this panel started: other runs' outcomes are not its outcome

const otherRun = (d) => stageRun && d.run_id && d.run_id !== stageRun;

function finishStage(text, ok) {
  stageTask = null;
  stageRun = null;
  $('stage-cancel').disabled = true;
  const el = $('stage-done');
  el.hidden = false;
  el.textContent = text;
  el.className = ok ? 'done' : 'done bad';
  manager.disconnect('stage');
  $('stage-start').disabled = false;
}

$('stage-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const project = $('stage-project').value.trim() || '1';
  const stage = $('stage-name').value.trim();
  setProgress(0);
  setStageStatus('starting');
  $('stage-text').textContent = '';
  $('stage-done').hidden = true;
  $('stage-message').textContent = 'subscribing…';
  $('stage-start').disabled = true;
  // The stage stream: subscribed before the run starts, so no event is missed. The
  // client follows the current or next run: an earlier run's replayed outcome is not shown.
  stageRun = null;
  const stageUrl = `/api/v1/sse/projects/${encodeURIComponent(project)}/stages/${encodeURIComponent(stage)}/`;
  const client = manager.open('stage', stageUrl, { token });
  client
    .on('stage_update', (d) => {
      if (d.status) setStageStatus(d.status);
      if (d.progress !== undefined) setProgress(d.progress);
      if (d.message) $('stage-message').textContent = d.message;
    })
    .on('progress', (d) => {
      setProgress(d.progress ?? (d.total ? (100 * d.current) / d.total : 0));
      $('stage-message').textContent = `${d.item_name || 'item'} (${d.current}/${d.total})`;
    })
    .on('token', (d) => {
      const out = $('stage-text');
      out.textContent = d.full_text ?? out.textContent + (d.content || '');
      out.scrollTop = out.scrollHeight;
    })
    .on('snapshot', (d) => {
      if (d.full_text) $('stage-text').textContent = d.full_text;
      if (d.progress !== undefined) setProgress(d.progress);
    })
    .on('done', (d) => {
      if (otherRun(d)) return;
      setProgress(100);
      setStageStatus('done');
      if (d.full_text) $('stage-text').textContent = d.full_text;
      const meta = d.metadata || {};
      const facts = [meta.tokens_used && `${meta.tokens_used} tokens`, meta.latency_ms && `${meta.latency_ms} ms`].filter(Boolean);
      finishStage(`Done${facts.length ? ` · ${facts.join(' · ')}` : ''}`, true);
    })
    .on('error', (d) => {
      if (otherRun(d)) return;
      if (/cancel/i.test(d.error || '')) {
        setStageStatus('cancelled');
        finishStage('Cancelled', false);
        return;
      }
      setStageStatus('error');
      finishStage(`Failed: ${d.error || 'error'}${d.retry_count ? ` (retry ${d.retry_count})` : ''}`, false);
    })
    .connect();
  try {
    await waitOpen(client);
    const input = parseInput($('stage-input').value || '{}');
    const out = await api('POST', `/api/v1/projects/${encodeURIComponent(project)}/execute_stage/`, {
      stage_name: stage,
      input_data: typeof input === 'object' && input !== null ? input : { text: input },
    });
    if (!$('stage-done').hidden) return;
    stageTask = out.task_id;
    stageRun = out.run_id || null;
    $('stage-cancel').disabled = false;
    if ($('stage-message').textContent === 'subscribing…') {
      $('stage-message').textContent = `${out.message || 'started'} · task ${out.task_id}`;
    }
  } catch (err) {
    setStageStatus('error');
    const text = err.status === 404 && /Not Found/i.test(err.message) ? 'stage execution is not available on this hub' : err.message;
    finishStage(text, false);
  }
});

$('stage-cancel').addEventListener('click', async () => {
  if (!stageTask) return;
  try {
    await api('POST', `/api/v1/tasks/${encodeURIComponent(stageTask)}/cancel`);
  } catch (err) {
    $('stage-message').textContent = err.message;
  }
});

// -- admin -----------------------------------------------------------------------------------

let adminTimer = null;

function renderClients(body) {
  const list = Array.isArray(body) ? body : body?.clients || [];
  $('clients-count').textContent = `(${list.length})`;
  const rows = list.slice(0, 25).map((c) => {
    const tr = document.createElement('tr');
    const channels = (c.channels || []).join(', ');
    for (const [text, cls] of [
      [String(c.client_id || c.id || '').slice(0, 8), ''],
      [c.user_id || 'anonymous', ''],
      [channels, 'channels'],
      [humanCount(c.message_count ?? c.messages), ''],
    ]) {
      const td = document.createElement('td');
      td.textContent = text;
      if (cls) td.className = cls;
      tr.append(td);
    }
    return tr;
  });
  $('clients').tBodies[0].replaceChildren(...rows);
}

async function refreshAdmin() {
  clearTimeout(adminTimer);
  let delay = 2000;
  try {
    const body = await api('GET', '/api/v1/sse/stats');
    const stats = body?.statistics ?? body;
    $('stat-active').textContent = humanCount(stats.active_connections);
    $('stat-messages').textContent = humanCount(stats.total_messages);
    $('stat-bytes').textContent = humanBytes(stats.total_bytes);
    $('stat-uptime').textContent = humanDuration(stats.uptime_seconds ?? stats.uptime);
    renderClients(await api('GET', '/api/v1/sse/clients'));
    $('admin-meta').textContent = `updated ${clock().slice(0, 8)}`;
  } catch (err) {
    const reason = { 401: 'needs an admin token', 403: 'this token is not an admin', 404: 'admin API not available' };
    $('admin-meta').textContent = reason[err.status] || err.message;
    delay = 10000;
  }
  if (!document.hidden) adminTimer = setTimeout(refreshAdmin, delay);
}

document.addEventListener('visibilitychange', () => !document.hidden && refreshAdmin());

$('broadcast-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try {
    const out = await api('POST', '/api/v1/sse/broadcast', {
      event: $('bc-event').value.trim() || null,
      data: parseInput($('bc-data').value),
    });
    setResult($('bc-result'), `sent${out?.id ? ` ${out.id}` : ''}`, true);
  } catch (err) {
    setResult($('bc-result'), err.message, false);
  }
});

function connectInbox() {
  // The fetch transport sees every event type, whatever name a broadcast uses.
  const client = manager.open('inbox', '/api/v1/sse/connect', {
    token,
    transport: 'fetch',
    reconnect: { maxAttempts: Infinity, maxMs: 10000 },
  });
  client
    .on('*', (data, event) => addEntry($('inbox'), event.type, event.id, data, 50))
    .on('statechange', ({ state }) => setMiniState($('inbox-state'), state))
    .connect();
}

// -- start -----------------------------------------------------------------------------------

if (params.get('channel')) $('channel').value = params.get('channel');
if (params.get('transport')) $('transport').value = params.get('transport');
if (params.get('autoconnect') !== '0') connectMain();
updateCurl();
connectInbox();
refreshAdmin();

window.ssehubDemo = { manager };
