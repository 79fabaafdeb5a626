// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/* ztunnel-ts capture: tc ingress on every pod's host-side veth and on the node's uplink.
 * Steers TCP leaving captured pods, and plaintext/HBONE TCP arriving for them, into the node daemon's
 * transparent listeners with bpf_sk_assign. No iptables, no packet rewriting: the daemon's socket sees the
 * original addresses. IPv4 and IPv6 are handled alike. A packet from a pod's veth with a source other than
 * the pod's own address is dropped; everything else that is not TCP (ARP, ICMPv6 neighbour discovery,
 * UDP) passes untouched. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <stdbool.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include "lib/maps.h"

#define PACKET_HOST 0
#define AF_INET 2
#define AF_INET6 10
/* Extension headers walked to find TCP; more than this many is not traffic a pod sends. */
#define MAX_EXT_HEADERS 4

/* One packet's TCP flow, in both families' terms. */
struct flow {
	struct addr_key src;
	struct addr_key dst;
	struct bpf_sock_tuple tuple;
	bool v6;
	__u16 dport; /* host byte order */
	bool new_syn;
};

static __always_inline void count(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&ztunnel_stats, &stat);

	if (v)
		*v += 1;
}

static __always_inline void key_ipv4(struct addr_key *k, __u32 ip)
{
	k->a[0] = 0;
	k->a[1] = 0;
	k->a[2] = bpf_htonl(0xffff);
	k->a[3] = ip;
}

static __always_inline void key_ipv6(struct addr_key *k, const __u32 *ip)
{
	k->a[0] = ip[0];
	k->a[1] = ip[1];
	k->a[2] = ip[2];
	k->a[3] = ip[3];
}

static __always_inline int captured(const struct addr_key *ip)
{
	struct workload_info *w = bpf_map_lookup_elem(&ztunnel_workloads, ip);

	return w && (w->flags & WORKLOAD_CAPTURED);
}

static __always_inline struct pod_addrs *pod_of(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ingress_ifindex;

	return bpf_map_lookup_elem(&ztunnel_pod_ifaces, &ifindex);
}

/* True when the veth the packet came in on belongs to a pod whose IPv4 address is not the packet's
 * source. A veth the daemon has not registered yet is not judged. */
static __always_inline int spoofed_ipv4(struct __sk_buff *skb, __u32 saddr)
{
	struct pod_addrs *own = pod_of(skb);

	return own && own->ip4 != saddr;
}

/* The same for IPv6. Link-local sources (fe80::/10) and the unspecified address (duplicate address
 * detection) are neighbour discovery on the veth itself, which every pod does. */
