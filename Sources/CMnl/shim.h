// libmnl plus the kernel's netlink, rtnetlink, link-kind and socket-diagnostics headers.
#include <libmnl/libmnl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_link.h>
#include <linux/if_addr.h>
#include <linux/neighbour.h>
#include <linux/veth.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <linux/sock_diag.h>
#include <linux/inet_diag.h>
#include <net/if.h>
