// The official Durable Streams server conformance suite, run against CONFORMANCE_TEST_URL.
// Kept outside node_modules: vitest 4 ignores test files inside it.
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

const baseUrl = process.env.CONFORMANCE_TEST_URL
if (!baseUrl) throw new Error("set CONFORMANCE_TEST_URL to the hub's Durable Streams mount")
runConformanceTests({
  baseUrl,
  longPollTimeoutMs: Number(process.env.CONFORMANCE_LONG_POLL_MS ?? 20000),
})
