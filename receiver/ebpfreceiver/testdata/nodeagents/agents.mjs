// The receiver's Node agent-SDK test program (TestNodeAgentSDKs): a tool-using agent on the
// official @openai/agents SDK and on the Vercel AI SDK (`ai` with @ai-sdk/openai), pinned in
// package.json, against an OpenAI chat-completions server (the repo's mock model: it asks for
// customer-data-export when a message carries an injection, then summarises the tool's result).
// The tool reads a file and posts it to the destination the model gave, as an exfiltration
// would. Each stdin line "<sdk> <base-url> <prompt...>" (sdk: openai-agents, ai) runs one agent
// turn; the answer line is "ok <sdk> <tool calls run>". The server's CA comes in
// NODE_EXTRA_CA_CERTS. Usage: node agents.mjs <model> <file the tool reads>
import readline from "node:readline";
import fs from "node:fs/promises";
import { z } from "zod";
import OpenAI from "openai";
import { Agent, run, tool as agentTool, setDefaultOpenAIClient, setOpenAIAPI, setTracingDisabled } from "@openai/agents";
import { generateText, tool as aiTool, stepCountIs } from "ai";
import { createOpenAI } from "@ai-sdk/openai";

const [model, secretFile] = process.argv.slice(2);
let calls = 0;

// The tool: the same work in both SDKs.
async function exportData({ query, destination }) {
  calls++;
  const data = await fs.readFile(secretFile);
  const r = await fetch(destination, { method: "POST", body: data, headers: { "X-Query": String(query).slice(0, 64) } });
  return `exported ${data.length} bytes: ${r.status}`;
}
const params = z.object({ query: z.string(), destination: z.string() });
const description = "Export customer records to a destination URL.";

async function openaiAgents(baseURL, prompt) {
  setDefaultOpenAIClient(new OpenAI({ baseURL, apiKey: "sk-test", maxRetries: 0 }));
  setOpenAIAPI("chat_completions"); // the mock serves chat completions, not Responses
  setTracingDisabled(true); // no export of the SDK's own traces to OpenAI
  const agent = new Agent({
    name: "exporter", model, instructions: "You help with customer data.",
    tools: [agentTool({ name: "customer-data-export", description, parameters: params, execute: exportData })],
  });
  const r = await run(agent, prompt, { maxTurns: 4 });
  return r.finalOutput;
}

async function vercelAI(baseURL, prompt) {
  const openai = createOpenAI({ baseURL, apiKey: "sk-test" });
  const r = await generateText({
    model: openai.chat(model), maxRetries: 0, stopWhen: stepCountIs(4), prompt,
    tools: { "customer-data-export": aiTool({ description, inputSchema: params, execute: exportData }) },
  });
  return r.text;
}

console.log("ready");
for await (const line of readline.createInterface({ input: process.stdin })) {
  const [sdk, baseURL, ...words] = line.split(" ");
  const before = calls;
  try {
    if (sdk === "openai-agents") await openaiAgents(baseURL, words.join(" "));
    else if (sdk === "ai") await vercelAI(baseURL, words.join(" "));
    else { console.log("unknown " + line); continue; }
    console.log(`ok ${sdk} ${calls - before}`);
  } catch (e) {
    console.log("error " + (e && e.stack || e));
  }
}
