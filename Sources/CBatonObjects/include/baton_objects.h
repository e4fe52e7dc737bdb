#ifndef BATON_OBJECTS_H
#define BATON_OBJECTS_H
// The embedded XDP objects. A size of 0 means the object was not built
// (run `make bpf`). Functions, because Swift cannot import unsized arrays.

// The agent's steering program (baton_steer, baton_clock) and its maps.
const unsigned char *baton_steer_object(void);
unsigned long baton_steer_object_size(void);
// Harness and benchmark programs (baton_pass, baton_macswap, baton_tx, baton_count).
const unsigned char *baton_tools_object(void);
unsigned long baton_tools_object_size(void);
// The L3 mode's receiving side (baton_decap) and its maps.
const unsigned char *baton_decap_object(void);
unsigned long baton_decap_object_size(void);
#endif
