// The demo page's "AI protocols" card: the AI SDK's UI message stream and AG-UI events, read
// with fetch as the two front-end libraries read them (see docs/ai-sdk.md and docs/ag-ui.md).
const $ = (id) => document.getElementById(id);
const newId = () => crypto.randomUUID().replaceAll('-', '').slice(0, 16);
const token = () => localStorage.getItem('ssehub.token') || '';
const LOG_LIMIT = 200;

function headers(extra = {}) {
  const auth = token() ? { Authorization: `Bearer ${token()}` } : {};
  return { 'Content-Type': 'application/json', ...auth, ...extra };
}

function remembered(key) {
  let value = localStorage.getItem(key);
  if (!value) localStorage.setItem(key, (value = newId()));
  return value;
}

// Each SSE frame of a fetch response as {id, data}.
async function* frames(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const fields = { id: '', data: [] };
      for (const line of block.split('\n')) {
        if (line.startsWith('id: ')) fields.id = line.slice(4);
        else if (line.startsWith('data: ')) fields.data.push(line.slice(6));
      }
      if (fields.data.length) yield { id: fields.id, data: fields.data.join('\n') };
    }
  }
}

function logLine(list, text) {
  const item = document.createElement('li');
  item.textContent = text;
  list.prepend(item);
  while (list.children.length > LOG_LIMIT) list.lastChild.remove();
}

// -- tabs ------------------------------------------------------------------------------------

for (const tab of document.querySelectorAll('#protocols-card [role=tab]')) {
  tab.addEventListener('click', () => {
    for (const other of document.querySelectorAll('#protocols-card [role=tab]')) {
      const selected = other === tab;
      other.setAttribute('aria-selected', String(selected));
      $(other.getAttribute('aria-controls')).hidden = !selected;
    }
  });
}

// -- AI SDK chat -----------------------------------------------------------------------------

const SDK = '/api/v1/ai-sdk/chat';
const chatId = remembered('ssehub.aisdk.chat');
let sdkAbort = null;

async function readUIMessages(response) {
  $('sdk-stop').disabled = false;
  try {
    for await (const { data } of frames(response)) {
      if (data === '[DONE]') break;
      const part = JSON.parse(data);
      if (part.type === 'start') $('sdk-text').textContent = '';
      if (part.type === 'text-delta') $('sdk-text').textContent += part.delta;
      logLine($('sdk-parts'), part.type === 'text-delta' ? `text-delta ${JSON.stringify(part.delta)}` : data);
    }
  } catch (err) {
    if (err.name !== 'AbortError') logLine($('sdk-parts'), `stream error: ${err.message}`);
  } finally {
    $('sdk-stop').disabled = true;
  }
}

$('sdk-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const text = $('sdk-input').value.trim();
  if (!text) return;
  $('sdk-input').value = '';
  sdkAbort = new AbortController();
  const message = { id: newId(), role: 'user', parts: [{ type: 'text', text }] };
  const response = await fetch(SDK, {
    method: 'POST',
    headers: headers(),
    body: JSON.stringify({ id: chatId, messages: [message], trigger: 'submit-message' }),
    signal: sdkAbort.signal,
  });
  if (!response.ok) return logLine($('sdk-parts'), `HTTP ${response.status}: ${await response.text()}`);
  await readUIMessages(response);
});

$('sdk-stop').addEventListener('click', async () => {
  await fetch(`${SDK}/${chatId}/stop`, { method: 'POST', headers: headers() });
  sdkAbort?.abort();
});

// What useChat's `resume: true` does on load: 204 when nothing runs, else the answer so far.
(async () => {
  sdkAbort = new AbortController();
  const response = await fetch(`${SDK}/${chatId}/stream`, { headers: headers(), signal: sdkAbort.signal });
  if (response.status === 200) {
    logLine($('sdk-parts'), 'resumed the running answer');
    await readUIMessages(response);
  }
})();

// -- AG-UI run -------------------------------------------------------------------------------

const threadId = remembered('ssehub.agui.thread');
let aguiAbort = null;
let taskId = null;
let state = {};

function agentUrl() {
  return $('agui-agent').value === 'chat' ? '/api/v1/ag-ui/chat' : '/api/v1/ag-ui/stages/agui-demo/rewrite';
}

function applyEvent(event) {
  if (event.type === 'RUN_STARTED') taskId = event.metadata?.task_id ?? null;
  if (event.type === 'TEXT_MESSAGE_START') $('agui-text').textContent = '';
  if (event.type === 'TEXT_MESSAGE_CONTENT') $('agui-text').textContent += event.delta;
  if (event.type === 'STATE_SNAPSHOT') state = event.snapshot;
  if (event.type === 'STATE_DELTA') for (const op of event.delta) state[op.path.slice(1)] = op.value;
  if (event.type.startsWith('STATE_')) $('agui-state').textContent = JSON.stringify(state);
}

async function runAgent(url) {
  aguiAbort = new AbortController();
  const text = $('agui-input').value.trim() || 'hello';
  const input = {
    threadId,
    runId: newId(),
    messages: [{ id: newId(), role: 'user', content: text }],
    forwardedProps: { text, tokens: 40, pace: 0.05 },
  };
  $('agui-cancel').disabled = false;
  try {
    const response = await fetch(url, {
      method: 'POST',
      headers: headers({ Accept: 'text/event-stream' }),
      body: JSON.stringify(input),
      signal: aguiAbort.signal,
    });
    if (!response.ok) return logLine($('agui-events'), `HTTP ${response.status}: ${await response.text()}`);
    for await (const { id, data } of frames(response)) {
      const event = JSON.parse(data);
      applyEvent(event);
      logLine($('agui-events'), `${id}  ${event.type}${event.delta && typeof event.delta === 'string' ? ` ${JSON.stringify(event.delta)}` : ''}`);
    }
  } catch (err) {
    if (err.name !== 'AbortError') logLine($('agui-events'), `stream error: ${err.message}`);
  } finally {
    $('agui-cancel').disabled = true;
  }
}

$('agui-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  runAgent(agentUrl());
});
$('agui-join').addEventListener('click', () => runAgent(`${agentUrl()}/join`));
$('agui-cancel').addEventListener('click', async () => {
  const url = $('agui-agent').value === 'chat' ? `/api/v1/conversations/${threadId}/cancel` : `/api/v1/tasks/${taskId}/cancel`;
  await fetch(url, { method: 'POST', headers: headers() });
});
