// The compiled XDP objects, embedded in every binary that links the data
// plane (C23 #embed; `make bpf` builds them). A build without them still
// compiles and reports at run time which object is missing.
#include "baton_objects.h"

#if __has_embed("../../bpf/build/steer.bpf.o")
static const unsigned char steer[] = {
#embed "../../bpf/build/steer.bpf.o"
};
static const unsigned long steer_size = sizeof(steer);
#else
static const unsigned char steer[1] = {0};
static const unsigned long steer_size = 0;
#endif

#if __has_embed("../../bpf/build/tools.bpf.o")
static const unsigned char tools[] = {
#embed "../../bpf/build/tools.bpf.o"
};
static const unsigned long tools_size = sizeof(tools);
#else
static const unsigned char tools[1] = {0};
static const unsigned long tools_size = 0;
#endif

#if __has_embed("../../bpf/build/decap.bpf.o")
static const unsigned char decap[] = {
#embed "../../bpf/build/decap.bpf.o"
};
static const unsigned long decap_size = sizeof(decap);
#else
static const unsigned char decap[1] = {0};
static const unsigned long decap_size = 0;
#endif

const unsigned char *baton_steer_object(void) { return steer; }
unsigned long baton_steer_object_size(void) { return steer_size; }
const unsigned char *baton_tools_object(void) { return tools; }
unsigned long baton_tools_object_size(void) { return tools_size; }
const unsigned char *baton_decap_object(void) { return decap; }
unsigned long baton_decap_object_size(void) { return decap_size; }
