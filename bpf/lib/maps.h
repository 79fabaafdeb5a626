/* SPDX-License-Identifier: GPL-2.0 OR Apache-2.0 */
/* Maps of the capture program, with their key and value layouts.
 * Every struct here is mirrored byte for byte in src/datapath/maps.ts. */
#pragma once

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

/* Daemon settings, written once by the loader. Ports in host byte order. */
struct capture_config {
	__u16 outbound_port;	/* 15001 */
	__u16 inbound_plain_port; /* 15006 */
	__u16 hbone_port;	/* 15008 */
	__u16 pad;
	__u32 daemon_mark;	/* SO_MARK of the daemon's own sockets: never captured */
	__u32 assign_mark;	/* skb->mark set on assigned packets; routed by `ip rule fwmark` */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct capture_config);
} ztunnel_config SEC(".maps");

/* An address as the maps key it: IPv6 as is, IPv4 as IPv4-mapped (::ffff:a.b.c.d), network byte order. */
struct addr_key {
	__u32 a[4];
};

/* Workload IPs (either family) → flags. */
#define WORKLOAD_CAPTURED 0x1 /* in the mesh: its traffic goes through the daemon */

struct workload_info {
	__u32 flags;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct addr_key);
	__type(value, struct workload_info);
} ztunnel_workloads SEC(".maps");

/* The node's own addresses: traffic from pods to the node itself is not captured. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct addr_key);
	__type(value, __u32);
} ztunnel_node_ips SEC(".maps");

/* A pod's own addresses, one per family (zero: the pod has none of that family). */
struct pod_addrs {
	__u32 ip4;	/* network byte order */
	__u32 ip6[4];
};

/* Each local pod's host-side veth (ifindex) → the pod's addresses: a packet from that veth with any other
 * source (IPv6 link-local and unspecified sources aside: neighbour discovery) is a pod borrowing another's
 * address, and is dropped. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct pod_addrs);
} ztunnel_pod_ifaces SEC(".maps");

/* The daemon's transparent listeners for the sk_lookup program, by kind × slot (a worker thread each):
 * key = kind * LISTENER_SLOTS + slot. A listener that closes leaves the map by itself. */
#define LISTENER_OUTBOUND 0
#define LISTENER_HBONE 1
#define LISTENER_INBOUND_PLAIN 2
#define LISTENER_SLOTS 16

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 3 * LISTENER_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} ztunnel_listeners SEC(".maps");

/* Per-CPU counters, indexed by enum capture_stat. */
enum capture_stat {
	STAT_ASSIGNED_ESTABLISHED = 0,
	STAT_ASSIGNED_LISTENER = 1,
	STAT_DROPPED_NO_LISTENER = 2,
	STAT_PASSED = 3,
	STAT_ERRORS = 4,
	STAT_DROPPED_SPOOFED = 5,
	STAT_TIME_WAIT_HANDOFF = 6, /* a new SYN for a tuple our TIME_WAIT socket holds: to the kernel, then sk_lookup */
	STAT_LOOKUP_ASSIGNED = 7,   /* sk_lookup gave a listener lookup one of our listeners */
	STAT_DROPPED_UNPARSED = 8,  /* IPv6 to or from a captured pod whose TCP header we cannot reach (fragments, AH…) */
	STAT_MAX = 9,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} ztunnel_stats SEC(".maps");
