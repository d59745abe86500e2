/* Baseline for bench/live_bench.py: count packets on IFACE with plain libpcap for SECONDS
   (kernel buffer BUFFER_MB, 64 by default, at most 2047); prints the wall time of the last packet read too, and "ready" on stderr once it listens. */
#include <pcap/pcap.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static unsigned long long n, bytes;
static void cb(u_char *u, const struct pcap_pkthdr *h, const u_char *d) { (void)u; (void)d; n++; bytes += h->caplen; }
static double clk(clockid_t c) { struct timespec t; clock_gettime(c, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static double now(void) { return clk(CLOCK_MONOTONIC); }

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) { fprintf(stderr, "usage: pcapcount_live IFACE SECONDS [BUFFER_MB]\n"); return 2; }
    char err[PCAP_ERRBUF_SIZE];
    pcap_t *p = pcap_create(argv[1], err);
    if (!p) { fprintf(stderr, "%s\n", err); return 1; }
    pcap_set_snaplen(p, 262144); pcap_set_promisc(p, 1); long mb = argc == 4 ? atol(argv[3]) : 64;
    pcap_set_buffer_size(p, mb < 2047 ? (int)(mb << 20) : 2047 << 20);     /* an int: under 2 GiB */
    pcap_set_timeout(p, 50); pcap_set_tstamp_precision(p, PCAP_TSTAMP_PRECISION_NANO);
    if (pcap_activate(p) < 0) { fprintf(stderr, "%s\n", pcap_geterr(p)); return 1; }
    pcap_setnonblock(p, 1, err);
    fprintf(stderr, "ready\n");     /* a large ring takes a while to set up */
    struct pollfd pf = { pcap_get_selectable_fd(p), POLLIN, 0 };
    double end = now() + atof(argv[2]);
    clock_t c0 = clock();
    double last = 0;
    while (now() < end) { poll(&pf, 1, 50); if (pcap_dispatch(p, -1, cb, NULL) > 0) last = clk(CLOCK_REALTIME); }
    struct pcap_stat st; pcap_stats(p, &st);
    printf("{\"packets\": %llu, \"bytes\": %llu, \"ps_recv\": %u, \"ps_drop\": %u, \"ps_ifdrop\": %u, \"cpu_s\": %.3f, \"last_packet_at\": %.6f}\n",
           n, bytes, st.ps_recv, st.ps_drop, st.ps_ifdrop, (double)(clock() - c0) / CLOCKS_PER_SEC, last);
    return 0;
}
