// The Node reference server of Durable Streams (@durable-streams/server, in-memory store), the
// benchmark's peer. usage: node reference_server.mjs <port>
import { DurableStreamTestServer } from "@durable-streams/server"

const port = Number(process.argv[2])
const server = new DurableStreamTestServer({ port, host: "127.0.0.1", longPollTimeout: 20000 })
const url = await server.start()
// The benchmark waits for GET /healthz to answer 200: an empty stream at that path does.
await fetch(`${url}/healthz`, { method: "PUT" })
console.log(`ready ${url}`)
