import CLibbpf
#if canImport(Glibc)
import Glibc
#endif

/// A loaded BPF program by file descriptor.
public final class BPFProgram: @unchecked Sendable {
    public let descriptor: BPFDescriptor
    public let name: String
    public let id: UInt32

    public var fd: Int32 { descriptor.fd }

    public init(_ descriptor: BPFDescriptor) throws {
        let info = try descriptor.info(bpf_prog_info(), "program")
        self.descriptor = descriptor
        name = BPFDescriptor.name(info.name)
        id = info.id
    }

    public static func pinned(at path: String) throws -> BPFProgram {
        try BPFProgram(BPFDescriptor.pinned(at: path))
    }

    public func pin(at path: String) throws { try descriptor.pin(at: path) }

    /// What one BPF_PROG_TEST_RUN returned.
    public struct TestRun: Sendable {
        public let retval: UInt32
        public let output: [UInt8]
        /// Average nanoseconds per repetition, as the kernel measured it.
        public let duration: UInt32
    }

    /// Runs the program in the kernel on `packet` (BPF_PROG_TEST_RUN).
    /// With repeat > 1 the kernel reuses one buffer: a program that rewrites
    /// the packet sees its own output on the next run.
    public func testRun(_ packet: [UInt8], repeat count: Int = 1, ingressIfindex: UInt32 = 0,
                        headroom: Int = 256) throws -> TestRun {
        var out = [UInt8](repeating: 0, count: packet.count + headroom + 512)
        var ctx = xdp_md()
        ctx.data_end = UInt32(packet.count)
        ctx.ingress_ifindex = ingressIfindex
        var opts = bpf_test_run_opts()
        opts.sz = MemoryLayout<bpf_test_run_opts>.size
        opts.repeat = Int32(count)
        let useCtx = ingressIfindex != 0
        let rc: Int32 = packet.withUnsafeBytes { input in
            out.withUnsafeMutableBytes { output in
                withUnsafeMutablePointer(to: &ctx) { ctxp in
                    opts.data_in = input.baseAddress
                    opts.data_size_in = UInt32(packet.count)
                    opts.data_out = output.baseAddress
                    opts.data_size_out = UInt32(output.count)
                    if useCtx {
                        opts.ctx_in = UnsafeRawPointer(ctxp)
                        opts.ctx_size_in = UInt32(MemoryLayout<xdp_md>.size)
                    }
                    return bpf_prog_test_run_opts(fd, &opts)
                }
            }
        }
        if rc != 0 { throw BPFError("test run of \(name)", errno: Glibc.errno) }
        return TestRun(retval: opts.retval, output: Array(out.prefix(Int(opts.data_size_out))),
                       duration: opts.duration)
    }

    /// Sends `count` copies of `frame` through the program as live frames
    /// (BPF_F_TEST_XDP_LIVE_FRAMES): XDP_TX and redirects really transmit on
    /// `ingressIfindex`, which is resolved in the calling thread's network
    /// namespace. Returns the wall time the kernel spent, in nanoseconds.
    public func sendLiveFrames(_ frame: [UInt8], count: Int, ingressIfindex: UInt32,
                               batchSize: UInt32 = 64) throws -> UInt64 {
        var ctx = xdp_md()
        ctx.data_end = UInt32(frame.count) // must equal the packet length in live mode
        ctx.ingress_ifindex = ingressIfindex
        var opts = bpf_test_run_opts()
        opts.sz = MemoryLayout<bpf_test_run_opts>.size
        opts.repeat = Int32(count)
        opts.flags = UInt32(BPF_F_TEST_XDP_LIVE_FRAMES)
        opts.batch_size = batchSize
        var start = timespec(), end = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        let rc: Int32 = frame.withUnsafeBytes { input in
            withUnsafeMutablePointer(to: &ctx) { ctxp in
                opts.data_in = input.baseAddress
                opts.data_size_in = UInt32(frame.count)
                opts.ctx_in = UnsafeRawPointer(ctxp)
                opts.ctx_size_in = UInt32(MemoryLayout<xdp_md>.size)
                return bpf_prog_test_run_opts(fd, &opts)
            }
        }
        clock_gettime(CLOCK_MONOTONIC, &end)
        if rc != 0 { throw BPFError("live-frames run of \(name) on ifindex \(ingressIfindex)", errno: Glibc.errno) }
        return UInt64(end.tv_sec - start.tv_sec) * 1_000_000_000 + UInt64(end.tv_nsec) - UInt64(start.tv_nsec)
    }
}

/// XDP verdicts as test runs report them.
public enum XDPAction: UInt32, Sendable, CustomStringConvertible {
    case aborted = 0, drop = 1, pass = 2, tx = 3, redirect = 4

    public var description: String {
        switch self {
        case .aborted: return "ABORTED"
        case .drop: return "DROP"
        case .pass: return "PASS"
        case .tx: return "TX"
        case .redirect: return "REDIRECT"
        }
    }
}
