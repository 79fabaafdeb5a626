// The lab's network: a fabric namespace with a bridge, a namespace per node on it, a namespace per pod
// with a veth to its node. IPv4 pods have a /32 and a default route through the veth (proxy ARP, Calico
// style); dual-stack pods also a /128 and a default route to fe80::1, which every host-side veth carries.
// Every link is made between lab namespaces: nothing touches the host's own namespace.
import { FABRIC_BRIDGE_IP, FABRIC_BRIDGE_IP6, FABRIC_NETNS, SERVICE_CIDR, SERVICE_CIDR6, type LabNode, type LabPod } from './plan.js';
import { inNetns, run } from './shell.js';

/** The link-local address of every pod's host-side veth: the pods' IPv6 default gateway. */
const POD_GATEWAY6 = 'fe80::1';

function sysctl(netns: string, key: string, value: string): void {
  inNetns(netns, 'sysctl', ['-qw', `${key}=${value}`]);
}

/** A new namespace; with IPv6, addresses are usable at once (no duplicate address detection to wait for). */
function addNetns(name: string, ipv6: boolean): void {
  run('ip', ['netns', 'add', name]);
  if (!ipv6) return;
  sysctl(name, 'net.ipv6.conf.all.accept_dad', '0');
  sysctl(name, 'net.ipv6.conf.default.accept_dad', '0');
}

export function buildNetwork(nodes: readonly LabNode[], pods: readonly LabPod[]): void {
  const ipv6 = nodes.some((n) => n.ip6 !== undefined);
  addNetns(FABRIC_NETNS, ipv6);
  run('ip', ['-n', FABRIC_NETNS, 'link', 'set', 'lo', 'up']);
  run('ip', ['-n', FABRIC_NETNS, 'link', 'add', 'br0', 'type', 'bridge']);
  run('ip', ['-n', FABRIC_NETNS, 'addr', 'add', `${FABRIC_BRIDGE_IP}/24`, 'dev', 'br0']);
  if (ipv6) run('ip', ['-n', FABRIC_NETNS, '-6', 'addr', 'add', `${FABRIC_BRIDGE_IP6}/64`, 'dev', 'br0', 'nodad']);
  run('ip', ['-n', FABRIC_NETNS, 'link', 'set', 'br0', 'up']);
  for (const n of nodes) buildNode(n, nodes);
  for (const p of pods) buildPod(p, nodes.find((n) => n.name === p.node) as LabNode);
}

function buildNode(n: LabNode, nodes: readonly LabNode[]): void {
  addNetns(n.netns, n.ip6 !== undefined);
  run('ip', ['-n', FABRIC_NETNS, 'link', 'add', n.fabricIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', n.netns]);
  run('ip', ['-n', FABRIC_NETNS, 'link', 'set', n.fabricIf, 'master', 'br0', 'up']);
  run('ip', ['-n', n.netns, 'link', 'set', 'lo', 'up']);
  run('ip', ['-n', n.netns, 'addr', 'add', `${n.ip}/24`, 'dev', 'eth0']);
  if (n.ip6 !== undefined) run('ip', ['-n', n.netns, '-6', 'addr', 'add', `${n.ip6}/64`, 'dev', 'eth0', 'nodad']);
  run('ip', ['-n', n.netns, 'link', 'set', 'eth0', 'up']);
  sysctl(n.netns, 'net.ipv4.ip_forward', '1');
  // Service VIPs have no owner (no kube-proxy). A route for them lets the pods' proxy ARP answer, so captured
  // connections to a VIP reach the tc hook; uncaptured ones end at the fabric, which has no route onward.
  run('ip', ['-n', n.netns, 'route', 'add', SERVICE_CIDR, 'via', FABRIC_BRIDGE_IP]);
  if (n.ip6 !== undefined) {
    sysctl(n.netns, 'net.ipv6.conf.all.forwarding', '1');
    run('ip', ['-n', n.netns, '-6', 'route', 'add', SERVICE_CIDR6, 'via', FABRIC_BRIDGE_IP6]);
  }
  for (const other of nodes) {
    if (other === n) continue;
    run('ip', ['-n', n.netns, 'route', 'add', other.podCidr, 'via', other.ip]);
    if (n.ip6 !== undefined && other.ip6 !== undefined && other.podCidr6 !== undefined) {
      run('ip', ['-n', n.netns, '-6', 'route', 'add', other.podCidr6, 'via', other.ip6]);
    }
  }
  // Pods that run lab processes (waypoints) reach the CA on the fabric, and its answers come back.
  run('ip', ['-n', FABRIC_NETNS, 'route', 'add', n.podCidr, 'via', n.ip]);
}

function buildPod(p: LabPod, node: LabNode): void {
  const v4 = p.ips.find((ip) => !ip.includes(':'));
  const v6 = p.ips.find((ip) => ip.includes(':'));
  addNetns(p.netns, node.ip6 !== undefined);
  run('ip', ['-n', node.netns, 'link', 'add', p.hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', p.netns]);
  run('ip', ['-n', node.netns, 'link', 'set', p.hostIf, 'up']);
  run('ip', ['-n', p.netns, 'link', 'set', 'lo', 'up']);
  run('ip', ['-n', p.netns, 'link', 'set', 'eth0', 'up']);
  if (v4 !== undefined) {
    sysctl(node.netns, `net.ipv4.conf.${p.hostIf}.proxy_arp`, '1');
    run('ip', ['-n', node.netns, 'route', 'add', `${v4}/32`, 'dev', p.hostIf]);
    run('ip', ['-n', p.netns, 'addr', 'add', `${v4}/32`, 'dev', 'eth0']);
    run('ip', ['-n', p.netns, 'route', 'add', 'default', 'dev', 'eth0']);
  }
  if (v6 !== undefined) {
    run('ip', ['-n', node.netns, '-6', 'addr', 'add', `${POD_GATEWAY6}/64`, 'dev', p.hostIf, 'nodad']);
    run('ip', ['-n', node.netns, '-6', 'route', 'add', `${v6}/128`, 'dev', p.hostIf]);
    run('ip', ['-n', p.netns, '-6', 'addr', 'add', `${v6}/128`, 'dev', 'eth0', 'nodad']);
    run('ip', ['-n', p.netns, '-6', 'route', 'add', 'default', 'via', POD_GATEWAY6, 'dev', 'eth0']);
  }
}
