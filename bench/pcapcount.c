/* Baseline for bench/bench.py: read a capture with libpcap and touch every byte's length. */
#include <pcap/pcap.h>
#include <stdio.h>
#include <time.h>

int main(int argc, char **argv) {
    char err[PCAP_ERRBUF_SIZE];
    if (argc != 2) { fprintf(stderr, "usage: pcapcount FILE\n"); return 2; }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pcap_t *p = pcap_open_offline_with_tstamp_precision(argv[1], PCAP_TSTAMP_PRECISION_NANO, err);
    if (!p) { fprintf(stderr, "%s\n", err); return 1; }
    struct pcap_pkthdr *h; const u_char *d;
    unsigned long long n = 0, bytes = 0, x = 0;
    int rc;
    while ((rc = pcap_next_ex(p, &h, &d)) == 1) { n++; bytes += h->caplen; x += d[h->caplen / 2]; }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("{\"packets\": %llu, \"bytes\": %llu, \"seconds\": %.6f, \"check\": %llu}\n", n, bytes, s, x);
    pcap_close(p);
    return 0;
}
