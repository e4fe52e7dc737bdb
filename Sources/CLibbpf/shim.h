// libbpf as Swift sees it. LIBBPF_OPTS is a macro Swift cannot import: the
// Swift side builds the opts structs itself and sets `sz`.
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <linux/if_link.h>
#include <sys/vfs.h>
