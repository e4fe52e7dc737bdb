// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Small XDP programs for the harness and the benchmark, not for the agent:
 *  - baton_pass: XDP_PASS; a veth only receives XDP_TX'd/redirected frames
 *    when its peer runs an XDP program (or has GRO on).
 *  - baton_macswap: the bare MAC-swap XDP_TX baseline.
 *  - baton_tx: the live-frames generator (BPF_F_TEST_XDP_LIVE_FRAMES): XDP_TX.
 *  - baton_count: counts what comes back, then XDP_DROP.
 *  - baton_gen: the live-frames generator for many flows: each frame gets the
 *    next of baton_tool_gen's flow count source address/port pairs (the
 *    benchmark's filler rules: 100.64.0.0 + i / 50000, port 10000 + i % 50000),
 *    its IPv4 checksum recomputed and no UDP checksum, then XDP_TX.
 *  - baton_floor: the bare MAC swap plus the least any per-flow state costs a
 *    frame (see the program).
 * and, for BatonBPFTests, baton_tool_percpu4: a per-CPU map with 4-byte
 * values, whose slots the kernel pads to 8 bytes each.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "csum.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} baton_tool_count SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} baton_tool_percpu4 SEC(".maps");

SEC("xdp")
int baton_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

static __always_inline void mac_swap(struct ethhdr *eth)
{
	__u8 tmp[ETH_ALEN];

	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
}

SEC("xdp")
int baton_macswap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	mac_swap(eth);
	return XDP_TX;
}

SEC("xdp")
int baton_tx(struct xdp_md *ctx)
{
	return XDP_TX;
}

/* Key 0: baton_gen's flow count (0 counts as 1). Key 1: baton_floor's slot
 * mask (a power of two less one, below baton_tool_floor's size). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} baton_tool_gen SEC(".maps");

/* Where each CPU is in baton_gen's cycle. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} baton_tool_gen_next SEC(".maps");

SEC("xdp")
int baton_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u32 zero = 0;
	__u64 *flows, *next, n, i;

	if ((void *)(udp + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5)
		return XDP_DROP;
	flows = bpf_map_lookup_elem(&baton_tool_gen, &zero);
	next = bpf_map_lookup_elem(&baton_tool_gen_next, &zero);
	if (!flows || !next)
		return XDP_DROP;
	n = *flows ? *flows : 1;
	i = *next % n;
	*next = i + 1;
	ip->saddr = bpf_htonl(0x64400000 + (__u32)i / 50000);
	ip->check = 0;
	ip->check = ipv4_header_csum(ip);
	udp->source = bpf_htons(10000 + (__u32)i % 50000);
	udp->check = 0;
	return XDP_TX;
}

/* baton_floor's per-flow state: 16 bytes a slot, less than any rule takes
 * (an IPv4 5-tuple alone is 13), four to a cache line. One slot here; the
 * benchmark sizes the array before load (ToolPrograms(floorSlots:)). */
struct baton_tool_slot {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct baton_tool_slot);
} baton_tool_floor SEC(".maps");

/*
 * baton_floor: the MAC swap, plus one read-modify-write of the 16-byte slot
 * that a hash of the frame's flow (IPv4 source address, UDP source port)
 * picks in a flat array: no key compared, no pointer followed, no second
 * line. A data plane that keeps anything per flow (a rule, a counter) touches
 * at least that much per frame, so what this costs against baton_macswap
 * bounds every many-flows ratio from above on the machine measured. For the
 * benchmark's frames (baton_gen's: Ethernet, IPv4 without options, UDP).
 */
SEC("xdp")
int baton_floor(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	struct baton_tool_slot *slot;
	__u32 one = 1, idx;
	__u64 *mask, h;

	if ((void *)(udp + 1) > data_end)
		return XDP_DROP;
	mask = bpf_map_lookup_elem(&baton_tool_gen, &one);
	if (!mask)
		return XDP_DROP;
	/* A full mix (murmur3's finalizer), as the kernel's jhash is: a
	 * multiplicative hash of the generator's consecutive flows would step
	 * through the table at a constant stride, which the CPU prefetches. */
	h = (__u64)ip->saddr << 16 | udp->source;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	idx = (__u32)h & (__u32)*mask;
	slot = bpf_map_lookup_elem(&baton_tool_floor, &idx);
	if (!slot)
		return XDP_DROP;
	slot->packets++;
	slot->bytes += data_end - data;
	mac_swap(eth);
	return XDP_TX;
}

SEC("xdp")
int baton_count(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&baton_tool_count, &zero);

	if (n)
		*n += 1;
	return XDP_DROP;
}
