/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Baton data-plane ABI: the one definition of every map key and value,
 * included by the XDP programs in bpf/ and imported into Swift through the
 * CBatonABI target. Change a struct here and both sides change together; the
 * loader also checks each size against bpf_map__key_size/value_size.
 *
 * Conventions
 *  - Addresses are 16 bytes. IPv4 is stored IPv4-mapped (::ffff:a.b.c.d), so
 *    one map serves both families and a v4 key can never equal a v6 key.
 *  - Ports and other wire fields stay in network byte order.
 *  - Every struct has explicit padding, so C and Swift agree on layout and a
 *    zeroed key hashes the same on both sides.
 */
#ifndef BATON_ABI_H
#define BATON_ABI_H

#include <linux/types.h>
#include <linux/bpf.h> /* struct bpf_spin_lock */

#define BATON_ADDR_LEN 16
#define BATON_MAC_LEN 6

/* What a rule or a takeover's default does with a packet. */
#define BATON_ACTION_PASS  0 /* up the normal stack */
#define BATON_ACTION_DROP  1 /* dropped (lockouts) */
#define BATON_ACTION_L2    2 /* rewrite MACs; XDP_TX, or redirect when ifindex != 0 */
#define BATON_ACTION_ENCAP 3 /* IPIP (IPv4) or IPv6-in-IPv6 (IPv6) to outer_dst, then as L2 */
#define BATON_ACTION_RELAY 4 /* anchored session: the packet's source becomes outer_src:relay_sport
			      * and its destination outer_dst:relay_dport (UDP, TCP), TTL / hop
			      * limit one less, checksums updated; then as L2. Rules only. */
#define BATON_ACTION_MAX   4

/* baton_fwd.flags */
#define BATON_FWD_RTP 0x01 /* RELAY: an RTP stream toward the remote, kept one (RTP continuity):
			    * SSRC, sequence and timestamp rewritten by the baton_rtp entry of
			    * (outer_src, relay_sport) */

/*
 * Rule match kinds, in precedence order: the first kind that has an entry for
 * a packet decides. A wildcarded field is zero in the key, and the kind itself
 * is part of the key, so "any source port" never collides with an exact rule
 * for source port 0.
 */
#define BATON_MATCH_EXACT     0 /* source address+port, destination address+port, protocol */
#define BATON_MATCH_ANY_SPORT 1 /* any source port */
#define BATON_MATCH_ANY_SRC   2 /* any source address and port */
#define BATON_MATCH_ANY_PEER  3 /* any source address and port, any destination port */
#define BATON_MATCH_KINDS     4

/*
 * The destination filter: one bit per hash of an address, set for every
 * address that has a takeover or a rule. A packet whose destination's bit is
 * clear cannot be ours and is passed without a single hash-map lookup; a set
 * bit only means "look it up" (bits are shared, and cleared only by a rebuild).
 * The hash is defined here, once, for the program and the control plane.
 */
#define BATON_FILTER_LOG2  16
#define BATON_FILTER_WORDS ((1U << BATON_FILTER_LOG2) / 64)

static inline __u32 baton_filter_bit(const __u8 *addr)
{
	__u32 w[4];

	__builtin_memcpy(w, addr, sizeof(w));
	return ((w[0] ^ w[1] ^ w[2] ^ w[3]) * 0x9e3779b1U) >> (32 - BATON_FILTER_LOG2);
}

/* The same bit for an IPv4 address, without building its mapped form:
 * its first two words are zero and the third is the ::ffff: marker. */
static inline __u32 baton_filter_bit_v4(__be32 addr)
{
	const __u8 marker[4] = {0, 0, 0xff, 0xff};
	__u32 w2;

	__builtin_memcpy(&w2, marker, sizeof(w2));
	return ((w2 ^ addr) * 0x9e3779b1U) >> (32 - BATON_FILTER_LOG2);
}

/* Takeover flags. */
#define BATON_TAKEOVER_ANSWER 0x1 /* answer ARP requests / neighbour solicitations in XDP */
#define BATON_TAKEOVER_ROUTER 0x2 /* set the Router flag in neighbour advertisements */

/* Map capacities the object is built with; the loader may shrink or grow
 * rules and counters before load (counters = rules + takeovers). */
#define BATON_MAX_TAKEOVERS 4096
#define BATON_MAX_RULES     (1U << 20) /* per family */
#define BATON_MAX_COUNTERS  (BATON_MAX_RULES + BATON_MAX_TAKEOVERS)
#define BATON_MAX_FRAGMENTS 8192
#define BATON_MAX_DEVICES   256
#define BATON_MAX_RTP       65536 /* anchored sessions with RTP continuity */

