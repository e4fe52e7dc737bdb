/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The data plane's maps. Keys and values come from baton_abi.h. */
#ifndef BATON_MAPS_H
#define BATON_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "baton_abi.h"

/* Taken-over addresses. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BATON_MAX_TAKEOVERS);
	__type(key, struct baton_takeover_key);
	__type(value, struct baton_takeover);
} baton_takeovers SEC(".maps");

/* Session rules, one map per family. A plain HASH, never LRU: an evicted
 * transfer is a lost call. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BATON_MAX_RULES);
	__type(key, struct baton_rule4_key);
	__type(value, struct baton_rule);
} baton_rules4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BATON_MAX_RULES);
	__type(key, struct baton_rule6_key);
	__type(value, struct baton_rule);
} baton_rules6 SEC(".maps");

/* Per-rule and per-takeover counters, per CPU: no atomics on the hot path. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BATON_MAX_COUNTERS);
	__type(key, __u32);
	__type(value, struct baton_counter);
} baton_counters SEC(".maps");

/* First-fragment ports, so later fragments follow their first one. A cache:
 * losing an entry drops the rest of that datagram, never misroutes it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, BATON_MAX_FRAGMENTS);
	__type(key, struct baton_frag_key);
	__type(value, struct baton_frag_ports);
} baton_fragments SEC(".maps");

/* Egress interfaces that rules may redirect to. */
/* RTP continuity: one entry per anchored session that asks for it (baton_fwd's
 * BATON_FWD_RTP), keyed by the anchor's address and port toward the remote. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BATON_MAX_RTP);
	__type(key, struct baton_rtp_key);
	__type(value, struct baton_rtp);
} baton_rtp SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, BATON_MAX_DEVICES);
	__type(key, __u32);
	__type(value, __u32);
} baton_devices SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct baton_config);
} baton_config SEC(".maps");

/* Exact-match flow cache for IPv4 rule hits (the idea of Open vSwitch's
 * EMC): per CPU, direct-mapped by a hash of the flow. An entry is used only
 * while its generation equals baton_config's, which the control plane bumps
 * after every rule change, so it never serves a rule that changed. */
#define BATON_FLOW_CACHE_LOG2 12

struct baton_flow_entry {
	struct baton_rule4_key key;
	__u32 generation;
	__u32 pad;
	struct baton_rule rule;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1 << BATON_FLOW_CACHE_LOG2);
	__type(key, __u32);
	__type(value, struct baton_flow_entry);
} baton_flow_cache SEC(".maps");

/* Destination filter (see baton_abi.h): BATON_FILTER_WORDS x 64 bits. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BATON_FILTER_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} baton_filter SEC(".maps");

/* False when no takeover or rule can match the address whose filter bit is
 * `bit`: an inlined array read. */
static __always_inline int filter_has(__u32 bit)
{
	__u32 word = bit / 64;
	__u64 *w = bpf_map_lookup_elem(&baton_filter, &word);

	return w && (*w >> (bit % 64)) & 1;
}

/* Control plane only: which counter slots are in use, a bit each. Kept
 * beside the maps it indexes so a restarted daemon finds it pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, (BATON_MAX_COUNTERS + 63) / 64);
	__type(key, __u32);
	__type(value, __u64);
} baton_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BATON_STAT_COUNT);
	__type(key, __u32);
	__type(value, struct baton_stat);
} baton_stats SEC(".maps");

static __always_inline void stat_add(__u32 reason, __u64 bytes)
{
	struct baton_stat *s = bpf_map_lookup_elem(&baton_stats, &reason);

	if (s) {
		s->packets++;
		s->bytes += bytes;
	}
}

static __always_inline void counter_add(__u32 slot, __u64 bytes, __u8 tcp_flags)
{
	struct baton_counter *c = bpf_map_lookup_elem(&baton_counters, &slot);

	if (c) {
		c->packets++;
		c->bytes += bytes;
		/* jiffies: inlined by the verifier, unlike the ktime helpers
		 * (design.md: the precise clock costs ~75 ns a packet). */
		c->last_seen = bpf_jiffies64();
		c->tcp_flags |= tcp_flags;
	}
}

#endif
