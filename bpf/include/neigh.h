/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* ARP and IPv6 neighbour discovery answers for taken-over addresses.
 * Answered in XDP so that they are as fast as the steering itself, are never
 * delayed like kernel proxy ARP (proxy_delay, up to 0.8 s), and keep being
 * answered while the daemon restarts. Announcements (gratuitous ARP,
 * unsolicited NA) are the control plane's. */
#ifndef BATON_NEIGH_H
#define BATON_NEIGH_H

#include "parsing.h"
#include "csum.h"
#include "maps.h"

#define ARPHRD_ETHER_BE bpf_htons(1)
#define ARPOP_REQUEST_BE bpf_htons(1)
#define ARPOP_REPLY_BE bpf_htons(2)

struct arp_ipv4 {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[6];
	__u8 spa[4];
	__u8 tha[6];
	__u8 tpa[4];
};

#define ND_NEIGHBOR_SOLICIT 135
#define ND_NEIGHBOR_ADVERT 136
#define ND_OPT_TARGET_LL_ADDR 2
#define NA_FLAG_ROUTER    0x80000000
#define NA_FLAG_SOLICITED 0x40000000
#define NA_FLAG_OVERRIDE  0x20000000

struct nd_msg {
	__u8 type;
	__u8 code;
	__be16 csum;
	__be32 flags;
	__u8 target[16];
};

struct nd_opt_lladdr {
	__u8 type;
	__u8 len; /* in units of 8 bytes */
	__u8 mac[6];
};

struct na_frame {
	struct ipv6hdr ip6;
	struct nd_msg na;
	struct nd_opt_lladdr opt;
};

static __always_inline struct baton_takeover *answering_takeover(const __u8 *addr)
{
	struct baton_takeover *t = bpf_map_lookup_elem(&baton_takeovers, addr);

	return t && (t->flags & BATON_TAKEOVER_ANSWER) ? t : NULL;
}

/* An ARP request for a taken-over address becomes our reply, sent back out. */
static __always_inline int answer_arp(struct xdp_md *ctx, __u32 l3off)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct arp_ipv4 *arp = data + l3off;
	struct baton_takeover_key k;
	struct baton_takeover *t;
	__be32 spa, tpa;

	if ((void *)(arp + 1) > data_end) {
		stat_add(BATON_STAT_MALFORMED_PASS, data_end - data);
		return XDP_PASS;
	}
	if (arp->htype != ARPHRD_ETHER_BE || arp->ptype != bpf_htons(ETH_P_IP) ||
	    arp->hlen != 6 || arp->plen != 4 || arp->op != ARPOP_REQUEST_BE)
		goto pass;
	__builtin_memcpy(&spa, arp->spa, 4);
	__builtin_memcpy(&tpa, arp->tpa, 4);
	/* A gratuitous request announces the sender's own address: not a question. */
	if (spa == tpa)
		goto pass;
	addr_set_v4(k.addr, tpa);
	t = answering_takeover(k.addr);
	if (!t)
		goto pass;

	arp->op = ARPOP_REPLY_BE;
	__builtin_memcpy(arp->tha, arp->sha, 6);
	__builtin_memcpy(arp->tpa, &spa, 4);
	__builtin_memcpy(arp->sha, t->agent_mac, 6);
	__builtin_memcpy(arp->spa, &tpa, 4);
	__builtin_memcpy(eth->h_dest, arp->tha, 6);
	__builtin_memcpy(eth->h_source, t->agent_mac, 6);
	stat_add(BATON_STAT_ARP_REPLY, data_end - data);
	return XDP_TX;
pass:
	stat_add(BATON_STAT_NOT_TAKEN_OVER, data_end - data);
	return XDP_PASS;
}

/* A neighbour solicitation for a taken-over address becomes our
 * advertisement (RFC 4861 7.2.4). Returns a verdict, or -1 when the packet
 * is not such a solicitation (it is then untouched). */
