// @ag-ui/client's HttpAgent (its runAgent verifies every stream with the protocol's verifier)
// against a live hub: a full run, a reconnect mid-run with Last-Event-ID, a late join, a cancel.
// Prints one JSON line of what each client ended with; the Python test compares it to the store.
import { HttpAgent } from '@ag-ui/client';

const HUB = process.env.HUB;
const CHAT = `${HUB}/api/v1/ag-ui/chat`;
const newId = () => Math.random().toString(36).slice(2, 14);

// A fetch that records the SSE ids the agent reads (HttpAgent keeps only the events).
function recordingFetch(seen) {
  return async (url, init) => {
    const response = await fetch(url, init);
    let tail = '';
    const ids = new TransformStream({
      transform(chunk, controller) {
        tail += new TextDecoder().decode(chunk);
        const lines = tail.split('\n');
        tail = lines.pop();
        for (const line of lines) if (line.startsWith('id: ')) seen.ids.push(line.slice(4));
        controller.enqueue(chunk);
      },
    });
    return new Response(response.body.pipeThrough(ids), response);
  };
}

function agent(url, threadId, options = {}) {
  const seen = { ids: [], types: [] };
  const client = new HttpAgent({ url, threadId, fetch: recordingFetch(seen), ...options });
  client.subscribe({ onEvent: ({ event }) => void seen.types.push(event.type) });
  return { client, seen };
}

const user = (text) => ({ id: newId(), role: 'user', content: text });
const assistantText = (client) =>
  client.messages.filter((m) => m.role === 'assistant').map((m) => m.content);
const until = async (check, what, ms = 20000) => {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};
const contents = (seen) => seen.types.filter((t) => t === 'TEXT_MESSAGE_CONTENT').length;

async function fullRun() {
  const threadId = newId();
  const { client, seen } = agent(CHAT, threadId, { initialMessages: [user('a full run')] });
  await client.runAgent({ runId: newId() });
  return { threadId, types: seen.types, texts: assistantText(client) };
}

async function reconnect() {
  const threadId = newId();
  const first = agent(CHAT, threadId, { initialMessages: [user('reconnect mid-run')] });
  const running = first.client.runAgent({ runId: newId() }).catch((e) => e);
  await until(() => contents(first.seen) >= 3, 'three content events');
  first.client.abortRun(); // the connection drops; the answer goes on
  await running;
  const lastId = first.seen.ids.at(-1);
  const partial = assistantText(first.client)[0];
  const second = agent(CHAT, threadId, {
    initialMessages: first.client.messages,
    headers: { 'Last-Event-ID': lastId },
  });
  await second.client.runAgent({ runId: newId() });
  return { threadId, lastId, partial, types: second.seen.types, texts: assistantText(second.client) };
}

async function lateJoin() {
  const threadId = newId();
  const runner = agent(CHAT, threadId, { initialMessages: [user('join me late')] });
  const running = runner.client.runAgent({ runId: newId() });
  await until(() => contents(runner.seen) >= 3, 'three content events');
  const joiner = agent(`${CHAT}/join`, threadId);
  await joiner.client.runAgent({ runId: newId() });
  await running;
  return {
    threadId,
    types: joiner.seen.types,
    texts: assistantText(joiner.client),
    roles: joiner.client.messages.map((m) => m.role),
    runnerTexts: assistantText(runner.client),
  };
}

async function cancelled() {
  const threadId = newId();
  const { client, seen } = agent(CHAT, threadId, { initialMessages: [user('cancel me')] });
  let outcome;
  client.subscribe({ onRunFinishedEvent: ({ event }) => void (outcome = event.outcome) });
  const running = client.runAgent({ runId: newId() });
  await until(() => contents(seen) >= 2, 'two content events');
  await fetch(`${HUB}/api/v1/conversations/${threadId}/cancel`, { method: 'POST' });
  await running;
  return { threadId, types: seen.types, texts: assistantText(client), outcome };
}

// Stage runs: the built-in `rewrite` stage streams `tokens` words, `pace` seconds apart.
const STAGE_INPUT = { text: 'one two three four five six', tokens: 40, pace: 0.05 };
const stageUrl = (project) => `${HUB}/api/v1/ag-ui/stages/${project}/rewrite`;
const textOf = (client) => client.messages.map((m) => m.content).join('');
const stateOf = (client) => client.state;

async function stageFull() {
  const project = newId();
  const { client, seen } = agent(stageUrl(project), newId());
  await client.runAgent({ runId: newId(), forwardedProps: { ...STAGE_INPUT, tokens: 10, pace: 0 } });
  return { project, types: seen.types, text: textOf(client), state: stateOf(client) };
}

async function stageReconnectAndJoin() {
  const project = newId();
  const runner = agent(stageUrl(project), newId());
  let taskId;
  runner.client.subscribe({ onRunStartedEvent: ({ event }) => void (taskId = event.metadata?.task_id) });
  const running = runner.client.runAgent({ runId: newId(), forwardedProps: STAGE_INPUT });
  await until(() => contents(runner.seen) >= 5, 'five tokens');
  const late = agent(`${stageUrl(project)}/join`, newId());
  const joining = late.client.runAgent({ runId: newId() });
  await until(() => contents(late.seen) >= 2, 'the late joiner\'s tokens');
  runner.client.abortRun();
  await running.catch(() => {});
  const again = agent(stageUrl(project), runner.client.threadId, {
    initialMessages: runner.client.messages,
    headers: { 'Last-Event-ID': runner.seen.ids.at(-1) },
  });
  await again.client.runAgent({ runId: newId() });
  await joining;
  return {
    project,
    taskId,
    lateTypes: late.seen.types,
    lateText: textOf(late.client),
    lateState: stateOf(late.client),
    againTypes: again.seen.types,
    againText: textOf(again.client),
  };
}

async function stageCancelled() {
  const project = newId();
  const { client, seen } = agent(stageUrl(project), newId());
  let taskId;
  let outcome;
  client.subscribe({
    onRunStartedEvent: ({ event }) => void (taskId = event.metadata?.task_id),
    onRunFinishedEvent: ({ event }) => void (outcome = event.outcome),
  });
  const running = client.runAgent({ runId: newId(), forwardedProps: STAGE_INPUT });
  await until(() => contents(seen) >= 2, 'two tokens');
  await fetch(`${HUB}/api/v1/tasks/${taskId}/cancel`, { method: 'POST' });
  await running;
  return { project, taskId, types: seen.types, outcome, text: textOf(client) };
}

const result = {
  full: await fullRun(),
  reconnect: await reconnect(),
  late: await lateJoin(),
  cancelled: await cancelled(),
  stage: await stageFull(),
  stageJoin: await stageReconnectAndJoin(),
  stageCancelled: await stageCancelled(),
};
console.log(JSON.stringify(result));
