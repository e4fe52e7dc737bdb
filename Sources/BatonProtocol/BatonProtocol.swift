// The transfer protocol. See docs/protocol.md.
