// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/* ztunnel-ts capture: tc ingress on every pod's host-side veth and on the node's uplink.
 * Steers TCP leaving captured pods, and plaintext/HBONE TCP arriving for them, into the node daemon's
 * transparent listeners with bpf_sk_assign. No iptables, no packet rewriting: the daemon's socket sees the
 * original addresses. IPv4 from a pod's veth with a source other than the pod's IP is dropped; everything
 * else that is not IPv4 TCP passes untouched. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <stdbool.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "lib/maps.h"

#define PACKET_HOST 0
#define AF_INET 2

static __always_inline void count(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&ztunnel_stats, &stat);

	if (v)
		*v += 1;
}

static __always_inline int captured(__u32 ip)
{
	struct workload_info *w = bpf_map_lookup_elem(&ztunnel_workloads, &ip);

	return w && (w->flags & WORKLOAD_CAPTURED);
}

/* True when the veth the packet came in on belongs to a pod whose IP is not the packet's source. A veth
 * the daemon has not registered yet is not judged. */
static __always_inline int spoofed(struct __sk_buff *skb, __u32 saddr)
{
	__u32 ifindex = skb->ingress_ifindex;
	__u32 *own = bpf_map_lookup_elem(&ztunnel_pod_ifaces, &ifindex);

	return own && *own != saddr;
}

/* Mark a packet for the local-delivery route (ip rule fwmark), as a packet for this host. */
static __always_inline void deliver_locally(struct __sk_buff *skb, const struct capture_config *cfg)
{
	skb->mark = (skb->mark & ~0xfffU) | (cfg->assign_mark & 0xfff);
	if (skb->pkt_type != PACKET_HOST)
		bpf_skb_change_type(skb, PACKET_HOST);
}

/* Which of the daemon's listeners a new flow belongs to (LISTENER_*), or -1: not ours. Captured pods' own
 * traffic is captured where it leaves the pod; arriving traffic for captured pods is HBONE (15008), from
 * another node or from an uncaptured pod here (a waypoint), or else, from outside the mesh, plaintext. */
static __always_inline int listener_for(__u32 saddr, __u32 daddr, __u16 dport, const bool from_pod,
					 const struct capture_config *cfg)
{
	if (from_pod && captured(saddr) && !bpf_map_lookup_elem(&ztunnel_node_ips, &daddr))
		return LISTENER_OUTBOUND;
	if (captured(daddr) && dport == cfg->hbone_port)
		return LISTENER_HBONE;
	if (captured(daddr) && !(from_pod && captured(saddr)))
		return LISTENER_INBOUND_PLAIN;
	return -1;
}

/* Assign sk to the packet, mark it for the local-delivery route, release the reference. */
static __always_inline int assign(struct __sk_buff *skb, struct bpf_sock *sk, const struct capture_config *cfg,
				  __u32 stat)
{
	long err = bpf_sk_assign(skb, sk, 0);

	bpf_sk_release(sk);
	if (err) {
		count(STAT_ERRORS);
		return TC_ACT_SHOT;
	}
	deliver_locally(skb, cfg);
	count(stat);
	return TC_ACT_OK;
}

/* from_pod: attached to a pod's host-side veth (packets the pod sends); otherwise to the uplink
 * (packets from other nodes). */
