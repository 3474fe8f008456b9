// The receiver's Node test agent: the official OpenAI and Anthropic SDKs (pinned in
// package.json) calling a model once per stdin line "<mode> <base-url>" (mode: chat, stream,
// messages, messages-stream), as a Node agent would. The servers' CAs come in
// NODE_EXTRA_CA_CERTS. Usage: node agent.mjs <model>
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import readline from "node:readline";

const [model] = process.argv.slice(2);
const messages = [{ role: "user", content: "What is the balance of C1001?" }];

console.log("ready");
for await (const line of readline.createInterface({ input: process.stdin })) {
  const [mode, baseURL] = line.split(" ");
  const client = new OpenAI({ baseURL, apiKey: "sk-test", maxRetries: 0 });
  const anthropic = new Anthropic({ baseURL, apiKey: "sk-ant-test", maxRetries: 0 });
  try {
    if (mode === "chat") {
      const r = await client.chat.completions.create({ model, messages });
      console.log("ok chat " + r.choices[0].finish_reason);
    } else if (mode === "stream") {
      const s = await client.chat.completions.create({ model, messages, stream: true, stream_options: { include_usage: true } });
      let n = 0;
      for await (const _ of s) n++;
      console.log("ok stream " + n);
    } else if (mode === "messages") {
      const r = await anthropic.messages.create({ model, max_tokens: 256, messages });
      console.log("ok messages " + r.stop_reason);
    } else if (mode === "messages-stream") {
      const s = await anthropic.messages.create({ model, max_tokens: 256, messages, stream: true });
      let n = 0;
      for await (const _ of s) n++;
      console.log("ok messages-stream " + n);
    } else {
      console.log("unknown " + line);
    }
  } catch (e) {
    console.log("error " + e.message);
  }
}
