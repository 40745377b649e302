import Hummingbird
import Logging

/// The request context of every route: a larger upload limit (images travel base64-encoded in JSON).
public struct ServerRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }

    public var maxUploadSize: Int { 64 << 20 }
}