static __always_inline int capture(struct __sk_buff *skb, const bool from_pod)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct bpf_sock_tuple tuple = {};
	struct capture_config *cfg;
	struct bpf_sock *sk;
	struct iphdr *ip;
	struct tcphdr *tcp;
	__u32 zero = 0;
	__u16 listen_port;
	int kind;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return TC_ACT_OK;
	/* Anti-spoofing, before anything else: a pod sends only from its own IP (any protocol), so that it
	 * cannot borrow another pod's identity by address. */
	if (from_pod && spoofed(skb, ip->saddr)) {
		count(STAT_DROPPED_SPOOFED);
		return TC_ACT_SHOT;
	}
	if (ip->protocol != IPPROTO_TCP || ip->ihl != 5)
		return TC_ACT_OK;
	tcp = (void *)(ip + 1);
	if ((void *)(tcp + 1) > data_end)
		return TC_ACT_OK;
	cfg = bpf_map_lookup_elem(&ztunnel_config, &zero);
	if (!cfg)
		return TC_ACT_OK;
	if (cfg->daemon_mark && skb->mark == cfg->daemon_mark)
		return TC_ACT_OK;

	/* The lookup helpers read the tuple from the stack, not from packet memory. */
	tuple.ipv4.saddr = ip->saddr;
	tuple.ipv4.daddr = ip->daddr;
	tuple.ipv4.sport = tcp->source;
	tuple.ipv4.dport = tcp->dest;

	/* 1. An existing non-listening socket (daemon side of a captured flow, the ACK that completes its
	 *    handshake, or a reply to the daemon's source-preserving upstream socket, even in TIME_WAIT). */
	sk = bpf_skc_lookup_tcp(skb, &tuple, sizeof(tuple.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (sk) {
		/* A TIME_WAIT socket of the daemon gets the late packets of its own flow, but never a new SYN,
		 * and nothing between pods that are no longer captured: after a label flip they talk directly
		 * and may reuse the 4-tuple, and would otherwise stall on retransmits for up to 60 s. */
		int time_wait = sk->state == BPF_TCP_TIME_WAIT;
		int new_syn = tcp->syn && !tcp->ack;
		int stale = time_wait && (new_syn || !(captured(ip->saddr) || captured(ip->daddr)));

		if (sk->state != BPF_TCP_LISTEN && !stale)
			return assign(skb, sk, cfg, STAT_ASSIGNED_ESTABLISHED);
		bpf_sk_release(sk);
		/* A new SYN reusing the tuple of a connection the daemon closed first (a server that closes
		 * first, then a client that reuses its port): the TIME_WAIT socket is in the way of a
		 * listener's new one. Delivered without a socket, the kernel finds the TIME_WAIT socket, accepts
		 * the SYN (RFC 6191) and asks for a listener: capture_lookup gives it ours, and the old socket
		 * goes, as TPROXY's TIME_WAIT handling does. */
		if (time_wait && new_syn && listener_for(ip->saddr, ip->daddr, bpf_ntohs(tcp->dest), from_pod, cfg) >= 0) {
			deliver_locally(skb, cfg);
			count(STAT_TIME_WAIT_HANDOFF);
			return TC_ACT_OK;
		}
	}

	/* 2. Which listener, if any, a new flow belongs to. */
	kind = listener_for(ip->saddr, ip->daddr, bpf_ntohs(tcp->dest), from_pod, cfg);
	if (kind == LISTENER_OUTBOUND)
		listen_port = cfg->outbound_port;
	else if (kind == LISTENER_HBONE)
		listen_port = cfg->hbone_port;
	else if (kind == LISTENER_INBOUND_PLAIN)
		listen_port = cfg->inbound_plain_port;
	else {
		count(STAT_PASSED);
		return TC_ACT_OK;
	}

	tuple.ipv4.dport = bpf_htons(listen_port);
	sk = bpf_skc_lookup_tcp(skb, &tuple, sizeof(tuple.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (!sk || sk->state != BPF_TCP_LISTEN) {
		if (sk)
			bpf_sk_release(sk);
		/* Fail closed: a captured flow must not bypass a daemon that is not there. */
		count(STAT_DROPPED_NO_LISTENER);
		return TC_ACT_SHOT;
	}
	return assign(skb, sk, cfg, STAT_ASSIGNED_LISTENER);
}

/* Listener lookups in the node's network namespace. The tc program assigns new flows itself; this runs
 * where the kernel looks for a listener on its own: a SYN that met one of the daemon's TIME_WAIT sockets
 * (above). It picks the same listener by the same rule; the kernel then picks a member of its reuseport
 * group. Anything else is left to the normal lookup. */
SEC("sk_lookup")
int capture_lookup(struct bpf_sk_lookup *ctx)
{
	struct capture_config *cfg;
	struct bpf_sock *sk;
	__u32 zero = 0, ifindex, key;
	bool from_pod;
	int kind, i;

	if (ctx->family != AF_INET || ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	cfg = bpf_map_lookup_elem(&ztunnel_config, &zero);
	if (!cfg)
		return SK_PASS;
	ifindex = ctx->ingress_ifindex;
	from_pod = bpf_map_lookup_elem(&ztunnel_pod_ifaces, &ifindex) != NULL;
	kind = listener_for(ctx->remote_ip4, ctx->local_ip4, ctx->local_port, from_pod, cfg);
	if (kind < 0)
		return SK_PASS;
	for (i = 0; i < LISTENER_SLOTS; i++) {
		key = kind * LISTENER_SLOTS + i;
		sk = bpf_map_lookup_elem(&ztunnel_listeners, &key);
		if (!sk)
			continue;
		long err = bpf_sk_assign(ctx, sk, 0);

		bpf_sk_release(sk);
		if (!err) {
			count(STAT_LOOKUP_ASSIGNED);
			return SK_PASS;
		}
	}
	return SK_PASS;
}

SEC("tc")
int capture_pod(struct __sk_buff *skb)
{
	return capture(skb, true);
}

SEC("tc")
int capture_uplink(struct __sk_buff *skb)
{
	return capture(skb, false);
}

char _license[] SEC("license") = "GPL";