/* Where a packet goes. Shared by rules and by a takeover's default. */
struct baton_fwd {
	__u8 dst_mac[BATON_MAC_LEN];      /* next hop: target, TN, or router (ENCAP) */
	__u8 src_mac[BATON_MAC_LEN];      /* the agent's MAC on the egress interface */
	__u32 ifindex;                    /* egress; 0 = back out of the ingress interface */
	__u8 action;                      /* BATON_ACTION_* */
	__u8 flags;                       /* BATON_FWD_* */
	__u16 mtu;                        /* ENCAP: the egress MTU; a packet that would not fit
					   * with the outer header is answered with ICMP
					   * Fragmentation Needed / Packet Too Big. 0: not checked */
	__u8 outer_src[BATON_ADDR_LEN];   /* ENCAP: the agent's address. RELAY: the new source
					   * (the anchor address) */
	__u8 outer_dst[BATON_ADDR_LEN];   /* ENCAP: target's address, or the TN's temporary address.
					   * RELAY: the new destination (a device, or the remote) */
	__be16 relay_sport;               /* RELAY: the new source port (a relay port, or the
					   * anchor's port toward the remote) */
	__be16 relay_dport;               /* RELAY: the new destination port */
	__u64 expires;                    /* DROP in a rule (a lockout): bpf_ktime_get_ns() from
					   * which the rule is as if absent; 0 = never */
};

/* Key of baton_takeovers: a taken-over address. */
struct baton_takeover_key {
	__u8 addr[BATON_ADDR_LEN];
};

/* Value of baton_takeovers. */
struct baton_takeover {
	struct baton_fwd fwd;             /* default: the TN through its temporary address */
	__u8 agent_mac[BATON_MAC_LEN];    /* MAC that ARP/NDP answers carry */
	__u8 flags;                       /* BATON_TAKEOVER_* */
	__u8 pad;
	__u32 counter;                    /* slot in baton_counters for the default path */
	__u8 temporary[BATON_ADDR_LEN];   /* the TN's temporary address (zero: not given);
					   * the encap default tunnels to it */
	__u32 pad2;
};

/* Key of baton_rules4: IPv4 rules. 16 bytes rather than 40, because the
 * kernel hashes every key byte on every lookup. Wildcarded fields are zero. */
struct baton_rule4_key {
	__be32 src;                       /* correspondent */
	__be32 dst;                       /* taken-over address */
	__be16 sport;                     /* ICMP echo: the identifier */
	__be16 dport;                     /* ICMP echo: 0 */
	__u8 proto;
	__u8 match;                       /* BATON_MATCH_* */
	__u8 pad[2];
};

/* Key of baton_rules6: IPv6 rules. Wildcarded fields are zero. */
struct baton_rule6_key {
	__u8 src[BATON_ADDR_LEN];         /* correspondent */
	__u8 dst[BATON_ADDR_LEN];         /* taken-over address */
	__be16 sport;                     /* ICMP echo: the identifier */
	__be16 dport;                     /* ICMP echo: 0 */
	__u8 proto;                       /* IPPROTO_TCP, _UDP, _ICMP, _ICMPV6, ... */
	__u8 match;                       /* BATON_MATCH_* */
	__u8 pad[2];
};

/* Value of baton_rules4 and baton_rules6. The counter slot comes first: with the key it shares
 * the element's first cache lines, and an L2 hit never reads the tunnel
 * addresses at the end of fwd. */
struct baton_rule {
	__u32 counter;                    /* slot in baton_counters */
	__u32 pad;
	struct baton_fwd fwd;
};

/* Per-CPU counters, one slot per rule and per takeover. Summed by the reader. */
struct baton_counter {
	__u64 packets;
	__u64 bytes;
	__u64 last_seen;                  /* bpf_jiffies64() of the last packet */
	__u32 tcp_flags;                  /* OR of the TCP flags seen (FIN/RST end a session) */
	__u32 pad;
};

/* Key of baton_fragments: a datagram being reassembled somewhere downstream. */
struct baton_frag_key {
	__u8 src[BATON_ADDR_LEN];
	__u8 dst[BATON_ADDR_LEN];
	__u32 id;                         /* IPv4 identification (16 bits) or IPv6 fragment id */
	__u8 proto;                       /* IPv4 protocol, or the fragment header's next header */
	__u8 pad[3];
};

/* Value of baton_fragments: what the first fragment was classified by. */
struct baton_frag_ports {
	__be16 sport;
	__be16 dport;
	__u8 proto;                       /* upper-layer protocol (IPv6: after extension headers) */
	__u8 pad[3];
};

/* The single entry of baton_config. */
#define BATON_CONFIG_VALID (1U << 31)      /* match_kinds is maintained; without it all kinds are tried */
struct baton_config {
	__u32 match_kinds;                /* bit per BATON_MATCH_* that has rules, | BATON_CONFIG_VALID */
	__u32 generation;                 /* bumped after every rule change; 0 = flow cache off */
};

