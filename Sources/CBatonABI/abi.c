// The ABI is header-only; this file makes CBatonABI a buildable C target and
// checks at compile time that the layouts are what bpf/ and Swift expect.
#include "baton_abi.h"

_Static_assert(sizeof(struct baton_fwd) == 64, "baton_fwd layout");
_Static_assert(sizeof(struct baton_takeover) == 96, "baton_takeover layout");
_Static_assert(sizeof(struct baton_rule4_key) == 16, "baton_rule4_key layout");
_Static_assert(sizeof(struct baton_rule6_key) == 40, "baton_rule6_key layout");
_Static_assert(sizeof(struct baton_rule) == 72, "baton_rule layout");
_Static_assert(sizeof(struct baton_counter) == 32, "baton_counter layout");
_Static_assert(sizeof(struct baton_frag_key) == 40, "baton_frag_key layout");
_Static_assert(sizeof(struct baton_decap_key) == 16, "baton_decap_key layout");
_Static_assert(sizeof(struct baton_decap) == 16, "baton_decap layout");
_Static_assert(sizeof(struct baton_rtp_key) == 20, "baton_rtp_key layout");
_Static_assert(sizeof(struct baton_rtp) == 48, "baton_rtp layout");
