// A connected pair of real loopback sockets, both half-open capable: [client end, server end].
import net from 'node:net';

export async function socketPair(host = '127.211.0.1'): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, host, r));
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const client = net.connect({ host, port: (server.address() as net.AddressInfo).port, allowHalfOpen: true });
  const peer = await accepted;
  server.close();
  await new Promise((r) => client.once('connect', r));
  return [client, peer];
}
