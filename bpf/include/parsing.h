/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Header parsing: Ethernet with up to two VLAN tags, IPv4 (options,
 * fragments), IPv6 (extension headers), TCP/UDP/ICMP/ICMPv6 ports.
 * Every read is bounds-checked against data_end; a packet that cannot be
 * read far enough is reported, never guessed at. */
#ifndef BATON_PARSING_H
#define BATON_PARSING_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include "baton_abi.h"

/* Keep clang from re-deriving a packet pointer from data + offset, which
 * would leave the verifier's bounds check on a different register. */
#define pkt_barrier(v) asm volatile("" : "+r"(v))

#define VLAN_MAX_DEPTH 2
#define L2_MAX_LEN (14 + 4 * VLAN_MAX_DEPTH)
#define IPV6_EXT_MAX 6 /* extension headers walked before the upper-layer header */

#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif

/* ICMP and ICMPv6 echo share this layout. (linux/icmp.h pulls in libc.) */
struct icmp_echo {
	__u8 type;
	__u8 code;
	__be16 csum;
	__be16 id;
	__be16 seq;
};

#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129

struct vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

struct ipv6_opt_hdr_min {
	__u8 nexthdr;
	__u8 hdrlen;
};

struct ipv6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 id;
};

#define IP_MF     0x2000
#define IP_OFFSET 0x1fff
#define IP6_MF     0x0001
#define IP6_OFFSET 0xfff8

/* How a packet's L3 header relates to fragmentation. */
enum frag_kind {
	FRAG_NONE = 0,  /* not fragmented */
	FRAG_FIRST,     /* offset 0, more to come: carries the ports */
	FRAG_LATER,     /* offset > 0: no ports, follows its first fragment */
};

/* What the parser learned about one packet. */
struct flow {
	struct baton_rule6_key key; /* src, dst, ports, proto; for IPv4 the addresses
				     * are filled in only when needed (flow_addr16) */
	__be32 saddr4, daddr4;     /* IPv4 addresses, as on the wire */
	__u32 l3off;               /* bytes of Ethernet + VLAN headers */
	__u32 l4off;               /* start of the L4 header (FRAG_NONE/FIRST) */
	__u32 l3end;               /* end of the IP datagram (frames may carry padding) */
	__u32 frag_id;
	__u8 frag_proto;           /* IPv4 protocol, or the fragment header's next header */
	__u8 frag;                 /* enum frag_kind */
	__u8 v6;
	__u8 tcp_flags;
	__u8 icmp_error;           /* an ICMP error whose flow is the quoted session's */
	__u8 routed;               /* IPv4 options or an IPv6 routing header: maybe a source
				    * route, whose last address the L4 checksum covers */
};

/* Ethernet and up to two VLAN tags. Sets *proto to the EtherType of the L3
 * header and *l3off to its offset; returns -1 when the frame is too short.
 * (EtherType 0 is a value like any other: no sentinel.) */
static __always_inline int parse_eth(void *data, void *data_end, __be16 *proto, __u32 *l3off)
{
	struct ethhdr *eth = data;
	__u32 off = sizeof(*eth);
	__be16 p;

	if ((void *)(eth + 1) > data_end)
		return -1;
	p = eth->h_proto;
#pragma unroll
	for (int i = 0; i < VLAN_MAX_DEPTH; i++) {
		struct vlan_hdr *vh = data + off;

		if (p != bpf_htons(ETH_P_8021Q) && p != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vh + 1) > data_end)
			return -1;
		p = vh->encap_proto;
		off += sizeof(*vh);
	}
	*proto = p;
	*l3off = off;
	return 0;
}

static __always_inline void addr_set_v4(__u8 *dst, __be32 a)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &a, 4);
}

/* The 16-byte forms of an IPv4 flow's addresses, for the maps keyed by them
 * (takeovers, fragments). The IPv4 hit path never needs them. */
static __always_inline void flow_addr16(struct flow *f)
{
	if (!f->v6) {
		addr_set_v4(f->key.src, f->saddr4);
		addr_set_v4(f->key.dst, f->daddr4);
	}
}

static __always_inline int addr_is_v4(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;

	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0x0000ffff);
}

