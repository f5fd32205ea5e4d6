// One file, run once against a live hub (started by tests/durable/test_conformance.py).
import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["*.test.js"],
    testTimeout: 30000,
    hookTimeout: 30000,
  },
})
