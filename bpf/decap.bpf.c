// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * baton_decap: the L3 mode's receiving side (the target, or the TN).
 *
 * The agent's encap action sends IPv4 in IPv4 (protocol 4) or IPv6 in IPv6
 * (next header 41). Kernels without ipip/ip6tnl devices cannot take those
 * apart, so this program does, before any socket buffer exists: it removes
 * the outer header and passes the inner packet up the stack as if it had
 * arrived directly. Only packets whose inner destination is in
 * baton_decap_accept are decapsulated, and, when the entry names an agent,
 * only if the outer source is that agent. Everything else is passed
 * unchanged: this program never drops, the stack decides.
 *
 * Frames: Ethernet with up to two VLAN tags (parsing.h), outer IPv4 (options
 * allowed, header checksum verified, no fragments) or IPv6 without extension
 * headers. docs/dataplane.md, "Decapsulation", has the rules.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "baton_abi.h"
#include "parsing.h"
#include "csum.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Inner destinations this host serves → the agent allowed to send them. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BATON_MAX_DECAP);
	__type(key, struct baton_decap_key);
	__type(value, struct baton_decap);
} baton_decap_accept SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BATON_DECAP_STAT_COUNT);
	__type(key, __u32);
	__type(value, struct baton_stat);
} baton_decap_stats SEC(".maps");

static __always_inline int verdict(__u32 reason, __u64 bytes, int action)
{
	struct baton_stat *s = bpf_map_lookup_elem(&baton_decap_stats, &reason);

	if (s) {
		s->packets++;
		s->bytes += bytes;
	}
	return action;
}

#define PASS(reason) verdict(BATON_DECAP_STAT_##reason, bytes, XDP_PASS)

/* Header checksum of an IPv4 header of ihl 32-bit words (5-15), which must
 * lie inside the packet. 0 when it is right. */
static __always_inline __u16 ipv4_csum_check(const struct iphdr *ip, void *data_end, __u32 ihl)
{
	const __u32 *w = (const __u32 *)ip;
	__u64 sum = 0;
	int cut = 0;

#pragma unroll
	for (int i = 0; i < 15; i++) {
		if (i < ihl) {
			if ((void *)(w + i + 1) > data_end)
				cut = 1;
			else
				sum += w[i];
		}
	}
	return cut ? 1 : csum_fold(sum);
}

/* Moves the Ethernet/VLAN header (l3off bytes) forward over the outer header
 * (hlen bytes) and drops the bytes in front. The L2 header goes through the
 * stack so a failed adjust leaves the frame untouched. Returns 0 or -1. */
static __always_inline int strip_outer(struct xdp_md *ctx, __u32 l3off, __u32 hlen)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u8 l2[L2_MAX_LEN];

	if (data + L2_MAX_LEN > data_end) /* always true here: outer and inner follow */
		return -1;
	__builtin_memcpy(l2, data, L2_MAX_LEN);
	if (bpf_xdp_adjust_head(ctx, hlen))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	/* The inner header (>= 20 bytes) is behind l3off, so the L2 fits. */
	if (data + sizeof(struct ethhdr) > data_end)
		return -1;
	__builtin_memcpy(data, l2, sizeof(struct ethhdr));
	if (l3off >= 18) {
		if (data + 18 > data_end)
			return -1;
		__builtin_memcpy(data + 14, l2 + 14, 4);
	}
	if (l3off >= 22) {
		if (data + 22 > data_end)
			return -1;
		__builtin_memcpy(data + 18, l2 + 18, 4);
	}
	return 0;
}

SEC("xdp")
int baton_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 bytes = data_end - data;
	struct baton_decap_key key;
	struct baton_decap *acc;
	__u8 outer_src[BATON_ADDR_LEN] __attribute__((aligned(8)));
	__u32 l3off, hlen;
	__be16 proto;

	if (parse_eth(data, data_end, &proto, &l3off) < 0)
		return PASS(MALFORMED);
	if (l3off > L2_MAX_LEN)
		return PASS(MALFORMED);

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + l3off, *in;
		__u32 tot, itot, ihlen;

		if ((void *)(ip + 1) > data_end)
			return PASS(MALFORMED);
		if (ip->protocol != IPPROTO_IPIP)
			return PASS(NOT_TUNNEL);
		hlen = ip->ihl * 4;
		tot = bpf_ntohs(ip->tot_len);
		if (ip->version != 4 || hlen < sizeof(*ip) || tot < hlen + sizeof(*in) ||
		    data + l3off + tot > data_end)
			return PASS(MALFORMED);
		/* A fragment holds part of an inner packet: only reassembly
		 * (the stack) could take it apart. */
		if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
			return PASS(FRAGMENT);
		if (ipv4_csum_check(ip, data_end, ip->ihl))
			return PASS(MALFORMED);
		in = data + l3off + hlen;
		pkt_barrier(in);
		if ((void *)(in + 1) > data_end)
			return PASS(MALFORMED);
		ihlen = in->ihl * 4;
		itot = bpf_ntohs(in->tot_len);
		if (in->version != 4 || ihlen < sizeof(*in) || itot < ihlen || itot > tot - hlen)
			return PASS(MALFORMED);
		addr_set_v4(key.addr, in->daddr);
		addr_set_v4(outer_src, ip->saddr);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + l3off, *in;
		__u32 plen;

		if ((void *)(ip6 + 1) > data_end)
			return PASS(MALFORMED);
		/* Outer extension headers are not walked: such a packet is not ours. */
		if (ip6->nexthdr != IPPROTO_IPV6)
			return PASS(NOT_TUNNEL);
		hlen = sizeof(*ip6);
		plen = bpf_ntohs(ip6->payload_len);
		if (ip6->version != 6 || plen < sizeof(*in) || data + l3off + hlen + plen > data_end)
			return PASS(MALFORMED);
		in = (void *)(ip6 + 1);
		if ((void *)(in + 1) > data_end)
			return PASS(MALFORMED);
		if (in->version != 6 || bpf_ntohs(in->payload_len) + sizeof(*in) > plen)
			return PASS(MALFORMED);
		__builtin_memcpy(key.addr, &in->daddr, BATON_ADDR_LEN);
		__builtin_memcpy(outer_src, &ip6->saddr, BATON_ADDR_LEN);
		/* An IPv6 packet to an IPv4-mapped address never matches an IPv4
		 * entry (as in baton_steer). */
		if (addr_is_v4(key.addr))
			return PASS(NOT_ACCEPTED);
	} else {
		return PASS(NOT_TUNNEL);
	}

	acc = bpf_map_lookup_elem(&baton_decap_accept, &key);
	if (!acc)
		return PASS(NOT_ACCEPTED);
	{
		const __u64 *a = (const __u64 *)acc->agent, *s = (const __u64 *)outer_src;

		if ((a[0] | a[1]) && (a[0] != s[0] || a[1] != s[1]))
			return PASS(NOT_ACCEPTED);
	}
	if (strip_outer(ctx, l3off, hlen) < 0)
		return PASS(MALFORMED); /* not reached: the lengths were checked */
	return PASS(DONE);
}