/* ICMP error types that quote a datagram the destination sent. */
static __always_inline int icmp_is_error(__u8 proto, __u8 type)
{
	if (proto == IPPROTO_ICMP)
		return type == 3 || type == 11 || type == 12; /* unreachable, time exceeded, parameter */
	return type >= 1 && type <= 4;                        /* unreachable, too big, time, parameter */
}

/* An ICMP error about a datagram the (taken-over) destination sent: the quoted
 * header's source is the outer destination. The flow becomes that datagram's
 * session as the correspondent sends it (addresses and ports swapped back), so
 * the error follows the session to where it lives, not to the TN (Katran does
 * the same). A quote that cannot be read whole, names another source, is a
 * later fragment or carries no ports leaves the ICMP flow as it was. `off` is
 * where the quoted IP header starts. */
static __always_inline void icmp_quoted_flow(void *data, void *data_end, struct flow *f, __u32 off)
{
	__be16 *ports;

	if (!f->v6) {
		struct iphdr *in = data + off;
		__u32 ihl;

		if ((void *)(in + 1) > data_end || off + sizeof(*in) > f->l3end || in->version != 4 || in->ihl < 5)
			return;
		if (in->saddr != f->daddr4 || (in->protocol != IPPROTO_TCP && in->protocol != IPPROTO_UDP) ||
		    (in->frag_off & bpf_htons(IP_OFFSET)))
			return;
		ihl = (in->ihl & 0xf) * 4;
		ports = data + off + ihl;
		if ((void *)(ports + 2) > data_end || off + ihl + 4 > f->l3end)
			return;
		f->saddr4 = in->daddr;
		f->key.proto = in->protocol;
	} else {
		struct ipv6hdr *in = data + off;

		/* Only a quote whose upper-layer header follows at once: ports behind
		 * extension headers are left alone. */
		if ((void *)(in + 1) > data_end || off + sizeof(*in) > f->l3end || in->version != 6)
			return;
		const __u32 *q = (const __u32 *)&in->saddr, *d = (const __u32 *)f->key.dst;

		/* Compared by words: clang turns __builtin_memcmp into a call. */
		if ((q[0] ^ d[0]) | (q[1] ^ d[1]) | (q[2] ^ d[2]) | (q[3] ^ d[3]) ||
		    (in->nexthdr != IPPROTO_TCP && in->nexthdr != IPPROTO_UDP))
			return;
		ports = (void *)(in + 1);
		if ((void *)(ports + 2) > data_end || off + sizeof(*in) + 4 > f->l3end)
			return;
		__builtin_memcpy(f->key.src, &in->daddr, 16);
		f->key.proto = in->nexthdr;
	}
	f->key.sport = ports[1];
	f->key.dport = ports[0];
	f->icmp_error = 1;
}

/* Ports (and TCP flags) of the L4 header at f->l4off. Returns 0, or -1 when
 * the header does not fit in the datagram. Protocols without ports keep 0/0;
 * ICMP and ICMPv6 echo use the identifier as the source port; an ICMP error
 * takes the flow of the datagram it quotes (icmp_quoted_flow).
 * Each header is checked twice: against data_end for the verifier, and
 * against the datagram's own end (l3end <= data_end) for correctness. */
static __always_inline int parse_l4(void *data, void *data_end, struct flow *f)
{
	void *l4 = data + f->l4off;

	switch (f->key.proto) {
	case IPPROTO_TCP: {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end || f->l4off + sizeof(*th) > f->l3end ||
		    th->doff < 5)
			return -1;
		f->key.sport = th->source;
		f->key.dport = th->dest;
		f->tcp_flags = ((__u8 *)th)[13];
		return 0;
	}
	case IPPROTO_UDP: {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end || f->l4off + sizeof(*uh) > f->l3end)
			return -1;
		f->key.sport = uh->source;
		f->key.dport = uh->dest;
		return 0;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		struct icmp_echo *ih = l4;
		__u8 req = f->key.proto == IPPROTO_ICMP ? ICMP_ECHO : ICMPV6_ECHO_REQUEST;
		__u8 rep = f->key.proto == IPPROTO_ICMP ? ICMP_ECHOREPLY : ICMPV6_ECHO_REPLY;

		if ((void *)(ih + 1) > data_end || f->l4off + sizeof(*ih) > f->l3end)
			return -1;
		if (ih->type == req || ih->type == rep)
			f->key.sport = ih->id;
		/* A fragmented error keeps its own flow: its later fragments, which
		 * quote nothing, find their first by the outer addresses. */
		else if (icmp_is_error(f->key.proto, ih->type) && f->frag == FRAG_NONE)
			icmp_quoted_flow(data, data_end, f, f->l4off + sizeof(*ih));
		return 0;
	}
	}
	return 0;
}

