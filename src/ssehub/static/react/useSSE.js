// useSSE: a React hook on top of ssehub.js. Shipped as source for your bundler
// (it imports 'react'); the hub serves it at /static/react/useSSE.js.
//
//   const { connectionState, lastError, reconnect, disconnect } = useSSE('novel-generation', {
//     token,
//     events: { progress: (data) => setProgress(data.progress), complete: (data) => setDone(data) },
//     onMessage: (data, event) => console.log(event.type, data),
//   });
import { useCallback, useEffect, useRef, useState } from 'react';
import { SSEClient } from '../ssehub.js';

/**
 * Subscribe to `channel` while the component is mounted. Options: `baseUrl`, `token`,
 * `onMessage(data, event)` for every event, `events` ({type: handler}), `types` (more event
 * names for onMessage), `onOpen`, `onError`, and any SSEClient option (`reconnect`,
 * `transport`, `fallback`, `withCredentials`, `ticket`, `previousRuns`).
 * Returns {connectionState: 'connecting' | 'open' | 'closed', lastError, reconnect, disconnect}.
 *
 * Every event type the caller names (`events` keys, `types`) or that ssehub and the common AI
 * patterns use (`start`, `progress`, `complete`, `error`, `token`, `done`, chat and task events…)
 * reaches onMessage; with `transport: 'fetch'` every type does. Unlike a bare EventSource's
 * `onmessage(event)`, onMessage gets the parsed payload first: `onMessage(data, event)` where
 * `event.type` is the event name and `event.data` the raw text, so code written as
 * `(event) => JSON.parse(event.data)` becomes `(data, event) => …data…`. Network loss never
 * ends the subscription: the hook reconnects (and on the window's `online` event) by itself.
 */
export function useSSE(channel, options = {}) {
  const { onMessage, onError, onOpen, events = {}, baseUrl = '', token, ...clientOptions } = options;
  const [connectionState, setConnectionState] = useState('closed');
  const [lastError, setLastError] = useState(null);
  const clientRef = useRef(null);
  // Handlers may change on every render; the stream must not reconnect because of that.
  const handlers = useRef({});
  handlers.current = { onMessage, onError, onOpen, events };
  const optionsKey = JSON.stringify(clientOptions);
  const eventsKey = Object.keys(events).sort().join(',');

  const connect = useCallback(() => {
    clientRef.current?.disconnect();
    clientRef.current = null;
    if (!channel) return;
    const url = `${baseUrl}/api/v1/sse/stream/${encodeURIComponent(channel)}`;
    const client = new SSEClient(url, { token, ...JSON.parse(optionsKey) });
    client
      .on('statechange', ({ state }) => setConnectionState(state))
      .on('open', (info) => {
        setLastError(null);
        handlers.current.onOpen?.(info);
      })
      .on('connectionerror', (info) => {
        const error = Object.assign(new Error(info.message || 'SSE connection error'), { info });
        setLastError(error);
        handlers.current.onError?.(error);
      })
      .on('*', (data, event) => {
        handlers.current.onMessage?.(data, event);
        handlers.current.events?.[event.type]?.(data, event);
      });
    if (eventsKey) client.listen(...eventsKey.split(','));
    clientRef.current = client.connect();
  }, [channel, baseUrl, token, optionsKey, eventsKey]);

  const disconnect = useCallback(() => {
    clientRef.current?.disconnect();
    clientRef.current = null;
    setConnectionState('closed');
  }, []);

  useEffect(() => {
    connect();
    return () => clientRef.current?.disconnect();
  }, [connect]);

  return { connectionState, lastError, reconnect: connect, disconnect };
}
