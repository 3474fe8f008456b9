// tee.mjs OUTPREFIX COMMAND [ARGS...]: runs an MCP server over stdio and records what passed,
// in order, as the chunks each side wrote: OUTPREFIX.chunks holds for each chunk a line
// "c LEN" (the client wrote) or "s LEN" (the server wrote), then the LEN bytes and a newline.
// It records the fixtures of internal/mcp from the real SDK and servers.
import { spawn } from "node:child_process";
import { createWriteStream } from "node:fs";

const [prefix, command, ...args] = process.argv.slice(2);
const out = createWriteStream(prefix + ".chunks");
const record = (side, b) => { out.write(`${side} ${b.length}\n`); out.write(b); out.write("\n"); };
const child = spawn(command, args, { stdio: ["pipe", "pipe", "inherit"] });
process.stdin.on("data", (b) => { record("c", b); child.stdin.write(b); });
process.stdin.on("end", () => child.stdin.end());
child.stdout.on("data", (b) => { record("s", b); process.stdout.write(b); });
child.on("exit", (code) => { out.end(() => process.exit(code ?? 0)); });
