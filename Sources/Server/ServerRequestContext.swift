import Hummingbird
import Logging
import NIOCore

/// The request context of every route: a larger upload limit (images travel base64-encoded in JSON), and the
/// connection, so a synchronous route can notice a client that went away.
public struct ServerRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The connection the request came on.
    let channel: (any Channel)?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }

    /// The largest body any route reads (the image-carrying ones); each route reads at most its own
    /// `BodyLimits.limit(method:path:)`.
    public var maxUploadSize: Int { BodyLimits.images }
}