static __always_inline int spoofed_ipv6(struct __sk_buff *skb, const __u32 *saddr)
{
	struct pod_addrs *own = pod_of(skb);

	if (!own)
		return 0;
	if ((saddr[0] & bpf_htonl(0xffc00000)) == bpf_htonl(0xfe800000))
		return 0;
	if (!(saddr[0] | saddr[1] | saddr[2] | saddr[3]))
		return 0;
	return own->ip6[0] != saddr[0] || own->ip6[1] != saddr[1] || own->ip6[2] != saddr[2] || own->ip6[3] != saddr[3];
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
static __always_inline int listener_for(const struct addr_key *saddr, const struct addr_key *daddr, __u16 dport,
					 const bool from_pod, const struct capture_config *cfg)
{
	if (from_pod && captured(saddr) && !bpf_map_lookup_elem(&ztunnel_node_ips, daddr))
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

/* The TCP header's fields a flow needs, read at off (the tuple is read from the stack, not packet memory). */
static __always_inline int read_tcp(struct __sk_buff *skb, __u32 off, struct flow *f, __be16 *sport, __be16 *dport)
{
	struct tcphdr tcp;

	if (bpf_skb_load_bytes(skb, off, &tcp, sizeof(tcp)))
		return -1;
	*sport = tcp.source;
	*dport = tcp.dest;
	f->dport = bpf_ntohs(tcp.dest);
	f->new_syn = tcp.syn && !tcp.ack;
	return 0;
}

enum parsed { PARSED_TCP, PARSED_PASS, PARSED_DROP_SPOOFED, PARSED_DROP_UNPARSED };

static __always_inline enum parsed parse_ipv4(struct __sk_buff *skb, const bool from_pod, struct flow *f)
{
	struct iphdr ip;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
		return PARSED_PASS;
	/* Anti-spoofing, before anything else: a pod sends only from its own address (any protocol), so
	 * that it cannot borrow another pod's identity by address. */
	if (from_pod && spoofed_ipv4(skb, ip.saddr))
		return PARSED_DROP_SPOOFED;
	if (ip.protocol != IPPROTO_TCP || ip.ihl != 5)
		return PARSED_PASS;
	key_ipv4(&f->src, ip.saddr);
	key_ipv4(&f->dst, ip.daddr);
	f->tuple.ipv4.saddr = ip.saddr;
	f->tuple.ipv4.daddr = ip.daddr;
	if (read_tcp(skb, ETH_HLEN + sizeof(ip), f, &f->tuple.ipv4.sport, &f->tuple.ipv4.dport))
		return PARSED_PASS;
	return PARSED_TCP;
}

static __always_inline enum parsed parse_ipv6(struct __sk_buff *skb, const bool from_pod, struct flow *f)
{
	struct ipv6hdr ip;
	__u32 off = ETH_HLEN + sizeof(ip);
	__u8 next;
	int i;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
		return PARSED_PASS;
	if (from_pod && spoofed_ipv6(skb, ip.saddr.in6_u.u6_addr32))
		return PARSED_DROP_SPOOFED;
	key_ipv6(&f->src, ip.saddr.in6_u.u6_addr32);
	key_ipv6(&f->dst, ip.daddr.in6_u.u6_addr32);
	next = ip.nexthdr;
	/* Options and routing headers may come before TCP; skip them, as the kernel will. */
#pragma unroll
	for (i = 0; i < MAX_EXT_HEADERS; i++) {
		struct { __u8 next; __u8 len; } ext;

		if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING && next != IPPROTO_DSTOPTS)
			break;
		if (bpf_skb_load_bytes(skb, off, &ext, sizeof(ext)))
			return PARSED_PASS;
		next = ext.next;
		off += (ext.len + 1) * 8;
	}
	if (next != IPPROTO_TCP) {
		/* Fragments, AH/ESP or a long chain may hide TCP: not past a captured pod (fail closed). ICMPv6,
		 * UDP and anything else with a known end pass. */
		bool hidden = next == IPPROTO_FRAGMENT || next == IPPROTO_AH || next == IPPROTO_ESP || next == IPPROTO_HOPOPTS ||
			      next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS;

		if (hidden && (captured(&f->src) || captured(&f->dst)))
			return PARSED_DROP_UNPARSED;
		return PARSED_PASS;
	}
	__builtin_memcpy(f->tuple.ipv6.saddr, ip.saddr.in6_u.u6_addr32, 16);
	__builtin_memcpy(f->tuple.ipv6.daddr, ip.daddr.in6_u.u6_addr32, 16);
	f->v6 = true;
	if (read_tcp(skb, off, f, &f->tuple.ipv6.sport, &f->tuple.ipv6.dport))
		return PARSED_PASS;
	return PARSED_TCP;
}

static __always_inline void set_tuple_dport(struct flow *f, __u16 port)
{
	if (f->v6)
		f->tuple.ipv6.dport = bpf_htons(port);
	else
		f->tuple.ipv4.dport = bpf_htons(port);
}

/* The socket of the flow's tuple (the size is a constant on each path, as the verifier needs). */
static __always_inline struct bpf_sock *lookup(struct __sk_buff *skb, struct flow *f)
{
	if (f->v6)
		return bpf_skc_lookup_tcp(skb, &f->tuple, sizeof(f->tuple.ipv6), BPF_F_CURRENT_NETNS, 0);
	return bpf_skc_lookup_tcp(skb, &f->tuple, sizeof(f->tuple.ipv4), BPF_F_CURRENT_NETNS, 0);
}

/* from_pod: attached to a pod's host-side veth (packets the pod sends); otherwise to the uplink
 * (packets from other nodes). */
static __always_inline int capture(struct __sk_buff *skb, const bool from_pod)
{
	struct flow f = {};
	struct capture_config *cfg;
	struct bpf_sock *sk;
	enum parsed parsed;
	__u32 zero = 0;
	__u16 listen_port;
	int kind;

	if (skb->protocol == bpf_htons(ETH_P_IP))
		parsed = parse_ipv4(skb, from_pod, &f);
	else if (skb->protocol == bpf_htons(ETH_P_IPV6))
		parsed = parse_ipv6(skb, from_pod, &f);
	else
		return TC_ACT_OK;
	if (parsed == PARSED_DROP_SPOOFED) {
		count(STAT_DROPPED_SPOOFED);
		return TC_ACT_SHOT;
	}
	if (parsed == PARSED_DROP_UNPARSED) {
		count(STAT_DROPPED_UNPARSED);
		return TC_ACT_SHOT;
	}
	if (parsed != PARSED_TCP)
		return TC_ACT_OK;
	cfg = bpf_map_lookup_elem(&ztunnel_config, &zero);
	if (!cfg)
		return TC_ACT_OK;
	if (cfg->daemon_mark && skb->mark == cfg->daemon_mark)
		return TC_ACT_OK;

	/* 1. An existing non-listening socket (daemon side of a captured flow, the ACK that completes its
	 *    handshake, or a reply to the daemon's source-preserving upstream socket, even in TIME_WAIT). */
	sk = lookup(skb, &f);
	if (sk) {
		/* A TIME_WAIT socket of the daemon gets the late packets of its own flow, but never a new SYN,
		 * and nothing between pods that are no longer captured: after a label flip they talk directly
		 * and may reuse the 4-tuple, and would otherwise stall on retransmits for up to 60 s. */
		int time_wait = sk->state == BPF_TCP_TIME_WAIT;
		int stale = time_wait && (f.new_syn || !(captured(&f.src) || captured(&f.dst)));

		if (sk->state != BPF_TCP_LISTEN && !stale)
			return assign(skb, sk, cfg, STAT_ASSIGNED_ESTABLISHED);
		bpf_sk_release(sk);
		/* A new SYN reusing the tuple of a connection the daemon closed first (a server that closes
		 * first, then a client that reuses its port): the TIME_WAIT socket is in the way of a
		 * listener's new one. Delivered without a socket, the kernel finds the TIME_WAIT socket, accepts
		 * the SYN (RFC 6191) and asks for a listener: capture_lookup gives it ours, and the old socket
		 * goes, as TPROXY's TIME_WAIT handling does. */
		if (time_wait && f.new_syn && listener_for(&f.src, &f.dst, f.dport, from_pod, cfg) >= 0) {
			deliver_locally(skb, cfg);
			count(STAT_TIME_WAIT_HANDOFF);
			return TC_ACT_OK;
		}
	}

	/* 2. Which listener, if any, a new flow belongs to. */
	kind = listener_for(&f.src, &f.dst, f.dport, from_pod, cfg);
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

	/* The daemon's listeners are dual-stack (bound to ::), so one lookup finds them for either family. */
	set_tuple_dport(&f, listen_port);
	sk = lookup(skb, &f);
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
	struct addr_key src, dst;
	struct bpf_sock *sk;
	__u32 zero = 0, ifindex, key;
	bool from_pod;
	int kind, i;

	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	if (ctx->family == AF_INET) {
		key_ipv4(&src, ctx->remote_ip4);
		key_ipv4(&dst, ctx->local_ip4);
	} else if (ctx->family == AF_INET6) {
		key_ipv6(&src, ctx->remote_ip6);
		key_ipv6(&dst, ctx->local_ip6);
	} else {
		return SK_PASS;
	}
	cfg = bpf_map_lookup_elem(&ztunnel_config, &zero);
	if (!cfg)
		return SK_PASS;
	ifindex = ctx->ingress_ifindex;
	from_pod = bpf_map_lookup_elem(&ztunnel_pod_ifaces, &ifindex) != NULL;
	kind = listener_for(&src, &dst, ctx->local_port, from_pod, cfg);
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
