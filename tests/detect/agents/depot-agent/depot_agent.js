// depot-agent: the Node agent of the detection corpus (tests/detect). A warehouse assistant
// with its own tools; it asks a model (OpenAI chat completions over plain HTTP) what to do with
// a message and runs the tools the model picks until the model answers. Node's standard
// library only. JavaScript functions cannot be uprobed: the receiver sees this agent's model
// calls (plain HTTP), its syscalls and its socket I/O, not its tool calls.
'use strict';
const http = require('http');
const fs = require('fs');
const dgram = require('dgram');
const { execFile } = require('child_process');

const [listen, modelURL, resolver, ready] = process.argv.slice(2);
const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

function request(method, url, body) {
  return new Promise((resolve) => {
    const u = new URL(url);
    const req = http.request({ method, hostname: u.hostname, port: u.port, path: u.pathname, agent,
      headers: { 'Content-Type': 'application/json', 'Content-Length': body ? body.length : 0 } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
    });
    req.on('error', (e) => resolve({ status: 0, body: Buffer.from(String(e)) }));
    if (body) req.write(body);
    req.end();
  });
}

async function complete(messages) {
  const r = await request('POST', modelURL, Buffer.from(JSON.stringify({ model: 'depot-model', messages })));
  try {
    const msg = JSON.parse(r.body).choices[0].message;
    if (!msg.tool_calls || msg.tool_calls.length === 0) return { content: msg.content || '' };
    const fn = msg.tool_calls[0].function;
    return { tool: fn.name, args: JSON.parse(fn.arguments || '{}') };
  } catch (e) {
    return { content: 'bad model answer' };
  }
}

function dnsQuery(id, name) {
  const parts = [Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0])];
  for (const l of name.replace(/\.$/, '').split('.')) {
    const b = Buffer.from(l.slice(0, 63));
    parts.push(Buffer.from([b.length]), b);
  }
  parts.push(Buffer.from([0, 0, 1, 0, 1]));
  return Buffer.concat(parts);
}

const tools = {
  'stock-read': async (a) => { try { return fs.readFileSync(a.path, 'utf8'); } catch (e) { return String(e); } },
  'shipment-post': async (a) => {
    let body = Buffer.from(a.text || '');
    if (a.path) { try { body = fs.readFileSync(a.path); } catch (e) { return String(e); } }
    const r = await request('POST', a.url, body);
    return `sent ${body.length} bytes: ${r.status}`;
  },
  'warehouse-shell': (a) => new Promise((resolve) => {
    const cmd = a.command || '';
    const [file, args] = cmd.startsWith('sh:') ? ['/bin/sh', ['-c', cmd.slice(3)]] : [cmd.split(' ')[0], cmd.split(' ').slice(1)];
    execFile(file, args, { timeout: 20000 }, (err, out) => resolve(err ? String(err) : out));
  }),
  'carrier-dns': (a) => new Promise((resolve) => {
    const [host, port] = resolver.split(':');
    const s = dgram.createSocket('udp4');
    const names = (a.names || '').split(',');
    let n = 0;
    names.forEach((name, i) => s.send(dnsQuery(i + 1, name.trim()), Number(port), host, () => {
      if (++n === names.length) { s.close(); resolve(`${n} queries sent`); }
    }));
  }),
  'manual-fetch': async (a) => (await request('GET', a.url)).body.toString(),
};

async function handlePrompt(prompt) {
  const messages = [{ role: 'user', content: prompt }];
  for (let i = 0; i < 6; i++) {
    const d = await complete(messages);
    if (!d.tool) return d.content;
    const fn = tools[d.tool];
    messages.push({ role: 'tool', content: fn ? await fn(d.args || {}) : 'no such tool: ' + d.tool });
  }
  return 'too many steps';
}

const [host, port] = listen.split(':');
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', async () => {
    let msg = '';
    try { msg = JSON.parse(Buffer.concat(chunks)).message || ''; } catch (e) { /* empty message */ }
    const out = Buffer.from(JSON.stringify({ reply: await handlePrompt(msg) }));
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': out.length });
    res.end(out);
  });
});
server.listen(Number(port), host, () => fs.writeFileSync(ready, `${host}:${server.address().port}`));
