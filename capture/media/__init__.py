"""Media: the engine (flow table, RTP stream state, placement, G.711 decoding into each call's
ring; C with its Python twin), G.711 itself and the WAV format."""
