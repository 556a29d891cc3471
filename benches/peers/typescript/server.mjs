// Benchmark peer ONLY (benches/peers.rs): the trivial read tool `whoami` on the official MCP TypeScript SDK,
// served the way the SDK's own stateful streamable HTTP example does (one transport per session, kept in a
// map by mcp-session-id), or over stdio.
//
//   node server.mjs stdio
//   node server.mjs http <port>
import { randomUUID } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';

const [mode, port] = process.argv.slice(2);

function whoami(transport) {
  return {
    subject: 'bench',
    role: 'viewer',
    tenant_id: '00000000-0000-0000-0000-000000000001',
    tenant_name: 'bench',
    transport,
    permissions: ['budget:read', 'usage:read', 'audit:read'],
  };
}

function newServer(transport) {
  const server = new McpServer({ name: 'peer-typescript', version: '1.0.0' });
  server.registerTool(
    'whoami',
    { description: 'Who the caller is', annotations: { readOnlyHint: true } },
    async () => {
      const me = whoami(transport);
      return { content: [{ type: 'text', text: JSON.stringify(me) }], structuredContent: me };
    },
  );
  return server;
}

if (mode === 'stdio') {
  await newServer('stdio').connect(new StdioServerTransport());
} else if (mode === 'http') {
  const app = createMcpExpressApp();
  const transports = new Map();
  app.post('/mcp', async (req, res) => {
    const sessionId = req.headers['mcp-session-id'];
    let transport = sessionId ? transports.get(sessionId) : undefined;
    if (!transport) {
      if (sessionId || !isInitializeRequest(req.body)) {
        res.status(400).json({ jsonrpc: '2.0', error: { code: -32000, message: 'No valid session' }, id: null });
        return;
      }
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => transports.set(id, transport),
      });
      transport.onclose = () => transport.sessionId && transports.delete(transport.sessionId);
      await newServer('http').connect(transport);
    }
    await transport.handleRequest(req, res, req.body);
  });
  const session = async (req, res) => {
    const transport = transports.get(req.headers['mcp-session-id']);
    if (!transport) {
      res.status(400).send('No valid session');
      return;
    }
    await transport.handleRequest(req, res);
  };
  app.get('/mcp', session);
  app.delete('/mcp', session);
  app.listen(Number(port), '127.0.0.1', () => console.error(`listening on http://127.0.0.1:${port}/mcp`));
} else {
  console.error('usage: node server.mjs stdio | http <port>');
  process.exit(2);
}
