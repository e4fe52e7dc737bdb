/// The data plane's map verbs: baton-dp's commands, which batonctl lists and hands over to
/// baton-dp. Their names and one-line abstracts, once for both tools.
public enum MapVerb: String, CaseIterable, Sendable {
    case attach, detach, status, takeover, rule, stats, unload, teardown

    public var abstract: String {
        switch self {
        case .attach: "Attach the steering program to an interface."
        case .detach: "Detach the steering program from an interface."
        case .status: "Show the pin root, programs, attachments, map fill and clock."
        case .takeover: "Add, remove and list taken-over addresses."
        case .rule: "Add, remove and list session rules (a transfer's 5-tuples)."
        case .stats: "Show the data plane's per-reason packet and byte counts."
        case .unload: "Detach every pinned link and remove the whole pin root."
        case .teardown: "Detach and remove everything Baton pinned: the data plane, decapsulators and their XDP links."
        }
    }
}
