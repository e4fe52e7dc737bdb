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

#endif
