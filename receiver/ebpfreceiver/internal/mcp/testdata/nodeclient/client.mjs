// client.mjs SERVER ARG [RECORD]: an MCP client on the official TypeScript SDK that spawns a
// reference server over stdio and makes the calls the receiver's tests expect.
//   SERVER filesystem, ARG a directory: server-filesystem allowed ARG; reads ARG/notes.txt,
//          lists ARG, reads a missing file (an isError result).
//   SERVER everything, ARG a URL or "": server-everything; echo (with a secret in its message),
//          get-sum, get-tiny-image (an image: base64 PNG), gzip-file-as-resource of the URL
//          when one is given (the server fetches it; a blob resource), get-sum with a string
//          argument (an isError result), a resource read, a prompt.
// With RECORD set, the server runs under tee.mjs, which writes RECORD.c2s and RECORD.s2c.
// It prints one line per call: "call <method> <id-order> ok|error".
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const [which, dir, record] = process.argv.slice(2);
const servers = {
  filesystem: [path.join(here, "node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"), dir],
  everything: [path.join(here, "node_modules/@modelcontextprotocol/server-everything/dist/index.js"), "stdio"],
};
let args = servers[which];
if (!args) throw new Error(`unknown server ${which}`);
let command = process.execPath;
if (record) args = [path.join(here, "tee.mjs"), record, process.execPath, ...args];

const transport = new StdioClientTransport({ command, args, stderr: "ignore" });
const client = new Client({ name: "agenttrail-test-client", version: "1.0.0" });
await client.connect(transport);
const tools = await client.listTools();
console.log(`tools ${tools.tools.length}`);

async function call(name, args) {
  const r = await client.callTool({ name, arguments: args });
  console.log(`call ${name} ${r.isError ? "error" : "ok"}`);
}
if (which === "filesystem") {
  await call("read_text_file", { path: path.join(dir, "notes.txt") });
  await call("list_directory", { path: dir });
  await call("read_text_file", { path: path.join(dir, "missing.txt") });
} else {
  await call("echo", { message: "hello from agenttrail, token sk-live-0123456789abcdefghijkl" });
  await call("get-sum", { a: 2, b: 40 });
  await call("get-tiny-image", {});
  if (dir) await call("gzip-file-as-resource", { name: "page.gz", data: dir, outputType: "resource" });
  await call("get-sum", { a: "two", b: 40 });
  const res = await client.readResource({ uri: "demo://resource/dynamic/text/1" });
  console.log(`resource ${res.contents.length}`);
  const p = await client.getPrompt({ name: "simple-prompt" });
  console.log(`prompt ${p.messages.length}`);
}
await client.close();
