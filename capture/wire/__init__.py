"""The wire: frames and their link/IP constants, IP defragmentation, TCP streams, ICMP errors,
RTP and telephone-event records, capture files (pcap/pcapng), each with its C twin where hot."""
