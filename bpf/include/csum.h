/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Internet checksums. Fold until no carry is left: a single fold is wrong
 * for about 1 packet in 100k (Katran's lesson). */
#ifndef BATON_CSUM_H
#define BATON_CSUM_H

#include <linux/types.h>
#include <linux/in6.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

static __always_inline __u16 csum_fold(__u64 sum)
{
#pragma unroll
	for (int i = 0; i < 4; i++)
		sum = (sum & 0xffff) + (sum >> 16);
	return ~sum & 0xffff;
}

/* Header checksum of an IPv4 header without options (20 bytes). */
static __always_inline __u16 ipv4_header_csum(const void *hdr)
{
	const __u16 *w = hdr;
	__u64 sum = 0;

#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	return csum_fold(sum);
}

/* bpf_csum_diff's sum of an IPv6 pseudo-header (RFC 8200 section 8.1) for an
 * upper-layer packet of `len` bytes and next header `nexthdr`, to be summed
 * on with the packet itself; negative on error. */
static __always_inline __s64 ipv6_pseudo_sum(const void *src, const void *dst, __u32 len, __u8 nexthdr)
{
	struct {
		struct in6_addr src, dst;
		__be32 len;
		__u8 zero[3];
		__u8 nexthdr;
	} ph = {};

	__builtin_memcpy(&ph.src, src, 16);
	__builtin_memcpy(&ph.dst, dst, 16);
	ph.len = bpf_htonl(len);
	ph.nexthdr = nexthdr;
	return bpf_csum_diff(NULL, 0, (__be32 *)&ph, sizeof(ph), 0);
}

#endif
