// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * baton_steer: the session agent's XDP program.
 *
 * For each packet: parse; if no takeover or rule can match its destination
 * (the filter), XDP_PASS. Else the most specific session rule decides (to the
 * target: L2 rewrite or IPIP/IPv6-in-IPv6), else the takeover's default (the
 * TN through its temporary address), else XDP_PASS. A relay rule (anchored
 * session) rewrites the packet's addresses and ports before it leaves. Malformed packets for a
 * taken-over address are dropped, never steered. ARP requests and neighbour solicitations for
 * taken-over addresses are answered here. docs/dataplane.md has the rules.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "baton_abi.h"
#include "parsing.h"
#include "maps.h"
#include "encap.h"
#include "neigh.h"
#include "relay.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline int verdict(__u32 reason, __u64 bytes, int action)
{
	stat_add(reason, bytes);
	return action;
}

static __always_inline struct baton_config *config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&baton_config, &zero);
}

/* Which wildcard kinds have rules (all, until the control plane says). */
static __always_inline __u32 match_kinds(const struct baton_config *cfg)
{
	if (cfg && (cfg->match_kinds & BATON_CONFIG_VALID))
		return cfg->match_kinds;
	return (1u << BATON_MATCH_KINDS) - 1;
}

/* The exact lookup, then each wildcard kind in use, most specific first;
 * `clear_src` zeroes the key's source; `cfg` is baton_config, read once per
 * packet by the caller. A statement macro because the IPv4
 * and IPv6 keys are different types. An exact hit touches nothing else. */
#define CLASSIFY(map, k, clear_src, cfg)                                               \
	({                                                                         \
		struct baton_rule *r_ = bpf_map_lookup_elem(&(map), &(k));         \
		if (!r_) {                                                         \
			__u32 kinds_ = match_kinds(cfg);                              \
			(k).sport = 0;                                             \
			if (kinds_ & (1u << BATON_MATCH_ANY_SPORT)) {              \
				(k).match = BATON_MATCH_ANY_SPORT;                 \
				r_ = bpf_map_lookup_elem(&(map), &(k));            \
			}                                                          \
			clear_src;                                                 \
			if (!r_ && (kinds_ & (1u << BATON_MATCH_ANY_SRC))) {       \
				(k).match = BATON_MATCH_ANY_SRC;                   \
				r_ = bpf_map_lookup_elem(&(map), &(k));            \
			}                                                          \
			(k).dport = 0;                                             \
			if (!r_ && (kinds_ & (1u << BATON_MATCH_ANY_PEER))) {      \
				(k).match = BATON_MATCH_ANY_PEER;                  \
				r_ = bpf_map_lookup_elem(&(map), &(k));            \
			}                                                          \
		}                                                                  \
		r_;                                                                \
	})

/* The most specific rule for the flow, or NULL. The flow is left intact. */
static __always_inline struct baton_rule *classify(const struct flow *f)
{
	if (!f->v6) {
		struct baton_rule4_key k = {
			.sport = f->key.sport,
			.dport = f->key.dport,
			.proto = f->key.proto,
		};

		struct baton_config *cfg = config();
		struct baton_flow_entry *e = NULL;
		struct baton_rule *r;
		__u32 gen = cfg ? cfg->generation : 0;
		__u32 idx;

		k.src = f->saddr4;
		k.dst = f->daddr4;
		if (gen) {
			const __u64 *w = (const __u64 *)&k;

			idx = (__u32)((w[0] ^ (w[1] * 0x9e3779b97f4a7c15ULL)) * 0xff51afd7ed558ccdULL >> 32);
			idx &= (1u << BATON_FLOW_CACHE_LOG2) - 1;
			e = bpf_map_lookup_elem(&baton_flow_cache, &idx);
			if (e && e->generation == gen) {
				const __u64 *c = (const __u64 *)&e->key;

				if (c[0] == w[0] && c[1] == w[1])
					return &e->rule;
			}
		}
		{
			struct baton_rule4_key orig = k;

			r = CLASSIFY(baton_rules4, k, k.src = 0, cfg);
			if (r && e) {
				e->key = orig;
				e->generation = gen;
				e->rule = *r;
			}
		}
		return r;
	} else {
		struct baton_rule6_key k = f->key;

		return CLASSIFY(baton_rules6, k, __builtin_memset(k.src, 0, sizeof(k.src)), config());
	}
}

