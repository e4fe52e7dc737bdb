/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The relay rewrite of an anchored session (BATON_ACTION_RELAY): the
 * remote's packet to anchor:port leaves as anchor:relay port -> device, the
 * device's packet to anchor:relay port leaves as anchor:port -> remote.
 * Addresses and ports are replaced in place, the TTL or hop limit goes down
 * by one as a router's would, and every checksum is updated incrementally
 * (RFC 1624): the payload is never summed, so a first fragment's UDP
 * checksum (which covers the whole datagram) stays right too. A relay with
 * BATON_FWD_RTP also keeps the RTP stream toward the remote one (rtp.h).
 */
#ifndef BATON_RELAY_H
#define BATON_RELAY_H

#include <linux/types.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include "baton_abi.h"
#include "csum.h"
#include "parsing.h"

/* Where a relayed packet's L4 header may start at the latest: a bound the
 * verifier can see. The parser walks longer extension chains (up to
 * IPV6_EXT_MAX headers of up to 2 KB each); such a packet is not relayed
 * but counted relay-dropped. */
#define L4_MAX_OFF 1024

/* Adds to a checksum's one's-complement sum the change of `n` 16-bit words
 * from `from` to `to` (both in wire order: the sum does not care). */
static __always_inline __u64 csum_diff_words(__u64 sum, const __u16 *from, const __u16 *to, int n)
{
#pragma unroll
	for (int i = 0; i < 8; i++) {
		if (i >= n)
			break;
		sum += (__u16)~from[i];
		sum += to[i];
	}
	return sum;
}

/* `check` updated by a sum of changes (csum_diff_words). */
static __always_inline __u16 csum_apply(__u16 check, __u64 diff)
{
	return csum_fold(diff + (__u16)~check);
}

#include "rtp.h"

/* Rewrites the L4 ports and checksum at f->l4off for a change of addresses
 * whose checksum difference is `addr_diff`. A later fragment has no L4
 * header: only its addresses change. Returns -1 if the header is cut. */
static __always_inline int relay_l4(void *data, void *data_end, const struct flow *f,
				    const struct baton_fwd *fwd, __u64 addr_diff)
{
	__u32 l4off = f->l4off;
	__be16 ports[2] = {fwd->relay_sport, fwd->relay_dport};
	__u64 diff;

	if (f->frag == FRAG_LATER)
		return 0;
	if (l4off > L4_MAX_OFF)
		return -1;
	if (f->key.proto == IPPROTO_UDP) {
		struct udphdr *udp = data + l4off;

		if ((void *)(udp + 1) > data_end)
			return -1;
		diff = csum_diff_words(addr_diff, (const __u16 *)&udp->source, (const __u16 *)ports, 2);
		udp->source = ports[0];
		udp->dest = ports[1];
		if (fwd->flags & BATON_FWD_RTP)
			diff = rtp_keep_one(data, data_end, l4off + sizeof(*udp), f->l3end, fwd, diff);
		/* 0 over IPv4 is "no checksum" and stays so; a computed 0 is sent as
		 * all ones (RFC 768). */
		if (udp->check) {
			__u16 c = csum_apply(udp->check, diff);

			udp->check = c ? c : 0xffff;
		}
		return 0;
	}
	{
		struct tcphdr *tcp = data + l4off;

		if ((void *)(tcp + 1) > data_end)
			return -1;
		diff = csum_diff_words(addr_diff, (const __u16 *)&tcp->source, (const __u16 *)ports, 2);
		tcp->source = ports[0];
		tcp->dest = ports[1];
		tcp->check = csum_apply(tcp->check, diff);
	}
	return 0;
}

/* The rewrite. Returns 0, or -1 when the packet cannot be relayed (counted
 * by the caller as BATON_STAT_RELAY_DROP): TTL or hop limit spent, not UDP
 * or TCP, an ICMP error (its quote would need rewriting too), a possible
 * source route (IPv4 options, an IPv6 routing header: the L4 checksum covers
 * the route's last address, not the header's destination, so the update
 * would be wrong), the rule's addresses of the other family, a cut header. */
static __always_inline int relay_rewrite(struct xdp_md *ctx, const struct baton_fwd *fwd,
					 const struct flow *f)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 l3off = f->l3off;

	if (f->icmp_error || f->routed || (f->key.proto != IPPROTO_UDP && f->key.proto != IPPROTO_TCP))
		return -1;
	if (l3off > L2_MAX_LEN)
		return -1;
	if (!f->v6) {
		struct iphdr *ip = data + l3off;
		__be32 src, dst;
		__u16 old_ttl, new_ttl;
		__u64 addr_diff;

		if ((void *)(ip + 1) > data_end || ip->ttl <= 1)
			return -1;
		if (!addr_is_v4(fwd->outer_src) || !addr_is_v4(fwd->outer_dst))
			return -1;
		__builtin_memcpy(&src, fwd->outer_src + 12, 4);
		__builtin_memcpy(&dst, fwd->outer_dst + 12, 4);
		/* The L4 pseudo-header sees the addresses; the IP header sees them
		 * and the TTL (the word it shares with the protocol). */
		addr_diff = csum_diff_words(0, (const __u16 *)&ip->saddr, (const __u16 *)&src, 2);
		addr_diff = csum_diff_words(addr_diff, (const __u16 *)&ip->daddr, (const __u16 *)&dst, 2);
		if (relay_l4(data, data_end, f, fwd, addr_diff) < 0)
			return -1;
		__builtin_memcpy(&old_ttl, &ip->ttl, 2);
		ip->ttl--;
		__builtin_memcpy(&new_ttl, &ip->ttl, 2);
		ip->check = csum_apply(ip->check, csum_diff_words(addr_diff, &old_ttl, &new_ttl, 1));
		ip->saddr = src;
		ip->daddr = dst;
		return 0;
	}
	{
		struct ipv6hdr *ip6 = data + l3off;
		__u64 addr_diff;

		if ((void *)(ip6 + 1) > data_end || ip6->hop_limit <= 1)
			return -1;
		if (addr_is_v4(fwd->outer_src) || addr_is_v4(fwd->outer_dst))
			return -1;
		addr_diff = csum_diff_words(0, (const __u16 *)&ip6->saddr, (const __u16 *)fwd->outer_src, 8);
		addr_diff = csum_diff_words(addr_diff, (const __u16 *)&ip6->daddr, (const __u16 *)fwd->outer_dst, 8);
		if (relay_l4(data, data_end, f, fwd, addr_diff) < 0)
			return -1;
		ip6->hop_limit--;
		__builtin_memcpy(&ip6->saddr, fwd->outer_src, 16);
		__builtin_memcpy(&ip6->daddr, fwd->outer_dst, 16);
	}
	return 0;
}

#endif