/* The part of the IPv4 header that names the destination. Returns the
 * header, or NULL when it is not a well-formed IPv4 header start. */
static __always_inline struct iphdr *ipv4_header(void *data, void *data_end, __u32 l3off)
{
	struct iphdr *ip = data + l3off;

	if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5)
		return NULL;
	return ip;
}

/* Everything after the destination: lengths, fragments, ports. Returns 0 or
 * -1 for a malformed or truncated datagram. */
static __always_inline int parse_ipv4_rest(void *data, void *data_end, struct iphdr *ip,
					   struct flow *f)
{
	__u32 hlen = ip->ihl * 4;
	__u32 tot = bpf_ntohs(ip->tot_len);
	__u16 frag_off = bpf_ntohs(ip->frag_off);

	if (tot < hlen || data + f->l3off + tot > data_end)
		return -1;
	f->l3end = f->l3off + tot;
	f->l4off = f->l3off + hlen;
	f->routed = hlen > sizeof(*ip);
	f->key.proto = ip->protocol;
	f->saddr4 = ip->saddr;
	f->frag_id = ip->id;
	f->frag_proto = ip->protocol;
	if (frag_off & IP_OFFSET) {
		f->frag = FRAG_LATER;
		return 0;
	}
	if (frag_off & IP_MF)
		f->frag = FRAG_FIRST;
	return parse_l4(data, data_end, f);
}

/* IPv6 extension headers up to the upper-layer header. Returns 0 or -1. */
static __always_inline int parse_ipv6_rest(void *data, void *data_end, struct ipv6hdr *ip6,
					   struct flow *f)
{
	__u32 plen = bpf_ntohs(ip6->payload_len);
	__u32 off = f->l3off + sizeof(*ip6);
	__u8 nh = ip6->nexthdr;

	/* payload_len 0 means a jumbogram, which never crosses an Ethernet link. */
	if (plen == 0 || data + off + plen > data_end)
		return -1;
	f->l3end = off + plen;
	__builtin_memcpy(f->key.src, &ip6->saddr, 16);

#pragma unroll
	for (int i = 0; i <= IPV6_EXT_MAX; i++) {
		if (nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS ||
		    nh == IPPROTO_AH) {
			struct ipv6_opt_hdr_min *h = data + off;
			__u32 len;

			if ((void *)(h + 1) > data_end)
				return -1;
			/* AH counts 4-byte units minus 2, the others 8-byte units minus 1. */
			if (nh == IPPROTO_ROUTING)
				f->routed = 1;
			if (nh == IPPROTO_AH)
				len = ((__u32)h->hdrlen + 2) * 4;
			else
				len = ((__u32)h->hdrlen + 1) * 8;
			nh = h->nexthdr;
			off += len;
			if (off > f->l3end)
				return -1;
			continue;
		}
		if (nh == IPPROTO_FRAGMENT) {
			struct ipv6_frag_hdr *fh = data + off;
			__u16 fo;

			if ((void *)(fh + 1) > data_end || off + sizeof(*fh) > f->l3end)
				return -1;
			fo = bpf_ntohs(fh->frag_off);
			nh = fh->nexthdr;
			off += sizeof(*fh);
			f->frag_id = fh->id;
			f->frag_proto = nh;
			if (fo & IP6_OFFSET) {
				f->frag = FRAG_LATER;
				return 0;
			}
			/* An atomic fragment (offset 0, no M flag) is a whole datagram. */
			if (fo & IP6_MF)
				f->frag = FRAG_FIRST;
			continue;
		}
		f->key.proto = nh;
		f->l4off = off;
		return parse_l4(data, data_end, f);
	}
	return -1; /* more extension headers than we walk: never guess */
}

#endif
