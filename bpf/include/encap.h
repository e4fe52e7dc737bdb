/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* L3 encapsulation: IPIP for IPv4, IPv6-in-IPv6 for IPv6. The outer header
 * goes between the (kept) Ethernet/VLAN headers and the inner IP header.
 * The inner packet is untouched, so its checksums stay valid. */
#ifndef BATON_ENCAP_H
#define BATON_ENCAP_H

#include "parsing.h"
#include "csum.h"

#define OUTER_TTL 64

/* Grow the head by hlen bytes, move the L2 header(s) to the new start, and
 * return the room for the outer header, checked to hold it and the inner
 * header (inner_len) after it; NULL when it cannot be done. The L2 header is
 * copied piecewise so no copy overlaps (hlen >= 20 > each piece). */
static __always_inline void *push_outer(struct xdp_md *ctx, __u32 l3off, const int hlen,
					const int inner_len)
{
	void *data, *data_end, *outer;

	/* Bounded for the verifier: Ethernet plus at most two VLAN tags. */
	if (l3off > L2_MAX_LEN)
		return NULL;
	if (bpf_xdp_adjust_head(ctx, -hlen))
		return NULL;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + hlen + sizeof(struct ethhdr) > data_end)
		return NULL;
	__builtin_memcpy(data, data + hlen, sizeof(struct ethhdr));
	if (l3off >= 18) {
		if (data + hlen + 18 > data_end)
			return NULL;
		__builtin_memcpy(data + 14, data + hlen + 14, 4);
	}
	if (l3off >= 22) {
		if (data + hlen + 22 > data_end)
			return NULL;
		__builtin_memcpy(data + 18, data + hlen + 18, 4);
	}
	outer = data + l3off;
	pkt_barrier(outer);
	if (outer + hlen + inner_len > data_end)
		return NULL;
	return outer;
}

/* A flow hash for the outer IPv6 flow label, so the receiver's RSS spreads
 * encapsulated flows (RFC 6438). */
static __always_inline __u32 flow_hash(const struct baton_rule6_key *k)
{
	const __u32 *w = (const __u32 *)k;
	__u32 h = 0x811c9dc5;

#pragma unroll
	for (int i = 0; i < 9; i++)
		h = (h ^ w[i]) * 0x01000193;
	return h ^ (h >> 15);
}

static __always_inline int encap_ipip(struct xdp_md *ctx, const struct baton_fwd *fwd,
				      const struct flow *f)
{
	struct iphdr *outer, *inner;

	if (!addr_is_v4(fwd->outer_src) || !addr_is_v4(fwd->outer_dst))
		return -1;
	outer = push_outer(ctx, f->l3off, sizeof(*outer), sizeof(*inner));
	if (!outer)
		return -1;
	inner = (void *)(outer + 1);
	outer->version = 4;
	outer->ihl = 5;
	outer->tos = inner->tos;
	outer->tot_len = bpf_htons(bpf_ntohs(inner->tot_len) + sizeof(struct iphdr));
	outer->id = 0;
	/* Keep DF so path MTU discovery still works through the tunnel. */
	outer->frag_off = inner->frag_off & bpf_htons(0x4000);
	outer->ttl = OUTER_TTL;
	outer->protocol = IPPROTO_IPIP;
	outer->check = 0;
	__builtin_memcpy(&outer->saddr, fwd->outer_src + 12, 4);
	__builtin_memcpy(&outer->daddr, fwd->outer_dst + 12, 4);
	outer->check = ipv4_header_csum(outer);
	return 0;
}

static __always_inline int encap_ip6ip6(struct xdp_md *ctx, const struct baton_fwd *fwd,
					const struct flow *f)
{
	struct ipv6hdr *outer, *inner;
	__u32 label = flow_hash(&f->key) & 0xfffff;

	if (addr_is_v4(fwd->outer_src) || addr_is_v4(fwd->outer_dst))
		return -1;
	outer = push_outer(ctx, f->l3off, sizeof(*outer), sizeof(*inner));
	if (!outer)
		return -1;
	inner = (void *)(outer + 1);
	/* Version 6, the inner traffic class, our flow label. */
	*(__be32 *)outer = (*(__be32 *)inner & bpf_htonl(0x0ff00000)) |
			   bpf_htonl(0x60000000 | label);
	outer->payload_len = bpf_htons(bpf_ntohs(inner->payload_len) + sizeof(struct ipv6hdr));
	outer->nexthdr = IPPROTO_IPV6;
	outer->hop_limit = OUTER_TTL;
	__builtin_memcpy(&outer->saddr, fwd->outer_src, 16);
	__builtin_memcpy(&outer->daddr, fwd->outer_dst, 16);
	return 0;
}

/* How much of the offending datagram an answer quotes: an IPv4 header with the
 * longest options and 8 bytes after it; for IPv6 the header and 56 bytes. Fixed,
 * so that the checksums cover a known length (bpf_csum_diff wants one), and
 * always there: the datagram is at least the MTU less the outer header, and
 * the MTU at least 596 (IPv4) or 1320 (IPv6): the control plane's minimum. */
#define TOO_BIG_QUOTE4 68
#define TOO_BIG_QUOTE6 96