static __always_inline int same_mac(const __u8 *a, const __u8 *b)
{
	__u8 diff = 0;

#pragma unroll
	for (int i = 0; i < 6; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

/* Send the packet where fwd says. Packet pointers are reloaded: encap moves them. */
static __always_inline int forward(struct xdp_md *ctx, const struct baton_fwd *fwd,
				   const struct flow *f)
{
	void *data, *data_end;
	struct ethhdr *eth;
	int ret;

	/* Never out to our own MAC: a rule naming the agent as the next hop would
	 * bounce the frame between the agent and the segment. (The agent refuses such
	 * registrations; this holds for rules written by hand too.) */
	if ((fwd->action == BATON_ACTION_L2 || fwd->action == BATON_ACTION_ENCAP ||
	     fwd->action == BATON_ACTION_RELAY) &&
	    same_mac(fwd->dst_mac, fwd->src_mac))
		return verdict(BATON_STAT_LOOP_DROP, 0, XDP_DROP);
	switch (fwd->action) {
	case BATON_ACTION_PASS:
		return XDP_PASS;
	case BATON_ACTION_L2:
		break;
	case BATON_ACTION_RELAY:
		if (relay_rewrite(ctx, fwd, f) < 0)
			return verdict(BATON_STAT_RELAY_DROP, 0, XDP_DROP);
		break;
	case BATON_ACTION_ENCAP:
		if (fwd->mtu && f->l3end - f->l3off + (f->v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr)) > fwd->mtu) {
			if (too_big(ctx, fwd, f) < 0)
				return verdict(BATON_STAT_TOO_BIG, 0, XDP_DROP);
			return verdict(BATON_STAT_TOO_BIG, 0, XDP_TX);
		}
		if ((f->v6 ? encap_ip6ip6(ctx, fwd, f) : encap_ipip(ctx, fwd, f)) < 0)
			return verdict(BATON_STAT_ENCAP_FAIL, 0, XDP_DROP);
		break;
	default: /* BATON_ACTION_DROP, and anything unknown */
		return XDP_DROP;
	}
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	__builtin_memcpy(eth->h_dest, fwd->dst_mac, 6);
	__builtin_memcpy(eth->h_source, fwd->src_mac, 6);
	if (fwd->ifindex == 0 || fwd->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	ret = bpf_redirect_map(&baton_devices, fwd->ifindex, XDP_DROP);
	if (ret != XDP_REDIRECT)
		stat_add(BATON_STAT_REDIRECT_FAIL, 0);
	return ret;
}

/* A datagram that could not be read whole: dropped when its destination is
 * taken over (a cut header could name the wrong session), else left to the
 * stack, which owns it. */
static __always_inline int malformed(struct flow *f, __u64 bytes)
{
	flow_addr16(f);
	if (bpf_map_lookup_elem(&baton_takeovers, f->key.dst))
		return verdict(BATON_STAT_MALFORMED_DROP, bytes, XDP_DROP);
	return verdict(BATON_STAT_NOT_TAKEN_OVER, bytes, XDP_PASS);
}

/* A parsed packet whose destination passed the filter: its rule, else its
 * takeover's default, else the stack. Rules are looked up first so that a
 * transferred session's packet costs one hash lookup. */
static __always_inline int steer(struct xdp_md *ctx, struct flow *f, __u64 bytes)
{
	struct baton_frag_key fk;
	const struct baton_fwd *fwd;
	struct baton_takeover *t;
	struct baton_rule *rule;
	__u32 slot;

	if (f->frag != FRAG_NONE) {
		flow_addr16(f);
		__builtin_memcpy(fk.src, f->key.src, 16);
		__builtin_memcpy(fk.dst, f->key.dst, 16);
		fk.id = f->frag_id;
		fk.proto = f->frag_proto;
		fk.pad[0] = fk.pad[1] = fk.pad[2] = 0;
	}
	if (f->frag == FRAG_LATER) {
		/* No ports here: follow the first fragment, or go nowhere. */
		struct baton_frag_ports *fp = bpf_map_lookup_elem(&baton_fragments, &fk);

		if (!fp) {
			if (bpf_map_lookup_elem(&baton_takeovers, f->key.dst))
				return verdict(BATON_STAT_FRAG_UNKNOWN, bytes, XDP_DROP);
			return verdict(BATON_STAT_NOT_TAKEN_OVER, bytes, XDP_PASS);
		}
		f->key.sport = fp->sport;
		f->key.dport = fp->dport;
		f->key.proto = fp->proto;
	}

	rule = classify(f);
	/* A lockout past its time is as if absent (the control plane removes it later).
	 * The precise clock, read only for drop rules that expire. */
	if (rule && rule->fwd.action == BATON_ACTION_DROP && rule->fwd.expires &&
	    bpf_ktime_get_ns() >= rule->fwd.expires)
		rule = NULL;
	if (rule) {
		fwd = &rule->fwd;
		slot = rule->counter;
	} else {
		flow_addr16(f);
		t = bpf_map_lookup_elem(&baton_takeovers, f->key.dst);
		if (!t)
			return verdict(BATON_STAT_NOT_TAKEN_OVER, bytes, XDP_PASS);
		/* A tunnelled packet for a taken-over address is never tunnelled again:
		 * it may be one of ours come back (a temporary address that routes to
		 * another takeover), and steering it would loop through the router. */
		if (f->key.proto == IPPROTO_IPIP || f->key.proto == IPPROTO_IPV6)
			return verdict(BATON_STAT_LOOP_DROP, bytes, XDP_DROP);
		fwd = &t->fwd;
		slot = t->counter;
	}
	if (f->frag == FRAG_FIRST) {
		struct baton_frag_ports ports = {
			.sport = f->key.sport,
			.dport = f->key.dport,
			.proto = f->key.proto,
		};

		bpf_map_update_elem(&baton_fragments, &fk, &ports, BPF_ANY);
	}
	/* The hit is counted here only: rule-hit and default-hit statistics are
	 * summed from these counters by the control plane. */
	counter_add(slot, bytes, f->tcp_flags);
	return forward(ctx, fwd, f);
}

SEC("xdp")
int baton_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 bytes = data_end - data;
	struct flow f = {};
	__be16 proto;

	if (parse_eth(data, data_end, &proto, &f.l3off))
		return verdict(BATON_STAT_MALFORMED_PASS, bytes, XDP_PASS);
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = ipv4_header(data, data_end, f.l3off);

		if (!ip)
			return verdict(BATON_STAT_MALFORMED_PASS, bytes, XDP_PASS);
		f.daddr4 = ip->daddr;
		if (!filter_has(baton_filter_bit_v4(ip->daddr)))
			return verdict(BATON_STAT_NOT_TAKEN_OVER, bytes, XDP_PASS);
		if (parse_ipv4_rest(data, data_end, ip, &f))
			return malformed(&f, bytes);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + f.l3off;

		if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
			return verdict(BATON_STAT_MALFORMED_PASS, bytes, XDP_PASS);
		if (ip6->nexthdr == IPPROTO_ICMPV6) {
			int v = answer_ns(ctx, f.l3off);

			if (v >= 0)
				return v;
			data = (void *)(long)ctx->data;
			data_end = (void *)(long)ctx->data_end;
			ip6 = data + f.l3off;
			if ((void *)(ip6 + 1) > data_end)
				return XDP_PASS;
		}
		__builtin_memcpy(f.key.dst, &ip6->daddr, 16);
		/* An IPv4-mapped destination on the wire is bogus; it must not
		 * match an IPv4 takeover or rule. */
		if (addr_is_v4(f.key.dst) || !filter_has(baton_filter_bit(f.key.dst)))
			return verdict(BATON_STAT_NOT_TAKEN_OVER, bytes, XDP_PASS);
		f.v6 = 1;
		if (parse_ipv6_rest(data, data_end, ip6, &f))
			return malformed(&f, bytes);
	} else if (proto == bpf_htons(ETH_P_ARP)) {
		return answer_arp(ctx, f.l3off);
	} else {
		return verdict(BATON_STAT_NOT_IP, bytes, XDP_PASS);
	}
	return steer(ctx, &f, bytes);
}

/* The kernel's clocks at one instant, written over the test-run packet:
 * lets the control plane turn bpf_jiffies64() last-seen stamps into time. */
SEC("xdp")
int baton_clock(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 *out = data;

	if ((void *)(out + 3) > data_end)
		return XDP_ABORTED;
	out[0] = bpf_jiffies64();
	out[1] = bpf_ktime_get_ns();
	out[2] = bpf_ktime_get_coarse_ns();
	return XDP_PASS;
}