/* Data-plane statistics: one per-CPU slot per reason. */
#define BATON_STAT_NOT_IP         0 /* not IPv4/IPv6/ARP: passed */
#define BATON_STAT_MALFORMED_PASS 1 /* could not be parsed far enough to know it is ours: passed */
#define BATON_STAT_NOT_TAKEN_OVER 2 /* destination is not taken over: passed */
#define BATON_STAT_MALFORMED_DROP 3 /* for a taken-over address but truncated or malformed: dropped */
#define BATON_STAT_RULE_HIT       4 /* matched a session rule (*) */
#define BATON_STAT_DEFAULT_HIT    5 /* taken over, no rule: the takeover's default (*) */
#define BATON_STAT_FRAG_UNKNOWN   6 /* later fragment whose first fragment was not seen: dropped */
#define BATON_STAT_ARP_REPLY      7 /* ARP request answered */
#define BATON_STAT_NA_REPLY       8 /* neighbour solicitation answered */
#define BATON_STAT_ENCAP_FAIL     9 /* could not encapsulate (headroom, family mismatch): dropped */
#define BATON_STAT_REDIRECT_FAIL 10 /* egress not in baton_devices: dropped */
#define BATON_STAT_LOOP_DROP     11 /* would loop: a tunnelled packet for a taken-over address, or a frame to the agent's own MAC: dropped */
#define BATON_STAT_TOO_BIG       12 /* too big for the tunnel's MTU: answered with ICMP Fragmentation Needed / Packet Too Big (IPv4 without DF, or an ICMP error: dropped) */
#define BATON_STAT_RELAY_DROP    13 /* a relay rule's packet that cannot be relayed: TTL / hop limit spent, not UDP or TCP, an ICMP error, addresses of the other family: dropped */
#define BATON_STAT_COUNT         14

/* (*) Not written per packet: the hit is counted on the rule's or takeover's
 * counter, and the control plane sums those (plus, in these two slots, what
 * removed entries had counted). */
struct baton_stat {
	__u64 packets;
	__u64 bytes;
};

/* ------------------------------------------------------------------------
 * Decapsulation (bpf/decap.bpf.c): the L3 mode's receiving side, the target
 * or the TN. Separate from the steering maps above; nothing above uses it.
 * ------------------------------------------------------------------------ */

#define BATON_MAX_DECAP 4096

/* Key of baton_decap_accept: an inner destination (an original address the
 * host now serves), 16 bytes, IPv4 mapped as everywhere else. */
struct baton_decap_key {
	__u8 addr[BATON_ADDR_LEN];
};

/* Value of baton_decap_accept. */
struct baton_decap {
	__u8 agent[BATON_ADDR_LEN];       /* outer source that may send; all zero = any */
};

/* baton_decap_stats: one per-CPU slot per reason, struct baton_stat each. */
#define BATON_DECAP_STAT_DONE         0 /* decapsulated: the inner packet goes up the stack */
#define BATON_DECAP_STAT_NOT_TUNNEL   1 /* not IPIP / IPv6-in-IPv6 (or outer extension headers): passed */
#define BATON_DECAP_STAT_NOT_ACCEPTED 2 /* inner destination not accepted, or wrong agent: passed */
#define BATON_DECAP_STAT_MALFORMED    3 /* truncated or inconsistent outer or inner header: passed */
#define BATON_DECAP_STAT_FRAGMENT     4 /* outer IPv4 fragment: cannot be decapsulated alone: passed */
#define BATON_DECAP_STAT_COUNT        5

/* Key of baton_rtp: what the remote sees as the stream's source, the anchor's
 * address and port (a relay's outer_src and relay_sport toward the remote). */
struct baton_rtp_key {
	__u8 addr[BATON_ADDR_LEN];
	__be16 port;
	__u16 pad;
};

/* Value of baton_rtp: one outgoing RTP stream kept one across the devices that
 * feed it. The first packet fixes the SSRC the remote sees; a packet of another
 * incoming SSRC (a new device) re-bases the offsets so that its sequence numbers
 * follow the last one sent and its timestamps follow the last one by one step. All
 * in host order but the SSRCs (wire order). Written by the data plane; the
 * control plane creates it zeroed and removes it. */
struct baton_rtp {
	struct bpf_spin_lock lock;
	__u32 flags;                      /* BATON_RTP_* */
	__be32 ssrc_out;                  /* the SSRC the remote sees */
	__be32 ssrc_in;                   /* the SSRC being rewritten now */
	__u16 seq_off;                    /* out = in + seq_off (mod 2^16) */
	__u16 last_seq;                   /* the newest sequence number sent */
	__u32 ts_off;                     /* out = in + ts_off (mod 2^32) */
	__u32 last_ts;                    /* the timestamp of last_seq */
	__u32 ts_step;                    /* the last timestamp increment between consecutive packets */
	__u32 rebases;                    /* sources taken on after the first */
	__u64 packets;                    /* packets rewritten */
};

#define BATON_RTP_STARTED 0x01 /* ssrc_out and the offsets are set */

#endif /* BATON_ABI_H */
