// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Small XDP programs for the harness and the benchmark, not for the agent:
 *  - baton_pass: XDP_PASS; a veth only receives XDP_TX'd/redirected frames
 *    when its peer runs an XDP program (or has GRO on).
 *  - baton_macswap: the bare MAC-swap XDP_TX baseline.
 *  - baton_tx: the live-frames generator (BPF_F_TEST_XDP_LIVE_FRAMES): XDP_TX.
 *  - baton_count: counts what comes back, then XDP_DROP.
 * and, for BatonBPFTests, baton_tool_percpu4: a per-CPU map with 4-byte
 * values, whose slots the kernel pads to 8 bytes each.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} baton_tool_count SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} baton_tool_percpu4 SEC(".maps");

SEC("xdp")
int baton_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("xdp")
int baton_macswap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u8 tmp[ETH_ALEN];

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	return XDP_TX;
}

SEC("xdp")
int baton_tx(struct xdp_md *ctx)
{
	return XDP_TX;
}

SEC("xdp")
int baton_count(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&baton_tool_count, &zero);

	if (n)
		*n += 1;
	return XDP_DROP;
}
