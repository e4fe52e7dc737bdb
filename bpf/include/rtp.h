/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * RTP continuity for anchored sessions (BATON_FWD_RTP on a relay toward the
 * remote): whichever device feeds the session, the remote sees one RTP stream,
 * with the SSRC of the first packet, sequence numbers that go on by one, and
 * timestamps that go on by the stream's step. A packet of another incoming
 * SSRC (the device the session moved to) re-bases the offsets against the last
 * packet sent. The state is the baton_rtp entry of (anchor address, anchor
 * port), shared by every device's relay rule and taken under its spin lock.
 * RTCP multiplexed on the port (RFC 5761: payload types 64-95 once the marker
 * bit is masked) and anything that is not RTP version 2 pass unchanged.
 */
#ifndef BATON_RTP_H
#define BATON_RTP_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "baton_abi.h"
#include "maps.h"

/* A timestamp step for a source's first re-base when none was seen yet: 20 ms at
 * 8 kHz, the common voice packetization. */
#define RTP_DEFAULT_TS_STEP 160

struct rtp_hdr {
	__u8 vpxcc;   /* version (2 bits), padding, extension, CSRC count */
	__u8 mpt;     /* marker (1 bit), payload type */
	__be16 seq;
	__be32 ts;
	__be32 ssrc;
};

/* Rewrites the RTP header at `off` (the UDP payload) for the relay `fwd` and
 * returns `diff` with the change of its words added (for the UDP checksum).
 * A payload that is not RTP, or a stream without a baton_rtp entry, is left as
 * it is. */
static __always_inline __u64 rtp_keep_one(void *data, void *data_end, __u32 off, __u32 l3end,
					  const struct baton_fwd *fwd, __u64 diff)
{
	struct rtp_hdr *h = data + off;
	struct baton_rtp_key k = {};
	struct baton_rtp *s;
	__u16 seq_in, seq_out, old[5], new[5];
	__u32 ts_in, ts_out;
	__be32 ssrc_in, ssrc_out;
	__u8 pt;

	if ((void *)(h + 1) > data_end || off + sizeof(*h) > l3end)
		return diff;
	pt = h->mpt & 0x7f;
	if ((h->vpxcc >> 6) != 2 || (pt >= 64 && pt <= 95))
		return diff;
	__builtin_memcpy(k.addr, fwd->outer_src, BATON_ADDR_LEN);
	k.port = fwd->relay_sport;
	s = bpf_map_lookup_elem(&baton_rtp, &k);
	if (!s)
		return diff;
	seq_in = bpf_ntohs(h->seq);
	ts_in = bpf_ntohl(h->ts);
	ssrc_in = h->ssrc;

	bpf_spin_lock(&s->lock);
	if (!(s->flags & BATON_RTP_STARTED)) {
		s->flags |= BATON_RTP_STARTED;
		s->ssrc_out = ssrc_in;
		s->ssrc_in = ssrc_in;
		s->seq_off = 0;
		s->ts_off = 0;
		s->last_seq = seq_in - 1; /* so that the first packet is the newest */
		s->last_ts = ts_in;
	} else if (ssrc_in != s->ssrc_in) {
		/* A new source: it follows the last packet sent, one packet later. */
		s->ssrc_in = ssrc_in;
		s->seq_off = (__u16)(s->last_seq + 1 - seq_in);
		s->ts_off = s->last_ts + (s->ts_step ? s->ts_step : RTP_DEFAULT_TS_STEP) - ts_in;
		s->rebases++;
	}
	seq_out = seq_in + s->seq_off;
	ts_out = ts_in + s->ts_off;
	/* Newer than the last sent (serial arithmetic, RFC 3550 A.1): the stream goes on. */
	if ((__s16)(seq_out - s->last_seq) > 0) {
		if ((__u16)(seq_out - s->last_seq) == 1 && (__s32)(ts_out - s->last_ts) > 0)
			s->ts_step = ts_out - s->last_ts;
		s->last_seq = seq_out;
		s->last_ts = ts_out;
	}
	s->packets++;
	ssrc_out = s->ssrc_out;
	bpf_spin_unlock(&s->lock);

	__builtin_memcpy(old, &h->seq, sizeof(old));
	h->seq = bpf_htons(seq_out);
	h->ts = bpf_htonl(ts_out);
	h->ssrc = ssrc_out;
	__builtin_memcpy(new, &h->seq, sizeof(new));
	return csum_diff_words(diff, old, new, 5);
}

#endif
