// LLM client of the throughput benchmarks on Node (/usr/bin/node): the pinned npm openai SDK of
// receiver/ebpfreceiver/testdata/nodeagent (its node_modules, installed by make test) asking an
// OpenAI-compatible model over HTTPS (Node's TLS: the OpenSSL linked into node). The same
// commands as tests/bench/pytarget/llmclient.py, one per line on stdin:
//
//   bench N  -> "ok bench SECONDS" (N chat-completion requests, one after the other)
//
// The model's CA comes in NODE_EXTRA_CA_CERTS. Usage: node llmclient.mjs SDK_DIR BASE_URL MODEL
import { createRequire } from "node:module";
import readline from "node:readline";
import path from "node:path";

const [sdkDir, baseURL, model] = process.argv.slice(2);
const require = createRequire(path.resolve(sdkDir, "package.json"));
const { default: OpenAI } = await import(require.resolve("openai"));
const client = new OpenAI({ baseURL, apiKey: "sk-test", maxRetries: 0 });
const messages = [{ role: "user", content: "hello" }];

console.log("ready");
for await (const line of readline.createInterface({ input: process.stdin })) {
  const [cmd, arg] = line.trim().split(" ");
  if (cmd !== "bench") continue;
  const n = parseInt(arg, 10);
  const start = process.hrtime.bigint();
  try {
    for (let i = 0; i < n; i++) {
      const r = await client.chat.completions.create({ model, messages });
      if (!r.choices || r.choices.length === 0) throw new Error("no choices");
    }
  } catch (e) {
    console.log("error " + e.message);
  }
  console.log("ok bench " + (Number(process.hrtime.bigint() - start) / 1e9).toFixed(6));
}