static __always_inline int answer_ns(struct xdp_md *ctx, __u32 l3off)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6 = data + l3off;
	struct nd_msg *ns = (void *)(ip6 + 1);
	struct baton_takeover *t;
	struct na_frame *na;
	__u8 peer_mac[6], agent_mac[6];
	struct in6_addr peer, target;
	__u32 flags, sum;
	int dad, delta;

	if ((void *)(ns + 1) > data_end || ns->type != ND_NEIGHBOR_SOLICIT || ns->code != 0 ||
	    ip6->hop_limit != 255 || bpf_ntohs(ip6->payload_len) < sizeof(*ns) ||
	    (void *)ns + bpf_ntohs(ip6->payload_len) > data_end)
		return -1; /* not a whole solicitation: not ours to answer */
	__builtin_memcpy(&target, ns->target, 16);
	t = answering_takeover((const __u8 *)&target);
	if (!t)
		return -1;

	__builtin_memcpy(&peer, &ip6->saddr, 16);
	__builtin_memcpy(peer_mac, eth->h_source, 6);
	__builtin_memcpy(agent_mac, t->agent_mac, 6);
	/* From the unspecified address it is duplicate address detection: the
	 * answer goes to all nodes and is not "solicited". */
	dad = peer.in6_u.u6_addr32[0] == 0 && peer.in6_u.u6_addr32[1] == 0 &&
	      peer.in6_u.u6_addr32[2] == 0 && peer.in6_u.u6_addr32[3] == 0;
	flags = NA_FLAG_OVERRIDE | (dad ? 0 : NA_FLAG_SOLICITED) |
		((t->flags & BATON_TAKEOVER_ROUTER) ? NA_FLAG_ROUTER : 0);

	delta = (int)(l3off + sizeof(struct na_frame)) - (int)(data_end - data);
	if (delta && bpf_xdp_adjust_tail(ctx, delta)) {
		stat_add(BATON_STAT_MALFORMED_PASS, data_end - data);
		return XDP_PASS;
	}
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	na = data + l3off;
	if ((void *)(na + 1) > data_end)
		return XDP_DROP;

	if (dad) {
		__u8 all_nodes_mac[6] = {0x33, 0x33, 0, 0, 0, 1};

		__builtin_memcpy(eth->h_dest, all_nodes_mac, 6);
		__builtin_memset(&peer, 0, sizeof(peer));
		peer.in6_u.u6_addr8[0] = 0xff;
		peer.in6_u.u6_addr8[1] = 0x02;
		peer.in6_u.u6_addr8[15] = 0x01;
	} else {
		__builtin_memcpy(eth->h_dest, peer_mac, 6);
	}
	__builtin_memcpy(eth->h_source, agent_mac, 6);

	*(__be32 *)&na->ip6 = bpf_htonl(0x60000000);
	na->ip6.payload_len = bpf_htons(sizeof(struct nd_msg) + sizeof(struct nd_opt_lladdr));
	na->ip6.nexthdr = IPPROTO_ICMPV6;
	na->ip6.hop_limit = 255;
	__builtin_memcpy(&na->ip6.saddr, &target, 16);
	__builtin_memcpy(&na->ip6.daddr, &peer, 16);
	na->na.type = ND_NEIGHBOR_ADVERT;
	na->na.code = 0;
	na->na.csum = 0;
	na->na.flags = bpf_htonl(flags);
	__builtin_memcpy(na->na.target, &target, 16);
	na->opt.type = ND_OPT_TARGET_LL_ADDR;
	na->opt.len = 1;
	__builtin_memcpy(na->opt.mac, agent_mac, 6);

	sum = ipv6_pseudo_sum(&target, &peer, sizeof(struct nd_msg) + sizeof(struct nd_opt_lladdr),
			      IPPROTO_ICMPV6);
	sum = bpf_csum_diff(NULL, 0, (__be32 *)&na->na,
			    sizeof(struct nd_msg) + sizeof(struct nd_opt_lladdr), sum);
	na->na.csum = csum_fold(sum);
	stat_add(BATON_STAT_NA_REPLY, data_end - data);
	return XDP_TX;
}

#endif
