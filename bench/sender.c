/* Benchmark traffic source: send the frames of a pcap file out of IFACE at PPS packets/s
 * (0: as fast as possible) with sendmmsg on an AF_PACKET socket, once through the file. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: sender IFACE FILE PPS\n"); return 2; }
    char err[PCAP_ERRBUF_SIZE];
    pcap_t *p = pcap_open_offline(argv[2], err);
    if (!p) { fprintf(stderr, "%s\n", err); return 1; }
    size_t cap = 1 << 20, n = 0, bytes = 0;
    unsigned char **fr = malloc(cap * sizeof *fr); unsigned *len = malloc(cap * sizeof *len);
    struct pcap_pkthdr *h; const u_char *d;
    while (pcap_next_ex(p, &h, &d) == 1) {
        if (n == cap) { cap *= 2; fr = realloc(fr, cap * sizeof *fr); len = realloc(len, cap * sizeof *len); }
        fr[n] = malloc(h->caplen); memcpy(fr[n], d, h->caplen); len[n] = h->caplen; bytes += h->caplen; n++;
    }
    int s = socket(AF_PACKET, SOCK_RAW, 0);
    int one = 1; setsockopt(s, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
    struct sockaddr_ll ll = {0}; ll.sll_family = AF_PACKET; ll.sll_ifindex = if_nametoindex(argv[1]);
    if (bind(s, (struct sockaddr *)&ll, sizeof ll)) { perror("bind"); return 1; }
    double pps = atof(argv[3]);
    enum { B = 32 };
    struct mmsghdr m[B]; struct iovec iov[B];
    size_t sent = 0, fails = 0;
    double t0 = now();
    while (sent + fails < n) {
        int k = 0;
        for (; k < B && sent + fails + k < n; k++) {
            iov[k].iov_base = fr[sent + fails + k]; iov[k].iov_len = len[sent + fails + k];
            memset(&m[k], 0, sizeof m[k]); m[k].msg_hdr.msg_iov = &iov[k]; m[k].msg_hdr.msg_iovlen = 1;
        }
        if (pps > 0) {          /* sleep when ahead, so the sender does not take a core from the capture */
            double due = t0 + (sent + fails) / pps, ahead;
            while ((ahead = due - now()) > 0) {
                struct timespec ts = { 0, ahead > 50e-6 ? (long)(ahead * 1e9) : 0 };
                if (ts.tv_nsec) nanosleep(&ts, NULL);
            }
        }
        int r = sendmmsg(s, m, k, 0);
        if (r < 0) { fails += k; continue; }
        sent += r; if (r < k) fails += k - r;
    }
    double dt = now() - t0;
    printf("{\"sent\": %zu, \"failed\": %zu, \"seconds\": %.3f, \"pps\": %.0f}\n", sent, fails, dt, sent / dt);
    return 0;
}
