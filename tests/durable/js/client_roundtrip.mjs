// The TypeScript client from npm writing and reading a JSON stream through ssehub.
// usage: node client_roundtrip.mjs <stream url> <token or "">; prints one JSON line of results.
import { DurableStream, IdempotentProducer, stream } from "@durable-streams/client"

const [url, token] = process.argv.slice(2)
const headers = token ? { Authorization: `Bearer ${token}` } : {}

const handle = await DurableStream.create({ url, headers, contentType: "application/json" })
await handle.append(JSON.stringify({ n: 1, text: "héllo" }))

// A live SSE reader started before the producer writes: it must see every message once.
const live = await stream({ url, headers, offset: "-1", live: "sse" })
const seen = []
const allSeen = new Promise((resolve) => {
  live.subscribeJson(async (batch) => {
    seen.push(...batch.items)
    if (seen.length >= 4) resolve()
  })
})

const producer = new IdempotentProducer(handle, "ts-client", { autoClaim: true })
for (const n of [2, 3, 4]) producer.append(JSON.stringify({ n }))
await producer.flush()
await producer.close()
await Promise.race([allSeen, new Promise((_, reject) => setTimeout(() => reject(new Error("live reader timed out")), 20000))])
live.cancel()

const catchUp = await stream({ url, headers, offset: "-1", live: false })
const items = await catchUp.json()
const head = await handle.head()
console.log(JSON.stringify({ items, live: seen.slice(0, 4), offset: head.offset }))
