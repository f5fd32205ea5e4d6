// A useChat page as an existing app writes it: the SDK's default HTTP transport pointed at ssehub.
import { useChat } from '@ai-sdk/react';
import { DefaultChatTransport } from 'ai';
import { createRoot } from 'react-dom/client';

const API = '/api/v1/ai-sdk/chat';
const chatId = new URLSearchParams(location.search).get('chat');

function Chat({ initial }) {
  const { messages, sendMessage, status, stop } = useChat({
    id: chatId,
    messages: initial,
    resume: true,
    transport: new DefaultChatTransport({ api: API }),
  });
  window.chat = {
    send: (text) => sendMessage({ text }),
    // The SDK's documented stop for resumable streams: stop the work, then the local stream.
    stop: async () => {
      await fetch(`${API}/${encodeURIComponent(chatId)}/stop`, { method: 'POST' });
      await stop();
    },
  };
  return (
    <main>
      <p id="status" data-status={status}>{status}</p>
      {messages.map((m) => (
        <div key={m.id} className="message" data-role={m.role} data-id={m.id}>
          {m.parts.map((p) => (p.type === 'text' ? p.text : '')).join('')}
        </div>
      ))}
    </main>
  );
}

const answer = await fetch(`${API}/${encodeURIComponent(chatId)}/messages`);
const initial = answer.ok ? await answer.json() : [];
createRoot(document.getElementById('root')).render(<Chat initial={initial} />);