struct icmp_too_big {
	__u8 type;
	__u8 code;
	__sum16 csum;
	__be32 mtu; /* ICMP: 16 bits unused, then the next-hop MTU; ICMPv6: the MTU */
};

/* A packet that would not fit the tunnel's MTU once encapsulated (fwd->mtu):
 * answered in place, as a router would, with ICMP Fragmentation Needed (IPv4,
 * DF set) or ICMPv6 Packet Too Big, from the agent's tunnel address to the
 * packet's source, back out of the interface it came in on, so the sender
 * lowers its path MTU instead of losing every full-size segment. IPv4 without
 * DF could only be fragmented, which XDP cannot do, and an ICMP error is never
 * answered with another one: both are dropped. The frame is cut to the
 * quote, grown by the new headers, and its L2 header moved to the front with
 * the MACs swapped. */
static __always_inline int too_big(struct xdp_md *ctx, const struct baton_fwd *fwd,
				   const struct flow *f)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	const int hlen = f->v6 ? sizeof(struct ipv6hdr) + sizeof(struct icmp_too_big)
			       : sizeof(struct iphdr) + sizeof(struct icmp_too_big);
	const __u32 quote = f->v6 ? TOO_BIG_QUOTE6 : TOO_BIG_QUOTE4;
	__u32 l3off = f->l3off;
	struct icmp_too_big *icmp;
	struct ethhdr *eth, *old;
	__s64 sum;

	if (f->icmp_error || l3off > L2_MAX_LEN)
		return -1;
	if (!f->v6) {
		struct iphdr *ip = data + l3off;

		if ((void *)(ip + 1) > data_end || !(ip->frag_off & bpf_htons(0x4000)))
			return -1;
	}
	if (data + l3off + quote > data_end ||
	    bpf_xdp_adjust_tail(ctx, (int)(l3off + quote) - (int)(data_end - data)))
		return -1;
	if (bpf_xdp_adjust_head(ctx, -hlen))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	/* The L2 header first (it sits where the new headers go): MACs swapped. */
	eth = data;
	old = data + hlen;
	if ((void *)(old + 1) > data_end)
		return -1;
	__builtin_memcpy(eth->h_dest, old->h_source, 6);
	__builtin_memcpy(eth->h_source, old->h_dest, 6);
	eth->h_proto = old->h_proto;
	if (l3off >= 18) {
		if (data + hlen + 18 > data_end)
			return -1;
		__builtin_memcpy(data + 14, data + hlen + 14, 4);
	}
	if (l3off >= 22) {
		if (data + hlen + 22 > data_end)
			return -1;
		__builtin_memcpy(data + 18, data + hlen + 18, 4);
	}
	if (!f->v6) {
		struct iphdr *ip = data + l3off;

		pkt_barrier(ip);
		icmp = (void *)(ip + 1);
		if ((void *)icmp + sizeof(*icmp) + TOO_BIG_QUOTE4 > data_end)
			return -1;
		ip->version = 4;
		ip->ihl = 5;
		ip->tos = 0xc0; /* internetwork control, as the kernel's own ICMP */
		ip->tot_len = bpf_htons(sizeof(*ip) + sizeof(*icmp) + TOO_BIG_QUOTE4);
		ip->id = 0;
		ip->frag_off = 0;
		ip->ttl = OUTER_TTL;
		ip->protocol = IPPROTO_ICMP;
		ip->check = 0;
		__builtin_memcpy(&ip->saddr, fwd->outer_src + 12, 4);
		ip->daddr = f->saddr4;
		ip->check = ipv4_header_csum(ip);
		icmp->type = 3; /* destination unreachable */
		icmp->code = 4; /* fragmentation needed and DF set */
		icmp->csum = 0;
		icmp->mtu = bpf_htonl(fwd->mtu - sizeof(struct iphdr));
		sum = bpf_csum_diff(NULL, 0, (void *)icmp, sizeof(*icmp) + TOO_BIG_QUOTE4, 0);
	} else {
		struct ipv6hdr *ip6 = data + l3off;

		pkt_barrier(ip6);
		icmp = (void *)(ip6 + 1);
		if ((void *)icmp + sizeof(*icmp) + TOO_BIG_QUOTE6 > data_end)
			return -1;
		*(__be32 *)ip6 = bpf_htonl(0x60000000);
		ip6->payload_len = bpf_htons(sizeof(*icmp) + TOO_BIG_QUOTE6);
		ip6->nexthdr = IPPROTO_ICMPV6;
		ip6->hop_limit = OUTER_TTL;
		__builtin_memcpy(&ip6->saddr, fwd->outer_src, 16);
		__builtin_memcpy(&ip6->daddr, f->key.src, 16);
		icmp->type = 2; /* packet too big */
		icmp->code = 0;
		icmp->csum = 0;
		icmp->mtu = bpf_htonl(fwd->mtu - sizeof(struct ipv6hdr));
		sum = ipv6_pseudo_sum(fwd->outer_src, f->key.src, sizeof(*icmp) + TOO_BIG_QUOTE6, IPPROTO_ICMPV6);
		if (sum < 0)
			return -1;
		sum = bpf_csum_diff(NULL, 0, (void *)icmp, sizeof(*icmp) + TOO_BIG_QUOTE6, sum);
	}
	if (sum < 0)
		return -1;
	icmp->csum = csum_fold(sum);
	return 0;
}

#endif
